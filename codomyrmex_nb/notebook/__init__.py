"""Jupyter face of codomyrmex-nb: the magics, the live DAG view and display helpers."""
