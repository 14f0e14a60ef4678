"""handwritten(): torch's functional calls run gdtorch's hand-written backward, in any code.

References are torch's own ops, run on the same tensors without the context.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import threading
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
import torchvision

import gdtorch
from gdtorch.handwritten_mode import IN_PLACE, OUT, SUBCLASS, HandwrittenReport, handwritten
from gdtorch.optim import GradientDescent

DOUBLE = torch.float64
# The backward node of each op that gdtorch takes over: torch's, and gdtorch's.
TORCH_NODES = {
    "AddmmBackward0",
    "MmBackward0",
    "ReluBackward0",
    "SigmoidBackward0",
    "TanhBackward0",
    "L1LossBackward0",
    "MseLossBackward0",
    "BinaryCrossEntropyBackward0",
    "BinaryCrossEntropyWithLogitsBackward0",
}
GDTORCH_NODES = {
    "linear": "LinearFunctionBackward",
    "relu": "ReLUFunctionBackward",
    "sigmoid": "SigmoidFunctionBackward",
    "tanh": "TanhFunctionBackward",
    "l1_loss": "MAELossFunctionBackward",
    "mse_loss": "MSELossFunctionBackward",
    "binary_cross_entropy": "BCELossFunctionBackward",
    "binary_cross_entropy_with_logits": "BCEWithLogitsLossFunctionBackward",
}


def _nodes(tensor: torch.Tensor) -> Counter[str]:
    """The backward nodes of ``tensor``'s graph, by type name, each node once."""
    seen, stack, names = set(), [tensor.grad_fn], Counter()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names[type(node).__name__] += 1
        stack.extend(next_node for next_node, _ in node.next_functions)
    return names


def _leaf(*shape: int, low: float = -1.0, high: float = 1.0) -> torch.Tensor:
    return (torch.rand(*shape, dtype=DOUBLE) * (high - low) + low).requires_grad_()


def _grads(output: torch.Tensor, inputs: list[torch.Tensor]) -> tuple[torch.Tensor | None, ...]:
    if output.dim():  # a δ that differs from element to element
        delta = torch.linspace(-1, 1, output.numel(), dtype=DOUBLE).view_as(output)
        output = (output * delta).sum()
    return torch.autograd.grad(output, inputs, allow_unused=True)


# --------------------------------------------------------------------------- each op


def _cases():
    """``(op, call, tensors)``: a call of a supported op on fresh leaves, and those leaves."""
    torch.manual_seed(0)
    x, w, b = _leaf(4, 3), _leaf(2, 3), _leaf(2)
    x3 = _leaf(2, 4, 3)
    z = _leaf(4, 2)
    p, y = _leaf(4, 2, low=0.05, high=0.95), torch.rand(4, 2, dtype=DOUBLE)
    weight, pos_weight = torch.rand(4, 2, dtype=DOUBLE), torch.rand(2, dtype=DOUBLE) + 0.5
    yield "linear", lambda: F.linear(x, w, b), [x, w, b]
    yield "linear", lambda: F.linear(x3, w), [x3, w]
    yield "linear", lambda: F.linear(input=x, weight=w, bias=b), [x, w, b]
    yield "relu", lambda: F.relu(z), [z]
    yield "relu", lambda: F.relu(z, inplace=False), [z]
    yield "relu", lambda: torch.relu(z), [z]
    yield "relu", lambda: z.relu(), [z]
    yield "sigmoid", lambda: torch.sigmoid(z), [z]
    yield "sigmoid", lambda: z.sigmoid(), [z]
    yield "sigmoid", lambda: F.sigmoid(z), [z]
    yield "tanh", lambda: torch.tanh(z), [z]
    yield "tanh", lambda: z.tanh(), [z]
    yield "tanh", lambda: F.tanh(z), [z]
    yield "l1_loss", lambda: F.l1_loss(z, y), [z]
    yield "l1_loss", lambda: F.l1_loss(z, y, reduction="sum"), [z]
    yield "mse_loss", lambda: F.mse_loss(z, p, reduction="none"), [z, p]
    yield "mse_loss", lambda: F.mse_loss(z, y, weight=weight), [z]
    yield "binary_cross_entropy", lambda: F.binary_cross_entropy(p, y), [p]
    yield "binary_cross_entropy", lambda: F.binary_cross_entropy(p, y, weight, reduction="sum"), [p]
    yield "binary_cross_entropy_with_logits", lambda: F.binary_cross_entropy_with_logits(z, y), [z]
    yield (
        "binary_cross_entropy_with_logits",
        lambda: F.binary_cross_entropy_with_logits(z, y, weight, pos_weight=pos_weight),
        [z],
    )


CASES = list(_cases())


@pytest.mark.parametrize(("op", "call", "tensors"), CASES, ids=[c[0] for c in CASES])
def test_each_supported_call_runs_gdtorch_with_torchs_value_and_gradient(op, call, tensors):
    expected = call()
    with handwritten() as hw:
        output = call()
    assert type(output.grad_fn).__name__ == GDTORCH_NODES[op]
    assert not _nodes(output).keys() & TORCH_NODES
    torch.testing.assert_close(output, expected, rtol=0, atol=1e-12)
    for grad, reference in zip(_grads(output, tensors), _grads(expected, tensors), strict=True):
        torch.testing.assert_close(grad, reference, rtol=0, atol=1e-12)
    report = hw.report()
    assert (report[op].handwritten, report[op].fell_through) == (1, 0)
    assert (report.handwritten, report.fell_through) == (1, 0)


def test_legacy_reduction_arguments_are_taken_as_torch_takes_them():
    z, y = _leaf(4, 2), torch.rand(4, 2, dtype=DOUBLE)
    with pytest.warns(UserWarning, match="size_average and reduce args will be deprecated"):
        expected = F.mse_loss(z, y, size_average=False)
    with handwritten() as hw, pytest.warns(UserWarning, match="will be deprecated"):
        output = F.mse_loss(z, y, size_average=False)
    assert type(output.grad_fn).__name__ == "MSELossFunctionBackward"
    torch.testing.assert_close(output, expected, rtol=0, atol=1e-12)
    assert hw.report()["mse_loss"].handwritten == 1


def test_under_autocast_linear_runs_gdtorch_in_the_autocast_dtype():
    x, w, b = (t.float().detach().requires_grad_() for t in (_leaf(4, 3), _leaf(2, 3), _leaf(2)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = F.linear(x, w, b)
        with handwritten() as hw:
            output = F.linear(x, w, b)
    assert output.dtype == expected.dtype == torch.bfloat16
    assert "LinearFunctionBackward" in _nodes(output)
    torch.testing.assert_close(output, expected, rtol=0, atol=0)
    assert hw.report()["linear"].handwritten == 1


# --------------------------------------------------------------------------- what falls through


class _Tagged(torch.Tensor):
    """A tensor subclass with its own ``__torch_function__`` (as tensor-like libraries have)."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        return super().__torch_function__(func, types, args, kwargs or {})


def _fall_through_cases():
    torch.manual_seed(1)
    z, x, w = _leaf(4, 2), _leaf(4, 3), _leaf(2, 3)
    complex_z = torch.randn(4, 2, dtype=torch.complex128, requires_grad=True)
    complex_y = torch.randn(4, 2, dtype=torch.complex128)
    yield "relu", lambda: F.relu(z * 1, inplace=True), IN_PLACE, "ReluBackward0"
    yield "relu", lambda: torch.relu_(z * 1), IN_PLACE, "ReluBackward0"
    yield "relu", lambda: F.relu_(z * 1), IN_PLACE, "ReluBackward0"
    yield "relu", lambda: (z * 1).relu_(), IN_PLACE, "ReluBackward0"
    yield "sigmoid", lambda: torch.sigmoid_(z * 1), IN_PLACE, "SigmoidBackward0"
    yield "sigmoid", lambda: (z * 1).sigmoid_(), IN_PLACE, "SigmoidBackward0"
    yield "tanh", lambda: (z * 1).tanh_(), IN_PLACE, "TanhBackward0"
    yield "tanh", lambda: torch.tanh_(z * 1), IN_PLACE, "TanhBackward0"
    yield (
        "mse_loss",
        lambda: F.mse_loss(complex_z, complex_y, weight=torch.ones(4, 2, dtype=DOUBLE)),
        "dtype torch.complex128",
        "DivBackward0",
    )
    yield (
        "linear",
        lambda: F.linear(x, w[0]),  # a 1-D weight: torch's matrix-vector product
        "shapes outside gdtorch's (N, in) x (out, in) + (out,)",
        "MvBackward0",
    )
    yield (
        "linear",
        lambda: F.linear(x, w, torch.zeros(1, dtype=DOUBLE, requires_grad=True)),  # broadcast
        "shapes outside gdtorch's (N, in) x (out, in) + (out,)",
        "AddmmBackward0",
    )
    yield "linear", lambda: F.linear(x.as_subclass(_Tagged), w), SUBCLASS, "AliasBackward0"


FALL_THROUGH = list(_fall_through_cases())


@pytest.mark.parametrize(
    ("op", "call", "reason", "node"), FALL_THROUGH, ids=[f"{c[0]}-{c[3]}" for c in FALL_THROUGH]
)
def test_calls_gdtorch_cannot_take_exactly_fall_through_to_torch_and_are_counted(
    op, call, reason, node
):
    expected = call()
    with handwritten() as hw:
        output = call()
    assert type(output) is type(expected)
    assert type(output.grad_fn).__name__ == type(expected.grad_fn).__name__ == node
    torch.testing.assert_close(output, expected, rtol=0, atol=0)
    row = hw.report()[op]
    assert (row.handwritten, row.fell_through, dict(row.reasons)) == (0, 1, {reason: 1})


def test_out_and_unknown_arguments_fall_through_and_torch_answers_as_usual():
    z = _leaf(4, 2)
    out = torch.empty(4, 2, dtype=DOUBLE)
    with handwritten() as hw:
        torch.tanh(z.detach(), out=out)  # no graph: torch's op, uncounted
        with pytest.raises(RuntimeError, match="don't support automatic differentiation"):
            torch.sigmoid(z, out=out)  # torch's own error, as without the context
        with pytest.raises(AttributeError, match="'float' object has no attribute 'size'"):
            F.mse_loss(z, 0.5)  # torch's own error for a number as the target
    torch.testing.assert_close(out, torch.tanh(z.detach()))
    report = hw.report()
    assert dict(report["sigmoid"].reasons) == {OUT: 1}
    assert dict(report["mse_loss"].reasons) == {"arguments outside gdtorch's signature": 1}
    assert report["tanh"].handwritten == report["tanh"].fell_through == 0


def test_calls_that_record_no_graph_run_torch_uncounted():
    z, w = _leaf(4, 3), _leaf(2, 3)
    constant = torch.rand(4, 3, dtype=DOUBLE)
    with handwritten() as hw:
        with torch.no_grad():
            no_grad = F.linear(z, w)
        with torch.inference_mode():
            inference = torch.sigmoid(z)
        constant_relu = F.relu(constant)
        integers = torch.relu(torch.arange(-3, 3))
    assert no_grad.grad_fn is None and inference.grad_fn is None and constant_relu.grad_fn is None
    assert torch.equal(integers, torch.tensor([0, 0, 0, 0, 1, 2]))
    assert hw.report().rows == ()
    assert "no call" in str(hw.report())


def test_bad_input_raises_gdtorchs_error_where_torch_only_warns():
    z, target = _leaf(4, 1), torch.rand(4, dtype=DOUBLE)  # (4, 1) against (4,): broadcasts to 4×4
    with pytest.warns(UserWarning, match="different to the input size"):
        F.mse_loss(z, target)  # torch: a warning and the wrong loss
    with handwritten() as hw, pytest.raises(ValueError, match=r"target size.*is not allowed"):
        F.mse_loss(z, target)
    with handwritten(), pytest.raises(ValueError, match="between 0 and 1"):
        F.binary_cross_entropy(
            _leaf(3, low=0.1, high=0.9), torch.tensor([0.0, 1.0, 2.0], dtype=DOUBLE)
        )
    assert hw.report()["mse_loss"].handwritten == 1  # counted as dispatched


# --------------------------------------------------------------------------- the context


def test_outside_the_context_nothing_changes():
    x, w = _leaf(4, 3), _leaf(2, 3)
    with handwritten():
        inside = F.relu(F.linear(x, w))
    outside = F.relu(F.linear(x, w))
    assert _nodes(inside).keys() >= {"LinearFunctionBackward", "ReLUFunctionBackward"}
    assert _nodes(outside).keys() >= {"MmBackward0", "ReluBackward0"}
    assert not _nodes(outside).keys() & set(GDTORCH_NODES.values())
    assert not gdtorch.handwritten_mode.inside()


def test_each_call_is_counted_once_however_deep_the_call_chain():
    z = _leaf(4, 2)
    with handwritten() as hw:
        torch.nn.ReLU()(z)  # nn.ReLU -> F.relu -> torch.relu
        torch.nn.Sigmoid()(z)
        torch.nn.Linear(2, 3).double()(z)
        torch.nn.BCEWithLogitsLoss()(z, torch.rand(4, 2, dtype=DOUBLE))
    report = hw.report()
    assert [(row.op, row.handwritten, row.fell_through) for row in report.rows] == [
        ("linear", 1, 0),
        ("relu", 1, 0),
        ("sigmoid", 1, 0),
        ("binary_cross_entropy_with_logits", 1, 0),
    ]


def test_gdtorch_modules_inside_the_context_are_not_taken_over_twice():
    model = gdtorch.nn.MLP([3, 4, 1], fused=False).double()
    loss_fn = gdtorch.nn.BCEWithLogitsLoss()
    x, y = torch.randn(5, 3, dtype=DOUBLE), torch.rand(5, 1, dtype=DOUBLE)
    with handwritten() as hw:
        loss = loss_fn(model(x), y)
    # gdtorch's own Functions call torch.relu etc. inside their forward (no graph there)
    assert hw.report().rows == ()
    assert _nodes(loss)["LinearFunctionBackward"] == 2


def test_decorator_counts_every_call_and_leaves_the_context_after_each():
    w = _leaf(1, 3)

    @handwritten()
    def step(x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(F.linear(x, w))

    outputs = [step(torch.randn(2, 3, dtype=DOUBLE)) for _ in range(3)]
    assert all(type(o.grad_fn).__name__ == "SigmoidFunctionBackward" for o in outputs)
    assert not gdtorch.handwritten_mode.inside()
    assert F.linear(torch.randn(2, 3, dtype=DOUBLE), w).grad_fn.name() == "MmBackward0"


def test_nested_contexts_each_count_the_calls_inside_them_once():
    z = _leaf(4, 2)
    outer, inner = handwritten(), handwritten()
    with outer:
        torch.sigmoid(z)
        with inner:
            torch.tanh(z)
            with outer:  # the same object again: still counted once
                torch.relu(z)
        F.relu(z, inplace=False)
    assert not gdtorch.handwritten_mode.inside()
    assert {row.op: row.handwritten for row in outer.report().rows} == {
        "relu": 2,
        "sigmoid": 1,
        "tanh": 1,
    }
    assert {row.op: row.handwritten for row in inner.report().rows} == {"relu": 1, "tanh": 1}


def test_recursion_through_a_decorated_function_counts_each_call_once():
    z = _leaf(3)
    context = handwritten()

    @context
    def depth(n: int) -> torch.Tensor:
        return torch.tanh(z) if n == 0 else depth(n - 1) + torch.tanh(z)

    assert type(depth(3).grad_fn).__name__ == "AddBackward0"
    assert context.report()["tanh"].handwritten == 4


def test_an_exception_leaves_the_context_cleanly():
    z = _leaf(4, 2)
    context = handwritten()
    with pytest.raises(KeyError), context:
        torch.sigmoid(z)
        raise KeyError("boom")
    assert not gdtorch.handwritten_mode.inside()
    assert torch.sigmoid(z).grad_fn.name() == "SigmoidBackward0"
    assert context.report()["sigmoid"].handwritten == 1
    with context:  # usable again
        assert type(torch.sigmoid(z).grad_fn).__name__ == "SigmoidFunctionBackward"


def test_exiting_out_of_order_is_refused():
    first, second = handwritten(), handwritten()
    first.__enter__()
    second.__enter__()
    with pytest.raises(RuntimeError, match="innermost first"):
        first.__exit__(None, None, None)
    second.__exit__(None, None, None)
    first.__exit__(None, None, None)
    assert not gdtorch.handwritten_mode.inside()


def test_the_context_applies_to_its_own_thread_only():
    z = _leaf(4, 2)
    seen = {}

    def other_thread() -> None:
        seen["node"] = torch.sigmoid(z).grad_fn.name()

    with handwritten() as hw:
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        here = torch.sigmoid(z)
    assert seen["node"] == "SigmoidBackward0"  # torch's, as with torch's own modes
    assert type(here.grad_fn).__name__ == "SigmoidFunctionBackward"
    assert hw.report()["sigmoid"].handwritten == 1


def test_one_decorated_function_in_many_threads_counts_every_call_exactly():
    context = handwritten()
    w = _leaf(2, 3)
    nodes = []
    lock = threading.Lock()

    @context
    def step() -> None:
        output = torch.tanh(F.linear(torch.randn(4, 3, dtype=DOUBLE), w))
        with lock:
            nodes.append(type(output.grad_fn).__name__)

    def worker() -> None:
        for _ in range(25):
            step()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert nodes == ["TanhFunctionBackward"] * 100
    report = context.report()
    assert (report["linear"].handwritten, report["tanh"].handwritten) == (100, 100)


def test_report_while_open_and_printed_or_passed_on_at_exit(capsys):
    z = _leaf(4, 2)
    with handwritten(report=True) as hw:
        torch.sigmoid(z)
        assert hw.report()["sigmoid"].handwritten == 1  # so far, while open
        F.relu(z * 1, inplace=True)
    printed = capsys.readouterr().out
    assert printed.strip() == str(hw.report())
    lines = printed.splitlines()
    assert lines[0].split()[:4] == ["op", "hand-written", "fell", "through"]
    assert lines[1].split()[:3] == ["relu", "0", "1"] and IN_PLACE in lines[1]
    assert lines[2].split() == ["sigmoid", "1", "0"]
    received = []
    with handwritten(report=received.append):
        torch.tanh(z)
    assert len(received) == 1 and received[0].splitlines()[1].split() == ["tanh", "1", "0"]


def test_report_rows_and_lookup():
    report = HandwrittenReport._of({("relu", None): 2, ("relu", IN_PLACE): 3, ("tanh", None): 1})
    assert (report.handwritten, report.fell_through) == (3, 3)
    assert report["relu"].reasons == {IN_PLACE: 3}
    assert report["sigmoid"].handwritten == 0
    with pytest.raises(KeyError, match="not one of handwritten"):
        report["conv2d"]


@pytest.mark.slow  # a few seconds
def test_gdtorch_handwritten_is_the_context_however_the_module_was_imported():
    code = (
        "import sys, gdtorch\n"
        "import gdtorch.handwritten_mode\n"
        "from gdtorch import handwritten\n"
        "assert handwritten is gdtorch.handwritten is gdtorch.handwritten_mode.handwritten\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'lightning', 'hydra',"
        " 'torchmetrics', 'tensorboard'}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# --------------------------------------------------------------------------- others' models


class FunctionalNet(torch.nn.Module):
    """A small model in the functional style: parameters, and ``F`` calls in ``forward``."""

    def __init__(self) -> None:
        super().__init__()
        self.w1 = torch.nn.Parameter(torch.randn(8, 6) / 3)
        self.b1 = torch.nn.Parameter(torch.randn(8) / 3)
        self.w2 = torch.nn.Parameter(torch.randn(5, 8) / 3)
        self.b2 = torch.nn.Parameter(torch.randn(5) / 3)
        self.w3 = torch.nn.Parameter(torch.randn(1, 5) / 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(F.linear(x, self.w1, self.b1))
        h = torch.tanh(F.linear(h, self.w2, self.b2)).sigmoid()
        return F.linear(h, self.w3)


def _compare_with_torch(model: torch.nn.Module, x: torch.Tensor, loss_fn) -> tuple:
    """Gradients and backward nodes of one pass under ``handwritten()``, against plain torch."""
    reference = copy.deepcopy(model)
    torch.manual_seed(0)
    with handwritten() as hw:
        loss = loss_fn(model(x))
    loss.backward()
    torch.manual_seed(0)
    expected = loss_fn(reference(x))
    expected.backward()
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-10)
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        assert p.grad is not None, name
        torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=1e-10, msg=name)
    return _nodes(loss), _nodes(expected), hw.report()


def _logits_loss(output: torch.Tensor) -> torch.Tensor:
    target = (torch.arange(output.numel(), dtype=DOUBLE).view_as(output) % 2).float().double()
    return F.binary_cross_entropy_with_logits(output, target)


def test_functional_model_runs_every_op_hand_written():
    torch.manual_seed(0)
    model = FunctionalNet().double()
    nodes, expected_nodes, report = _compare_with_torch(
        model, torch.randn(7, 6, dtype=DOUBLE), _logits_loss
    )
    assert not nodes.keys() & TORCH_NODES
    assert {name: nodes[name] for name in GDTORCH_NODES.values() if nodes[name]} == {
        "LinearFunctionBackward": 3,
        "ReLUFunctionBackward": 1,
        "TanhFunctionBackward": 1,
        "SigmoidFunctionBackward": 1,
        "BCEWithLogitsLossFunctionBackward": 1,
    }
    assert expected_nodes["AddmmBackward0"] == 2 and expected_nodes["MmBackward0"] == 1
    assert report.fell_through == 0 and report.handwritten == 7


def test_torchvision_mlp_runs_its_layers_hand_written():
    torch.manual_seed(0)
    model = torchvision.ops.MLP(6, [16, 8, 1], dropout=0.25).double()  # train mode: dropout on
    nodes, _, report = _compare_with_torch(model, torch.randn(5, 6, dtype=DOUBLE), _logits_loss)
    assert not nodes.keys() & TORCH_NODES
    assert (nodes["LinearFunctionBackward"], nodes["ReLUFunctionBackward"]) == (3, 2)
    assert [(row.op, row.handwritten, row.fell_through) for row in report.rows] == [
        ("linear", 3, 0),
        ("relu", 2, 0),
        ("binary_cross_entropy_with_logits", 1, 0),
    ]


@pytest.mark.slow  # a few seconds
def test_resnet18_linear_hand_written_and_its_in_place_relus_fall_through():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=1).double()
    nodes, _, report = _compare_with_torch(
        model, torch.randn(2, 3, 32, 32, dtype=DOUBLE), _logits_loss
    )
    assert nodes["LinearFunctionBackward"] == 1 and nodes["AddmmBackward0"] == 0
    assert nodes["ReluBackward0"] == 17  # nn.ReLU(inplace=True): torch's, by design
    assert nodes["BCEWithLogitsLossFunctionBackward"] == 1
    assert report["linear"].handwritten == 1
    assert (report["relu"].handwritten, dict(report["relu"].reasons)) == (0, {IN_PLACE: 17})


def test_mobilenet_v3_small_classifier_and_squeeze_excitation_relus_hand_written():
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v3_small(weights=None, num_classes=1).double()
    nodes, expected_nodes, report = _compare_with_torch(
        model, torch.randn(2, 3, 32, 32, dtype=DOUBLE), _logits_loss
    )
    assert nodes["LinearFunctionBackward"] == 2 and nodes["AddmmBackward0"] == 0
    # SqueezeExcitation's nn.ReLU() is taken over; Conv2dNormActivation's ReLU(inplace=True) not
    assert (nodes["ReLUFunctionBackward"], nodes["ReluBackward0"]) == (9, 5)
    assert expected_nodes["ReluBackward0"] == 14
    # Hardswish and Hardsigmoid have no gdtorch twin: torch's
    assert nodes["HardswishBackward0"] == expected_nodes["HardswishBackward0"] > 0
    assert report["relu"].handwritten == 9 and dict(report["relu"].reasons) == {IN_PLACE: 5}


@pytest.mark.parametrize("name", ["functional", "torchvision-mlp", "mobilenet_v3_small"])
def test_training_steps_with_gradient_descent_match_sgd(name):
    torch.manual_seed(0)
    model, x = {
        "functional": lambda: (FunctionalNet(), torch.randn(7, 6)),
        "torchvision-mlp": lambda: (
            torchvision.ops.MLP(6, [16, 1], dropout=0.2),
            torch.randn(5, 6),
        ),
        "mobilenet_v3_small": lambda: (
            torchvision.models.mobilenet_v3_small(weights=None, num_classes=1),
            torch.randn(2, 3, 32, 32),
        ),
    }[name]()
    model, x = model.double(), x.double()
    reference, initial = copy.deepcopy(model), copy.deepcopy(model)
    options = {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3}
    gd = GradientDescent(model.parameters(), **options)
    sgd = torch.optim.SGD(reference.parameters(), **options)
    step = handwritten()(lambda: _train_step(model, gd, x))
    for seed in range(2):
        torch.manual_seed(seed)
        step()
        torch.manual_seed(seed)
        _train_step(reference, sgd, x)
    for (key, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-10, msg=key)
    initial_parameters = initial.parameters()
    assert all(
        not torch.equal(p, q) for p, q in zip(model.parameters(), initial_parameters, strict=True)
    )


def _train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor) -> None:
    optimizer.zero_grad()
    _logits_loss(model(x)).backward()
    optimizer.step()


@pytest.mark.slow  # compiles
def test_a_function_compiled_inside_the_context_gives_torchs_values_and_gradients():
    torch.manual_seed(0)
    w, x = _leaf(2, 3), torch.randn(4, 3, dtype=DOUBLE)
    y = torch.rand(4, 2, dtype=DOUBLE).round()

    def loss(x: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy(torch.sigmoid(F.relu(F.linear(x, w))), y)

    compiled = torch.compile(loss)
    with handwritten() as hw:
        outputs = [compiled(x) for _ in range(2)]
    expected = loss(x)
    (expected_grad,) = torch.autograd.grad(expected, w)
    for output in outputs:
        torch.testing.assert_close(output, expected, rtol=0, atol=1e-12)
        (grad,) = torch.autograd.grad(output, w)
        torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-12)
    assert hw.report().rows == ()  # traced calls are not counted
