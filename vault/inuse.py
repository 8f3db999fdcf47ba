"""Is a file open in another process? (Linux: /proc/<pid>/fd, as fuser and lsof read it.)"""

from __future__ import annotations

import os
from pathlib import Path


def open_by(paths: list[Path]) -> list[int]:
    """Pids of other processes holding any of paths open; [] where /proc cannot tell."""
    wanted: set[tuple[int, int]] = set()
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue
        wanted.add((st.st_dev, st.st_ino))
    if not wanted or not os.path.isdir("/proc/self/fd"):
        return []
    me = os.getpid()
    holders: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            fds = os.scandir(f"/proc/{entry.name}/fd")
        except OSError:
            continue  # gone, or not ours to look at
        with fds:
            for fd in fds:
                try:
                    st = os.stat(fd.path)
                except OSError:
                    continue
                if (st.st_dev, st.st_ino) in wanted:
                    holders.append(int(entry.name))
                    break
    return sorted(holders)
