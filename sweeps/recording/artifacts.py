"""What a finished (or stopped) run's network leaves in MLflow besides its curves.

The final test metrics, the weights as the core's ``.npz``, the figures and
the ``pyfunc`` model. The end-of-run files are written to a temporary folder
and sent with one ``log_artifacts`` call. What they read of the data is
:class:`RunData`; a fold ensemble's own files and its loading back are
:mod:`numpynet.sweeps.training.ensemble`'s.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from mlflow import MlflowClient

from numpynet import NeuralNetwork
from numpynet.sweeps.recording.names import MODEL_NAME, WEIGHTS_ARTIFACT
from numpynet.sweeps.recording.store import retry_locked

log = logging.getLogger(__name__)


class RunData(Protocol):
    """What a run's files read of its data (:class:`numpynet.sweeps.training.data.Dataset` has it)."""

    X_test: np.ndarray
    y_test: np.ndarray
    image_shape: tuple[int, ...] | None
    scaling: tuple[np.ndarray, np.ndarray] | None

    def label_name(self, label: Any) -> str: ...


class Classifier(Protocol):
    """A network, or a fold ensemble of networks (:mod:`numpynet.sweeps.training.ensemble`)."""

    def predict(self, X: np.ndarray) -> np.ndarray: ...

    def evaluate(self, X: np.ndarray, y: np.ndarray) -> dict[str, Any]: ...


MODEL_CODE = Path(__file__).with_name("pyfunc_model.py")  # run by MLflow, never imported here
MODEL_WEIGHTS_KEY = "weights"  # pyfunc_model.WEIGHTS_ARTIFACT
MODEL_SCALING_KEY = "scaling"  # pyfunc_model.SCALING_ARTIFACT


def test_metrics(network: Classifier, dataset: RunData) -> tuple[dict[str, float], np.ndarray]:
    """``test_*`` scalars and the confusion matrix of the current weights.

    ``test_predicted_classes`` counts the classes the network predicts for at
    least one test row: 1 means a collapsed model, a constant predictor
    (see :func:`collapsed`).
    """
    scores = network.evaluate(dataset.X_test, dataset.y_test)
    confusion = np.asarray(scores["confusion_matrix"])
    metrics = {f"test_{k}": float(v) for k, v in scores.items() if k != "confusion_matrix"}
    metrics["test_predicted_classes"] = float(np.count_nonzero(confusion.sum(axis=0)))
    return metrics, confusion


def collapsed(metrics: dict[str, float]) -> bool:
    """Whether a run's test figures come from a constant predictor: one class for every test row."""
    return metrics.get("test_predicted_classes", 0.0) == 1.0


def write_run_files(
    folder: Path,
    network: NeuralNetwork,
    dataset: RunData,
    confusion: np.ndarray | None,
    *,
    with_plots: bool,
) -> None:
    """The weights (and, when asked, the figures) of a finished run's network, as files under ``folder``."""
    weights = folder / WEIGHTS_ARTIFACT
    weights.parent.mkdir(parents=True, exist_ok=True)
    network.save(weights)
    if with_plots:
        write_plots(folder / "plots", network, dataset, confusion)


def write_plots(folder: Path, network: NeuralNetwork, dataset: RunData, confusion: np.ndarray | None) -> None:
    # imported here: a sweep's trials draw no figures, and their workers then never load matplotlib
    from numpynet.sweeps.recording import plots

    folder.mkdir(parents=True, exist_ok=True)
    history = {
        "train_cost": network.costs_,
        "val_cost": network.val_costs_,
        "train_accuracy": network.train_accuracies_,
        "val_accuracy": network.val_accuracies_,
    }
    plots.cost_curves(history, folder / "cost_curves.png")
    plots.learning_rate(network.learning_rates_, folder / "learning_rate.png")
    if confusion is not None:
        names = [dataset.label_name(c) for c in network.classes_]
        plots.confusion_matrix(confusion, names, folder / "confusion_matrix.png")
        if dataset.image_shape is not None:
            shown = slice(0, 25)
            predicted = network.predict(dataset.X_test[shown])
            plots.image_grid(
                dataset.X_test[shown],
                dataset.image_shape,
                predicted,
                dataset.y_test[shown],
                dataset.label_name,
                folder / "test_predictions.png",
            )


def figure_names(dataset: RunData, with_confusion: bool = True) -> list[str]:
    """The files :func:`write_plots` writes for ``dataset`` (with the confusion matrix, when it is given)."""
    names = ["cost_curves.png", "learning_rate.png"]
    if with_confusion:
        names.append("confusion_matrix.png")
        if dataset.image_shape is not None:
            names.append("test_predictions.png")
    return names


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"  # every whole PNG file ends with this chunk (type and CRC of an empty IEND)


def whole_png(path: Path) -> bool:
    """``path`` is a PNG file written to its end (not cut short by a full disk or a killed writer)."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(PNG_SIGNATURE))
            f.seek(0, 2)
            if f.tell() < len(PNG_SIGNATURE) + len(PNG_END):
                return False
            f.seek(-len(PNG_END), 2)
            return head == PNG_SIGNATURE and f.read() == PNG_END
    except OSError:
        return False


def log_pyfunc_model(
    client: MlflowClient, run_id: str, network: Classifier, networks: list[NeuralNetwork], dataset: RunData
) -> str:
    """Log the network (or fold ensemble) as an MLflow ``pyfunc`` model; return its ``models:/<model_id>`` URI.

    The LoggedModel is created explicitly in the run's experiment and
    ``mlflow.models.Model.log`` gets the run id, so no "active run" or
    "active experiment" global is involved. (``Model.log`` still reads the
    tracking URI from MLflow's global setting, which
    :func:`numpynet.sweeps.training.trainer.train` points at this run's store.)
    """
    import mlflow
    from mlflow.models import Model, infer_signature

    import numpynet

    run = client.get_run(run_id)
    scaled = np.asarray(dataset.X_test[:2], dtype=np.float64)
    # the model takes features as the data file holds them: standardised data is scaled inside it
    example = scaled if dataset.scaling is None else scaled * dataset.scaling[1] + dataset.scaling[0]
    signature = infer_signature(example, network.predict(scaled), params={"proba": False})
    logged = retry_locked(
        lambda: client.create_logged_model(
            run.info.experiment_id, name=MODEL_NAME, source_run_id=run_id, model_type="numpynet"
        )
    )
    with tempfile.TemporaryDirectory(prefix="numpynet-model-") as tmp:
        # an ensemble's fold models: weights, weights_1, ... (the model averages their probabilities)
        files = {
            MODEL_WEIGHTS_KEY + (f"_{k}" if k else ""): member.save(Path(tmp) / f"network{k}.npz")
            for k, member in enumerate(networks)
        }
        if dataset.scaling is not None:
            files[MODEL_SCALING_KEY] = str(Path(tmp) / "scaling.npz")
            np.savez(files[MODEL_SCALING_KEY], mean=dataset.scaling[0], std=dataset.scaling[1])
        Model.log(
            artifact_path=None,  # deprecated in MLflow 3 in favour of name, yet still positional
            name=MODEL_NAME,
            flavor=mlflow.pyfunc,
            run_id=run_id,
            model_id=logged.model_id,
            python_model=str(MODEL_CODE),  # "model from code": nothing pickled
            artifacts=files,
            signature=signature,
            input_example=example,
            # Listed rather than inferred: inference imports the model in a subprocess (slow).
            pip_requirements=[f"mlflow=={mlflow.__version__}", f"numpy=={np.__version__}"],
            # Bundle the core (numpy only) so the model loads where numpynet is not installed.
            code_paths=[str(Path(numpynet.__file__).parent)],
        )
    # models:/<id> names this very model even when a run holds several
    # (a sweep's parent run logs one per improvement of the best trial).
    return f"models:/{logged.model_id}"


def summary_metrics(network: NeuralNetwork) -> dict[str, Any]:
    """Final-epoch and best-epoch figures from the network's history."""
    out: dict[str, Any] = {}
    if network.costs_:
        out["train_cost"] = float(network.costs_[-1])
        out["train_accuracy"] = float(network.train_accuracies_[-1])
    if network.val_accuracies_:
        best = int(np.argmax(network.val_accuracies_))
        out.update(
            val_cost=float(network.val_costs_[-1]),
            val_accuracy=float(network.val_accuracies_[-1]),
            best_val_accuracy=float(network.val_accuracies_[best]),
            best_epoch=best,
        )
    return out
