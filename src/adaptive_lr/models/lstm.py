"""LSTM text classifier over padded token ids.

Input: ids [B, T] (int32 or int64), padded at the end with `pad_id`; the batch stays a plain (x, y) pair, so
lengths are derived here as `(ids != pad_id).sum(1)`. Rules:
  1. with `packed=True` the LSTM runs on a packed sequence: no step ever reads a pad and a bidirectional LSTM's
     backward pass starts at each review's last real token (exact, and skips the padded tail's compute);
     with `packed=False` it runs over the padded tensor, where pads are zero vectors (`padding_idx`) that the
     valid positions of a forward LSTM never see, but a backward direction does (faster on some devices);
  2. `pooling` over the valid positions only: "max" (element-wise max of the outputs; trains fastest on IMDB),
     "mean", or "last" (the hidden state after the last real token, both directions' final states when
     bidirectional);
  3. a review with no token left (all pads) is given length 1 (it reads one pad), so nothing divides by zero.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from adaptive_lr.checks import require_int

Pooling = Literal["max", "mean", "last"]


class LSTMClassifier(nn.Module):
    """Embedding -> dropout -> (bi)LSTM (1+ layers) -> pooling over valid steps -> dropout -> linear logits."""

    def __init__(
        self,
        vocab_size: int,
        num_classes: int = 2,
        embed_dim: int = 128,
        hidden: int = 128,
        num_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.3,
        pooling: Pooling = "max",
        packed: bool = True,
        pad_id: int = 0,
    ) -> None:
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("num_classes", num_classes), ("embed_dim", embed_dim),
                            ("hidden", hidden), ("num_layers", num_layers)):
            require_int(f"LSTMClassifier: {name}", value, minimum=1, allowed="a positive int")
        if pooling not in ("max", "mean", "last"):
            raise ValueError(f"LSTMClassifier: pooling must be 'max', 'mean' or 'last', got {pooling!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"LSTMClassifier: dropout must be in [0, 1), got {dropout!r}")
        if not 0 <= pad_id < vocab_size:
            raise ValueError(f"LSTMClassifier: pad_id must be a valid id below vocab_size={vocab_size}, got {pad_id}")
        self.pad_id, self.pooling, self.packed = pad_id, pooling, packed
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.lstm = nn.LSTM(embed_dim, hidden, num_layers=num_layers, batch_first=True,
                            bidirectional=bidirectional, dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = ids != self.pad_id
        lengths = mask.sum(1).clamp(min=1)  # rule 3
        emb = self.dropout(self.embed(ids))
        if self.packed:  # rule 1; sync point: packing needs the lengths on the host (one copy per step on a GPU)
            packed = pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
            out_packed, (h, _) = self.lstm(packed)
            out, _ = pad_packed_sequence(out_packed, batch_first=True, total_length=ids.shape[1])
        else:
            out, (h, _) = self.lstm(emb)
        valid = (torch.arange(ids.shape[1], device=ids.device) < lengths[:, None]).unsqueeze(-1)
        if self.pooling == "max":  # rule 2
            pooled = out.masked_fill(~valid, float("-inf")).amax(dim=1)
        elif self.pooling == "mean":
            pooled = (out * valid).sum(1) / lengths[:, None].to(out.dtype)
        elif self.packed:  # "last", packed: h holds each sequence's own final state, per direction
            pooled = torch.cat(list(h[-(2 if self.lstm.bidirectional else 1) :]), dim=1)
        else:  # "last", padded: the output at the last real token (forward direction's state there)
            pooled = out.gather(1, (lengths - 1).view(-1, 1, 1).expand(-1, 1, out.shape[2])).squeeze(1)
        return self.head(self.dropout(pooled))
