"""Safe output: check every output before work starts, write it in a hidden sibling, rename at the end.

- A crash, a full disk or a user error never leaves a half-written output.
- Every folder vagan writes carries an ownership marker (:mod:`vagan.io.ownership`); ``overwrite``
  replaces only a folder with the marker of the same kind and no files vagan did not write.
- The final rename never replaces something another process created meanwhile: of two runs writing
  the same new output, one wins and the other stops with :class:`OutputExistsError`.
- An output may not be, contain or lie inside any input (replacing it would delete the input), and
  the outputs of one command may not overlap each other.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from vagan.errors import OutputError, OutputExistsError
from vagan.io.ownership import (
    OutputKind,
    check_replaceable,
    enclosing_run,
    write_marker,
)

log = logging.getLogger(__name__)


def _resolved(path: Path) -> Path:
    return Path(path).expanduser().resolve()


def check_no_overlap(path: Path, inputs: Sequence[Path]) -> None:
    """Refuse an output that is an input, lies inside one, or holds one (replacing it would delete it).
    An input inside a training run (a checkpoint folder) stands for the whole run."""
    out = _resolved(path)
    for src in inputs:
        src = enclosing_run(_resolved(src))
        if out == src or out in src.parents or src in out.parents:
            raise OutputError(f"output {path} overlaps the input {src}; choose an output outside the inputs")


def check_outputs_apart(outputs: Sequence[Path]) -> None:
    """Refuse two outputs of one command that are the same path or nested (one would replace the other)."""
    resolved = [_resolved(p) for p in outputs]
    for i, a in enumerate(resolved):
        for j in range(i + 1, len(resolved)):
            b = resolved[j]
            if a == b or a in b.parents or b in a.parents:
                raise OutputError(f"outputs {outputs[i]} and {outputs[j]} overlap; give each output its own path")


def check_writable(path: Path) -> None:
    """Refuse an output whose nearest existing parent is not a folder we may write into."""
    parent = _existing_parent(path)
    if not parent.is_dir():
        raise OutputError(f"cannot write {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path}: no permission to write in {parent}")


def _existing_parent(path: Path) -> Path:
    parent = _resolved(path).parent
    while not parent.exists():
        parent = parent.parent
    return parent


def check_free_space(path: Path, needed_bytes: int) -> None:
    """Refuse, before any work, an output of about ``needed_bytes`` where the file system has less free:
    "no space left on device" at the end of a long run is worse than at its start."""
    parent = _existing_parent(path)
    free = shutil.disk_usage(parent).free
    if free < needed_bytes:
        raise OutputError(f"no space left on device: {parent} has {free / 1e6:.1f} MB free, and {path} needs about "
                          f"{needed_bytes / 1e6:.1f} MB; free some space or write elsewhere")


def check_output(path: Path, overwrite: bool, inputs: Sequence[Path] = (), kind: OutputKind | None = None) -> None:
    """All checks of one output, before any work: overlap with inputs, existence, ownership, permission.

    ``kind`` names the folder kind for the ownership check; ``None`` means a single file, which
    ``overwrite`` may replace (a folder is never replaced by a file or the other way round).
    """
    path = Path(path)
    check_no_overlap(path, inputs)
    if (path.exists() or path.is_symlink()) and not _empty_dir(path):
        if not overwrite:
            raise OutputExistsError(f"output {path} exists; pass --overwrite to replace it")
        if kind is None and path.is_dir():
            raise OutputExistsError(f"output {path} is a folder; --overwrite replaces a file only with a file")
        if kind is not None:
            check_replaceable(path, kind)
    check_writable(path)


def _empty_dir(path: Path) -> bool:
    """An existing empty folder, which an output may take the place of (it holds nothing to lose)."""
    return path.is_dir() and not path.is_symlink() and not any(path.iterdir())


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _as_if_created(path: Path, base_mode: int) -> None:
    """Give a ``tempfile`` path (created 0600/0700) the permissions a plain open/mkdir would give."""
    os.chmod(path, base_mode & ~_umask())


def with_default_mode(path: Path) -> Path:
    """A file that a library wrote privately (safetensors writes 0600) gets the mode of every other
    output file: 0666 less the umask."""
    _as_if_created(Path(path), 0o666)
    return Path(path)


_RENAME_NOREPLACE = 1
_AT_FDCWD = -100


def _renameat2_noreplace(src: Path, dst: Path) -> bool:
    """Linux ``renameat2(RENAME_NOREPLACE)``; False where the kernel or file system lacks it."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        func = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if func(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(src), None, str(dst))


def rename_no_replace(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst``; :class:`FileExistsError` if ``dst`` exists, never replacing it."""
    if _renameat2_noreplace(src, dst):
        return
    if src.is_dir():
        os.rename(src, dst)  # POSIX: fails on a non-empty folder (an empty one holds nothing to lose)
        return
    try:  # a hard link fails if dst exists
        os.link(src, dst)
    except FileExistsError:
        raise
    except OSError:  # file systems without hard links: a small window remains
        if dst.exists():
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(dst)) from None
        os.rename(src, dst)
        return
    os.unlink(src)


def _prefix(final: Path, what: str) -> str:
    """Name prefix of a temporary of ``final``: it says which host and process made it."""
    return f".{final.name}.{what}-{socket.gethostname()}-{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _sweep_stale(final: Path) -> None:
    """Remove temporaries of ``final`` that a vagan process of this host left when it was killed."""
    if not final.parent.is_dir():
        return
    pattern = re.compile(rf"\.{re.escape(final.name)}\.(tmp|old)-{re.escape(socket.gethostname())}-(\d+)-")
    for path in final.parent.iterdir():
        match = pattern.match(path.name)
        if match and int(match.group(2)) != os.getpid() and not _alive(int(match.group(2))):
            log.warning("removing %s, left by an interrupted vagan run (process %s)", path, match.group(2))
            _remove(path)


_command_started: float | None = None


@contextlib.contextmanager
def command_window() -> Iterator[None]:
    """While a command runs (the CLI wraps each in this), an output that appears after it began was
    made by another process working at the same time, which the error then says."""
    global _command_started
    _command_started = time.time()
    try:
        yield
    finally:
        _command_started = None


def _check_not_made_meanwhile(final: Path, overwrite: bool) -> None:
    """An output absent when this command began but present now was written by a concurrent process:
    say so (and keep it), rather than "exists; pass --overwrite"."""
    if overwrite or _command_started is None:
        return
    with contextlib.suppress(OSError):
        if os.lstat(final).st_mtime >= _command_started:
            raise _exists_now(final)


def _exists_now(final: Path) -> OutputExistsError:
    return OutputExistsError(f"output {final} was created by another process while this one ran; its output is kept "
                             "and this one is discarded")


def _publish(tmp: Path, final: Path, replace: bool, kind: OutputKind | None) -> None:
    """Move the finished ``tmp`` to ``final``; with ``replace`` the old one is set aside first, then deleted."""
    if _empty_dir(final):
        with contextlib.suppress(OSError):
            final.rmdir()
    if not replace or not (final.exists() or final.is_symlink()):
        try:
            rename_no_replace(tmp, final)
        except (FileExistsError, IsADirectoryError, NotADirectoryError) as err:
            raise _exists_now(final) from err
        except OSError as err:
            if err.errno != errno.ENOTEMPTY:
                raise
            raise _exists_now(final) from err
        return
    if kind is not None:
        check_replaceable(final, kind)  # again: it may have changed while this run worked
    backup = Path(tempfile.mkdtemp(prefix=_prefix(final, "old"), dir=final.parent)) / final.name
    try:
        os.rename(final, backup)
    except OSError:
        backup.parent.rmdir()
        raise
    try:
        rename_no_replace(tmp, final)
    except OSError:
        with contextlib.suppress(OSError):
            rename_no_replace(backup, final)
        raise _exists_now(final) from None
    shutil.rmtree(backup.parent, ignore_errors=True)


def _within(path: str | bytes | os.PathLike, folder: Path) -> bool:
    path, folder = os.path.abspath(os.fsdecode(path)), os.path.abspath(folder)
    return path == folder or path.startswith(folder + os.sep)


@contextlib.contextmanager
def _naming(final: Path, tmp: Path) -> Iterator[None]:
    """An OS error while ``tmp`` is written names ``final``, the output the user asked for: a disk that fills
    (ENOSPC) or fails (EIO) mid-write raises it without a file name, or naming the hidden temporary (a nested
    writer), and pydicom wraps it in an OSError without errno (with the original as its cause). An error that
    names another file (an input) is left as it is."""
    try:
        yield
    except OSError as err:
        cause = err
        while cause.errno is None and isinstance(cause.__cause__, OSError):
            cause = cause.__cause__
        if cause.errno is None or (cause.filename is not None and not _within(cause.filename, tmp)):
            raise
        raise OSError(cause.errno, os.strerror(cause.errno), str(final)) from err


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def staged_dir(final: Path, replace: bool, kind: OutputKind | None = None) -> Iterator[Path]:
    """Yield a temporary folder next to ``final`` that becomes ``final`` on success; no checks of ``final``.

    For callers that have checked ``final`` (:func:`atomic_dir`) or own the folder around it (checkpoints).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    _sweep_stale(final)
    tmp = Path(tempfile.mkdtemp(prefix=_prefix(final, "tmp"), dir=final.parent))
    _as_if_created(tmp, 0o777)
    try:
        with _naming(final, tmp):
            yield tmp
        if kind is not None:
            write_marker(tmp, kind)
        _publish(tmp, final, replace, kind)
    except BaseException:
        _remove(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(final: Path, kind: OutputKind, overwrite: bool = False, inputs: Sequence[Path] = ()) -> Iterator[Path]:
    """Yield a temporary folder next to ``final``; on success it gets the ``kind`` marker and becomes ``final``."""
    _check_not_made_meanwhile(Path(final), overwrite)
    check_output(final, overwrite, inputs, kind=kind)
    with staged_dir(final, replace=overwrite, kind=kind) as tmp:
        yield tmp


def prepare_growing_dir(final: Path, kind: OutputKind, entries: Sequence[str], *, overwrite: bool,
                        inputs: Sequence[Path] = (), guard: Callable[[Path], contextlib.AbstractContextManager] | None = None
                        ) -> None:
    """Create ``final`` as an empty vagan ``kind`` folder that will grow (a training run, the demo).

    All checks come first: overlap with ``inputs``, existence (replaced only with ``overwrite``
    and :func:`check_replaceable`), permission. ``guard(final)`` (e.g. a lock that proves no
    process works in it) is held while an old folder is set aside; it is deleted after. The new
    folder appears with its marker listing ``entries``; another process creating ``final``
    meanwhile makes this one fail with :class:`OutputExistsError`.
    """
    final = Path(final)
    check_no_overlap(final, inputs)
    if final.exists() and not final.is_dir():
        raise OutputError(f"output {final} is a file; give a folder")
    holds_something = final.is_dir() and any(final.iterdir())
    if holds_something and not overwrite:
        raise OutputExistsError(f"output {final} exists; pass --overwrite to replace it")
    check_writable(final)
    if holds_something:
        check_replaceable(final, kind)
        aside = Path(tempfile.mkdtemp(prefix=_prefix(final, "old"), dir=final.parent))
        try:
            with guard(final) if guard is not None else contextlib.nullcontext():
                os.rename(final, aside / final.name)
        finally:
            shutil.rmtree(aside, ignore_errors=True)
    elif final.is_dir():
        final.rmdir()  # empty: the new folder takes its place
    with staged_dir(final, replace=False) as tmp:
        write_marker(tmp, kind, entries)


@contextlib.contextmanager
def atomic_file(final: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary file path next to ``final``; on success it is renamed to ``final``."""
    final = Path(final)
    _check_not_made_meanwhile(final, overwrite)
    check_output(final, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    _sweep_stale(final)
    fd, name = tempfile.mkstemp(prefix=_prefix(final, "tmp"), dir=final.parent, suffix=final.suffix)
    os.close(fd)
    tmp = Path(name)
    _as_if_created(tmp, 0o666)
    try:
        with _naming(final, tmp):
            yield tmp
        if overwrite:
            os.replace(tmp, final)
        else:
            try:
                rename_no_replace(tmp, final)
            except (FileExistsError, IsADirectoryError) as err:
                raise _exists_now(final) from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
