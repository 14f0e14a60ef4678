"""audit: gdtorch's hand-written gradients against torch autograd, layer by layer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision

import gdtorch
from gdtorch import autograd as GA
from gdtorch import nn as gnn
from gdtorch.gradient_audit import AuditReport, AuditRow, audit


def _mixed_network() -> torch.nn.Sequential:
    return torch.nn.Sequential(
        gnn.Linear(6, 5), gnn.Tanh(), gnn.Linear(5, 4), gnn.Sigmoid(), gnn.Linear(4, 3), gnn.ReLU()
    )


def _batch(outputs: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(8, 6), torch.rand(8, outputs)


def _layer_names(model: torch.nn.Module, loss: torch.nn.Module) -> list[str]:
    return [
        f"{name} ({type(module).__name__})"
        for name, module in [*model.named_modules(), ("loss", loss)]
        if type(module).__module__.startswith("gdtorch.nn.") and type(module) is not gnn.MLP
    ]


@pytest.mark.parametrize(
    ("model", "loss", "outputs"),
    [
        (gnn.MLP([6, 5, 3, 1], activation="relu"), gnn.BCEWithLogitsLoss(), 1),
        (gnn.MLP([6, 5, 3, 1], "sigmoid", output_activation="sigmoid"), gnn.BCELoss(), 1),
        (gnn.MLP([6, 5, 3, 1], "tanh", output_activation="sigmoid"), gnn.MSELoss(), 1),
        (gnn.MLP([6, 5, 3, 1], "relu", output_activation="tanh"), gnn.MAELoss(), 1),
        (_mixed_network(), gnn.MSELoss(reduction="sum"), 3),
    ],
    ids=["relu-bce-logits", "sigmoid-bce", "tanh-mse", "relu-mae", "mixed-mse-sum"],
)
def test_healthy_gdtorch_model_matches_autograd(model, loss, outputs):
    report = audit(model, loss, *_batch(outputs))
    assert report.max_abs_diff <= 1e-10 and report.max_rel_diff <= 1e-10
    parameters = [row.name for row in report.rows if row.kind == "parameter"]
    assert parameters == [name for name, _ in model.named_parameters()]
    layers = [row.name for row in report.rows if row.kind == "layer"]
    assert layers == _layer_names(model, loss)


def test_converted_torch_model_with_dropout_and_inplace_relu_matches_autograd():
    model = gnn.convert(
        torch.nn.Sequential(
            torch.nn.Linear(6, 5),
            torch.nn.ReLU(inplace=True),
            torch.nn.Dropout(0.5),  # train mode: both passes must draw the same mask
            torch.nn.LayerNorm(5),
            torch.nn.Linear(5, 1),
            torch.nn.Sigmoid(),
        )
    )
    loss = gnn.convert(torch.nn.BCELoss())
    report = audit(model, loss, *_batch())
    assert report.max_abs_diff <= 1e-10 and report.max_rel_diff <= 1e-10
    assert [row.name for row in report.rows if row.kind == "layer"] == [
        "0 (Linear)",
        "1 (ReLU)",
        "4 (Linear)",
        "5 (Sigmoid)",
        "loss (BCELoss)",
    ]
    assert {"3.weight", "3.bias"} <= {row.name for row in report.rows}


def test_broken_backward_is_caught_and_localised(monkeypatch):
    def doubled(ctx, grad_output):
        (output,) = ctx.saved_tensors
        return 2 * grad_output * output * (1 - output)

    model, loss = _mixed_network(), gnn.MSELoss()
    inputs, targets = _batch(outputs=3)
    monkeypatch.setattr(GA.SigmoidFunction, "backward", staticmethod(doubled))
    report = audit(model, loss, inputs, targets)

    # Independent reference: the same network in plain torch, float64, with ∂C/∂z kept at the
    # sigmoid's input z. Doubling σ' doubles ∂C/∂z and every gradient beneath it, so those
    # differ by exactly the reference gradient itself (relative difference 1).
    bottom = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 4))
    top = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
    bottom.load_state_dict(model[:3].state_dict())
    top[0].load_state_dict(model[4].state_dict())
    bottom.double(), top.double()
    z = bottom(inputs.double())
    z.retain_grad()
    torch.nn.functional.mse_loss(top(torch.sigmoid(z)), targets.double()).backward()

    rows = {row.name: row for row in report.rows}
    worst = report.worst("layer")
    assert worst.name == "3 (Sigmoid)"
    assert worst.max_abs_diff == pytest.approx(z.grad.abs().max().item(), rel=1e-12)
    assert worst.max_rel_diff == pytest.approx(1.0, rel=1e-12)
    beneath = {"0.weight", "0.bias", "2.weight", "2.bias"}
    for name in beneath:
        grad = bottom.get_parameter(name).grad
        assert rows[name].max_abs_diff == pytest.approx(grad.abs().max().item(), rel=1e-12)
        assert rows[name].max_rel_diff == pytest.approx(1.0, rel=1e-12)
    healthy = [row for row in report.rows if row.name not in {"3 (Sigmoid)", *beneath}]
    assert len(healthy) == 8  # 4.weight, 4.bias, four other layers and the loss
    assert all(row.max_abs_diff <= 1e-12 for row in healthy)
    assert report.max_abs_diff == max(row.max_abs_diff for row in report.rows) > 1e-3
    assert report.max_rel_diff == pytest.approx(1.0, rel=1e-12)


def test_users_model_grads_dtype_and_random_state_are_untouched():
    model = gnn.convert(torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.Dropout(0.3)))
    model.append(gnn.Linear(4, 1))
    inputs, targets = _batch()
    gnn.MSELoss()(model(inputs), targets).backward()
    state = {name: p.detach().clone() for name, p in model.named_parameters()}
    grads = {name: p.grad for name, p in model.named_parameters()}
    grad_values = {name: g.clone() for name, g in grads.items()}
    rng = torch.get_rng_state()

    audit(model, gnn.MSELoss(), inputs, targets)

    assert torch.equal(torch.get_rng_state(), rng)
    assert model.training
    for name, p in model.named_parameters():
        assert p.dtype == torch.float32
        assert torch.equal(p, state[name])
        assert p.grad is grads[name] and torch.equal(p.grad, grad_values[name])


def test_single_layer_model_rows_and_printable_table():
    model, loss = gnn.Linear(6, 1), gnn.MSELoss()
    report = audit(model, loss, *_batch())
    assert [row.name for row in report.rows] == [
        "weight",
        "bias",
        "model (Linear)",
        "loss (MSELoss)",
    ]
    lines = str(report).splitlines()
    assert len(lines) == 1 + len(report.rows)
    assert "max |g − r|" in lines[0]
    for line, row in zip(lines[1:], report.rows, strict=True):
        assert line.split()[0] == row.kind and row.name in line
        assert f"{row.max_abs_diff:.3e}" in line


def test_report_maxima_worst_row_and_tolerance():
    rows = (
        AuditRow("parameter", "w", 1e-3, 1e-9),
        AuditRow("layer", "a", 1e-9, 0.5),
        AuditRow("layer", "b", 2e-6, 0.2),
    )
    report = AuditReport(rows)
    assert (report.max_abs_diff, report.max_rel_diff) == (1e-3, 0.5)
    assert report.worst().name == "a" and report.worst("parameter").name == "w"
    assert [row.exceeds(1e-8) for row in rows] == [False, False, True]
    assert AuditReport().worst() is None and AuditReport().max_abs_diff == 0.0


def test_non_scalar_loss_is_refused():
    with pytest.raises(ValueError, match=r"loss_fn must return a scalar cost C.*\(8, 1\)"):
        audit(gnn.Linear(6, 1), gnn.MSELoss(reduction="none"), *_batch())


# --------------------------------------------------------------------------- under handwritten()


class _FunctionalNet(torch.nn.Module):
    """Functional calls only: ``convert`` finds nothing here, ``handwritten()`` takes them."""

    def __init__(self) -> None:
        super().__init__()
        self.w1 = torch.nn.Parameter(torch.randn(5, 6) / 2)
        self.b1 = torch.nn.Parameter(torch.randn(5) / 2)
        self.w2 = torch.nn.Parameter(torch.randn(4, 5) / 2)
        self.w3 = torch.nn.Parameter(torch.randn(1, 4) / 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(F.linear(x, self.w1, self.b1))
        h = F.relu(F.linear(h, self.w2))
        return torch.sigmoid(F.linear(h, self.w3))


FUNCTIONAL_ROWS = [
    "model (_FunctionalNet): linear #1",
    "model (_FunctionalNet): tanh",
    "model (_FunctionalNet): linear #2",
    "model (_FunctionalNet): relu",
    "model (_FunctionalNet): linear #3",
    "model (_FunctionalNet): sigmoid",
]


def test_functional_model_under_handwritten_has_a_row_per_call():
    model = _FunctionalNet()
    report = audit(model, F.binary_cross_entropy, *_batch(), handwritten=True)
    assert report.max_abs_diff <= 1e-10 and report.max_rel_diff <= 1e-10
    assert [row.name for row in report.rows if row.kind == "parameter"] == ["w1", "b1", "w2", "w3"]
    layers = [row.name for row in report.rows if row.kind == "layer"]
    assert layers == [*FUNCTIONAL_ROWS, "loss: binary_cross_entropy"]
    without = audit(model, F.binary_cross_entropy, *_batch())  # handwritten=False: torch's own
    assert [row.kind for row in without.rows] == ["parameter"] * 4


def test_audit_inside_handwritten_audits_the_calls_and_counts_nothing_there():
    model, loss = torchvision.ops.MLP(6, [5, 1], dropout=0.3), torch.nn.BCEWithLogitsLoss()
    with gdtorch.handwritten() as hw:
        report = audit(model, loss, *_batch())
        assert hw.report().rows == ()  # the audit's own passes are not the user's calls
        assert type(F.relu(torch.randn(2, requires_grad=True)).grad_fn).__name__ == (
            "ReLUFunctionBackward"  # the context is on again after the audit
        )
    assert report.max_abs_diff <= 1e-10 and report.max_rel_diff <= 1e-10
    assert [row.name for row in report.rows if row.kind == "layer"] == [
        "0 (Linear): linear",
        "1 (ReLU): relu",
        "3 (Linear): linear",
        "loss (BCEWithLogitsLoss): binary_cross_entropy_with_logits",
    ]
    assert hw.report()["relu"].handwritten == 1


def test_converted_layers_keep_their_rows_and_functional_calls_get_theirs():
    class Head(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.ReLU())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tanh(self.body(x)).sum(dim=1, keepdim=True)

    model = gnn.convert(Head())
    report = audit(model, torch.nn.MSELoss(), *_batch(), handwritten=True)
    assert report.max_abs_diff <= 1e-10 and report.max_rel_diff <= 1e-10
    assert [row.name for row in report.rows if row.kind == "layer"] == [
        "body.0 (Linear)",
        "body.1 (ReLU)",
        "model (Head): tanh",
        "loss (MSELoss): mse_loss",
    ]


def test_broken_backward_of_a_functional_call_is_caught_and_localised(monkeypatch):
    def doubled(ctx, grad_output):
        (output,) = ctx.saved_tensors
        return 2 * grad_output * output * (1 - output)

    torch.manual_seed(0)
    model = _FunctionalNet()
    inputs, targets = _batch()
    monkeypatch.setattr(GA.SigmoidFunction, "backward", staticmethod(doubled))
    report = audit(model, F.binary_cross_entropy, inputs, targets, handwritten=True)

    # Independent reference: the same network in plain torch, float64, keeping ∂C/∂z at the
    # sigmoid's input z; doubling σ' makes the sigmoid row differ by exactly that gradient.
    params = {name: p.detach().double().requires_grad_() for name, p in model.named_parameters()}
    h = torch.tanh(F.linear(inputs.double(), params["w1"], params["b1"]))
    z = F.linear(F.relu(F.linear(h, params["w2"])), params["w3"])
    z.retain_grad()
    F.binary_cross_entropy(torch.sigmoid(z), targets.double()).backward()

    worst = report.worst("layer")
    assert worst.name == "model (_FunctionalNet): sigmoid"
    assert worst.max_abs_diff == pytest.approx(z.grad.abs().max().item(), rel=1e-12)
    assert worst.max_rel_diff == pytest.approx(1.0, rel=1e-12)
    healthy = [row for row in report.rows if row.kind == "layer" and row is not worst]
    assert len(healthy) == 6 and all(row.max_abs_diff <= 1e-12 for row in healthy)
    assert {row.name for row in report.rows if row.exceeds(1e-6)} == {
        "w1",
        "b1",
        "w2",
        "w3",
        "model (_FunctionalNet): sigmoid",
    }


@pytest.mark.slow  # a few seconds
def test_resnet18_under_handwritten_matches_autograd():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=1)
    inputs, targets = torch.randn(2, 3, 32, 32), torch.rand(2, 1)
    report = audit(model, torch.nn.BCEWithLogitsLoss(), inputs, targets, handwritten=True)
    assert report.max_abs_diff <= 1e-10 and report.max_rel_diff <= 1e-10
    assert len([row for row in report.rows if row.kind == "parameter"]) == 62
    # its ReLUs are in place: they fall through to torch and have no hand-written backward
    assert [row.name for row in report.rows if row.kind == "layer"] == [
        "fc (Linear): linear",
        "loss (BCEWithLogitsLoss): binary_cross_entropy_with_logits",
    ]
