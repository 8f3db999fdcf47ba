"""A restored database is the one that was synced: full-text indexes whose content lives in
another table, FTS4 language ids, FTS5 locales, a write-protected WAL database; and a dry run
writes nothing to a database a crashed writer left with a hot journal."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import apsw
import pytest

from test_rollback_safety import unwritable
from vault.sqlite_dump import load_dump, snapshot_sqlite

Canon = dict[str, object]


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _canon(path: Path) -> Canon:
    """Everything stored in the file: settings, schema, and every row of every table (shadow
    tables included) with each value's type and exact bytes."""
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        out: Canon = {p: conn.execute(f"PRAGMA {p}").fetchall()
                      for p in ("page_size", "encoding", "journal_mode", "user_version")}
        out["schema"] = sorted(conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_schema").fetchall(), key=repr)
        out["integrity"] = conn.execute("PRAGMA integrity_check").fetchall()
        for name, wr in conn.execute("SELECT name, wr FROM pragma_table_list "
                                     "WHERE schema = 'main' AND type IN ('table', 'shadow') "
                                     "AND name NOT LIKE 'sqlite%'").fetchall():
            cols = [str(r[1]) for r in conn.execute(f"PRAGMA table_xinfo({_q(name)})")]
            values = ", ".join(f"typeof({_q(c)}), hex(CAST({_q(c)} AS BLOB))" for c in cols)
            rowid = "" if wr else "_rowid_, "
            out[f"rows {name}"] = sorted(conn.execute(
                f"SELECT {rowid}{values} FROM {_q(name)}").fetchall(), key=repr)
        return out
    finally:
        conn.close()


def _make(path: Path, script: str) -> None:
    conn = apsw.Connection(str(path))  # (FTS5 locale=1 needs a newer SQLite than Python's)
    conn.execute(script)
    conn.close()


def _match(path: Path, table: str, words: str) -> list[object]:
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return conn.execute(f"SELECT rowid FROM {table} WHERE {table} MATCH ? ORDER BY rowid",
                            (words,)).fetchall()
    finally:
        conn.close()


def _round_trip(src: Path, tmp_path: Path) -> tuple[bytes, Path]:
    """Snapshot src, rebuild it from the dump; the dump is the same when taken again and when
    taken of the rebuilt file."""
    dump = snapshot_sqlite(src)
    back = tmp_path / f"back-{src.name}"
    load_dump(dump, back)
    assert snapshot_sqlite(src) == dump
    assert snapshot_sqlite(back) == dump
    return dump, back


# --- external content full-text indexes ----------------------------------------------------

EXTERNAL = {
    # The application renamed the content table: a rebuild finds no table.
    "renamed": ("""
        CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT);
        CREATE VIRTUAL TABLE notes_fts USING fts5(body, content='notes', content_rowid='id');
        INSERT INTO notes VALUES(1, 'remember the milk');
        INSERT INTO notes_fts(rowid, body) SELECT id, body FROM notes;
        ALTER TABLE notes RENAME TO notes_v2;
        """, "notes_fts", "milk"),
    # The content table has no column of the index's name: the application feeds it itself.
    "other column": ("""
        CREATE TABLE notes(id INTEGER PRIMARY KEY, raw TEXT);
        CREATE VIRTUAL TABLE notes_fts USING fts5(body, content='notes', content_rowid='id');
        INSERT INTO notes VALUES(1, 'remember the milk');
        INSERT INTO notes_fts(rowid, body) SELECT id, lower(raw) FROM notes;
        """, "notes_fts", "milk"),
    # The application indexed only some rows: a rebuild would index all of them.
    "some rows": ("""
        CREATE TABLE docs(id INTEGER PRIMARY KEY, body TEXT);
        INSERT INTO docs VALUES(1, 'alpha milk'), (2, 'beta milk'), (3, 'gamma milk');
        CREATE VIRTUAL TABLE docs_fts USING fts5(body, content='docs', content_rowid='id');
        INSERT INTO docs_fts(rowid, body) SELECT id, body FROM docs WHERE id <= 2;
        """, "docs_fts", "milk"),
}
# (An FTS4 index that does not match its content table fails PRAGMA integrity_check, so the
# snapshot: such a table never reaches the dump.)


@pytest.mark.parametrize("case", sorted(EXTERNAL))
def test_an_external_content_index_a_rebuild_would_not_make_comes_back_as_it_was(
        tmp_path: Path, case: str) -> None:
    """Before, the dump rebuilt every external-content index from its content table on
    restore: 'bad dump: no such table: main.notes' (or no such column), or a restored index
    that found rows the original did not. Such an index is kept as it is now."""
    script, table, words = EXTERNAL[case]
    src = tmp_path / "memory.db"
    _make(src, script)
    dump, back = _round_trip(src, tmp_path)
    assert f"INSERT INTO {_q(table)}({_q(table)}) VALUES('rebuild');".encode() not in dump
    assert _canon(back) == _canon(src)
    assert _match(back, table, words) == _match(src, table, words)


def test_an_external_content_index_a_rebuild_makes_again_is_still_rebuilt(
        tmp_path: Path) -> None:
    """The usual case keeps its small, diffable dump: rows, and a rebuild on restore."""
    src = tmp_path / "memory.db"
    _make(src, """
        CREATE TABLE docs(id INTEGER PRIMARY KEY, body TEXT);
        INSERT INTO docs VALUES(1, 'alpha milk'), (2, 'beta'), (3, 'gamma milk');
        CREATE VIRTUAL TABLE docs_fts USING fts5(body, content='docs', content_rowid='id');
        INSERT INTO docs_fts(docs_fts) VALUES('rebuild');
        CREATE VIRTUAL TABLE d4 USING fts4(body, content='docs');
        INSERT INTO d4(d4) VALUES('rebuild');
        """)
    dump, back = _round_trip(src, tmp_path)
    lines = dump.decode().splitlines()
    assert """INSERT INTO "docs_fts"("docs_fts") VALUES('rebuild');""" in lines
    assert """INSERT INTO "d4"("d4") VALUES('rebuild');""" in lines
    assert not any(line.startswith(('INSERT INTO "docs_fts_', 'INSERT INTO "d4_'))
                   for line in lines)
    assert _match(back, "docs_fts", "milk") == [(1,), (3,)]
    assert _match(back, "d4", "milk") == [(1,), (3,)]


# --- FTS4 languageid, FTS5 locales ------------------------------------------------------------


def test_fts4_language_ids_are_kept(tmp_path: Path) -> None:
    """Before, the languageid column was left out of the rows: every row came back as
    language 0, where a query for its language no longer found it."""
    src = tmp_path / "memory.db"
    _make(src, """
        CREATE VIRTUAL TABLE f4 USING fts4(a, b, languageid="lid");
        INSERT INTO f4(docid, a, b, lid) VALUES(3, 'hello', 'zz', 7), (4, 'hello', 'yy', 0);
        """)
    dump, back = _round_trip(src, tmp_path)
    assert """INSERT INTO "f4"("rowid","a","b","lid") VALUES(3,'hello','zz',7);""" in \
        dump.decode().splitlines()
    conn = sqlite3.connect(back)
    assert conn.execute("SELECT docid, lid FROM f4 ORDER BY docid").fetchall() == [(3, 7), (4, 0)]
    assert conn.execute("SELECT docid FROM f4 WHERE f4 MATCH 'hello' AND lid = 7").fetchall() \
        == [(3,)]
    conn.close()


def test_fts5_locales_are_kept(tmp_path: Path) -> None:
    """Before, a locale=1 table's rows came back without their locales (read through the
    table, a value is its text alone)."""
    src = tmp_path / "memory.db"
    _make(src, """
        CREATE VIRTUAL TABLE fl USING fts5(a, b, locale=1);
        INSERT INTO fl(rowid, a, b) VALUES(1, fts5_locale('en_US', 'hello world'), 'plain');
        INSERT INTO fl(rowid, a, b) VALUES(2, 'it''s', fts5_locale('de', 'grüße'));
        """)
    dump, back = _round_trip(src, tmp_path)
    lines = dump.decode().splitlines()
    assert """INSERT INTO "fl"("rowid","a","b") VALUES(1,fts5_locale('en_US','hello world'),""" \
           """'plain');""" in lines
    assert """INSERT INTO "fl"("rowid","a","b") VALUES(2,'it''s',fts5_locale('de','grüße'));""" \
        in lines
    # (The index itself is rebuilt from the rows, in one segment: its pages differ, its
    # content does not.)
    restored, original = _canon(back), _canon(src)
    for key in ("schema", "integrity", "rows fl_content", "rows fl_docsize", "rows fl_config"):
        assert restored[key] == original[key], key
    assert _match(back, "fl", "hello") == _match(src, "fl", "hello") == [(1,)]
    conn = apsw.Connection(str(back))
    assert conn.execute("SELECT rowid, fts5_get_locale(fl, 0), fts5_get_locale(fl, 1), a, b "
                        "FROM fl ORDER BY rowid").fetchall() == \
        [(1, "en_US", None, "hello world", "plain"), (2, None, "de", "it's", "grüße")]
    conn.close()


# --- a write-protected WAL database ------------------------------------------------------------


def test_a_write_protected_wal_database_comes_back_in_wal_mode(tmp_path: Path) -> None:
    """Read as immutable, SQLite says journal_mode 'delete': the dump said DELETE, the restored
    file was not in WAL mode, and the next sync once writable committed a change."""
    db = tmp_path / "memory.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE m(id INTEGER PRIMARY KEY, content TEXT)")
    conn.execute("INSERT INTO m(content) VALUES ('kept')")
    conn.close()
    writable = snapshot_sqlite(db)
    with unwritable(db):
        assert not os.access(db, os.W_OK)
        protected = snapshot_sqlite(db)
    assert b"PRAGMA journal_mode=WAL;\n" in protected
    assert protected == writable
    back = tmp_path / "back.db"
    load_dump(protected, back)
    conn = sqlite3.connect(back)
    assert conn.execute("PRAGMA journal_mode").fetchall() == [("wal",)]
    conn.close()


# --- a hot journal under a dry run -------------------------------------------------------------


def _crashed_writer(tmp_path: Path) -> Path:
    """A database whose writer died mid-transaction: its changed pages in the file, the
    original ones in a hot -journal beside it."""
    live = tmp_path / "live.db"
    conn = sqlite3.connect(live)
    conn.execute("CREATE TABLE t(a)")
    conn.executemany("INSERT INTO t VALUES(?)", [(i,) for i in range(20000)])
    conn.commit()
    conn.execute("PRAGMA cache_size=10")  # spill the change to the file before commit
    conn.execute("UPDATE t SET a = a + 1000000")
    assert Path(f"{live}-journal").exists()
    folder = tmp_path / "crashed"
    folder.mkdir()
    crashed = folder / "memory.db"
    shutil.copy(live, crashed)
    shutil.copy(f"{live}-journal", f"{crashed}-journal")
    conn.rollback()
    conn.close()
    return crashed


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_dry_run_leaves_a_hot_journal_and_its_database_as_they_are(tmp_path: Path) -> None:
    """Before, a dry run (and vault status) rolled the journal back in the user's folder: the
    file's bytes changed and the -journal was deleted. It reads a rolled-back copy now; a
    real sync still rolls back in place, as any SQLite client opening the file would."""
    crashed = _crashed_writer(tmp_path)
    before = _files(crashed.parent)
    dump = snapshot_sqlite(crashed, dry_run=True)
    assert _files(crashed.parent) == before
    back = tmp_path / "back.db"
    load_dump(dump, back)
    conn = sqlite3.connect(back)
    assert conn.execute("SELECT count(*), max(a) FROM t").fetchone() == (20000, 19999)
    conn.close()
    # The same dump as the real sync's, which rolls the journal back in place.
    assert snapshot_sqlite(crashed) == dump
    assert sorted(os.listdir(crashed.parent)) == ["memory.db"]


def test_status_scan_and_sync_dry_run_leave_a_hot_journal_as_it_is(tmp_path: Path) -> None:
    """Through the CLI: `vault status`, `secrets scan` and `sync --dry-run` rolled the journal
    back in the user's folder; the real sync after them stores the same rolled-back state."""
    from conftest import run_cli, write_config

    crashed = _crashed_writer(tmp_path)
    config = write_config(tmp_path / "vault.toml", {"agent": crashed.parent})
    env = {"VAULT_CONFIG": str(config)}
    assert run_cli("init", env=env).returncode == 0
    before = _files(crashed.parent)
    for args in (["secrets", "scan"], ["status"], ["sync", "--dry-run"]):
        proc = run_cli(*args, env=env)
        assert proc.returncode == 0, (args, proc.stderr)
        assert _files(crashed.parent) == before, args
    assert "A agent/memory.db" in proc.stdout
    proc = run_cli("sync", env=env)
    assert proc.returncode == 0, proc.stderr
    shown = run_cli("show", "agent/memory.db", "--sql", "SELECT count(*), max(a) FROM t", env=env)
    assert shown.stdout.splitlines()[-1].split() == ["20000", "19999"], shown.stdout
