"""A recurrent multi-step forecaster: a window of past observations (and, optionally, the covariates known for the
forecast window) in, the next `horizon` target values out."""

from __future__ import annotations

import torch
from torch import nn

from adaptive_lr.checks import require_int


class LSTMForecaster(nn.Module):
    """LSTM over the lookback window [B, L, in_features] -> its last hidden state (joined with the known-future
    covariates of the forecast window, [B, horizon, future_features] flattened, when `future_features` > 0) ->
    Linear -> [B, horizon].

    Direct multi-step output: all `horizon` values come from one forward pass (no autoregressive feedback), so a
    step costs the same for horizon 1 and 48. Feature 0 of the input is the target series itself; the others are
    covariates (e.g. temperature) observed over the same window. The head sees every future covariate value of
    every horizon step, so each step's forecast can use e.g. its own day-of-week dummy or exogenous forecast.
    """

    def __init__(
        self,
        in_features: int,
        hidden: int,
        num_layers: int,
        horizon: int,
        dropout: float = 0.0,
        future_features: int = 0,
    ) -> None:
        super().__init__()
        for name, value in (
            ("in_features", in_features),
            ("hidden", hidden),
            ("num_layers", num_layers),
            ("horizon", horizon),
        ):
            require_int(f"model.{name}", value, minimum=1, allowed="a positive int")
        require_int("model.future_features", future_features, minimum=0)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {dropout!r}")
        self.horizon, self.future_features = horizon, future_features
        # torch applies LSTM dropout between layers only: with one layer it would warn and do nothing
        self.lstm = nn.LSTM(
            in_features, hidden, num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden + horizon * future_features, horizon)

    def forward(self, x: torch.Tensor, future: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 3:
            raise ValueError(
                f"LSTMForecaster expects [batch, lookback, features], got shape {tuple(x.shape)}"
            )
        expected = (x.shape[0], self.horizon, self.future_features)
        if (future is None) != (self.future_features == 0) or (future is not None and future.shape != expected):
            got = "none" if future is None else f"shape {tuple(future.shape)}"
            raise ValueError(f"LSTMForecaster with future_features={self.future_features} expects known-future "
                             f"covariates {expected if self.future_features else 'none'}, got {got}")
        _, (h, _) = self.lstm(x)
        features = self.dropout(h[-1])
        if future is not None:
            features = torch.cat([features, future.flatten(1)], dim=1)
        return self.head(features)
