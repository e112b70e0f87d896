"""The loops a user would write instead of ``numpynet-sweep``: the peers of the harness section.

    python -m benchmarks.peer_loops STUDY_FILE WORKDIR STUDY_NAME N_TRIALS BLAS_THREADS OUT_JSON [--per-epoch]

runs :func:`careful_loop` in a process of its own, as a user's script runs,
and writes what it returns to ``OUT_JSON``.

:func:`careful_loop` is what a careful user writes by hand around Optuna and
MLflow, with nothing of the harness but the network and the data:

- Optuna: a journal file storage, the study's sampler with its seed, the
  study's pruner; ``trial.report`` every epoch and ``trial.should_prune``
  honoured;
- MLflow: a SQLite store, one parent run, a nested run per trial with
  ``log_params``, the per-epoch curves sent once per trial with ``log_batch``
  (at most 1,000 metrics per call, MLflow's limit), then the trial's value
  and the test accuracy;
- the network: the study's fixed overrides composed once
  (``compose_config``), each trial's values set on a copy, built with
  ``build_network`` and trained with ``NeuralNetwork.fit`` on the data
  ``load_dataset`` gives, under a BLAS thread limit.

``careful_loop(..., per_epoch=True)`` is the tutorial loop: the same, but every
epoch's metrics go out at once with ``mlflow.log_metrics``.

A study is described by the keys of a study file (``conf/sweep/*.yaml``):
``metric``, ``direction``, ``objective`` (``final`` or ``best``),
``sampler``, ``pruner``, ``space`` (float / int / categorical parameters of
scalar values, with ``when`` conditions) and ``overrides``. Seeded alike and
fed the same values, the sampler proposes what the sweep's proposed: the
harness section checks that every trial's params equal the sweep's.
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

SAMPLERS = {"tpe": "TPESampler", "random": "RandomSampler"}
PRUNERS = {"none": "NopPruner", "median": "MedianPruner", "successive_halving": "SuccessiveHalvingPruner"}
BATCH = 1000  # MLflow's log_batch limit on metrics per call


def suggest(trial, space: dict[str, dict]) -> dict[str, Any]:
    """Every parameter of ``space`` whose ``when`` condition holds, in the order listed."""
    params: dict[str, Any] = {}
    for name, spec in space.items():
        if not all(params.get(dep) in allowed for dep, allowed in (spec.get("when") or {}).items()):
            continue
        if spec["type"] == "float":
            params[name] = trial.suggest_float(name, spec["low"], spec["high"], log=spec.get("log", False))
        elif spec["type"] == "int":
            params[name] = trial.suggest_int(name, spec["low"], spec["high"], log=spec.get("log", False))
        else:
            params[name] = trial.suggest_categorical(name, spec["choices"])
    return params


def careful_loop(
    study_body: dict[str, Any], workdir: Path, study_name: str, n_trials: int, blas_threads: int, per_epoch=False
) -> dict[str, Any]:
    """Run ``n_trials`` trials of the study into ``workdir``'s stores; returns the parent run's
    ``start`` and ``end`` (seconds since the epoch, as MLflow recorded them) and each trial's
    ``number``, ``state``, ``params``, ``value`` and ``run_id``."""
    import mlflow
    import optuna
    from mlflow.entities import Metric
    from omegaconf import OmegaConf
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    from threadpoolctl import threadpool_limits

    from numpynet.sweeps.training.config import compose_config
    from numpynet.sweeps.training.data import load_dataset
    from numpynet.sweeps.training.network_from_config import build_network

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no line per trial on the terminal
    metric, space = study_body.get("metric", "val_accuracy"), study_body["space"]
    maximize = study_body.get("direction", "maximize") == "maximize"
    best_epoch = study_body.get("objective", "final") == "best"
    sampler_spec, pruner_spec = dict(study_body.get("sampler") or {}), dict(study_body.get("pruner") or {})
    sampler = getattr(optuna.samplers, SAMPLERS[sampler_spec.pop("name", "tpe")])(**sampler_spec)
    pruner = getattr(optuna.pruners, PRUNERS[pruner_spec.pop("name", "none")])(**pruner_spec)
    storage = JournalStorage(JournalFileBackend(str(workdir / "journal.log")))
    direction = "maximize" if maximize else "minimize"
    study = optuna.create_study(
        study_name=study_name, storage=storage, sampler=sampler, pruner=pruner, direction=direction
    )
    mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
    mlflow.set_experiment(study_name)
    client = mlflow.MlflowClient()
    base = compose_config(study_body["overrides"])
    load_dataset(base.data)  # read the files before the clock starts
    COMPLETE, PRUNED, FAIL = (optuna.trial.TrialState[s] for s in ("COMPLETE", "PRUNED", "FAIL"))

    def run_trial(trial: optuna.Trial) -> dict[str, Any]:
        params = suggest(trial, space)
        cfg = copy.deepcopy(base)
        for key, value in params.items():
            OmegaConf.update(cfg, key, value, merge=False)
        data = load_dataset(cfg.data)
        rows, value, state = [], None, COMPLETE
        with mlflow.start_run(run_name=f"trial-{trial.number}", nested=True) as run:
            mlflow.log_params(params)

            def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
                nonlocal value
                if per_epoch:
                    mlflow.log_metrics(metrics, step=epoch)
                else:
                    now = int(time.time() * 1000)
                    rows.extend(Metric(k, float(v), now, epoch) for k, v in metrics.items())
                v = float(metrics[metric])
                if not best_epoch or math.isfinite(v) and (value is None or (v > value) == maximize):
                    value = v  # the objective so far: the last epoch's metric, or the best finite epoch's
                if value is not None and math.isfinite(value):
                    trial.report(value, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned()

            network = build_network(cfg, data.n_features, data.n_classes)
            try:
                network.fit(*data.training_arrays(), data.X_val, data.y_val, callback=on_epoch)
            except optuna.TrialPruned:
                state = PRUNED
            except Exception:
                state = FAIL  # diverged, or a value the network refuses: the study goes on
            for start in range(0, len(rows), BATCH):
                client.log_batch(run.info.run_id, metrics=rows[start : start + BATCH])
            if state == COMPLETE and (value is None or not math.isfinite(value)):
                state = FAIL  # no finite value to return
            if state == COMPLETE:
                test = network.evaluate(data.X_test, data.y_test)
                mlflow.log_metrics({"value": value, "test_accuracy": float(test["accuracy"])})
            else:
                mlflow.set_tag("state", state.name)
        study.tell(trial, value if state == COMPLETE else None, state=state)
        return {
            "number": trial.number,
            "state": state.name,
            "params": params,
            "value": value,
            "run_id": run.info.run_id,
        }

    with threadpool_limits(limits=blas_threads), mlflow.start_run(run_name=f"sweep:{study_name}") as parent:
        trials = [run_trial(study.ask()) for _ in range(n_trials)]
    info = client.get_run(parent.info.run_id).info
    return {"start": info.start_time / 1e3, "end": info.end_time / 1e3, "run_id": info.run_id, "trials": trials}


def main(argv: list[str] | None = None) -> int:
    import yaml

    args = list(sys.argv[1:] if argv is None else argv)
    per_epoch = "--per-epoch" in args
    args = [a for a in args if a != "--per-epoch"]
    if len(args) != 6:
        print(__doc__.splitlines()[2].strip(), file=sys.stderr)
        return 2
    study_file, workdir, study_name, n_trials, threads, out = args
    body = yaml.safe_load(Path(study_file).read_text())
    result = careful_loop(body, Path(workdir), study_name, int(n_trials), int(threads), per_epoch)
    Path(out).write_text(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
