"""The best trial's model at the end of a sweep: its figures, its pyfunc model on the parent, its registry entry.

Independent of the study plots (:mod:`numpynet.sweeps.search.end_of_sweep` runs
both at once): everything here reads the best trial's own MLflow run (its
weights and curves) and writes to that run, the parent run and the model
registry.
"""

from __future__ import annotations

import hashlib
import logging
import re
import tempfile
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from optuna.trial import FrozenTrial

from numpynet.sweeps.errors import StoreError
from numpynet.sweeps.recording import names
from numpynet.sweeps.recording.names import STUDY as TAG_REGISTERED_STUDY
from numpynet.sweeps.recording.names import TRIAL as TAG_REGISTERED_TRIAL
from numpynet.sweeps.search import budget, optuna_attrs
from numpynet.sweeps.search.run_records import unreadable_run_file

log = logging.getLogger(__name__)


def registered_model_name(study_name: str) -> str:
    """The registered model of a study: one name per study, never shared.

    A name that needs no change is kept (``numpynet-digits-default``). When
    characters had to be replaced, a short hash of the exact study name is
    appended, so that ``x y`` and ``x-y`` get different models. (A study
    deliberately named like another's hashed form is caught by the
    ``numpynet.study`` tag check when registering.)
    """
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", study_name)
    if safe != study_name:
        safe += "-" + hashlib.sha256(study_name.encode()).hexdigest()[:8]
    return "numpynet-" + safe


def _owned_by_another_study(client: MlflowClient, name: str, study_name: str) -> str | None:
    """The study that registered model ``name`` belongs to, if it is not ``study_name``."""
    try:
        owner = client.get_registered_model(name).tags.get(TAG_REGISTERED_STUDY)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    return owner if owner is not None and owner != study_name else None


def log_model_from_run(
    client: MlflowClient, child_run_id: str, parent_run_id: str, base_cfg, figures: bool = False
) -> str:
    """Log the weights of a trial's run as a pyfunc model on the parent run.

    With ``figures``, the trial's own figures (curves, learning rate,
    confusion matrix, test predictions) are drawn into its run now: a
    sweep's trials draw none while the search runs, the best one gets them
    here, once.
    """
    from numpynet import NeuralNetwork
    from numpynet.sweeps.recording.artifacts import log_pyfunc_model, test_metrics, write_plots
    from numpynet.sweeps.training.data import load_dataset
    from numpynet.sweeps.training.ensemble import load_run_model, members

    dataset = load_dataset(base_cfg.data)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            network = load_run_model(client, child_run_id, tmp)  # a network, or a refit's fold ensemble
        except Exception as exc:  # deleted artifacts, a moved store: a fault, said in one line
            raise unreadable_run_file(child_run_id, "weights", exc) from exc
        if (
            figures
            and isinstance(network, NeuralNetwork)
            and _figures_to_draw(client, child_run_id, dataset, Path(tmp) / "drawn")
        ):
            # the weights file keeps the costs only: the other curves are the run's own metrics
            for attr, metric in (
                ("costs_", "train_cost"),
                ("val_costs_", "val_cost"),
                ("train_accuracies_", "train_accuracy"),
                ("val_accuracies_", "val_accuracy"),
                ("learning_rates_", "learning_rate"),
            ):
                rows = sorted(client.get_metric_history(child_run_id, metric), key=lambda m: m.step)
                setattr(network, attr, [m.value for m in rows])
            folder = Path(tmp) / "plots"
            write_plots(folder, network, dataset, test_metrics(network, dataset)[1])
            client.log_artifacts(child_run_id, str(folder), artifact_path="plots")
    return log_pyfunc_model(client, parent_run_id, network, members(network), dataset)


def _figures_to_draw(client: MlflowClient, run_id: str, dataset, scratch: Path) -> list[str]:
    """The run's figures that are missing or cut short (a full disk, a killed writer): a resumed sweep
    draws them again. Each is checked to be a whole PNG, not only listed."""
    from numpynet.sweeps.recording.artifacts import figure_names, whole_png

    expected = figure_names(dataset)
    if not client.list_artifacts(run_id, "plots"):
        return expected
    drawn = Path(client.download_artifacts(run_id, "plots", str(scratch)))
    broken = [name for name in expected if not whole_png(drawn / name)]
    if broken and len(broken) < len(expected):
        log.warning("figures %s of run %s are missing or cut short: drawing them again", ", ".join(broken), run_id)
    return broken


def log_and_register_best(client: MlflowClient, plan, best: FrozenTrial, child_run_id: str, base_cfg) -> str | None:
    """Log the best trial's weights as a pyfunc model on the parent; register it once."""
    sweep = plan.sweep
    try:
        model_uri = log_model_from_run(
            client,
            child_run_id,
            plan.parent_run_id,
            base_cfg,
            figures=child_run_id == best.user_attrs.get(optuna_attrs.ATTR_RUN_ID),
        )
    except StoreError:
        raise
    except Exception as exc:  # the store refused the model: a fault, not a reason to end with status 0
        raise StoreError(
            f"could not log the best model (trial {best.number}, run {child_run_id}) in the "
            f"MLflow store: {type(exc).__name__}: {exc}"[:800]
        ) from exc
    if not sweep.register_model:
        return None
    name = registered_model_name(sweep.study_name)
    with budget.budget_lock(plan.storage_url, sweep.study_name + ":registry"):
        owner = _owned_by_another_study(client, name, sweep.study_name)
        if owner is not None:
            log.warning(
                "not registering the best model of study %r: the registered model %s belongs to "
                "study %r; rename one of the studies",
                sweep.study_name,
                name,
                owner,
            )
            return None
        sign = 1.0 if sweep.maximize else -1.0
        for version in client.search_model_versions(f"name='{name}'"):
            if version.tags.get(TAG_REGISTERED_STUDY, sweep.study_name) != sweep.study_name:
                continue  # another study's version: its trial numbers mean nothing here
            if version.tags.get(TAG_REGISTERED_TRIAL) == str(best.number):
                return version.version  # this best is registered already (by us or another worker)
            value = version.tags.get(names.BEST_VALUE)
            if value is not None and sign * float(value) >= sign * best.value:
                return version.version  # a worker that finished later registered a better trial already
        try:
            client.create_registered_model(name, tags={TAG_REGISTERED_STUDY: sweep.study_name})
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        version = client.create_model_version(
            name,
            source=model_uri,
            run_id=plan.parent_run_id,
            model_id=model_uri.removeprefix("models:/"),
            tags={
                TAG_REGISTERED_TRIAL: str(best.number),
                TAG_REGISTERED_STUDY: sweep.study_name,
                names.BEST_VALUE: str(best.value),
                names.TRIAL_RUN_ID: child_run_id,
            },
        )
        log.info("registered %s version %s (trial %d)", name, version.version, best.number)
        return version.version
