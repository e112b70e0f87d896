"""The MLflow ``pyfunc`` wrapper around a saved numpynet network.

The network travels as the core's own ``.npz`` file (an MLflow artifact named
``weights``); this class only loads it and forwards ``predict``. The model is
logged "from code" (:mod:`sweeps.pyfunc_entry`), so nothing is pickled. Keep
this module light: a model server imports it to load the model.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np

WEIGHTS_ARTIFACT = "weights"


class NumpynetModel(mlflow.pyfunc.PythonModel):
    """``predict(X)`` returns class labels, exactly as ``NeuralNetwork.predict``.

    ``X`` is a 2-D array (or a DataFrame of numeric columns), one row per
    sample, columns in the training data's feature order. Pass
    ``params={"proba": True}`` for class probabilities instead, columns in
    the order of the network's ``classes_``.
    """

    def load_context(self, context: Any) -> None:
        from numpynet import NeuralNetwork

        self.network = NeuralNetwork.load(context.artifacts[WEIGHTS_ARTIFACT])

    # ``np.ndarray`` is a hint MLflow accepts without inferring a schema from
    # it; the logged signature (a float64 tensor) does the input validation.
    def predict(self, context: Any, model_input: np.ndarray, params: dict[str, Any] | None = None) -> np.ndarray:
        X = model_input.to_numpy() if hasattr(model_input, "to_numpy") else np.asarray(model_input)
        X = X.astype(np.float64, copy=False)
        if params and params.get("proba"):
            return self.network.predict_proba(X)
        return self.network.predict(X)
