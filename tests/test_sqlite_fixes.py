"""Databases a snapshot once refused, or judged wrongly: real SQLite files made with apsw."""

from __future__ import annotations

from pathlib import Path

import apsw
import pytest

from conftest import Clock, age, write_config
from vault.config import load_config
from vault.errors import SqliteSnapshotError
from vault.repo import VaultRepo
from vault.sqlite_dump import NEEDS_APPLICATION, _snapshot_error, load_dump, snapshot_sqlite
from vault.sync import sync


def _app_tokenizer(conn: apsw.Connection) -> None:
    """The application's own FTS5 tokenizer (vault never has it)."""
    conn.register_fts5_tokenizer(
        "apptok", lambda con, args: con.fts5_tokenizer("unicode61", list(args)))


def _make_fts5_app_db(path: Path) -> None:
    conn = apsw.Connection(str(path))
    _app_tokenizer(conn)
    conn.execute("CREATE TABLE mem(id INTEGER PRIMARY KEY, body TEXT);"
                 "CREATE VIRTUAL TABLE mem_fts USING fts5(body, tokenize='apptok');"
                 "INSERT INTO mem VALUES (1, 'first memory'), (2, 'user prefers dark mode');"
                 "INSERT INTO mem_fts(rowid, body) SELECT id, body FROM mem;")
    conn.close()


def test_fts5_with_the_applications_tokenizer_is_stored_and_comes_back(
        tmp_path: Path, clock: Clock) -> None:
    """Its integrity check needs the tokenizer (a bare "SQL logic error" here): the database
    was never backed up, and the sync said nothing. Now its index is kept as it is stored
    (shadow tables), the rest of the file is checked, and a restore works in the app."""
    src = tmp_path / "src"
    src.mkdir()
    db = src / "memory.db"
    _make_fts5_app_db(db)
    config = load_config(write_config(tmp_path / "vault.toml", {"a": src}))
    repo, _ = VaultRepo.init(config.vault.path, config.vault.branch)

    result = sync(config, now=clock)
    assert result.ok and result.skipped == () and result.added == ("a/memory.db",)
    dump = repo.read_blob(repo.files(repo.head_id())["a/memory.db"][0])
    assert b"VALUES(2,'user prefers dark mode');" in dump
    assert snapshot_sqlite(db) == dump  # (deterministic)

    restored = tmp_path / "restored.db"
    assert load_dump(dump, restored) == ()
    assert snapshot_sqlite(restored) == dump  # what restore and the drill compare
    app = apsw.Connection(str(restored))
    _app_tokenizer(app)
    assert app.execute("SELECT rowid FROM mem_fts WHERE mem_fts MATCH 'dark'").fetchall() == [
        (2,)]
    app.execute("INSERT INTO mem_fts(mem_fts) VALUES('integrity-check')")
    assert app.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    app.close()


def test_damage_beside_a_table_only_the_application_can_check_is_still_found(
        tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    _make_fts5_app_db(db)
    conn = apsw.Connection(str(db))
    conn.config(apsw.SQLITE_DBCONFIG_DEFENSIVE, 0)
    conn.execute("CREATE TABLE p(x INTEGER, y INTEGER); CREATE INDEX pi ON p(x);"
                 "INSERT INTO p VALUES (1, 10), (2, 20);"
                 "PRAGMA writable_schema=ON;"
                 "UPDATE sqlite_schema SET sql = 'CREATE INDEX pi ON p(y)' WHERE name = 'pi';")
    conn.close()
    with pytest.raises(SqliteSnapshotError, match="integrity check failed: .*index pi"):
        snapshot_sqlite(db)


def test_fts4_with_a_tokenizer_only_the_application_has_is_stored(tmp_path: Path) -> None:
    db = tmp_path / "f4.db"
    conn = apsw.Connection(str(db))
    conn.config(apsw.SQLITE_DBCONFIG_DEFENSIVE, 0)
    conn.execute("CREATE VIRTUAL TABLE f USING fts4(body, tokenize=simple);"
                 "INSERT INTO f VALUES ('hello world');"
                 "PRAGMA writable_schema=ON;"  # (its application registered 'apptok')
                 "UPDATE sqlite_schema SET sql = replace(sql, 'simple', 'apptok') "
                 "WHERE name = 'f';")
    conn.close()
    dump = snapshot_sqlite(db)
    assert b"VALUES(1,'hello world');" in dump
    restored = tmp_path / "r.db"
    load_dump(dump, restored)
    assert snapshot_sqlite(restored) == dump


def test_a_bare_sql_logic_error_is_the_applications_code_and_fails_the_sync() -> None:
    """What is left of a module's error once its tables are left to the application: a
    failure that will not fix itself (sync counts it), not a silent skip."""
    error = _snapshot_error(Path("m.db"), apsw.SQLError("SQL logic error"), 1000)
    assert error.message == f"{NEEDS_APPLICATION}SQL logic error"


def _wal_without_shm(db: Path) -> None:
    """A WAL database whose last rows are only in its -wal, and no -shm: copied without it
    (a backup tool that skips -shm files)."""
    conn = apsw.Connection(str(db))
    list(conn.execute("PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;"
                      "CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT);"
                      "INSERT INTO t VALUES (1, 'only in the wal');"))
    copies = {suffix: Path(f"{db}{suffix}").read_bytes() for suffix in ("", "-wal")}
    conn.close()  # (checkpoints, and removes the -wal and -shm)
    for suffix, data in copies.items():
        Path(f"{db}{suffix}").write_bytes(data)
    assert not Path(f"{db}-shm").exists()


def test_a_wal_without_its_shm_is_read_and_never_checkpointed(
        tmp_path: Path, clock: Clock) -> None:
    """A dry run (vault status) and a sync used to write the -wal into the database file and
    delete it: the snapshot's connection, the last to close, checkpointed it."""
    src = tmp_path / "src"
    src.mkdir()
    db = src / "m.db"
    _wal_without_shm(db)
    main, wal = db.read_bytes(), Path(f"{db}-wal").read_bytes()
    config = load_config(write_config(tmp_path / "vault.toml", {"a": src}))
    VaultRepo.init(config.vault.path, config.vault.branch)

    from vault.sync import SyncOptions

    assert sync(config, SyncOptions(dry_run=True), now=clock).added == ("a/m.db",)
    assert b"'only in the wal'" in snapshot_sqlite(db)
    assert sync(config, now=clock).added == ("a/m.db",)
    assert db.read_bytes() == main and Path(f"{db}-wal").read_bytes() == wal
    assert sorted(p.name for p in src.iterdir()) == ["m.db", "m.db-wal"]  # (no -shm left)


def _edit_schema(conn: apsw.Connection, name: str, sql: str) -> None:
    """Change a table's stored CREATE statement in place, as some migration tools do."""
    conn.config(apsw.SQLITE_DBCONFIG_DEFENSIVE, 0)
    conn.execute("PRAGMA writable_schema=ON")
    conn.execute("UPDATE sqlite_schema SET sql = ? WHERE name = ?", (sql, name))
    conn.execute("PRAGMA writable_schema=OFF")


def test_a_row_that_breaks_its_check_is_backed_up_and_never_rolled_back(
        tmp_path: Path, clock: Clock) -> None:
    """Written under PRAGMA ignore_check_constraints: integrity_check lists it, but the file
    is sound. It was called corrupt, and auto_rollback put an older copy in its place."""
    src = tmp_path / "src"
    src.mkdir()
    db = src / "memory.db"
    conn = apsw.Connection(str(db))
    conn.execute("CREATE TABLE facts(id INTEGER PRIMARY KEY, body TEXT, "
                 "score REAL CHECK (score BETWEEN 0 AND 1));"
                 "INSERT INTO facts VALUES (1, 'likes tea', 0.9);")
    config = load_config(write_config(tmp_path / "vault.toml", {"a": src},
                                      extra="[health]\nauto_rollback = true"))
    repo, _ = VaultRepo.init(config.vault.path, config.vault.branch)
    assert sync(config, now=clock).ok
    conn.execute("PRAGMA ignore_check_constraints=ON;"
                 "INSERT INTO facts VALUES (2, 'new important fact', 1.5);")
    conn.close()
    age(db)

    clock.tick()
    result = sync(config, now=clock)
    assert result.ok and result.corrupt == () and result.rollbacks == ()
    assert result.modified == ("a/memory.db",)
    dump = repo.read_blob(repo.files(repo.head_id())["a/memory.db"][0])
    assert b"VALUES(2,'new important fact',1.5);" in dump
    conn = apsw.Connection(str(db))
    assert conn.execute("SELECT id FROM facts").fetchall() == [(1,), (2,)]  # (left in place)
    conn.close()
    restored = tmp_path / "restored.db"
    load_dump(dump, restored)
    assert snapshot_sqlite(restored) == dump


def test_a_null_in_a_not_null_column_is_backed_up_and_restored_as_it_was(
        tmp_path: Path) -> None:
    db = tmp_path / "n.db"
    conn = apsw.Connection(str(db))
    conn.execute("CREATE TABLE n(id INTEGER PRIMARY KEY, body TEXT, tag TEXT UNIQUE);"
                 "INSERT INTO n VALUES (1, NULL, 'a'), (2, 'two', 'b');")
    schema = "CREATE TABLE n(id INTEGER PRIMARY KEY, body TEXT NOT NULL, tag TEXT UNIQUE)"
    _edit_schema(conn, "n", schema)
    conn.close()
    dump = snapshot_sqlite(db)  # (was: integrity check failed: NULL value in n.body)
    restored = tmp_path / "r.db"
    load_dump(dump, restored)  # (a plain replay fails: NOT NULL constraint failed)
    assert snapshot_sqlite(restored) == dump
    conn = apsw.Connection(str(restored))
    assert conn.execute("SELECT * FROM n ORDER BY id").fetchall() == [
        (1, None, "a"), (2, "two", "b")]
    assert conn.execute("SELECT sql FROM sqlite_schema WHERE name = 'n'").fetchall() == [
        (schema,)]
    conn.close()


def test_damage_after_more_broken_rules_than_the_check_lists_is_still_found(
        tmp_path: Path) -> None:
    """integrity_check lists 100 lines: 150 rows that break NOT NULL come first, then the
    index that lost a row."""
    db = tmp_path / "n.db"
    conn = apsw.Connection(str(db))
    conn.execute("CREATE TABLE n(id INTEGER PRIMARY KEY, body TEXT, x INT, y INT);"
                 "CREATE INDEX nx ON n(x);")
    with conn:
        for i in range(1, 152):
            conn.execute("INSERT INTO n VALUES (?, NULL, ?, ?)", (i, i, i if i < 151 else -1))
    _edit_schema(conn, "n", "CREATE TABLE n(id INTEGER PRIMARY KEY, body TEXT NOT NULL, "
                            "x INT, y INT)")
    _edit_schema(conn, "nx", "CREATE INDEX nx ON n(y)")  # (row 151's entry is not there)
    conn.close()
    with pytest.raises(SqliteSnapshotError,
                       match="integrity check failed: row 151 missing from index nx"):
        snapshot_sqlite(db)


@pytest.mark.parametrize("sql,relaxed", [
    ("CREATE TABLE t(a NOT NULL, b)", "CREATE TABLE t(a , b)"),
    ("CREATE TABLE t(a INT CONSTRAINT nn NOT NULL ON CONFLICT IGNORE DEFAULT 1)",
     "CREATE TABLE t(a INT  DEFAULT 1)"),
    ("CREATE TABLE t(a CHECK (a NOT NULL), \"not null\" TEXT)",
     "CREATE TABLE t(a CHECK (a NOT NULL), \"not null\" TEXT)"),
])
def test_not_null_is_taken_out_of_column_definitions_only(sql: str, relaxed: str) -> None:
    from vault.sqlite_dump import _without_not_null

    assert _without_not_null(sql) == relaxed


def test_names_with_line_breaks_in_the_dumps_comments_restore(tmp_path: Path) -> None:
    """A name was written as it is into a `-- name: ...` comment line: its newline ended the
    comment, the rest became SQL, and the dump sync stored could never be restored."""
    db = tmp_path / "o.db"
    conn = apsw.Connection(str(db))
    conn.execute('CREATE VIRTUAL TABLE "geo\nidx" USING rtree(id, x0, x1);'
                 'INSERT INTO "geo\nidx" VALUES (1, 0, 1);'
                 'CREATE TABLE "odd\r\nrows"(rowid, _rowid_, oid);'  # (its rowid has no name)
                 "INSERT INTO \"odd\r\nrows\" VALUES (1, 2, 3);")
    conn.close()
    dump = snapshot_sqlite(db)
    assert b'-- "geo\\nidx": module data is kept' in dump
    restored = tmp_path / "r.db"
    load_dump(dump, restored)
    assert snapshot_sqlite(restored) == dump
    conn = apsw.Connection(str(restored))
    assert conn.execute('SELECT id FROM "geo\nidx" WHERE x0 <= 0.5').fetchall() == [(1,)]
    assert conn.execute('SELECT * FROM "odd\r\nrows"').fetchall() == [(1, 2, 3)]
    conn.close()
