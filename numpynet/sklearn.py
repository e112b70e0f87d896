"""scikit-learn adapter: ``NeuralNetworkClassifier``, a first-class estimator.

Import it explicitly (``from numpynet.sklearn import NeuralNetworkClassifier``);
this module imports scikit-learn, ``import numpynet`` does not. The shape is
the one of ``xgboost.sklearn`` and ``lightgbm.sklearn``: a thin layer that
subclasses scikit-learn's ``ClassifierMixin`` and ``BaseEstimator`` and
wraps the core ``numpynet.NeuralNetwork`` (same hyperparameters, same
training code, same ``save`` / ``load`` file format). What it adds is
scikit-learn's own input handling, so messages and behaviour are exactly
those scikit-learn's conformance suite expects:

- ``validate_data`` at ``fit`` (sets ``n_features_in_`` and, for data
  frames, ``feature_names_in_``), and with ``reset=False`` at prediction
  (feature count and names must match the fit);
- ``check_classification_targets``: continuous or multi-output targets are
  an "Unknown label type" error;
- ``check_is_fitted``: predicting before ``fit`` raises scikit-learn's
  ``NotFittedError``;
- sparse input is refused with scikit-learn's "dense data is required"
  ``TypeError``; NaN / inf, complex, empty and 1-D inputs with its wording.

``sklearn.utils.estimator_checks.check_estimator`` passes every check for
``NeuralNetworkClassifier(hidden_layer_sizes=(16,), optimizer="adam",
learning_rate=0.01, epoch=50)`` and for the defaults (scikit-learn 1.9: 54
passed, 1 skipped by scikit-learn itself: ``check_array_api_input`` runs only
with ``SCIPY_ARRAY_API=1``). ``tests/core/test_sklearn.py`` runs the suite
and asserts the count.

Excluded checks: none. One caveat that is a choice, not an exclusion:
giving the original's ``layer_dims`` fixes the input and output sizes, so an
estimator built with it rejects data of another shape (``ValueError`` naming
``layer_dims``), and the checks that fit on data of varying width fail for
it by design. Leave ``layer_dims`` at None (sizes inferred at ``fit``) for
scikit-learn model selection.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .network import DTYPES, NeuralNetwork

__all__ = ["NeuralNetworkClassifier"]


class NeuralNetworkClassifier(ClassifierMixin, BaseEstimator, NeuralNetwork):
    """``numpynet.NeuralNetwork`` as a scikit-learn classifier.

    Hyperparameters, fitted attributes, ``fit(X, y, X_val=None, y_val=None,
    callback=None)``, ``evaluate``, ``grad_check``, ``save`` and ``load`` are
    the core's (see ``numpynet.NeuralNetwork``); ``get_params``,
    ``set_params``, ``score`` and the repr are scikit-learn's.
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        return tags

    def _input_dtype(self):
        # an invalid dtype is reported by the core's own check, after this
        return DTYPES.get(self.dtype, np.float64) if isinstance(self.dtype, str) else np.float64

    def fit(self, X, y, X_val=None, y_val=None, callback=None) -> "NeuralNetworkClassifier":
        """Train on (X, y); see ``numpynet.NeuralNetwork.fit``."""
        X, y = validate_data(self, X, y, dtype=self._input_dtype())
        check_classification_targets(y)
        if X_val is not None:
            X_val = validate_data(self, X_val, reset=False, dtype=self._input_dtype())
        return NeuralNetwork.fit(self, X, y, X_val, y_val, callback)

    def _validated_input(self, X) -> np.ndarray:
        check_is_fitted(self)
        return validate_data(self, X, reset=False, dtype=self._theta.dtype)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, shape (n_samples, n_classes), columns in ``classes_`` order."""
        return NeuralNetwork.predict_proba(self, self._validated_input(X))

    def predict_log_proba(self, X) -> np.ndarray:
        """Natural log of ``predict_proba``."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X) -> np.ndarray:
        """Predicted labels (values of ``classes_``)."""
        return NeuralNetwork.predict(self, self._validated_input(X))

    def evaluate(self, X, y) -> dict:
        """Accuracy, precision, recall, F1, log loss and confusion matrix (see the core)."""
        return NeuralNetwork.evaluate(self, self._validated_input(X), y)
