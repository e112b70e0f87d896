"""Model-from-code entry point: MLflow runs this file to build the pyfunc model.

See :func:`sweeps.artifacts.log_pyfunc_model`; not meant to be imported.
"""

from mlflow.models import set_model

from sweeps.pyfunc_model import NumpynetModel

set_model(NumpynetModel())
