"""The sync lock as `vault status` and `vault doctor` read it: without ever taking it."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

from vault.lock import LOCK_NAME, SyncLock, lock_state

PROBE_LOOP = """
import sys
from pathlib import Path
from vault.lock import lock_state
state = Path(sys.argv[1])
print("ready", flush=True)
held = sum(lock_state(state).held for _ in range(int(sys.argv[2])))
print(held, flush=True)
"""


def test_reading_the_lock_never_takes_it(tmp_path: Path) -> None:
    """QA: status and doctor took the lock for a moment to see whether it was free, and a sync
    starting in that moment exited busy (13 of 60 beside a loop of such looks). A process
    looking 3,000 times while this one takes the lock without waiting, over and over: this one
    always gets it."""
    with SyncLock(tmp_path):
        pass  # (the lock file is made once and never deleted)
    looker = subprocess.Popen([sys.executable, "-c", PROBE_LOOP, str(tmp_path), "3000"],
                              stdout=subprocess.PIPE, text=True)
    assert looker.stdout is not None
    assert looker.stdout.readline().strip() == "ready"
    busy = tries = 0
    fd = os.open(tmp_path / LOCK_NAME, os.O_RDWR)
    try:
        while looker.poll() is None:
            tries += 1
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                busy += 1
                continue
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
    out, _ = looker.communicate(timeout=120)
    assert tries > 0 and busy == 0, (busy, tries)
    assert looker.returncode == 0 and out.strip().isdigit()  # (held: when this one had it)


def test_a_held_lock_is_seen_held_and_a_free_one_free(tmp_path: Path) -> None:
    """Held by another process (a real sync's flock): held; once it is let go: free."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom pathlib import Path\n"
         "from vault.lock import SyncLock\n"
         "with SyncLock(Path(sys.argv[1])):\n    print('held', flush=True)\n"
         "    sys.stdin.readline()\n", str(tmp_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdin is not None
    assert holder.stdout.readline().strip() == "held"
    state = lock_state(tmp_path)
    assert state.held and state.pid == holder.pid and state.command == "sync"
    holder.stdin.write("\n")
    holder.stdin.flush()
    assert holder.wait(timeout=60) == 0
    assert not lock_state(tmp_path).held
    assert not lock_state(tmp_path / "nowhere").held
