"""Views: Lightning callbacks that let a researcher watch a scheduler work, each switched on from config
(`viz=[params,latent,boundary]`) and writing under `<run folder>/viz/<view>/` and the run's TensorBoard log."""
from adaptive_lr.callbacks.views.base import View, ViewConfigError
from adaptive_lr.callbacks.views.boundary import DecisionBoundaryView
from adaptive_lr.callbacks.views.latent import LatentView, TSNEEmbedding, UMAPEmbedding
from adaptive_lr.callbacks.views.params import ParamView, effective_lr

__all__ = ["DecisionBoundaryView", "LatentView", "ParamView", "TSNEEmbedding", "UMAPEmbedding", "View",
           "ViewConfigError", "effective_lr"]
