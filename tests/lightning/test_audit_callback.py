"""GradientAudit: the gradient audit inside a Lightning fit, and a broken backward stopping it."""

from __future__ import annotations

import functools

import lightning.pytorch as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from gdtorch import autograd as GA
from gdtorch import nn as gnn
from gdtorch.lightning import CatClassifier
from gdtorch.lightning import audit as audit_module
from gdtorch.lightning.audit import GradientAudit, GradientAuditError


def _loader() -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(32, 3, 4, 4, generator=generator)
    targets = (torch.rand(32, generator=generator) > 0.5).float()
    return DataLoader(TensorDataset(images, targets), batch_size=8)


def _classifier() -> CatClassifier:
    return CatClassifier(
        net=gnn.MLP([48, 4, 1], activation="sigmoid"),
        loss=gnn.BCEWithLogitsLoss(),
        optimizer=functools.partial(torch.optim.SGD, lr=0.1),
        input_shape=(3, 4, 4),
    )


def _fit(tmp_path, callbacks: list[L.Callback], max_epochs: int = 1) -> L.Trainer:
    trainer = L.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=callbacks,
    )
    trainer.fit(_classifier(), _loader(), _loader())
    return trainer


def test_audits_every_n_steps_and_logs_the_differences(tmp_path, monkeypatch):
    audited = []
    real_audit = audit_module.audit

    def spy(model, loss_fn, inputs, targets):
        audited.append(tuple(targets.shape))  # (8,): reshaped like the output (8, 1) by loss_fn
        return real_audit(model, loss_fn, inputs, targets)

    monkeypatch.setattr(audit_module, "audit", spy)
    callback = GradientAudit(every_n_steps=3)
    trainer = _fit(tmp_path, [callback], max_epochs=2)  # steps 0..7: audits at 0, 3 and 6

    assert trainer.global_step == 8
    assert audited == [(8,)] * 3
    metrics = trainer.callback_metrics
    assert 0 <= metrics["audit/max_abs_diff"] <= 1e-10
    assert 0 <= metrics["audit/max_rel_diff"] <= 1e-10
    assert callback.last_report.max_abs_diff == pytest.approx(metrics["audit/max_abs_diff"].item())
    layers = [row.name for row in callback.last_report.rows if row.kind == "layer"]
    assert "1 (Sigmoid)" in layers


def test_broken_backward_stops_the_fit_naming_step_layer_and_difference(tmp_path, monkeypatch):
    def doubled(ctx, grad_output):
        (output,) = ctx.saved_tensors
        return 2 * grad_output * output * (1 - output)

    class BreakSigmoidAtStep3(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == 3:
                monkeypatch.setattr(GA.SigmoidFunction, "backward", staticmethod(doubled))

    message = (
        r"GradientAudit at step 3: .*tolerance=1e-08; worst layer: 1 \(Sigmoid\), "
        r"max \|g − r\| = \d\.\d{3}e-\d\d, relative 1\.000e\+00; worst parameter: 0\.(weight|bias)"
    )
    stopped_at = []

    class Recorder(L.Callback):
        def on_exception(self, trainer, pl_module, exception):
            stopped_at.append(trainer.global_step)

    with pytest.raises(GradientAuditError, match=message) as raised:
        _fit(tmp_path, [BreakSigmoidAtStep3(), GradientAudit(every_n_steps=3), Recorder()])
    assert stopped_at == [3]  # the audit at step 0 passed; the one at step 3 stopped the run
    assert "loss.loss_fn (BCEWithLogitsLoss)" in str(raised.value)  # the full table follows


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"every_n_steps": 0}, "every_n_steps"), ({"tolerance": -1.0}, "tolerance")],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GradientAudit(**kwargs)
