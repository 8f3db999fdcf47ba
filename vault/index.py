"""The recall index: any commit of the vault as a SQLite vector store with full-text search.

Everything in it is derived from the vault and content-addressed, so it can be thrown away and
rebuilt at any time (`vault index --rebuild`):

- a file's chunk list is keyed by its git blob id (`blobs`, `chunks`): a file that did not
  change is never read or cut again;
- a chunk's text is stored once (`texts`, with an FTS5 index), and its vector is keyed by the
  hash of the embedded text and the model (`vectors`, float32 BLOBs): indexing another commit
  embeds only texts never seen before, and a vault indexed with one model is never searched
  with vectors of another;
- an indexed commit (`snapshots`) lists its file versions (`versions`: path, blob, and when
  that path got that content; per chunk, when its text last changed).

The schema is created and upgraded by numbered migrations (PRAGMA user_version).
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vault.chunk import (CHUNKER_VERSION, Chunk, LineUnits, chunk_file, chunk_file_report,
                         chunk_lines, file_kind, line_units)
from vault.errors import VaultError, one_line_reason

if TYPE_CHECKING:
    import apsw

    from vault.config import Config
    from vault.embed import Embedder
    from vault.repo import CommitInfo, VaultRepo

# (phase, done, total): phases are "files" (cutting changed files) and "embed" (new texts).
ProgressFn = Callable[[str, int, int], None]

MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema
    """
    CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE models(id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, dim INTEGER NOT NULL);
    CREATE TABLE texts(
        id INTEGER PRIMARY KEY,
        hash BLOB NOT NULL UNIQUE,      -- of context, body and keys
        ehash BLOB NOT NULL,            -- of the embedded string: the vector's key
        context TEXT NOT NULL,
        body TEXT NOT NULL,
        keys TEXT NOT NULL
    );
    CREATE INDEX texts_ehash ON texts(ehash);
    CREATE VIRTUAL TABLE texts_fts USING fts5(
        context, body, keys, content='texts', content_rowid='id',
        tokenize='porter unicode61 remove_diacritics 2'
    );
    CREATE TRIGGER texts_ai AFTER INSERT ON texts BEGIN
        INSERT INTO texts_fts(rowid, context, body, keys)
            VALUES (new.id, new.context, new.body, new.keys);
    END;
    CREATE TRIGGER texts_ad AFTER DELETE ON texts BEGIN
        INSERT INTO texts_fts(texts_fts, rowid, context, body, keys)
            VALUES ('delete', old.id, old.context, old.body, old.keys);
    END;
    CREATE TABLE vectors(
        model_id INTEGER NOT NULL REFERENCES models(id),
        ehash BLOB NOT NULL,
        vec BLOB NOT NULL,              -- float32, little-endian, L2-normalised
        PRIMARY KEY(model_id, ehash)
    ) WITHOUT ROWID;
    CREATE TABLE blobs(
        blob_id TEXT PRIMARY KEY,
        chunker INTEGER NOT NULL,
        kind TEXT NOT NULL,
        chunks INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE chunks(
        blob_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        locator TEXT NOT NULL,
        text_id INTEGER NOT NULL REFERENCES texts(id),
        PRIMARY KEY(blob_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE versions(
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL,
        blob_id TEXT NOT NULL,
        since INTEGER NOT NULL,         -- unix time of the commit where path got this blob
        times BLOB,                     -- per chunk: when its text last changed (int64), or NULL
        UNIQUE(path, blob_id, since)
    );
    CREATE TABLE snapshots(
        commit_id TEXT PRIMARY KEY,
        time INTEGER NOT NULL,
        chunker INTEGER NOT NULL,
        versions BLOB NOT NULL          -- zlib of the sorted version ids, delta-coded int64
    ) WITHOUT ROWID;
    CREATE TABLE indexed(
        commit_id TEXT NOT NULL,
        model_id INTEGER NOT NULL,
        at INTEGER NOT NULL,
        PRIMARY KEY(commit_id, model_id)
    ) WITHOUT ROWID;
    """,
    # 2: per-chunk change times are traced through the branch's history (before, they could
    # take the time another row of the file changed): forget the versions made the old way.
    # Chunks, texts and vectors stay, so re-indexing a commit embeds nothing.
    """
    DELETE FROM indexed;
    DELETE FROM snapshots;
    DELETE FROM versions;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
APPLICATION_ID = 0x7661756C  # "vaul"


class IndexStoreError(VaultError):
    """The index could not be read or written."""


REBUILD_HINT = "`vault index --rebuild` makes it again from the vault"
# `vault index` refuses a newer index as recall does; --rebuild never reads the old file.
NEWER_HINT = "upgrade vault, or run `vault index --rebuild` to make it again from the vault"


def _blank(conn: apsw.Connection, version: int) -> bool:
    """True for a database with nothing in it yet (a new or empty file), which may become an
    index. Every index vault made carries its application_id: a file without it that holds
    anything, or with another program's, is not vault's to write."""
    if version != 0:
        return False
    row = conn.execute("PRAGMA application_id").fetchone()
    if row is None or int(row[0]) != 0:
        return False
    return conn.execute("SELECT 1 FROM sqlite_schema LIMIT 1").fetchone() is None


def newer(path: Path, version: int) -> IndexStoreError:
    """The error for an index made by a newer vault (a schema this one does not know)."""
    return IndexStoreError(f"the index {path} was made by a newer vault (schema {version}, "
                           f"this vault knows {SCHEMA_VERSION})", hint=NEWER_HINT)


FOREIGN_HINT = ("vault never writes into a file it did not make: set [index] path to a new "
                "file (or remove this one if it is yours to lose)")


def not_ours(path: Path, what: str) -> IndexStoreError:
    """The error for a file at the index path that vault did not make (what: what it is)."""
    return IndexStoreError(f"{path} is not a vault index ({what})", hint=FOREIGN_HINT)


def a_folder(path: Path) -> IndexStoreError:
    """The error for a folder where the index file should be (neither open nor --rebuild can
    put a file there)."""
    return IndexStoreError(f"the index {path} is a folder, not a file",
                           hint="move the folder away, or set [index] path to a file")


_SPECIAL_KINDS = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                  (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))


def refuse_special_file(path: Path) -> None:
    """Raise when something other than a file or a folder is at the index path.

    Checked before SQLite opens the path: opening a FIFO blocks for good (in the kernel, deaf
    to SIGTERM), and --rebuild would put a file in place of a device (/dev/null).
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # (nothing there, or nothing to stat: SQLite's open reports it)
    for test, what in _SPECIAL_KINDS:
        if test(mode):
            raise IndexStoreError(f"{path} is not a vault index ({what}, not a file)",
                                  hint="set [index] path to a new file")


def damaged(path: Path, reason: object) -> IndexStoreError:
    """The error for an index file SQLite finds malformed (any page, found at any time)."""
    return IndexStoreError(f"the index {path} is damaged: {reason}", hint=REBUILD_HINT)


@contextmanager
def reporting_damage(path: Path) -> Iterator[None]:
    """Turn SQLite's "malformed" or "not a database", wherever it surfaces, into `damaged`.

    SQLite notices a damaged page only when a statement reads it, so a CorruptError can come
    from any query of a recall or an index run, long after the file was opened.
    """
    import apsw

    try:
        yield
    except (apsw.CorruptError, apsw.NotADBError) as exc:
        raise damaged(path, exc) from None


class IndexOutdated(IndexStoreError):
    """The index was made by an older vault: opening it for writing upgrades it."""


class IndexUnavailable(VaultError):
    """The index cannot be brought up to date here (no fast encoder exported yet)."""


@dataclass(frozen=True)
class IndexResult:
    """What an indexing run did."""

    commits: tuple[str, ...]  # the commits asked for, now indexed (newest last)
    new_commits: int  # of those, how many were not indexed before
    files: int  # files in the last commit
    chunks: int  # chunks in the last commit
    blobs_chunked: int  # files (blobs) read and cut this time
    embedded: int  # texts embedded this time
    reused: int  # texts of these commits whose vectors were already there
    model: str
    encoder: str  # sentence-transformers | onnx | hash
    seconds: float
    path: str
    rebuilt: bool = False
    export_cosine: float | None = None  # set when the query encoder was exported now
    # "<path>: <what of it could not be read>" for each file cut this time that was not read
    # whole (a SQLite dump that does not replay whole): its other rows are indexed
    warnings: tuple[str, ...] = ()


# --- the store ---------------------------------------------------------------------------


def _pack_ids(ids: Sequence[int]) -> bytes:
    import numpy as np

    arr = np.asarray(sorted(ids), dtype=np.int64)
    if len(arr):
        arr = np.concatenate([arr[:1], np.diff(arr)])
    return zlib.compress(arr.astype("<i8").tobytes(), 6)


def _unpack_ids(data: bytes) -> Any:
    import numpy as np

    arr = np.frombuffer(zlib.decompress(data), dtype="<i8")
    return np.cumsum(arr)


def text_hashes(chunk: Chunk) -> tuple[bytes, bytes]:
    """(row hash, vector key hash) of a chunk: the vector depends on the embedded string only."""
    row = hashlib.sha256("\0".join((chunk.context, chunk.text, chunk.keys)).encode()).digest()
    return row, hashlib.sha256(chunk.embed_text.encode()).digest()


class IndexStore:
    """One index database (apsw), migrated to the current schema when opened for writing."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        import apsw

        self.path = path
        self.readonly = readonly
        flags = apsw.SQLITE_OPEN_READONLY if readonly else (
            apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE)
        if not readonly:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                reason = _folder_problem(path.parent) or one_line_reason(exc)
                raise IndexStoreError(f"the index {path}: cannot create the folder "
                                      f"{path.parent}: {reason}") from None
        if path.is_dir():
            raise a_folder(path)  # (SQLite says only "unable to open database file")
        refuse_special_file(path)
        try:
            try:
                version = self._connect(flags)
            except apsw.ReadOnlyError as exc:
                # (extendedresult is set at run time; apsw's stubs do not declare it)
                code = getattr(exc, "extendedresult", None)
                if not readonly or code != apsw.SQLITE_READONLY_ROLLBACK:
                    raise
                # A write killed mid-transaction (SIGKILL, power loss) left a hot journal,
                # which a read-only connection cannot roll back: a read-write one rolls it
                # back on its first read (SQLite's own recovery, which takes the locks that
                # keep other connections safe), and then the file reads as asked.
                self.conn.close()
                from vault.sqlite_dump import file_uri

                fixer = apsw.Connection(file_uri(path), flags=apsw.SQLITE_OPEN_READWRITE
                                        | apsw.SQLITE_OPEN_URI)
                try:
                    fixer.set_busy_timeout(30_000)
                    fixer.execute("PRAGMA user_version").fetchall()
                finally:
                    fixer.close()
                version = self._connect(flags)
            self._refuse_foreign(version)
            if readonly:
                if version > SCHEMA_VERSION:
                    raise newer(path, version)
                if version < SCHEMA_VERSION:
                    raise IndexOutdated(f"index {path} has schema {version}, expected "
                                        f"{SCHEMA_VERSION}", hint="run `vault index`")
            else:
                self._migrate(version)
        except (apsw.CorruptError, apsw.NotADBError) as exc:
            raise damaged(path, exc) from None
        except apsw.Error as exc:
            raise IndexStoreError(f"cannot open the index {path}: {exc}",
                                  hint=REBUILD_HINT) from None

    def _refuse_foreign(self, version: int) -> None:
        """Refuse another program's database: migrating it would add vault's tables to it."""
        if self._pragma("application_id") != APPLICATION_ID and not _blank(self.conn, version):
            raise not_ours(self.path, "a SQLite database of another program")

    def _connect(self, flags: int) -> int:
        """Open the connection; the file's schema version (its first read)."""
        import apsw

        from vault.sqlite_dump import file_uri

        self.conn = apsw.Connection(file_uri(self.path), flags=flags | apsw.SQLITE_OPEN_URI)
        self.conn.set_busy_timeout(30_000)
        self.conn.execute("PRAGMA foreign_keys=OFF")
        return self._pragma("user_version")

    def _pragma(self, name: str) -> int:
        row = self.conn.execute(f"PRAGMA {name}").fetchone()
        return int(row[0]) if row else 0

    def _migrate(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise newer(self.path, version)
        for number in range(version + 1, SCHEMA_VERSION + 1):
            with self.conn:
                for _ in self.conn.execute(MIGRATIONS[number - 1]):
                    pass
                self.conn.execute(f"PRAGMA user_version={number}")
                self.conn.execute(f"PRAGMA application_id={APPLICATION_ID}")

    def check(self) -> None:
        """Raise `damaged` unless SQLite's quick_check passes (every page and b-tree read)."""
        with reporting_damage(self.path):
            rows = self.conn.execute("PRAGMA quick_check(3)").fetchall()
        if rows != [("ok",)]:
            # One line: the first problem SQLite names (its report spans several lines).
            lines = [line.strip() for r in rows for line in str(r[0]).splitlines()]
            first = next((line for line in lines if line and not line.startswith("***")), "")
            raise damaged(self.path, f"database disk image is malformed ({first})"
                          if first else "database disk image is malformed")

    def close(self) -> None:
        """Close the database."""
        self.conn.close()

    def __enter__(self) -> IndexStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # models ----------------------------------------------------------------------------

    def model_id(self, key: str, dim: int | None = None) -> int | None:
        """The id of a model key; created (when dim is given and writable) if new."""
        row = self.conn.execute("SELECT id, dim FROM models WHERE key=?", (key,)).fetchone()
        if row is not None:
            if dim is not None and int(row[1]) != dim:
                raise IndexStoreError(f"model {key} changed its vector size ({row[1]} -> {dim})",
                                  hint="`vault index --rebuild`")
            return int(row[0])
        if dim is None or self.readonly:
            return None
        self.conn.execute("INSERT INTO models(key, dim) VALUES(?, ?)", (key, dim))
        return int(self.conn.last_insert_rowid())

    def is_indexed(self, commit_id: str, model_key: str) -> bool:
        """True when the commit's snapshot and every vector of it for the model are stored."""
        row = self.conn.execute(
            "SELECT 1 FROM indexed i JOIN models m ON m.id = i.model_id "
            "JOIN snapshots s ON s.commit_id = i.commit_id "
            "WHERE i.commit_id=? AND m.key=? AND s.chunker=?",
            (commit_id, model_key, CHUNKER_VERSION)).fetchone()
        return row is not None

    def indexed_commits(self, model_key: str) -> list[tuple[str, int]]:
        """(commit id, commit time) of every commit indexed for the model, newest first."""
        return [(str(c), int(t)) for c, t in self.conn.execute(
            "SELECT s.commit_id, s.time FROM indexed i JOIN models m ON m.id = i.model_id "
            "JOIN snapshots s ON s.commit_id = i.commit_id WHERE m.key=? AND s.chunker=? "
            "ORDER BY s.time DESC", (model_key, CHUNKER_VERSION))]

    def snapshot_versions(self, commit_id: str) -> Any:
        """The version ids of an indexed commit (numpy int64 array), or None."""
        row = self.conn.execute("SELECT versions FROM snapshots WHERE commit_id=? AND chunker=?",
                                (commit_id, CHUNKER_VERSION)).fetchone()
        return None if row is None else _unpack_ids(row[0])

    def stats(self) -> dict[str, int]:
        """Row counts, for `vault index --json` and tests."""
        out: dict[str, int] = {}
        for table in ("texts", "vectors", "blobs", "chunks", "versions", "snapshots"):
            row = self.conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            out[table] = int(row[0]) if row else 0
        return out


# --- building ----------------------------------------------------------------------------


class _Trace:
    """One file of a commit being indexed, traced back through the branch's history."""

    def __init__(self, oid: str) -> None:
        self.oid = oid  # its blob in the commit being indexed
        self.cur = oid  # its blob at the point the walk has reached
        self.since: int | None = None  # when the path got `oid`
        self.reuse: int | None = None  # a stored version that is exactly this one
        self.pending: dict[bytes, list[int]] = {}  # text hash -> positions, time not yet known
        self.counts: dict[bytes, int] = {}  # pending text -> how many chunks of `cur` hold it
        self.units: LineUnits | None = None  # `cur` as lines, when its kind allows
        self.times: dict[int, int] = {}  # position -> when its text last changed

    def settle(self, digests: Iterable[bytes], when: int) -> None:
        """These texts' runs began at `when`."""
        for digest in list(digests):
            for seq in self.pending.pop(digest, []):
                self.times[seq] = when
            self.counts.pop(digest, None)

    def packed_times(self) -> bytes | None:
        """Per chunk, when its text last changed (int64), or None when all at `since`."""
        import numpy as np

        if not self.times or all(t == self.since for t in self.times.values()):
            return None
        values = [self.times.get(seq, self.since or 0) for seq in range(max(self.times) + 1)]
        return np.asarray(values, dtype="<i8").tobytes()


def _line_difference(new: list[str], old: list[str]) -> tuple[list[str], list[str]]:
    """The lines only the newer version has, and those only the older has (as multisets)."""
    from collections import Counter

    new_set, old_set = set(new), set(old)
    if len(new_set) == len(new) and len(old_set) == len(old):
        return list(new_set - old_set), list(old_set - new_set)
    now_c, old_c = Counter(new), Counter(old)  # repeated lines: count them
    return list((now_c - old_c).elements()), list((old_c - now_c).elements())


def _unpack_times(times: bytes | None, count: int) -> Any:
    """A version's stored per-chunk times (numpy int64), or None when all are its `since`."""
    import numpy as np

    if times is None or len(times) != 8 * count:
        return None
    return np.frombuffer(times, dtype="<i8")


class _Builder:
    """Adds commits to a store: snapshots, chunk lists of new blobs, vectors of new texts."""

    def __init__(self, store: IndexStore, repo: VaultRepo, progress: ProgressFn | None) -> None:
        self.store = store
        self.conn = store.conn
        self.repo = repo
        self.progress = progress
        self.blobs_chunked = 0
        self.warnings: list[str] = []  # files cut this time and not read whole
        self.last_files = 0
        self._known_snapshots: set[str] = {
            str(r[0]) for r in self.conn.execute(
                "SELECT commit_id FROM snapshots WHERE chunker=?", (CHUNKER_VERSION,))}

    # snapshots ------------------------------------------------------------------------

    def ensure_snapshot(self, commit: CommitInfo) -> None:
        """Record the commit's file versions (and cut files never cut before)."""
        if commit.id in self._known_snapshots:
            return
        files = self.repo.files(commit.id)
        self.last_files = len(files)
        # A blob's kind depends on its name (.md, .jsonl): any path that holds it will do.
        self._chunk_blobs({oid: path for path, (oid, _mode) in files.items()})
        traces = self._trace(commit, {path: oid for path, (oid, _mode) in files.items()})
        stamp = int(commit.time.timestamp())
        ids: list[int] = []
        with self.conn:
            for path, trace in traces.items():
                if trace.reuse is not None:
                    ids.append(trace.reuse)
                    continue
                ids.append(self._version(path, trace.oid, trace.since or stamp,
                                         trace.packed_times()))
            self.conn.execute(
                "INSERT OR REPLACE INTO snapshots(commit_id, time, chunker, versions) "
                "VALUES(?, ?, ?, ?)", (commit.id, stamp, CHUNKER_VERSION, _pack_ids(ids)))
        self._known_snapshots.add(commit.id)

    def _trace(self, commit: CommitInfo, files: dict[str, str]) -> dict[str, _Trace]:
        """When each file got its content, and when each of its texts last changed there.

        Walks the branch's own history back from the commit, whatever else is indexed: a
        text's time is the commit where its current unbroken run in the file began (a row of
        a database that another row's change rewrote keeps its own time). The walk stops when
        every text's run has ended, or at an indexed commit, whose stored times are exact.
        """
        traces = {path: _Trace(oid) for path, oid in files.items()}
        open_paths = dict(traces)
        for info in self.repo.walk_first_parent(commit.id):
            if not open_paths:
                break
            if info.id != commit.id and info.id in self._known_snapshots:
                stored = self._versions_by_path(info.id)
                for path, trace in open_paths.items():
                    self._finish_from(trace, stored.get(path))
                open_paths.clear()
                break
            stamp = int(info.time.timestamp())
            changed = self.repo.changed_paths(info.id)
            parent_files: dict[str, tuple[str, int]] | None = None
            for path in [p for p, how in changed.items() if how != "D" and p in open_paths]:
                trace = open_paths[path]
                if trace.since is None:
                    trace.since = stamp
                    trace.pending = self._seqs_by_hash(trace.oid)
                    trace.counts = {h: len(seqs) for h, seqs in trace.pending.items()}
                old: tuple[str, int] | None = None
                if changed[path] == "M" and info.parents:
                    if parent_files is None:
                        parent_files = self.repo.files(info.parents[0])
                    old = parent_files.get(path)
                if old is None:  # the file begins here: every text still open began here
                    trace.settle(list(trace.pending), stamp)
                elif old[0] != trace.cur:
                    trace.settle(self._step_back(path, trace, old[0]), stamp)
                    trace.cur = old[0]
                if not trace.pending:
                    del open_paths[path]
        for trace in open_paths.values():  # history ended first: cannot happen; be safe
            trace.settle(list(trace.pending), trace.since or int(commit.time.timestamp()))
        return traces

    def _finish_from(self, trace: _Trace, stored: tuple[int, str, int, bytes | None] | None
                     ) -> None:
        """Settle a trace at an indexed commit from that commit's stored version of the path."""
        if stored is None or stored[1] != trace.cur:  # cannot happen on one line of history
            trace.settle(list(trace.pending), trace.since or 0)
            return
        vid, oid, since, times = stored
        if trace.since is None:  # the same version as there
            trace.reuse, trace.since = vid, since
            return
        seqs = self._seqs_by_hash(oid)
        old_times = _unpack_times(times, sum(len(v) for v in seqs.values()))
        for digest in list(trace.pending):
            first = min(seqs.get(digest, [-1]))
            trace.settle([digest], since if first < 0 or old_times is None
                         else int(old_times[first]))

    def _seqs_by_hash(self, oid: str) -> dict[bytes, list[int]]:
        """The chunks of a stored blob: text hash -> its positions."""
        out: dict[bytes, list[int]] = {}
        for seq, digest in self.conn.execute(
                "SELECT c.seq, t.hash FROM chunks c CROSS JOIN texts t ON t.id = c.text_id "
                "WHERE c.blob_id=? ORDER BY c.seq", (oid,)):
            out.setdefault(bytes(digest), []).append(int(seq))
        return out

    def _step_back(self, path: str, trace: _Trace, old: str) -> list[bytes]:
        """Move the trace's counts to the older blob `old`; the texts it does not hold."""
        from collections import Counter

        row = self.conn.execute("SELECT 1 FROM blobs WHERE blob_id=? AND chunker=?",
                                (old, CHUNKER_VERSION)).fetchone()
        counts: dict[bytes, int] | None = None
        if row is not None:
            trace.units = None
            counts = {h: len(seqs) for h, seqs in self._seqs_by_hash(old).items()}
        else:
            data = self.repo.read_blob(old)
            units = line_units(path, data)
            newer, trace.units = trace.units, units
            if units is not None and newer is None:
                newer = line_units(path, self.repo.read_blob(trace.cur))
            if units is not None and newer is not None and units.kind == newer.kind \
                    and units.header == newer.header:
                # Only the lines the two versions do not share are cut: a transcript or a
                # table that grows a little per commit is not cut again whole at each version.
                added, gone = _line_difference(newer.lines, units.lines)
                plus = chunk_lines(units.kind, units.header, added)
                minus = chunk_lines(units.kind, units.header, gone)
                if plus is not None and minus is not None:
                    changes: Counter[bytes] = Counter()
                    for chunk in plus:
                        changes[text_hashes(chunk)[0]] -= 1
                    for chunk in minus:
                        changes[text_hashes(chunk)[0]] += 1
                    ended = []
                    for digest, change in changes.items():
                        if digest in trace.counts:
                            trace.counts[digest] += change
                            if trace.counts[digest] <= 0:
                                ended.append(digest)
                    return ended
            if counts is None:
                counts = dict(Counter(text_hashes(c)[0] for c in chunk_file(path, data)))
        trace.counts = {h: counts.get(h, 0) for h in trace.pending}
        return [h for h, n in trace.counts.items() if n <= 0]

    def _versions_by_path(self, commit_id: str) -> dict[str, tuple[int, str, int, bytes | None]]:
        ids = self.store.snapshot_versions(commit_id)
        if ids is None:
            return {}
        rows = self.conn.execute(
            "SELECT v.id, v.path, v.blob_id, v.since, v.times FROM json_each(?) j "
            "CROSS JOIN versions v ON v.id = j.value", (_json_ids(ids),))
        return {str(p): (int(i), str(b), int(s), t) for i, p, b, s, t in rows}

    def _version(self, path: str, oid: str, since: int, times: bytes | None) -> int:
        row = self.conn.execute("SELECT id FROM versions WHERE path=? AND blob_id=? AND since=?",
                                (path, oid, since)).fetchone()
        if row is not None:
            return int(row[0])
        self.conn.execute("INSERT INTO versions(path, blob_id, since, times) VALUES(?, ?, ?, ?)",
                          (path, oid, since, times))
        return int(self.conn.last_insert_rowid())

    # chunking -------------------------------------------------------------------------

    def _chunk_blobs(self, paths: dict[str, str]) -> None:
        done = {str(b) for (b,) in self.conn.execute(
            "SELECT j.value FROM json_each(?) j CROSS JOIN blobs b ON b.blob_id = j.value "
            "WHERE b.chunker=?", (_json_list(sorted(paths)), CHUNKER_VERSION))}
        todo = sorted(paths.keys() - done)
        if not todo:
            return
        total = len(todo)
        batch: list[tuple[str, str, list[Chunk]]] = []
        size = 0
        for n, oid in enumerate(todo, 1):
            data = self.repo.read_blob(oid)
            path = paths.get(oid, "")
            report = chunk_file_report(path, data)
            if report.problem:
                self.warnings.append(f"{path}: {report.problem}")
            chunks = report.chunks
            batch.append((oid, file_kind(path, data), chunks))
            size += len(data)
            if size > 32 * 1024**2 or len(batch) >= 2000 or n == total:
                self._store_chunks(batch)
                batch, size = [], 0
                if self.progress is not None:
                    self.progress("files", n, total)
        self.blobs_chunked += total

    def _store_chunks(self, batch: list[tuple[str, str, list[Chunk]]]) -> None:
        with self.conn:
            for oid, kind, chunks in batch:
                self.conn.execute("DELETE FROM chunks WHERE blob_id=?", (oid,))
                # Versions of a blob cut again (a new chunker) have per-chunk times of the old
                # cut: made again from history, never reused.
                self.conn.execute("DELETE FROM versions WHERE blob_id=?", (oid,))
                for seq, chunk in enumerate(chunks):
                    text_id = self._text_id(chunk)
                    self.conn.execute("INSERT INTO chunks(blob_id, seq, locator, text_id) "
                                      "VALUES(?, ?, ?, ?)", (oid, seq, chunk.locator, text_id))
                self.conn.execute("INSERT OR REPLACE INTO blobs(blob_id, chunker, kind, chunks) "
                                  "VALUES(?, ?, ?, ?)", (oid, CHUNKER_VERSION, kind, len(chunks)))

    def _text_id(self, chunk: Chunk) -> int:
        row_hash, ehash = text_hashes(chunk)
        row = self.conn.execute("SELECT id FROM texts WHERE hash=?", (row_hash,)).fetchone()
        if row is not None:
            return int(row[0])
        self.conn.execute("INSERT INTO texts(hash, ehash, context, body, keys) "
                          "VALUES(?, ?, ?, ?, ?)",
                          (row_hash, ehash, chunk.context, chunk.text, chunk.keys))
        return int(self.conn.last_insert_rowid())

    # embedding ------------------------------------------------------------------------

    def embed_missing(self, commits: Iterable[str], embedder: Embedder) -> tuple[int, int]:
        """Embed every text of these commits that has no vector for the model: (new, reused)."""
        import numpy as np

        model = self.store.model_id(embedder.key, embedder.dim)
        assert model is not None
        versions: set[int] = set()
        for commit_id in commits:
            ids = self.store.snapshot_versions(commit_id)
            if ids is not None:
                versions.update(int(i) for i in ids)
        rows: list[Any] = self.conn.execute(
            "SELECT DISTINCT t.ehash, t.context, t.body, "
            "EXISTS(SELECT 1 FROM vectors x WHERE x.model_id=? AND x.ehash=t.ehash) "
            "FROM json_each(?) j CROSS JOIN versions v ON v.id = j.value "
            "CROSS JOIN chunks c ON c.blob_id = v.blob_id "
            "CROSS JOIN texts t ON t.id = c.text_id",
            (model, _json_list(sorted(versions)))).fetchall()
        missing: dict[bytes, str] = {}
        have: set[bytes] = set()
        for ehash, context, body, exists in rows:
            if exists:
                have.add(bytes(ehash))
            else:
                missing.setdefault(bytes(ehash), f"{context}\n{body}" if context else str(body))
        if missing:
            keys = list(missing)
            texts = [missing[k] for k in keys]
            # Embed and store in windows, so an interrupted run keeps what it paid for.
            window = 4096
            for start in range(0, len(keys), window):
                part = texts[start:start + window]

                def report(done: int, _total: int, offset: int = start) -> None:
                    if self.progress is not None:
                        self.progress("embed", offset + done, len(texts))

                vectors = np.asarray(embedder.embed_documents(part, progress=report),
                                     dtype="<f4")
                with self.conn:
                    self.conn.executemany(
                        "INSERT OR REPLACE INTO vectors(model_id, ehash, vec) VALUES(?, ?, ?)",
                        ((model, keys[start + i], vectors[i].tobytes())
                         for i in range(len(part))))
        with self.conn:
            now = int(time.time())
            for commit_id in commits:
                self.conn.execute("INSERT OR REPLACE INTO indexed(commit_id, model_id, at) "
                                  "VALUES(?, ?, ?)", (commit_id, model, now))
        return len(missing), len(have)


def _json_list(items: Sequence[str] | Sequence[int]) -> str:
    import json

    return json.dumps(list(items))


def _json_ids(ids: Any) -> str:
    return "[" + ",".join(str(int(i)) for i in ids) + "]"


# --- the entry points --------------------------------------------------------------------


def index_commits(store: IndexStore, repo: VaultRepo, commits: Sequence[CommitInfo],
                  embedder: Embedder, *, progress: ProgressFn | None = None,
                  encoder: str = "", rebuilt: bool = False) -> IndexResult:
    """Index commits (oldest first is cheapest) into the store with the embedder."""
    started = time.perf_counter()
    builder = _Builder(store, repo, progress)
    todo = [c for c in commits if not store.is_indexed(c.id, embedder.key)]
    for n, commit in enumerate(todo, 1):
        builder.ensure_snapshot(commit)
        if progress is not None and len(todo) > 1:
            progress("commits", n, len(todo))
    embedded, reused = builder.embed_missing([c.id for c in todo], embedder)
    last = commits[-1].id if commits else None
    files = _file_count(store, last) if last else 0
    chunks = _chunk_count(store, last) if last else 0
    return IndexResult(commits=tuple(c.id for c in commits), new_commits=len(todo),
                       files=files, chunks=chunks,
                       blobs_chunked=builder.blobs_chunked, embedded=embedded, reused=reused,
                       model=embedder.key, encoder=encoder or _encoder_name(embedder),
                       seconds=time.perf_counter() - started, path=str(store.path),
                       rebuilt=rebuilt, warnings=tuple(builder.warnings))


def _file_count(store: IndexStore, commit_id: str) -> int:
    ids = store.snapshot_versions(commit_id)
    return 0 if ids is None else len(ids)


def _chunk_count(store: IndexStore, commit_id: str) -> int:
    ids = store.snapshot_versions(commit_id)
    if ids is None:
        return 0
    row = store.conn.execute(
        "SELECT count(*) FROM json_each(?) j CROSS JOIN versions v ON v.id = j.value "
        "CROSS JOIN chunks c ON c.blob_id = v.blob_id", (_json_ids(ids),)).fetchone()
    return int(row[0]) if row else 0


def _encoder_name(embedder: Embedder) -> str:
    name = type(embedder).__name__
    return {"SentenceTransformerEmbedder": "sentence-transformers", "OnnxEmbedder": "onnx",
            "BackgroundEmbedder": "onnx",
            "HashEmbedder": "hash"}.get(name, name)


@dataclass(frozen=True)
class IndexOptions:
    """What `vault index` indexes: HEAD, the commit at WHEN, or every commit; rebuild or not."""

    at: str | None = None
    all: bool = False
    rebuild: bool = False


def target_commits(repo: VaultRepo, options: IndexOptions, now: datetime) -> list[CommitInfo]:
    """The commits an index run covers, oldest first."""
    from vault.restore import resolve_at

    if options.all:
        return list(reversed(list(repo.walk())))
    head = repo.head_id()
    if head is None:
        raise VaultError("the vault has no commits yet", hint="run `vault sync` first")
    if options.at:
        return [resolve_at(repo, options.at, now)]
    return [repo.commit_info(head)]


def _lock(config: Config) -> Any:
    import filelock

    path = config.index_path
    lock = Path(str(path) + ".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # filelock retries a lock file it cannot create until its timeout (10 minutes for a
        # folder that takes no files, /proc say): find that out at once.
        os.close(os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644))
    except OSError as exc:
        what = (f"cannot create the folder {path.parent}" if not path.parent.is_dir()
                else f"cannot write {lock}")
        reason = _folder_problem(path.parent) or one_line_reason(exc)
        if config.index.path is None:
            raise IndexStoreError(f"the index {path}: {what}: {reason}") from None
        # A path the user chose and vault cannot use is a configuration problem (exit 2),
        # named the way config validation names it.
        from vault.errors import ConfigError

        where = f"{config.file}: " if config.file else ""
        raise ConfigError(f"{where}index.path: {what}: {reason}",
                          hint="set [index] path to a file in a folder vault can write") from None
    return filelock.FileLock(str(lock), timeout=600)


def _folder_problem(folder: Path) -> str | None:
    """Why a folder cannot be made when a file is in the way: the file's name; else None."""
    for place in (folder, *folder.parents):
        if place.exists() or place.is_symlink():
            if place.is_dir():
                return None
            return "a file has that name" if place == folder else f"{place} is a file"
    return None


def build_index(config: Config, options: IndexOptions, embedder: Embedder, *,
                progress: ProgressFn | None = None, now: datetime | None = None,
                export_encoder: bool = True) -> IndexResult:
    """`vault index`: bring the index up to date for the chosen commits (or rebuild it)."""
    from vault.embed import ensure_query_encoder
    from vault.repo import VaultRepo

    repo = VaultRepo.open(config.vault.path, config.vault.branch)
    commits = target_commits(repo, options, now or datetime.now(timezone.utc))
    with _lock(config):
        _sweep_rebuild_leftovers(config.index_path)
        if options.rebuild:
            _refuse_to_replace(config)  # (before the encoder is dropped and made again)
        cosine: float | None = None
        if export_encoder:
            if options.rebuild:
                _drop_encoder(config, embedder)
            cosine = ensure_query_encoder(embedder, config.models_dir)
        if options.rebuild:
            result = _rebuild(config, repo, commits, embedder, progress)
        else:
            with IndexStore(config.index_path) as store, reporting_damage(store.path):
                # A run with nothing new to do reads few pages: without this check it would
                # report success over a damaged file (quick_check: ~50 ms for 12 MB).
                store.check()
                result = index_commits(store, repo, commits, embedder, progress=progress)
    if cosine is not None:
        result = _with(result, export_cosine=cosine)
    return result


def _with(result: IndexResult, **changes: Any) -> IndexResult:
    from dataclasses import replace

    return replace(result, **changes)


def _drop_encoder(config: Config, embedder: Embedder) -> None:
    import shutil

    from vault.embed import SentenceTransformerEmbedder, encoder_dir

    if isinstance(embedder, SentenceTransformerEmbedder):
        shutil.rmtree(encoder_dir(config.models_dir, embedder.spec), ignore_errors=True)


def _rebuild(config: Config, repo: VaultRepo, commits: Sequence[CommitInfo],
             embedder: Embedder, progress: ProgressFn | None) -> IndexResult:
    """Build a new index from the vault alone in a temp file, then swap it in atomically."""
    from vault.fsutil import fsync_dir

    target = config.index_path
    tmp = target.with_name(f".{target.name}.rebuild-{os.getpid()}")
    for leftover in (tmp, Path(f"{tmp}-journal")):
        leftover.unlink(missing_ok=True)
    try:
        with IndexStore(tmp) as store:
            result = index_commits(store, repo, commits, embedder, progress=progress,
                                   rebuilt=True)
        try:
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except OSError as exc:  # (the index as it was stays in place)
            raise IndexStoreError(f"cannot replace the index {target}: "
                                  f"{one_line_reason(exc)}") from None
        fsync_dir(target.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return _with(result, path=str(target))


def _sweep_rebuild_leftovers(target: Path) -> None:
    """Remove what rebuilds killed before their swap left: `.<index>.rebuild-<pid>` (a partial
    index as big as the index) and its journal, as sync sweeps its own temp files.

    Called under the index lock, which every rebuild holds to its end; a file whose process
    is still alive stays all the same (a process holding it without the lock is not ours to
    judge).
    """
    from vault.fsutil import pid_alive

    prefix = f".{target.name}.rebuild-"
    try:
        names = [n for n in os.listdir(target.parent) if n.startswith(prefix)]
    except OSError:
        return
    for name in names:
        pid = name[len(prefix):].split("-", 1)[0]  # (…rebuild-<pid>, …rebuild-<pid>-journal)
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            try:
                (target.parent / name).unlink()
            except OSError:
                pass  # (removed by another, or not ours to remove: it does no harm)


def _refuse_to_replace(config: Config) -> None:
    """Raise unless the file --rebuild would replace is vault's to replace.

    A vault index is known by the application_id in its SQLite header: read from the header
    alone, as a damaged index is what --rebuild is for.
    """
    import apsw

    from vault.sources import SQLITE_HEADER

    path = config.index_path
    if path.is_dir():
        raise a_folder(path)  # (os.replace cannot put a file there)
    refuse_special_file(path)  # (a device or a FIFO is never vault's to replace)
    if config.index.path is None:
        return  # vault's own state folder: what is there is an index, however damaged
    try:
        with open(path, "rb") as handle:
            head = handle.read(100)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise IndexStoreError(f"cannot read the index {path}: {one_line_reason(exc)}") from None
    if not head:
        return
    if head.startswith(SQLITE_HEADER) and len(head) == 100:
        if int.from_bytes(head[68:72], "big") == APPLICATION_ID:
            return
        from vault.sqlite_dump import file_uri

        try:  # (an empty database may become the index, as when opened for writing)
            conn = apsw.Connection(file_uri(path), flags=apsw.SQLITE_OPEN_READONLY
                                   | apsw.SQLITE_OPEN_URI)
            try:
                row = conn.execute("PRAGMA user_version").fetchone()
                empty = _blank(conn, int(row[0]) if row else 0)
            finally:
                conn.close()
        except apsw.Error:
            empty = False  # (unreadable: it cannot be shown to be vault's, so it stays)
        if empty:
            return
        raise not_ours(path, "a SQLite database of another program")
    raise not_ours(path, "not a SQLite database")


def ensure_indexed(config: Config, repo: VaultRepo, commit_id: str, embedder: Embedder,
                   progress: ProgressFn | None = None) -> IndexResult | None:
    """Index one commit if it is not indexed yet (recall's catch-up); None when it was."""
    with reporting_damage(config.index_path):
        if config.index_path.exists():
            try:
                with IndexStore(config.index_path, readonly=True) as store:
                    if store.is_indexed(commit_id, embedder.key):
                        return None
            except IndexOutdated:
                pass  # upgraded below, when opened for writing
        with _lock(config):
            _sweep_rebuild_leftovers(config.index_path)
            with IndexStore(config.index_path) as store:
                if store.is_indexed(commit_id, embedder.key):
                    return None
                return index_commits(store, repo, [repo.commit_info(commit_id)], embedder,
                                     progress=progress)


def index_after_sync(config: Config, commit_id: str | None) -> IndexResult | None:
    """After a sync commit: index it when `[index] after_sync = true` (never imports torch).

    Returns None when after_sync is off or there was no commit. Raises IndexUnavailable when
    the fast encoder has not been exported yet (run `vault index` once): the sync itself
    succeeded, so the caller reports it as a warning.
    """
    if not config.index.after_sync or commit_id is None:
        return None
    from vault.embed import load_query_encoder, make_embedder, resolve_model
    from vault.repo import VaultRepo

    spec = resolve_model(config.index.model, config.file.parent if config.file else None)
    embedder: Embedder | None
    if spec.kind == "hash":
        embedder = make_embedder(spec)
    else:
        embedder = load_query_encoder(config.models_dir, spec)
    if embedder is None:
        raise IndexUnavailable("the index was not updated: the query encoder for "
                               f"{spec.name} is not exported yet",
                               hint="run `vault index` once")
    repo = VaultRepo.open(config.vault.path, config.vault.branch)
    return ensure_indexed(config, repo, commit_id, embedder)
