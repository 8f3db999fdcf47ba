"""Rebuild databases from their dumps in a helper process, beside the rest of a restore.

A restore writes thousands of small files; rebuilding a large database from its dump
(inflate, replay, integrity check) is its longest single job, and on a thread of the same
process it fights the file writes for the GIL (it took twice as long there, and slowed the
writes). In a process of its own it runs on the other core, the way `git archive` feeds `tar`
(restore.py starts it: `python -m vault.dbbuild`).

Protocol: VAULT_DIR is the only argument. Each line on stdin is a JSON object {"blob": BLOB_ID,
"folder": FOLDER}: unless the restore has claimed FOLDER for itself (claim()), build FOLDER/db
from the dump in that blob, check it, and write FOLDER/result, one JSON object: {"redacted":
bool, "stand_ins": [NAME, ...]} when the database was built and checked (stand_ins: the
application's collations it was built with stand-ins for, see sqlite_dump.StandIns), or
{"error": message, "hint": hint, "kind": "repo" | "dump"} when it could not be. A request that
is not a blob id and an absolute .vault-restore-* folder is ignored (the restore then builds
that one itself). Nothing goes to stdout.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

from vault.sources import DUMP_HEADER

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable

    from vault.objects import Blob


def claim(folder: Path) -> bool:
    """Take the job of building folder/db; False when the other side already took it."""
    try:
        (folder / "claim").mkdir()
    except OSError:
        return False
    return True


def build(vault_dir: Path, oid: str, folder: Path) -> dict[str, object]:
    """Build folder/db from blob oid; what goes into folder/result."""
    from vault.errors import RepoError, VaultError
    from vault.objects import BlobReader
    from vault.repo import VaultRepo
    from vault.sqlite_dump import load_dump

    try:
        with BlobReader(VaultRepo(vault_dir, "")) as reader:
            blob = reader.get(oid)
        stand_ins = load_dump(blob.view(), folder / "db", durable=False)  # tens of MB: no
        # copies; the restore flushes the whole batch
    except VaultError as exc:
        return {"error": exc.message, "hint": exc.hint,
                "kind": "repo" if isinstance(exc, RepoError) else "dump"}
    return {"redacted": is_redacted_blob(blob), "stand_ins": list(stand_ins)}


_MARK = "[REDACTED:"
# How a marker can appear in stored bytes: as text; in UTF-16 text (which holds NULs); as hex in
# a dump's BLOB or CAST cell. The cheap test; secrets.is_redacted says for sure.
_TEXT_NEEDLE = _MARK.encode("ascii")
_UTF16_NEEDLES = (_MARK.encode("utf-16-le"), _MARK.encode("utf-16-be"))
_HEX_NEEDLES = tuple(n.hex().encode("ascii") for n in (_TEXT_NEEDLE, *_UTF16_NEEDLES))


def might_hold_markers(contains: Callable[[bytes], bool], is_dump: bool) -> bool:
    """Whether content may carry [REDACTED:...] markers (contains: a substring test on it)."""
    return contains(_TEXT_NEEDLE) or (contains(b"\0") and any(map(contains, _UTF16_NEEDLES))) \
        or (is_dump and any(map(contains, _HEX_NEEDLES)))


def is_redacted_blob(blob: Blob) -> bool:
    """Whether a restored file's content carries the sync's [REDACTED:...] markers."""
    if not might_hold_markers(blob.contains, blob.head(len(DUMP_HEADER)) == DUMP_HEADER):
        return False  # the usual case, without the full scan (or importing the scanner)
    from vault.secrets import is_redacted

    return is_redacted(blob.data())


def _request(line: bytes) -> tuple[str, Path] | None:
    """The blob id and folder of one request; None unless both are what a restore sends."""
    try:
        request = json.loads(line)
        oid, folder = request["blob"], request["folder"]
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(oid, str) or re.fullmatch(r"[0-9a-f]{40}", oid) is None:
        return None
    if not isinstance(folder, str) or not os.path.isabs(folder) or \
            not os.path.basename(folder).startswith(".vault-restore-"):
        return None
    return oid, Path(folder)


def main(argv: list[str]) -> int:
    """Serve build requests from stdin until it closes."""
    from vault.fsutil import atomic_write

    vault_dir = Path(argv[0])
    for line in sys.stdin.buffer:
        job = _request(line)
        if job is None or not claim(job[1]):
            continue  # the restore builds this one itself
        oid, folder = job
        result = build(vault_dir, oid, folder)
        atomic_write(folder / "result", json.dumps(result).encode(), durable=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
