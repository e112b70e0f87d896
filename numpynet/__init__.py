"""numpynet: a fully connected neural network written in numpy only.

The package imports numpy and the standard library only; the experiment
harness (Hydra, Optuna, MLflow) is the subpackage ``numpynet.sweeps`` (the
``sweeps/`` folder of the checkout), which ``import numpynet`` never loads.
``numpynet.sklearn`` (imported on its own) adapts the network to
scikit-learn's estimator API.
"""

import logging

from .exceptions import NotFittedError, TrainingDiverged
from .network import NeuralNetwork

__version__ = "0.1.0"
__all__ = ["NeuralNetwork", "NotFittedError", "TrainingDiverged", "__version__"]

logging.getLogger(__name__).addHandler(logging.NullHandler())
