"""``CatClassifier``: the tutorial's "does this image contain a cat?" as a LightningModule."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC

from gdtorch.data import Updates, load_image
from gdtorch.data.datamodule import EVAL_BATCH_SIZE
from gdtorch.lightning._compat import count_extra_updates, plain_step, update_is_plain
from gdtorch.lightning.checkpoint_io import AtomicCheckpointIO, CheckpointError
from gdtorch.lightning.parts import parts_from_config

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


class CatClassifier(L.LightningModule):
    """Trains a network ``ŷ = f(x; θ)`` on cat/not-cat images by gradient descent on ``C(ŷ, y)``.

    The loss decides what the network outputs: with ``BCEWithLogitsLoss`` (gdtorch's or torch's)
    it outputs logits ``z`` and the cat probability is ``σ(z)``; with any other loss (BCE, MSE,
    MAE — the tutorial's setting) it outputs the probability ``ŷ`` itself.

    Each training batch is one update ``θ ← θ − η∇C`` — or, when it is an
    :class:`~gdtorch.data.Updates` of several batches, one update per batch in turn, so that the
    trainer's fixed cost per batch is paid once for many of stochastic gradient descent's tiny
    updates. The module therefore optimizes by hand (Lightning's manual optimization): it calls
    ``zero_grad``, ``manual_backward`` and the optimizer's ``step`` for every update, which
    Lightning counts in ``trainer.global_step`` and passes through its hooks
    (``on_before_optimizer_step`` and the backward hooks run once per update whenever a
    callback, the module, the strategy or the precision uses them: ``_compat.update_is_plain``;
    otherwise a batch of several updates skips their dispatch); an epoch-interval
    scheduler steps at the end of each training epoch, ``ReduceLROnPlateau`` on ``val/loss``.
    ``trainer.gradient_clip_val`` and ``accumulate_grad_batches`` are not available.

    Logs ``train/loss`` and ``lr`` of every update ``k`` with ``(k + 1) %
    trainer.log_every_n_steps == 0`` at step ``k``, ``val/loss``, ``val/acc`` and ``val/auroc``
    after each validation, at the step of the last update before it, and ``test/loss``,
    ``test/acc`` and ``test/auroc`` (torchmetrics, per stage).

    A checkpoint is a classifier on its own: ``CatClassifier.load_from_checkpoint(path)``
    rebuilds the network, loss and optimizer from the run config in its hyper-parameters, and
    the buffers ``input_mean`` and ``input_std`` carry the normalisation of the data it was
    trained on (the training split's per-channel statistics, taken from the data module when
    fitting starts), so that :meth:`predict_images` prepares a photo exactly as the validation
    and test images were.

    Args:
        net: the network, mapping images ``(N, 3, H, W)`` to one output per image ``(N, 1)``.
        loss: the cost function ``C(output, target)``.
        optimizer: a partial optimizer, called with the parameters, e.g.
            ``functools.partial(gdtorch.optim.GradientDescent, lr=0.1)``.
        scheduler: optional partial LR scheduler, called with the optimizer; stepped each epoch
            (``ReduceLROnPlateau`` watches ``val/loss``).
        input_shape: shape of one image, ``(3, image_size, image_size)``: the size photos are
            resized to, and ``example_input_array`` (model summaries, graphs).
        config: the run's configuration, stored as plain containers in the checkpoint's
            hyper-parameters (a ``DictConfig`` would not load with ``weights_only=True``).
            ``net``, ``loss`` and ``optimizer`` left out are built from its ``model``, ``loss``,
            ``optimizer`` and ``scheduler`` entries (classes of ``torch.nn``, ``torch.optim``,
            ``gdtorch.nn`` and ``gdtorch.optim`` only).

    Raises:
        ValueError: ``net``, ``loss`` or ``optimizer`` is missing and there is no ``config``.
    """

    def __init__(
        self,
        net: torch.nn.Module | None = None,
        loss: torch.nn.Module | None = None,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        input_shape: Sequence[int] = (3, 64, 64),
        config: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        input_shape = [int(s) for s in input_shape]
        if isinstance(config, DictConfig):
            config = OmegaConf.to_container(config, resolve=True)
        elif config is not None:
            config = dict(config)
        self.save_hyperparameters(ignore=["net", "loss", "optimizer", "scheduler"])
        if net is None or loss is None or optimizer is None:
            if config is None:
                raise ValueError(
                    "CatClassifier needs net, loss and optimizer, or a run config (config) to "
                    "build the missing ones from"
                )
            net, loss, optimizer, scheduler = parts_from_config(
                config, net=net, loss=loss, optimizer=optimizer, scheduler=scheduler
            )
        self.net = net
        self.loss_fn = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.outputs_logits = isinstance(loss, torch.nn.BCEWithLogitsLoss)
        self.example_input_array = torch.zeros(2, *input_shape)
        self.automatic_optimization = False  # see training_step
        # x ↦ (x − mean) / std per channel, as the data module served the images in training
        self.register_buffer("input_mean", torch.zeros(3))
        self.register_buffer("input_std", torch.ones(3))
        self.metrics = torch.nn.ModuleDict(
            {
                f"{stage}_{name}": metric()
                for stage in ("val", "test")
                for name, metric in (("acc", BinaryAccuracy), ("auroc", BinaryAUROC))
            }
        )

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls,
        checkpoint_path: str | Path,
        map_location: str | torch.device | None = None,
        strict: bool = True,
        **kwargs: Any,
    ) -> CatClassifier:
        """The trained classifier of a gdtorch-train checkpoint, from the file alone.

        The file is read through :class:`AtomicCheckpointIO`: as data only (``torch.load(...,
        weights_only=True)``, passed explicitly), whatever the path — a local file or an
        ``http(s)://`` URL — or the environment (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``) says, so
        loading it cannot run code; and checked against the checksum gdtorch-train wrote in it,
        so a corrupted file is an error, not different weights. The network, loss and
        optimizer are then rebuilt from the run config in it (see :class:`CatClassifier`).

        Args:
            checkpoint_path: a ``.ckpt`` file written by gdtorch-train (``last.ckpt`` or a best
                one), or its URL.
            map_location: the device to put the model on (default: the CPU).
            strict: whether the weights must match the rebuilt network's exactly.
            **kwargs: constructor arguments that replace the checkpoint's, e.g. ``net=`` for a
                network gdtorch cannot rebuild.

        Returns:
            The classifier in evaluation mode.

        Raises:
            CheckpointError: the file is missing, unreadable as data only (empty, truncated,
                not a checkpoint, holding Python objects other than tensors and plain
                containers), corrupted (its contents do not match its checksum), or not a
                gdtorch-train checkpoint. The message names the file and never advises loading
                it with ``weights_only=False``.
        """
        device = torch.device("cpu" if map_location is None else map_location)
        checkpoint = AtomicCheckpointIO().load_checkpoint(checkpoint_path, map_location=device)
        hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
        if not isinstance(hparams, dict) or "state_dict" not in checkpoint:
            raise CheckpointError(
                f"{checkpoint_path} is not a CatClassifier checkpoint (no hyper-parameters or "
                f"weights): use a checkpoint written by gdtorch-train."
            )
        model = cls(**{**hparams, **kwargs})
        model.load_state_dict(checkpoint["state_dict"], strict=strict)
        return model.to(device).eval()

    @property
    def image_size(self) -> int:
        """The side of the square images the network takes, in pixels."""
        return int(self.hparams["input_shape"][-1])

    def normalization(self) -> tuple[list[float], list[float]]:
        """The per-channel ``(mean, std)`` the model's inputs are normalised with."""
        return self.input_mean.tolist(), self.input_std.tolist()

    def setup(self, stage: str) -> None:
        """Keeps the data module's normalisation statistics in ``input_mean``/``input_std``."""
        datamodule = getattr(self.trainer, "datamodule", None)
        mean, std = getattr(datamodule, "mean", None), getattr(datamodule, "std", None)
        if stage == "fit" and mean is not None and std is not None:
            self.input_mean.copy_(mean)
            self.input_std.copy_(std)

    def preprocess(self, images: Tensor) -> Tensor:
        """Images ``(N, 3, H, W)`` in ``[0, 1]`` normalised as in training: ``(x − μ) / σ``."""
        return (images - self.input_mean.view(-1, 1, 1)) / self.input_std.view(-1, 1, 1)

    def predict_images(
        self, paths: Sequence[str | Path], batch_size: int = EVAL_BATCH_SIZE
    ) -> Tensor:
        """``P(cat)`` of each image file, prepared as the model's training photos were.

        Each file is decoded, converted to RGB, centre-cropped and resized to
        :attr:`image_size` (:func:`gdtorch.data.load_image`, as for a photo folder), then
        classified by :meth:`predict_decoded`. An image is a cat when ``P(cat) > 0.5``, as the
        accuracy metrics count.

        Args:
            paths: image files.
            batch_size: images per forward pass.

        Returns:
            ``(len(paths),)`` probabilities on the model's device.

        Raises:
            ValueError: a file cannot be decoded as an image (the message names it).

        Example:
            >>> model = CatClassifier.load_from_checkpoint("run/checkpoints/last.ckpt")
            >>> model.predict_images(["cat.jpg", "car.png"])
            tensor([0.9135, 0.0712])
        """
        probabilities = [
            self.predict_decoded(torch.stack([load_image(path, self.image_size) for path in chunk]))
            for chunk in (paths[i : i + batch_size] for i in range(0, len(paths), batch_size))
        ]
        return torch.cat(probabilities) if probabilities else torch.empty(0, device=self.device)

    @torch.no_grad()
    def predict_decoded(self, images: Tensor) -> Tensor:
        """``P(cat)`` of decoded images ``(N, 3, image_size, image_size)``.

        Args:
            images: ``uint8`` pixels as :func:`gdtorch.data.load_image` gives them, or floats
                in ``[0, 1]``; scaled, normalised with the training statistics
                (:meth:`preprocess`) and passed through the network in evaluation mode.

        Returns:
            ``(N,)`` probabilities on the model's device.
        """
        if images.dtype == torch.uint8:
            images = images.to(self.input_mean.dtype).div_(255)
        images = images.to(self.device, self.input_mean.dtype)
        was_training = self.training
        self.eval()
        try:
            return self.cat_probability(self(self.preprocess(images))).flatten()
        finally:
            self.train(was_training)

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)

    def cat_probability(self, output: Tensor) -> Tensor:
        """``P(cat | x)`` from the network's output: ``σ(z)`` for logits, ``ŷ`` otherwise."""
        return torch.sigmoid(output) if self.outputs_logits else output

    def _loss(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        images, targets = batch
        output = self(images)
        targets = targets.to(output.dtype).view_as(output)
        return self.loss_fn(output, targets), output, targets

    def training_step(self, batch: tuple[Tensor, Tensor] | Updates, batch_idx: int) -> Tensor:
        """Gradient descent on ``batch``: ``θ ← θ − η∇C(θ)`` once per ``(images, targets)`` in it.

        Returns:
            The loss of each update, before it: shape ``(updates,)``.
        """
        trainer = self.trainer
        optimizer = self.optimizers()
        grouped = isinstance(batch, Updates)
        updates = batch if grouped else (batch,)
        # Lightning's backward and step add three hook dispatches per update, as long as a
        # tiny update; skipped when nothing listens to them.
        plain = len(updates) > 1 and update_is_plain(trainer, self)
        start, max_steps, log_every = (
            trainer.global_step,
            trainer.max_steps,
            trainer.log_every_n_steps,
        )
        losses, logged = [], []
        # Lightning moved and converted a plain batch, not an Updates
        batches = self._on_run_device(batch) if grouped else updates
        for step, images_targets in enumerate(batches, start):
            if 0 <= max_steps <= step:
                break
            loss, _, _ = self._loss(images_targets)
            optimizer.zero_grad()
            lr = optimizer.param_groups[0]["lr"]
            if plain:
                loss.backward()
                plain_step(optimizer)
            else:
                self.manual_backward(loss)
                optimizer.step()
            losses.append(loss.detach())
            if (step + 1) % log_every == 0:
                logged.append((step, step - start, lr))
        losses = torch.stack(losses)
        self._log_train(losses, logged)
        count_extra_updates(trainer, len(losses) - 1)
        return losses

    def _on_run_device(self, updates: Updates) -> Iterator[tuple[Tensor, Tensor]]:
        """Each batch of ``updates`` in the run's precision and on its device, as Lightning
        serves a plain batch. When the first batch needs no change, neither does the rest: they
        are slices of the same tensors (the usual case, data made on the run's device)."""
        trainer = self.trainer

        def to_run(batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
            batch = trainer.precision_plugin.convert_input(batch)
            return trainer.strategy.batch_to_device(batch)

        batches = iter(updates)
        first = next(batches)
        moved = to_run(first)
        yield moved
        unchanged = all(a is b for a, b in zip(moved, first, strict=True))
        yield from batches if unchanged else map(to_run, batches)

    def _log_train(self, losses: Tensor, logged: list[tuple[int, int, float]]) -> None:
        """``train/loss`` and ``lr`` of the updates due, each at its own step (one device sync)."""
        self.log("train/loss", losses[-1], prog_bar=True, logger=False)
        if not logged or not self.loggers:
            return
        values = losses[[index for _, index, _ in logged]].tolist()
        for (step, _, lr), value in zip(logged, values, strict=True):
            for logger in self.loggers:
                logger.log_metrics({"train/loss": value, "lr": lr}, step=step)

    def on_train_epoch_end(self) -> None:
        """Steps the scheduler once per epoch, after the epoch's validation."""
        scheduler = self.lr_schedulers()
        if scheduler is None:
            return
        if isinstance(scheduler, ReduceLROnPlateau):
            if "val/loss" not in self.trainer.callback_metrics:
                return  # no validation yet: ReduceLROnPlateau waits for the first one
            # the last validation's val/loss, as Lightning steps it in automatic optimization
            scheduler.step(self.trainer.callback_metrics["val/loss"])
        else:
            scheduler.step()

    def _evaluate(self, stage: str, batch: tuple[Tensor, Tensor]) -> Tensor:
        loss, output, targets = self._loss(batch)
        probability = self.cat_probability(output.detach()).flatten()
        labels = targets.flatten().round().long()
        batch_size = len(labels)
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=batch_size)
        for name in ("acc", "auroc"):
            metric = self.metrics[f"{stage}_{name}"]
            metric.update(probability, labels)  # computed once, over the whole stage
            self.log(f"{stage}/{name}", metric, prog_bar=name == "acc", batch_size=batch_size)
        return probability

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._evaluate("val", batch)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._evaluate("test", batch)

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        images = batch[0] if isinstance(batch, list | tuple) else batch
        return self.cat_probability(self(images)).flatten()

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch", "monitor": "val/loss"},
        }
