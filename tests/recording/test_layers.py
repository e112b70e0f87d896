"""The harness's layers point one way: ``recording/`` imports neither ``training/`` nor ``search/``.

Read from the source with :mod:`ast`, every import of every module counts,
including those inside functions (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpynet.sweeps

SWEEPS = Path(numpynet.sweeps.__file__).parent
PACKAGE = "numpynet.sweeps"
#: layer -> the layers of the harness it must not import
FORBIDDEN = {"recording": ("training", "search", "cli")}


def imported_modules(source: str, module: str) -> set[str]:
    """Every module ``source`` (the text of ``module``) imports, relative imports resolved."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: -node.level]
                found.add(".".join([*base, node.module] if node.module else base))
            else:
                found.add(node.module or "")
    return found


def violations(source: str, relative: str) -> set[tuple[str, str]]:
    """``(file, imported module)`` for each import of ``source`` (at ``relative`` under sweeps/) that
    its layer must not make."""
    layer = relative.split("/")[0]
    module = f"{PACKAGE}.{relative.removesuffix('.py').replace('/', '.')}"
    banned = tuple(f"{PACKAGE}.{other}" for other in FORBIDDEN.get(layer, ()))
    return {
        (relative, name)
        for name in imported_modules(source, module)
        if any(name == b or name.startswith(b + ".") for b in banned)
    }


def test_the_probe_finds_absolute_relative_and_lazy_imports_of_a_higher_layer():
    source = (
        "from numpynet.sweeps.search import budget\n"
        "from ..training.data import Dataset\n"
        "def f():\n    import numpynet.sweeps.cli.sweep\n"
        "from numpynet.sweeps.recording import names\nimport numpynet\n"
    )
    assert violations(source, "recording/probe.py") == {
        ("recording/probe.py", "numpynet.sweeps.search"),
        ("recording/probe.py", "numpynet.sweeps.training.data"),
        ("recording/probe.py", "numpynet.sweeps.cli.sweep"),
    }
    assert violations(source, "search/probe.py") == set()  # search may import training and recording


def test_recording_imports_neither_training_nor_search():
    found = set()
    for path in sorted((SWEEPS / "recording").glob("*.py")):
        found |= violations(path.read_text(), path.relative_to(SWEEPS).as_posix())
    assert found == set()
