"""The harness, recording: MLflow stores, runs, artifacts, plots, redaction."""
