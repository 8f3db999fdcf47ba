"""Turn a live SQLite database into a deterministic, diffable SQL dump, and rebuild one from it.

The dump is what goes into git, so it is built for `git log -p`: one row per line, rows in
primary-key order, objects in name order, values formatted one stable way. Nothing in it depends
on page layout, the freelist, VACUUM or insertion order, so an unchanged database always gives
the same bytes and a changed row shows up as a one-line diff.

Layout of a dump::

    -- vault sqlite dump v1
    PRAGMA page_size / auto_vacuum / encoding / journal_mode   (file settings, before any content)
    BEGIN TRANSACTION;
    PRAGMA user_version / application_id
    ordinary tables, by name: CREATE TABLE as stored, then one INSERT per row (a table with
        NULLs its NOT NULL forbids is filled under its statement without NOT NULL, stored in
        sqlite_schema around the INSERTs: _DumpWriter._without_not_null)
    AUTOINCREMENT counters (sqlite_sequence) and ANALYZE results (sqlite_stat1)
    virtual tables, by name: CREATE VIRTUAL TABLE, then their rows (_DumpWriter._virtual_table)
    indexes, then views, then rebuilds of external-content full-text indexes, then triggers
    COMMIT;

Triggers come last so that replaying the INSERTs does not fire them. Full-text tables (FTS5,
FTS4) are dumped as their rows and their index is rebuilt on restore; other virtual tables
(rtree, contentless FTS, modules not loaded here, full-text tables whose tokenizer only the
application registers) keep their shadow tables, like `.dump` does.

A collation only the application registers (an agent's case-insensitive or locale collation)
is stood in for, the moment SQLite asks for it (StandIns): the dump keeps the schema as written
(COLLATE agentcoll and all) and every row, and a rebuilt database's indexes on such columns are
ordered by the stand-in, so the application must REINDEX them (load_dump names the collations).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import apsw

from vault.errors import SqliteSnapshotError
from vault.fsutil import fsync_dir
from vault.sources import DUMP_HEADER as DUMP_HEADER
from vault.sources import SQLITE_HEADER as SQLITE_HEADER

# Full-text modules whose rows we can read back and re-insert, so their binary index pages
# (shadow tables) stay out of the dump; the index is rebuilt from the rows on restore.
_FTS_SHADOW_SUFFIXES: dict[str, frozenset[str]] = {
    "fts5": frozenset({"data", "idx", "content", "docsize", "config"}),
    "fts4": frozenset({"content", "segments", "segdir", "docsize", "stat"}),
    "fts3": frozenset({"content", "segments", "segdir", "docsize", "stat"}),
}

# Names SQLite accepts for the rowid of a rowid table, unless a real column takes the name.
_ROWID_NAMES = ("rowid", "_rowid_", "oid")

# Python codec for each value of PRAGMA encoding; text is read as raw bytes in this encoding.
TEXT_CODECS = {"UTF-8": "utf-8", "UTF-16le": "utf-16-le", "UTF-16be": "utf-16-be"}


def is_sqlite_file(path: Path) -> bool:
    """Tell whether the file is a regular file that starts with the 16-byte SQLite header,
    whatever its name. (Opened without blocking: a FIFO in a file's place would wait for a
    writer forever, with the sync lock held.)"""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        return os.pread(fd, len(SQLITE_HEADER), 0) == SQLITE_HEADER
    except OSError:
        return False
    finally:
        os.close(fd)


def is_dump(data: bytes) -> bool:
    """Tell whether the bytes are a dump written by this module."""
    return data.startswith(DUMP_HEADER)


def snapshot_sqlite(path: Path, *, busy_timeout_ms: int = 10_000,
                    dry_run: bool = False) -> bytes:
    """Copy a live database with the online backup API and return its deterministic dump;
    dry_run: write nothing to the user's files, not even to roll back a crashed writer's
    journal (read from a copy of the two instead)."""
    # Error messages do not repeat the path: the caller reports them against its name for it.
    try:
        wal = _header_says_wal(path)
    except FileNotFoundError:
        raise SqliteSnapshotError("no such file") from None
    except OSError as e:
        raise SqliteSnapshotError(f"cannot read: {e.strerror or e}") from e
    try:
        copy = apsw.Connection(":memory:")
        try:
            stand_ins = StandIns(copy)
            journal_mode = _backup(path, copy, wal=wal, busy_timeout_ms=busy_timeout_ms,
                                   dry_run=dry_run)
            verdict = _checked(copy, stand_ins)
            if verdict.problem is not None:
                raise SqliteSnapshotError(
                    f"integrity check failed: {verdict.problem}",
                    hint=f"check the file with: sqlite3 {path} 'PRAGMA integrity_check'",
                )
            return _dump(copy, wal=journal_mode == "wal", stand_ins=stand_ins,
                         opaque=verdict.unchecked, null_rows="NULL" in verdict.broken)
        finally:
            copy.close()
    except apsw.Error as e:
        raise _snapshot_error(path, e, busy_timeout_ms) from e
    except UnicodeDecodeError as e:
        # Only names can get here (values are read as bytes): a schema that is not valid text.
        raise SqliteSnapshotError(f"schema is not valid text: {e.reason}") from e


def dump_connection(conn: apsw.Connection, *, wal: bool | None = None) -> bytes:
    """Return the deterministic SQL dump of the connection's main database."""
    # wal=None asks the connection; snapshot_sqlite passes the source's mode because its
    # in-memory copy always reports journal_mode=memory.
    try:
        if wal is None:
            wal = _pragma(conn, "journal_mode") == "wal"
        return _dump(conn, wal=wal)
    except apsw.Error as e:
        raise SqliteSnapshotError(f"cannot dump database: {error_message(e)}") from e
    except UnicodeDecodeError as e:
        message = f"cannot dump database: schema is not valid text: {e.reason}"
        raise SqliteSnapshotError(message) from e


def load_dump(data: bytes | memoryview, dest: Path, *, durable: bool = True) -> tuple[str, ...]:
    """Rebuild a database file at dest (which must not exist) from a dump; return the names of
    the application's collations it was built with stand-ins for (see reindex_warning).

    durable=False skips the fsyncs, for batches that end with one fsutil.sync_filesystem();
    the file's writeback is started as soon as its rows are in, so that the disk works while
    the batch goes on and the flush finds less to do.
    """
    if not is_dump(bytes(data[:len(DUMP_HEADER)])):
        raise SqliteSnapshotError("not a vault sqlite dump (missing header line)")
    if dest.exists() or dest.is_symlink():
        raise SqliteSnapshotError(f"{dest}: already exists", hint="restore to a new path")
    # Build beside dest and move it into place only once it is complete and checked, so a
    # failed or interrupted restore never leaves a half-built database at dest.
    try:
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    except FileNotFoundError:
        raise SqliteSnapshotError(f"{dest.parent}: no such directory") from None
    except OSError as e:
        raise SqliteSnapshotError(f"{dest.parent}: cannot write: {e.strerror or e}") from e
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        stood_in = _replay(data, tmp, start_writeback=not durable)
        if durable:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, dest)
        if durable:
            fsync_dir(dest.parent)
        return stood_in
    except apsw.Error as e:
        raise SqliteSnapshotError(f"bad dump: {error_message(e)}") from e
    except OSError as e:
        raise SqliteSnapshotError(f"{dest}: cannot write: {e.strerror or e}") from e
    finally:
        # The -wal/-shm/-journal are normally gone once the connection closed; make sure.
        for leftover in (tmp, *(Path(f"{tmp}{s}") for s in ("-wal", "-shm", "-journal"))):
            leftover.unlink(missing_ok=True)


def reindex_warning(path: str, names: tuple[str, ...] | list[str]) -> str:
    """The one line that tells a restore's user the application must rebuild some indexes."""
    one = len(names) == 1
    return (f"{path} uses {'collation' if one else 'collations'} {', '.join(names)}, which only "
            f"the application knows: the indexes that use {'it' if one else 'them'} were "
            f"rebuilt with a stand-in; the application must run "
            f"{'; '.join(f'REINDEX {n}' for n in names)} before using it")


def _code_point_order(a: str, b: str) -> int:
    """The stand-in collation: Unicode code point order (UTF-8 byte order), a total order."""
    return (a > b) - (a < b)


class StandIns:
    """Stands in for each collation SQLite asks for and the connection does not know (one
    only the application registers), and remembers their names.

    Code point order: a total, deterministic order, and the finest there is (two values are
    equal only when they are the same text), so no two rows that are distinct under the
    application's collation can collide in a rebuilt UNIQUE or PRIMARY KEY index under it.
    """

    def __init__(self, conn: apsw.Connection) -> None:
        self.names: list[str] = []
        conn.collation_needed(self._needed)

    def _needed(self, conn: apsw.Connection, name: str) -> None:
        conn.create_collation(name, _code_point_order)
        self.names.append(name)

    def covers(self, collation: str | None) -> bool:
        """Whether the collation is one of the stand-ins."""
        return collation is not None and collation.lower() in {n.lower() for n in self.names}


def prepare_only(conn: apsw.Connection, sql: str,
                 look: Callable[[apsw.Cursor, str], bool] | None = None) -> None:
    """Prepare sql's statements without running any (SQLite asks for collations then): each
    prepared statement goes to look(cursor, its text), which says whether to go on to the next
    (True only for one that has nothing to run); without look, only the first is prepared."""
    def stop(cursor: apsw.Cursor, statement: str, bindings: apsw.Bindings | None) -> bool:
        return look(cursor, statement) if look is not None else False

    cursor = conn.cursor()
    cursor.exec_trace = stop
    try:
        cursor.execute(sql)
    except apsw.ExecTraceAbort:
        pass


# --- snapshot ----------------------------------------------------------------------------


def _header_says_wal(path: Path) -> bool:
    """Tell from the file header (read/write versions 2) whether the database is in WAL mode."""
    with open(path, "rb") as f:
        header = f.read(20)
    return len(header) == 20 and header.startswith(SQLITE_HEADER) and 2 in header[18:20]


def _backup(path: Path, copy: apsw.Connection, *, wal: bool, busy_timeout_ms: int,
            dry_run: bool = False) -> str:
    """Copy the database at path into copy in one read transaction; return its journal mode."""
    # A rollback-journal database is opened read-only: nothing is written and no file is
    # created. A WAL database is opened read-write (never with CREATE): a read-only connection
    # would create the -wal and -shm files when they are missing and could not remove them,
    # while a read-write one removes them when it is the last connection to close, as any
    # SQLite client does.
    if not wal:
        for _ in range(_HOT_JOURNAL_TRIES if dry_run else 1):
            try:
                return _copy_from(path, copy, apsw.SQLITE_OPEN_READONLY, busy_timeout_ms)
            except apsw.ReadOnlyError:
                pass  # A hot journal left by a crashed writer: only a writer may roll it back.
            if not dry_run:
                break
            # A dry run (vault status too) writes nothing to the sources: the rollback is
            # done on a copy of the database and its journal. A real sync rolls it back in
            # place below, as any SQLite client that opens the file would (the application
            # included); the snapshot is the same either way.
            mode = _copy_from_rolled_back_copy(path, copy, busy_timeout_ms)
            if mode is not None:
                return mode
            # (the journal went away or the file changed meanwhile: read it again)
        else:
            raise SqliteSnapshotError("database is being written",
                                      hint="a crashed writer's journal changed while it was "
                                           "read; try again later")
    elif not os.access(path, os.W_OK) and not _has_data(f"{path}-wal"):
        # Write-protected, so SQLite would fall back to read-only and leave a -shm (and -wal)
        # in the user's folder, or fail in a read-only folder; with no -wal to replay, the file
        # is the whole database, and no one can write to it: read it as immutable. (Immutable,
        # SQLite does not look at the WAL at all and says journal_mode is 'delete': the file
        # is in WAL mode all the same, and so is its restored copy.)
        _copy_from(path, copy, apsw.SQLITE_OPEN_READONLY, busy_timeout_ms, immutable=True)
        return "wal"
    return _copy_from(path, copy, apsw.SQLITE_OPEN_READWRITE, busy_timeout_ms)


_HOT_JOURNAL_TRIES = 3  # reads of a database whose hot journal keeps changing under a dry run


def _copy_from_rolled_back_copy(path: Path, copy: apsw.Connection,
                                busy_timeout_ms: int) -> str | None:
    """Back up the database at path as its hot journal rolls it back, done on a copy of the
    two in a temp folder; None when they changed while being copied (another process opened
    the database and rolled the journal back itself, or wrote)."""
    journal = Path(f"{path}-journal")
    with tempfile.TemporaryDirectory(prefix="vault-hot-journal-") as folder:
        db_copy = Path(folder) / "db"
        try:
            before = (os.stat(path), os.stat(journal))
            shutil.copyfile(path, db_copy)
            shutil.copyfile(journal, f"{db_copy}-journal")
            after = (os.stat(path), os.stat(journal))
        except FileNotFoundError:
            return None
        if any(_changed(b, a) for b, a in zip(before, after)):
            return None
        return _copy_from(db_copy, copy, apsw.SQLITE_OPEN_READWRITE, busy_timeout_ms)


def _changed(before: os.stat_result, after: os.stat_result) -> bool:
    return (before.st_ino, before.st_size, before.st_mtime_ns, before.st_ctime_ns) != \
        (after.st_ino, after.st_size, after.st_mtime_ns, after.st_ctime_ns)


def _has_data(path: str) -> bool:
    try:
        return os.stat(path).st_size > 0
    except FileNotFoundError:
        return False


def file_uri(path: Path, query: str = "") -> str:
    """The `file:` URI of path, for a connection opened with SQLITE_OPEN_URI.

    SQLite takes a file name as UTF-8 only: a path that is not (a folder named b'\\xffsrc',
    which Python holds as a surrogate escape) could not be passed to it at all. In a URI its
    bytes are percent-encoded, and SQLite hands them to the file system as they are. (`?`,
    `#` and `%` in a name are encoded too, so any name works.)"""
    from urllib.parse import quote

    # (absolute, after "file://": a path that starts with // is not read as a host name)
    uri = "file://" + quote(os.fsencode(Path(path).absolute()), safe="/")
    return f"{uri}?{query}" if query else uri


def _copy_from(path: Path, copy: apsw.Connection, flags: int, busy_timeout_ms: int,
               immutable: bool = False) -> str:
    """Open path with flags (immutable: as a file nobody writes, without locks) and back it
    up into copy; return the source's journal mode."""
    # Closing the last connection to a WAL database checkpoints it into the database file and
    # deletes the -wal: writes to the user's files a backup (or a dry run) must not make, so
    # whenever a -wal is there. A -wal and -shm this connection creates are empty and go away
    # on close (a checkpoint of nothing).
    wal_there = os.path.lexists(f"{path}-wal")
    # A -wal without its -shm (copied without it, or left by a writer in exclusive mode): the
    # -shm this connection would make could not be removed safely (another process may open
    # the database meanwhile), so it keeps its WAL index in memory, which exclusive locking
    # mode does. No process has the database open in shared mode then (it would have its
    # -shm); one that opens it during the backup waits, as for any writer. (Exclusive mode
    # takes a write lock: not on a file this user may not write, which fails as before.)
    own_index = wal_there and not os.path.lexists(f"{path}-shm") \
        and flags & apsw.SQLITE_OPEN_READWRITE != 0 and os.access(path, os.W_OK)
    source = apsw.Connection(file_uri(path, "immutable=1" if immutable else ""),
                             flags=flags | apsw.SQLITE_OPEN_URI)
    try:
        if wal_there:
            source.config(apsw.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1)
        if own_index:
            source.execute("PRAGMA locking_mode=EXCLUSIVE")  # (before the first read)
        source.set_busy_timeout(busy_timeout_ms)
        # Belt and braces: this connection must never write to the user's database.
        source.execute("PRAGMA query_only=ON")
        with copy.backup("main", source, "main") as backup:
            # All pages in one step, so one read transaction: a consistent copy even while
            # another process writes (the busy timeout covers waiting for its locks).
            if not backup.step(-1):
                raise SqliteSnapshotError("backup did not complete")
        return _pragma(source, "journal_mode")
    finally:
        source.close()


def _integrity_problem(conn: apsw.Connection, stand_ins: StandIns | None = None,
                       broken: set[str] | None = None) -> str | None:
    """Return the first line of PRAGMA integrity_check that says the file is damaged, or None
    when the database is ok; into broken go the first words of the rules rows break ("NULL").

    A row that breaks its table's rules (a CHECK, NOT NULL, a STRICT or a column's type) is
    no damage: SQLite lets an application write one (PRAGMA ignore_check_constraints, a
    schema edited in place), it reads as any other, and the dump keeps it as it is. A corrupt
    file may be rolled back, which would throw away every newer row for it; so CHECK
    constraints are not evaluated (the connection keeps ignore_check_constraints on: a CHECK
    may also call the application's own functions) and _RULE_BROKEN's lines are passed over.

    With stand_ins, on a copy of the application's database: where the check needs a collation
    only the application has, the order of the indexes (and WITHOUT ROWID tables) built under
    it cannot be checked here. The check must not call such a database corrupt, so it then
    runs without those parts: the page-level check of the whole file (quick_check), and the
    full check of every table that does not name a stood-in collation.
    """
    conn.execute("PRAGMA ignore_check_constraints=ON")
    if stand_ins is not None:
        try:
            prepare_only(conn, "PRAGMA integrity_check")  # stands in for what the check needs
        except apsw.SQLError:
            pass  # (the check itself says why, below)
        if stand_ins.names:
            return _integrity_beside(conn, stand_ins, broken)
    return _first_problem(conn, "PRAGMA integrity_check", broken)


@dataclass(frozen=True)
class _Verdict:
    """What the integrity check found: damage (its first line), the virtual tables it left to
    their application, the kinds of rules rows break (_RULE_BROKEN's first words)."""

    problem: str | None
    unchecked: frozenset[str] = frozenset()
    broken: frozenset[str] = frozenset()


def _checked(conn: apsw.Connection, stand_ins: StandIns | None = None) -> _Verdict:
    """_integrity_problem, and the virtual tables whose own check needs the application's code.

    A virtual table's module checks its own data (PRAGMA integrity_check runs its xIntegrity):
    a full-text table with a tokenizer only the application registers cannot be checked here,
    and the whole check then fails with an error (FTS5's is a bare "SQL logic error"). Such a
    table is left to its application: every other part of the file is checked, and the dump
    keeps the table's own storage (its shadow tables), which the application's module reads
    as it did, rather than rows that could not be indexed again without its tokenizer.
    """
    broken: set[str] = set()
    try:
        return _Verdict(_integrity_problem(conn, stand_ins, broken), broken=frozenset(broken))
    except apsw.SQLError:
        unchecked: set[str] = set()
        for name, sql in conn.execute("SELECT name, sql FROM main.sqlite_schema "
                                      "WHERE type = 'table' ORDER BY name"):
            if not _is_virtual(_Object("table", str(name), str(name), str(sql or ""))):
                continue
            try:
                problem = _first_problem(conn, f"PRAGMA main.integrity_check({_q(str(name))})")
            except apsw.SQLError:
                unchecked.add(str(name))
                continue
            if problem is not None:
                return _Verdict(problem)
        if not unchecked:
            raise  # (not a virtual table's: the caller says what it is)
    problem = _integrity_without(conn, unchecked, stand_ins, broken)
    return _Verdict(problem, frozenset(unchecked), frozenset(broken))


def _integrity_without(conn: apsw.Connection, unchecked: set[str],
                       stand_ins: StandIns | None, broken: set[str]) -> str | None:
    """_integrity_problem of conn's main database, leaving out the virtual tables unchecked.

    On a copy whose connection lacks their modules: SQLite then skips those tables (it has no
    code to ask), and still checks every page of the file, their shadow tables included. The
    other tables of those modules were checked one by one already (_checked).
    """
    modules = {_parse_virtual_table(str(sql or ""))[0] for name, sql in conn.execute(
        "SELECT name, sql FROM main.sqlite_schema WHERE type = 'table'") if name in unchecked}
    check = apsw.Connection(":memory:")
    try:
        check.drop_modules([str(r[0]) for r in check.execute("PRAGMA module_list")
                            if str(r[0]).lower() not in modules])
        # The copy's collations are stood in for here too (a rebuilt database's indexes were
        # built under the stand-ins: the full check holds; a snapshot's are checked without).
        check_stand_ins = StandIns(check)
        with check.backup("main", conn, "main") as backup:
            if not backup.step(-1):
                raise SqliteSnapshotError("backup did not complete")
        return _integrity_problem(check, check_stand_ins if stand_ins is not None else None,
                                  broken)
    finally:
        check.close()


# integrity_check's lines about a row that breaks its table's rules, not about the file: NOT
# NULL, a STRICT column's type, a value of the wrong type for a column's affinity, a CHECK.
_RULE_BROKEN = re.compile(r"(NULL|NUMERIC|TEXT|non-\w+) value in |CHECK constraint failed in ")
_CHECK_ROWS = 100  # what PRAGMA integrity_check returns at most, unless told otherwise


def _first_problem(conn: apsw.Connection, pragma: str,
                   broken: set[str] | None = None) -> str | None:
    """The first line of the check (pragma, with no argument or a table name) that is damage
    and not a broken rule (_RULE_BROKEN, whose first words go into broken), or None."""
    rows = conn.execute(pragma).fetchall()
    if not rows:
        return "no result"
    if rows[0][0] == "ok":
        return None
    problem = _damage(rows, broken)
    if problem is None and len(rows) >= _CHECK_ROWS and not pragma.endswith(")"):
        # As many broken rules as the check lists: damage may come after them. (A check of
        # one table takes no limit: its rows are the rules its own rows break.)
        problem = _damage(conn.execute(f"{pragma}(2147483647)"), broken)
    return problem


def _damage(rows: Iterable[tuple[apsw.SQLiteValue, ...]], broken: set[str] | None) -> str | None:
    for (text,) in rows:
        for line in str(text).splitlines():
            rule = _RULE_BROKEN.match(line)
            if rule is None and line != "ok":
                return line
            if rule is not None and broken is not None:
                broken.add(line.split(" ", 1)[0])
    return None


def _integrity_beside(conn: apsw.Connection, stand_ins: StandIns,
                      broken: set[str] | None) -> str | None:
    """The integrity check of a database that uses collations stood in for (see above)."""
    problem = _first_problem(conn, "PRAGMA main.quick_check", broken)
    if problem is not None:
        return problem
    names = "|".join(re.escape(n) for n in stand_ins.names)
    # A name that merely appears in the SQL (in a string, say) only makes the check coarser.
    mention = re.compile(rf"(?<![\w$])(?:{names})(?![\w$])", re.IGNORECASE)
    sql: dict[str, list[str]] = {}
    for tbl_name, text in conn.execute(
            "SELECT tbl_name, sql FROM main.sqlite_schema WHERE type IN ('table', 'index')"):
        sql.setdefault(str(tbl_name), []).append(str(text or ""))
    for table, texts in sorted(sql.items()):
        if any(mention.search(t) for t in texts):
            continue
        problem = _first_problem(conn, f"PRAGMA main.integrity_check({_q(table)})", broken)
        if problem is not None:
            return problem
    return None


def _snapshot_error(path: Path, e: apsw.Error, busy_timeout_ms: int) -> SqliteSnapshotError:
    """Turn an apsw error into a one-line SqliteSnapshotError (the caller names the file)."""
    if isinstance(e, (apsw.BusyError, apsw.LockedError)):
        return SqliteSnapshotError(
            f"database is locked (busy for {busy_timeout_ms / 1000:g} s)",
            hint="another process holds a write lock; try again later",
        )
    if isinstance(e, apsw.NotADBError):
        return SqliteSnapshotError("file is not a database")
    if isinstance(e, apsw.CorruptError):
        return SqliteSnapshotError(
            "database disk image is malformed (corrupt or truncated)",
            hint=f"check the file with: sqlite3 {path} 'PRAGMA integrity_check'",
        )
    if isinstance(e, apsw.SQLError) and _NEEDS_APPLICATION.match(error_message(e)):
        # The schema calls code only the application registers (a function in an index, a
        # CHECK or a generated column): no stand-in can compute it, and the dump could not be
        # rebuilt without it. This will not fix itself; the sync must say so (sync.py).
        return SqliteSnapshotError(f"{NEEDS_APPLICATION}{error_message(e)}",
                                   hint="the database's schema uses SQL functions or modules "
                                        "that only its application registers")
    if isinstance(e, (apsw.CantOpenError, apsw.ReadOnlyError)):
        # (ReadOnlyError: a WAL database SQLite could open only read-only, which needs a -shm)
        why = error_message(e)
        if why in ("CantOpenError", "ReadOnlyError"):
            why = "SQLite cannot open it, or the -wal and -shm it needs beside it"
        return SqliteSnapshotError(f"cannot open database: {why}",
                                   hint=f"let this user read and write {path} and its folder")
    return SqliteSnapshotError(error_message(e))


# What SQLite says when the schema needs code only the application registers; a bare "SQL
# logic error" is what a module says when code it needs is missing (FTS5: a tokenizer), once
# _checked has left such tables to their application and the error is still there.
_NEEDS_APPLICATION = re.compile(r"(unknown function|no such function|no such module|"
                                r"no such collation sequence|unknown tokenizer|"
                                r"no such tokenizer|SQL logic error$)", re.IGNORECASE)
# The start of the message for such a database.
NEEDS_APPLICATION = "needs the application's own SQL code: "


def error_message(e: BaseException) -> str:
    """Return the exception's message on one line."""
    text = " ".join(str(e.args[0]).split()) if e.args else ""
    # The backup API reports some errors on the destination connection, whose message then
    # reads "not an error"; the exception class says more.
    return text if text and text != "not an error" else type(e).__name__


# --- dump --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Object:
    """One row of sqlite_schema."""

    type: str
    name: str
    tbl_name: str
    sql: str | None


@dataclass(frozen=True)
class _Column:
    """One column from PRAGMA table_xinfo."""

    name: str
    decl_type: str
    pk: int  # position in the primary key, 0 when not part of it
    hidden: int  # 0 ordinary, 1 hidden virtual-table column, 2/3 generated column


def _dump(conn: apsw.Connection, *, wal: bool, stand_ins: StandIns | None = None,
          opaque: frozenset[str] = frozenset(), null_rows: bool = False) -> bytes:
    """Dump the main database inside one read transaction and return the UTF-8 bytes;
    the virtual tables named in opaque are kept as their shadow tables; null_rows: the
    integrity check found NULLs in NOT NULL columns."""
    # A savepoint is a read transaction when none is open, and nests inside the caller's.
    conn.execute("SAVEPOINT vault_dump")
    try:
        text = _DumpWriter(conn, wal=wal, stand_ins=stand_ins, opaque=opaque,
                           null_rows=null_rows).write()
    finally:
        conn.execute("RELEASE vault_dump")
    return text.encode("utf-8")


class _DumpWriter:
    """Writes the dump of one connection's main database, section by section."""

    def __init__(self, conn: apsw.Connection, *, wal: bool,
                 stand_ins: StandIns | None = None, opaque: frozenset[str] = frozenset(),
                 null_rows: bool = False) -> None:
        self.conn = conn
        self.wal = wal
        self.stand_ins = stand_ins
        self.opaque = opaque
        self.null_rows = null_rows
        self.lines: list[str] = []
        self.encoding = _pragma(conn, "encoding")
        self.codec = TEXT_CODECS.get(self.encoding, "utf-8")
        self.objects = [
            _Object(str(t), str(n), str(tn), None if s is None else str(s))
            for t, n, tn, s in conn.execute(
                "SELECT type, name, tbl_name, sql FROM main.sqlite_schema ORDER BY type, name"
            )
        ]
        self.modules = _available_modules(conn)
        self.table_list, self.knows_shadows = _table_list(conn)

    def write(self) -> str:
        """Return the whole dump as text."""
        tables = [o for o in self.objects if o.type == "table"]
        virtual = [o for o in tables if _is_virtual(o)]
        # Virtual tables whose rows we dump and whose shadow tables we leave out.
        fts = {o.name: spec for o in virtual if (spec := self._fts_spec(o)) is not None}
        skipped = self._fts_shadow_tables(fts, [o.name for o in virtual], [o.name for o in tables])

        self._header()
        for obj in tables:
            if obj.name in skipped or _is_virtual(obj) or _is_internal(obj.name):
                continue
            self.lines.append(_statement(obj.sql))
            relaxed = self._without_not_null(obj) if self.null_rows else None
            if relaxed is not None:
                self._schema_sql(obj.name, relaxed)
            self._table_rows(obj.name)
            if relaxed is not None:
                self._schema_sql(obj.name, obj.sql or "")
        self._sqlite_sequence()
        self._sqlite_stat()
        for obj in virtual:
            self._virtual_table(obj, fts.get(obj.name))
        others = [
            o
            for o in self.objects
            if o.sql is not None and o.tbl_name not in skipped and not _is_internal(o.name)
        ]
        for kind in ("index", "view"):
            self.lines.extend(_statement(o.sql) for o in others if o.type == kind)
        # After the views, in case a content table is a view; before the triggers, though
        # rebuilding fires none.
        for name, spec in sorted(fts.items()):
            if spec.content:
                self.lines.append(f"INSERT INTO {_q(name)}({_q(name)}) VALUES('rebuild');")
        self.lines.extend(_statement(o.sql) for o in others if o.type == "trigger")
        self.lines.append("COMMIT;")
        return "\n".join(self.lines) + "\n"

    def _header(self) -> None:
        """Write the header line and the pragmas that make the restored file faithful."""
        self.lines.append(DUMP_HEADER.decode("ascii").rstrip("\n"))
        # These describe the file itself, so they must run before anything is written to it.
        self.lines.append(f"PRAGMA page_size={int(_pragma(self.conn, 'page_size'))};")
        self.lines.append(f"PRAGMA auto_vacuum={int(_pragma(self.conn, 'auto_vacuum'))};")
        self.lines.append(f"PRAGMA encoding='{self.encoding}';")
        # WAL is the one journal mode stored in the file; the others are per connection.
        self.lines.append(f"PRAGMA journal_mode={'WAL' if self.wal else 'DELETE'};")
        self.lines.append("BEGIN TRANSACTION;")
        self.lines.append(f"PRAGMA user_version={int(_pragma(self.conn, 'user_version'))};")
        self.lines.append(f"PRAGMA application_id={int(_pragma(self.conn, 'application_id'))};")

    def _without_not_null(self, obj: _Object) -> str | None:
        """The table's CREATE statement without NOT NULL when a row holds a NULL it forbids
        (SQLite lets a schema be edited in place so), else None.

        Replayed under its own statement, such a row would fail the restore; the dump fills
        the table under this one, then puts the table's own back (_schema_sql).
        """
        not_null = [_q(str(r[1])) for r in self.conn.execute(
            f"PRAGMA main.table_info({_q(obj.name)})") if r[3]]
        # (typeof: SQLite takes "c IS NULL" of a NOT NULL column for false without looking)
        if not not_null or not self.conn.execute(
                f"SELECT 1 FROM main.{_q(obj.name)} WHERE "
                f"{' OR '.join(f'typeof({c}) = {chr(39)}null{chr(39)}' for c in not_null)} "
                "LIMIT 1").fetchall():
            return None
        relaxed = _without_not_null(obj.sql or "")
        return relaxed if relaxed != obj.sql else None

    def _schema_sql(self, table: str, sql: str) -> None:
        """Set the stored CREATE statement of a table, and have SQLite read it again."""
        self.lines.append("PRAGMA writable_schema=ON;")
        self.lines.append(f'UPDATE "sqlite_schema" SET "sql"={_text_literal(sql)} '
                          f'WHERE "type"=\'table\' AND "name"={_text_literal(table)};')
        self.lines.append("PRAGMA writable_schema=RESET;")

    def _table_rows(self, table: str, fts: _FtsSpec | None = None) -> None:
        """Write one INSERT per row of table (fts: a full-text table's), in primary-key order."""
        columns = _columns(self.conn, table)
        # Generated columns are computed again on insert and cannot be written. A full-text
        # table's hidden columns are its commands, rank and docid, but for FTS4's languageid,
        # which is data: each row's language, which its index was built for.
        values = [c.name for c in columns if c.hidden == 0
                  or (fts is not None and c.name.lower() in fts.hidden)]
        without_rowid = self.table_list.get(table, ("table", False))[1]
        if without_rowid:
            pk = [c.name for c in sorted(columns, key=lambda c: c.pk) if c.pk > 0]
            self._rows(table, values, order=pk, rowid=None)
        elif (alias := _rowid_alias_column(self.conn, table, columns)) is not None:
            # An INTEGER PRIMARY KEY is the rowid: writing the column keeps it.
            self._rows(table, values, order=[alias.name], rowid=None)
        else:
            taken = {c.name.lower() for c in columns}
            free = [n for n in _ROWID_NAMES if n not in taken]
            if free:
                # Name the rowid explicitly so it survives restore: other rows, FTS content
                # tables or the application may refer to rows by rowid.
                self._rows(table, values, order=[], rowid=free[0],
                           locales=fts is not None and fts.locale)
            else:
                self.lines.append(
                    f"-- {_comment_name(table)}: columns named rowid, _rowid_ and oid hide the "
                    "rowid; rowids are not kept"
                )
                self._rows(table, values, order=values, rowid=None)

    def _rows(
        self,
        table: str,
        columns: list[str],
        *,
        order: list[str],
        rowid: str | None,
        locales: bool = False,
    ) -> None:
        """Write the INSERTs for a SELECT of columns from table, sorted by order or the rowid;
        locales: an FTS5 locale=1 table, each value with the locale it was indexed under."""
        # Text is read as raw bytes (with a flag saying it was text) so that text that is not
        # valid in the database encoding, or holds NUL, still round-trips.
        select = [
            f"CASE WHEN typeof({_q(c)})='text' THEN CAST({_q(c)} AS BLOB) ELSE {_q(c)} END,"
            f" typeof({_q(c)})='text'"
            + (f", fts5_get_locale({_q(table)}, {i})" if locales else "")
            for i, c in enumerate(columns)
        ]
        insert = [_q(c) for c in columns]
        if rowid is not None:
            select.insert(0, f"{rowid}, 0" + (", NULL" if locales else ""))
            insert.insert(0, _q(rowid))
            order = [rowid]
        sql = f"SELECT {', '.join(select)} FROM main.{_q(table)}"
        if order:
            sql += " ORDER BY " + ", ".join(o if o == rowid else self._order_term(table, o)
                                            for o in order)
        prefix = f"INSERT INTO {_q(table)}({','.join(insert)}) VALUES("
        if locales:
            # A value read through the table is its text without its locale (the table keeps
            # that apart): written back as fts5_locale(locale, text) when it has one, so the
            # restored row is indexed (and reads) as it was; the rest as any other value.
            for row in self.conn.execute(sql):
                literals = [
                    self._literal(row[i], is_text=bool(row[i + 1])) if row[i + 2] is None
                    else f"fts5_locale({self._literal(row[i + 2], is_text=True)},"
                         f"{self._literal(row[i], is_text=bool(row[i + 1]))})"
                    for i in range(0, len(row), 3)
                ]
                self.lines.append(prefix + ",".join(literals) + ");")
            return
        for row in self.conn.execute(sql):
            literals = [
                self._literal(row[i], is_text=bool(row[i + 1])) for i in range(0, len(row), 2)
            ]
            self.lines.append(prefix + ",".join(literals) + ");")

    def _order_term(self, table: str, column: str) -> str:
        """The ORDER BY term for a column: under its own collation, or BINARY for a stood-in one."""
        # A WITHOUT ROWID table keyed by a stood-in collation is stored in the application's
        # order, which SQLite would walk; a rebuilt copy is stored in the stand-in's order. An
        # explicit BINARY makes the rows' order a function of their values alone, the same
        # before and after a restore (and REINDEX), whatever order the file keeps them in.
        if self.stand_ins is not None and self.stand_ins.names and \
                self.stand_ins.covers(self.conn.column_metadata("main", table, column)[1]):
            return f"{_q(column)} COLLATE BINARY"
        return _q(column)

    def _literal(self, value: apsw.SQLiteValue, *, is_text: bool) -> str:
        """Format one value as an SQL literal, the same way every time, on one line."""
        if value is None:
            return "NULL"
        if isinstance(value, int):
            return str(value)
        if isinstance(value, float):
            # repr() is the shortest text that reads back as the same double.
            if math.isinf(value):
                return "1e999" if value > 0 else "-1e999"
            return repr(value)
        raw = bytes(value) if not isinstance(value, str) else value.encode(self.codec)
        if not is_text:
            return f"X'{raw.hex()}'"
        try:
            text = raw.decode(self.codec)
        except UnicodeDecodeError:
            # Not valid in the database encoding: keep the exact bytes.
            return f"CAST(X'{raw.hex()}' AS TEXT)"
        return _text_literal(text)

    def _sqlite_sequence(self) -> None:
        """Write the AUTOINCREMENT counters, which can be above the largest rowid left."""
        if not self._has_rows("sqlite_sequence"):
            return
        # Replaying the INSERTs already set counters to the largest rowid; put back the real ones.
        self.lines.append('DELETE FROM "sqlite_sequence";')
        self._rows("sqlite_sequence", ["name", "seq"], order=["name", "seq"], rowid=None)

    def _sqlite_stat(self) -> None:
        """Write the ANALYZE results of sqlite_stat1, sorted; leave out sqlite_stat4 samples."""
        if not self._has_rows("sqlite_stat1"):
            return
        self.lines.append(
            "-- ANALYZE results: sqlite_stat1 is kept, sqlite_stat4 samples are not"
            " (run ANALYZE to rebuild them)"
        )
        # sqlite_stat1 cannot be created with CREATE TABLE; ANALYZE of the schema table
        # creates it (empty) without analysing anything.
        self.lines.append("ANALYZE sqlite_schema;")
        columns = ["tbl", "idx", "stat"]
        self._rows("sqlite_stat1", columns, order=columns, rowid=None)

    def _has_rows(self, table: str) -> bool:
        """Tell whether the internal table exists and holds at least one row."""
        if not any(o.type == "table" and o.name == table for o in self.objects):
            return False
        return bool(self.conn.execute(f"SELECT 1 FROM main.{_q(table)} LIMIT 1").fetchall())

    def _virtual_table(self, obj: _Object, fts: _FtsSpec | None) -> None:
        """Write a virtual table: as SQL plus rows for full-text tables, as raw schema otherwise."""
        if fts is None:
            # A module we cannot read rows through (rtree, an extension such as sqlite-vec
            # that is not loaded here, a contentless full-text table): its shadow tables were
            # dumped as ordinary tables above, and its schema row is written directly, the
            # way the sqlite3 shell's .dump does. The restored file is then the same data,
            # and works wherever the module is available.
            self.lines.append(
                f"-- {_comment_name(obj.name)}: module data is kept in its shadow tables above"
            )
            self.lines.append("PRAGMA writable_schema=ON;")
            values = ",".join(
                ["'table'", _text_literal(obj.name), _text_literal(obj.tbl_name), "0"]
                + [_text_literal(obj.sql or "")]
            )
            self.lines.append(
                f'INSERT INTO "sqlite_schema"("type","name","tbl_name","rootpage","sql")'
                f" VALUES({values});"
            )
            # RESET also reloads the schema, so later statements see the new table.
            self.lines.append("PRAGMA writable_schema=RESET;")
            return
        self.lines.append(_statement(obj.sql))
        if fts.module == "fts5":
            self._fts5_config(obj.name)
        if fts.content is None:
            self._table_rows(obj.name, fts)

    def _fts5_config(self, name: str) -> None:
        """Write an FTS5 table's persistent settings (rank, pgsz, automerge, ...)."""
        # The 'version' row is written by FTS5 itself; the others are user settings, made
        # with the special INSERT INTO t(t, rank) command.
        rows = self.conn.execute(
            f"SELECT k, v FROM main.{_q(name + '_config')} WHERE k <> 'version' ORDER BY k"
        ).fetchall()
        for k, v in rows:
            self.lines.append(
                f"INSERT INTO {_q(name)}({_q(name)},\"rank\") VALUES("
                f"{self._literal(k, is_text=True)},{self._literal(v, is_text=isinstance(v, str))});"
            )

    def _fts_spec(self, obj: _Object) -> _FtsSpec | None:
        """Return how to dump a full-text table, or None to treat it as an opaque module."""
        module, args = _parse_virtual_table(obj.sql or "")
        if module not in _FTS_SHADOW_SUFFIXES or module not in self.modules \
                or obj.name in self.opaque:
            return None
        options = {unquote(arg[0]).lower(): unquote(" ".join(arg[2:]))
                   for arg in args if len(arg) >= 2 and arg[1] == "="}
        content = options.get("content")
        if content == "":
            # Contentless: the index is all there is and no rows can be read back, so keep
            # the index itself (opaque path) rather than lose the search data.
            return None
        if content is not None and not self._rebuild_gives_the_index(obj.name, module):
            # External content: restore rebuilds the index from the content table, which is
            # only right when the index is what a rebuild makes of that table now. The
            # application may have renamed or changed the table, indexed only some of its
            # rows or other text: the index is kept as it is then (its shadow tables), and
            # the restored file answers queries as the original did.
            return None
        hidden: tuple[str, ...] = ()
        if module in ("fts3", "fts4") and options.get("languageid"):
            hidden = (options["languageid"].lower(),)
        locale = module == "fts5" and options.get("locale", "0").strip() not in ("", "0")
        return _FtsSpec(module, content, hidden, locale)

    def _rebuild_gives_the_index(self, name: str, module: str) -> bool:
        """Whether an external-content full-text table's index holds exactly what rebuilding
        it from its content table would (every row, token, position and column size)."""
        # The module's own check, which compares the index with its content table (FTS5: rank
        # 1 asks for that); it fails (corrupt, or an error: no such table or column) whenever
        # a rebuild would make another index or none. As costly as the check PRAGMA
        # integrity_check runs on a table that keeps its own content. It writes nothing; the
        # savepoint makes sure.
        command = "'integrity-check', 1" if module == "fts5" else "'integrity-check'"
        columns = f"{_q(name)}, \"rank\"" if module == "fts5" else _q(name)
        self.conn.execute("SAVEPOINT vault_fts_check")
        try:
            self.conn.execute(f"INSERT INTO main.{_q(name)}({columns}) VALUES({command})")
            return True
        except (apsw.BusyError, apsw.LockedError, apsw.InterruptError, apsw.NoMemError):
            raise
        except apsw.Error:
            return False
        finally:
            self.conn.execute("ROLLBACK TO vault_fts_check")
            self.conn.execute("RELEASE vault_fts_check")

    def _fts_shadow_tables(
        self, fts: dict[str, _FtsSpec], virtual: list[str], tables: list[str]
    ) -> set[str]:
        """Return the shadow tables of the full-text tables whose rows are dumped."""
        # A user table can look like a shadow table ("notes_content" as the external content
        # of "notes"); content tables are always kept.
        content = {spec.content for spec in fts.values()}
        shadow: set[str] = set()
        for table in tables:
            # The owner is the longest virtual-table name the table's name extends.
            owners = [v for v in virtual if table.startswith(v + "_")]
            if not owners or table in content:
                continue
            owner = max(owners, key=len)
            if owner not in fts:
                continue
            if self.knows_shadows:
                is_shadow = self.table_list.get(table, ("table", False))[0] == "shadow"
            else:  # Before SQLite 3.37: the modules' known suffixes.
                is_shadow = table[len(owner) + 1 :] in _FTS_SHADOW_SUFFIXES[fts[owner].module]
            if is_shadow:
                shadow.add(table)
        return shadow


@dataclass(frozen=True)
class _FtsSpec:
    """A full-text table: its module, its content option (None: it stores its own rows), its
    hidden columns that hold data (FTS4's languageid, lower case), whether it keeps each value's
    locale (FTS5 locale=1)."""

    module: str
    content: str | None
    hidden: tuple[str, ...] = ()
    locale: bool = False


def _pragma(conn: apsw.Connection, name: str) -> str:
    """Return the single value of a PRAGMA on the main database, as text."""
    rows = conn.execute(f"PRAGMA main.{name}").fetchall()
    return str(rows[0][0]) if rows else ""


def _available_modules(conn: apsw.Connection) -> set[str]:
    """Return the virtual-table modules this SQLite provides."""
    try:
        return {str(r[0]).lower() for r in conn.execute("PRAGMA module_list")}
    except apsw.SQLError:
        return set()  # Unknown: every virtual table then takes the opaque path, which is safe.


def _table_list(conn: apsw.Connection) -> tuple[dict[str, tuple[str, bool]], bool]:
    """Return name -> (type, without_rowid) for main's tables, and whether SQLite said so."""
    try:
        rows = conn.execute("PRAGMA main.table_list").fetchall()
    except apsw.SQLError:
        # Before SQLite 3.37: read WITHOUT ROWID from the CREATE statement instead.
        result: dict[str, tuple[str, bool]] = {}
        for name, sql in conn.execute(
            "SELECT name, sql FROM main.sqlite_schema WHERE type = 'table'"
        ):
            text = str(sql or "")
            wr = re.search(r"\)\s*WITHOUT\s+ROWID\s*(,|$)", text, re.IGNORECASE) is not None
            result[str(name)] = ("table", wr)
        return result, False
    return {str(r[1]): (str(r[2]), bool(r[4])) for r in rows}, True


def _columns(conn: apsw.Connection, table: str) -> list[_Column]:
    """Return the columns of a table, including generated and hidden ones."""
    return [
        _Column(str(r[1]), str(r[2] or ""), int(r[5] or 0), int(r[6] or 0))
        for r in conn.execute(f"PRAGMA main.table_xinfo({_q(table)})")
    ]


def _rowid_alias_column(
    conn: apsw.Connection, table: str, columns: list[_Column]
) -> _Column | None:
    """Return the INTEGER PRIMARY KEY column that is the table's rowid, if there is one."""
    pk = [c for c in columns if c.pk > 0]
    if len(pk) != 1 or pk[0].decl_type.upper() != "INTEGER":
        return None
    # "INTEGER PRIMARY KEY DESC" is the documented exception: it is not the rowid, and it
    # shows as an index whose origin is 'pk'.
    for row in conn.execute(f"PRAGMA main.index_list({_q(table)})"):
        if row[3] == "pk":
            return None
    return pk[0]


def _is_virtual(obj: _Object) -> bool:
    """Tell whether a sqlite_schema row is a virtual table."""
    return obj.type == "table" and re.match(
        r"\s*CREATE\s+VIRTUAL\s+TABLE\b", obj.sql or "", re.IGNORECASE
    ) is not None


def _is_internal(name: str) -> bool:
    """Tell whether an object is SQLite's own (sqlite_sequence, sqlite_stat1, autoindexes)."""
    return name.lower().startswith("sqlite_")


# Tokens of a CREATE VIRTUAL TABLE statement: comments and blanks, quoted names and strings,
# punctuation, and barewords.
_TOKEN = re.compile(
    r"""(?P<skip>\s+|--[^\n]*|/\*.*?(?:\*/|\Z))
      | (?P<tok>"(?:[^"]|"")*"|'(?:[^']|'')*'|`(?:[^`]|``)*`|\[[^\]]*\]|[(),=.;]|[^\s(),=.;"'`\[]+)
    """,
    re.VERBOSE | re.DOTALL,
)


def _parse_virtual_table(sql: str) -> tuple[str, list[list[str]]]:
    """Return the module name (lower case) and the module arguments, each a list of tokens."""
    tokens = [m.group("tok") for m in _TOKEN.finditer(sql) if m.group("tok")]
    # The name cannot be a bare USING (a keyword), so the first bare USING ends it.
    at = next((i for i, t in enumerate(tokens) if t.lower() == "using"), None)
    if at is None or at + 1 >= len(tokens):
        return "", []
    module = unquote(tokens[at + 1]).lower()
    args: list[list[str]] = []
    rest = tokens[at + 2 :]
    if rest[:1] == ["("]:
        depth, current = 0, list[str]()
        for t in rest[1:]:
            if t == ")" and depth == 0:
                break
            if t == "," and depth == 0:
                args.append(current)
                current = []
                continue
            depth += {"(": 1, ")": -1}.get(t, 0)
            current.append(t)
        args.append(current)
    return module, args


def _without_not_null(sql: str) -> str:
    """A CREATE TABLE statement without its columns' NOT NULL constraints (with their
    CONSTRAINT names and ON CONFLICT clauses); everything else as written."""
    tokens = [(m.group("tok"), m.start(), m.end()) for m in _TOKEN.finditer(sql)
              if m.group("tok")]
    words = [t[0].upper() for t in tokens]
    cuts: list[tuple[int, int]] = []
    depth, i = 0, 0
    while i < len(tokens):
        depth += {"(": 1, ")": -1}.get(words[i], 0)
        # (at depth 1, among the column definitions; deeper is an expression: CHECK (x NOT NULL))
        if depth == 1 and words[i:i + 2] == ["NOT", "NULL"]:
            first, end = i, i + 2
            if first >= 2 and words[first - 2] == "CONSTRAINT":
                first -= 2
            if words[end:end + 2] == ["ON", "CONFLICT"] and end + 2 < len(tokens):
                end += 3
            cuts.append((tokens[first][1], tokens[end - 1][2]))
            i = end
            continue
        i += 1
    for start, end in reversed(cuts):
        sql = sql[:start] + sql[end:]
    return sql


def unquote(token: str) -> str:
    """Remove SQL quotes from a name or string token."""
    if len(token) >= 2 and token[0] in "\"'`" and token[-1] == token[0]:
        return token[1:-1].replace(token[0] * 2, token[0])
    if len(token) >= 2 and token[0] == "[" and token[-1] == "]":
        return token[1:-1]
    return token


def _q(name: str) -> str:
    """Quote an identifier, always, with embedded quotes doubled."""
    return '"' + name.replace('"', '""') + '"'


_LINE_BREAKING = re.compile(r"([\n\r\x00])")
_COMMENT_ESCAPES = str.maketrans({"\n": "\\n", "\r": "\\r", "\x00": "\\0"})


def _comment_name(name: str) -> str:
    """A name quoted for a `--` comment line: a newline in it would end the comment and make
    the rest of the name SQL (a NUL would end the dump's text), so those are written escaped."""
    return _q(name).translate(_COMMENT_ESCAPES)


def _text_literal(text: str) -> str:
    """Quote text as one line: quotes doubled, newlines, CRs and NULs as char(n)."""
    # A literal newline would split one row over several lines of the diff, and a NUL
    # would end the statement early, so they are spliced in with char() instead.
    parts = [
        f"char({ord(p)})" if _LINE_BREAKING.fullmatch(p) else "'" + p.replace("'", "''") + "'"
        for p in _LINE_BREAKING.split(text)
        if p
    ]
    return "||".join(parts) if parts else "''"


# --- restore -----------------------------------------------------------------------------


_WAL_LINE = "PRAGMA journal_mode=WAL;\n"
_BEGIN_LINE = "\nBEGIN TRANSACTION;\n"
_PIECE = 1 << 20  # about this much of a dump is decoded and run at a time
_LINE_END = re.compile(b"\n")


def _pieces(data: bytes | memoryview) -> Iterator[str]:
    """The dump as text, in pieces of about _PIECE bytes that each end with a whole statement.

    A dump of tens of MB decoded whole is a str of up to four bytes a character, which SQLite
    then needs as UTF-8 again: two more copies of it, each a fresh allocation (page faults
    included) that took longer than running the SQL. Pieces end at a line break (never inside
    a UTF-8 character) where apsw.complete() says a statement ends; a value with line breaks
    in it makes a piece twice as long, and so on. SqliteSnapshotError names the first byte
    that is not UTF-8.
    """
    view = memoryview(data)
    size = len(view)
    start = 0
    while start < size:
        end = _line_end(view, start + _PIECE)
        while True:
            try:
                text = str(view[start:end], "utf-8")
            except UnicodeDecodeError as e:
                raise SqliteSnapshotError(f"bad dump: not valid UTF-8 at byte "
                                          f"{start + e.start}") from e
            if end >= size or apsw.complete(text):
                break
            end = _line_end(view, end + (end - start))
        yield text
        start = end


def _line_end(view: memoryview, at: int) -> int:
    """Just past the first line break at or after at (the end of view when there is none)."""
    found = _LINE_END.search(view, min(at, len(view)))
    return found.end() if found else len(view)


def _without_wal(text: str) -> tuple[str, bool]:
    """The dump's first piece without its header's `PRAGMA journal_mode=WAL`, and whether the
    line was there.

    Replayed in WAL mode, every page of the new database is written twice (to the -wal, then
    by the checkpoint into the file): 2-3 times slower for a large database. The mode is the
    same whenever it is set, so _replay sets it once the rows are in. Only the line among the
    header's pragmas, in the layout _DumpWriter writes, is taken out.
    """
    head = text[:text.find(_BEGIN_LINE) + 1]
    at = head.find("\n" + _WAL_LINE)
    if at < 0 or not all(line.startswith("PRAGMA ") and line.endswith(";")
                         for line in head[len(DUMP_HEADER):at].split("\n")):
        return text, False  # (a dump in another layout: replayed as it is)
    return text[:at + 1] + text[at + 1 + len(_WAL_LINE):], True


def replay_settings(conn: apsw.Connection) -> StandIns:
    """Set a connection up to replay a dump into (here, and the indexer's in-memory copy);
    the stand-ins for the application's collations it gets."""
    # Settings another part of the program may have changed for every connection
    # (apsw.bestpractice): the dump needs the plain SQLite behaviour.
    conn.config(apsw.SQLITE_DBCONFIG_DEFENSIVE, 0)  # writable_schema for opaque modules
    conn.config(apsw.SQLITE_DBCONFIG_DQS_DDL, 1)  # stored CREATE statements as written
    conn.execute("PRAGMA foreign_keys=OFF")  # tables are filled in name order
    conn.execute("PRAGMA recursive_triggers=OFF")
    # The rows are what the database they were taken from held, CHECK constraints kept or
    # not (an application may write a row that breaks one), and a constraint that compares
    # under a collation only the application has could not be judged under its stand-in.
    conn.execute("PRAGMA ignore_check_constraints=ON")
    return StandIns(conn)


def _replay(data: bytes | memoryview, path: Path, *,
            start_writeback: bool = False) -> tuple[str, ...]:
    """Run the dump's SQL into a new database at path and check the result; return the
    collations it stood in for."""
    try:
        conn = apsw.Connection(file_uri(path), flags=apsw.SQLITE_OPEN_READWRITE
                               | apsw.SQLITE_OPEN_CREATE | apsw.SQLITE_OPEN_URI)
    except apsw.Error as e:
        raise SqliteSnapshotError(f"cannot create database: {error_message(e)}") from e
    try:
        stand_ins = replay_settings(conn)
        # No fsync at COMMIT or checkpoint: the file is a temp file that nobody else opens,
        # flushed once when it is whole and checked (by load_dump, or with the caller's batch).
        conn.execute("PRAGMA synchronous=OFF")
        # A dump only ever writes to this database; never let one reach another file.
        conn.authorizer = deny_attach
        wal = False
        try:
            for number, piece in enumerate(_pieces(data)):
                if number == 0:
                    piece, wal = _without_wal(piece)
                for _ in conn.execute(piece, can_cache=False):
                    pass
        except apsw.AuthError as e:
            raise SqliteSnapshotError("bad dump: it tries to attach another database") from e
        except apsw.Error as e:
            raise SqliteSnapshotError(f"bad dump: {error_message(e)}") from e
        if conn.in_transaction:
            conn.execute("ROLLBACK")
            raise SqliteSnapshotError("bad dump: truncated (no COMMIT)")
        conn.authorizer = None
        if wal and _pragma(conn, "journal_mode=WAL") != "wal":
            raise SqliteSnapshotError("cannot switch the rebuilt database to WAL mode")
        if start_writeback:
            _start_writeback(path)  # (the check below reads; it does not write)
        try:
            prepare_only(conn, "PRAGMA integrity_check")  # stands in for what the check needs
        except apsw.SQLError:
            pass  # (a virtual table that needs the application's code: _checked says)
        # (Built under the stand-ins, the indexes are in their order and pass the check.)
        problem = _checked(conn).problem
        if problem is not None:
            raise SqliteSnapshotError(f"bad dump: the result fails integrity check: {problem}")
        return tuple(stand_ins.names)
    finally:
        conn.close()


def _start_writeback(path: Path) -> None:
    """Have the kernel start writing path's dirty pages to disk, without waiting for it.

    POSIX_FADV_DONTNEED starts writeback of the file's dirty pages (Linux: WB_SYNC_NONE) and
    drops only pages that are clean already: freshly written ones stay cached until written.
    A hint: where it is not supported nothing changes, the later flush does it all.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except (OSError, AttributeError):  # (no posix_fadvise on macOS)
        pass
    finally:
        os.close(fd)


def deny_attach(
    action: int, arg1: str | None, arg2: str | None, db: str | None, trigger: str | None
) -> int:
    """Authorizer that refuses ATTACH and DETACH (and so VACUUM INTO)."""
    if action in (apsw.SQLITE_ATTACH, apsw.SQLITE_DETACH):
        return apsw.SQLITE_DENY
    return apsw.SQLITE_OK


def _statement(sql: str | None) -> str:
    """A stored CREATE statement with its terminating ';' (on its own line after a -- comment)."""
    import apsw

    return f"{sql};" if apsw.complete(f"{sql};") else f"{sql}\n;"
