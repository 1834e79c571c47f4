"""Pure learning-rate policies (no Lightning) and a `torch.optim.lr_scheduler` wrapper for plain loops.

The names below are a convenience for code (`from adaptive_lr.schedulers import Cosine`); configs name a policy
by its module (`_target_: adaptive_lr.schedulers.baselines.Cosine`), so a new policy needs no entry here."""

from adaptive_lr.schedulers.anneal import TerminalAnneal
from adaptive_lr.schedulers.base import ACTIONS, Decision, LRPolicy, Observation, PolicyConfigError
from adaptive_lr.schedulers.baselines import Cosine, Fixed, StepDecay
from adaptive_lr.schedulers.heuristic import Heuristic
from adaptive_lr.schedulers.hypergradient import Hypergradient
from adaptive_lr.schedulers.line_search import LineSearch
from adaptive_lr.schedulers.plateau import Plateau
from adaptive_lr.schedulers.plateau_feedback import PlateauFeedback
from adaptive_lr.schedulers.rl import QLearning, ThompsonBandit
from adaptive_lr.schedulers.schedules import (
    WSD,
    CosineWarmRestarts,
    Exponential,
    LinearDecay,
    MultiStep,
    OneCycle,
    Polynomial,
)
from adaptive_lr.schedulers.torch_wrapper import PolicyLR
from adaptive_lr.schedulers.warmup import Warmup

__all__ = [
    "ACTIONS",
    "Cosine",
    "CosineWarmRestarts",
    "Decision",
    "Exponential",
    "Fixed",
    "Heuristic",
    "Hypergradient",
    "LRPolicy",
    "LineSearch",
    "LinearDecay",
    "MultiStep",
    "Observation",
    "OneCycle",
    "Plateau",
    "PlateauFeedback",
    "PolicyConfigError",
    "PolicyLR",
    "Polynomial",
    "QLearning",
    "StepDecay",
    "TerminalAnneal",
    "ThompsonBandit",
    "WSD",
    "Warmup",
]
