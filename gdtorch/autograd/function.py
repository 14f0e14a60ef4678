"""``Function``: the base of gdtorch's autograd Functions, with a cheaper eager ``apply``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch.autograd.function import FunctionMeta


def _eager_twin(cls: type[torch.autograd.Function]) -> type[torch.autograd.Function]:
    """``cls`` in the ``forward(ctx, *args)`` form, recording ``cls``'s own backward node.

    The twin's ``forward`` runs ``cls.forward`` and then ``cls.setup_context`` on the same
    ``ctx``, which is what ``torch.autograd.Function.apply`` does for the ``forward`` +
    ``setup_context`` form. The twin shares ``cls._backward_cls``, so the node it records is
    ``cls``'s: same ``grad_fn`` type, same ``backward``.
    """

    def forward(ctx: Any, *args: Any) -> Any:
        output = cls.forward(*args)
        cls.setup_context(ctx, args, output)
        return output

    twin = FunctionMeta(
        cls.__name__,
        (torch.autograd.Function,),
        {"forward": staticmethod(forward), "__module__": cls.__module__},
    )
    twin._backward_cls = cls._backward_cls
    return twin


_functorch_active = torch._C._are_functorch_transforms_active


def _eager_apply(cls: type[Function]) -> Callable[..., Any]:
    """What ``cls.apply`` runs for a positional call outside ``torch.func``: its twin's ``apply``.

    Only for the ``forward`` + ``setup_context`` form with no default values, where the twin is
    exact; any other subclass keeps torch's own ``apply``.
    """
    parameters = inspect.signature(cls.forward).parameters.values()
    if cls.setup_context is torch.autograd.Function.setup_context or any(
        p.default is not p.empty or p.kind is p.KEYWORD_ONLY for p in parameters
    ):
        return super(Function, cls).apply
    return _eager_twin(cls).apply


class Function(torch.autograd.Function):
    """A ``torch.autograd.Function`` in the ``forward`` + ``setup_context`` form, applied cheaply.

    For that form torch's ``apply`` binds the call's arguments to ``forward``'s signature with
    ``inspect`` on every call, to fill in default values, and calls ``setup_context`` as a
    second function: about 6 µs per call against 2.5 µs for the older ``forward(ctx, *args)``
    form (an identity Function, in a tight loop). Inside a batch-1 training step, the older form
    saved 17 µs for ``MLPFunction`` and the loss together, 8% of the step.

    gdtorch's Functions are written in the ``forward`` + ``setup_context`` form, which
    ``torch.func`` needs. An eager call with positional arguments (every call gdtorch makes)
    runs the class's twin in the older form instead (see ``_eager_twin``). It runs the same
    ``forward``, ``setup_context`` and ``backward``, so values, saved tensors, gradients and the
    ``grad_fn`` type are identical. Keyword calls and calls under ``torch.func`` transforms take
    torch's own ``apply``; ``torch.compile`` traces the class itself, as Dynamo intercepts
    ``apply`` on classes whose metaclass is exactly ``FunctionMeta`` (hence twins made on first
    use rather than by a metaclass).

    Subclasses also get ``generate_vmap_rule = True``: their forwards and backwards are plain
    tensor operations, so ``torch.func.vmap`` can batch them.
    """

    generate_vmap_rule = True

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Any:
        """Apply the Function, recording its backward node when an input requires grad."""
        if kwargs or _functorch_active():
            return super().apply(*args, **kwargs)
        apply = cls.__dict__.get("_eager_apply")  # made once per class, kept on the class
        if apply is None:
            apply = cls._eager_apply = _eager_apply(cls)
        return apply(*args)
