"""Layer 6: ``evaluate(cfg)`` — test a trained checkpoint on any data source, without training.

``gdtorch-eval`` (:func:`gdtorch.cli.eval_main`, config ``conf/eval.yaml``) wraps it in
``@hydra.main``, as ``gdtorch-train`` wraps :func:`gdtorch.train.run`.
"""

from __future__ import annotations

import logging

import lightning.pytorch as L
from hydra.utils import instantiate
from omegaconf import DictConfig

from gdtorch.lightning import CatClassifier
from gdtorch.train import build_loggers, plugins

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test the checkpoint ``cfg.ckpt_path`` on the test split of ``cfg.data``.

    The classifier comes from the checkpoint alone
    (:meth:`CatClassifier.load_from_checkpoint`); the data is made at the checkpoint's image
    size and normalised with the checkpoint's statistics, not the new data's, so every image is
    prepared exactly as in training — a model trained on SyntheticCats can be tested on a photo
    folder (``data=folder data.root=…``: with ``train/`` and ``test/`` sub-folders, all of
    ``test/``).

    Args:
        cfg: a composed ``conf/eval.yaml``.

    Returns:
        ``test/loss``, ``test/acc`` and ``test/auroc`` as floats.

    Raises:
        ValueError: no ``ckpt_path`` is given.
        CheckpointError: ``ckpt_path`` is missing, unreadable, or not a gdtorch-train checkpoint.
    """
    if not cfg.get("ckpt_path"):
        raise ValueError(
            "gdtorch-eval needs ckpt_path=<a .ckpt file written by gdtorch-train>, e.g. "
            "ckpt_path=outputs/<date>/<time>/checkpoints/last.ckpt"
        )
    L.seed_everything(cfg.seed, workers=True)
    model = CatClassifier.load_from_checkpoint(cfg.ckpt_path)
    datamodule = instantiate(
        cfg.data, image_size=model.image_size, normalization=model.normalization()
    )
    trainer: L.Trainer = instantiate(
        cfg.trainer, logger=build_loggers(cfg), callbacks=[], plugins=plugins(cfg.trainer)
    )
    trainer.test(model, datamodule=datamodule)
    metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
    if trainer.is_global_zero:
        log.info(
            "checkpoint: %s\n%s",
            cfg.ckpt_path,
            "\n".join(f"{name}: {value:.4f}" for name, value in sorted(metrics.items())),
        )
    return metrics
