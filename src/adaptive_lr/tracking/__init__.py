"""Tracking: TensorBoard + MLflow wiring, run ownership and per-epoch records."""
