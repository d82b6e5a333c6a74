"""The layering: core imports no Jupyter, and heavy libraries load lazily."""

from __future__ import annotations

import subprocess
import sys


def loaded_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_core_imports_no_jupyter_and_no_heavy_libraries():
    mods = loaded_after("import codomyrmex_nb.core")
    assert not {m for m in mods if m.split(".")[0] in {"IPython", "ipywidgets", "ipykernel"}}
    assert not {m for m in mods if m.split(".")[0] in {"pandas", "matplotlib", "graphviz", "dask"}}


def test_package_import_stays_light():
    mods = loaded_after("import codomyrmex_nb")
    assert "IPython" not in mods and "pandas" not in mods and "matplotlib" not in mods


def test_core_source_never_mentions_the_notebook_layer():
    from pathlib import Path

    import codomyrmex_nb.core as core

    for path in Path(core.__file__).parent.glob("*.py"):
        text = path.read_text()
        assert "from ..notebook" not in text and "import IPython" not in text, path
        # The facade and the analysis sit above core: core never imports them.
        for above in ("from ..analysis", "from ..orchestrator", "from ..default",
                      "from .. import"):
            assert above not in text, (path, above)

