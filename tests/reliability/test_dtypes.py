"""Issue 16, item 6: every loss treats dtypes as torch does, and ReLU passes a NaN's gradient.

For each loss (MAE/L1, MSE, BCE, BCE with logits), functional and module form, and each pair of
(input dtype, target dtype) in {float16, bfloat16, float32, float64, int64, bool}: either torch
and gdtorch both raise — gdtorch's error an instance of torch's error type (its ``DtypeError`` is
a ``TypeError`` that is also the ``NotImplementedError``/``RuntimeError`` torch raises), naming
the argument and its dtype — or both return a loss of the same dtype with the same value and
the same gradients (dtype and value) with respect to every floating-point argument. The same for
every dtype of ``weight`` (and BCE with logits' ``pos_weight``) over a few input/target pairs.

The bugs this pins down: BCE with logits returned the logits' dtype (float16 for float16 logits
and float32 targets, float32 for float32 logits and a float64 target; torch returns the
target's); BCE with a Long input cast soft targets to Long (a loss of 50.0 instead of 70.0;
torch raises). And the fused ``MLP`` gave a NaN pre-activation a ReLU slope of 0 where torch's
ReLU passes the incoming gradient (its backward zeroes δ where ``a ≤ 0``, and ``NaN ≤ 0`` is
false).
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from gdtorch import functional as GF
from gdtorch import nn as gnn
from gdtorch.autograd import MLPFunction
from gdtorch.functional import DtypeError

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int64, torch.bool]
PAIRS = list(itertools.product(DTYPES, DTYPES))
LOW_PRECISION = (torch.float16, torch.bfloat16)

# name: (gdtorch functional, torch functional, gdtorch module, torch module, kind of input)
LOSSES = {
    "l1": (GF.l1_loss, F.l1_loss, gnn.L1Loss, torch.nn.L1Loss, "real"),
    "mse": (GF.mse_loss, F.mse_loss, gnn.MSELoss, torch.nn.MSELoss, "real"),
    "bce": (
        GF.binary_cross_entropy,
        F.binary_cross_entropy,
        gnn.BCELoss,
        torch.nn.BCELoss,
        "probability",
    ),
    "bce_with_logits": (
        GF.binary_cross_entropy_with_logits,
        F.binary_cross_entropy_with_logits,
        gnn.BCEWithLogitsLoss,
        torch.nn.BCEWithLogitsLoss,
        "real",
    ),
}
VALUES = {  # four elements each; soft targets, so a cast to an integer dtype would show
    "real": [1.5, -0.3, 0.8, -2.0],
    "probability": [0.7, 0.2, 0.9, 0.4],
    "target": [0.7, 0.0, 1.0, 0.3],
    "weight": [0.5, 2.0, 1.0, 3.0],
}
LABELS = [1, 0, 1, 0]  # the values of integer and bool tensors


def _tensor(kind: str, dtype: torch.dtype) -> torch.Tensor:
    if not dtype.is_floating_point:
        return torch.tensor(LABELS).to(dtype)
    return torch.tensor(VALUES[kind], dtype=torch.float64).to(dtype)


def _call(loss, tensors: list[torch.Tensor], kwargs: dict):
    """``("raised", error)`` or ``("ok", loss, gradients)``; gradients w.r.t. float tensors."""
    tensors = [t.clone().requires_grad_(t.is_floating_point()) for t in tensors]
    try:
        output = loss(*tensors, **kwargs)
    except Exception as error:  # the outcome under test
        return "raised", error
    wanted = [t for t in tensors if t.requires_grad]
    grads = []
    if output.requires_grad:
        grads = torch.autograd.grad(output, wanted, torch.ones_like(output), allow_unused=True)
    return "ok", output.detach(), grads


def _tolerance(*dtypes: torch.dtype) -> dict:
    if any(dtype in LOW_PRECISION for dtype in dtypes):
        return {"rtol": 2e-2, "atol": 2e-3}  # a few units in bfloat16's last place
    return {}


def _assert_same_outcome(ours, theirs, dtypes: tuple[torch.dtype, ...]) -> None:
    if theirs[0] == "raised":
        assert ours[0] == "raised", f"torch raises {theirs[1]!r}; gdtorch returned {ours[1]}"
        assert isinstance(ours[1], type(theirs[1])), (ours[1], theirs[1])
        if isinstance(ours[1], DtypeError):  # gdtorch's own words name the argument and dtype
            assert "dtype torch." in str(ours[1])
        return
    assert ours[0] == "ok", f"torch returns {theirs[1]}; gdtorch raised {ours[1]!r}"
    _, loss, grads = ours
    _, expected, expected_grads = theirs
    assert loss.dtype == expected.dtype
    tolerance = _tolerance(loss.dtype, *dtypes)
    torch.testing.assert_close(loss, expected, equal_nan=True, **tolerance)
    assert len(grads) == len(expected_grads)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        assert (grad is None) == (expected_grad is None)
        if grad is not None:
            assert grad.dtype == expected_grad.dtype
            torch.testing.assert_close(grad, expected_grad, **tolerance)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(("input_dtype", "target_dtype"), PAIRS, ids=str)
@pytest.mark.parametrize("name", LOSSES)
def test_functional_losses_treat_every_dtype_pair_as_torch_does(
    name, input_dtype, target_dtype, reduction
):
    ours, theirs, _, _, kind = LOSSES[name]
    tensors = [_tensor(kind, input_dtype), _tensor("target", target_dtype)]
    kwargs = {"reduction": reduction}
    _assert_same_outcome(
        _call(ours, tensors, kwargs), _call(theirs, tensors, kwargs), (input_dtype, target_dtype)
    )


@pytest.mark.parametrize(("input_dtype", "target_dtype"), PAIRS, ids=str)
@pytest.mark.parametrize("name", LOSSES)
def test_loss_modules_treat_every_dtype_pair_as_torch_does(name, input_dtype, target_dtype):
    _, _, ours, theirs, kind = LOSSES[name]
    tensors = [_tensor(kind, input_dtype), _tensor("target", target_dtype)]
    _assert_same_outcome(
        _call(ours(), tensors, {}), _call(theirs(), tensors, {}), (input_dtype, target_dtype)
    )


WEIGHT_PAIRS = [
    (torch.float32, torch.float32),
    (torch.float16, torch.float32),
    (torch.float32, torch.float64),
    (torch.float64, torch.float16),
    (torch.bfloat16, torch.bfloat16),
    (torch.int64, torch.int64),
]
WEIGHTED = [  # (loss, keyword); l1 and mse take a weight of the input's shape
    ("l1", "weight"),
    ("mse", "weight"),
    ("bce", "weight"),
    ("bce_with_logits", "weight"),
    ("bce_with_logits", "pos_weight"),
]


@pytest.mark.parametrize("weight_dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("input_dtype", "target_dtype"), WEIGHT_PAIRS, ids=str)
@pytest.mark.parametrize(("name", "keyword"), WEIGHTED, ids=["-".join(w) for w in WEIGHTED])
def test_weights_of_every_dtype_as_torch(name, keyword, input_dtype, target_dtype, weight_dtype):
    ours, theirs, ours_module, theirs_module, kind = LOSSES[name]
    tensors = [_tensor(kind, input_dtype), _tensor("target", target_dtype)]
    kwargs = {keyword: _tensor("weight", weight_dtype)}
    dtypes = (input_dtype, target_dtype, weight_dtype)
    _assert_same_outcome(_call(ours, tensors, kwargs), _call(theirs, tensors, kwargs), dtypes)
    if name.startswith("bce"):  # the modules keep weight and pos_weight as buffers
        _assert_same_outcome(
            _call(ours_module(**kwargs), tensors, {}),
            _call(theirs_module(**kwargs), tensors, {}),
            dtypes,
        )


# --------------------------------------------------------------------------- the cases


@pytest.mark.parametrize(
    ("input_dtype", "target_dtype"),
    [
        (torch.float16, torch.float32),
        (torch.float32, torch.float64),
        (torch.float32, torch.float16),
    ],
    ids=str,
)
def test_bce_with_logits_returns_the_targets_dtype_like_torch(input_dtype, target_dtype):
    logits = torch.tensor(VALUES["real"], dtype=input_dtype)
    target = torch.tensor(VALUES["target"], dtype=target_dtype)
    loss = GF.binary_cross_entropy_with_logits(logits, target)
    expected = F.binary_cross_entropy_with_logits(logits, target)
    assert loss.dtype == expected.dtype == target_dtype
    torch.testing.assert_close(loss, expected, **_tolerance(input_dtype, target_dtype))


def test_bce_refuses_a_long_input_instead_of_truncating_soft_targets():
    input, target = torch.tensor([1, 0, 1, 0]), torch.tensor([0.3, 0.7, 0.3, 0.7])
    with pytest.raises(RuntimeError, match="Found dtype Float but expected Long"):
        F.binary_cross_entropy(input, target)
    with pytest.raises(RuntimeError, match=r"input must be a floating-point tensor.*torch\.int64"):
        GF.binary_cross_entropy(input, target)  # was 50.0: the targets cast to Long, [0, 0, 0, 0]


def test_dtype_error_is_a_type_error_and_what_torch_raises():
    error = DtypeError("x")
    assert isinstance(error, TypeError)
    assert isinstance(error, NotImplementedError)
    assert isinstance(error, RuntimeError)


# --------------------------------------------------------------------------- ReLU and NaN

NAN = float("nan")


def test_relu_passes_the_gradient_of_a_nan_pre_activation_like_torch():
    pre_activation = torch.tensor([NAN, -1.0, 0.0, 2.0])
    grad = torch.tensor([2.0, 3.0, 4.0, 5.0])
    ours, theirs = pre_activation.clone().requires_grad_(), pre_activation.clone().requires_grad_()
    GF.relu(ours).backward(grad)
    F.relu(theirs).backward(grad)
    assert torch.equal(theirs.grad, torch.tensor([2.0, 0.0, 0.0, 5.0]))  # NaN ≤ 0 is false
    assert torch.equal(ours.grad, theirs.grad)


def _nan_network(fused: bool):
    torch.manual_seed(0)
    model = gnn.MLP([3, 5, 4, 1])
    reference = torch.nn.Sequential(
        *[torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 4), torch.nn.ReLU()],
        torch.nn.Linear(4, 1),
    )
    reference.load_state_dict(model.state_dict())
    if not fused:
        model = torch.nn.Sequential(*model)  # the per-layer Functions
    return model, reference


@pytest.mark.parametrize("fused", [True, False], ids=["MLPFunction", "layer-by-layer"])
def test_mlp_passes_nan_pre_activations_gradients_like_torch(fused):
    # the second row's NaN makes every pre-activation of that row NaN; the loss's gradient
    # (a sum) is finite, so ReLU's slope at a NaN decides what reaches the layers below
    model, reference = _nan_network(fused)
    input = torch.tensor([[1.0, 2.0, -3.0], [NAN, 1.0, 0.0], [0.5, -1.0, 2.0]])
    output, expected = model(input), reference(input)
    assert isinstance(output.grad_fn, MLPFunction._backward_cls) == fused
    torch.testing.assert_close(output, expected, equal_nan=True)
    output.sum().backward()
    expected.sum().backward()
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        assert p.grad.isnan().any() or name.endswith("bias")  # NaN reaches ∂C/∂W = δᵀ a
        torch.testing.assert_close(p.grad, q.grad, equal_nan=True, msg=name)
