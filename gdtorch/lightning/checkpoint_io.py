"""``AtomicCheckpointIO``: checkpoints that are never half-written and load as data, not code."""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import tempfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO


class CheckpointError(ValueError):
    """A checkpoint file that is missing, unreadable, or not a gdtorch training checkpoint."""


def training_checkpoint_progress(path: str | Path) -> tuple[int, int]:
    """``(epochs completed, global_step)`` of a training checkpoint, read as data only.

    Checks, before any training starts, that ``path`` is a checkpoint a run can resume from.
    Lightning saves ``epoch`` as the index of the epoch that was running, and gdtorch-train's
    checkpoints are written at the end of an epoch, so ``epoch + 1`` epochs are done.

    Raises:
        CheckpointError: ``path`` is missing, is not a readable ``torch.save`` file of tensors and
            plain containers, or holds no training state (``global_step``, ``loops``).
    """
    checkpoint = AtomicCheckpointIO().load_checkpoint(path, map_location="cpu")
    if (
        not isinstance(checkpoint, dict)
        or not {"epoch", "global_step", "loops"} <= checkpoint.keys()
    ):
        raise CheckpointError(
            f"{path} is not a training checkpoint (no global_step or loop state): resume from a "
            f"last.ckpt or best checkpoint written by gdtorch-train."
        )
    return int(checkpoint["epoch"]) + 1, int(checkpoint["global_step"])


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO``, with an atomic, durable save and a weights-only load.

    **Save.** A local checkpoint is serialised in memory, written to a temporary file in the
    *same folder* (``.<name>.<random>.tmp``), flushed and ``fsync``-ed, then renamed over the
    target with :func:`os.replace` (atomic on POSIX and Windows) and the folder is ``fsync``-ed.
    A process killed at any moment therefore leaves either the previous complete file or the new
    complete file at the path, never a truncated one (at worst an orphan ``.tmp`` file).

    The checkpoint is serialised when it is saved, so later updates cannot change what it holds;
    the write and its ``fsync`` then run on a background thread while training goes on. Writes
    and removals run there one at a time, in the order they were asked for. ``load_checkpoint``
    and ``teardown`` — which Lightning calls when ``fit`` ends, also on an error — wait for all
    of them; the first one that failed raises its error there, or at the next save or removal.

    Lightning's own save (``lightning.fabric.utilities.cloud_io._atomic_save``) writes inside an
    ``fsspec`` transaction whose local temporary file comes from ``tempfile.mkstemp()`` — in
    ``$TMPDIR``, not beside the target — and commits it with ``shutil.move``: a rename (atomic)
    only when ``$TMPDIR`` is on the same file system as the checkpoint folder; otherwise a copy
    onto the target, which a kill leaves truncated. It does not ``fsync`` either. Remote paths
    (``s3://``, ...) are still saved by Lightning's ``fsspec`` transaction.

    **Load.** ``weights_only`` defaults to ``True``: a checkpoint is unpickled with
    :func:`torch.load`'s restricted unpickler (tensors, containers and primitive types only),
    whatever Lightning (``weights_only=False`` before 2.6, torch's default since), torch
    (``True`` since 2.6) or ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` would choose, so resuming from a
    file cannot run code. Pass ``weights_only=False`` explicitly for a trusted checkpoint
    holding other objects.
    """

    def __init__(self) -> None:
        super().__init__()
        self._writer: ThreadPoolExecutor | None = None
        self._pending: list[Future] = []

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        fs, local_path = url_to_fs(str(path))
        if storage_options is not None or not isinstance(fs, LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        target = Path(local_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        self._submit(atomic_write, target, buffer.getbuffer())

    def remove_checkpoint(self, path: str | Path) -> None:
        self._submit(super().remove_checkpoint, path)

    def _submit(self, fn: Callable, *args: Any) -> None:
        """Queues ``fn(*args)`` on the file thread, after raising any earlier failure."""
        pending, self._pending, done = self._pending, [], []
        for future in pending:  # one look at each: one that ends meanwhile is in either list
            (done if future.done() else self._pending).append(future)
        _raise_first_failure(done)
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gdtorch-ckpt")
        self._pending.append(self._writer.submit(fn, *args))

    def teardown(self) -> None:
        """Waits for the queued writes and removals, and stops their thread."""
        try:
            self._wait()
        finally:
            if self._writer is not None:
                self._writer.shutdown()
                self._writer = None

    def _wait(self) -> None:
        """Blocks until the queued writes and removals are done; raises the first failure."""
        pending, self._pending = self._pending, []
        for future in pending:  # all of them, even after a failure: none left in flight
            future.exception()
        _raise_first_failure(pending)

    def load_checkpoint(
        self,
        path: str | Path,
        map_location: Callable | None = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        """Read a checkpoint with ``torch.load``, as data only unless ``weights_only=False``.

        Read here rather than through ``TorchCheckpointIO``: Lightning before 2.6 loads with
        ``weights_only=False`` and has no argument to change it.

        Raises:
            CheckpointError: there is no file at ``path``, or it cannot be read (as data only,
                unless ``weights_only=False``).
        """
        self._wait()
        fs, stripped = url_to_fs(str(path))
        if not fs.isfile(stripped):
            raise CheckpointError(
                f"checkpoint not found: {path} (give the path of a .ckpt file, e.g. "
                f"outputs/<date>/<time>/checkpoints/last.ckpt)"
            )
        weights_only = True if weights_only is None else weights_only
        try:
            with fs.open(stripped, "rb") as file:
                return torch.load(file, map_location=map_location, weights_only=weights_only)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
            if weights_only and isinstance(err, pickle.UnpicklingError):
                reason = (
                    "it holds Python objects other than tensors and plain containers, which are "
                    "never unpickled because unpickling can run code"
                )
            else:
                reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise CheckpointError(
                f"cannot read checkpoint {path}: {reason}. Use a checkpoint written by "
                f"gdtorch-train."
            ) from err


def _raise_first_failure(futures: list[Future]) -> None:
    """Raises the error of the first of ``futures`` (all done) that failed, if any."""
    for future in futures:
        error = future.exception()
        if error is not None:
            raise error


def atomic_write(target: Path, data: bytes | memoryview) -> None:
    """Replace ``target`` by a file holding ``data``, atomically and durably.

    Writes ``data`` to a temporary file beside ``target``, ``fsync``-s it, renames it over
    ``target`` with :func:`os.replace`, then ``fsync``-s the folder so the rename survives a
    power cut. On any error (or ``KeyboardInterrupt``) the temporary file is removed and
    ``target`` is untouched.

    Args:
        target: the file to write; its folder must exist.
        data: the complete new contents.
    """
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp's 0600 → a new file's usual mode
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_folder(target.parent)


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once, at import: setting the umask is process-wide


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened: Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
