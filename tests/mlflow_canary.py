"""``make canary``: the browser tests against the newest MLflow on the package index, in a throwaway venv.

    python3 tests/mlflow_canary.py [VENV]      (default: a new folder under the system's temp dir)

Not part of ``make test`` and never fails a build: it installs numpynet with its test extras into VENV,
upgrades MLflow there to the newest release the index has (past the range pyproject.toml pins and the
docs describe), runs tests/system/test_mlflow_ui_browser.py with the screenshots kept in VENV/shots, and
prints a report: the checked range, the version it tried, and what changed (each failing check's first
error line). Exit status 0 whatever it finds; the report is also written to VENV/canary-report.txt.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BROWSER_TESTS = "tests/system/test_mlflow_ui_browser.py"


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, **kw)


def checked_range() -> str:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return next(d for d in deps if re.match(r"mlflow\b", d))


def main(venv: Path) -> list[str]:
    py = venv / "bin" / "python"
    report = [f"MLflow canary, checked range: {checked_range()} (pyproject.toml, docs/training.md)"]
    if not py.is_file():
        _run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = _run([str(py), "-m", "pip", "install", "--quiet", "-e", ".[test]"])
    upgrade = _run([str(py), "-m", "pip", "install", "--quiet", "--upgrade", "mlflow"])
    if install.returncode or upgrade.returncode:
        return report + ["install failed: " + (install.stderr or upgrade.stderr).strip().splitlines()[-1]]
    version = _run([str(py), "-c", "import mlflow; print(mlflow.__version__)"]).stdout.strip()
    report.append(f"newest MLflow on the index, installed in {venv}: {version}")
    shots = venv / "shots"
    env = {**__import__("os").environ, "NUMPYNET_SCREENSHOTS": str(shots)}
    tests = _run(
        [str(py), "-m", "pytest", "-p", "no:cacheprovider", "-q", "-n", "0", "-rf", BROWSER_TESTS],
        env=env,
        timeout=1800,
    )
    summary = [ln for ln in tests.stdout.splitlines() if re.search(r"\d+ (passed|failed|error)", ln)]
    report.append("browser tests: " + (summary[-1].strip("= ") if summary else f"pytest exit {tests.returncode}"))
    failed = [ln for ln in tests.stdout.splitlines() if ln.startswith(("FAILED ", "ERROR "))]
    if failed:
        report.append("what changed (each failing check, first error line):")
        report += [f"  {ln}" for ln in failed]
    else:
        report.append(
            "what changed: nothing the browser tests check (runs table names, chart view with every "
            "trial, trial page view, Assistant panel and registry pop-up closed for good)"
        )
    report.append(f"screenshots: {shots}")
    return report


if __name__ == "__main__":
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="numpynet-canary-"))
    try:
        lines = main(folder)
    except Exception as exc:  # a canary reports; it never breaks a build
        lines = [f"MLflow canary could not run: {type(exc).__name__}: {exc}"]
    text = "\n".join(lines)
    print(text)
    if folder.is_dir():
        (folder / "canary-report.txt").write_text(text + "\n")
