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
from vault.fsutil import pid_alive

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

    def who(self) -> str:
        """Who holds it, in words: "pid 12 on host, sync", or for a holder no vault command
        recorded (known from the kernel's lock table only) "pid 12, a process no vault
        command recorded"; "another process" when not even its pid is known."""
        if not self.pid:
            return "another process"
        if self.command is None:
            return f"pid {self.pid}, a process no vault command recorded"
        where = f" on {self.host}" if self.host else ""
        return f"pid {self.pid}{where}, {self.command}"


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
            who = f" ({state.who()})" if state.pid else ""
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
    """Report the lock: held or free; who holds it comes from the info file the holder wrote,
    when that holder is the one the kernel lists (else its pid from /proc/locks, and no more:
    the info file is a sync's that ended, and another program holds the lock)."""
    info: dict[str, object] = {}
    try:
        info = json.loads((state_dir / INFO_NAME).read_text())
    except (OSError, ValueError):
        pass
    path = state_dir / LOCK_NAME
    if probe and not path.exists():
        return LockState(held=False)
    holders = _holders(path)
    held = True
    if probe:
        held = bool(holders) if holders is not None else _try_it(path)
    if not held:
        return LockState(held=False)
    pid = info.get("pid")
    pid = pid if isinstance(pid, int) else None
    if holders and pid not in holders:
        return LockState(held=True, pid=next(iter(holders)) if len(holders) == 1 else None)
    if holders is None and pid is not None and not pid_alive(pid):
        return LockState(held=True)  # (its writer is gone: the holder is unknown)
    since = info.get("since")
    return LockState(held=True, pid=pid,
                     host=str(info.get("host")) if info.get("host") else None,
                     since=float(since) if isinstance(since, (int, float)) else None,
                     command=str(info.get("command")) if info.get("command") else None)


def _holders(path: Path) -> set[int] | None:
    """The pids the kernel lists as holding a flock on path (/proc/locks: Linux), looked at
    without taking the lock: a sync starting in that moment would find it taken and exit busy
    (QA: 13 of 60 syncs beside a status loop). None where /proc/locks cannot tell."""
    try:
        st = os.stat(path)
        with open("/proc/locks", encoding="ascii", errors="replace") as handle:
            table = handle.read()
    except OSError:
        return None
    # "1: FLOCK  ADVISORY  WRITE 31435 fe:00:2146529 0 EOF" (waiters' lines have "->")
    device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    return {int(fields[4]) for fields in map(str.split, table.splitlines())
            if len(fields) > 5 and fields[1] == "FLOCK" and fields[5] == device
            and fields[4].isdigit()}


def _try_it(path: Path) -> bool:
    """Whether the lock is held, by taking it for a moment (where /proc/locks is not there)."""
    lock = filelock.UnixFileLock(str(path), timeout=0, fallback_to_soft=False)
    try:
        lock.acquire(timeout=0)
        lock.release()
        return False
    except filelock.Timeout:  # before OSError: Timeout is a TimeoutError
        return True
    except OSError:
        # Cannot even open the lock file (a read-only vault): then no sync can hold it.
        return False
