"""``Function``: the base of gdtorch's autograd Functions, with a cheaper ``apply``."""

from __future__ import annotations

import inspect
from typing import Any

import torch


class _Bound:
    """What ``inspect.Signature.bind`` returns for a complete positional call: the args as given."""

    __slots__ = ("args",)
    kwargs: dict[str, Any] = {}  # noqa: RUF012  (shared and never mutated)

    def __init__(self, args: tuple) -> None:
        self.args = args

    def apply_defaults(self) -> None:
        """Nothing to fill in: every parameter was passed."""


class _PositionalSignature(inspect.Signature):
    """A signature whose ``bind`` is the identity when every argument is passed positionally.

    That is: no keywords, and exactly one value per parameter, or, when the last parameter is
    ``*args``, at least one value per parameter before it.
    """

    __slots__ = ("_named", "_variadic")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        kinds = [parameter.kind for parameter in self.parameters.values()]
        self._variadic = bool(kinds) and kinds[-1] is inspect.Parameter.VAR_POSITIONAL
        self._named = len(kinds) - self._variadic

    def bind(self, /, *args: Any, **kwargs: Any) -> Any:
        if not kwargs and (
            len(args) == self._named or (self._variadic and len(args) > self._named)
        ):
            return _Bound(args)
        return super().bind(*args, **kwargs)


class Function(torch.autograd.Function):
    """A ``torch.autograd.Function`` in the ``forward`` + ``setup_context`` form.

    For that form ``Function.apply`` binds the call's arguments to ``forward``'s signature with
    ``inspect.signature`` on every call, to fill in default values (pytorch/pytorch#189573): about
    10 µs per call, more than a small layer's arithmetic. gdtorch's forwards take every argument
    positionally and are always called that way, so each subclass's ``forward`` gets a cached
    ``__signature__`` whose ``bind`` returns the arguments unchanged in that case (and binds as
    usual otherwise). The result is identical; only the work is skipped.

    Subclasses also get ``generate_vmap_rule = True``: their forwards and backwards are plain
    tensor operations, so ``torch.func.vmap`` can batch them.
    """

    generate_vmap_rule = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        forward = cls.__dict__.get("forward")
        if isinstance(forward, staticmethod):
            function = forward.__func__
            function.__signature__ = _PositionalSignature.from_callable(function)
