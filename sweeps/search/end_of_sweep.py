"""The end of a sweep on its MLflow parent run: what the study found, and what to keep of it.

- metrics ``best_value``, ``baseline_value`` and trial counts; params ``best.<path>``; tags with the
  best and baseline trial numbers, the best trial's child run id and the refit's run;
- the study's plots and ``trials.csv`` (:mod:`numpynet.sweeps.recording.sweep_report`), and
  ``best_config.yaml`` (the best trial's resolved config, which ``numpynet-train`` accepts as is);
- the best trial's weights (or the refit's) as a pyfunc model, registered in the model registry as
  ``numpynet-<study>`` (one new version per new best trial), and its figures
  (:mod:`numpynet.sweeps.search.best_model`, on a helper thread while the study plots are drawn).
"""

from __future__ import annotations

import logging
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import optuna
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from omegaconf import OmegaConf

from numpynet.sweeps.recording import names, sweep_report
from numpynet.sweeps.recording.mlflow_limits import batches
from numpynet.sweeps.recording.names import CONFIG_ARTIFACT
from numpynet.sweeps.search import best_model, optuna_attrs
from numpynet.sweeps.search.baseline import baseline_trial
from numpynet.sweeps.search.run_records import unreadable_run_file
from numpynet.sweeps.search.sweep_summary import SweepSummary, best_trial, state_counts, top_trials
from numpynet.sweeps.training.config import TrackingConfig
from numpynet.sweeps.training.interpolations import escaped

log = logging.getLogger(__name__)

# Makes the resolved config a complete Hydra primary config: the project's
# logging and no outputs/ folders, exactly as conf/config.yaml sets them.
BEST_CONFIG_HEADER = """\
# The best trial's resolved config. Train it again with
#   numpynet-train --config-dir DIR --config-name best_config   (DIR: this file's folder)
defaults:
  - override hydra/job_logging: numpynet
  - override hydra/hydra_logging: none
  - _self_
hydra:
  run:
    dir: .
  output_subdir: null
  job:
    chdir: false
"""


def summarise(study: optuna.Study, client: MlflowClient, plan, base_cfg, refit_report=None) -> "Any":
    """Log the study's outcome on the parent run; returns a SweepSummary.

    With a :class:`numpynet.sweeps.search.refit.RefitReport`, its figures go on the parent
    too and the refit of the chosen configuration is the registered model.

    The two halves share nothing but the store, so they run at once: the best
    trial's figures, model and registry entry (:mod:`numpynet.sweeps.search.best_model`)
    on a helper thread, the study plots, ``trials.csv`` and the parent's
    figures on this one. Much of either half waits for SQLite or the disk, or
    encodes PNGs, without holding the GIL. Both are done when this returns.
    """
    sweep = plan.sweep
    parent = plan.parent_run_id
    counts = state_counts(study)
    summary = SweepSummary(
        sweep.study_name,
        plan.storage_url,
        plan.tracking_uri,
        parent,
        sweep.n_trials,
        counts,
        top=top_trials(study, sweep.top_k),
    )
    metrics = {f"trials_{state.lower()}": float(n) for state, n in counts.items()}
    best = best_trial(study)
    model_run = (
        refit_report.chosen_run_id
        if refit_report is not None
        else (best.user_attrs.get(optuna_attrs.ATTR_RUN_ID) if best is not None else None)
    )
    if sweep.cv and refit_report is None:
        log.info(
            "study %s: cross-validated trials keep no weights and there is no refit: no model to register",
            sweep.study_name,
        )
        model_run = None
    metric = sweep.metric
    # Optuna's plotting warns: kept off the helper thread (see there)
    figures = sweep_report.build_study_plots(study, metric) if sweep.log_study_plots else {}
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="numpynet-report") as helper:
        model = None
        if best is not None and model_run:
            model = helper.submit(best_model.log_and_register_best, client, plan, best, model_run, base_cfg)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            sweep_report.save_study_plots(figures, out)
            sweep_report.write_trials_csv(study, out / "trials.csv")
            if best is not None:
                summary.best_number, summary.best_value = best.number, best.value
                summary.best_params = dict(best.params)
                summary.best_run_id = best.user_attrs.get(optuna_attrs.ATTR_RUN_ID)
                metrics["best_value"] = float(best.value)
                for chunk in batches(params=[Param(f"best.{k}", str(v)) for k, v in best.params.items()]):
                    client.log_batch(parent, **chunk)
                client.set_tag(parent, names.BEST_TRIAL, str(best.number))
            baseline = baseline_trial(study)
            if baseline is not None:
                summary.baseline_number, summary.baseline_state = baseline.number, baseline.state.name
                summary.baseline_value = baseline.value
                client.set_tag(parent, names.BASELINE_TRIAL, str(baseline.number))
                if baseline.value is not None:
                    metrics["baseline_value"] = float(baseline.value)
            if refit_report is not None:
                summary.refit = refit_report.metrics()
                metrics.update(summary.refit)
                if refit_report.chosen_run_id:
                    client.set_tag(parent, names.REFIT_RUN_ID, refit_report.chosen_run_id)
                for tag, value in refit_report.tags().items():
                    client.set_tag(parent, tag, value)
            if best is not None and summary.best_run_id:
                client.set_tag(parent, names.BEST_RUN_ID, summary.best_run_id)
                _copy_best_config(client, summary.best_run_id, out)
            for chunk in batches(metrics=[Metric(k, v, int(time.time() * 1000), 0) for k, v in metrics.items()]):
                client.log_batch(parent, **chunk)
            client.log_artifacts(parent, str(out), artifact_path="study")
        if model is not None:
            summary.registered_version = model.result()  # its error, if any, is raised here
    return summary


def as_training_config(text: str) -> str:
    """A trial's recorded config, with a plain training run's model and plot logging, resolving nothing.

    A trial records ``tracking.log_model`` / ``log_plots`` as the trial did them
    (off unless the study asks); training the best configuration again with
    ``best_config.yaml`` is a run of its own, which logs both, as any
    ``numpynet-train`` run does by default.
    """
    # a ${...} in the record (planted: a trial logs its config resolved) is written escaped, as text
    cfg = OmegaConf.create(escaped(OmegaConf.to_container(OmegaConf.create(text), resolve=False)))
    if "tracking" in cfg:
        cfg.tracking.log_model, cfg.tracking.log_plots = TrackingConfig.log_model, TrackingConfig.log_plots
    return OmegaConf.to_yaml(cfg)


def _copy_best_config(client: MlflowClient, run_id: str, out: Path) -> None:
    try:
        local = client.download_artifacts(run_id, CONFIG_ARTIFACT, str(out / "_download"))
    except Exception as exc:  # deleted artifacts, a moved store: a fault, said in one line
        raise unreadable_run_file(run_id, CONFIG_ARTIFACT, exc) from exc
    (out / "best_config.yaml").write_text(BEST_CONFIG_HEADER + as_training_config(Path(local).read_text()))
    for leftover in (out / "_download").rglob("*"):
        if leftover.is_file():
            leftover.unlink()
    for d in sorted((out / "_download").rglob("*"), reverse=True):
        d.rmdir()
    (out / "_download").rmdir()
