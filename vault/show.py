"""Look without restoring: a file as it was, or a read-only SQL query against a database as it was."""

from __future__ import annotations

import os
import posixpath
import shlex
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vault.config import Config
from vault.errors import UsageError, VaultError
from vault.repo import CommitInfo, VaultRepo
from vault.restore import resolve_at, source_file_path

if TYPE_CHECKING:
    import apsw


@dataclass(frozen=True)
class Shown:
    """One file of one commit."""

    commit: CommitInfo
    path: str
    data: bytes

    @property
    def sqlite(self) -> bool:
        """True when the file is a SQLite database (stored as a dump)."""
        from vault.sqlite_dump import is_dump

        return is_dump(self.data)


@dataclass(frozen=True)
class QueryResult:
    """Columns and rows of a read-only query."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]


def vault_path(config: Config, path: str) -> str:
    """Accept a vault path (source/rel) or a file path inside a configured source root."""
    # A git tree holds no "." or ".." names, so `a/m/../F.md` can only mean a/F.md.
    vpath = posixpath.normpath(path.strip("/")) if path.strip("/") else ""
    if config.source_for(vpath) is not None and not Path(path).is_absolute():
        return vpath
    return source_file_path(config, path) or vpath


def vault_pattern(config: Config, pattern: str) -> str:
    """A `log --path` pattern as the vault's paths spell it: `./a/F.md`, `a//F.md` and
    `a/m/../F.md` mean a/F.md, and a file path inside a source root its vault path; an empty
    pattern or one outside every source matches nothing, so it is refused, not searched."""
    slash = "/" if pattern.endswith("/") else ""  # (a folder, as typed)

    def refused(why: str, shown: str = pattern) -> UsageError:
        return UsageError(f"--path {shown}: {why}",
                          hint="give a vault path such as " + _example(config))

    if not pattern.strip("/"):
        raise refused("an empty path matches nothing", repr(pattern))
    if pattern.startswith(("/", "~")):
        vpath = vault_path(config, pattern)
        if vpath.startswith("/") or config.source_for(vpath + "/-") is None:
            raise refused("not inside any source's folder")
        return _literal(vpath) + slash
    vpath = posixpath.normpath(pattern)
    if config.source_for(vpath + "/-") is None and os.path.lexists(pattern):
        # (a file's path from here, as tab completion gives it: `src/openclaw/MEMORY.md`)
        mapped = source_file_path(config, pattern)
        if mapped is not None:
            return _literal(mapped) + slash
    if vpath == ".." or vpath.startswith("../"):
        raise refused("goes above the vault's top")
    return vpath + slash


def _literal(vpath: str) -> str:
    """A pattern that matches exactly the file (or folder) at vpath, the path of one on disk:
    `[ab].txt` and `f [1].md` are those names, not patterns of others. (A last character that
    is white space other than a space would be cut from the end of a pattern: it is given
    as a bracket expression of its own.)"""
    from vault.sources import pattern_for

    pattern = pattern_for(vpath)  # (which escapes each space, and no other white space)
    if pattern[-1:].isspace() and pattern[-1] != " ":
        pattern = f"{pattern[:-1]}[{pattern[-1]}]"
    return pattern


def _example(config: Config) -> str:
    return f"{config.prefix(config.sources[0].name)}MEMORY.md" if config.sources \
        else "openclaw/MEMORY.md"


def show_file(config: Config, repo: VaultRepo, path: str, at: str, now: datetime) -> Shown:
    """The bytes of path as they were at WHEN."""
    commit = resolve_at(repo, at, now)
    vpath = vault_path(config, path)
    files = repo.files(commit.id)
    if vpath not in files:
        if not vpath.strip("/"):
            raise UsageError("vault show needs a file's path", hint="`vault log --path "
                             "'*'` lists the files of each sync")
        folder = vpath.rstrip("/") + "/"
        inside = sum(1 for p in files if p.startswith(folder))
        if inside:
            raise UsageError(f"{vpath.rstrip('/')} is a folder in commit {commit.id[:10]} "
                             f"({inside} file{'s' if inside != 1 else ''}); vault show prints "
                             "one file", hint=f"`vault restore --at {shlex.quote(at)} --to "
                             f"DIR --path {shlex.quote(_literal(folder[:-1]))}` writes them "
                             "all")
        near = sorted(p for p in files if p.endswith("/" + vpath.rsplit("/", 1)[-1]))[:3]
        raise UsageError(f"{vpath} is not in commit {commit.id[:10]} "
                         f"({commit.time:%Y-%m-%dT%H:%M:%SZ})",
                         hint=f"did you mean {', '.join(near)}?" if near
                         else "`vault log --path` lists when it existed")
    return Shown(commit=commit, path=vpath, data=repo.read_blob(files[vpath][0]))


def _go_on() -> bool:
    """SQLite's progress handler: never stops the query itself (a signal's handler does)."""
    return False


def query_dump(data: bytes, sql: str) -> QueryResult:
    """Run one read-only query against the database a dump rebuilds (in a temp file).

    TEXT that is not valid UTF-8 comes back as a str with each invalid byte replaced by
    U+FFFD, as a terminal shows the sqlite3 shell's raw bytes (CAST(col AS BLOB) gives the
    exact bytes); where the query cannot be re-read that way (PRAGMA, EXPLAIN) it is an error.

    A collation only the application registers is stood in for (sqlite_dump.StandIns, code
    point order), in the rebuild and in the query: it runs, though its ORDER BY or comparisons
    under that collation follow the stand-in, not the application's order.

    Every attempt to write the database is refused alike (UsageError, exit 2): a statement
    SQLite calls a write, before it runs; a PRAGMA, when the read-only copy refuses it as it
    runs (`user_version=5`, `optimize`, `journal_mode=DELETE` on a WAL copy). A PRAGMA that
    only sets this throwaway connection or its temp database (`cache_size=10`,
    `writable_schema=1`, `temp.user_version=3`) runs: it changes no file and nothing that
    outlives the query.
    """
    import apsw

    from vault.sqlite_dump import StandIns, deny_attach, file_uri, is_dump, load_dump

    if not is_dump(data):
        raise UsageError("--sql needs a SQLite database; this file is not one")
    with tempfile.TemporaryDirectory(prefix="vault-show-") as tmp:
        db_path = Path(tmp) / "asof.db"
        load_dump(data, db_path)
        conn = apsw.Connection(file_uri(db_path), flags=apsw.SQLITE_OPEN_READONLY
                               | apsw.SQLITE_OPEN_URI)
        try:
            StandIns(conn)  # the same stand-ins the rebuild used, for the query
            # A read-only open still lets ATTACH create files and VACUUM INTO write one (it
            # attaches its target): the authorizer refuses both, whatever the statement.
            conn.authorizer = deny_attach
            # A query runs inside SQLite, where Python's signal handlers cannot: one that runs
            # forever (a recursive CTE without an end) ignored Ctrl-C and SIGTERM. Python code
            # every few thousand steps lets the interrupt in (it raises out of the query).
            conn.set_progress_handler(_go_on, 10_000)
            checked = _one_read_only_statement(conn, sql)
            if checked is None:
                raise UsageError("--sql has no statement to run (only blanks or comments)")
            statement, read_only = checked
            cursor = conn.cursor()
            try:
                cursor.execute(statement)
                try:
                    columns = tuple(d[0] for d in cursor.getdescription())
                except apsw.ExecutionCompleteError:
                    columns = ()  # no rows: SQLite finished the statement already
                try:
                    rows = tuple(tuple(row) for row in cursor)
                except UnicodeDecodeError:  # apsw reads every TEXT value as UTF-8
                    rows = _rows_with_bad_text(conn, statement, len(columns))
            except apsw.AuthError:
                raise _refusal(statement, "it reaches another database") from None
            except apsw.Error as exc:
                # Only a PRAGMA gets here without SQLite's read-only verdict; the read-only copy
                # refuses what it would write (`user_version=5`; `optimize`, which SQLite calls
                # read-only, too), and `journal_mode=DELETE` on a WAL copy fails at the WAL.
                if isinstance(exc, apsw.ReadOnlyError) or not read_only:
                    raise _refusal(statement, "it writes") from None
                raise VaultError(f"SQL error: {exc}") from None
            except UnicodeDecodeError:  # a column name, say: nothing to fall back on
                raise _bad_text() from None
        finally:
            conn.close()
    return QueryResult(columns=columns, rows=rows)


def _rows_with_bad_text(conn: apsw.Connection, statement: str,
                        width: int) -> tuple[tuple[Any, ...], ...]:
    """The rows of statement once more, TEXT read as bytes and decoded with each invalid byte
    replaced by U+FFFD (what a terminal shows for the sqlite3 shell's raw output)."""
    import apsw

    from vault.sqlite_dump import TEXT_CODECS

    if not width:
        raise _bad_text()
    # A CTE with its own column names takes any SELECT, VALUES or WITH statement as it is
    # (duplicate or odd column names included); typeof() tells TEXT from BLOB once both are bytes.
    names = ", ".join(f"c{i}" for i in range(width))
    picks = ", ".join(f"typeof(c{i}), CASE typeof(c{i}) WHEN 'text' THEN CAST(c{i} AS BLOB) "
                      f"ELSE c{i} END" for i in range(width))
    body = statement.rstrip().rstrip(";")
    try:
        (encoding,), = conn.execute("PRAGMA encoding")
        codec = TEXT_CODECS.get(str(encoding), "utf-8")
        raw = list(conn.execute(f"WITH vault_q({names}) AS ({body}\n) SELECT {picks} "
                                "FROM vault_q"))
    except apsw.Error:  # a PRAGMA or EXPLAIN cannot be a CTE
        raise _bad_text() from None
    return tuple(tuple(value.decode(codec, "replace") if kind == "text" else value
                       for kind, value in zip(row[::2], row[1::2])) for row in raw)


def _bad_text() -> VaultError:
    """The error for TEXT (or a name) that is not valid UTF-8 and cannot be shown otherwise."""
    return VaultError("SQL error: the result holds TEXT that is not valid UTF-8",
                      hint="select CAST(column AS BLOB) or hex(column) to see its bytes")


def _one_read_only_statement(conn: apsw.Connection, sql: str) -> tuple[str, bool] | None:
    """The one statement of sql and SQLite's read-only verdict on it (None: only blanks and
    comments), or refuse it."""
    import apsw

    try:
        first = _first_statement(conn, sql)
    except apsw.AuthError:
        raise _refusal(sql, "it reaches another database") from None
    except apsw.Error as exc:
        raise VaultError(f"SQL error: {exc}") from None
    if first is None:
        return None
    statement, read_only = first
    try:
        more = _first_statement(conn, sql[len(statement):]) is not None
    except apsw.Error:
        more = True  # something after the first statement that SQLite cannot even prepare
    if more:
        raise UsageError("--sql runs one statement; this query has more than one")
    # SQLite's own verdict (sqlite3_stmt_readonly): VACUUM, for one, has no authorizer code.
    # A PRAGMA is let through whatever it says (`PRAGMA journal_mode` reads, yet counts as a
    # write): the connection is read-only and the authorizer refuses ATTACH, so no PRAGMA can
    # change the rebuilt copy or reach any other file (query_dump refuses one that tries).
    if not read_only and not statement.lstrip().upper().startswith("PRAGMA"):
        raise _refusal(statement, "it writes")
    return statement, read_only


def _first_statement(conn: apsw.Connection, sql: str) -> tuple[str, bool] | None:
    """Prepare the first statement of sql without running it: its text and whether it is read-only."""
    from vault.sqlite_dump import prepare_only

    seen: list[tuple[str, bool]] = []

    def look(cursor: apsw.Cursor, statement: str) -> bool:
        if not cursor.has_vdbe:
            return True  # only blanks, comments and semicolons: nothing to run, nothing after
        # The text runs from where the last statement ended, so it is a prefix of sql.
        seen.append((statement, cursor.is_readonly))
        return False  # abort before the statement runs

    prepare_only(conn, sql, look)
    return seen[0] if seen else None


def _refusal(statement: str, why: str) -> UsageError:
    """The one-line error for a statement --sql will not run."""
    text = " ".join(statement.split()).strip("; ")
    if len(text) > 120:
        text = text[:117] + "..."
    return UsageError(f"--sql is read-only: refusing `{text}` ({why})",
                      hint="run one SELECT or PRAGMA query")
