"""Tokenizers for text classification: texts in, one padded int32 tensor [N, max_len] out.

Two implementations share one small interface (`TextTokenizer`), and a task config picks one by `_target_`:
  - `WordVocabTokenizer`: a word vocabulary fit on the training texts only (the `vocab_size - 2` most frequent
    lower-cased words, ties broken alphabetically, so the same texts always give the same ids); `<pad>` = 0,
    `<unk>` = 1. Plain Python regex: deterministic, no model files, and over the 50k IMDB reviews about as fast
    as the Rust `tokenizers` WordLevel pipeline on this 2-core machine (its parallel encode gains nothing here).
  - `PretrainedTokenizer`: the checkpoint's own tokenizer (`transformers.AutoTokenizer`, a hub name or a local
    folder), for fine-tuning a pretrained encoder; `fit` does nothing.
Rules shared by both:
  1. `encode` keeps the first `max_len` tokens (a pretrained tokenizer counts its [CLS]/[SEP] among them) and pads
     at the end with `pad_id`, so a model recovers the valid positions as `ids != pad_id`;
  2. `identity()` lists everything that changes the ids, for the DataModule's cache key;
  3. `save(folder)` / `load(folder)` keep what `fit` learned beside the cached tensors, so a cache hit restores
     the same tokenizer without seeing the texts again.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from itertools import repeat
from pathlib import Path

import numpy as np
import torch

from adaptive_lr.checks import require_int
from adaptive_lr.data.source import source_key

PAD, UNK = "<pad>", "<unk>"
_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_WORD = re.compile(r"\w+(?:'\w+)*|[^\w\s]")  # words (with inner apostrophes: don't, it's) or single punctuation


def strip_markup(text: str) -> str:
    """IMDB reviews carry `<br />` line breaks: replace them by a space."""
    return _BREAK.sub(" ", text)


def _check_max_len(max_len: int) -> None:
    require_int("max_len", max_len, minimum=1, allowed="a positive int")


class TextTokenizer(ABC):
    """Texts -> int32 ids [N, max_len] padded with `pad_id` (module docstring, rules 1-3)."""

    pad_id: int = 0

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Size of the id space (an embedding table needs at least this many rows)."""

    @abstractmethod
    def fit(self, texts: Sequence[str]) -> None:
        """Learn from the training texts (a pretrained tokenizer has nothing to learn)."""

    @abstractmethod
    def encode(self, texts: Sequence[str], max_len: int) -> torch.Tensor: ...

    @abstractmethod
    def identity(self) -> tuple[object, ...]: ...

    @abstractmethod
    def save(self, folder: Path) -> None: ...

    @abstractmethod
    def load(self, folder: Path) -> None: ...


class WordVocabTokenizer(TextTokenizer):
    """Lower-cased words and punctuation; the `vocab_size - 2` most frequent training words (seen at least
    `min_freq` times) get ids 2.. in order of frequency; every other word maps to `<unk>` = 1."""

    pad_id = 0
    unk_id = 1
    file = "vocab.txt"

    def __init__(self, vocab_size: int = 20000, min_freq: int = 1, lowercase: bool = True) -> None:
        if not isinstance(vocab_size, int) or vocab_size < 3:
            raise ValueError(f"vocab_size must be an int >= 3 (<pad>, <unk> and one word), got {vocab_size!r}")
        if not isinstance(min_freq, int) or min_freq < 1:
            raise ValueError(f"min_freq must be a positive int, got {min_freq!r}")
        self.max_vocab, self.min_freq, self.lowercase = vocab_size, min_freq, lowercase
        self.itos: list[str] = [PAD, UNK]
        self.stoi: dict[str, int] = {PAD: 0, UNK: 1}

    @property
    def vocab_size(self) -> int:
        """The configured size (the id space a model allocates); `len(self.itos)` may be smaller on tiny corpora."""
        return self.max_vocab

    def words(self, text: str) -> list[str]:
        text = strip_markup(text)
        return _WORD.findall(text.lower() if self.lowercase else text)

    def fit(self, texts: Sequence[str]) -> None:
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(self.words(text))
        ranked = sorted((w for w, c in counts.items() if c >= self.min_freq), key=lambda w: (-counts[w], w))
        self.itos = [PAD, UNK, *ranked[: self.max_vocab - 2]]
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    def encode(self, texts: Sequence[str], max_len: int) -> torch.Tensor:
        _check_max_len(max_len)
        out = np.full((len(texts), max_len), self.pad_id, dtype=np.int32)
        lookup = self.stoi.get
        for row, text in enumerate(texts):
            words = self.words(text)[:max_len]
            out[row, : len(words)] = list(map(lookup, words, repeat(self.unk_id)))
        return torch.from_numpy(out)

    def identity(self) -> tuple[object, ...]:
        return ("word-vocab-v1", self.max_vocab, self.min_freq, self.lowercase, _WORD.pattern)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / self.file).write_text("\n".join(self.itos) + "\n", encoding="utf-8")

    def load(self, folder: Path) -> None:
        self.itos = (folder / self.file).read_text(encoding="utf-8").splitlines()
        self.stoi = {w: i for i, w in enumerate(self.itos)}


class PretrainedTokenizer(TextTokenizer):
    """A checkpoint's tokenizer through `transformers.AutoTokenizer` (hub name or local folder). Offline use:
    a local path, or `HF_HUB_OFFLINE=1` with the checkpoint in the Hugging Face cache."""

    chunk = 1000  # texts per call into the (Rust) fast tokenizer

    def __init__(self, checkpoint: str) -> None:
        if not checkpoint:
            raise ValueError(f"checkpoint must name a Hugging Face model or a local folder, got {checkpoint!r}")
        self.checkpoint = str(checkpoint)
        self._tokenizer = None

    @property
    def tokenizer(self):  # noqa: ANN201 - transformers' PreTrainedTokenizerBase, imported lazily
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.checkpoint)
        return self._tokenizer

    @property
    def pad_id(self) -> int:  # type: ignore[override]
        return int(self.tokenizer.pad_token_id)

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def fit(self, texts: Sequence[str]) -> None:
        """Nothing to learn: the checkpoint's vocabulary is fixed."""

    def encode(self, texts: Sequence[str], max_len: int) -> torch.Tensor:
        _check_max_len(max_len)
        rows = []
        for lo in range(0, len(texts), self.chunk):
            batch = [strip_markup(t) for t in texts[lo : lo + self.chunk]]
            ids = self.tokenizer(batch, truncation=True, max_length=max_len, padding="max_length",
                                 return_attention_mask=False, return_token_type_ids=False)["input_ids"]
            rows.append(np.asarray(ids, dtype=np.int32).reshape(len(batch), max_len))
        return torch.from_numpy(np.concatenate(rows)) if rows else torch.zeros((0, max_len), dtype=torch.int32)

    def identity(self) -> tuple[object, ...]:
        folder = Path(self.checkpoint).expanduser()
        files = sorted(p for p in folder.glob("*") if p.is_file() and ("token" in p.name or "vocab" in p.name)) \
            if folder.is_dir() else []
        return ("pretrained-v1", self.checkpoint, source_key(files=files))

    def save(self, folder: Path) -> None:
        self.tokenizer.save_pretrained(str(folder))

    def load(self, folder: Path) -> None:
        """Nothing was learned: the checkpoint's tokenizer is loaded on first use (`save` keeps a copy for
        inspection)."""
