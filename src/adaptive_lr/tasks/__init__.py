"""LightningModules, one per task kind."""
from adaptive_lr.tasks.classification import ClassificationTask

__all__ = ["ClassificationTask"]
