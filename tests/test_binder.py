"""The files Binder (repo2docker) needs to run the notebook tour are there and complete."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"


def _lines(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_apt_installs_graphviz():
    assert "graphviz" in _lines(BINDER / "apt.txt"), "binder/apt.txt must list graphviz (dot)"


def test_requirements_cover_the_tour():
    names = {re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0].lower()
             for line in _lines(BINDER / "requirements.txt")}
    missing = {"jupyterlab", "ipywidgets", "ipykernel", "graphviz", "pandas"} - names
    assert not missing, f"binder/requirements.txt lacks {sorted(missing)}"


def test_post_build_installs_the_package():
    post = BINDER / "postBuild"
    assert os.access(post, os.X_OK), "binder/postBuild must be executable"
    assert post.read_text(encoding="utf-8").startswith("#!"), "binder/postBuild needs a #! line"
    commands = _lines(post)
    assert any(re.search(r"pip install .*\s\.(\[[\w,-]+\])?$", c) for c in commands), commands
    assert any("import codomyrmex_nb" in c for c in commands), commands


def test_tour_notebooks_exist():
    for name in ("01_quickstart", "02_cell_magics", "03_resources_and_priorities",
                 "04_failures_retries_cancel", "05_performance_analysis", "06_map"):
        assert (ROOT / "notebooks" / f"{name}.ipynb").is_file(), name


def _minimum(lines: list[str], name: str) -> tuple[int, ...]:
    for line in lines:
        found = re.fullmatch(rf"{name}\s*>=\s*([\d.]+)", line.strip())
        if found:
            return tuple(int(part) for part in found.group(1).split("."))
    raise AssertionError(f"no minimum version for {name}")


def test_front_end_and_kernel_answer_clicks_while_a_cell_is_busy():
    """JupyterLab >= 4.4 sends widget messages to kernel subshells; ipykernel >= 7.4 runs them
    there and asks each comm where its messages go (notebook.busy_clicks)."""
    binder = _lines(BINDER / "requirements.txt")
    with open(ROOT / "pyproject.toml", "rb") as file:
        extra = tomllib.load(file)["project"]["optional-dependencies"]["test"]
    for lines in (binder, extra):
        assert _minimum(lines, "jupyterlab") >= (4, 4)
        assert _minimum(lines, "ipykernel") >= (7, 4)
