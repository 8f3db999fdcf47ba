"""Tests for vault.dumpdiff: real databases, dumped with snapshot_sqlite, changed, compared."""

from __future__ import annotations

import struct
from pathlib import Path

import apsw
import pytest

from vault.dumpdiff import RowChange, TableDiff, diff_dumps
from vault.errors import SqliteSnapshotError
from vault.sqlite_dump import snapshot_sqlite

def _vector(seed: int) -> bytes:
    """A small float32 embedding, as vector stores keep them."""
    return struct.pack("<8f", *(seed + i / 10 for i in range(8)))


def _make_db(path: Path) -> None:
    """A memory database with every kind of key: rowid, INTEGER PRIMARY KEY, composite."""
    db = apsw.Connection(str(path))
    db.execute(
        """
        CREATE TABLE notes(title TEXT, body TEXT);
        CREATE TABLE memories(content TEXT, id INTEGER PRIMARY KEY, embedding BLOB);
        CREATE TABLE facts(subject TEXT, n INTEGER, value, PRIMARY KEY(subject, n)) WITHOUT ROWID;
        CREATE TABLE empty(x);
        """
    )
    with db:
        for i in range(1, 6):
            db.execute("INSERT INTO notes(rowid, title, body) VALUES(?, ?, ?)",
                       (i, f"note {i}", f"line one\nline 'two' of {i}"))
            db.execute("INSERT INTO memories(id, content, embedding) VALUES(?, ?, ?)",
                       (i, f"memory {i}", _vector(i)))
        for subject in ("tea", "it's\nodd", "coffee"):
            for n in (2, 1):
                db.execute("INSERT INTO facts VALUES(?, ?, ?)", (subject, n, f"{subject}/{n}"))
    db.close()


def _change(path: Path, sql: str, *params: object) -> None:
    """Run SQL against the database file."""
    db = apsw.Connection(str(path))
    try:
        with db:
            db.execute(sql, params or None)
    finally:
        db.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A fresh memory database in tmp_path."""
    path = tmp_path / "memory.db"
    _make_db(path)
    return path


def _by_table(diffs: list[TableDiff]) -> dict[str, TableDiff]:
    return {d.table: d for d in diffs}


def _kinds(diff: TableDiff) -> list[tuple[str, str]]:
    return [(r.kind, r.key) for r in diff.rows]


def test_identical_dumps_give_no_difference(db: Path) -> None:
    assert diff_dumps(snapshot_sqlite(db), snapshot_sqlite(db)) == []
    assert diff_dumps(None, None) == []


def test_rowid_table_rows_added_changed_removed(db: Path) -> None:
    before = snapshot_sqlite(db)
    _change(db, "INSERT INTO notes(rowid, title, body) VALUES(42, 'new', 'it''s\nnew')")
    _change(db, "UPDATE notes SET body = 'edited' WHERE rowid = 3")
    _change(db, "DELETE FROM notes WHERE rowid IN (1, 5)")
    diffs = diff_dumps(before, snapshot_sqlite(db))
    assert [d.table for d in diffs] == ["notes"]
    notes = diffs[0]
    assert (notes.added, notes.changed, notes.removed) == (1, 1, 2)
    assert notes.status == "modified" and not notes.schema_changed
    assert _kinds(notes) == [("removed", "1"), ("changed", "3"), ("removed", "5"), ("added", "42")]
    assert notes.rows[1] == RowChange(
        "changed", "3", "(3,'note 3','line one'||char(10)||'line ''two'' of 3')",
        "(3,'note 3','edited')",
    )
    assert notes.rows[3].new == "(42,'new','it''s'||char(10)||'new')"
    assert notes.rows[3].old is None and notes.rows[0].new is None


def test_integer_primary_key_is_the_key_wherever_it_is(db: Path) -> None:
    before = snapshot_sqlite(db)
    _change(db, "UPDATE memories SET embedding = ? WHERE id = 2", _vector(99))
    _change(db, "UPDATE memories SET content = 'memory 4' WHERE id = 4")  # the same value
    _change(db, "DELETE FROM memories WHERE id = 5")
    _change(db, "INSERT INTO memories(id, content) VALUES(-7, 'negative')")
    memories = _by_table(diff_dumps(before, snapshot_sqlite(db)))["memories"]
    assert (memories.added, memories.changed, memories.removed) == (1, 1, 1)
    assert _kinds(memories) == [("added", "-7"), ("changed", "2"), ("removed", "5")]
    changed = memories.rows[1]
    assert changed.old == f"('memory 2',2,X'{_vector(2).hex()}')"
    assert changed.new == f"('memory 2',2,X'{_vector(99).hex()}')"


def test_without_rowid_table_keyed_by_its_primary_key(db: Path) -> None:
    before = snapshot_sqlite(db)
    _change(db, "UPDATE facts SET value = 'strange' WHERE subject = ? AND n = 1", "it's\nodd")
    _change(db, "DELETE FROM facts WHERE subject = 'tea' AND n = 2")
    _change(db, "INSERT INTO facts VALUES('coffee', 3, X'00ff')")
    _change(db, "INSERT INTO facts VALUES('a, b)', 1, NULL)")
    facts = _by_table(diff_dumps(before, snapshot_sqlite(db)))["facts"]
    assert (facts.added, facts.changed, facts.removed) == (2, 1, 1)
    assert _kinds(facts) == [
        ("added", "('a, b)', 1)"),
        ("added", "('coffee', 3)"),
        ("changed", "('it''s'||char(10)||'odd', 1)"),
        ("removed", "('tea', 2)"),
    ]
    assert facts.rows[1].new == "('coffee',3,X'00ff')"
    assert facts.rows[2].old == "('it''s'||char(10)||'odd',1,'it''s'||char(10)||'odd/1')"
    assert facts.rows[2].new == "('it''s'||char(10)||'odd',1,'strange')"


def test_new_and_dropped_tables(db: Path) -> None:
    before = snapshot_sqlite(db)
    _change(db, "CREATE TABLE tags(name TEXT PRIMARY KEY, n INT) WITHOUT ROWID")
    _change(db, "INSERT INTO tags VALUES('b', 2), ('a', 1)")
    _change(db, "DROP TABLE notes")
    _change(db, "DROP TABLE empty")
    diffs = _by_table(diff_dumps(before, snapshot_sqlite(db)))
    assert sorted(diffs) == ["empty", "notes", "tags"]
    tags = diffs["tags"]
    assert (tags.status, tags.schema_changed) == ("added", True)
    assert (tags.added, tags.changed, tags.removed) == (2, 0, 0)
    assert _kinds(tags) == [("added", "'a'"), ("added", "'b'")]
    notes = diffs["notes"]
    assert (notes.status, notes.schema_changed) == ("removed", True)
    assert (notes.added, notes.changed, notes.removed) == (0, 0, 5)
    assert [r.key for r in notes.rows] == ["1", "2", "3", "4", "5"]
    empty = diffs["empty"]
    assert (empty.status, empty.added, empty.removed, empty.rows) == ("removed", 0, 0, ())


def test_schema_change_rewrites_every_row(db: Path) -> None:
    before = snapshot_sqlite(db)
    _change(db, "ALTER TABLE memories ADD COLUMN source TEXT")
    _change(db, "ALTER TABLE empty ADD COLUMN y")
    diffs = _by_table(diff_dumps(before, snapshot_sqlite(db)))
    assert sorted(diffs) == ["empty", "memories"]
    memories = diffs["memories"]
    assert (memories.status, memories.schema_changed) == ("modified", True)
    assert (memories.added, memories.changed, memories.removed) == (0, 5, 0)
    assert memories.rows[0].new == f"('memory 1',1,X'{_vector(1).hex()}',NULL)"
    empty = diffs["empty"]
    assert empty.schema_changed and (empty.added, empty.changed, empty.removed) == (0, 0, 0)


def test_table_rebuilt_with_another_key_shows_removed_and_added(db: Path) -> None:
    before = snapshot_sqlite(db)
    _change(db, "DROP TABLE notes")
    _change(db, "CREATE TABLE notes(title TEXT PRIMARY KEY, body TEXT) WITHOUT ROWID")
    _change(db, "INSERT INTO notes VALUES('note 1', 'x')")
    notes = _by_table(diff_dumps(before, snapshot_sqlite(db)))["notes"]
    assert notes.status == "modified" and notes.schema_changed
    assert (notes.added, notes.changed, notes.removed) == (1, 0, 5)


def test_database_created_or_deleted(db: Path) -> None:
    dump = snapshot_sqlite(db)
    created = _by_table(diff_dumps(None, dump))
    assert sorted(created) == ["empty", "facts", "memories", "notes"]
    assert all(d.status == "added" and d.schema_changed for d in created.values())
    counts = {name: (d.added, d.changed, d.removed) for name, d in created.items()}
    assert counts == {
        "empty": (0, 0, 0), "facts": (6, 0, 0), "memories": (5, 0, 0), "notes": (5, 0, 0)
    }
    assert all(r.kind == "added" and r.old is None for d in created.values() for r in d.rows)

    deleted = _by_table(diff_dumps(dump, None))
    assert all(d.status == "removed" for d in deleted.values())
    counts = {name: (d.added, d.changed, d.removed) for name, d in deleted.items()}
    assert counts == {
        "empty": (0, 0, 0), "facts": (0, 0, 6), "memories": (0, 0, 5), "notes": (0, 0, 5)
    }
    assert _kinds(deleted["facts"])[0] == ("removed", "('coffee', 1)")


def test_limit_keeps_the_first_rows_in_key_order_and_counts_them_all(db: Path) -> None:
    before = snapshot_sqlite(db)
    _change(db, "DELETE FROM notes WHERE rowid = 2")
    for rowid in range(10, 61):
        _change(db, "INSERT INTO notes(rowid, title) VALUES(?, 'n')", rowid)
    _change(db, "UPDATE notes SET title = 'x' WHERE rowid = 4")
    after = snapshot_sqlite(db)
    notes = _by_table(diff_dumps(before, after, limit=4))["notes"]
    assert (notes.added, notes.changed, notes.removed) == (51, 1, 1)
    assert _kinds(notes) == [("removed", "2"), ("changed", "4"), ("added", "10"), ("added", "11")]
    assert _by_table(diff_dumps(before, after, limit=0))["notes"].rows == ()


def test_fts5_rows_settings_and_rebuild(tmp_path: Path) -> None:
    path = tmp_path / "fts.db"
    _change(path, "CREATE VIRTUAL TABLE search USING fts5(title, body)")
    _change(path, "CREATE TABLE docs(id INTEGER PRIMARY KEY, body TEXT)")
    _change(path, "CREATE VIRTUAL TABLE docs_fts USING fts5(body, content=docs, content_rowid=id)")
    _change(path, "INSERT INTO search(rowid, title, body) VALUES(1, 'a', 'cat'), (2, 'b', 'milk')")
    before = snapshot_sqlite(path)
    _change(path, "INSERT INTO search(search, rank) VALUES('pgsz', 8000)")
    _change(path, "UPDATE search SET body = 'cats' WHERE rowid = 2")
    _change(path, "INSERT INTO docs VALUES(1, 'alpha')")
    _change(path, "INSERT INTO docs_fts(docs_fts) VALUES('rebuild')")
    diffs = _by_table(diff_dumps(before, snapshot_sqlite(path)))
    # The full-text index itself is rebuilt on restore, so only rows show.
    assert sorted(diffs) == ["docs", "search"]
    search = diffs["search"]
    assert (search.added, search.changed, search.removed) == (1, 1, 0)
    assert _kinds(search) == [("added", "config 'pgsz'"), ("changed", "2")]
    assert search.rows[1].new == "(2,'b','cats')"

    created = _by_table(diff_dumps(None, before))
    assert sorted(created) == ["docs", "docs_fts", "search"]
    assert (created["search"].added, created["docs_fts"].added) == (2, 0)


def test_trigger_bodies_are_not_rows(db: Path) -> None:
    before = snapshot_sqlite(db)
    # A trigger body holds lines that look just like the dump's rows.
    _change(db, 'CREATE TRIGGER t AFTER INSERT ON notes BEGIN\n'
                'INSERT INTO "empty"("x") VALUES(1);\nEND')
    assert diff_dumps(before, snapshot_sqlite(db)) == []


def test_autoincrement_counters_and_hidden_rowids(tmp_path: Path) -> None:
    path = tmp_path / "odd.db"
    _change(path, "CREATE TABLE events(id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT)")
    _change(path, "CREATE TABLE shadowed(rowid, _rowid_, oid)")
    _change(path, "INSERT INTO shadowed VALUES(1, 2, 3), (1, 2, 3), (4, 5, 6)")
    before = snapshot_sqlite(path)
    _change(path, "INSERT INTO events(kind) VALUES('start')")
    # The real rowid cannot be named, so drop both copies of (1, 2, 3) and put one back.
    _change(path, "DELETE FROM shadowed WHERE rowid IN (1, 4)")
    _change(path, "INSERT INTO shadowed VALUES(1, 2, 3)")
    diffs = _by_table(diff_dumps(before, snapshot_sqlite(path)))
    assert sorted(diffs) == ["events", "shadowed", "sqlite_sequence"]
    sequence = diffs["sqlite_sequence"]
    assert (sequence.status, _kinds(sequence)) == ("added", [("added", "'events'")])
    # No rowid is kept for this table: a row is its values, and one copy of two went.
    shadowed = diffs["shadowed"]
    assert (shadowed.added, shadowed.changed, shadowed.removed) == (0, 0, 2)
    assert _kinds(shadowed) == [("removed", "(1, 2, 3)"), ("removed", "(4, 5, 6)")]


def test_not_a_dump_is_an_error(db: Path) -> None:
    with pytest.raises(SqliteSnapshotError, match="not a vault sqlite dump"):
        diff_dumps(b"CREATE TABLE t(x);\n", snapshot_sqlite(db))


def test_large_table_with_few_changes(tmp_path: Path) -> None:
    path = tmp_path / "big.db"
    db = apsw.Connection(str(path))
    db.execute("CREATE TABLE chunks(id INTEGER PRIMARY KEY, text TEXT, vector BLOB)")
    with db:
        db.executemany(
            "INSERT INTO chunks VALUES(?, ?, ?)",
            ((i, f"chunk number {i}", _vector(i % 97)) for i in range(1, 100_001)),
        )
    db.close()
    before = snapshot_sqlite(path)
    _change(path, "UPDATE chunks SET text = 'edited' WHERE id % 10000 = 5")
    chunks = _by_table(diff_dumps(before, snapshot_sqlite(path)))["chunks"]
    assert (chunks.added, chunks.changed, chunks.removed) == (0, 10, 0)
    assert [r.key for r in chunks.rows] == [str(i) for i in range(5, 100_000, 10_000)]


def test_rows_of_a_table_whose_names_hold_line_breaks(tmp_path: Path) -> None:
    """The dump writes names as they are, so a row of a table (or column) whose name holds a
    line break spans lines: its rows are compared like any others (before: left out, the
    table listed with no row changes)."""
    path = tmp_path / "m.db"
    _change(path, 'CREATE TABLE "t\nx"(id INTEGER PRIMARY KEY, "a\nb" TEXT)')
    _change(path, 'CREATE TABLE "k\r\n"("p\nq" TEXT PRIMARY KEY, v) WITHOUT ROWID')
    _change(path, "CREATE VIRTUAL TABLE \"f\nts\" USING fts5(body)")
    for i in (1, 2, 3):
        _change(path, 'INSERT INTO "t\nx" VALUES(?, ?)', i, f"row {i}")
        _change(path, 'INSERT INTO "k\r\n" VALUES(?, ?)', f"k{i}", i)
        _change(path, 'INSERT INTO "f\nts"(rowid, body) VALUES(?, ?)', i, f"text {i}")
    before = snapshot_sqlite(path)
    assert b'INSERT INTO "t\nx"("id","a\nb") VALUES(' in before
    _change(path, 'UPDATE "t\nx" SET "a\nb" = \'two\' WHERE id = 2')
    _change(path, 'DELETE FROM "t\nx" WHERE id = 3')
    _change(path, 'INSERT INTO "t\nx" VALUES(4, \'four\')')
    _change(path, 'UPDATE "k\r\n" SET v = 20 WHERE "p\nq" = \'k2\'')
    _change(path, 'DELETE FROM "f\nts" WHERE rowid = 1')
    diffs = _by_table(diff_dumps(before, snapshot_sqlite(path)))
    t = diffs["t\nx"]
    assert (t.added, t.changed, t.removed) == (1, 1, 1)
    assert _kinds(t) == [("changed", "2"), ("removed", "3"), ("added", "4")]
    assert (t.rows[0].old, t.rows[0].new) == ("(2,'row 2')", "(2,'two')")
    assert _kinds(diffs["k\r\n"]) == [("changed", "'k2'")]
    assert diffs["k\r\n"].rows[0].new == "('k2',20)"
    assert _kinds(diffs["f\nts"]) == [("removed", "1")]


def test_a_statement_the_diff_cannot_read_is_an_error_not_left_out(db: Path) -> None:
    dump = snapshot_sqlite(db)
    broken = dump.replace(b'INSERT INTO "notes"("rowid"', b'INSERT INTO "notes" ("rowid"', 1)
    with pytest.raises(SqliteSnapshotError, match="cannot read the dump's statement: "
                                                  "INSERT INTO \"notes\" "):
        diff_dumps(dump, broken)
