"""The node's on-disk spool: every received instance is on disk (written, fsync'ed, renamed, folder
fsync'ed) before its C-STORE is answered with success.

Layout under the spool folder::

    queue.sqlite                 the persistent job queue (vagan.node.queue)
    status.json                  the queue as JSON, rewritten atomically on every change
    .lock                        held by the running node (one node per spool)
    jobs/000001/received/<SOPInstanceUID>.dcm
    jobs/000001/derived/IM000001.dcm ...   the derived series, published atomically as one folder

Space is accounted for before anything is written: an instance that would take the spool past its
size limit, or its disk below the free-space floor, is refused (the caller answers 0xA700, Out of
Resources); nothing old is ever deleted to make room.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import threading
from pathlib import Path

from vagan.errors import ConfigError
from vagan.node.config import StorageLimits

UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
GB = 1e9
MB = 1e6


def valid_uid(value: object) -> bool:
    """A DICOM UID: digits and dots, at most 64 characters (also safe as a file name)."""
    text = str(value or "")
    return len(text) <= 64 and bool(UID.match(text))


class SpoolFull(Exception):
    """The spool may not take more data (a limit, or the disk itself is full)."""


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes) -> None:
    """``data`` to ``path`` via a hidden temporary in the same folder: written, fsync'ed, renamed over
    ``path`` (a resent instance replaces its earlier copy), then the folder fsync'ed. A failure leaves
    no temporary and no partial ``path``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


class Spool:
    """The spool folder: job folders, the space accounting and the lock of the node that owns it."""

    def __init__(self, root: Path | str, limits: StorageLimits) -> None:
        self.root = Path(root)
        self.limits = limits
        self._lock_fd: int | None = None
        self._used = 0
        self._mutex = threading.Lock()

    # -- ownership ---------------------------------------------------------------------------------
    def acquire(self) -> None:
        """Create the spool and take its lock: a second node on the same spool is one ConfigError."""
        try:
            (self.root / "jobs").mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"spool: cannot create {self.root} ({err.strerror or err})") from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise ConfigError(f"spool: no permission to write in {self.root}")
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise ConfigError(f"spool: {self.root} is in use by another vagan serve (pid {holder}); one node "
                                  "per spool") from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd
        self._used = self._measure()

    def release(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def holder(self) -> int | None:
        """The pid of the node holding the lock, or ``None`` when no node runs on this spool."""
        path = self.root / ".lock"
        if not path.is_file():
            return None
        fd = os.open(path, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                text = os.pread(fd, 64, 0).decode(errors="replace").strip()
                return int(text) if text.isdigit() else -1
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    # -- folders -----------------------------------------------------------------------------------
    def job_dir(self, job_id: int) -> Path:
        return self.root / "jobs" / f"{job_id:06d}"

    def received_dir(self, job_id: int) -> Path:
        return self.job_dir(job_id) / "received"

    def derived_dir(self, job_id: int) -> Path:
        return self.job_dir(job_id) / "derived"

    def received_files(self, job_id: int) -> list[Path]:
        folder = self.received_dir(job_id)
        return sorted(p for p in folder.glob("*.dcm") if not p.name.startswith(".")) if folder.is_dir() else []

    def derived_files(self, job_id: int) -> list[Path]:
        folder = self.derived_dir(job_id)
        return sorted(p for p in folder.glob("*.dcm") if not p.name.startswith(".")) if folder.is_dir() else []

    # -- space -------------------------------------------------------------------------------------
    def _measure(self) -> int:
        total = 0
        for path in (self.root / "jobs").rglob("*"):
            with contextlib.suppress(OSError):
                if path.is_file() and not path.is_symlink():
                    total += path.stat().st_size
        return total

    @property
    def used_bytes(self) -> int:
        return self._used

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free

    def room_for_association(self) -> str | None:
        """Why a new association must be refused now (``None``: it may come)."""
        headroom = self.limits.association_headroom_mb * MB
        limit = self.limits.max_spool_gb * GB
        if self._used + headroom > limit:
            return (f"spool holds {self._used / GB:.2f} GB, and with {headroom / MB:.0f} MB headroom for a new series "
                    f"would pass its limit of {limit / GB:.2f} GB")
        free = self.free_bytes()
        floor = self.limits.min_free_gb * GB + headroom
        if free < floor:
            return f"only {free / GB:.2f} GB free on the spool's disk, below {floor / GB:.2f} GB"
        return None

    def reserve(self, nbytes: int) -> None:
        """Account for an instance of ``nbytes`` (and its derived copy) or raise :class:`SpoolFull`."""
        if nbytes > self.limits.max_instance_mb * MB:
            raise SpoolFull(f"instance of {nbytes / MB:.1f} MB exceeds limits.max_instance_mb")
        need = 2 * nbytes  # the instance and, later, its derived slice
        with self._mutex:
            if self._used + need > self.limits.max_spool_gb * GB:
                raise SpoolFull(f"spool limit of {self.limits.max_spool_gb:g} GB reached")
            if self.free_bytes() - need < self.limits.min_free_gb * GB:
                raise SpoolFull(f"disk below limits.min_free_gb ({self.limits.min_free_gb:g} GB)")
            self._used += need

    def unreserve(self, nbytes: int) -> None:
        with self._mutex:
            self._used = max(0, self._used - 2 * nbytes)

    def store(self, job_id: int, sop_instance_uid: str, data: bytes) -> tuple[Path, bool]:
        """Write one received instance durably; returns its path and whether it replaced an earlier copy.
        Raises :class:`SpoolFull` (limits) or :class:`OSError` (a full or failing disk)."""
        folder = self.received_dir(job_id)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{sop_instance_uid}.dcm"
        try:
            earlier = path.stat().st_size
        except FileNotFoundError:
            earlier = None
        self.reserve(len(data))
        try:
            write_durably(path, data)
        except BaseException:
            self.unreserve(len(data))
            raise
        if earlier is not None:  # a resent instance replaced its earlier copy
            self.unreserve(earlier)
        return path, earlier is not None

    def remove_job(self, job_id: int) -> None:
        """Delete a job's files (only once every destination holds its derived series)."""
        folder = self.job_dir(job_id)
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0
        shutil.rmtree(folder, ignore_errors=True)
        with self._mutex:
            self._used = max(0, self._used - size)
