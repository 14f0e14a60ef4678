"""The Function base: its cached signature binds exactly as ``inspect.Signature.bind`` does."""

from __future__ import annotations

import inspect

import pytest

from gdtorch.autograd import BCEWithLogitsLossFunction, MLPFunction
from gdtorch.autograd.function import _Bound


@pytest.mark.parametrize(
    ("function", "args", "kwargs"),
    [
        (BCEWithLogitsLossFunction, (1, 2, None, None, "mean"), {}),  # every parameter
        (MLPFunction, ("x", ("relu", None), "W1", "b1", "W2", "b2"), {}),  # *params
        (MLPFunction, ("x", (None,)), {}),  # *params empty
        (
            BCEWithLogitsLossFunction,
            (1, 2),
            {"weight": None, "pos_weight": None, "reduction": "sum"},
        ),
        (MLPFunction, (), {"input": "x", "activations": ()}),
    ],
)
def test_cached_signature_binds_like_inspect(function, args, kwargs):
    cached = inspect.signature(function.forward)
    plain = inspect.Signature(list(cached.parameters.values()))
    assert type(plain) is inspect.Signature
    bound, expected = cached.bind(*args, **kwargs), plain.bind(*args, **kwargs)
    bound.apply_defaults()
    expected.apply_defaults()
    assert (bound.args, bound.kwargs) == (expected.args, expected.kwargs)


def test_complete_positional_calls_skip_binding():
    signature = inspect.signature(MLPFunction.forward)
    assert isinstance(signature.bind("x", (None,), "W", "b"), _Bound)
    assert isinstance(
        inspect.signature(BCEWithLogitsLossFunction.forward).bind(1, 2, 3, 4, 5), _Bound
    )


@pytest.mark.parametrize(
    ("function", "args"),
    [
        (BCEWithLogitsLossFunction, (1, 2, 3)),
        (BCEWithLogitsLossFunction, (1, 2, 3, 4, 5, 6)),
        (MLPFunction, ("x",)),
    ],
)
def test_wrong_calls_fail_as_inspect_fails(function, args):
    with pytest.raises(TypeError):
        inspect.signature(function.forward).bind(*args)
