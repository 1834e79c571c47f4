"""`TensorBatchLoader` / `EpochPermutation`: coverage, seeded per-epoch order, sharding, views and batch transforms,
and the position inside an epoch as state (a mid-epoch resume)."""

from __future__ import annotations

import math

import pytest
import torch

from adaptive_lr.data.tensor_loader import EpochPermutation, TensorBatchLoader


def ids_of(loader: TensorBatchLoader) -> list[int]:
    """The sample ids of one epoch, in batch order (the first tensor holds each sample's id)."""
    return [int(i) for batch in loader for i in batch[0]]


def make(n: int = 23, batch_size: int = 5, **kwargs) -> TensorBatchLoader:
    ids = torch.arange(n)
    return TensorBatchLoader([ids, ids * 10], batch_size, **kwargs)


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize(("n", "batch_size"), [(23, 5), (20, 5), (3, 8), (1, 1)])
def test_each_epoch_covers_every_sample_exactly_once(n, batch_size, shuffle):
    loader = make(n, batch_size, shuffle=shuffle, seed=3)
    assert len(loader) == math.ceil(n / batch_size)
    for epoch in range(3):
        loader.sampler.set_epoch(epoch)
        batches = list(loader)
        assert len(batches) == len(loader)
        assert [len(b[0]) for b in batches[:-1]] == [batch_size] * (len(batches) - 1)
        assert sorted(ids_of(loader)) == list(range(n))
        for ids, tens in batches:  # every tensor is sliced with the same indices
            assert torch.equal(tens, ids * 10)


def test_no_shuffle_keeps_the_stored_order():
    assert ids_of(make(11, 4)) == list(range(11))


def test_shuffle_order_is_a_pure_function_of_seed_and_epoch():
    a, b = make(50, 7, shuffle=True, seed=5), make(50, 7, shuffle=True, seed=5)
    orders = []
    for epoch in range(4):
        a.sampler.set_epoch(epoch)
        orders.append(ids_of(a))
        assert ids_of(a) == orders[-1]  # iterating again within an epoch repeats it
    assert orders[0] != list(range(50))
    assert len({tuple(o) for o in orders}) == 4  # every epoch has its own order

    # a fresh loader jumping straight to epoch 2 (as after a resume) sees what the first saw in epoch 2
    b.sampler.set_epoch(2)
    assert ids_of(b) == orders[2]
    assert torch.equal(EpochPermutation(50, True, seed=5).indices(), torch.tensor(orders[0]))

    other_seed = make(50, 7, shuffle=True, seed=6)
    other_seed.sampler.set_epoch(2)
    assert ids_of(other_seed) != orders[2]


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize(("n", "world"), [(12, 3), (10, 4), (7, 2), (5, 8)])
def test_shards_are_equal_sized_and_together_cover_every_sample(n, world, shuffle):
    per_rank = math.ceil(n / world)
    padding = per_rank * world - n
    shards = []
    for rank in range(world):
        loader = make(n, 2, shuffle=shuffle, seed=1).shard(rank, world)
        loader.sampler.set_epoch(4)
        assert loader.num_samples == per_rank
        assert len(loader) == math.ceil(per_rank / 2)
        shards.append(ids_of(loader))
    assert [len(s) for s in shards] == [per_rank] * world
    everything = [i for s in shards for i in s]
    assert set(everything) == set(range(n))
    # only the wrap padding repeats samples: without it the shards are disjoint
    assert len(everything) - len(set(everything)) == padding
    # rank r takes every world-th element of the (padded) epoch order: interleaving the shards gives it back
    full = EpochPermutation(n, shuffle, seed=1)
    full.set_epoch(4)
    order = full.indices().tolist()
    interleaved = [shards[r][i] for i in range(per_rank) for r in range(world)]
    assert interleaved == (order + order[:padding])


def test_shards_are_disjoint_when_the_size_divides():
    shards = [set(ids_of(make(24, 5, shuffle=True, seed=2).shard(r, 4))) for r in range(4)]
    assert all(not (shards[i] & shards[j]) for i in range(4) for j in range(i + 1, 4))
    assert set().union(*shards) == set(range(24))


@pytest.mark.parametrize("shuffle", [False, True])
def test_drop_last_drops_only_the_incomplete_batch(shuffle):
    loader = make(23, 5, shuffle=shuffle, drop_last=True, seed=0)
    batches = list(loader)
    assert len(loader) == len(batches) == 4
    assert all(len(b[0]) == 5 for b in batches)
    seen = ids_of(loader)
    assert len(set(seen)) == 20
    keep = make(23, 5, shuffle=shuffle, seed=0)
    assert seen == ids_of(keep)[:20]  # the same order, minus the tail


def test_drop_last_of_a_loader_smaller_than_one_batch_is_empty():
    loader = make(3, 5, drop_last=True)
    assert len(loader) == 0 and list(loader) == []


def test_contiguous_path_returns_views_and_shuffled_path_copies():
    x = torch.arange(10.0)
    (view,) = next(iter(TensorBatchLoader([x], 4)))
    assert view.data_ptr() == x.data_ptr()
    view[0] = -1.0
    assert x[0] == -1.0  # a view, not a copy

    y = torch.arange(10.0)
    (copy,) = next(iter(TensorBatchLoader([y], 4, shuffle=True, seed=0)))
    copy[:] = -1.0
    assert torch.equal(y, torch.arange(10.0))

    z = torch.arange(10.0)
    (shard,) = next(iter(TensorBatchLoader([z], 4).shard(0, 2)))
    assert torch.equal(shard, torch.tensor([0.0, 2.0, 4.0, 6.0]))  # strided by rank: gathered


def test_transform_runs_once_per_whole_batch_with_an_epoch_seeded_generator():
    calls: list[int] = []

    def jitter(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        calls.append(len(x))
        return x + torch.rand(x.shape, generator=g)

    x = torch.zeros(10, 3)
    y = torch.arange(10)
    loader = TensorBatchLoader([x, y], 4, shuffle=True, seed=7, transform=jitter)

    def epoch(e: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        loader.sampler.set_epoch(e)
        return list(loader)

    first = epoch(1)
    assert calls == [4, 4, 2]  # one call per batch, on the whole batch
    assert torch.equal(torch.cat([b[1] for b in first]).sort().values, y)  # labels untouched
    assert all(((b[0] > 0) & (b[0] < 1)).all() for b in first)
    assert torch.equal(x, torch.zeros(10, 3))  # the stored tensor is never modified

    again = epoch(1)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again, strict=True))
    other = epoch(2)
    assert not torch.equal(torch.cat([b[0] for b in first]), torch.cat([b[0] for b in other]))

    same_seed = TensorBatchLoader([x, y], 4, shuffle=True, seed=7, transform=jitter)
    same_seed.sampler.set_epoch(1)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, same_seed, strict=True))


def jitter(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return x + torch.rand(x.shape, generator=g)


@pytest.mark.parametrize("world_size", [1, 2])
@pytest.mark.parametrize("transform", [None, jitter])
def test_a_loader_restored_mid_epoch_yields_the_rest_of_that_epoch_exactly(transform, world_size):
    """Its state after k batches, given to a new loader, resumes at batch k with the augmentation generator where
    it was: the remaining batches equal the uninterrupted pass's, samples and augmentations alike; a state of
    another epoch restarts nothing; the state is plain tensors and ints (a checkpoint loads it weights-only)."""
    def loader() -> TensorBatchLoader:
        ids = torch.arange(23).float()
        made = TensorBatchLoader([ids[:, None], ids], 4, shuffle=True, seed=3, transform=transform)
        made.sampler.set_epoch(2)
        return made.shard(1, world_size) if world_size > 1 else made

    straight = list(loader())
    interrupted = loader()
    passing = iter(interrupted)
    seen = [next(passing) for _ in range(2)]
    state = interrupted.state_dict()
    assert state["epoch"] == 2 and state["batches"] == 2
    assert (state["augment"] is None) == (transform is None)
    restored = loader()
    restored.load_state_dict(state)
    rest = list(restored)
    assert len(seen) + len(rest) == len(straight) == len(loader())
    for a, b in zip(seen + rest, straight, strict=True):
        assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert restored.state_dict()["batches"] == len(straight)  # the pass finished
    assert [len(b[1]) for b in restored] == [len(b[1]) for b in straight]  # the next pass starts over

    other_epoch = loader()
    other_epoch.load_state_dict(state)
    other_epoch.sampler.set_epoch(3)  # the restored pass is over: a new epoch starts at its first batch
    fresh = loader()
    fresh.sampler.set_epoch(3)
    assert [b[1].tolist() for b in other_epoch] == [b[1].tolist() for b in fresh]


@pytest.mark.parametrize("batch_size", [0, -3])
def test_a_non_positive_batch_size_is_refused(batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        TensorBatchLoader([torch.zeros(4)], batch_size)


def test_tensors_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match=r"first dimension.*\[4, 5\]"):
        TensorBatchLoader([torch.zeros(4), torch.zeros(5)], 2)
