"""``AtomicCheckpointIO``: checkpoints that are never half-written, load as data, not code, and
carry a checksum of what they hold, verified at every load."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import pickle
import tempfile
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

log = logging.getLogger(__name__)

CHECKSUM_KEY = "gdtorch_checksum"
"""The checkpoint entry :class:`AtomicCheckpointIO` stores its checksum under."""

_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format (since torch 1.6) is a zip archive


class CheckpointError(ValueError):
    """A checkpoint file that is missing, unreadable, corrupted, or not a gdtorch checkpoint."""


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

    **Checksum.** Every checkpoint saved here carries, under :data:`CHECKSUM_KEY`, a SHA-256
    digest of each of its top-level entries (``state_dict``, ``optimizer_states``, ``loops``,
    ...): every tensor's bytes, dtype and shape and every plain value, in the order they are
    stored (:func:`checkpoint_checksum`). Each load recomputes them: a file changed after it
    was written (a bad disk, copy or download; torch reads its zip records without their CRC) is a
    :class:`CheckpointError` naming the file and the entry, never weights that silently differ.
    A checkpoint without a checksum (written by plain Lightning, or by gdtorch before it had one)
    cannot be verified; it is loaded, with a logged warning.

    **Load.** ``weights_only`` defaults to ``True`` and is always passed to :func:`torch.load`
    explicitly: a checkpoint is unpickled with torch's restricted unpickler (tensors, containers
    and primitive types only), whatever Lightning (``weights_only=False`` before 2.6, torch's
    default since) or the path would choose — an ``http(s)://`` URL is read through ``fsspec``
    like any other path. ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` changes only a ``torch.load``
    call that does not pass ``weights_only`` (torch >= 2.6; older torch has no such variable),
    so it cannot make this load run code either. gdtorch's commands never pass
    ``weights_only=False``; a caller of this class may, for a trusted file holding other objects.
    A file that cannot be read — missing, empty, truncated, corrupted, not a checkpoint, or
    holding code — is a :class:`CheckpointError` naming it, whose message (and the error it is
    raised from) never advises loading the file with ``weights_only=False``.
    """

    def __init__(self) -> None:
        super().__init__()
        self._writer: ThreadPoolExecutor | None = None
        self._pending: list[Future] = []

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        """Saves ``checkpoint`` with its checksum: atomically on a local path (see above)."""
        checkpoint = {**checkpoint, CHECKSUM_KEY: checkpoint_checksum(checkpoint)}
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
        """Read a checkpoint with ``torch.load``, as data only, and verify its checksum.

        Read here rather than through ``TorchCheckpointIO``: Lightning before 2.6 loads with
        ``weights_only=False`` and has no argument to change it, and Lightning 2.6 lets torch's
        default (and ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``) decide.

        Args:
            path: a local path or an ``fsspec`` URL (``http(s)://``, ``s3://``, ...).
            map_location: where to put the tensors, as ``torch.load`` takes it.
            weights_only: ``None`` or ``True``: data only. ``False`` unpickles any object, which
                can run code: only for a trusted file (gdtorch itself never passes it).

        Returns:
            The checkpoint, without its checksum entry.

        Raises:
            CheckpointError: there is no file at ``path``; it cannot be read as data only
                (empty, truncated, not a ``torch.save`` archive, holding Python objects other
                than tensors and plain containers); it holds no dict; or its contents do not
                match the checksum written with them.
        """
        self._wait()
        weights_only = True if weights_only is None else bool(weights_only)
        fs, stripped = _filesystem(path)
        try:
            found = fs.isfile(stripped)
        except Exception as err:  # a network or permission error of the file system
            raise CheckpointError(
                f"cannot reach checkpoint {path}: {_first_sentence(err)}. Check the path or URL."
            ) from err
        if not found:
            raise CheckpointError(
                f"checkpoint not found: {path} (give the path of a .ckpt file, e.g. "
                f"outputs/<date>/<time>/checkpoints/last.ckpt)"
            )
        head = b""
        try:
            with fs.open(stripped, "rb") as file:
                head = file.read(len(_ZIP_MAGIC))
                file.seek(0)
                checkpoint = torch.load(file, map_location=map_location, weights_only=weights_only)
        except Exception as err:  # whatever a damaged file makes torch raise
            raise CheckpointError(
                f"cannot read checkpoint {path}: {_unreadable_reason(err, head, weights_only)}"
            ) from _without_unsafe_advice(err)
        if not isinstance(checkpoint, dict):
            raise CheckpointError(
                f"cannot read checkpoint {path}: it holds a {type(checkpoint).__name__}, not the "
                f"dict of a Lightning checkpoint. Use a checkpoint written by gdtorch-train."
            )
        return verify_checksum(checkpoint, path)


def checkpoint_checksum(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """The checksum :class:`AtomicCheckpointIO` stores in a checkpoint, under :data:`CHECKSUM_KEY`.

    One SHA-256 digest per top-level entry (any existing checksum entry left out), over every
    tensor's dtype, shape and bytes and every plain value (``None``, ``bool``, ``int``,
    ``float``, ``str``, ``bytes``) in it, walked in the order they are stored — the order
    ``torch.load`` gives them back in — with dict keys and container lengths, so that a moved
    or dropped value changes the digest too. Other objects count by their type name only.

    Args:
        checkpoint: a checkpoint dict, as ``Trainer.save_checkpoint`` hands it to the
            ``CheckpointIO``.

    Returns:
        ``{"algorithm": "sha256", "entries": {name: hex digest}}``; ``name`` is the entry's key
        (``repr`` of a key that is not a string).
    """
    return {"algorithm": "sha256", "entries": _entry_digests(checkpoint)}


def verify_checksum(checkpoint: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """``checkpoint`` without its checksum entry, once its contents are checked against it.

    A checkpoint without a checksum is returned as it is (it cannot be verified; a warning is
    logged).

    Args:
        checkpoint: a checkpoint as ``torch.load`` read it (its checksum entry is removed).
        path: the file it was read from, for the messages.

    Raises:
        CheckpointError: the checksum entry is damaged, or an entry's digest differs from the
            one written with it.
    """
    if CHECKSUM_KEY not in checkpoint:
        log.warning(
            "%s has no gdtorch checksum (written by another tool, or by an older gdtorch): its "
            "weights are loaded without verification.",
            path,
        )
        return checkpoint
    stored = checkpoint.pop(CHECKSUM_KEY)
    advice = (
        "The file changed after it was written (a bad disk, copy or download): use another "
        "checkpoint (e.g. the best one beside last.ckpt) or copy it again."
    )
    entries = stored.get("entries") if isinstance(stored, dict) else None
    if (
        not isinstance(entries, dict)
        or stored.get("algorithm") != "sha256"
        or not all(isinstance(v, str) for v in entries.values())
    ):
        raise CheckpointError(f"{path} is corrupted: its checksum entry is damaged. {advice}")
    actual = _entry_digests(checkpoint)
    if actual.keys() != entries.keys():
        changed = sorted(actual.keys() ^ entries.keys())
        raise CheckpointError(
            f"{path} is corrupted: its entries {', '.join(changed)} were added or lost since "
            f"it was written (they do not match the checksum written with it). {advice}"
        )
    # the weights first: the part that matters most, and the one named in the message
    names = sorted(entries, key=lambda name: name != "state_dict")
    for name in names:
        if actual[name] != entries[name]:
            what = "its weights" if name == "state_dict" else f"its entry {name!r}"
            raise CheckpointError(
                f"{path} is corrupted: {what} do not match the checksum written with them. {advice}"
            )
    return checkpoint


def _entry_digests(checkpoint: Mapping[Any, Any]) -> dict[str, str]:
    digests = {}
    for key, value in checkpoint.items():
        if key == CHECKSUM_KEY:
            continue
        hasher = hashlib.sha256()
        _feed(hasher, value)
        digests[key if isinstance(key, str) else repr(key)] = hasher.hexdigest()
    return digests


def _feed(hasher: Any, value: Any) -> None:
    """Adds ``value`` — tensors, plain values and containers of them — to ``hasher``."""
    if isinstance(value, torch.Tensor):
        hasher.update(f"tensor {value.dtype} {tuple(value.shape)}\n".encode())
        hasher.update(_tensor_bytes(value))
    elif isinstance(value, Mapping):
        hasher.update(f"dict {len(value)}\n".encode())
        for key, item in value.items():
            hasher.update(f"key {key!r}\n".encode())
            _feed(hasher, item)
    elif isinstance(value, list | tuple):
        hasher.update(f"{type(value).__name__} {len(value)}\n".encode())
        for item in value:
            _feed(hasher, item)
    elif value is None or isinstance(value, bool | int | float | complex | str | bytes):
        hasher.update(f"{type(value).__name__} {value!r}\n".encode())
    else:  # not a type the weights-only unpickler gives back: counted by its name only
        hasher.update(f"object {type(value).__qualname__}\n".encode())


def _tensor_bytes(tensor: torch.Tensor) -> Any:
    """The tensor's elements as contiguous bytes on the CPU (a buffer ``hashlib`` reads)."""
    tensor = tensor.detach()
    if tensor.device.type == "meta":
        return b""
    if tensor.layout != torch.strided:
        tensor = tensor.to_dense()
    if tensor.is_quantized:
        tensor = tensor.int_repr()
    tensor = tensor.cpu().resolve_conj().resolve_neg().contiguous().reshape(-1)
    return tensor.view(torch.uint8).numpy() if tensor.numel() else b""


def _filesystem(path: str | Path) -> tuple[Any, str]:
    """``fsspec``'s file system for ``path`` and the path on it; a clear error when none."""
    try:
        return url_to_fs(str(path))
    except (ImportError, ValueError) as err:  # unknown protocol, or its package not installed
        raise CheckpointError(
            f"cannot open checkpoint {path}: {_first_sentence(err)}. Give a local path or an "
            f"http(s):// URL."
        ) from err


def _unreadable_reason(err: BaseException, head: bytes, weights_only: bool) -> str:
    """Why ``torch.load`` failed on a file starting with ``head``, and what to do, in words."""
    text = str(err)
    if isinstance(err, pickle.UnpicklingError) and weights_only and "GLOBAL" in text:
        return (
            f"it holds Python objects other than tensors and plain containers "
            f"({_first_sentence(err)}), which are never unpickled because unpickling can run "
            f"code. Use a checkpoint written by gdtorch-train."
        )
    if not head:
        return "the file is empty (0 bytes). Use a checkpoint written by gdtorch-train."
    if head != _ZIP_MAGIC:
        return (
            f"it is not a PyTorch checkpoint (torch.save writes a zip archive; this file starts "
            f"with {head!r}). Use a .ckpt file written by gdtorch-train."
        )
    if isinstance(err, RuntimeError) and "device" in text.lower() and "Stream" not in text:
        return f"{_first_sentence(err)}: choose another map_location (device)"
    # A zip archive torch fails to read — a truncated file seeks past its end (OSError), a
    # damaged one fails in the zip reader or the pickle — is a damaged checkpoint.
    return (
        f"it is truncated or corrupted ({type(err).__name__}: {_first_sentence(err)}). Use "
        f"another checkpoint (e.g. the best one beside last.ckpt) or copy it again."
    )


def _first_sentence(err: BaseException) -> str:
    """The first informative sentence of ``err``'s message, without torch's advice to unpickle
    the file in full (``weights_only=False``) or to allow its globals: both run its code."""
    for line in str(err).splitlines():
        line = line.strip()
        if line and not any(word in line for word in _UNSAFE_ADVICE):
            sentence = line.split(". ")[0].rstrip(".")
            return sentence if len(sentence) <= 300 else sentence[:297] + "..."
    return type(err).__name__


_UNSAFE_ADVICE = ("weights_only", "safe_globals", "Check the documentation", "file an issue")


def _without_unsafe_advice(err: BaseException) -> BaseException:
    """``err``, or a copy of it whose message drops advice to load the file in full."""
    if not any(word in str(err) for word in _UNSAFE_ADVICE):
        return err
    try:
        copy = type(err)(_first_sentence(err))
    except Exception:
        copy = RuntimeError(_first_sentence(err))
    return copy.with_traceback(err.__traceback__)


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
