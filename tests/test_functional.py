"""gdtorch.functional: argument checks (README: "What is validated"), autocast and dtypes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import gdtorch
from gdtorch import functional as GF

LOSSES = [GF.l1_loss, GF.mse_loss, GF.binary_cross_entropy, GF.binary_cross_entropy_with_logits]
IDS = ["l1", "mse", "bce", "bce_logits"]


def test_mae_loss_is_l1_loss():
    assert GF.mae_loss is GF.l1_loss


@pytest.mark.parametrize("fn", LOSSES, ids=IDS)
def test_shape_mismatch_is_a_value_error_not_a_broadcast(fn):
    input, target = torch.rand(4, 1), torch.rand(4)
    with pytest.raises(ValueError, match=r"target size \(torch.Size\(\[4\]\)\).*input size"):
        fn(input, target)


@pytest.mark.parametrize("fn", LOSSES, ids=IDS)
def test_unknown_reduction_names_the_value_and_the_choices(fn):
    with pytest.raises(ValueError, match=r"reduction='meen'.*'none', 'mean', 'sum'"):
        fn(torch.rand(3), torch.rand(3), reduction="meen")


@pytest.mark.parametrize("fn", LOSSES, ids=IDS)
def test_nan_target_is_refused(fn):
    target = torch.tensor([0.0, float("nan"), 1.0])
    with pytest.raises(ValueError, match="target"):
        fn(torch.rand(3), target)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_bce_input_outside_unit_interval_is_refused(bad):
    input = torch.tensor([0.2, bad, 0.7])
    with pytest.raises(ValueError, match="input should be between 0 and 1"):
        GF.binary_cross_entropy(input, torch.rand(3))


@pytest.mark.parametrize("fn", LOSSES[2:], ids=IDS[2:])
@pytest.mark.parametrize("bad", [-0.5, 2.0])
def test_bce_target_outside_unit_interval_is_refused(fn, bad):
    with pytest.raises(ValueError, match="target should be between 0 and 1"):
        fn(torch.rand(3), torch.tensor([0.0, bad, 1.0]))


@pytest.mark.parametrize("fn", LOSSES[2:], ids=IDS[2:])
@pytest.mark.parametrize("bad", [-0.5, 2.0, float("nan")])
def test_bce_single_target_outside_unit_interval_is_refused(fn, bad):
    # one value, as in stochastic gradient descent, is read with .item() instead
    with pytest.raises(ValueError, match=rf"target should be between 0 and 1.*from {bad} to {bad}"):
        fn(torch.rand(1, 1), torch.tensor([[bad]]))


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_bce_single_input_outside_unit_interval_is_refused(bad):
    with pytest.raises(ValueError, match="input should be between 0 and 1"):
        GF.binary_cross_entropy(torch.tensor([bad], requires_grad=True), torch.rand(1))


@pytest.mark.parametrize("fn", LOSSES[2:], ids=IDS[2:])
@pytest.mark.parametrize("edge", [0.0, 1.0])
def test_bce_single_target_at_the_edges_is_accepted(fn, edge):
    input, target = torch.full((1,), 0.25, requires_grad=True), torch.tensor([edge])
    reference = getattr(torch.nn.functional, fn.__name__)
    torch.testing.assert_close(fn(input, target), reference(input, target))


@pytest.mark.parametrize("fn", LOSSES[2:], ids=IDS[2:])
def test_bce_long_target_is_a_type_error_naming_target(fn):
    with pytest.raises(TypeError, match=r"target must be a floating-point tensor.*torch.int64"):
        fn(torch.rand(3), torch.tensor([0, 1, 1]))


@pytest.mark.parametrize("fn", LOSSES[2:], ids=IDS[2:])
def test_bce_weight_requiring_grad_is_refused_like_torch(fn):
    with pytest.raises(RuntimeError, match="not differentiable with respect to argument 'weight'"):
        fn(torch.rand(3), torch.rand(3), weight=torch.rand(3, requires_grad=True))


def test_pointwise_weight_of_another_shape_is_refused():
    with pytest.raises(ValueError, match="Weights and input must have the same size"):
        GF.mse_loss(torch.rand(3), torch.rand(3), weight=torch.rand(1))


def test_pos_weight_that_does_not_broadcast_is_refused():
    with pytest.raises(ValueError, match=r"pos_weight of shape \(4,\)"):
        GF.binary_cross_entropy_with_logits(
            torch.rand(2, 3), torch.rand(2, 3), pos_weight=torch.ones(4)
        )


def test_set_validation_false_skips_value_checks_only():
    gdtorch.set_validation(False)
    assert not gdtorch.validation_enabled()
    out_of_range = torch.tensor([0.5, 1.5])  # no value check: torch's own kernel decides
    GF.binary_cross_entropy_with_logits(torch.zeros(2), out_of_range)
    GF.mse_loss(torch.zeros(2), torch.tensor([float("nan"), 0.0]))
    with pytest.raises(ValueError, match="target size"):  # shape checks are free and stay on
        GF.mse_loss(torch.zeros(2), torch.zeros(3))
    gdtorch.set_validation(True)
    with pytest.raises(ValueError, match="target should be between 0 and 1"):
        GF.binary_cross_entropy_with_logits(torch.zeros(2), out_of_range)


def test_set_validation_wants_a_bool():
    with pytest.raises(TypeError, match="bool"):
        gdtorch.set_validation("no")


@pytest.mark.parametrize("fn", [GF.l1_loss, GF.mse_loss], ids=["l1", "mse"])
def test_pointwise_losses_promote_dtypes_like_torch(fn):
    reference = {GF.l1_loss: F.l1_loss, GF.mse_loss: F.mse_loss}[fn]
    input = torch.rand(5, requires_grad=True)
    for target in (torch.rand(5, dtype=torch.float64), torch.tensor([0, 1, 1, 0, 1])):
        loss = fn(input, target)
        expected = reference(input, target)
        assert loss.dtype == expected.dtype
        torch.testing.assert_close(loss, expected)
        (grad,) = torch.autograd.grad(loss, input)
        assert grad.dtype == torch.float32


def test_linear_under_cpu_autocast_runs_in_bfloat16_like_torch(make_tensor):
    input = make_tensor((8, 4), torch.float32)
    weight = make_tensor((3, 4), torch.float32)
    bias = make_tensor((3,), torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = GF.linear(input, weight, bias)
        expected = F.linear(input, weight, bias)
    assert output.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(output, expected)
    output.float().sum().backward()
    assert weight.grad.dtype == torch.float32
    reference_grad = torch.autograd.grad(expected.float().sum(), weight)[0]
    torch.testing.assert_close(weight.grad, reference_grad)


@pytest.mark.parametrize("fn", LOSSES, ids=IDS)
def test_losses_under_cpu_autocast_compute_in_float32(fn):
    input = torch.rand(6, dtype=torch.bfloat16, requires_grad=True)
    target = torch.rand(6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = fn(input, target)
    assert loss.dtype == torch.float32
    loss.backward()
    assert input.grad.dtype == torch.bfloat16


# --------------------------------------------------------------------------- dtypes (issue 16)
# Every dtype pair against torch: tests/reliability/test_dtypes.py; complex: test_complex.py.


def test_bce_refuses_input_and_target_of_different_dtypes_like_torch():
    input, target = torch.rand(3), torch.rand(3, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="Found dtype Double but expected Float"):
        F.binary_cross_entropy(input, target)
    with pytest.raises(TypeError, match=r"target has dtype torch.float64 but input .*float32"):
        GF.binary_cross_entropy(input, target)  # also a RuntimeError, as torch's
    GF.binary_cross_entropy(input, target.float())


def test_bce_weight_of_another_dtype_keeps_the_input_dtype_like_torch():
    input, target, weight = torch.rand(3), torch.rand(3), torch.rand(3, dtype=torch.float64)
    loss = GF.binary_cross_entropy(input, target, weight)
    expected = F.binary_cross_entropy(input, target, weight)
    assert loss.dtype == expected.dtype == torch.float32
    torch.testing.assert_close(loss, expected)


def test_bce_with_logits_loss_has_the_targets_dtype_like_torch():
    logits = torch.randn(4, dtype=torch.float16, requires_grad=True)
    target = torch.rand(4, dtype=torch.float32)
    loss = GF.binary_cross_entropy_with_logits(logits, target, pos_weight=torch.ones(4))
    assert loss.dtype == F.binary_cross_entropy_with_logits(logits, target).dtype == torch.float32
    loss.backward()
    assert logits.grad.dtype == torch.float16


@pytest.mark.parametrize("fn", LOSSES[2:], ids=IDS[2:])
def test_bce_refuses_integer_targets_under_autocast_too(fn):
    # autocast casts floating-point tensors only, so torch refuses the Long target there too
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with pytest.raises(TypeError, match=r"target must be a floating-point tensor.*int64"):
            fn(torch.rand(3), torch.tensor([0, 1, 1]))


def test_linear_under_autocast_leaves_complex_operands_uncast():
    input = torch.randn(2, 4, dtype=torch.cfloat)
    weight = torch.randn(3, 4, dtype=torch.cfloat)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = GF.linear(input, weight)
        expected = F.linear(input, weight)
    assert output.dtype == expected.dtype == torch.cfloat
    torch.testing.assert_close(output, expected)


def test_mse_loss_refuses_integer_operands_without_weight_like_torch():
    input, target = torch.tensor([1, 2, 3]), torch.tensor([0, 2, 5])
    with pytest.raises(NotImplementedError, match='"mse_cpu" not implemented'):
        F.mse_loss(input, target)
    with pytest.raises(TypeError, match=r"common dtype torch.int64 is not floating point"):
        GF.mse_loss(input, target)
    weight = torch.ones(3)  # torch's weighted form computes it in Python: a float loss
    torch.testing.assert_close(
        GF.mse_loss(input, target, weight=weight), F.mse_loss(input, target, weight=weight)
    )
