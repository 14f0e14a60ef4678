"""The switch for value checks that cost a device synchronisation.

Shape, dtype and option checks are free and always run. Checks that must read tensor *values*
(BCE inputs inside [0, 1], NaN targets) force a GPU→CPU sync, so a user who has validated the
data once can turn them off for speed with ``gdtorch.set_validation(False)``.
"""

from __future__ import annotations

_ENABLED = True


def set_validation(enabled: bool) -> None:
    """Turn value checks (those that need a device sync) on or off for the whole process.

    Args:
        enabled: ``True`` (the default state) checks values; ``False`` skips those checks.
    """
    global _ENABLED
    if not isinstance(enabled, bool):
        raise TypeError(f"set_validation(enabled) expects a bool, got {type(enabled).__name__}")
    _ENABLED = enabled


def validation_enabled() -> bool:
    """Whether value checks are on (see :func:`set_validation`)."""
    return _ENABLED


class DtypeError(TypeError, NotImplementedError):
    """An argument of a dtype the operation does not take.

    A ``TypeError``, as the argument is of the wrong type; also a ``NotImplementedError`` (and
    so a ``RuntimeError``), which is what torch raises for the same call (``"mse_cpu" not
    implemented for 'Long'``, ``Found dtype Float but expected Long``): code written against
    torch that catches those still catches gdtorch's error.
    """
