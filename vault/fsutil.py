"""Atomic file writes: temp file in the same folder, fsync, rename, fsync the folder."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

_libc: ctypes.CDLL | None = None
_UMASK: list[int] = []


def _umask() -> int:
    """The process umask (read once: reading it means setting it)."""
    if not _UMASK:
        current = os.umask(0o022)
        os.umask(current)
        _UMASK.append(current)
    return _UMASK[0]


def atomic_write(path: Path, data: bytes, *, mode: int | None = None,
                 durable: bool = True) -> None:
    """Replace path with data so a crash leaves either the old or the new file, never a mix.

    durable=False skips the per-file fsyncs, for batches that end with one sync_filesystem().
    """
    directory = path.parent
    # One temp name per process and target: O_EXCL fails loudly if a stale one is in the way
    # (left by a crash), and then it is removed and tried once more.
    tmp = directory / f".{path.name}.{os.getpid()}.vault-tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(tmp, flags, 0o600 if mode is None else mode)
    except FileExistsError:
        os.unlink(tmp)
        fd = os.open(tmp, flags, 0o600 if mode is None else mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        if mode is not None and mode & _umask():
            os.chmod(tmp, mode)  # the umask took bits away
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if durable:
        fsync_dir(directory)


def fsync_dir(directory: Path) -> None:
    """Make a rename in directory durable."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sync_filesystem(path: Path) -> None:
    """Flush the filesystem holding path (syncfs: one call for a whole batch of writes)."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)  # the running process: libc is in it
        fd = os.open(path, os.O_RDONLY)
        try:
            if _libc.syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    except (OSError, AttributeError):
        pass
    os.sync()
