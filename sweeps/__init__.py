"""The harness around the numpy network, imported as ``numpynet.sweeps``: Hydra configs in, MLflow runs out.

One subpackage per concern: ``training`` (running one training),
``search`` (the study, its workers and trials), ``recording`` (everything
written to MLflow) and ``cli`` (the commands). Kept import-light on purpose:
``import numpynet.sweeps`` pulls in neither mlflow, hydra nor matplotlib; the
submodules import what they need.
"""
