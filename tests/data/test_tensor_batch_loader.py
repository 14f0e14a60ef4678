"""TensorBatchLoader: batch counts and sizes, shuffling per epoch, normalisation, devices."""

from __future__ import annotations

import math

import pytest
import torch

from gdtorch.data import TensorBatchLoader, Updates, first_update


def indexed(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose every pixel holds the sample's index, and targets equal to it."""
    targets = torch.arange(n, dtype=torch.float32)
    return targets.view(n, 1, 1, 1).expand(n, 3, 2, 2).clone(), targets


@pytest.mark.parametrize(
    ("n", "batch_size", "sizes"),
    [(10, 4, [4, 4, 2]), (8, 4, [4, 4]), (3, 5, [3]), (4, 1, [1, 1, 1, 1])],
)
def test_len_and_batch_sizes(n: int, batch_size: int, sizes: list[int]) -> None:
    loader = TensorBatchLoader(*indexed(n), batch_size=batch_size, shuffle=True)
    assert len(loader) == len(sizes)
    assert [len(y) for _, y in loader] == sizes


def test_without_shuffle_batches_follow_the_tensor_order() -> None:
    loader = TensorBatchLoader(*indexed(10), batch_size=4)
    for _ in range(2):
        assert torch.cat([y for _, y in loader]).tolist() == list(range(10))


def test_each_epoch_is_a_new_permutation_of_every_sample() -> None:
    loader = TensorBatchLoader(*indexed(50), batch_size=8, shuffle=True, seed=3)
    orders = []
    for _ in range(3):
        batches = list(loader)
        for images, targets in batches:  # images and targets stay paired
            assert torch.equal(images[:, 0, 0, 0], targets)
        order = torch.cat([y for _, y in batches])
        assert sorted(order.tolist()) == list(range(50))
        orders.append(order)
    assert not torch.equal(orders[0], orders[1]) and not torch.equal(orders[1], orders[2])
    assert loader.epoch == 3


def test_shuffling_is_reproducible_and_resumable() -> None:
    def orders(loader: TensorBatchLoader, epochs: int) -> list[list[float]]:
        return [torch.cat([y for _, y in loader]).tolist() for _ in range(epochs)]

    first = orders(TensorBatchLoader(*indexed(20), batch_size=5, shuffle=True, seed=1), 3)
    assert orders(TensorBatchLoader(*indexed(20), batch_size=5, shuffle=True, seed=1), 3) == first
    assert (
        orders(TensorBatchLoader(*indexed(20), batch_size=5, shuffle=True, seed=2), 1) != first[:1]
    )
    resumed = TensorBatchLoader(*indexed(20), batch_size=5, shuffle=True, seed=1)
    resumed.epoch = 2
    assert orders(resumed, 1) == first[2:]


def test_normalize_applies_the_given_statistics() -> None:
    images = torch.rand(6, 3, 4, 4)
    mean, std = torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0.5, 1.0, 2.0])
    loader = TensorBatchLoader(images, torch.zeros(6), batch_size=6, normalize=(mean, std))
    ((batch, _),) = list(loader)
    for c in range(3):
        torch.testing.assert_close(batch[:, c], (images[:, c] - mean[c]) / std[c])


def test_to_moves_tensors_and_statistics() -> None:
    stats = (torch.zeros(3), torch.ones(3))
    loader = TensorBatchLoader(*indexed(4), batch_size=2, shuffle=True, normalize=stats)
    assert loader.to("meta") is loader
    images, targets = next(iter(loader))
    assert images.device.type == "meta" and targets.device.type == "meta"
    assert loader.mean.device.type == "meta" and loader.std.device.type == "meta"


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="same length, got 4 and 3"):
        TensorBatchLoader(torch.zeros(4, 3, 2, 2), torch.zeros(3), batch_size=2)
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="batch_size must be a positive int"):
            TensorBatchLoader(*indexed(4), batch_size=bad)


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("n", [10, 11])
def test_distributed_shards_are_disjoint_equal_and_cover_the_set(n, shuffle):
    targets = torch.arange(n, dtype=torch.float32)
    images = targets.view(n, 1, 1, 1).expand(n, 3, 2, 2).clone()
    shards = []
    for rank in range(2):
        loader = TensorBatchLoader(
            images, targets, 4, shuffle=shuffle, seed=3, rank=rank, world_size=2
        )
        assert loader.shard_size == -(-n // 2) and len(loader) == -(-loader.shard_size // 4)
        batches = list(loader)
        seen = torch.cat([y for _, y in batches])
        torch.testing.assert_close(torch.cat([x[:, 0, 0, 0] for x, _ in batches]), seen)
        shards.append(seen)
    assert len(shards[0]) == len(shards[1]) == -(-n // 2)
    together = torch.cat(shards)
    assert set(together.tolist()) == set(range(n))  # every sample, each epoch
    assert len(together) - len(set(together.tolist())) == (2 - n % 2) % 2  # padding only


def test_rank_outside_world_size_is_refused():
    with pytest.raises(ValueError, match="rank must be in"):
        TensorBatchLoader(torch.zeros(4, 3, 2, 2), torch.zeros(4), 2, rank=2, world_size=2)


def one_per_batch(loader: TensorBatchLoader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of a loader, as the ``(images, targets)`` of every update, in order."""
    batches = []
    for batch in loader:
        batches.extend(batch if isinstance(batch, Updates) else [batch])
    return batches


@pytest.mark.parametrize("shuffle", [False, True], ids=["in_order", "shuffled"])
@pytest.mark.parametrize(
    ("n", "batch_size", "updates_per_batch", "updates"),
    [
        (24, 4, 3, [3, 3]),  # whole groups
        (26, 4, 3, [3, 3, 1]),  # a last group of one smaller batch
        (30, 4, 3, [3, 3, 2]),  # a last partial group ending in a smaller batch
        (5, 4, 8, [2]),  # fewer batches than one group
        (7, 1, 2, [2, 2, 2, 1]),  # stochastic: one example per update
    ],
)
def test_updates_serve_the_batches_of_one_update_per_batch(
    shuffle, n, batch_size, updates_per_batch, updates
) -> None:
    stats = (torch.tensor([0.5, 1.0, -2.0]), torch.tensor([2.0, 0.5, 4.0]))
    single = TensorBatchLoader(
        *indexed(n), batch_size, shuffle=shuffle, seed=7, normalize=stats, updates_per_batch=1
    )
    grouped = TensorBatchLoader(
        *indexed(n), batch_size, shuffle=shuffle, seed=7, normalize=stats,
        updates_per_batch=updates_per_batch,
    )  # fmt: skip
    assert len(single) == math.ceil(n / batch_size)
    assert len(grouped) == len(updates)
    for _ in range(3):  # a new order every epoch, the same in both
        groups = list(grouped)
        assert all(isinstance(group, Updates) for group in groups)
        assert [len(group) for group in groups] == updates
        expected, served = list(single), one_per_batch_of(groups)
        assert len(served) == len(expected)
        for (images, targets), (want_images, want_targets) in zip(served, expected, strict=True):
            assert torch.equal(images, want_images) and torch.equal(targets, want_targets)
        # Unshuffled, a group's batches are views of its slice; shuffled, each batch gathers
        # its rows of the source (group.index) only when its update iterates to it.
        for group in groups:
            if group.index is None:
                assert torch.equal(group.targets, torch.cat([y for _, y in group]))
                for images, _ in group:
                    assert images.untyped_storage().data_ptr() == (
                        group.images.untyped_storage().data_ptr()
                    )
            else:
                assert group.images.shape[0] == n  # the whole source, not a copy of the group
                rows = group.targets.index_select(0, group.index)
                assert torch.equal(rows, torch.cat([y for _, y in group]))
    assert grouped.epoch == single.epoch == 3
    # Independent of the one-per-batch loader: every example once per epoch, paired with its
    # image, normalised; in tensor order when not shuffled.
    images, targets = (torch.cat(t) for t in zip(*one_per_batch(grouped), strict=True))
    assert sorted(targets.tolist()) == list(range(n))
    if not shuffle:
        assert targets.tolist() == list(range(n))
    mean, std = stats
    raw = targets.view(-1, 1, 1, 1).expand(-1, 3, 2, 2)
    torch.testing.assert_close(images, (raw - mean.view(3, 1, 1)) / std.view(3, 1, 1))


def one_per_batch_of(groups: list[Updates]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [batch for group in groups for batch in group]


@pytest.mark.parametrize("n", [10, 11])
def test_updates_in_a_distributed_shard_are_its_one_per_batch_batches(n) -> None:
    for rank in range(2):
        kwargs = dict(batch_size=2, shuffle=True, seed=3, rank=rank, world_size=2)
        single = list(TensorBatchLoader(*indexed(n), **kwargs))
        grouped = TensorBatchLoader(*indexed(n), **kwargs, updates_per_batch=2)
        assert len(grouped) == math.ceil(math.ceil(n / 2) / 4)
        served = one_per_batch(grouped)
        assert len(served) == len(single)
        assert all(
            torch.equal(x, x_) and torch.equal(y, y_)
            for (x, y), (x_, y_) in zip(served, single, strict=True)
        )


def test_updates_per_batch_one_serves_plain_pairs() -> None:
    batches = list(TensorBatchLoader(*indexed(5), batch_size=2, updates_per_batch=1))
    assert all(type(batch) is tuple and len(batch) == 2 for batch in batches)


def test_first_update_is_the_first_batch_of_a_group_or_the_batch_itself() -> None:
    images, targets = indexed(10)
    (group, *_) = TensorBatchLoader(images, targets, batch_size=3, updates_per_batch=2)
    first_images, first_targets = first_update(group)
    assert torch.equal(first_images, images[:3]) and torch.equal(first_targets, targets[:3])
    plain = (images[:4], targets[:4])
    assert first_update(plain) == plain
    assert first_update(list(plain)) == plain  # as a tuple


def test_normalised_images_are_recomputed_after_to() -> None:
    images = torch.rand(6, 3, 2, 2)
    mean, std = torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0.5, 1.0, 2.0])
    loader = TensorBatchLoader(images, torch.zeros(6), 4, normalize=(mean, std))
    expected = (images - mean.view(3, 1, 1)) / std.view(3, 1, 1)
    for _ in range(2):  # the cached normalised images serve every epoch
        assert torch.equal(torch.cat([x for x, _ in loader]), expected)
    loader.images = images * 2
    loader.to("cpu")  # the data may have changed: normalised again, from it
    assert torch.equal(
        torch.cat([x for x, _ in loader]), (2 * images - mean.view(3, 1, 1)) / std.view(3, 1, 1)
    )


@pytest.mark.parametrize("bad", [0, -1, 2.0, True, None])
def test_bad_updates_per_batch(bad) -> None:
    with pytest.raises(ValueError, match=rf"^updates_per_batch must be a positive int, got {bad}$"):
        TensorBatchLoader(*indexed(4), batch_size=2, updates_per_batch=bad)
