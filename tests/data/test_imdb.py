"""IMDB: the aclImdb folder and tarball sources, label and review order, the train-only vocabulary, the
val carve-out, the encoded-tensor cache, subsets, the pretrained-tokenizer path and the missing-data message."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from adaptive_lr.data import imdb
from adaptive_lr.data.imdb import IMDBDataModule, write_aclimdb
from adaptive_lr.data.source import DataNotFoundError
from adaptive_lr.data.text import PretrainedTokenizer, WordVocabTokenizer

# every train review starts with a marker word of its own: the vocabulary shows which reviews it was fit on
REVIEWS = {
    "train": {
        "neg": [f"mn{i} A bad movie.<br />I hated it." for i in range(6)],
        "pos": [f"mp{i} A great movie<br /><br />I loved it!" for i in range(6)],
        "unsup": ["unsupword never labelled"],
    },
    "test": {
        "neg": ["bad", "hated it", "a bad movie", "awful"],
        "pos": ["Zyzzyva great", "great great", "loved it", "a great movie"],
    },
}
N_TRAIN, N_TEST, VAL = 12, 8, 4
BERT_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "bad", "great", "movie", "it", "i", "loved",
              "hated", "!", "."]


def write_sources(root: Path) -> dict[str, Path]:
    """Both on-disk forms under `root`: {"folder": data_dir with aclImdb/, "tar": data_dir with the tarball}."""
    folder, tar = root / "folder" / "imdb", root / "tar" / "imdb"
    folder.mkdir(parents=True)
    tar.mkdir(parents=True)
    write_aclimdb(folder, REVIEWS)
    write_aclimdb(tar, REVIEWS, tarball="aclImdb-labelled.tar.gz")
    (folder / "aclImdb" / "imdb.vocab").write_text("ignored\n")
    return {"folder": root / "folder", "tar": root / "tar"}


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_sources(tmp_path_factory.mktemp("imdb-data"))


def module(data_dir: Path, cache: Path, **kw) -> IMDBDataModule:
    kw = {"tokenizer": WordVocabTokenizer(vocab_size=1000), "max_len": 8, "val_size": VAL, "split_seed": 0,
          "batch_size": 4, **kw}
    return IMDBDataModule(data_dir=data_dir, cache_dir=cache, download=False, **kw)


def fit_order() -> tuple[list[str], list[str]]:
    """The markers of the val reviews and of the fit (train) reviews, by the documented rule: train reviews in
    (label, id) order, val = the first VAL of randperm(N_TRAIN, split_seed)."""
    markers = [f"mn{i}" for i in range(6)] + [f"mp{i}" for i in range(6)]
    order = torch.randperm(N_TRAIN, generator=torch.Generator().manual_seed(0)).tolist()
    return [markers[i] for i in order[:VAL]], [markers[i] for i in order[VAL:]]


# -- the word tokenizer ----------------------------------------------------------------------------------------------
def test_word_vocab_ranks_by_count_then_alphabet_and_pads_and_truncates():
    tok = WordVocabTokenizer(vocab_size=5)
    tok.fit(["b a a", "C b a<br />c", "d"])  # a:3, b:2, c:2, d:1 (case folded)
    assert tok.itos == ["<pad>", "<unk>", "a", "b", "c"]  # b before c on the tie; d cut by vocab_size
    ids = tok.encode(["a d<br />b x", "c a c a c a c"], max_len=6)
    assert ids.dtype == torch.int32
    assert ids.tolist() == [[2, 1, 3, 1, 0, 0], [4, 2, 4, 2, 4, 2]]  # unknown -> 1, pad -> 0, first 6 kept
    assert tok.words("Don't stop!<br/>It's 10/10") == ["don't", "stop", "!", "it's", "10", "/", "10"]


def test_word_vocab_min_freq_save_load_and_bad_settings(tmp_path):
    tok = WordVocabTokenizer(vocab_size=100, min_freq=2)
    tok.fit(["x y y z z z"])
    assert tok.itos == ["<pad>", "<unk>", "z", "y"]
    tok.save(tmp_path)
    other = WordVocabTokenizer(vocab_size=100, min_freq=2)
    other.load(tmp_path)
    assert other.stoi == tok.stoi
    with pytest.raises(ValueError, match="vocab_size must be an int >= 3.*got 2"):
        WordVocabTokenizer(vocab_size=2)
    with pytest.raises(ValueError, match="max_len must be a positive int, got 0"):
        tok.encode(["x"], max_len=0)


# -- sources and splits ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["folder", "tar"])
def test_splits_sizes_labels_and_train_only_vocabulary(sources, tmp_path, form):
    dm = module(sources[form], tmp_path)
    dm.setup("fit")
    (xtr, ytr), (xva, yva), (xte, yte) = dm.splits
    assert (len(xtr), len(xva), len(xte)) == (N_TRAIN - VAL, VAL, N_TEST)
    assert dm.input_shape == (8,) and dm.num_outputs == 2
    assert xtr.dtype == torch.int32 and ytr.dtype == torch.long
    # test reviews in (label, id) order: neg first, label 1 = pos
    assert yte.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    # the vocabulary was fit on the train reviews that are not val: their markers only (unsup and test unseen)
    val_markers, fit_markers = fit_order()
    tok = dm.tokenizer
    assert {w for w in tok.itos if w[:2] in ("mn", "mp")} == set(fit_markers)
    assert "unsupword" not in tok.stoi and "zyzzyva" not in tok.stoi and "awful" not in tok.stoi
    assert [tok.itos[i] for i in xtr[:, 0].tolist()] == fit_markers  # train keeps the permuted order
    assert xva[:, 0].tolist() == [1] * VAL  # val markers were never seen: <unk>
    assert yva.tolist() == [int(m.startswith("mp")) for m in val_markers]
    assert ytr.tolist() == [int(m.startswith("mp")) for m in fit_markers]
    # a word seen only in test maps to <unk>; "<br /><br />" and case are gone; padding at the end
    assert xte[4].tolist() == [1, tok.stoi["great"], 0, 0, 0, 0, 0, 0]
    first = fit_markers[0]
    words = [first, "a", "great", "movie", "i", "loved", "it", "!"] if first.startswith("mp") else \
        [first, "a", "bad", "movie", ".", "i", "hated", "it"]
    assert xtr[0].tolist() == [tok.stoi[w] for w in words]  # 9 or 10 words cut to max_len 8


def test_folder_and_tarball_give_identical_tensors_and_the_tarball_is_never_extracted(sources, tmp_path):
    before = sorted(p.relative_to(sources["tar"]) for p in sources["tar"].rglob("*"))
    a, b = module(sources["folder"], tmp_path / "a"), module(sources["tar"], tmp_path / "b")
    for (xa, ya), (xb, yb) in zip(a.splits, b.splits, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert a.tokenizer.itos == b.tokenizer.itos
    assert sorted(p.relative_to(sources["tar"]) for p in sources["tar"].rglob("*")) == before
    assert a.cache_file.parent == tmp_path / "a" / "imdb"


def test_second_load_reads_the_cache_and_restores_the_vocabulary(sources, tmp_path, monkeypatch):
    first = module(sources["tar"], tmp_path)
    first.setup()

    def no_reading(*args, **kwargs):
        raise AssertionError("the reviews were read again")

    monkeypatch.setattr(imdb, "read_tarball", no_reading)
    again = module(sources["tar"], tmp_path)
    for (xa, ya), (xb, yb) in zip(first.splits, again.splits, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert again.tokenizer.itos == first.tokenizer.itos and again.cache_file == first.cache_file
    # subsets cut the cached tensors (no new cache); other tokenizer settings need a new encoding
    small = module(sources["tar"], tmp_path, subset=3, eval_subset=2)
    assert torch.equal(small.splits[0][0], first.splits[0][0][:3])
    assert len(small.splits[1][0]) == len(small.splits[2][0]) == 2
    for name in ("max_len", "val_size", "split_seed"):
        with pytest.raises(AssertionError, match="read again"):
            module(sources["tar"], tmp_path, **{name: 5}).setup()
    with pytest.raises(AssertionError, match="read again"):
        module(sources["tar"], tmp_path, tokenizer=WordVocabTokenizer(vocab_size=50)).setup()


def test_eval_subset_is_a_seeded_draw_shared_by_instances(sources, tmp_path):
    full = module(sources["tar"], tmp_path)
    a = module(sources["tar"], tmp_path, eval_subset=3)
    b = module(sources["tar"], tmp_path, eval_subset=3, seed=7)  # the run seed does not move it
    full_rows = {tuple(r) for r in full.splits[2][0].tolist()}
    for split in (1, 2):
        assert torch.equal(a.splits[split][0], b.splits[split][0]) and len(a.splits[split][0]) == 3
    assert {tuple(r) for r in a.splits[2][0].tolist()} <= full_rows
    assert a.steps_per_epoch() == 2  # 8 train reviews, batch 4


def test_missing_data_names_the_dataset_folders_and_files(tmp_path, monkeypatch):
    with pytest.raises(DataNotFoundError) as err:
        module(tmp_path, tmp_path / "cache").setup()
    msg = str(err.value)
    assert msg.startswith("imdb: data not found.") and str(tmp_path / "imdb") in msg
    assert "aclImdb-labelled.tar.gz" in msg and "aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt" in msg
    assert "data.download=true" in msg
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` raises ImportError
    with pytest.raises(DataNotFoundError, match="needs the Hugging Face `datasets` package"):
        IMDBDataModule(data_dir=tmp_path, cache_dir=tmp_path / "cache", download=True).setup()


@pytest.mark.parametrize(("kw", "match"), [({"max_len": 0}, "data.max_len must be a positive int, got 0"),
                                           ({"subset": 0}, "data.subset must be null or a positive int, got 0"),
                                           ({"val_size": N_TRAIN}, "val_size=12 leaves no training reviews")])
def test_bad_settings_are_refused(sources, tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        module(sources["tar"], tmp_path, **kw).setup()


# -- the pretrained (WordPiece) tokenizer ----------------------------------------------------------------------------
def write_bert_tokenizer(folder: Path) -> Path:
    """A tiny BERT WordPiece tokenizer saved like a checkpoint's (vocab.txt + tokenizer files)."""
    from transformers import BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(BERT_VOCAB) + "\n")
    BertTokenizerFast.from_pretrained(str(folder)).save_pretrained(str(folder))  # + tokenizer_config.json
    return folder


def test_pretrained_tokenizer_adds_cls_sep_pads_and_caches(sources, tmp_path):
    path = write_bert_tokenizer(tmp_path / "tok")
    tok = PretrainedTokenizer(str(path))
    assert tok.pad_id == 0 and tok.vocab_size == len(BERT_VOCAB)
    v = {w: i for i, w in enumerate(BERT_VOCAB)}
    assert tok.encode(["A great<br />movie!", "Zyzzyva bad bad bad bad"], max_len=6).tolist() == [
        [v["[CLS]"], v["a"], v["great"], v["movie"], v["!"], v["[SEP]"]],
        [v["[CLS]"], v["[UNK]"], v["bad"], v["bad"], v["bad"], v["[SEP]"]],  # truncated, [SEP] kept
    ]
    dm = module(sources["tar"], tmp_path / "cache", tokenizer=tok)
    (xtr, _), _, (xte, _) = dm.splits
    assert xte[4].tolist() == [2, 1, v["great"], 3, 0, 0, 0, 0]  # "Zyzzyva great": pads after [SEP]
    saved = PretrainedTokenizer(str(dm.tokenizer_dir))  # the copy kept beside the cache encodes the same
    assert dm.tokenizer_dir.parent == dm.cache_file.parent and saved.vocab_size == len(BERT_VOCAB)
    assert torch.equal(saved.encode(REVIEWS["test"]["pos"], max_len=8), xte[4:])
