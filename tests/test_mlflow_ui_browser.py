"""The MLflow UI as a user sees it: a finished sweep opened in headless Chromium.

Debian's ``chromium`` (``make browser`` installs it; nothing downloads a
browser) driven by Playwright's Python package. The test starts an MLflow
server on 127.0.0.1 over the store a small sweep left behind, opens the
experiment's run list, expands the sweep's parent run and checks that every
trial's run is listed under it with its ``val_accuracy``. A screenshot is kept
in the test's folder and copied to ``benchmarks/results/mlflow_ui_browser.png``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from mlflow import MlflowClient

from services import MlflowServer, console_script, worker_env
from sweeps.objective import TAG_TRIAL

pytestmark = pytest.mark.timeout(300)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
STUDY, EXPERIMENT, N_TRIALS = "ui-check", "ui-check", 3


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory) -> Path:
    """A small finished sweep in the local default store (SQLite under ./mlruns)."""
    root = tmp_path_factory.mktemp("ui-sweep")
    proc = subprocess.run(
        console_script("numpynet-sweep") + [
            f"sweep.study_name={STUDY}", f"sweep.n_trials={N_TRIALS}", "sweep.pruner.name=none",
            f"tracking.experiment={EXPERIMENT}", "train.epoch=6", "train.decay_interval=2",
            "network.hidden=[16]", "tracking.log_plots=false"],
        cwd=root, env=worker_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root


def _row_index(page, run_id: str) -> int:
    """The grid row (``row-index``) holding the link to ``run_id``."""
    link = page.locator(f'a[href$="/runs/{run_id}"]').first
    link.wait_for(state="visible", timeout=30_000)
    return int(link.evaluate("a => a.closest('[role=\"row\"]').getAttribute('row-index')"))


def test_trial_runs_are_listed_under_their_parent_with_val_accuracy(finished_sweep, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    assert CHROMIUM.is_file(), "Debian's chromium is needed: run `make browser` (apt-get install chromium)"
    store = f"sqlite:///{finished_sweep / 'mlruns' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], "", max_results=100)
    [parent] = [r for r in runs if r.data.tags.get("numpynet.role") == "sweep"]
    children = [r for r in runs if TAG_TRIAL in r.data.tags]
    assert len(children) == N_TRIALS

    shot = tmp_path / "mlflow_ui_browser.png"
    with MlflowServer(store, tmp_path / "served-artifacts", tmp_path / "server.log") as server, \
            sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1800, "height": 1000})
            page.set_default_timeout(30_000)
            page.goto(f"{server.url}/#/experiments/{experiment.experiment_id}/runs")
            # the React app loads the run list asynchronously: wait for the parent run's name
            expect(page.get_by_text(parent.info.run_name, exact=True).first).to_be_visible(timeout=60_000)
            _close_side_panels(page)
            _add_column(page, "val_accuracy")
            # nested runs are folded under their parent: unfold it
            page.locator('button[data-component-id*="runnamecellrenderer"]').first.click()

            parent_row = _row_index(page, parent.info.run_id)
            child_rows = {r.info.run_id: _row_index(page, r.info.run_id) for r in children}
            assert sorted(child_rows.values()) == list(range(parent_row + 1, parent_row + 1 + N_TRIALS)), \
                f"trial runs directly under their parent (row {parent_row}): {child_rows}"
            expect(page.get_by_role("columnheader", name="val_accuracy").first).to_be_visible()
            for run in children:
                cell = page.locator(f'.ag-center-cols-container [role="row"][row-index="{child_rows[run.info.run_id]}"] '
                                    '[role="gridcell"][col-id*="val_accuracy"]')
                cell.scroll_into_view_if_needed()
                expect(cell).to_be_in_viewport()  # on screen, not merely in the DOM
                shown = cell.inner_text().strip()
                assert re.fullmatch(r"[0-9.e-]+", shown), shown
                assert float(shown) == pytest.approx(run.data.metrics["val_accuracy"], rel=1e-6)
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    RESULTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, RESULTS / shot.name)
    print(f"screenshot: {shot} (copied to {RESULTS / shot.name})")


def _close_side_panels(page) -> None:
    """Fold away the assistant side panel, which takes a third of the width (if this MLflow has one)."""
    close = page.locator('button[aria-label="Close"]')
    for i in range(close.count()):
        if close.nth(i).is_visible():
            close.nth(i).click()
            return


def _add_column(page, metric: str) -> None:
    """Show a metric column through the run list's "Columns" menu."""
    page.get_by_role("button", name="Columns").click()
    page.get_by_placeholder("Search columns").fill(metric)
    page.locator(".du-bois-light-tree-title").filter(has_text=re.compile(rf"^\s*{re.escape(metric)}\s*$")).click()
    page.keyboard.press("Escape")
