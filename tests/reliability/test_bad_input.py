"""The README's "What is validated", row by row, through every door: modules, optimizer,
data, configs.

The functional API's own checks live in ``tests/test_functional.py``, the optimizer's
hyper-parameter checks in ``tests/optim``, the data classes' in ``tests/data``; this file covers
the other paths to them (``gdtorch.nn`` modules, the Hydra configs, ``run``), empty tensors,
non-finite predictions, and the torch-side errors that gdtorch must keep (duplicate parameters).

Non-finite predictions, the policy: BCE's ``input`` is a probability, so NaN or ±inf there is
out of its domain and raises like any value outside [0, 1]. For MSE, MAE and BCE-with-logits
a NaN or ±inf prediction is a model bug, not bad data: gdtorch does what torch does (no check:
it would cost a device sync on every call), and the loss comes out NaN or ±inf — never a
finite, plausible number — so ``NonFiniteLossGuard`` stops the training run at that step.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from hydra.errors import ConfigCompositionException, InstantiationException, MissingConfigException
from hydra.utils import instantiate
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

import gdtorch
from gdtorch import functional as GF
from gdtorch import nn as gnn
from gdtorch.optim import GradientDescent
from gdtorch.train import run
from tests.cases import compose_train
from tests.reliability.helpers import TINY

LOSS_MODULES = [gnn.MAELoss, gnn.MSELoss, gnn.BCELoss, gnn.BCEWithLogitsLoss]
LOSS_IDS = [cls.__name__ for cls in LOSS_MODULES]
TORCH_LOSS = {
    gnn.MAELoss: torch.nn.L1Loss,
    gnn.MSELoss: torch.nn.MSELoss,
    gnn.BCELoss: torch.nn.BCELoss,
    gnn.BCEWithLogitsLoss: torch.nn.BCEWithLogitsLoss,
}


def _prediction(cls, shape=(4,)) -> torch.Tensor:
    return torch.rand(shape) if cls is gnn.BCELoss else torch.randn(shape)


# --------------------------------------------------------------------------- modules


@pytest.mark.parametrize("cls", LOSS_MODULES, ids=LOSS_IDS)
def test_loss_modules_refuse_input_and_target_of_different_shapes(cls):
    with pytest.raises(ValueError, match=r"target size \(torch.Size\(\[4\]\)\).*input size"):
        cls()(_prediction(cls, (4, 1)), torch.rand(4))


@pytest.mark.parametrize("cls", LOSS_MODULES, ids=LOSS_IDS)
def test_loss_modules_refuse_a_reduction_typo_naming_the_value_and_the_choices(cls):
    loss = cls(reduction="meen")  # torch.nn accepts it here too; the call refuses it
    with pytest.raises(ValueError, match=r"reduction='meen'.*'none', 'mean', 'sum'"):
        loss(_prediction(cls), torch.rand(4))


@pytest.mark.parametrize("cls", LOSS_MODULES, ids=LOSS_IDS)
def test_loss_modules_refuse_nan_targets(cls):
    with pytest.raises(ValueError, match=r"target (contains NaN|should be between 0 and 1)"):
        cls()(_prediction(cls), torch.tensor([0.0, math.nan, 1.0, 0.0]))


@pytest.mark.parametrize("cls", [gnn.BCELoss, gnn.BCEWithLogitsLoss], ids=["BCE", "BCEWithLogits"])
def test_bce_modules_refuse_long_targets_naming_target_and_dtype(cls):
    with pytest.raises(TypeError, match=r"target must be a floating-point tensor.*torch\.int64"):
        cls()(_prediction(cls), torch.tensor([0, 1, 1, 0]))


@pytest.mark.parametrize("cls", [gnn.MAELoss, gnn.MSELoss], ids=["MAE", "MSE"])
def test_mae_and_mse_modules_promote_long_targets_like_torch(cls):
    input, target = torch.randn(4, requires_grad=True), torch.tensor([0, 1, 1, 0])
    torch.testing.assert_close(cls()(input, target), TORCH_LOSS[cls]()(input, target))


@pytest.mark.parametrize("bad", [-0.1, 1.5, math.nan, math.inf, -math.inf])
def test_bce_module_refuses_probabilities_outside_the_unit_interval(bad):
    with pytest.raises(ValueError, match="input should be between 0 and 1"):
        gnn.BCELoss()(torch.tensor([0.2, bad, 0.7]), torch.rand(3))


@pytest.mark.parametrize("cls", [gnn.BCELoss, gnn.BCEWithLogitsLoss], ids=["BCE", "BCEWithLogits"])
@pytest.mark.parametrize("bad", [-0.5, 2.0, math.inf])
def test_bce_modules_refuse_targets_outside_the_unit_interval(cls, bad):
    with pytest.raises(ValueError, match="target should be between 0 and 1"):
        cls()(_prediction(cls, (3,)), torch.tensor([0.0, bad, 1.0]))


@pytest.mark.parametrize(
    ("loss", "argument"),
    [
        (gnn.BCELoss(weight=torch.ones(4)), "weight"),
        (gnn.BCEWithLogitsLoss(weight=torch.ones(4)), "weight"),
        (gnn.BCEWithLogitsLoss(pos_weight=torch.ones(4)), "pos_weight"),
    ],
    ids=["BCE-weight", "BCEWithLogits-weight", "BCEWithLogits-pos_weight"],
)
def test_bce_module_buffers_that_do_not_broadcast_are_refused_naming_them(loss, argument):
    with pytest.raises(ValueError, match=rf"{argument} of shape \(4,\) must be broadcastable"):
        loss(torch.rand(2, 3), torch.rand(2, 3))


def test_linear_refuses_a_wrong_width_or_dtype_like_torch():
    ours, theirs = gnn.Linear(4, 3), torch.nn.Linear(4, 3)
    for bad in (torch.randn(2, 5), torch.randn(2, 4, dtype=torch.float64)):
        with pytest.raises(RuntimeError) as expected:
            theirs(bad)
        with pytest.raises(RuntimeError, match=re.escape(str(expected.value))):
            ours(bad)


# --------------------------------------------------------------------------- empty tensors

FUNCTIONAL = {
    "l1": (GF.l1_loss, F.l1_loss),
    "mse": (GF.mse_loss, F.mse_loss),
    "bce": (GF.binary_cross_entropy, F.binary_cross_entropy),
    "bce_logits": (GF.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits),
}


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", FUNCTIONAL)
@pytest.mark.parametrize("shape", [(0,), (0, 3), (2, 0)])
def test_losses_on_empty_tensors_give_torchs_answer(name, reduction, shape):
    """Empty is valid input, as in torch: sum 0, none empty, mean NaN (0/0, as torch.mean)."""
    ours, theirs = FUNCTIONAL[name]
    input = torch.rand(shape, requires_grad=True)
    target = torch.rand(shape)
    expected = theirs(input, target, reduction=reduction)
    output = ours(input, target, reduction=reduction)
    torch.testing.assert_close(output, expected, equal_nan=True)
    (grad,) = torch.autograd.grad(output.sum(), input)
    assert grad.shape == shape


@pytest.mark.parametrize("cls", [gnn.Linear, gnn.Sigmoid, gnn.ReLU, gnn.Tanh])
def test_layers_on_an_empty_batch_give_torchs_answer(cls):
    ours = cls(4, 3) if cls is gnn.Linear else cls()
    theirs = torch.nn.Linear(4, 3) if cls is gnn.Linear else getattr(torch.nn, cls.__name__)()
    theirs.load_state_dict(ours.state_dict())
    input = torch.randn(0, 4, requires_grad=True)
    output, expected = ours(input), theirs(input)
    assert output.shape == expected.shape
    output.sum().backward()
    expected.sum().backward()
    for mine, reference in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(mine.grad, reference.grad)  # zeros, not garbage


def test_a_mean_loss_over_an_empty_batch_is_nan_so_training_would_stop():
    assert torch.isnan(gnn.MSELoss()(torch.empty(0), torch.empty(0)))


# --------------------------------------------------------------------------- NaN/Inf predictions

POINTWISE_OR_LOGITS = ["l1", "mse", "bce_logits"]


@pytest.mark.parametrize("validation", [True, False], ids=["checks-on", "checks-off"])
@pytest.mark.parametrize("target", [0.0, 1.0])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("name", POINTWISE_OR_LOGITS)
def test_a_non_finite_prediction_makes_the_loss_non_finite_never_plausible(
    name, bad, target, validation
):
    gdtorch.set_validation(validation)
    ours, theirs = FUNCTIONAL[name]
    input = torch.tensor([0.3, bad, -0.2])
    targets = torch.tensor([1.0, target, 0.0])
    for reduction in ("mean", "sum"):
        assert not torch.isfinite(ours(input, targets, reduction=reduction)), reduction
        assert not torch.isfinite(theirs(input, targets, reduction=reduction))  # torch alike
    elementwise = ours(input, targets, reduction="none")
    assert not torch.isfinite(elementwise[1])
    torch.testing.assert_close(elementwise[0::2], theirs(input, targets, reduction="none")[0::2])


@pytest.mark.parametrize("name", POINTWISE_OR_LOGITS)
def test_a_weight_of_zero_does_not_hide_a_nan_prediction(name):
    ours, _ = FUNCTIONAL[name]
    input, target = torch.tensor([math.nan, 0.5]), torch.tensor([1.0, 0.0])
    assert torch.isnan(ours(input, target, weight=torch.tensor([0.0, 1.0]), reduction="sum"))


# --------------------------------------------------------------------------- optimizer


def _param() -> torch.nn.Parameter:
    return torch.nn.Parameter(torch.zeros(2))


@pytest.mark.parametrize("optimizer", [GradientDescent, torch.optim.SGD])
def test_a_parameter_in_two_groups_is_refused_like_torch(optimizer):
    message = "some parameters appear in more than one parameter group"
    p = _param()
    with pytest.raises(ValueError, match=message):
        optimizer([{"params": [p]}, {"params": [p], "lr": 0.5}], lr=0.1)
    built = optimizer([p], lr=0.1)
    with pytest.raises(ValueError, match=message):
        built.add_param_group({"params": [p]})


@pytest.mark.parametrize("optimizer", [GradientDescent, torch.optim.SGD])
def test_a_parameter_twice_in_one_group_warns_like_torch(optimizer):
    p = _param()
    with pytest.warns(UserWarning, match="duplicate parameters"):
        optimizer([p, p], lr=0.1)


@pytest.mark.parametrize(
    ("params", "error", "message"),
    [
        ([], ValueError, "optimizer got an empty parameter list"),
        ([1.0], TypeError, "optimizer can only optimize Tensors, but one of the params is float"),
        (None, ValueError, "can't optimize a non-leaf Tensor"),
    ],
    ids=["empty", "not-a-tensor", "non-leaf"],
)
def test_bad_parameter_lists_are_refused_with_torchs_words(params, error, message):
    if params is None:
        params = [torch.zeros(2, requires_grad=True) * 2]
    for optimizer in (GradientDescent, torch.optim.SGD):
        with pytest.raises(error, match=re.escape(message)):
            optimizer(params, lr=0.1)


# --------------------------------------------------------------------------- Hydra configs


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("optimizer.lrr=0.1", "optimizer.lrr"),
        ("trainer.max_epoch=3", "trainer.max_epoch"),
        ("data.modee=batch", "data.modee"),
        ("loss.reduction=sum", "loss.reduction"),
        ("seeed=1", "seeed"),
    ],
)
def test_an_unknown_config_key_is_refused_naming_it(tmp_path, override, named):
    with pytest.raises(ConfigCompositionException, match=rf"Could not override '{named}'"):
        compose_train(tmp_path, override)


@pytest.mark.parametrize(
    ("override", "group", "option", "valid"),
    [
        ("optimizer=adam", "optimizer", "adam", "gd"),
        ("loss=cross_entropy", "loss", "cross_entropy", "bce_logits"),
        ("data=imagenet", "data", "imagenet", "cifar10"),
        ("trainer=tpu", "trainer", "tpu", "ddp"),
    ],
)
def test_an_unknown_group_option_is_refused_listing_the_options(
    tmp_path, override, group, option, valid
):
    with pytest.raises(MissingConfigException) as raised:
        compose_train(tmp_path, override)
    message = str(raised.value)
    assert f"Could not find '{group}/{option}'" in message
    assert f"Available options in '{group}'" in message and f"\t{valid}\n" in message


def test_an_unknown_trainer_argument_is_refused_naming_it(tmp_path):
    cfg = compose_train(tmp_path, "+trainer.max_epoch=3")
    with pytest.raises(InstantiationException, match="unexpected keyword argument 'max_epoch'"):
        instantiate(cfg.trainer)


def test_a_reduction_typo_in_the_loss_config_fails_on_the_first_call_naming_it(tmp_path):
    loss = instantiate(compose_train(tmp_path, "loss=mse", "+loss.reduction=meen").loss)
    with pytest.raises(ValueError, match=r"reduction='meen'"):
        loss(torch.rand(3), torch.rand(3))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optimizer.lr=nan"], "Invalid learning rate: nan (lr must be a finite number >= 0)"),
        (["optimizer.lr=inf"], "Invalid learning rate: inf (lr must be a finite number >= 0)"),
        (["optimizer.lr=-1"], "Invalid learning rate: -1"),
        (["optimizer=momentum", "optimizer.momentum=-0.5"], "Invalid momentum value: -0.5"),
        (
            ["optimizer=nesterov", "optimizer.momentum=0"],
            "Nesterov momentum requires a momentum and zero dampening",
        ),
    ],
)
def test_bad_optimizer_options_in_the_config_are_refused_as_torch_words_them(
    tmp_path, overrides, message
):
    partial = instantiate(compose_train(tmp_path, *overrides).optimizer)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        partial([_param()])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            # (data.updates_per_batch is looked up by mode: given, the mode itself is checked)
            ["data.mode=full", "data.updates_per_batch=1"],
            "mode must be one of batch, stochastic, minibatch; got 'full'",
        ),
        (["data.n_train=0"], "n_train must be a positive int, got 0"),
        (["data.updates_per_batch=0"], "updates_per_batch must be a positive int, got 0"),
        (["data.batch_size=abc"], "batch_size must be a positive int, got 'abc'"),
        (["data=cifar10", "data.root=null"], "source 'cifar10' needs root (data.root)"),
    ],
)
def test_bad_data_options_in_the_config_are_refused_naming_them(tmp_path, overrides, message):
    with pytest.raises(InstantiationException, match=re.escape(message)):
        instantiate(compose_train(tmp_path, *overrides).data)


def test_an_unknown_mode_is_refused_by_the_per_mode_defaults_naming_the_allowed_ones(tmp_path):
    # conf/'s ${mode_default:${data.mode},…} resolves each per-mode default.
    message = "data.mode must be one of batch, minibatch, stochastic; got 'full'"
    with pytest.raises(InterpolationResolutionError, match=re.escape(message)):
        instantiate(compose_train(tmp_path, "data.mode=full").data)


def test_folder_data_without_a_root_is_a_missing_value_naming_data_root(tmp_path):
    cfg = compose_train(tmp_path, *TINY, "data=folder")  # root: ??? in conf/data/folder.yaml
    with pytest.raises(MissingMandatoryValue, match=r"Missing mandatory value: data\.root"):
        run(cfg)


@pytest.mark.parametrize(
    ("overrides", "error", "named"),
    [
        (["data=folder"], FileNotFoundError, r"photo folder .*nowhere does not exist.*data\.root"),
        (["data=cifar10"], FileNotFoundError, r"CIFAR-10 not found: .*nowhere.*data\.download"),
        (["data.image_size=8"], ValueError, r"image_size must be an int >= 16, got 8"),
    ],
    ids=["folder", "cifar10", "tiny-images"],
)
def test_data_that_cannot_be_loaded_is_named_with_the_fix(tmp_path, overrides, error, named):
    cfg = compose_train(tmp_path, *overrides, f"data.root={tmp_path / 'nowhere'}")
    datamodule = instantiate(cfg.data)
    with pytest.raises(error, match=named):
        datamodule.setup("fit")
