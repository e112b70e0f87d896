"""The MLflow UI as a user sees it: a finished sweep opened in headless Chromium.

Debian's ``chromium`` (``make browser`` installs it; nothing downloads a
browser) driven by Playwright's Python package. The test starts an MLflow
server on 127.0.0.1 over the store a small sweep left behind, opens the
experiment's run list, expands the sweep's parent run and checks that every
trial's run is listed under it with its ``val_accuracy``. A screenshot is kept
in the test's folder (the tests write nothing into the checkout).

It also opens the address the sweep printed (it must land on the runs table,
not on the GenAI overview), the chart view with the trials' curves overlaid,
one trial's own curves, and the optional Optuna dashboard on the study's
journal file. With ``NUMPYNET_SCREENSHOTS=DIR`` (e.g. ``docs/img``) those
pages are also saved there as the docs' pictures; CI leaves it unset.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from numpynet.sweeps.recording.names import TRIAL as TAG_TRIAL
from tests.helpers.commands import run_command
from tests.helpers.services import MlflowServer, free_port

pytestmark = pytest.mark.timeout(300)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
STUDY, EXPERIMENT, N_TRIALS = "ui-check", "ui-check", 12  # more than the 10 runs MLflow charts by default


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory) -> Path:
    """A small finished sweep in the local default store (SQLite under ./mlruns)."""
    root = tmp_path_factory.mktemp("ui-sweep")
    proc = run_command(
        "numpynet-sweep",
        [
            f"sweep.study_name={STUDY}",
            f"sweep.n_trials={N_TRIALS}",  # the default pruner: complete and pruned
            f"tracking.experiment={EXPERIMENT}",
            "train.epoch=15",
            "train.decay_interval=5",
            "network.hidden=[16]",
            "tracking.log_plots=false",
        ],
        root,
        tracking_uri=None,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (root / "sweep.out").write_text(proc.stdout)
    return root


@pytest.fixture(scope="module")
def sweep_server(finished_sweep, tmp_path_factory) -> MlflowServer:
    """``mlflow server`` on the sweep's store, one for the module's MLflow tests (a start costs seconds)."""
    root = tmp_path_factory.mktemp("ui-server")
    store = f"sqlite:///{finished_sweep / 'mlruns' / 'mlflow.db'}"
    with MlflowServer(store, root / "served-artifacts", root / "server.log") as server:
        yield server


@contextlib.contextmanager
def _mlflow_page(server: MlflowServer, width: int, height: int):
    """``(server, page)``: a new headless chromium (its own empty profile) on the sweep's server."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(30_000)
            yield server, page
        finally:
            browser.close()


def _row_index(page, run_id: str) -> int:
    """The grid row (``row-index``) holding the link to ``run_id``."""
    link = page.locator(f'a[href$="/runs/{run_id}"]').first
    link.wait_for(state="visible", timeout=30_000)
    return int(link.evaluate("a => a.closest('[role=\"row\"]').getAttribute('row-index')"))


@pytest.mark.slow
def test_trial_runs_are_listed_under_their_parent_with_val_accuracy(finished_sweep, sweep_server, tmp_path):
    from playwright.sync_api import expect

    assert CHROMIUM.is_file(), "Debian's chromium is needed: run `make browser` (apt-get install chromium)"
    store = f"sqlite:///{finished_sweep / 'mlruns' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], "", max_results=100)
    [parent] = [r for r in runs if r.data.tags.get("numpynet.role") == "sweep"]
    children = [r for r in runs if TAG_TRIAL in r.data.tags]
    assert len(children) == N_TRIALS

    shot = tmp_path / "mlflow_ui_browser.png"
    with _mlflow_page(sweep_server, 1800, 1000) as (server, page):
        page.goto(f"{server.url}/#/experiments/{experiment.experiment_id}/runs")
        # the React app loads the run list asynchronously: wait for the parent run's name
        expect(page.get_by_text(parent.info.run_name, exact=True).first).to_be_visible(timeout=60_000)
        _close_side_panels(page)
        _add_column(page, "val_accuracy")
        # nested runs are folded under their parent: unfold it
        page.locator('button[data-component-id*="runnamecellrenderer"]').first.click()

        parent_row = _row_index(page, parent.info.run_id)
        child_rows = {r.info.run_id: _row_index(page, r.info.run_id) for r in children}
        assert sorted(child_rows.values()) == list(range(parent_row + 1, parent_row + 1 + N_TRIALS)), (
            f"trial runs directly under their parent (row {parent_row}): {child_rows}"
        )
        expect(page.get_by_role("columnheader", name="val_accuracy").first).to_be_visible()
        for run in children:
            cell = page.locator(
                f'.ag-center-cols-container [role="row"][row-index="{child_rows[run.info.run_id]}"] '
                '[role="gridcell"][col-id*="val_accuracy"]'
            )
            cell.scroll_into_view_if_needed()
            expect(cell).to_be_in_viewport()  # on screen, not merely in the DOM
            shown = cell.inner_text().strip()
            assert re.fullmatch(r"[0-9.e-]+", shown), shown
            assert float(shown) == pytest.approx(run.data.metrics["val_accuracy"], rel=1e-6)
        page.screenshot(path=str(shot), full_page=True)
    _keep_file(shot)
    print(f"screenshot: {shot}")


def _visible_name(page, run_id: str) -> str:
    """The part of a run's name the runs table shows: the characters left of the cell's right edge."""
    link = page.locator(f'a[href$="/runs/{run_id}"]').first
    link.scroll_into_view_if_needed()
    return link.evaluate("""a => {
        const cell = a.closest('[role="gridcell"]').getBoundingClientRect();
        let clip = cell.right;
        for (let e = a; e && e !== document.body; e = e.parentElement) {
            if (getComputedStyle(e).overflow !== 'visible') clip = Math.min(clip, e.getBoundingClientRect().right);
        }
        const walker = document.createTreeWalker(a, NodeFilter.SHOW_TEXT);
        const node = walker.nextNode(), range = document.createRange();
        range.selectNodeContents(node);
        if (range.getBoundingClientRect().right > clip) {  // cut: an ellipsis takes the end of the room
            const dots = document.createElement('span');
            dots.textContent = '\u2026';
            a.appendChild(dots);
            clip -= dots.getBoundingClientRect().width;
            dots.remove();
        }
        let shown = '';
        for (let i = 1; i <= node.length; i++) {
            range.setStart(node, 0); range.setEnd(node, i);
            if (range.getBoundingClientRect().right > clip) break;
            shown = node.data.slice(0, i);
        }
        return shown;
    }""")


#: MLflow 3.18's Assistant panel: open on the first visit to a local server, a third of the page wide
ASSISTANT_CLOSE = '[data-component-id="mlflow.assistant.chat_panel.close"]'


def _close_side_panels(page) -> None:
    """Close the Assistant panel with its x, as docs/training.md says (the browser remembers it)."""
    close = page.locator(ASSISTANT_CLOSE)
    if close.count() and close.first.is_visible():
        close.first.click()


def _add_column(page, metric: str) -> None:
    """Show a metric column through the run list's "Columns" menu."""
    page.get_by_role("button", name="Columns").click()
    page.get_by_placeholder("Search columns").fill(metric)
    page.locator(".du-bois-light-tree-title").filter(has_text=re.compile(rf"^\s*{re.escape(metric)}\s*$")).click()
    page.keyboard.press("Escape")


def _expect_curves(page) -> None:
    """Plotly has drawn curves on the page (a chart's title shows before its lines do)."""
    from playwright.sync_api import expect

    expect(page.locator(".js-plotly-plot path.js-line").first).to_be_visible(timeout=30_000)


def _keep(page, tmp_path: Path, name: str) -> None:
    """A screenshot in the test's folder, and in $NUMPYNET_SCREENSHOTS (the docs' pictures) when set."""
    page.screenshot(path=str(tmp_path / name))
    _keep_file(tmp_path / name)


def _keep_file(shot: Path) -> None:
    folder = os.environ.get("NUMPYNET_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(folder) / shot.name)


def _printed_runs_address(root: Path) -> str:
    lines = (root / "sweep.out").read_text().splitlines()
    i = lines.index("then the runs table:")
    return lines[i + 1].strip()


@pytest.mark.slow
def test_printed_address_shows_the_sweep_at_a_glance(finished_sweep, sweep_server, tmp_path):
    """What docs/training.md ("What you see") promises on the checked MLflow: the printed address lands
    on the runs table; the Assistant panel closes for good with its x; each trial's name shows its
    outcome and value; the chart view shows every trial after "Show all runs"; a trial's page is in
    the Model-training view after the one click the docs name; the registry's pop-up closes for good."""
    from playwright.sync_api import expect

    store = f"sqlite:///{finished_sweep / 'mlruns' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment.tags.get("mlflow.experimentKind") == "custom_model_development"
    printed = _printed_runs_address(finished_sweep)
    assert printed == (
        f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning"
    )
    runs = client.search_runs([experiment.experiment_id], "", max_results=100)
    [parent] = [r for r in runs if r.data.tags.get("numpynet.role") == "sweep"]
    children = [r for r in runs if TAG_TRIAL in r.data.tags]
    child = children[-1]

    with _mlflow_page(sweep_server, 1400, 800) as (server, page):
        page.goto(printed.replace("http://127.0.0.1:5000", server.url))
        # the runs table, not the GenAI "Overview" (Traces) page
        expect(page.get_by_text(parent.info.run_name, exact=True).first).to_be_visible(timeout=60_000)
        expect(page.get_by_role("heading", name="Runs")).to_be_visible()
        expect(page.get_by_text("Model registry").first).to_be_visible()
        assert page.get_by_role("heading", name="Overview").count() == 0
        _close_side_panels(page)  # its x, once
        page.reload()
        expect(page.get_by_text(parent.info.run_name, exact=True).first).to_be_visible(timeout=60_000)
        assert not (page.locator(ASSISTANT_CLOSE).count() and page.locator(ASSISTANT_CLOSE).first.is_visible()), (
            "the Assistant panel came back after a reload"
        )
        page.locator('button[data-component-id*="runnamecellrenderer"]').first.click()  # unfold the trials
        expect(page.locator(f'a[href$="/runs/{child.info.run_id}"]').first).to_be_visible()
        states = set()
        for run in children:  # each trial's outcome and value on screen in its name, no column added
            state = run.data.tags["numpynet.trial_state"]
            states.add(state)
            shown = _visible_name(page, run.info.run_id)
            if state == "FAIL":
                assert shown.startswith("failed"), shown
            else:
                match = re.match(r"([0-9.]+) complete |pruned@(\d+) ", shown)  # the whole word: cut short no
                assert match, f"{run.info.run_name!r} shows only {shown!r}"
                if state == "COMPLETE":  # its objective value (sweep.metric=val_accuracy, objective final)
                    assert match[1] and float(match[1]) == pytest.approx(run.data.metrics["val_accuracy"], abs=5e-4)
                else:  # the epoch it was pruned at (a pruned trial has no objective value)
                    assert match[2] == run.data.tags["numpynet.pruned_epoch"]
        assert states >= {"COMPLETE", "PRUNED"}, states
        _keep(page, tmp_path, "mlflow-runs-table.png")

        # chart view: one chart per metric; MLflow charts the first 10 runs until "Show all runs"
        page.locator('label:has(input[name="runs-view-mode"][value="CHART"])').click()
        page.get_by_placeholder("Search metric charts").fill("val_accuracy")
        expect(page.get_by_role("heading", name="val_accuracy", exact=True)).to_be_visible(timeout=30_000)
        _expect_curves(page)  # the charts draw after their titles
        trial_names = {r.info.run_name for r in children}
        assert len(trial_names & _charted_runs(page)) < N_TRIALS, "MLflow charted every run without being asked"
        page.locator('[data-testid="experiment-view-runs-visibility-column-header"]').click()
        page.get_by_text("Show all runs", exact=True).click()  # the one line in docs/training.md
        expect(page.locator(".js-plotly-plot path.js-line").first).to_be_visible()
        end = time.monotonic() + 30  # a deadline against a hang: the charts redraw asynchronously
        while not trial_names <= _charted_runs(page) and time.monotonic() < end:
            time.sleep(0.2)
        assert trial_names <= _charted_runs(page), sorted(trial_names - _charted_runs(page))
        _keep(page, tmp_path, "mlflow-chart-view.png")

        # a trial opened from the table: MLflow 3.18 opens it in the GenAI view ("Evaluation runs") until
        # "Model training" is clicked once there (it goes back to the runs table, and the browser remembers)
        page.locator('label:has(input[name="runs-view-mode"][value="TABLE"])').click()
        page.locator(f'a[href$="/runs/{child.info.run_id}"]').first.click()
        expect(page.get_by_text(child.info.run_name, exact=True).first).to_be_visible()
        if page.get_by_text("Evaluation runs", exact=True).count():
            page.get_by_text("Model training", exact=True).first.click()
            expect(page.get_by_role("heading", name="Runs")).to_be_visible()
            expect(page.get_by_text(parent.info.run_name, exact=True).first).to_be_visible()
            link = page.locator(f'a[href$="/runs/{child.info.run_id}"]').first
            if not link.is_visible():  # the trials folded again
                page.locator('button[data-component-id*="runnamecellrenderer"]').first.click()
            link.click()
            expect(page.get_by_text(child.info.run_name, exact=True).first).to_be_visible()
        assert page.get_by_text("Evaluation runs", exact=True).count() == 0, "the trial opened in the GenAI view"
        page.get_by_role("tab", name="Model metrics").click()
        page.get_by_placeholder("Search metric charts").fill("_cost")
        expect(page.get_by_role("heading", name="train_cost", exact=True)).to_be_visible(timeout=30_000)
        expect(page.get_by_role("heading", name="val_cost", exact=True)).to_be_visible()
        _expect_curves(page)
        _keep(page, tmp_path, "mlflow-trial-curves.png")

        # the model registry's "new Model Registry UI" pop-up: its x, once
        page.goto(f"{server.url}/#/models")
        expect(page.get_by_text(f"numpynet-{STUDY}", exact=True).first).to_be_attached(timeout=30_000)
        promo = page.get_by_role("dialog")
        if promo.count() and promo.first.is_visible():
            promo.first.get_by_role("button", name="Close").click()
        page.reload()
        expect(page.get_by_text(f"numpynet-{STUDY}", exact=True).first).to_be_visible(timeout=30_000)
        assert not (promo.count() and promo.first.is_visible()), "the registry's pop-up came back after a reload"


def _charted_runs(page) -> set[str]:
    """Names of the runs drawn in the page's line charts (Plotly traces are named "<run> (<metric>)")."""
    names = page.evaluate("""() => Array.from(document.querySelectorAll('.js-plotly-plot'))
        .flatMap(gd => (gd.data || []).filter(t => t.mode && t.mode.includes('lines')).map(t => t.name || ''))""")
    return {re.sub(r" \([^()]*\)$", "", name) for name in names}


@pytest.mark.slow
def test_optuna_dashboard_shows_the_trials_and_their_intermediate_values(finished_sweep, tmp_path):
    """``optuna-dashboard mlruns/optuna/journal.log``, as docs/sweeps.md prints it, on the sweep's journal."""
    from playwright.sync_api import expect, sync_playwright

    journal = finished_sweep / "mlruns" / "optuna" / "journal.log"
    assert journal.is_file()
    script = Path(sys.executable).with_name("optuna-dashboard")
    assert script.is_file(), "the [dashboard] extra is needed: pip install -e '.[dashboard]'"
    port = free_port()
    log = open(tmp_path / "dashboard.log", "wb")
    proc = subprocess.Popen(
        [str(script), "mlruns/optuna/journal.log", "--host", "127.0.0.1", "--port", str(port)],
        cwd=finished_sweep,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/api/studies", proc, tmp_path / "dashboard.log")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                # tall enough for the whole study page: a full-page shot repeats the sticky header
                page = browser.new_page(viewport={"width": 1400, "height": 2200})
                page.set_default_timeout(30_000)
                page.goto(f"http://127.0.0.1:{port}/dashboard")
                page.get_by_text(re.compile(rf"^\d+\. {re.escape(STUDY)}$")).first.click()  # the study list
                expect(page.get_by_text("Intermediate values", exact=True).first).to_be_attached(timeout=30_000)
                for number in range(N_TRIALS):  # one curve per trial, named in the plot's legend
                    expect(page.get_by_text(f"trial #{number}", exact=True).first).to_be_attached()
                # the study names its objective (study.set_metric_names): not "Objective 0"
                expect(page.get_by_text("val_accuracy").first).to_be_attached()
                assert page.get_by_text("Objective 0").count() == 0
                _expect_curves(page)  # the plots draw after their titles
                _keep(page, tmp_path, "optuna-dashboard.png")
            finally:
                browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    import requests

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, log.read_text()[-2000:]
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer in {timeout} s: {log.read_text()[-2000:]}")
