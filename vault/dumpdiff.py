"""Row-level differences between two SQLite dumps (vault.sqlite_dump), for `vault diff`.

The dump writes one `INSERT INTO "t"(cols) VALUES(...);` line per row, formatted one stable way,
so two rows are equal exactly when their lines are. The diff therefore works on lines, without an
SQL engine for the rows: lines present on both sides are set aside first (a set difference, fast
on 100k-row tables), and only the lines left over are parsed for their key. A key seen on both
sides is a "changed" row; otherwise the row was "added" or "removed".

A row's key is what the dump orders the table by:

- rowid tables: the rowid, which the dump writes as an explicit "rowid" column (or "_rowid_",
  "oid" when a real column takes the name), or the INTEGER PRIMARY KEY column that is the rowid;
- WITHOUT ROWID tables: the primary-key columns, shown as "('a', 3)" (a single column bare);
- full-text tables (FTS5, FTS4): their rowid; an FTS5 table's settings rows are keyed
  "config 'name'" and sort first, and the 'rebuild' command line is not a row;
- sqlite_sequence by table name, sqlite_stat1 by (tbl, idx);
- tables whose rowid is hidden by columns named rowid, _rowid_ and oid have no key the dump
  keeps: their rows are only ever "added" or "removed", keyed by all their values.

Which columns form the key comes from SQLite itself: each side's CREATE TABLE statements (only
those, never the rows) are run in an in-memory database and read back with PRAGMA table_xinfo,
mirroring the choices of sqlite_dump._DumpWriter._table_rows. When a statement cannot be run
there, a first column named rowid, _rowid_ or oid is taken as the key, else the whole row.

Keys are compared as the literal text the dump wrote, and shown the same way ("42", "'a'",
"('a'||char(10)||'b', 3)"). A key is matched only against the same key columns, so a table
rebuilt with another key shows its rows as removed and added. A schema change that alters the
column list (ADD or DROP COLUMN) changes the text of every row, and every row is then "changed".

The example rows come in key order: each side's rows are already in the dump's order (SQLite's
order of the key), and the first few of each side are merged by value. Bytes that are not a
dump raise SqliteSnapshotError.

Virtual tables whose module the dump could not read (rtree, sqlite-vec, contentless FTS) have
no rows of their own: their data is in their shadow tables, which are reported like any table.
Only CREATE TABLE statements count as the schema: indexes, views and triggers are not compared.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple, Union

import apsw

from vault.errors import SqliteSnapshotError
from vault.sqlite_dump import deny_attach, is_dump, unquote


@dataclass(frozen=True)
class RowChange:
    """One row that differs: its key, and its VALUES(...) text before and after."""

    kind: str  # "added" | "changed" | "removed"
    key: str  # "42" for a rowid, "('a', 3)" for a composite primary key
    old: str | None  # "(1,'text',X'00ff')", None when added
    new: str | None  # None when removed


@dataclass(frozen=True)
class TableDiff:
    """How one table differs: row counts, the first rows that differ, and its schema."""

    table: str
    added: int
    changed: int
    removed: int
    rows: tuple[RowChange, ...]  # at most `limit` examples, in key order
    schema_changed: bool  # the CREATE statement differs, or the table was created or dropped
    status: str  # "added" (new table), "removed" (dropped table), "modified"

    @property
    def row_changes(self) -> int:
        """Rows added, changed and removed (rows lists the first `limit` of them)."""
        return self.added + self.changed + self.removed


ROW_LIMIT = 20  # rows listed per table by default, the first in key order


def diff_dumps(old: bytes | None, new: bytes | None, *,
               limit: int = ROW_LIMIT) -> list[TableDiff]:
    """Return the tables that differ between two dumps (None: no database), by table name."""
    if old == new:
        return []
    before = _parse(old) if old is not None else {}
    after = _parse(new) if new is not None else {}
    old_keys = _key_columns(before.values())
    new_keys = _key_columns(after.values())
    result: list[TableDiff] = []
    for name in sorted(before.keys() | after.keys()):
        diff = _diff_table(
            name,
            _Side(before.get(name), old_keys.get(name)),
            _Side(after.get(name), new_keys.get(name)),
            max(limit, 0),
        )
        if diff is not None:
            result.append(diff)
    return result


# --- reading a dump ----------------------------------------------------------------------


@dataclass
class _Table:
    """A table of one dump: its CREATE statement (None for SQLite's own) and its INSERT lines."""

    name: str
    sql: str | None
    virtual: bool
    lines: list[bytes] = field(default_factory=list)


# The start of a row line, up to the values: the quoted table name and the quoted columns.
_NAME = rb'"(?:[^"]|"")*"'
_ROW = re.compile(
    rb"INSERT INTO (" + _NAME + rb")\((" + _NAME + rb"(?:," + _NAME + rb")*)\) VALUES\("
)
_COLUMN = re.compile(rb'"((?:[^"]|"")*)"')

# The start of a CREATE TABLE as SQLite stores it, and the table name that follows.
_CREATE = re.compile(r"CREATE\s+(VIRTUAL\s+)?TABLE\s+", re.IGNORECASE)
_IDENT = re.compile(r'"(?:[^"]|"")*"|`(?:[^`]|``)*`|\[[^\]]*\]|\'(?:[^\']|\'\')*\'|[^\s(.,;]+')

# Names SQLite accepts for the rowid, in the order the dump picks the first one not taken.
_ROWID_NAMES = ("rowid", "_rowid_", "oid")

# SQLite's own tables the dump writes rows for without a CREATE statement, and their keys.
_INTERNAL_KEYS: dict[str, tuple[str, ...]] = {
    "sqlite_sequence": ("name",),
    "sqlite_stat1": ("tbl", "idx"),
}


def _parse(data: bytes) -> dict[str, _Table]:
    """Split a dump into its tables: CREATE statements and row lines, by table name."""
    if not is_dump(data):
        raise SqliteSnapshotError("not a vault sqlite dump (missing header line)")
    tables: dict[str, _Table] = {}
    # Row lines of one table share their start, so one startswith() places most of them.
    targets: dict[bytes, list[bytes] | None] = {}
    last_prefix, last_target = b"", None
    pending: list[str] = []
    lines = iter(data.split(b"\n"))
    for line in lines:
        if pending:
            # Inside a multi-line statement (a CREATE, a trigger body): read to its end, so
            # an INSERT inside a trigger is never taken for a row.
            pending.append(line.decode("utf-8", "replace"))
            text = "\n".join(pending)
            if apsw.complete(text):
                _statement(text, tables)
                pending = []
            continue
        if last_prefix and line.startswith(last_prefix):
            if last_target is not None:
                last_target.append(line)
            continue
        if line.startswith(b"INSERT INTO "):
            m = _ROW.match(line)
            if m is None:
                # A name with a line break in it (the dump writes names as they are): the row
                # goes on over the next lines, to the end of its statement.
                line = _whole_statement(line, lines)
                m = _ROW.match(line)
                if m is None:  # (never left out: its table would show no change)
                    raise _unreadable(line)
            prefix = m.group(0)
            if prefix not in targets:
                name = _unquote_bytes(m.group(1))
                if name == "sqlite_schema":
                    # An opaque virtual table's schema row: its CREATE, not a row.
                    _opaque_virtual_table(line, len(prefix), tables)
                    continue
                columns = [_unquote_bytes(c) for c in _COLUMN.findall(m.group(2))]
                targets[prefix] = _row_target(name, columns, tables)
            last_prefix, last_target = prefix, targets[prefix]
            if last_target is not None:
                last_target.append(line)
            continue
        if not line.strip() or line.startswith(b"--"):
            continue
        text = line.decode("utf-8", "replace")
        if apsw.complete(text):
            _statement(text, tables)
        else:
            pending = [text]
    return tables


def _whole_statement(first: bytes, rest: Iterator[bytes]) -> bytes:
    """The statement that begins with the line first, with as many of the next lines as it
    takes to complete it (all that are left when it never is)."""
    parts = [first]
    while not apsw.complete(b"\n".join(parts).decode("utf-8", "replace")):
        following = next(rest, None)
        if following is None:
            break
        parts.append(following)
    return b"\n".join(parts)


def _unreadable(statement: bytes) -> SqliteSnapshotError:
    """The error for a statement of a dump that the diff cannot read as the dump writes it."""
    text = statement.decode("utf-8", "replace")
    shown = text if len(text) <= 80 else text[:77] + "..."
    return SqliteSnapshotError(f"cannot read the dump's statement: {shown}",
                               hint="the stored dump was not written by this vault, or was "
                                    "changed by hand")


def _row_target(name: str, columns: list[str], tables: dict[str, _Table]) -> list[bytes] | None:
    """Return the list the rows with these columns go to, or None for full-text commands."""
    table = tables.get(name)
    if table is None:
        # sqlite_sequence and sqlite_stat1 have rows but no CREATE statement.
        table = tables[name] = _Table(name, None, virtual=False)
    if table.virtual and columns[0] == name and columns != [name, "rank"]:
        return None  # INSERT INTO fts(fts) VALUES('rebuild'): a command, not a row.
    return table.lines


def _statement(text: str, tables: dict[str, _Table]) -> None:
    """Note a complete statement of the dump when it creates a table."""
    m = _CREATE.match(text)
    if m is None:
        return
    ident = _IDENT.match(text, m.end())
    if ident is None:
        return
    name = unquote(ident.group())
    sql = text.rstrip()
    if sql.endswith(";"):
        sql = sql[:-1]
    table = tables.setdefault(name, _Table(name, None, virtual=False))
    table.sql = sql
    table.virtual = m.group(1) is not None


def _opaque_virtual_table(line: bytes, start: int, tables: dict[str, _Table]) -> None:
    """Note a virtual table the dump wrote straight into sqlite_schema (type, name, ..., sql)."""
    literals = _literals(line, start)
    if literals is None or len(literals) != 5 or _text(literals[0]) != "table":
        return
    name, sql = _text(literals[1]), _text(literals[4])
    if name is not None and sql is not None:
        tables.setdefault(name, _Table(name, None, virtual=True)).sql = sql


def _unquote_bytes(quoted: bytes) -> str:
    """Decode a name the dump quoted with double quotes (or the inside of one)."""
    text = quoted.decode("utf-8", "replace")
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    return text.replace('""', '"')


# --- keys --------------------------------------------------------------------------------


def _key_columns(tables: Iterable[_Table]) -> dict[str, tuple[str, ...]]:
    """Return the key columns of each table with rows (empty: no key); absent when unknown."""
    keys = dict(_INTERNAL_KEYS)
    ordinary = [t for t in tables if t.lines and t.sql is not None and not t.virtual]
    if not ordinary:
        return keys
    conn = apsw.Connection(":memory:")
    try:
        conn.config(apsw.SQLITE_DBCONFIG_DQS_DDL, 1)  # stored CREATE statements as written
        conn.authorizer = deny_attach  # the statements come from a file: stay in memory
        for table in ordinary:
            try:
                conn.execute(table.sql or "")
                key = _table_key(conn, table.name)
            except apsw.Error:
                continue  # An unknown collation or function: fall back on the row lines.
            if key is not None:
                keys[table.name] = key
    finally:
        conn.close()
    return keys


def _table_key(conn: apsw.Connection, name: str) -> tuple[str, ...] | None:
    """Return the columns the dump orders a table by, as sqlite_dump chooses them."""
    quoted = '"' + name.replace('"', '""') + '"'
    columns = conn.execute(f"PRAGMA main.table_xinfo({quoted})").fetchall()
    listed = conn.execute(f"PRAGMA main.table_list({quoted})").fetchall()
    if not columns or not listed:
        return None
    pk = sorted((int(c[5] or 0), str(c[1]), str(c[2] or "")) for c in columns if c[5])
    if listed[0][4]:  # WITHOUT ROWID
        return tuple(n for _, n, _ in pk)
    is_alias = len(pk) == 1 and pk[0][2].upper() == "INTEGER"
    # "INTEGER PRIMARY KEY DESC" is not the rowid: it shows as an index whose origin is 'pk'.
    indexes = conn.execute(f"PRAGMA main.index_list({quoted})").fetchall()
    if is_alias and not any(r[3] == "pk" for r in indexes):
        return (pk[0][1],)
    taken = {str(c[1]).lower() for c in columns}
    free = [n for n in _ROWID_NAMES if n not in taken]
    return (free[0],) if free else ()


# One value as the dump writes it: NULL, a number, a blob, text that was not valid in the
# database encoding, or quoted text with line breaks spliced in as char(n).
_TEXT_PART = rb"(?:'[^']*(?:''[^']*)*'|char\([0-9]+\))"
_LITERAL = re.compile(
    rb"NULL|-?[0-9][0-9.eE+-]*|X'[0-9a-fA-F]*'|CAST\(X'[0-9a-fA-F]*' AS TEXT\)|"
    + _TEXT_PART
    + rb"(?:\|\|"
    + _TEXT_PART
    + rb")*"
)
_INTEGER = re.compile(rb"-?[0-9]+")
_PIECE = re.compile(rb"'((?:[^']|'')*)'|char\(([0-9]+)\)")

# How a value sorts, the way SQLite orders mixed types: NULL, numbers, text, blobs.
_Value = Union[int, float, str, bytes]
_SortKey = tuple[int, tuple[tuple[int, _Value], ...]]
# A row's identity: a tag naming the key columns (so keys on other columns never match), and
# the key's literals as the dump wrote them.
_Match = tuple[str, tuple[bytes, ...]]
_CONFIG = "config"  # the tag of FTS5 settings rows
_UNREAD = "*"  # the tag of rows whose values could not be read: the whole text is the key


def _literals(line: bytes, start: int, count: int = -1) -> list[bytes] | None:
    """Split a row line's values, from just after "VALUES(", into (the first count) literals."""
    end = len(line) - 2
    if not line.endswith(b");"):
        return None
    literals: list[bytes] = []
    pos = start
    while True:
        m = _LITERAL.match(line, pos)
        if m is None:
            return None
        literals.append(m.group())
        pos = m.end()
        if pos == end or len(literals) == count:
            return literals
        if line[pos : pos + 1] != b",":
            return None
        pos += 1


def _text(literal: bytes) -> str | None:
    """Return the text of a text literal ('a'||char(10)), or None when it is not one."""
    if not literal.startswith((b"'", b"char(")):
        return None
    pieces = []
    for m in _PIECE.finditer(literal):
        quoted, code = m.group(1), m.group(2)
        if code is not None:
            pieces.append(chr(int(code)))
        else:
            pieces.append(quoted.replace(b"''", b"'").decode("utf-8", "surrogateescape"))
    return "".join(pieces)


def _sort_value(literal: bytes) -> tuple[int, _Value]:
    """Return how a literal sorts: (type rank, value)."""
    if literal == b"NULL":
        return (0, 0)
    if literal.startswith(b"X'"):
        return (3, bytes.fromhex(literal[2:-1].decode("ascii")))
    if literal.startswith(b"CAST("):
        raw = bytes.fromhex(literal[7:-10].decode("ascii"))
        return (2, raw.decode("utf-8", "surrogateescape"))
    text = _text(literal)
    if text is not None:
        return (2, text)
    if _INTEGER.fullmatch(literal):
        return (1, int(literal))
    try:
        return (1, float(literal))
    except ValueError:
        return (4, literal)


def _read_keys(
    lines: list[bytes], table: _Table | None, key: tuple[str, ...] | None
) -> list[_Match]:
    """Read the key of each row line of a table."""
    matches: list[_Match] = []
    last_prefix = b""
    tag, positions = _UNREAD, tuple[int, ...]()
    for line in lines:
        if not (last_prefix and line.startswith(last_prefix)):
            m = _ROW.match(line)
            if m is None:
                # Never stored by _parse; kept in step with lines all the same.
                matches.append((_UNREAD, (line,)))
                continue
            last_prefix = m.group(0)
            columns = [_unquote_bytes(c) for c in _COLUMN.findall(m.group(2))]
            tag, positions = _key_positions(columns, table, key)
        start = len(last_prefix)
        if positions == (0,):
            # The usual case, an integer rowid first: the other values need not be read.
            comma = line.find(b",", start)
            first = line[start : comma if comma >= 0 else len(line) - 2]
            if first.isdigit() or (first[:1] == b"-" and first[1:].isdigit()):
                matches.append((tag, (first,)))
                continue
        literals = _literals(line, start, max(positions) + 1 if positions else -1)
        if literals is None:
            matches.append((_UNREAD, (line[start - 1 : -1],)))
        elif positions:
            matches.append((tag, tuple(literals[i] for i in positions)))
        else:
            matches.append((tag, tuple(literals)))
    return matches


def _key_positions(
    columns: list[str], table: _Table | None, key: tuple[str, ...] | None
) -> tuple[str, tuple[int, ...]]:
    """Return the tag and the positions of the key among these columns (() means all)."""
    if table is not None and table.virtual and columns == [table.name, "rank"]:
        return _CONFIG, (0,)  # An FTS5 setting, keyed by its name.
    if key is None:
        key = (columns[0],) if columns[0] in _ROWID_NAMES else ()
    if key and all(k in columns for k in key):
        return "\x00".join(("key", *key)), tuple(columns.index(k) for k in key)
    # No key: the whole row is its identity.
    return "\x00".join(("row", *columns)), ()


def _key_text(match: _Match) -> str:
    """Show a key the way the dump writes its values: 42, 'a', ('a', 3)."""
    tag, literals = match
    parts = [lit.decode("utf-8", "replace") for lit in literals]
    text = parts[0] if len(parts) == 1 else "(" + ", ".join(parts) + ")"
    return f"config {text}" if tag == _CONFIG else text


def _sort_key(match: _Match) -> _SortKey:
    """Return how a key sorts: FTS5 settings first (as in the dump), then by value."""
    tag, literals = match
    return (0 if tag == _CONFIG else 1, tuple(_sort_value(lit) for lit in literals))


def _values_text(line: bytes) -> str:
    """Return the "(...)" after VALUES of a row line."""
    m = _ROW.match(line)
    return line[m.end() - 1 if m else 0 : -1].decode("utf-8", "replace")


# --- comparing ---------------------------------------------------------------------------


class _Side(NamedTuple):
    """One side of a table's comparison: the table (None when absent) and its key columns."""

    table: _Table | None
    key: tuple[str, ...] | None


# A row that differs: its kind, its key, and its line before and after.
_Event = tuple[str, _Match, Union[bytes, None], Union[bytes, None]]


def _diff_table(name: str, old: _Side, new: _Side, limit: int) -> TableDiff | None:
    """Compare one table across two dumps; None when it is the same."""
    old_lines = old.table.lines if old.table is not None else []
    new_lines = new.table.lines if new.table is not None else []
    if old.table is None or new.table is None:
        schema_changed = True
        status = "added" if old.table is None else "removed"
    else:
        schema_changed = old.table.sql != new.table.sql
        status = "modified"
        if not schema_changed and old_lines == new_lines:
            return None
    gone, came = _only_in(old_lines, new_lines)
    if gone and came:
        first_old, first_new, (added, changed, removed) = _pair(gone, came, old, new, limit)
    else:
        # Nothing to pair up: only the keys of the rows shown need reading.
        first_old = [
            ("removed", k, line, None)
            for k, line in zip(_read_keys(gone[:limit], old.table, old.key), gone)
        ]
        first_new = [
            ("added", k, None, line)
            for k, line in zip(_read_keys(came[:limit], new.table, new.key), came)
        ]
        added, changed, removed = len(came), 0, len(gone)
    # Each side lists its rows in key order (the dump's order), so the first rows overall are
    # among the first `limit` of each side.
    first = sorted(first_old + first_new, key=lambda e: _sort_key(e[1]))[:limit]
    return TableDiff(
        table=name,
        added=added,
        changed=changed,
        removed=removed,
        rows=tuple(
            RowChange(
                kind=kind,
                key=_key_text(match),
                old=None if a is None else _values_text(a),
                new=None if b is None else _values_text(b),
            )
            for kind, match, a, b in first
        ),
        schema_changed=schema_changed,
        status=status,
    )


def _pair(
    gone: list[bytes], came: list[bytes], old: _Side, new: _Side, limit: int
) -> tuple[list[_Event], list[_Event], tuple[int, int, int]]:
    """Pair the lines left on each side by key: the first events, and (added, changed, removed)."""
    old_keys = _read_keys(gone, old.table, old.key)
    new_keys = _read_keys(came, new.table, new.key)
    waiting: dict[_Match, list[int]] = {}
    for j, key in enumerate(new_keys):
        waiting.setdefault(key, []).append(j)
    paired: set[int] = set()
    first_old: list[_Event] = []
    for i, key in enumerate(old_keys):
        js = waiting.get(key)
        if js:
            # Repeated keys (only in keyless tables) pair up in order.
            j = js.pop(0)
            paired.add(j)
            if len(first_old) < limit:
                first_old.append(("changed", key, gone[i], came[j]))
        elif len(first_old) < limit:
            first_old.append(("removed", key, gone[i], None))
    first_new: list[_Event] = []
    for j, key in enumerate(new_keys):
        if len(first_new) >= limit:
            break
        if j not in paired:
            first_new.append(("added", key, None, came[j]))
    changed = len(paired)
    return first_old, first_new, (len(new_keys) - changed, changed, len(old_keys) - changed)


def _only_in(old: list[bytes], new: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """Return the lines only in old and only in new, in order, counting repeats."""
    old_set, new_set = set(old), set(new)
    if len(old_set) == len(old) and len(new_set) == len(new):
        return [x for x in old if x not in new_set], [x for x in new if x not in old_set]
    old_count, new_count = Counter(old), Counter(new)
    return list((old_count - new_count).elements()), list((new_count - old_count).elements())
