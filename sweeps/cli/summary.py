"""What ``numpynet-sweep`` prints when it ends: the table of the best trials, the
baseline and refit verdict, the registered model, and where to look in the
MLflow UI (:func:`ui_command`, :func:`runs_page_url`)."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path


def print_summary(summary, file=None) -> None:
    out = file or sys.stdout
    counts = ", ".join(f"{n} {state.lower()}" for state, n in sorted(summary.counts.items()))
    print(f"\nstudy {summary.study_name!r}: {counts or 'no trials'} (budget {summary.n_trials})", file=out)
    if summary.top:
        print(f"\n{'trial':>5}  {'value':>8}  params", file=out)
        for row in summary.top:
            params = "  ".join(f"{k}={_short(v)}" for k, v in row["params"].items())
            print(f"{row['number']:>5}  {row['value']:>8.4f}  {params}", file=out)
    if summary.best_number is not None:
        print(
            f"\nbest: trial {summary.best_number}, value {summary.best_value:.4f}, MLflow run {summary.best_run_id}",
            file=out,
        )
    if summary.baseline_number is not None:
        value = "-" if summary.baseline_value is None else f"{summary.baseline_value:.4f}"
        print(f"baseline: trial {summary.baseline_number} ({summary.baseline_state.lower()}), value {value}", file=out)
    _print_refit(summary.refit, out)
    if summary.registered_version:
        from numpynet.sweeps.search.best_model import registered_model_name

        print(
            f"registered model: models:/{registered_model_name(summary.study_name)}/{summary.registered_version}",
            file=out,
        )
    print(f"parent run: {summary.parent_run_id}", file=out)
    if summary.tracking_uri.startswith(("http://", "https://")):
        print(
            f"\nsee the runs in the MLflow UI:\n  {runs_page_url(summary.tracking_uri, summary.experiment_id)}",
            file=out,
        )
    else:
        print(
            f"\nopen the MLflow UI on this store:\n  {ui_command(summary.tracking_uri)}\n"
            f"then the runs table:\n  {runs_page_url(UI_ADDRESS, summary.experiment_id)}",
            file=out,
        )


def _print_refit(refit: dict[str, float], out) -> None:
    """The refit's test figures and the paired verdict over the robustness seeds."""
    if not refit:
        return
    from numpynet.sweeps.search.verdict import METHOD

    if "refit.chosen.test_accuracy" in refit:
        flag = "  COLLAPSED: one class for every test row" if refit.get("refit.chosen.collapsed") else ""
        print(
            f"best configuration trained again (sweep.refit_rule) and tested once: test_accuracy "
            f"{refit['refit.chosen.test_accuracy']:.4f}{flag}",
            file=out,
        )
    if "robustness.seeds" not in refit:
        return
    n = int(refit["robustness.seeds"])
    print(f"\nover {n} seeds (test_accuracy, mean +- sd):", file=out)
    for who in ("chosen", "baseline"):
        key = f"robustness.{who}.test_accuracy"
        if f"{key}_mean" in refit:
            lost = int(refit.get(f"robustness.{who}.collapsed", 0))
            flag = f"  ({lost} of {n} refits COLLAPSED: one class for every test row)" if lost else ""
            print(f"  {who:<8}  {refit[key + '_mean']:.4f} +- {refit[key + '_sd']:.4f}{flag}", file=out)
    key = "robustness.paired_diff.test_accuracy"
    if f"{key}_mean" in refit:
        print(
            f"  paired difference (chosen - baseline): {refit[key + '_mean']:+.4f}, 95 % CI "
            f"[{refit[key + '_ci95_low']:+.4f}, {refit[key + '_ci95_high']:+.4f}]",
            file=out,
        )
        print(
            f"    interval over the {n} seeds and the {int(refit['robustness.test_rows'])} test rows ({METHOD}); "
            f"over the seeds alone it would be [{refit[key + '_seeds_only_ci95_low']:+.4f}, "
            f"{refit[key + '_seeds_only_ci95_high']:+.4f}]",
            file=out,
        )


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def mlflow_command() -> str:
    """The ``mlflow`` of this very interpreter, as a shell command that works without an activated venv."""
    script = Path(sys.executable).with_name("mlflow")
    if script.is_file() and os.access(script, os.X_OK):
        return shlex.quote(str(script))
    return f"{shlex.quote(sys.executable)} -m mlflow"


UI_PORT = 5000
UI_ADDRESS = f"http://127.0.0.1:{UI_PORT}"
UI_ENV = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false"  # one server process (benchmarks/mlflow_ui_memory.py)


def ui_command(tracking_uri: str) -> str:
    """The command that serves the MLflow UI on a local store ``tracking_uri`` at ``UI_ADDRESS``.

    Printed, so a password in the URI is masked: the user has it already. One server worker:
    MLflow's default four each import the whole server (about 12 s to the first answer on two
    cores instead of 5 s) to serve one person's browser. No job runner: MLflow 3's GenAI jobs
    (a runner and eight huey consumers, about 1.5 GB of memory) serve nothing numpynet records.
    """
    from numpynet.sweeps.recording.redact import mask_url

    return (
        f"{UI_ENV} {mlflow_command()} ui --backend-store-uri {shlex.quote(mask_url(tracking_uri))} "
        f"--port {UI_PORT} --workers 1"
    )


def runs_page_url(ui_address: str, experiment_id: str | None) -> str:
    """The experiment's runs table in MLflow 3's UI (password masked).

    MLflow 3.18's UI opens an experiment on the view of its GenAI / Model
    training switch (GenAI unless the browser remembers otherwise);
    ``workflowType=machine_learning`` in the address selects Model training.
    """
    from numpynet.sweeps.recording.redact import mask_url

    base = mask_url(ui_address.rstrip("/"))
    if experiment_id is None:
        return f"{base}/#/experiments?workflowType=machine_learning"
    return f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
