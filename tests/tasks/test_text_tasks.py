"""The IMDB tasks through the real path (compose -> runner.run -> fit/validate/test) on a tiny aclImdb tarball:
`task=imdb` (train-split word vocabulary + LSTM) and `task=imdb_bert` (a local WordPiece tokenizer + a tiny random
BertConfig encoder, nothing downloaded). Also the models' own contracts (pads ignored, pooling, shapes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from adaptive_lr.config import compose
from adaptive_lr.data.imdb import write_aclimdb
from adaptive_lr.models.bert import BertClassifier
from adaptive_lr.models.lstm import LSTMClassifier
from adaptive_lr.runner import run
from store_support import seed_store

N_TEST = 6
REVIEWS = {
    "train": {"neg": [f"a bad movie {i} . i hated it" for i in range(5)],
              "pos": [f"a great movie {i} ! i loved it" for i in range(5)]},
    "test": {"neg": ["bad movie", "hated it", "a bad one"], "pos": ["great movie", "loved it", "a great one"]},
}
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "bad", "great", "movie", "it", "i", "loved", "hated",
         "!", ".", "one"]
TINY_BERT = ("{vocab_size:16,hidden_size:32,num_hidden_layers:2,num_attention_heads:2,intermediate_size:64,"
             "max_position_embeddings:32}")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("imdb-task")
    (root / "imdb").mkdir()
    write_aclimdb(root / "imdb", REVIEWS, tarball="aclImdb-labelled.tar.gz")
    return root


@pytest.fixture(scope="module")
def bert_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import BertTokenizerFast

    folder = tmp_path_factory.mktemp("wordpiece")
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    BertTokenizerFast.from_pretrained(str(folder)).save_pretrained(str(folder))
    return folder


def finished_with_test_metrics(result, n_test: int) -> None:
    assert result.status == "FINISHED"
    assert set(result.metrics) == {"test_loss", "test_acc"}
    # accuracy over n_test reviews is a multiple of 1/n_test
    assert result.metrics["test_acc"] * n_test == pytest.approx(round(result.metrics["test_acc"] * n_test))
    assert result.metrics["test_loss"] > 0


def test_imdb_lstm_task_runs_end_to_end(home, tmp_path_factory, data_dir):
    seed_store(home, tmp_path_factory)
    cfg = compose(["task=imdb", f"data_dir={data_dir}", "trainer.max_epochs=2", "data.val_size=2",
                   "data.max_len=12", "data.batch_size=4", "data.tokenizer.vocab_size=40", "model.embed_dim=8",
                   "model.hidden=8", "lr=0.003"])
    assert cfg.model.vocab_size == 40 and cfg.task.threshold == 0.8
    result = run(cfg)
    finished_with_test_metrics(result, N_TEST)
    assert (home / ".cache" / "adaptive-lr" / "imdb").is_dir()  # encoded into paths.cache, not the data dir


def test_imdb_bert_task_runs_end_to_end_on_a_tiny_random_bert(home, tmp_path_factory, data_dir, bert_tokenizer):
    seed_store(home, tmp_path_factory)
    cfg = compose(["task=imdb_bert", f"data_dir={data_dir}", "trainer.max_epochs=1", "data.val_size=2",
                   "data.max_len=12", "data.batch_size=4", "model.checkpoint=null", f"model.config={TINY_BERT}",
                   f"data.tokenizer.checkpoint={bert_tokenizer}"])
    assert cfg.lr == 2e-5 and cfg.model.pooling == "mean"
    finished_with_test_metrics(run(cfg), N_TEST)


def test_imdb_bert_tokenizer_follows_the_model_checkpoint():
    cfg = compose(["task=imdb_bert", "model.checkpoint=/models/minilm"])
    assert cfg.data.tokenizer.checkpoint == "/models/minilm"
    assert compose(["task=imdb_bert"]).model.checkpoint == "sentence-transformers/all-MiniLM-L6-v2"


# -- the models ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pooling", ["max", "mean", "last"])
@pytest.mark.parametrize("packed", [True, False])
def test_lstm_output_of_a_review_ignores_the_padding_after_it(pooling, packed):
    torch.manual_seed(0)
    model = LSTMClassifier(vocab_size=30, embed_dim=6, hidden=5, bidirectional=packed, pooling=pooling,
                           packed=packed).eval()
    ids = torch.tensor([[5, 7, 9, 0, 0, 0], [4, 4, 3, 2, 8, 6]])
    with torch.no_grad():
        logits = model(ids)
        alone = model(ids[:1, :3])  # the same review without padding
    assert logits.shape == (2, 2)
    assert torch.allclose(logits[:1], alone, atol=1e-6)


def test_lstm_refuses_bad_settings():
    with pytest.raises(ValueError, match="pooling must be 'max', 'mean' or 'last', got 'sum'"):
        LSTMClassifier(vocab_size=10, pooling="sum")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hidden must be a positive int, got 0"):
        LSTMClassifier(vocab_size=10, hidden=0)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_bert_classifier_masks_padding_and_can_freeze_the_encoder(pooling):
    torch.manual_seed(0)
    config = {"vocab_size": 16, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
              "intermediate_size": 64, "max_position_embeddings": 32}
    model = BertClassifier(config=config, pooling=pooling, num_classes=3).eval()
    ids = torch.tensor([[2, 5, 7, 3, 0, 0]], dtype=torch.int32)
    with torch.no_grad():
        assert torch.allclose(model(ids), model(ids[:, :4]), atol=1e-5)  # pads are masked out
    assert model(ids).shape == (1, 3)
    frozen = BertClassifier(config=config, freeze_encoder=True)
    assert [n for n, p in frozen.named_parameters() if p.requires_grad] == ["head.weight", "head.bias"]
    with pytest.raises(ValueError, match="exactly one of checkpoint"):
        BertClassifier(checkpoint="x", config=config)
