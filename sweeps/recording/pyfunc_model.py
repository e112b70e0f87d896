"""The MLflow ``pyfunc`` model of a saved numpynet network, logged "from code".

MLflow runs this file to build the model (``mlflow.models.set_model`` at the
bottom); the harness never imports it. The network travels as the core's own
``.npz`` file (the model artifact named ``weights``), so nothing is pickled,
and the model's bundled code is the core alone (``numpynet/``, numpy only):
this file imports nothing of the harness, so a model server needs only
mlflow, numpy and that copy.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np
from mlflow.models import set_model

WEIGHTS_ARTIFACT = "weights"  # the key of the .npz file in the model's artifacts
SCALING_ARTIFACT = "scaling"  # standardised training data: the training rows' mean and std (.npz)


class NumpynetModel(mlflow.pyfunc.PythonModel):
    """``predict(X)`` returns class labels, exactly as ``NeuralNetwork.predict`` (for a fold ensemble: the
    class with the highest mean probability over its fold models).

    ``X`` is a 2-D array (or a DataFrame of numeric columns), one row per
    sample, columns in the training data's feature order, values as the data
    file holds them: a network trained on standardised features
    (``data.standardize``) carries the training rows' mean and std and
    applies them first. Pass
    ``params={"proba": True}`` for class probabilities instead, columns in
    the order of the network's ``classes_``.
    """

    def load_context(self, context: Any) -> None:
        from numpynet import NeuralNetwork

        # one network, or the fold models of a fold ensemble: weights, weights_1, weights_2, ...
        keys = sorted(
            (k for k in context.artifacts if k == WEIGHTS_ARTIFACT or k.startswith(WEIGHTS_ARTIFACT + "_")),
            key=lambda k: int(k.rpartition("_")[2]) if k != WEIGHTS_ARTIFACT else 0,
        )
        self.networks = [NeuralNetwork.load(context.artifacts[k]) for k in keys]
        self.classes = self.networks[0].classes_
        self.scaling = None
        if SCALING_ARTIFACT in context.artifacts:  # trained on standardised features: scale as training did
            with np.load(context.artifacts[SCALING_ARTIFACT], allow_pickle=False) as saved:
                self.scaling = (saved["mean"], saved["std"])

    # ``np.ndarray`` is a hint MLflow accepts without inferring a schema from
    # it; the logged signature (a float64 tensor) does the input validation.
    def predict(self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None) -> np.ndarray:
        X = model_input.to_numpy() if hasattr(model_input, "to_numpy") else np.asarray(model_input)
        X = X.astype(np.float64, copy=False)
        if self.scaling is not None:
            X = (X - self.scaling[0]) / self.scaling[1]
        proba = np.mean([network.predict_proba(X) for network in self.networks], axis=0)
        if params and params.get("proba"):
            return proba
        return self.classes[np.argmax(proba, axis=1)]


set_model(NumpynetModel())
