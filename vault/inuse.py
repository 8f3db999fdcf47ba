"""Is a file open in another process? (Linux: /proc/<pid>/fd, as fuser and lsof read it.)"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path


def open_paths(paths: list[Path]) -> set[Path]:
    """Those of paths that another process holds open (one look through /proc for all)."""
    by_id: dict[tuple[int, int], list[Path]] = {}
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue
        by_id.setdefault((st.st_dev, st.st_ino), []).append(path)
    return {path for _pid, key in _holders(set(by_id)) for path in by_id[key]}


def open_by(paths: list[Path]) -> list[int]:
    """Pids of other processes holding any of paths open; [] where /proc cannot tell."""
    wanted: set[tuple[int, int]] = set()
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue
        wanted.add((st.st_dev, st.st_ino))
    return sorted({pid for pid, _key in _holders(wanted)})


def _holders(wanted: set[tuple[int, int]]) -> Iterator[tuple[int, tuple[int, int]]]:
    """(pid, (device, inode)) for each file of wanted that another process holds open."""
    if not wanted or not os.path.isdir("/proc/self/fd"):
        return
    me = os.getpid()
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
                    yield int(entry.name), (st.st_dev, st.st_ino)
