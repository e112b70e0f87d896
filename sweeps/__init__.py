"""The harness around the numpy network: Hydra configs in, MLflow runs out.

Kept import-light on purpose: ``import sweeps`` must not pull in mlflow, hydra
or matplotlib; the submodules import what they need.
"""
