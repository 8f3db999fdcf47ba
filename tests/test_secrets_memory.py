"""The secret scan's memory on large BLOBs: a small multiple of the dump, whatever the bytes.

A zero-filled BLOB once took ~45 bytes of RAM per byte (a Python int for each NUL), and a
BLOB made of short printable runs ~35 (a tuple per run): a 500 MB database got sync killed.
Each scan runs in its own process, whose peak RSS (ru_maxrss) is measured. Real SQLite files,
dumped as sync dumps them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import apsw
import pytest

from test_secrets_fixes import GH_TOKEN
from vault.sqlite_dump import snapshot_sqlite

MB = 1_000_000
BLOB = 25 * MB  # its dump, in hex, is twice as big

# Run in a child: read the dump, load the rules, then scan; print the peak RSS before and
# after the scan (ru_maxrss is in KiB on Linux) and what was found.
_CHILD = """
import json, resource, sys
from pathlib import Path
from vault.secrets import _rules, scan_bytes
data = Path(sys.argv[1]).read_bytes()
_rules()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
found = scan_bytes(data, path="memory.db")
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"before": before, "after": after,
                  "found": [[f.kind, f.start, f.end, f.encoding] for f in found]}))
"""


def _blob_db(path: Path, blob: bytes) -> None:
    db = apsw.Connection(str(path))
    db.execute("CREATE TABLE files(id INTEGER PRIMARY KEY, name TEXT, data BLOB)")
    db.execute("INSERT INTO files(name, data) VALUES('big', ?)", (blob,))
    db.close()


def _scan_in_child(dump: Path) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(dump)], capture_output=True,
                         check=True, timeout=600)
    result: dict[str, object] = json.loads(out.stdout)
    return result


@pytest.mark.parametrize("kind", ["zeros", "short-runs"])
def test_scanning_a_large_blob_takes_memory_a_small_multiple_of_its_dump(
        tmp_path: Path, kind: str) -> None:
    token = GH_TOKEN.encode()
    wide = GH_TOKEN.encode("utf-16-le")
    space = " ".encode("utf-16-le")
    db = tmp_path / "memory.db"
    if kind == "zeros":
        # zeros (as zeroblob() writes) with a token in them as written and in UTF-16: the
        # scan with the NULs taken out must find each where it is, past many NULs.
        third = BLOB // 3
        _blob_db(db, bytes(third) + b" " + token + b" " + bytes(third)
                 + space + wide + space + bytes(third))
    else:
        # printable runs of 8 (the shortest scanned) split by a control byte, then a token
        _blob_db(db, b"abcdefgh\x01" * (BLOB // 9) + token + b"\x01")
    dump = tmp_path / "memory.dump"
    data = snapshot_sqlite(db)
    dump.write_bytes(data)

    result = _scan_in_child(dump)

    grown = int(str(result["after"])) - int(str(result["before"]))
    # ~0.6x (zeros) and ~1.2x (short runs) the dump here; it was ~23x and ~13x
    bound = 4 * len(data) + 100 * MB
    assert grown < bound, (f"the scan of a {len(data) // MB} MB dump took {grown // MB} MB "
                           f"more RAM (bound {bound // MB} MB)")
    found = [tuple(f) for f in result["found"]]  # type: ignore[attr-defined]
    where = [(data.index(token.hex().encode()), "hex:ascii")]
    if kind == "zeros":
        where.append((data.index(wide.hex().encode()), "hex:utf-16-le"))
    assert [(start, enc) for _, start, _, enc in found] == where
    assert all(k == found[0][0] for k, *_ in found)
