"""Speed, not maths: what the Functions of :mod:`gdtorch.autograd` use only to run faster.

The maths files (``linear.py``, ``activations.py``, ``losses.py``, ``mlp.py``) read as the
tutorial's equations and call the helpers here by what they do. Each helper gives the same
values as the plain expression it replaces; ``scripts/benchmark.py`` (``--only tricks``)
measures what each buys by swapping it for that plain expression:

* :class:`Function` — a cheaper eager ``apply`` (plain: ``torch.autograd.Function.apply``);
* :func:`shared_constant` — 0-dim constants made once (plain: ``like.new_full((), value)``);
* :func:`relu_mask` — ReLU's slope kept as one byte per element (plain: ``a != 0`` in ``a``'s
  dtype);
* :func:`may_write_in_place` and :func:`activate_` — overwrite a temporary instead of making
  another (plain: never in place).

Two earlier tricks were measured by those rows and dropped, as they bought nothing the
benchmark could see: a mean as ``Σ ℓᵢ`` divided by a shared ``N``, and BCE's
``g ⊙ (σ(z) − y) / N`` in one ``addcmul``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from gdtorch import _compat

# --------------------------------------------------------------------------- apply


def _positional_form(cls: type[torch.autograd.Function]) -> type[torch.autograd.Function]:
    """``cls`` in the older ``forward(ctx, *args)`` form, recording ``cls``'s own backward node.

    Its ``forward`` runs ``cls.forward`` and then ``cls.setup_context`` on the same ``ctx``,
    which is what ``torch.autograd.Function.apply`` does for the ``forward`` +
    ``setup_context`` form. It shares ``cls._backward_cls``, so the node it records is
    ``cls``'s: same ``grad_fn`` type, same ``backward``.
    """

    def forward(ctx: Any, *args: Any) -> Any:
        output = cls.forward(*args)
        cls.setup_context(ctx, args, output)
        return output

    positional = _compat.FunctionMeta(
        cls.__name__,
        (torch.autograd.Function,),
        {"forward": staticmethod(forward), "__module__": cls.__module__},
    )
    positional._backward_cls = cls._backward_cls
    return positional


def _eager_apply(cls: type[Function]) -> Callable[..., Any]:
    """What ``cls.apply`` runs for a positional call outside ``torch.func``.

    The positional form's ``apply`` when it is exact (``forward`` + ``setup_context`` with no
    default values); torch's own ``apply`` for any other subclass.
    """
    parameters = inspect.signature(cls.forward).parameters.values()
    if cls.setup_context is torch.autograd.Function.setup_context or any(
        p.default is not p.empty or p.kind is p.KEYWORD_ONLY for p in parameters
    ):
        return super(Function, cls).apply
    return _positional_form(cls).apply


class Function(torch.autograd.Function):
    """A ``torch.autograd.Function`` in the ``forward`` + ``setup_context`` form, applied cheaply.

    For that form torch's ``apply`` binds every call's arguments to ``forward``'s signature
    with ``inspect``, to fill in default values, and calls ``setup_context`` as a second
    function. An eager call with positional arguments (every call gdtorch makes) runs the
    class's positional form instead (:func:`_positional_form`): the same ``forward``,
    ``setup_context`` and ``backward``, so values, saved tensors, gradients and the ``grad_fn``
    type are identical. Keyword calls and calls under ``torch.func`` transforms take torch's
    own ``apply``. ``torch.compile`` traces the class itself, since Dynamo intercepts ``apply``
    on classes whose metaclass is exactly ``FunctionMeta`` (hence positional forms made on
    first use rather than by a metaclass).

    Subclasses also get ``generate_vmap_rule = True``: their forwards and backwards are plain
    tensor operations, so ``torch.func.vmap`` can batch them.
    """

    generate_vmap_rule = True

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Any:
        """Apply the Function, recording its backward node when an input requires grad."""
        if kwargs or _compat.functorch_transforms_active():
            return super().apply(*args, **kwargs)
        apply = cls.__dict__.get("_eager_apply")  # made once per class, kept on the class
        if apply is None:
            apply = cls._eager_apply = _eager_apply(cls)
        return apply(*args)


# --------------------------------------------------------------------------- constants

_CONSTANTS: dict[tuple[float, torch.device, torch.dtype], Tensor] = {}
_MAX_CONSTANTS = 64  # a handful of batch sizes × dtypes × devices; past it, constants are fresh


def shared_constant(value: float, like: Tensor) -> Tensor:
    """A 0-dim tensor holding ``value``, of ``like``'s dtype and device, made once and shared.

    ``torch.compile`` and ``torch.func`` get a fresh one, as they trace; so do tensor
    subclasses (fake tensors, for one, must not be kept), inference mode, whose tensors must not
    outlive it into autograd, and CUDA graph capture, whose memory only the graph fills. Once
    the cache is full, new values are made afresh: nothing shared is ever dropped.
    """
    if (
        type(like) is not Tensor
        or torch.compiler.is_compiling()
        or _compat.functorch_transforms_active()
        or torch.is_inference_mode_enabled()
        or (like.is_cuda and torch.cuda.is_current_stream_capturing())
    ):
        return like.new_full((), value)
    key = (value, like.device, like.dtype)
    constant = _CONSTANTS.get(key)
    if constant is None:
        constant = like.new_full((), value)
        if len(_CONSTANTS) < _MAX_CONSTANTS:
            _CONSTANTS[key] = constant
    return constant


# --------------------------------------------------------------------------- masks, in place


def relu_mask(output: Tensor) -> Tensor:
    r"""``[a ≠ 0]``, ReLU's slope read off its output, as a tensor to multiply δ by.

    Kept as ``uint8``: one byte per element, a quarter of the float output torch's ReLU keeps,
    and ``δ ⊙ mask`` with a ``uint8`` mask is a fast multiply (a ``bool`` operand takes a slow
    conversion path on CPU). Under ``torch.compile`` the mask is in ``a``'s dtype instead, which
    inductor fuses into the multiply (it converts a ``uint8`` mask element by element).
    """
    if torch.compiler.is_compiling():
        return (output != 0).to(output.dtype)
    return output.bool().view(torch.uint8)


def may_write_in_place() -> bool:
    """Whether a backward may overwrite a temporary it made itself.

    Not under ``torch.func``, where the temporary may be unbatched while what it is combined with
    is batched, which ``vmap`` cannot write in place.
    """
    return not _compat.functorch_transforms_active()


_IN_PLACE: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": torch.relu_,
    "sigmoid": torch.sigmoid_,
    "tanh": torch.tanh_,
}


def activate_(name: str, z: Tensor) -> Tensor:
    """``g(z)`` written over ``z``, a temporary nothing else reads: one tensor fewer per layer."""
    return _IN_PLACE[name](z)
