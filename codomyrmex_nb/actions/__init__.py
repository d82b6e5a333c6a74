"""Built-in actions, so that ``Task(module=..., action=...)`` does real work out of the box.

- ``environment_setup``: ``check_environment`` (Python, platform, CPUs, memory,
  the graphviz ``dot`` program, versions of the packages the orchestrator uses).
- ``static_analysis``: ``analyze_code_quality`` and ``comprehensive_analysis``
  (metrics of Python files from the standard ``ast`` module).
- ``data_visualization``: ``create_bar_chart`` (a PNG via matplotlib's Agg
  backend) and ``process_large_dataset`` (chunked CSV summary with pandas).

Every action returns a plain, JSON-able dict. The modules are imported only when
a task names them (see ``codomyrmex_nb.core.actions``), and they import
matplotlib and pandas only inside the functions that need them, so importing
``codomyrmex_nb`` stays cheap.
"""
