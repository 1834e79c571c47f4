"""A recurrent multi-step forecaster: a window of past observations in, the next `horizon` target values out."""

from __future__ import annotations

import torch
from torch import nn


class LSTMForecaster(nn.Module):
    """LSTM over the lookback window [B, L, in_features] -> its last hidden state -> Linear -> [B, horizon].

    Direct multi-step output: all `horizon` values come from one forward pass (no autoregressive feedback), so a
    step costs the same for horizon 1 and 48. Feature 0 of the input is the target series itself; the others are
    covariates (e.g. temperature) observed over the same window.
    """

    def __init__(
        self, in_features: int, hidden: int, num_layers: int, horizon: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        for name, value in (
            ("in_features", in_features),
            ("hidden", hidden),
            ("num_layers", num_layers),
            ("horizon", horizon),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"model.{name} must be a positive int, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {dropout!r}")
        self.horizon = horizon
        # torch applies LSTM dropout between layers only: with one layer it would warn and do nothing
        self.lstm = nn.LSTM(
            in_features, hidden, num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, horizon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3:
            raise ValueError(
                f"LSTMForecaster expects [batch, lookback, features], got shape {tuple(x.shape)}"
            )
        _, (h, _) = self.lstm(x)
        return self.head(self.dropout(h[-1]))
