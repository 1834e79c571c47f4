"""Experiment grids: the grid format (`format`), the grid's side of the MLflow store (`store`) and the engines that
run its cells (`engines`); `adaptive_lr.experiment` re-exports their public names."""
