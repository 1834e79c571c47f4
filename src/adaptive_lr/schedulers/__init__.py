"""Pure learning-rate policies (no Lightning) and a `torch.optim.lr_scheduler` wrapper for plain loops."""

from adaptive_lr.schedulers.base import ACTIONS, Decision, LRPolicy, Observation, PolicyConfigError
from adaptive_lr.schedulers.baselines import Cosine, Fixed, StepDecay, Warmup
from adaptive_lr.schedulers.heuristic import Heuristic
from adaptive_lr.schedulers.hypergradient import Hypergradient
from adaptive_lr.schedulers.line_search import LineSearch
from adaptive_lr.schedulers.rl import QLearning, ThompsonBandit
from adaptive_lr.schedulers.torch_wrapper import PolicyLR

__all__ = [
    "ACTIONS",
    "Cosine",
    "Decision",
    "Fixed",
    "Heuristic",
    "Hypergradient",
    "LRPolicy",
    "LineSearch",
    "Observation",
    "PolicyConfigError",
    "PolicyLR",
    "QLearning",
    "StepDecay",
    "ThompsonBandit",
    "Warmup",
]
