"""``CatClassifier``: the tutorial's "does this image contain a cat?" as a LightningModule."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import lightning.pytorch as L
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


class CatClassifier(L.LightningModule):
    """Trains a network ``ŷ = f(x; θ)`` on cat/not-cat images by gradient descent on ``C(ŷ, y)``.

    The loss decides what the network outputs: with ``BCEWithLogitsLoss`` (gdtorch's or torch's)
    it outputs logits ``z`` and the cat probability is ``σ(z)``; with any other loss (BCE, MSE,
    MAE — the tutorial's setting) it outputs the probability ``ŷ`` itself.

    Logs ``train/loss`` and ``lr`` of one batch every ``trainer.log_every_n_steps`` updates,
    ``val/loss``, ``val/acc`` and ``val/auroc`` after each validation, and ``test/loss``,
    ``test/acc`` and ``test/auroc`` (torchmetrics, per stage). Lightning's step of a batch counts
    the updates before it: batch ``k`` of training is step ``k``, and a validation is logged at
    the step of the last update it follows.

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

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss, _, _ = self._loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch[1]))
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=len(batch[1]))
        return loss

    def _evaluate(self, stage: str, batch: tuple[Tensor, Tensor]) -> Tensor:
        loss, output, targets = self._loss(batch)
        probability = self.cat_probability(output.detach()).flatten()
        labels = targets.flatten().round().long()
        batch_size = len(labels)
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=batch_size)
        for name in ("acc", "auroc"):
            metric = self.metrics[f"{stage}_{name}"]
            metric(probability, labels)
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
