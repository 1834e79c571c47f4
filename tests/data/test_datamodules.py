"""The in-memory DataModules: deterministic disjoint splits, sizes, scaling, XOR label semantics, steps per epoch."""

from __future__ import annotations

import pytest
import torch

from adaptive_lr.data.digits import DigitsDataModule
from adaptive_lr.data.splits import split_indices
from adaptive_lr.data.xor import VARIANTS, XORDataModule, make_xor


def xor_rule(x: torch.Tensor) -> torch.Tensor:
    """The quadrant XOR label of each point, shaped like the modules' targets ([n, 1] float)."""
    return ((x[:, 0] > 0.5) ^ (x[:, 1] > 0.5)).float().unsqueeze(1)


def row_set(x: torch.Tensor) -> set[tuple[float, ...]]:
    return {tuple(r) for r in x.tolist()}


# -- splits ----------------------------------------------------------------------------------------------------------
def test_split_indices_are_disjoint_cover_range_and_are_seeded():
    train, val, test = split_indices(101, 0.2, 0.1, seed=9)
    assert (len(train), len(val), len(test)) == (71, 20, 10)
    assert sorted(torch.cat([train, val, test]).tolist()) == list(range(101))
    again = split_indices(101, 0.2, 0.1, seed=9)
    assert all(torch.equal(a, b) for a, b in zip((train, val, test), again, strict=True))
    assert not torch.equal(split_indices(101, 0.2, 0.1, seed=10)[1], val)


@pytest.mark.parametrize(("val", "test"), [(-0.1, 0.2), (1.0, 0.0), (0.6, 0.4), (0.2, 1.0)])
def test_split_fractions_out_of_range_are_refused(val, test):
    with pytest.raises(ValueError, match="val_fraction and test_fraction"):
        split_indices(10, val, test, seed=0)


# -- digits ----------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits() -> DigitsDataModule:
    dm = DigitsDataModule(batch_size=64)
    dm.setup("fit")
    return dm


def test_digits_split_sizes_scaling_and_shapes(digits):
    (xtr, _), (xva, _), (xte, _) = digits.splits
    assert (len(xtr), len(xva), len(xte)) == (1079, 359, 359)  # 1797 cut 60/20/20
    assert digits.input_shape == (64,) and digits.num_outputs == 10
    for x, y in digits.splits:
        assert x.dtype == torch.float32 and y.dtype == torch.long
        assert x.min() >= 0.0 and x.max() <= 1.0
        assert set(y.unique().tolist()) == set(range(10))  # every class in every split
    assert xtr.max() == 1.0  # scaled by 16, not by the data maximum of a split


def test_digits_splits_are_disjoint_and_the_same_across_instances_and_run_seeds(digits):
    from sklearn.datasets import load_digits

    all_x = torch.as_tensor(load_digits().data, dtype=torch.float32) / 16.0
    # identify samples by their position in the full set (some digits images are duplicates)
    parts = split_indices(len(all_x), 0.2, 0.2, seed=1234)
    assert sorted(torch.cat(parts).tolist()) == list(range(1797))
    for (x, _), idx in zip(digits.splits, parts, strict=True):
        assert torch.equal(x, all_x[idx])

    other = DigitsDataModule(seed=99)  # the run seed shuffles batches, never the split
    for a, b in zip(digits.splits, other.splits, strict=True):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    moved = DigitsDataModule(split_seed=1)
    assert not torch.equal(moved.splits[1][1], digits.splits[1][1])


def test_digits_steps_per_epoch_and_loaders(digits):
    assert digits.steps_per_epoch() == 17  # ceil(1079 / 64)
    assert DigitsDataModule(batch_size=100).steps_per_epoch() == 11
    val = digits.val_dataloader()
    assert len(val) == 1 and not val.sampler.shuffle  # eval batches: whole split, fixed order
    assert digits.train_dataloader().sampler.shuffle


# -- xor -------------------------------------------------------------------------------------------------------------
def test_perfect_xor_is_the_truth_table_in_every_split():
    dm = XORDataModule(variant="perfect", n_samples=40)
    truth = {((0.0, 0.0), 0.0), ((0.0, 1.0), 1.0), ((1.0, 0.0), 1.0), ((1.0, 1.0), 0.0)}
    for x, y in dm.splits:
        assert len(x) == 40
        assert {(tuple(p), float(t)) for p, t in zip(x.tolist(), y[:, 0].tolist(), strict=True)} == truth
    assert dm.num_outputs == 1 and dm.input_shape == (2,)


def test_clean_xor_clusters_sit_on_their_corners_and_are_separable():
    x, y = make_xor("clean", 800, noise=0.25, label_noise=0.1, seed=3)
    assert x.shape == (800, 2) and y.shape == (800, 1) and y.dtype == torch.float32
    corners = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    which = torch.arange(800) % 4
    assert (x - corners[which]).abs().max() < 0.3  # sigma 0.05
    assert torch.equal(y, xor_rule(x))  # the midlines separate the classes perfectly
    assert torch.equal(y[:, 0], torch.tensor([0.0, 1.0, 1.0, 0.0])[which])


def test_noisy_xor_clusters_overlap_the_midlines():
    x, y = make_xor("noisy", 2000, noise=0.25, label_noise=0.0, seed=3)
    wrong = (xor_rule(x) != y).float().mean()
    assert 0.05 < wrong < 0.5  # sigma 0.25: a real share of points falls across a midline


def test_corner_xor_labels_are_the_quadrant_xor():
    x, y = make_xor("corner", 1000, noise=0.25, label_noise=0.1, seed=4)
    assert x.min() >= 0 and x.max() <= 1
    assert torch.equal(y, xor_rule(x))
    assert 0.4 < y.mean() < 0.6


@pytest.mark.parametrize("label_noise", [0.1, 0.3])
def test_corner_noisy_flips_about_label_noise_of_the_labels(label_noise):
    x, y = make_xor("corner_noisy", 4000, noise=0.25, label_noise=label_noise, seed=5)
    clean_x, _ = make_xor("corner", 4000, noise=0.25, label_noise=label_noise, seed=5)
    assert torch.equal(x, clean_x)  # same inputs, only labels flipped
    flipped = (y != xor_rule(x)).float().mean().item()
    assert abs(flipped - label_noise) < 0.025


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "perfect"])
def test_xor_splits_are_disjoint_sized_and_deterministic(variant):
    dm = XORDataModule(variant=variant, n_samples=600, batch_size=32)
    (xtr, _), (xva, _), (xte, _) = dm.splits
    assert (len(xtr), len(xva), len(xte)) == (360, 120, 120)
    full, _ = make_xor(variant, 600, 0.25, 0.1, 1234)
    assert row_set(torch.cat([xtr, xva, xte])) == row_set(full)
    assert (
        not (row_set(xtr) & row_set(xva))
        and not (row_set(xtr) & row_set(xte))
        and not (row_set(xva) & row_set(xte))
    )
    again = XORDataModule(variant=variant, n_samples=600, seed=42)
    for a, b in zip(dm.splits, again.splits, strict=True):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert dm.steps_per_epoch() == 12  # ceil(360 / 32)


def test_xor_data_seed_changes_the_data():
    a = XORDataModule(variant="corner", data_seed=1).splits[0][0]
    b = XORDataModule(variant="corner", data_seed=2).splits[0][0]
    assert not torch.equal(a, b)


def test_invalid_xor_variant_names_the_allowed_values():
    with pytest.raises(ValueError, match=r"data.variant.*'perfect'.*'corner_noisy'.*'spiral'"):
        XORDataModule(variant="spiral")
    with pytest.raises(ValueError, match=r"variant.*'clean'.*'spiral'"):
        make_xor("spiral", 10, 0.1, 0.1, 0)


def test_train_loader_shuffles_by_run_seed_and_epoch():
    def epoch_inputs(seed: int, epoch: int) -> torch.Tensor:
        loader = XORDataModule(variant="corner", seed=seed, batch_size=32).train_dataloader()
        loader.sampler.set_epoch(epoch)
        return torch.cat([x for x, _ in loader])

    assert torch.equal(epoch_inputs(0, 1), epoch_inputs(0, 1))
    assert not torch.equal(epoch_inputs(0, 1), epoch_inputs(0, 2))
    assert not torch.equal(epoch_inputs(0, 1), epoch_inputs(1, 1))


def test_fingerprint_is_a_content_hash_of_the_splits_fed():
    same = [XORDataModule(variant="clean", n_samples=100, seed=3).fingerprint() for _ in range(2)]
    assert same[0] == same[1]
    # the run seed only reorders batches: the same data; the data seed draws other samples
    assert XORDataModule(variant="clean", n_samples=100, seed=4).fingerprint() == same[0]
    assert XORDataModule(variant="clean", n_samples=100, seed=3, data_seed=5).fingerprint() != same[0]
    assert XORDataModule(variant="noisy", n_samples=100, seed=3).fingerprint() != same[0]
    # the same values under another dtype or shape are other data
    dm = XORDataModule(variant="clean", n_samples=100, seed=3)
    (x, y), val, test = dm.splits
    dm._splits = ((x.double(), y), val, test)
    assert dm.fingerprint() != same[0]
    assert len(DigitsDataModule().fingerprint()) == 16
