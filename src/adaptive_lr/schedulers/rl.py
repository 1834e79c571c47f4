"""Learned LR controllers: a contextual Thompson-sampling bandit and linear Q-learning over multiplicative actions.

Both controllers share one loop (`LearnedController._update`), run once per tick:

  1) features  x_t = the `FeatureExtractor` vector of the new observation (slope, noise, trends, log LR, progress);
  2) reward    r_t = the improvement of the watched metric over the interval that just ran, with the LR chosen at
               the previous tick: `clip(-relative_change / reward_scale, -1, 1)` after sign normalisation (so a
               falling loss and a rising accuracy both earn r > 0); a non-finite value earns -1, and so does a
               blow-up (the value grew by more than `divergence_rise` relative, e.g. doubled);
  3) learn     from (x_{t-1}, a_{t-1}, r_t, x_t): the bandit updates its posterior of the chosen arm, Q-learning
               takes one TD step;
  4) act       pick a factor from `factors` (Thompson sample / epsilon-greedy), except that a non-finite value or
               a blow-up forces the smallest factor and caps later LRs below the one that blew up (a safety
               shield: exploration must not walk back over the edge), and the first value (nothing to compare
               with yet) keeps the LR (the factor closest to 1);
  5) apply     multiply every group's LR by the factor and clamp to [min_lr, max_lr].

Everything is small numpy math (d = 7 including a bias, 5 actions): a decision takes tens of microseconds and
never touches autograd. Randomness comes from one seeded `numpy.random.Generator` whose state is in `state_dict`,
so a run saved at tick k and loaded into a fresh instance continues with the identical actions and LRs.

What was learned (posterior / Q weights, never counters or the RNG) is `learned_state()`; `save_learned(path)`
writes it with the class name, feature names and factors, and `warm_start=path` loads it at construction after
checking that all three match. `reset` starts a new trajectory (features, RNG, previous action) but keeps what
was learned: that is what a warm start carries from one run to the next.

Learning across runs (`adaptive_lr.meta`) uses three switches, all on their one-run defaults unless set:
- `online` (default True): step 3 above, learning from each interval's reward within the run. Off, nothing
  learned changes during the run.
- `explore` (default True): Thompson sampling / epsilon-greedy in step 4. Off, the learner acts greedily on what it
  has learned (the bandit on its posterior means, Q-learning with epsilon 0) and never draws a random number.
  A policy with both off is *frozen*: what a meta-trained policy is at evaluation.
- `record_episode` (default False): every decision's `[1, features]` and action index are kept (`episode`, in
  `state_dict` and in `save_learned`'s file), so that a whole-run reward can be credited to each of them after the
  run: `learn_episode(episode, G)` treats every decision as having earned the run's return `G` (a Monte-Carlo
  return without discounting); the bandit adds `(phi, G)` to the chosen arm's data, Q-learning takes one NLMS step
  of `w_a` towards `G`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adaptive_lr.checks import is_number
from adaptive_lr.schedulers.base import (
    BoundedPolicy,
    Observation,
    PolicyConfigError,
    require_bool,
    require_in_range,
    require_int,
    require_positive,
)
from adaptive_lr.schedulers.features import FeatureExtractor

DEFAULT_FACTORS: tuple[float, ...] = (0.5, 0.8, 1.0, 1.25, 2.0)


def _require_factors(factors: Sequence[float]) -> tuple[float, ...]:
    values = list(factors) if isinstance(factors, Sequence) or hasattr(factors, "__iter__") else None
    ok = (
        values is not None
        and len(values) >= 2
        and all(is_number(f) and f > 0 for f in values)
        and len(set(values)) == len(values)
        and min(values) < 1.0
    )
    if not ok:
        raise PolicyConfigError(
            f"factors must be >= 2 distinct positive multipliers including one < 1 (for forced cuts), got {factors!r}"
        )
    return tuple(float(f) for f in values)  # type: ignore[union-attr]


def _best(values: np.ndarray, factors: Sequence[float]) -> int:
    """Index of the highest value; ties (e.g. a learner that knows nothing yet) go to the factor closest to 1."""
    best = np.flatnonzero(values == values.max())
    return int(min(best, key=lambda a: abs(math.log(factors[a]))))


def _action_name(factor: float) -> str:
    return "scale_down" if factor < 1.0 else "scale_up" if factor > 1.0 else "keep"


class LearnedController(BoundedPolicy):
    """The shared loop of the learned controllers (module docstring); subclasses implement the learner.

    Args:
        monitor: metric to watch (from config, e.g. "val_loss"); mode: "min" or "max".
        factors: the actions, multipliers of the LR (default 0.5, 0.8, 1, 1.25, 2); distinct, one < 1.
        min_lr, max_lr, min_factor, max_factor: the LR bounds (`BoundedPolicy`): by default each group within
            [start x 1e-4, start x 100]; with min_lr and max_lr set, those (a start outside them is an error).
        horizon: ticks in a full run, for the `progress` feature (`${trainer.max_epochs}` in configs); int >= 1.
        val_key, grad_norm_key: optional metrics for the `val_trend` / `grad_trend` features (None: feature is 0).
        reward_scale: the relative improvement per tick that earns the full reward 1; > 0. Per-epoch losses move
            by a few percent, so 0.1 makes typical rewards O(0.1-1) without saturating.
        divergence_rise: a relative rise of the watched value above this within one tick is a blow-up, treated
            like NaN (reward -1, forced cut); None disables it. Default 1.0: the value more than doubled.
        seed: seed of the controller's RNG (exploration); int >= 0.
        warm_start: path of a file written by `save_learned`, or None. The file's `provenance` (a meta-trained
            policy's: families, runs, seeds, commit, reward) is kept as `self.provenance`.
        online, explore, record_episode: learning within the run, exploring, and keeping the run's decisions for
            a whole-run reward (module docstring); bools. `online=False, explore=False` is a frozen policy.
    """

    learns = True  # the runner keeps `save_learned` of every run (policy_learned.pt) for warm starts

    def __init__(
        self,
        monitor: str = "val_loss",
        mode: str = "min",
        factors: Sequence[float] = DEFAULT_FACTORS,
        min_lr: float | None = None,
        max_lr: float | None = None,
        min_factor: float = 1e-4,
        max_factor: float = 100.0,
        horizon: int = 100,
        val_key: str | None = "val_loss",
        grad_norm_key: str | None = None,
        reward_scale: float = 0.1,
        reward_baseline: bool = True,
        divergence_rise: float | None = 1.0,
        seed: int = 0,
        warm_start: str | None = None,
        online: bool = True,
        explore: bool = True,
        record_episode: bool = False,
    ) -> None:
        super().__init__(min_lr, max_lr, min_factor, max_factor)
        self.online, self.explore, self.record_episode = (
            require_bool(name, flag) for name, flag in
            (("online", online), ("explore", explore), ("record_episode", record_episode)))
        # a frozen policy (no learning, nothing recorded) has nothing worth saving after a run
        self.learns = online or record_episode
        self._watch(monitor, mode)
        self.factors = _require_factors(factors)
        self.reward_scale = require_positive("reward_scale", reward_scale)
        self.reward_baseline = require_bool("reward_baseline", reward_baseline)
        self.divergence_rise = None if divergence_rise is None else require_positive("divergence_rise", divergence_rise)
        self.seed = require_int("seed", seed, minimum=0)
        self.features = FeatureExtractor(monitor, mode, horizon, val_key=val_key, grad_norm_key=grad_norm_key)
        self.dim = 1 + len(self.features.names)  # a bias, then the features
        self.cut_index = int(np.argmin(self.factors))
        self.rng = np.random.Generator(np.random.PCG64(self.seed))
        # trajectory state (all in state_dict; cleared by reset)
        self.prev_phi: np.ndarray | None = None  # [1, features] at the last decision
        self.prev_action: int | None = None  # index into factors chosen at the last decision
        self.ceilings: list[float] | None = None  # per-group LR ceilings set by blow-ups (None: none yet)
        self.episode: list[tuple[list[float], int]] = []  # with record_episode: ([1, features], action) per decision
        self._init_learned()
        self.warm_started = False
        self.provenance: dict[str, Any] | None = None
        if warm_start is not None:
            self._warm_start(warm_start)

    # -- the learner (subclasses) --------------------------------------------------------------------------------
    def _init_learned(self) -> None:
        raise NotImplementedError

    def _learn(self, phi: np.ndarray, action: int, reward: float, phi_next: np.ndarray) -> dict[str, float]:
        raise NotImplementedError

    def _choose(self, phi: np.ndarray) -> tuple[int, dict[str, float]]:
        """The learner's action at `phi`: exploring when `self.explore`, else greedy without drawing from the RNG."""
        raise NotImplementedError

    def _learn_return(self, phi: np.ndarray, action: int, ret: float) -> None:
        """Credit the whole-run return `ret` to the decision (phi, action) (`learn_episode`)."""
        raise NotImplementedError

    def learned_state(self) -> dict[str, Any]:
        """The learned parameters only (plain nested lists), no counters and no RNG."""
        raise NotImplementedError

    def _learned_shapes(self) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def _set_learned(self, arrays: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    # -- driving -------------------------------------------------------------------------------------------------
    def _lrs_at_reset(self) -> list[float]:
        self.features.reset()
        self.rng = np.random.Generator(np.random.PCG64(self.seed))
        self.prev_phi, self.prev_action, self.ceilings = None, None, None
        self.episode = []
        return super()._lrs_at_reset()

    def _update(self, obs: Observation) -> list[float]:
        value = self.monitored_value(obs)  # raises KeyError naming the available metrics if the monitor is missing
        raw = float(obs.metrics[self.monitor])
        # 1) features of the new observation, with the LR the interval ran at
        x = self.features.update(obs, lr=self.lrs[0], base_lr=self.base_lrs[0], tick=self.tick)
        phi = np.array([1.0, *x])
        change = self.features.last_change
        # 2) reward of the previous action; a blow-up is as bad as NaN
        nonfinite = not math.isfinite(value)
        blowup = not nonfinite and self.divergence_rise is not None and change > self.divergence_rise
        if nonfinite or blowup:
            reward = -1.0
        elif math.isnan(change):
            reward = math.nan  # the first finite value: nothing to compare with
        else:
            baseline = self.features.trend_before if self.reward_baseline else 0.0
            clip = self.features.clip
            reward = min(max(-(min(max(change, -clip), clip) - baseline) / self.reward_scale, -1.0), 1.0)
        # 3) learn from the last transition
        info: dict[str, float] = {}
        if self.online and self.prev_action is not None and self.prev_phi is not None and not math.isnan(reward):
            info.update(self._learn(self.prev_phi, self.prev_action, reward, phi))
        # 4) act: the shield forces the deepest cut and caps later LRs below the ones that blew up (exploration
        #    must not walk back over the edge); otherwise the learner picks
        if nonfinite or blowup:
            index, action = self.cut_index, "cut_nonfinite" if nonfinite else "cut_rise"
            cut = [lr * self.factors[index] for lr in self.lrs]
            self.ceilings = cut if self.ceilings is None else [min(a, b) for a, b in zip(cut, self.ceilings, strict=True)]
        elif math.isnan(reward):
            # the first finite value only sets the reference: with nothing learned about this run, no exploring
            index = _best(np.zeros(len(self.factors)), self.factors)
            action = _action_name(self.factors[index])
        else:
            index, chosen = self._choose(phi)
            info.update(chosen)
            action = _action_name(self.factors[index])
        self.prev_phi, self.prev_action = phi, index
        if self.record_episode:  # every decision of the run, for a whole-run reward (`learn_episode`)
            self.episode.append((phi.tolist(), index))
        # 5) apply the factor to every group within [min_lr, max_lr]
        factor = self.factors[index]
        lrs = [self._clamp(lr * factor, i) for i, lr in enumerate(self.lrs)]
        if self.ceilings is not None:
            lrs = [self._clamp(min(lr, ceiling)) for lr, ceiling in zip(lrs, self.ceilings, strict=True)]
        extra = {**dict(zip(self.features.names, x, strict=True)), "reward": reward, "multiplier": factor, **info}
        return self._decided(action, lrs, raw, extra)

    # -- learning across runs -------------------------------------------------------------------------------------
    @property
    def frozen(self) -> bool:
        """Neither learning within a run nor exploring: a meta-trained policy at evaluation."""
        return not self.online and not self.explore

    def learn_episode(self, episode: Sequence[tuple[Sequence[float], int]], ret: float) -> None:
        """Credit one run's return `ret` (a finite number, e.g. in [-1, 1]) to every decision of that run's
        `episode` (as recorded with `record_episode`): the Monte-Carlo target of each decision is `ret`."""
        if not math.isfinite(ret):
            raise ValueError(f"an episode's return must be finite, got {ret!r}")
        for phi, action in episode:
            vector = np.asarray(phi, dtype=float)
            if vector.shape != (self.dim,) or not 0 <= int(action) < len(self.factors):
                raise ValueError(f"episode decision ({list(phi)!r}, {action!r}) does not fit {self.dim} features "
                                 f"and {len(self.factors)} actions")
            self._learn_return(vector, int(action), float(ret))

    # -- learned-policy persistence ------------------------------------------------------------------------------
    def load_learned(self, learned: Mapping[str, Any]) -> None:
        """Set the learned parameters from `learned_state()` output; a missing key or wrong shape is named."""
        arrays = {}
        for key, shape in self._learned_shapes().items():
            if key not in learned:
                raise PolicyConfigError(f"learned state lacks {key!r}; has {sorted(learned)}")
            array = np.asarray(learned[key], dtype=float)
            if array.shape != shape:
                raise PolicyConfigError(f"learned {key!r} has shape {array.shape}, expected {shape}")
            arrays[key] = array.copy()
        self._set_learned(arrays)

    def save_learned(self, path: str | Path, provenance: Mapping[str, Any] | None = None) -> None:
        """Write the learned parameters with what they mean (class, feature names, factors) for `warm_start`; with
        `record_episode`, also this run's decisions (`episode`); `provenance` (plain values) is stored as given."""
        saved: dict[str, Any] = {
            "class": type(self).__name__,
            "feature_names": list(self.features.names),
            "factors": list(self.factors),
            "learned": self.learned_state(),
        }
        if self.record_episode:
            saved["episode"] = [[list(phi), int(action)] for phi, action in self.episode]
        if provenance is not None:
            saved["provenance"] = dict(provenance)
        torch.save(saved, Path(path))

    def _warm_start(self, path: str | Path) -> None:
        path = Path(path)
        if not path.is_file():
            raise PolicyConfigError(f"warm_start file {str(path)!r} does not exist")
        saved = torch.load(path, map_location="cpu", weights_only=True)
        expected = {
            "class": type(self).__name__,
            "feature_names": list(self.features.names),
            "factors": list(self.factors),
        }
        for key, want in expected.items():
            got = saved.get(key) if isinstance(saved, Mapping) else None
            if got != want:
                raise PolicyConfigError(f"warm_start {str(path)!r} has {key}={got!r}, this controller needs {want!r}")
        try:
            self.load_learned(saved["learned"])
        except PolicyConfigError as err:
            raise PolicyConfigError(f"warm_start {str(path)!r}: {err}") from err
        self.warm_started = True
        self.provenance = saved.get("provenance")

    # -- persistence ---------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "features": self.features.state_dict(),
            "rng": self.rng.bit_generator.state,
            "prev_phi": None if self.prev_phi is None else self.prev_phi.tolist(),
            "prev_action": self.prev_action,
            "ceilings": None if self.ceilings is None else list(self.ceilings),
            "learned": self.learned_state(),
            "warm_started": self.warm_started,
            "episode": [[list(phi), int(action)] for phi, action in self.episode],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.features.load_state_dict(state["features"])
        self.rng = np.random.Generator(np.random.PCG64())
        self.rng.bit_generator.state = dict(state["rng"])
        self.prev_phi = None if state["prev_phi"] is None else np.asarray(state["prev_phi"], dtype=float)
        self.prev_action = None if state["prev_action"] is None else int(state["prev_action"])
        self.ceilings = None if state["ceilings"] is None else [float(c) for c in state["ceilings"]]
        self.load_learned(state["learned"])
        self.warm_started = bool(state["warm_started"])
        # a checkpoint written before episodes were recorded has none
        self.episode = [([float(x) for x in phi], int(action)) for phi, action in state.get("episode", [])]


class ThompsonBandit(LearnedController):
    """Contextual bandit: per action a Bayesian linear regression of the reward on [1, features], Thompson sampling.

    Each action keeps discounted data statistics `A = sum gamma^k phi phi^T`, `b = sum gamma^k r phi`; its
    posterior is `N(mu, noise^2 (prior_precision I + A)^-1)` with `mu = (prior_precision I + A)^-1 b`. At each tick
    one weight vector per action is sampled (its spread scaled by `exploration`) and the action with the highest
    sampled reward is taken. `discount` forgets old data, so an action that was good while the LR was too low is
    re-examined once the situation changes (the reward of an action is not stationary over a run).

    Args (beyond `LearnedController`'s):
        prior_precision: ridge strength of the prior N(0, noise^2 / prior_precision); > 0.
        noise: assumed reward noise std; > 0.
        exploration: multiplier of the posterior spread when sampling (0 would be greedy); >= 0.
        discount: per-tick forgetting of every action's data, in (0, 1] (1: never forget).
    """

    def __init__(
        self,
        prior_precision: float = 1.0,
        noise: float = 0.5,
        exploration: float = 1.0,
        discount: float = 0.95,
        **kwargs: Any,
    ) -> None:
        self.prior_precision = require_positive("prior_precision", prior_precision)
        self.noise = require_positive("noise", noise)
        self.exploration = require_in_range("exploration", exploration, 0.0, math.inf, low_closed=True)
        self.discount = require_in_range("discount", discount, 0.0, 1.0, high_closed=True)
        super().__init__(**kwargs)

    def _init_learned(self) -> None:
        n, d = len(self.factors), self.dim
        self.precision = np.zeros((n, d, d))  # data part of each action's posterior precision
        self.b = np.zeros((n, d))

    def _posterior(self, a: int) -> tuple[np.ndarray, np.ndarray]:
        """Mean and Cholesky factor L (L L^T = precision matrix) of action `a`'s posterior."""
        precision = self.precision[a] + self.prior_precision * np.eye(self.dim)
        return np.linalg.solve(precision, self.b[a]), np.linalg.cholesky(precision)

    def _learn(self, phi: np.ndarray, action: int, reward: float, phi_next: np.ndarray) -> dict[str, float]:
        # every action forgets a little each tick; only the taken one gains the new data point
        self.precision *= self.discount
        self.b *= self.discount
        self.precision[action] += np.outer(phi, phi)
        self.b[action] += reward * phi
        return {}

    def _learn_return(self, phi: np.ndarray, action: int, ret: float) -> None:
        # across runs nothing is forgotten: every run's decisions are data of the same, stationary question
        self.precision[action] += np.outer(phi, phi)
        self.b[action] += ret * phi

    def _choose(self, phi: np.ndarray) -> tuple[int, dict[str, float]]:
        if not self.explore:  # greedy on the posterior means, no random draw
            means = np.array([self._posterior(a)[0] @ phi for a in range(len(self.factors))])
            index = _best(means, self.factors)
            return index, {"mean_reward": float(means[index])}
        z = self.rng.standard_normal((len(self.factors), self.dim))  # always drawn in full: a fixed RNG stream
        sampled, means = np.empty(len(self.factors)), np.empty(len(self.factors))
        for a in range(len(self.factors)):
            mu, chol = self._posterior(a)
            # theta = mu + s L^-T z has covariance s^2 (L L^T)^-1, the posterior's
            theta = mu + self.exploration * self.noise * np.linalg.solve(chol.T, z[a])
            sampled[a], means[a] = theta @ phi, mu @ phi
        index = _best(sampled, self.factors)
        return index, {"sampled_reward": float(sampled[index]), "mean_reward": float(means[index])}

    def learned_state(self) -> dict[str, Any]:
        return {"precision": self.precision.tolist(), "b": self.b.tolist()}

    def _learned_shapes(self) -> dict[str, tuple[int, ...]]:
        n, d = len(self.factors), self.dim
        return {"precision": (n, d, d), "b": (n, d)}

    def _set_learned(self, arrays: dict[str, np.ndarray]) -> None:
        self.precision, self.b = arrays["precision"], arrays["b"]


class QLearning(LearnedController):
    """Linear Q-learning: `Q(x, a) = w_a . [1, x]`, epsilon-greedy, one normalised TD step per tick.

    The TD step is `w_a += alpha * delta * phi / |phi|^2` with `delta = r + gamma max_b Q(x', b) - Q(x, a)`:
    normalising by `|phi|^2` (NLMS) keeps the update stable whatever the feature magnitudes. Exploration is
    `epsilon_t = max(epsilon_min, epsilon * epsilon_decay^(t-1))` at tick t; ties between equal Q values (e.g. the
    all-zero start) go to the factor closest to 1.

    Args (beyond `LearnedController`'s):
        alpha: learning rate of the TD step, in (0, 1].
        gamma: discount of future rewards, in [0, 1) (the LR persists, so an action's effect outlives its tick).
        epsilon, epsilon_min: initial and final exploration probability, in [0, 1], epsilon_min <= epsilon.
        epsilon_decay: per-tick decay of epsilon, in (0, 1].
    """

    def __init__(
        self,
        alpha: float = 0.3,
        gamma: float = 0.5,
        epsilon: float = 0.1,
        epsilon_decay: float = 0.97,
        epsilon_min: float = 0.02,
        **kwargs: Any,
    ) -> None:
        self.alpha = require_in_range("alpha", alpha, 0.0, 1.0, high_closed=True)
        self.gamma = require_in_range("gamma", gamma, 0.0, 1.0, low_closed=True)
        self.epsilon = require_in_range("epsilon", epsilon, 0.0, 1.0, low_closed=True, high_closed=True)
        self.epsilon_decay = require_in_range("epsilon_decay", epsilon_decay, 0.0, 1.0, high_closed=True)
        self.epsilon_min = require_in_range("epsilon_min", epsilon_min, 0.0, self.epsilon, low_closed=True,
                                            high_closed=True)
        super().__init__(**kwargs)

    def _init_learned(self) -> None:
        self.weights = np.zeros((len(self.factors), self.dim))

    def _learn(self, phi: np.ndarray, action: int, reward: float, phi_next: np.ndarray) -> dict[str, float]:
        target = reward + self.gamma * float(np.max(self.weights @ phi_next))
        td = target - float(self.weights[action] @ phi)
        self.weights[action] += self.alpha * td * phi / float(phi @ phi)
        return {"td_error": td}

    def _learn_return(self, phi: np.ndarray, action: int, ret: float) -> None:
        # the Monte-Carlo target: the run's return itself, no bootstrapping from Q(x', .)
        self.weights[action] += self.alpha * (ret - float(self.weights[action] @ phi)) * phi / float(phi @ phi)

    def current_epsilon(self) -> float:
        if not self.explore:
            return 0.0
        return max(self.epsilon_min, self.epsilon * self.epsilon_decay ** max(self.tick - 1, 0))

    def _choose(self, phi: np.ndarray) -> tuple[int, dict[str, float]]:
        epsilon = self.current_epsilon()
        q = self.weights @ phi
        explore = self.explore and bool(self.rng.random() < epsilon)
        if explore:
            index = int(self.rng.integers(len(self.factors)))
        else:
            index = _best(q, self.factors)  # without evidence (all-zero start) change the LR least
        return index, {"epsilon": epsilon, "explored": float(explore), "q": float(q[index])}

    def learned_state(self) -> dict[str, Any]:
        return {"weights": self.weights.tolist()}

    def _learned_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"weights": (len(self.factors), self.dim)}

    def _set_learned(self, arrays: dict[str, np.ndarray]) -> None:
        self.weights = arrays["weights"]
