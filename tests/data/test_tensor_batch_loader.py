"""TensorBatchLoader: batch counts and sizes, shuffling per epoch, normalisation, devices."""

from __future__ import annotations

import pytest
import torch

from gdtorch.data import TensorBatchLoader


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
