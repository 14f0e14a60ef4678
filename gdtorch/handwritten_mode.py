"""``handwritten()``: any PyTorch code's functional calls run gdtorch's hand-written backward.

Inside ``with gdtorch.handwritten():`` (or a function decorated with ``@gdtorch.handwritten()``)
every call of these ops, made by any code — the user's, a library's, ``torch.nn`` modules' own
``forward`` — runs gdtorch's :mod:`~gdtorch.functional` twin, whose autograd node is the
hand-written ``backward``:

==================================  =====================================================
op                                  torch calls taken over
==================================  =====================================================
``linear``                          ``F.linear``
``relu``                            ``F.relu``, ``torch.relu``, ``Tensor.relu``
``sigmoid``                         ``torch.sigmoid``, ``Tensor.sigmoid``, ``F.sigmoid``
``tanh``                            ``torch.tanh``, ``Tensor.tanh``, ``F.tanh``
``l1_loss``, ``mse_loss``           ``F.l1_loss``, ``F.mse_loss``
``binary_cross_entropy``            ``F.binary_cross_entropy``
``binary_cross_entropy_with_logits``  ``F.binary_cross_entropy_with_logits``
==================================  =====================================================

It is built on torch's public override mechanism, a :class:`torch.overrides.TorchFunctionMode`:
nothing is monkey-patched, and outside the context nothing changes.

What is taken over, and what is not:

* A call that records a graph (grad mode on, some tensor argument requiring grad) runs gdtorch's
  Function, with the same value as torch's and a hand-written ``backward``.
* A call that records no graph (under ``torch.no_grad()`` or ``inference_mode``, inside an
  autograd Function's ``forward`` — gdtorch's own included —, or on tensors that require no
  grad) has no backward to hand-write: it runs torch's op, uncounted.
* A call gdtorch cannot take over exactly *falls through* to torch unchanged, and is counted
  with its reason: in-place variants (``relu_``, ``F.relu(inplace=True)``, ``sigmoid_``,
  ``tanh_``: the result must overwrite the input, as code like torchvision's ``ReLU(inplace=True)``
  relies on), ``out=``, dtypes gdtorch's Function does not take (``complex32``; complex ``relu``
  and losses, which torch refuses or turns into complex "losses"; a ``linear`` of mixed dtypes
  outside autocast, which torch refuses), sparse or nested tensors, tensor subclasses with their
  own ``__torch_function__`` (``nn.Parameter`` is a plain tensor here), and arguments outside
  gdtorch's signature (a ``linear`` weight that is not 2-D, a bias that is not of shape
  ``(out_features,)``, a number as a loss's target). torch then answers as it would without the
  context, its errors included.
* Bad input: gdtorch's stricter checks apply to the calls it takes over, as documented in
  :mod:`gdtorch.functional`. A loss whose input and target shapes differ raises ``ValueError``
  where torch only warns and broadcasts (silently computing the wrong loss); BCE probabilities or
  targets outside [0, 1] and NaN targets raise ``ValueError``. These errors propagate: they are
  the answer gdtorch gives where torch's is wrong.

Counting and the report: :meth:`handwritten.report` tells, per op, how many calls ran
hand-written and how many fell through, and why. Each call is counted once, however deep the
call chain (``F.relu`` calling ``torch.relu`` counts once), when it is dispatched: a call that then
raises is counted too.

Nesting, threads and exceptions behave as torch's own modes do: the context applies to the thread
that entered it (another thread's calls are untouched), and it exits cleanly when an exception
leaves the block. Nested ``handwritten()`` contexts share one mode on torch's stack (the
outermost's place); a call is counted in every ``handwritten()`` context open around it in its
thread, once each. One ``handwritten`` object may be entered from several threads at once (a
decorated function run by a thread pool): its report adds up all of them, exactly once each has
exited, and with the calls so far while some are still inside.

``torch.compile``: Dynamo traces through the context, so a function compiled and called inside it
runs gdtorch's Functions inside the compiled graph (with the same values). Those calls are not
counted: counts are Python state, and Dynamo would recompile whenever they change.

Cost: every torch call in the block, not only the ops above, passes through the mode's Python
``__torch_function__``, and the ops taken over run gdtorch's Functions one by one
(``scripts/benchmark.py --only handwritten`` measures both). The context need only cover the
forward pass: the graph it records carries the hand-written backward, wherever ``backward()``
is called. Both costs are structural: a mode that only forwards each call, and one Python
``autograd.Function`` per op at its least, each cost a few per cent of a small network's step
(the ``train_step_handwritten_floor`` rows). Where speed matters, ``gdtorch.nn.MLP`` runs the
whole network as one fused hand-written node, at torch's speed; the per-layer modules
:func:`gdtorch.nn.convert` swaps in pay the per-op cost without the mode's.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

from gdtorch import functional as GF

__all__ = ["HandwrittenReport", "OpCounts", "handwritten"]

# --------------------------------------------------------------------------- which calls, how

_REQUIRED = object()  # a parameter without a default
_FLOATS = frozenset((torch.float16, torch.bfloat16, torch.float32, torch.float64))
_FLOATS_AND_COMPLEX = _FLOATS | {torch.complex64, torch.complex128}
_PLAIN_TYPES = frozenset((Tensor, torch.nn.Parameter))  # no __torch_function__ of their own
_STRIDED = torch.strided
_EMPTY: dict[str, Any] = {}
_is_compiling = torch.compiler.is_compiling

IN_PLACE = "in-place (the result must overwrite the input)"
OUT = "out= (torch writes into a given tensor)"
SUBCLASS = "tensor subclass with its own __torch_function__"
LAYOUT = "sparse or nested tensor"
ARGUMENTS = "arguments outside gdtorch's signature"


def _bind(args: tuple, kwargs: Mapping[str, Any], signature: tuple) -> tuple | None:
    """The call's arguments in ``signature``'s order, defaults filled in; ``None`` if it doesn't
    fit (too many, a missing one, an unknown keyword or one given twice: torch raises then)."""
    n = len(args)
    if n == len(signature) and not kwargs:
        return args
    if n > len(signature):
        return None
    bound = list(args)
    used = 0
    for name, default in signature[n:]:
        if name in kwargs:
            bound.append(kwargs[name])
            used += 1
        elif default is _REQUIRED:
            return None
        else:
            bound.append(default)
    return tuple(bound) if used == len(kwargs) else None


# The checks run on every call of an op in the block: straight-line code, few calls. A
# non-tensor where a tensor belongs shows as an AttributeError (a float has no .requires_grad).

_LINEAR = (("input", _REQUIRED), ("weight", _REQUIRED), ("bias", None))
_LINEAR_SHAPES = "shapes outside gdtorch's (N, in) x (out, in) + (out,)"


def _check_linear(args: tuple, kwargs: Mapping[str, Any]) -> tuple | str | None:
    bound = args if len(args) == 3 and not kwargs else _bind(args, kwargs, _LINEAR)
    if bound is None:
        return ARGUMENTS
    input, weight, bias = bound
    try:
        if not (
            input.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
        ):
            return None
        dtype = input.dtype
        if dtype not in _FLOATS_AND_COMPLEX:
            return f"dtype {dtype}"
        if weight.dtype is not dtype or (bias is not None and bias.dtype is not dtype):
            if not (torch.is_autocast_enabled(input.device.type) and weight.dtype in _FLOATS):
                return "dtypes differ (torch raises)"
        if (
            input.layout is not _STRIDED
            or weight.layout is not _STRIDED
            or input.is_nested
            or (bias is not None and bias.layout is not _STRIDED)
        ):
            return LAYOUT
        out_features, in_features = weight.shape  # ValueError unless 2-D
        if input.ndim == 0 or input.shape[-1] != in_features:
            return _LINEAR_SHAPES
        if bias is not None and (bias.ndim != 1 or bias.shape[0] != out_features):
            return _LINEAR_SHAPES
    except AttributeError:
        return ARGUMENTS
    except ValueError:
        return _LINEAR_SHAPES
    return bound


def _unary_checker(flag: str | None, dtypes: frozenset, in_place_only: bool = False):
    """The check of an element-wise activation: ``input``, and ``flag``: ``F.relu``'s
    ``inplace``, ``torch.sigmoid``'s and ``torch.tanh``'s ``out``, or ``None`` (methods)."""
    signature = (("input", _REQUIRED), (flag, None)) if flag else (("input", _REQUIRED),)

    def check(args: tuple, kwargs: Mapping[str, Any]) -> tuple | str | None:
        if len(args) == 1 and (not kwargs or (len(kwargs) == 1 and flag in kwargs)):
            input = args[0]
            value = kwargs[flag] if kwargs else None
        else:
            bound = _bind(args, kwargs, signature)
            if bound is None:
                return ARGUMENTS
            input, value = bound[0], bound[1] if len(bound) > 1 else None
        try:
            if not input.requires_grad:
                return None
            if in_place_only or (flag == "inplace" and value):
                return IN_PLACE
            if value is not None and flag == "out":
                return OUT
            if input.dtype not in dtypes:
                return f"dtype {input.dtype}"
            if input.layout is not _STRIDED or input.is_nested:
                return LAYOUT
        except AttributeError:
            return ARGUMENTS
        return (input,)

    return check


_L1_MSE = (
    ("input", _REQUIRED),
    ("target", _REQUIRED),
    ("size_average", None),
    ("reduce", None),
    ("reduction", "mean"),
    ("weight", None),
)
_BCE = (
    ("input", _REQUIRED),
    ("target", _REQUIRED),
    ("weight", None),
    ("size_average", None),
    ("reduce", None),
    ("reduction", "mean"),
)
_BCE_LOGITS = (*_BCE, ("pos_weight", None))


def _loss_checker(signature: tuple, dtypes: frozenset):
    """The check of a loss: ``input`` and ``target`` of ``dtypes``, real float weights."""
    names = frozenset(name for name, _ in signature[2:])
    extras = [i for i, (name, _) in enumerate(signature) if name in ("weight", "pos_weight")]

    def check(args: tuple, kwargs: Mapping[str, Any]) -> tuple | str | None:
        if len(args) == 2 and names.issuperset(kwargs):  # as torch's Python losses pass them
            bound = (*args, *[kwargs.get(name, default) for name, default in signature[2:]])
        else:
            bound = _bind(args, kwargs, signature)
            if bound is None:
                return ARGUMENTS
        input, target = bound[0], bound[1]
        weights = [bound[i] for i in extras if bound[i] is not None]
        try:
            if not (
                input.requires_grad
                or target.requires_grad
                or (weights and any(w.requires_grad for w in weights))
            ):
                return None
            if input.dtype not in dtypes:
                return f"dtype {input.dtype}"
            if target.dtype not in dtypes:
                return f"dtype {target.dtype}"
            if input.layout is not _STRIDED or target.layout is not _STRIDED:
                return LAYOUT
            if input.is_nested or target.is_nested:
                return LAYOUT
            for w in weights:
                if w.dtype not in _FLOATS:
                    return f"dtype {w.dtype} (weight)"
                if w.layout is not _STRIDED or w.is_nested:
                    return LAYOUT
        except AttributeError:
            return ARGUMENTS
        return bound

    return check


class _Op(NamedTuple):
    """One op: its name in the report, the check, gdtorch's function and torch's.

    ``check(args, kwargs)`` returns the arguments in the order both functions take them (take
    the call over), a reason (let it fall through, counted), or ``None`` (no graph: torch's op,
    uncounted).
    """

    name: str
    check: Callable[[tuple, Mapping[str, Any]], tuple | str | None]
    gdtorch: Callable[..., Tensor]
    torch: Callable[..., Tensor]


def _ops() -> dict[Callable, _Op]:
    relu = _Op("relu", _unary_checker(None, _FLOATS), GF.relu, torch.relu)
    relu_f = relu._replace(check=_unary_checker("inplace", _FLOATS))
    relu_ = relu._replace(check=_unary_checker(None, _FLOATS, in_place_only=True))
    sigmoid = _Op("sigmoid", _unary_checker("out", _FLOATS_AND_COMPLEX), GF.sigmoid, torch.sigmoid)
    tanh = _Op("tanh", _unary_checker("out", _FLOATS_AND_COMPLEX), GF.tanh, torch.tanh)
    sigmoid_m = sigmoid._replace(check=_unary_checker(None, _FLOATS_AND_COMPLEX))
    tanh_m = tanh._replace(check=_unary_checker(None, _FLOATS_AND_COMPLEX))
    sigmoid_ = sigmoid._replace(check=_unary_checker(None, _FLOATS_AND_COMPLEX, True))
    tanh_ = tanh._replace(check=_unary_checker(None, _FLOATS_AND_COMPLEX, True))
    return {
        F.linear: _Op("linear", _check_linear, GF.linear, F.linear),
        F.relu: relu_f,
        torch.relu: relu,
        Tensor.relu: relu,
        torch.relu_: relu_,  # also F.relu_
        Tensor.relu_: relu_,
        torch.sigmoid: sigmoid,
        Tensor.sigmoid: sigmoid_m,
        F.sigmoid: sigmoid_m,  # today it calls Tensor.sigmoid without a check of its own
        torch.sigmoid_: sigmoid_,
        Tensor.sigmoid_: sigmoid_,
        torch.tanh: tanh,
        Tensor.tanh: tanh_m,
        F.tanh: tanh_m,
        torch.tanh_: tanh_,
        Tensor.tanh_: tanh_,
        F.l1_loss: _Op(
            "l1_loss", _loss_checker(_L1_MSE, _FLOATS_AND_COMPLEX), GF.l1_loss, F.l1_loss
        ),
        F.mse_loss: _Op("mse_loss", _loss_checker(_L1_MSE, _FLOATS), GF.mse_loss, F.mse_loss),
        F.binary_cross_entropy: _Op(
            "binary_cross_entropy",
            _loss_checker(_BCE, _FLOATS),
            GF.binary_cross_entropy,
            F.binary_cross_entropy,
        ),
        F.binary_cross_entropy_with_logits: _Op(
            "binary_cross_entropy_with_logits",
            _loss_checker(_BCE_LOGITS, _FLOATS),
            GF.binary_cross_entropy_with_logits,
            F.binary_cross_entropy_with_logits,
        ),
    }


OPS: dict[Callable, _Op] = _ops()
OP_NAMES = tuple(dict.fromkeys(op.name for op in OPS.values()))


def take_over(func: Callable, types: tuple, args: tuple, kwargs: Mapping[str, Any] | None):
    """``(op, verdict)`` for a call seen by a mode: what :func:`handwritten` does with it.

    ``op`` is ``None`` for a function gdtorch does not take over; ``verdict`` is the arguments of
    ``op.gdtorch`` (taken over), a reason (falls through) or ``None`` (no graph). Audits use it
    to find the calls a ``handwritten()`` run takes over.
    """
    try:
        op = OPS.get(func)
    except TypeError:  # an unhashable callable: not one of the ops
        return None, None
    if op is None or not torch.is_grad_enabled():
        return None, None
    if types and not _PLAIN_TYPES.issuperset(types):
        return op, SUBCLASS
    return op, op.check(args, kwargs or _EMPTY)


# --------------------------------------------------------------------------- the mode


_local = threading.local()  # .mode: the thread's _Mode while a handwritten() is open in it


class _Mode(TorchFunctionMode):
    """The one mode on torch's stack while ``handwritten()`` contexts are open in a thread."""

    def __init__(self) -> None:
        super().__init__()
        # One frame per open handwritten() entry, innermost last: (owner, whether it is the
        # owner's outermost entry in this thread, the targets and paused state to restore).
        self.frames: list[tuple[handwritten, bool, list[dict], bool]] = []
        self.counts_of: dict[handwritten, dict] = {}  # each open owner's counts in this thread
        self.targets: list[dict] = []  # the counts a call goes to: each open owner's, once
        self.paused = False  # audits run their torch reference with the mode paused

    def __torch_function__(self, func, types, args=(), kwargs=None):
        # The hot path: every torch call in the block comes here (torch takes this mode off its
        # stack while we run, so the calls made below go straight to torch).
        try:
            op = OPS.get(func)
        except TypeError:  # an unhashable callable: not one of the ops
            op = None
        if op is None or self.paused or not torch.is_grad_enabled():
            return func(*args, **kwargs) if kwargs else func(*args)
        if types and not _PLAIN_TYPES.issuperset(types):
            verdict = SUBCLASS
        else:
            verdict = op.check(args, kwargs or _EMPTY)
        if verdict is None:  # no graph
            return func(*args, **kwargs) if kwargs else func(*args)
        taken = verdict.__class__ is tuple
        if not _is_compiling():  # Dynamo would guard on the counts, and recompile every call
            key = (op.name, None if taken else verdict)
            for counts in self.targets:  # counted as dispatched, before either function raises
                counts[key] = counts.get(key, 0) + 1
        if taken:
            return op.gdtorch(*verdict)
        return func(*args, **kwargs) if kwargs else func(*args)


def _current_mode() -> _Mode | None:
    return getattr(_local, "mode", None)


@contextlib.contextmanager
def torch_only() -> Iterator[None]:
    """Calls in the block run torch's ops, uncounted, even inside ``handwritten()``.

    A ``handwritten()`` entered inside the block takes over again. Audits run their torch
    reference this way.
    """
    mode = _current_mode()
    if mode is None:
        yield
        return
    paused, mode.paused = mode.paused, True
    try:
        yield
    finally:
        mode.paused = paused


def inside() -> bool:
    """Whether a ``handwritten()`` context is open (and not paused) in this thread."""
    mode = _current_mode()
    return mode is not None and not mode.paused


# --------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class OpCounts:
    """One op's line of a :class:`HandwrittenReport`.

    Attributes:
        op: the op's name (``"linear"``, ``"relu"``, ..., ``"binary_cross_entropy_with_logits"``).
        handwritten: calls that ran gdtorch's Function.
        fell_through: calls that ran torch's op unchanged.
        reasons: why they fell through, with the number of calls for each reason.
    """

    op: str
    handwritten: int = 0
    fell_through: int = 0
    reasons: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class HandwrittenReport:
    """What a :class:`handwritten` context did, per op; ``str(report)`` is a table.

    Attributes:
        rows: one :class:`OpCounts` per op that was called, in the order of the module table.
    """

    rows: tuple[OpCounts, ...] = ()

    def __getitem__(self, op: str) -> OpCounts:
        """The counts of ``op`` (zeros if it was never called)."""
        for row in self.rows:
            if row.op == op:
                return row
        if op not in OP_NAMES:
            raise KeyError(f"{op!r} is not one of handwritten()'s ops: {', '.join(OP_NAMES)}")
        return OpCounts(op)

    @property
    def handwritten(self) -> int:
        """Calls that ran hand-written, over all ops."""
        return sum(row.handwritten for row in self.rows)

    @property
    def fell_through(self) -> int:
        """Calls that fell through to torch, over all ops."""
        return sum(row.fell_through for row in self.rows)

    @classmethod
    def _of(cls, counts: Mapping[tuple[str, str | None], int]) -> HandwrittenReport:
        rows = []
        for op in OP_NAMES:
            mine = {reason: n for (name, reason), n in counts.items() if name == op and n}
            if mine:
                taken = mine.pop(None, 0)
                reasons = dict(sorted(mine.items(), key=lambda item: (-item[1], item[0])))
                rows.append(OpCounts(op, taken, sum(reasons.values()), reasons))
        return cls(tuple(rows))

    def __str__(self) -> str:
        if not self.rows:
            return "handwritten(): no call of a supported op recorded a graph"
        header = ("op", "hand-written", "fell through", "why it fell through")
        lines = [
            (
                row.op,
                str(row.handwritten),
                str(row.fell_through),
                ", ".join(f"{reason} ×{n}" for reason, n in row.reasons.items()),
            )
            for row in self.rows
        ]
        widths = [max(len(line[i]) for line in [header, *lines]) for i in range(3)]
        return "\n".join(
            "  ".join(
                [
                    line[0].ljust(widths[0]),
                    line[1].rjust(widths[1]),
                    line[2].rjust(widths[2]),
                    line[3],
                ]
            ).rstrip()
            for line in [header, *lines]
        )


# --------------------------------------------------------------------------- the context


class handwritten(contextlib.ContextDecorator):  # lowercase: a context, as torch.no_grad
    """Run torch's functional calls of the supported ops through gdtorch's hand-written backward.

    A context manager and a decorator (``@gdtorch.handwritten()``, on plain functions: a
    generator would leave the context at its first ``yield``). See the module docstring for what
    is taken over, what falls through, and how nesting, threads and exceptions behave.

    Args:
        report: ``True`` prints :meth:`report` when the context exits; a callable (e.g.
            ``logging.getLogger(__name__).info``) is given its text instead.

    Example:
        >>> import torch, torch.nn.functional as F
        >>> w = torch.randn(1, 3, requires_grad=True)
        >>> x, y = torch.ones(2, 3), torch.ones(2, 1)
        >>> with handwritten() as hw:
        ...     loss = F.binary_cross_entropy_with_logits(F.linear(x, w), y)
        >>> type(loss.grad_fn).__name__
        'BCEWithLogitsLossFunctionBackward'
        >>> hw.report().handwritten
        2
    """

    def __init__(self, *, report: bool | Callable[[str], Any] = False, _isolated: bool = False):
        self._report_to = report
        self._isolated = _isolated  # audits: count nothing into the contexts around
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str | None], int] = {}  # of the frames that exited
        self._live: dict[int, dict] = {}  # id -> counts of the frames still open, any thread

    def __enter__(self) -> handwritten:
        mode = getattr(_local, "mode", None)
        if mode is None:
            mode = _local.mode = _Mode()
            mode.__enter__()
        counts = mode.counts_of.get(self)
        first = counts is None
        if first:  # this object's outermost entry in this thread
            counts = mode.counts_of[self] = {}
            with self._lock:
                self._live[id(counts)] = counts
        targets = [] if self._isolated else mode.targets
        if not any(target is counts for target in targets):
            targets = [*targets, counts]
        mode.frames.append((self, first, mode.targets, mode.paused))
        mode.targets, mode.paused = targets, False
        return self

    def __exit__(self, *exc_info: Any) -> None:
        mode = getattr(_local, "mode", None)
        if mode is None or not mode.frames or mode.frames[-1][0] is not self:
            raise RuntimeError(
                "gdtorch.handwritten: a context must exit in the thread that entered it, "
                "innermost first"
            )
        _, first, mode.targets, mode.paused = mode.frames.pop()
        if not mode.frames:
            _local.mode = None
            mode.__exit__(*exc_info)
        if first:
            counts = mode.counts_of.pop(self)
            with self._lock:
                del self._live[id(counts)]
                for key, n in counts.items():
                    self._counts[key] = self._counts.get(key, 0) + n
            if self._report_to:
                text = str(self.report())
                if self._report_to is True:
                    print(text)
                else:
                    self._report_to(text)

    def report(self) -> HandwrittenReport:
        """Per op, the calls that ran hand-written and those that fell through, with why.

        Counts every entry of this object so far, in every thread; calls still running in an
        open context are included up to now.
        """
        with self._lock:
            totals = dict(self._counts)
            for counts in self._live.values():
                for key, n in counts.copy().items():
                    totals[key] = totals.get(key, 0) + n
        return HandwrittenReport._of(totals)

    def __repr__(self) -> str:
        return f"gdtorch.handwritten({self.report().handwritten} calls hand-written so far)"
