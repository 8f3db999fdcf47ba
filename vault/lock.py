"""One sync at a time: an OS file lock (flock) that the kernel drops when its process dies."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import filelock

from vault.errors import BusyError, RepoError

LOCK_NAME = "sync.lock"
INFO_NAME = "sync.lock.json"


@dataclass(frozen=True)
class LockState:
    """Whether the sync lock is held, and by whom (as the holder recorded it)."""

    held: bool
    pid: int | None = None
    host: str | None = None
    since: float | None = None
    command: str | None = None


class SyncLock:
    """Hold the vault's sync lock for a with-block; BusyError if another process has it."""

    def __init__(self, state_dir: Path, command: str = "sync", wait: float = 0.0) -> None:
        self.state_dir = state_dir
        self.command = command
        self.wait = wait
        # Never delete the lock file: unlinking a flock'd file lets two processes lock two inodes.
        self._lock = filelock.UnixFileLock(str(state_dir / LOCK_NAME), timeout=wait,
                                            fallback_to_soft=False)

    def __enter__(self) -> SyncLock:
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._lock.acquire(timeout=self.wait)
        except filelock.Timeout:  # (a TimeoutError, so an OSError: it must come first)
            state = lock_state(self.state_dir, probe=False)
            who = f" (pid {state.pid} on {state.host}, {state.command})" if state.pid else ""
            raise BusyError(f"another vault process holds the lock{who}",
                            hint="it ends by itself; a lock never outlives its process") from None
        except OSError as exc:  # read-only or full filesystem, permissions
            raise RepoError(f"cannot take the sync lock in {self.state_dir}: "
                            f"{exc.strerror or exc}",
                            hint="is the vault's disk read-only or full?") from None
        info = {"pid": os.getpid(), "host": os.uname().nodename, "since": time.time(),
                "command": self.command}
        try:
            (self.state_dir / INFO_NAME).write_text(json.dumps(info))
        except OSError:
            pass  # the info file is a courtesy for `vault status`; the lock is what matters
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._lock.release()


def lock_state(state_dir: Path, *, probe: bool = True) -> LockState:
    """Report the lock: held or free; who holds it comes from the info file the holder wrote."""
    info: dict[str, object] = {}
    try:
        info = json.loads((state_dir / INFO_NAME).read_text())
    except (OSError, ValueError):
        pass
    held = True
    if probe:
        if not (state_dir / LOCK_NAME).exists():
            return LockState(held=False)
        lock = filelock.UnixFileLock(str(state_dir / LOCK_NAME), timeout=0, fallback_to_soft=False)
        try:
            lock.acquire(timeout=0)
            lock.release()
            held = False
        except filelock.Timeout:  # before OSError: Timeout is a TimeoutError
            held = True
        except OSError:
            # Cannot even open the lock file (a read-only vault): then no sync can hold it.
            held = False
    if not held:
        return LockState(held=False)
    pid = info.get("pid")
    since = info.get("since")
    return LockState(held=True, pid=pid if isinstance(pid, int) else None,
                     host=str(info.get("host")) if info.get("host") else None,
                     since=float(since) if isinstance(since, (int, float)) else None,
                     command=str(info.get("command")) if info.get("command") else None)
