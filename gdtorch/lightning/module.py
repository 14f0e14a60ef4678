"""``CatClassifier``: the tutorial's "does this image contain a cat?" as a LightningModule."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import lightning.pytorch as L
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC

from gdtorch.data import Updates
from gdtorch.lightning._compat import count_extra_updates, plain_step, update_is_plain

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

    Args:
        net: the network, mapping images ``(N, 3, H, W)`` to one output per image ``(N, 1)``.
        loss: the cost function ``C(output, target)``.
        optimizer: a partial optimizer, called with the parameters, e.g.
            ``functools.partial(gdtorch.optim.GradientDescent, lr=0.1)``.
        scheduler: optional partial LR scheduler, called with the optimizer; stepped each epoch
            (``ReduceLROnPlateau`` watches ``val/loss``).
        input_shape: shape of one image, for ``example_input_array`` (model summaries, graphs).
        config: the run's configuration, stored as plain containers in the checkpoint's
            hyper-parameters (a ``DictConfig`` would not load with ``weights_only=True``).
    """

    def __init__(
        self,
        net: torch.nn.Module,
        loss: torch.nn.Module,
        optimizer: OptimizerFactory,
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
        self.net = net
        self.loss_fn = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.outputs_logits = isinstance(loss, torch.nn.BCEWithLogitsLoss)
        self.example_input_array = torch.zeros(2, *input_shape)
        self.automatic_optimization = False  # see training_step
        self.metrics = torch.nn.ModuleDict(
            {
                f"{stage}_{name}": metric()
                for stage in ("val", "test")
                for name, metric in (("acc", BinaryAccuracy), ("auroc", BinaryAUROC))
            }
        )

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
