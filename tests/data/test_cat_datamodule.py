"""CatDataModule: the three gradient-descent modes, splits, statistics, errors, Lightning."""

from __future__ import annotations

import re
import urllib.error
import urllib.request

import lightning as L
import pytest
import torch
from torch import nn

from gdtorch.data import CatDataModule, SyntheticCats, Updates

SMALL = {"n_train": 40, "n_val": 12, "n_test": 10, "image_size": 16}


def ready(**kwargs) -> CatDataModule:
    dm = CatDataModule(**{**SMALL, **kwargs})
    dm.setup()
    return dm


def fingerprints(images: torch.Tensor) -> set[bytes]:
    return {image.numpy().tobytes() for image in images}


@pytest.mark.parametrize(
    ("mode", "batch_size", "sizes"),
    [
        ("batch", 16, [40]),  # batch_size is ignored: every update sees the whole training set
        ("stochastic", 16, [1] * 40),
        ("minibatch", 16, [16, 16, 8]),
        ("minibatch", 40, [40]),
    ],
)
def test_batches_per_epoch_follow_the_mode(mode: str, batch_size: int, sizes: list[int]) -> None:
    loader = ready(mode=mode, batch_size=batch_size).train_dataloader()
    assert len(loader) == len(sizes)
    for _ in range(2):
        assert [len(y) for _, y in loader] == sizes


@pytest.mark.parametrize(
    ("mode", "reshuffled"), [("batch", False), ("stochastic", True), ("minibatch", True)]
)
def test_reshuffling_between_epochs(mode: str, reshuffled: bool) -> None:
    loader = ready(mode=mode, batch_size=8).train_dataloader()
    first, second = (torch.cat([x for x, _ in loader]) for _ in range(2))
    assert fingerprints(first) == fingerprints(second)  # every example, once per epoch
    assert (not torch.equal(first, second)) == reshuffled


def updates_of(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of training batches, one ``(images, targets)`` per update, in order."""
    batches = []
    for batch in loader:
        batches.extend(batch if isinstance(batch, Updates) else [batch])
    return batches


@pytest.mark.parametrize(
    ("mode", "updates_per_batch", "groups"),
    [
        ("minibatch", 2, [[16, 16], [8]]),
        ("minibatch", 8, [[16, 16, 8]]),
        ("stochastic", 16, [[1] * 16, [1] * 16, [1] * 8]),
        ("batch", 4, [[40]]),  # the whole set is one update, whatever updates_per_batch
    ],
)
def test_updates_per_batch_groups_the_same_training_batches(mode, updates_per_batch, groups):
    grouped = ready(mode=mode, batch_size=16, updates_per_batch=updates_per_batch)
    single = ready(mode=mode, batch_size=16)
    grouped_loader, single_loader = grouped.train_dataloader(), single.train_dataloader()
    assert len(grouped_loader) == len(groups)
    for _ in range(2):  # reshuffled alike every epoch
        served = list(grouped_loader)
        assert all(isinstance(batch, Updates) for batch in served)
        assert [[len(y) for _, y in batch] for batch in served] == groups
        expected = updates_of(single_loader)
        assert len(updates_of(served)) == len(expected)
        for (x, y), (x_, y_) in zip(updates_of(served), expected, strict=True):
            assert torch.equal(x, x_) and torch.equal(y, y_)
    assert grouped.state_dict() == single.state_dict() == {"train_epoch": 2}


class _DistributedTrainer:
    overfit_batches = 0

    def __init__(self, rank: int) -> None:
        self.global_rank, self.world_size = rank, 2


def test_updates_per_batch_is_one_update_a_batch_under_a_distributed_strategy() -> None:
    dm = ready(mode="minibatch", batch_size=8, updates_per_batch=4)
    dm.trainer = _DistributedTrainer(rank=1)
    batches = list(dm.train_dataloader())
    assert [type(batch) for batch in batches] == [tuple] * 3  # 20 examples: 8, 8, 4
    assert [len(y) for _, y in batches] == [8, 8, 4]


def test_eval_loaders_serve_every_example_in_order() -> None:
    dm = ready(mode="stochastic")
    for loader, dataset in ((dm.val_dataloader(), dm.val_set), (dm.test_dataloader(), dm.test_set)):
        images = torch.cat([x for x, _ in loader])
        targets = torch.cat([y for _, y in loader])
        torch.testing.assert_close(
            images * dm.std.view(3, 1, 1) + dm.mean.view(3, 1, 1), dataset.images
        )
        assert torch.equal(targets, dataset.targets)


def test_synthetic_splits_are_seeded_and_disjoint() -> None:
    dm = ready(seed=5)
    splits = [fingerprints(s.images) for s in (dm.train_set, dm.val_set, dm.test_set)]
    assert [len(s) for s in splits] == [40, 12, 10]
    assert (
        not (splits[0] & splits[1]) and not (splits[0] & splits[2]) and not (splits[1] & splits[2])
    )
    # As documented: the splits are SyntheticCats drawn with seeds 3 * seed + 0, 1, 2.
    assert torch.equal(dm.val_set.images, SyntheticCats(12, 16, seed=16).images)
    assert torch.equal(ready(seed=5).train_set.images, dm.train_set.images)
    assert not torch.equal(ready(seed=6).train_set.images, dm.train_set.images)


def test_normalisation_statistics_come_from_the_training_split_only() -> None:
    dm = ready(n_val=200)
    train = dm.train_set.images.double()
    torch.testing.assert_close(dm.mean.double(), train.mean(dim=(0, 2, 3)), rtol=0, atol=1e-6)
    torch.testing.assert_close(dm.std.double(), train.std(dim=(0, 2, 3)), rtol=0, atol=1e-6)
    assert not torch.allclose(dm.mean, dm.val_set.images.mean(dim=(0, 2, 3)), atol=1e-4)
    # Validation batches are standardised with the training numbers; training batches,
    # taken all together, have mean 0 and standard deviation 1.
    val_images, _ = next(iter(dm.val_dataloader()))
    expected = (dm.val_set.images - dm.mean.view(3, 1, 1)) / dm.std.view(3, 1, 1)
    torch.testing.assert_close(val_images, expected)
    everything = torch.cat([x for x, _ in ready(mode="batch").train_dataloader()]).double()
    torch.testing.assert_close(
        everything.mean(dim=(0, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        everything.std(dim=(0, 2, 3)), torch.ones(3, dtype=torch.float64), atol=1e-5, rtol=0
    )


def test_image_shape_and_input_size_follow_image_size() -> None:
    dm = CatDataModule(image_size=32)
    assert dm.image_shape == (3, 32, 32) and dm.input_size == 3072
    assert CatDataModule().input_size == 12288


def test_device_moves_the_data_once() -> None:
    dm = ready(device="meta")
    assert dm.train_set.images.device.type == "meta" and dm.mean.device.type == "meta"
    images, targets = next(iter(dm.train_dataloader()))
    assert images.device.type == "meta" and targets.device.type == "meta"


def test_state_dict_resumes_the_shuffling_sequence() -> None:
    dm = ready(batch_size=8)
    loader = dm.train_dataloader()
    list(loader)
    state = dm.state_dict()
    assert state == {"train_epoch": 1}
    second_epoch = torch.cat([y for _, y in loader])
    resumed = ready(batch_size=8)
    resumed.load_state_dict(state)
    assert torch.equal(torch.cat([y for _, y in resumed.train_dataloader()]), second_epoch)


def one_epoch(loader) -> torch.Tensor:
    """Every image ``loader`` serves in one pass, in order."""
    return torch.cat([x for x, _ in loader])


def test_a_rebuilt_training_loader_continues_the_shuffling_sequence() -> None:
    # Lightning asks for a new loader every epoch with reload_dataloaders_every_n_epochs=1:
    # epoch e must still use the e-th order, across a save and resume too.
    kept = ready(batch_size=8).train_dataloader()
    expected = [one_epoch(kept) for _ in range(4)]
    dm = ready(batch_size=8)
    served = [one_epoch(dm.train_dataloader()) for _ in range(2)]
    assert dm.state_dict() == {"train_epoch": 2}
    resumed = ready(batch_size=8)
    resumed.load_state_dict(dm.state_dict())
    served += [one_epoch(resumed.train_dataloader()) for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(served, expected, strict=True))
    assert not torch.equal(expected[0], expected[1])


@pytest.mark.parametrize("mode", ["stochastic", "minibatch"])
def test_overfitting_serves_the_same_batches_every_epoch(mode: str) -> None:
    # Lightning swaps a shuffling DataLoader's sampler for a SequentialSampler; so does this.
    dm = ready(mode=mode, batch_size=8)
    dm.trainer = L.Trainer(overfit_batches=2, accelerator="cpu", logger=False)
    with pytest.warns(UserWarning, match="We are turning off the train dataloader shuffling"):
        loader = dm.train_dataloader()
    assert torch.equal(one_epoch(loader), one_epoch(loader))
    assert torch.equal(
        one_epoch(loader), (dm.train_set.images - dm.mean.view(3, 1, 1)) / dm.std.view(3, 1, 1)
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "full"}, "mode must be one of batch, stochastic, minibatch; got 'full'"),
        (
            {"source": "imagenet"},
            "source must be one of synthetic, cifar10, folder; got 'imagenet'",
        ),
        ({"batch_size": 0}, "batch_size must be a positive int, got 0"),
        ({"n_train": 0}, "n_train must be a positive int, got 0"),
        ({"n_train": None}, "n_train must be a positive int, got None"),
        ({"n_val": -1}, "n_val must be a positive int, got -1"),
        ({"n_test": 0}, "n_test must be a positive int, got 0"),
        ({"image_size": 0}, "image_size must be a positive int, got 0"),
        ({"updates_per_batch": 0}, "updates_per_batch must be a positive int, got 0"),
        ({"updates_per_batch": 2.0}, "updates_per_batch must be a positive int, got 2.0"),
        ({"updates_per_batch": True}, "updates_per_batch must be a positive int, got True"),
        ({"num_workers": -1}, "num_workers must be a non-negative int, got -1"),
        ({"source": "cifar10"}, "source 'cifar10' needs root"),
        ({"source": "folder", "root": "x", "n_test": -2}, "n_test must be a positive int, got -2"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        CatDataModule(**kwargs)


def test_cifar10_source(fake_cifar) -> None:
    dm = ready(
        source="cifar10", root=fake_cifar.root, n_train=None, n_val=8, n_test=None, image_size=32
    )
    # Balanced: the 20 training cats and 20 others, 8 of them held out for validation;
    # the test split is the balanced test batch (5 cats, 5 others).
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (32, 8, 10)
    assert dm.train_set.targets.sum() + dm.val_set.targets.sum() == 20
    assert dm.test_set.targets.sum() == 5
    assert not fingerprints(dm.train_set.images) & fingerprints(dm.val_set.images)
    test_rows = torch.from_numpy(fake_cifar.test_data).float().div(255).view(-1, 3, 32, 32)
    assert fingerprints(dm.test_set.images) <= fingerprints(test_rows)
    unbalanced = ready(
        source="cifar10", root=fake_cifar.root, n_train=None, n_val=8, n_test=None, balance=False
    )
    assert (len(unbalanced.train_set), len(unbalanced.test_set)) == (192, 50)
    assert unbalanced.train_set.images.shape[-1] == 16  # resized to image_size


def test_cifar10_missing_root_is_file_not_found(tmp_path) -> None:
    dm = CatDataModule(source="cifar10", root=tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match=r"data\.download=true"):
        dm.setup()


def test_cifar10_download_happens_in_prepare_data(fake_cifar, tmp_path, monkeypatch) -> None:
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    CatDataModule(source="cifar10", root=fake_cifar.root, download=True).prepare_data()  # there
    dm = CatDataModule(source="cifar10", root=tmp_path / "nowhere", download=True)
    with pytest.raises(ConnectionError, match=r"data\.download=false"):
        dm.prepare_data()
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.filterwarnings(r"ignore:the (validation|test) split holds")  # tiny draws
def test_folder_source(photo_folder) -> None:
    dm = ready(
        source="folder", root=photo_folder.root, n_train=None, n_val=2, n_test=2, balance=False
    )
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (3, 2, 2)
    everything = torch.cat([dm.train_set.targets, dm.val_set.targets, dm.test_set.targets])
    assert sorted(everything.tolist()) == [0.0] * 4 + [1.0] * 3
    balanced = ready(source="folder", root=photo_folder.root, n_train=None, n_val=1, n_test=1)
    assert len(balanced.train_set) == 4  # 3 cats + 3 of the 4 others, minus 2 held out


def test_asking_for_more_examples_than_there_are(photo_folder) -> None:
    dm = CatDataModule(source="folder", root=photo_folder.root, n_val=2, n_test=2, n_train=10)
    message = r"n_test=2, n_val=2, n_train=10 but photo folder \S+, balanced .* has only 6"
    with pytest.raises(ValueError, match=message):
        dm.setup()


class TinyClassifier(L.LightningModule):
    """Logistic regression on flattened pixels, in plain torch.nn."""

    def __init__(self, input_size: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(input_size, 1))
        self.seen: list[int] = []

    def loss(self, batch) -> torch.Tensor:
        images, targets = batch
        return nn.functional.binary_cross_entropy_with_logits(self.net(images).squeeze(1), targets)

    def training_step(self, batch, batch_idx):
        self.seen.append(len(batch[1]))
        return self.loss(batch)

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self.loss(batch))

    def test_step(self, batch, batch_idx):
        images, targets = batch
        accuracy = ((self.net(images).squeeze(1) > 0).float() == targets).float().mean()
        self.log("test/acc", accuracy)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


@pytest.mark.parametrize(("mode", "steps"), [("batch", 1), ("stochastic", 40), ("minibatch", 3)])
def test_trains_inside_a_lightning_trainer(mode: str, steps: int) -> None:
    dm = CatDataModule(mode=mode, batch_size=16, **SMALL)
    model = TinyClassifier(dm.input_size)
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == steps
    assert sum(model.seen) == 40 and len(model.seen) == steps
    (metrics,) = trainer.test(model, datamodule=dm, verbose=False)
    assert 0.0 <= metrics["test/acc"] <= 1.0


class OrderRecorder(TinyClassifier):
    """Records every training image's first pixel, per epoch, in the order trained on."""

    def __init__(self, input_size: int) -> None:
        super().__init__(input_size)
        self.orders: dict[int, list[torch.Tensor]] = {}

    def training_step(self, batch, batch_idx):
        self.orders.setdefault(self.current_epoch, []).append(batch[0][:, 0, 0, 0])
        return super().training_step(batch, batch_idx)

    def epoch_orders(self) -> dict[int, torch.Tensor]:
        return {epoch: torch.cat(firsts) for epoch, firsts in self.orders.items()}


def fit_recording_orders(max_epochs: int, reload: int, ckpt_path=None) -> L.Trainer:
    dm = CatDataModule(mode="minibatch", batch_size=16, **SMALL)
    trainer = L.Trainer(
        max_epochs=max_epochs,
        reload_dataloaders_every_n_epochs=reload,
        limit_val_batches=0,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(OrderRecorder(dm.input_size), datamodule=dm, ckpt_path=ckpt_path)
    return trainer


def test_reloading_the_dataloaders_every_epoch_keeps_the_shuffling_sequence(tmp_path) -> None:
    expected = fit_recording_orders(4, reload=0).lightning_module.epoch_orders()
    assert not torch.equal(expected[0], expected[1])  # a new order every epoch
    reloaded = fit_recording_orders(4, reload=1).lightning_module.epoch_orders()
    assert expected.keys() == reloaded.keys() == {0, 1, 2, 3}
    assert all(torch.equal(expected[e], reloaded[e]) for e in expected)
    # Stopped after two epochs and resumed from the checkpoint: the same orders follow.
    first_half = fit_recording_orders(2, reload=1)
    first_half.save_checkpoint(tmp_path / "half.ckpt")
    resumed = fit_recording_orders(4, reload=1, ckpt_path=tmp_path / "half.ckpt")
    second_half = resumed.lightning_module.epoch_orders()
    assert second_half.keys() == {2, 3}
    assert all(torch.equal(expected[e], second_half[e]) for e in second_half)


class _Strategy:
    def __init__(self, device: str) -> None:
        self.root_device = torch.device(device)


class _Trainer:
    def __init__(self, device: str) -> None:
        self.strategy = _Strategy(device)


@pytest.mark.parametrize(
    ("device", "free", "expected"),
    [("cpu", 10**12, None), ("cuda", 10**12, "cuda"), ("cuda", 1000, None)],
)
def test_auto_device_uses_the_trainers_gpu_only_when_the_data_fits(
    monkeypatch, device, free, expected
) -> None:
    dm = CatDataModule(n_train=16, n_val=8, n_test=8, image_size=16)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (free, 2 * free))
    dm.trainer = _Trainer(device)
    splits = [SyntheticCats(16, 16), SyntheticCats(8, 16, seed=1)]
    chosen = dm._data_device(splits)
    assert (None if chosen is None else torch.device(chosen).type) == expected
    dm.trainer = None
    assert dm._data_device(splits) is None  # no trainer: the CPU
