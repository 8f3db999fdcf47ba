"""Databases that use a collation only their application registers: stored, restored, queried.

The databases are made the way an agent makes them, with Python's sqlite3 and create_collation;
vault never has the collation, and stands in for it (sqlite_dump.StandIns).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from vault.dbbuild import build
from vault.errors import SqliteSnapshotError
from vault.restore_db import restore_sqlite_file
from vault.show import query_dump
from vault.sqlite_dump import NEEDS_APPLICATION, load_dump, reindex_warning, snapshot_sqlite

REPO = Path(__file__).resolve().parent.parent


def agentcoll(a: str, b: str) -> int:
    """The application's collation: case-insensitive (so its order is not code point order)."""
    return (a.lower() > b.lower()) - (a.lower() < b.lower())


def app_connect(path: Path) -> sqlite3.Connection:
    """The database as its application opens it: with its collation registered."""
    conn = sqlite3.connect(path)
    conn.create_collation("agentcoll", agentcoll)
    return conn


NAMES = ["B", "a", "C", "d", "Émile", "zoë", "Ω", "x y"]

SCHEMA = """
CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT COLLATE agentcoll);
CREATE INDEX ti ON t(name);
CREATE TABLE k(name TEXT PRIMARY KEY COLLATE agentcoll, v INTEGER);
CREATE TABLE w(name TEXT COLLATE agentcoll, n INTEGER, v TEXT, PRIMARY KEY(name, n)) WITHOUT ROWID;
CREATE TABLE u(id INTEGER PRIMARY KEY AUTOINCREMENT,
               tag TEXT COLLATE agentcoll UNIQUE CHECK (tag >= 'a'));
CREATE TABLE log(what TEXT);
CREATE VIEW sorted AS SELECT name FROM t ORDER BY name COLLATE agentcoll;
CREATE TRIGGER t_log AFTER INSERT ON t BEGIN
  INSERT INTO log(what) VALUES (new.name COLLATE agentcoll);
END;
"""


def make_app_db(path: Path) -> None:
    conn = app_connect(path)
    conn.executescript(SCHEMA)
    for i, name in enumerate(NAMES):
        conn.execute("INSERT INTO t(name) VALUES (?)", (name,))
        conn.execute("INSERT INTO k VALUES (?, ?)", (name, i))
        conn.execute("INSERT INTO w VALUES (?, ?, ?)", (name, i % 2, f"v{i}"))
        # 'B' >= 'a' only case-insensitively: the CHECK holds for the application alone
        conn.execute("INSERT INTO u(tag) VALUES (?)", (name,))
    conn.execute("DELETE FROM u WHERE tag = 'x y'")  # the AUTOINCREMENT counter stays above
    conn.commit()
    conn.close()


def tables(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows (rowid included), read the way the application reads them."""
    conn = app_connect(path)
    try:
        names = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        out: dict[str, list[tuple[Any, ...]]] = {}
        for name in names:
            key = "name, n" if name == "w" else "rowid"
            out[name] = sorted(conn.execute(f'SELECT * FROM "{name}" ORDER BY {key}'),
                               key=repr)
        return out
    finally:
        conn.close()


def schema(path: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    finally:
        conn.close()


def test_snapshot_keeps_schema_and_every_row(tmp_path: Path) -> None:
    src = tmp_path / "c.db"
    make_app_db(src)
    dump = snapshot_sqlite(src)
    text = dump.decode()
    assert "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT COLLATE agentcoll);" in text
    assert "CREATE INDEX ti ON t(name);" in text
    assert "CREATE VIEW sorted AS SELECT name FROM t ORDER BY name COLLATE agentcoll;" in text
    assert "new.name COLLATE agentcoll" in text
    for name in NAMES:
        assert f"VALUES('{name}'," in text or f",'{name}')" in text
    # An unchanged database gives the same bytes.
    assert snapshot_sqlite(src) == dump

    restored = tmp_path / "restored.db"
    assert load_dump(dump, restored) == ("agentcoll",)
    assert schema(restored) == schema(src)
    assert tables(restored) == tables(src)
    # The rebuilt file's indexes follow the stand-in: the application's REINDEX makes them
    # its own, and then the file passes its check under the real collation.
    conn = app_connect(restored)
    conn.execute("REINDEX agentcoll")
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert conn.execute("SELECT v FROM k WHERE name = 'ÉMILE'").fetchall() == [(4,)]
    assert [r[0] for r in conn.execute("SELECT name FROM sorted")] == \
        sorted(NAMES, key=str.lower)
    conn.close()
    assert tables(restored) == tables(src)


def test_dump_does_not_depend_on_the_order_a_file_keeps(tmp_path: Path) -> None:
    """Rows of a WITHOUT ROWID table keyed by the collation are dumped in one order whether the
    file keeps them in the application's order or in the stand-in's (a restored copy)."""
    src = tmp_path / "c.db"
    make_app_db(src)
    dump = snapshot_sqlite(src)
    restored = tmp_path / "restored.db"
    load_dump(dump, restored)
    assert snapshot_sqlite(restored) == dump  # before the application's REINDEX
    conn = app_connect(restored)
    conn.execute("REINDEX agentcoll")
    conn.commit()
    conn.close()
    assert snapshot_sqlite(restored) == dump  # and after it


def test_real_damage_is_still_found(tmp_path: Path) -> None:
    """With a stand-in, the tables that do not use it still get the full check."""
    src = tmp_path / "c.db"
    make_app_db(src)
    conn = app_connect(src)
    conn.executescript("""
        CREATE TABLE p(x INTEGER, y INTEGER); CREATE INDEX pi ON p(x);
        INSERT INTO p VALUES (1, 10), (2, 20);
        PRAGMA writable_schema = ON;
        UPDATE sqlite_master SET sql = 'CREATE INDEX pi ON p(y)' WHERE name = 'pi';
    """)
    conn.commit()
    conn.close()
    with pytest.raises(SqliteSnapshotError, match="integrity check failed: .*index pi"):
        snapshot_sqlite(src)


def test_application_function_says_what_it_needs(tmp_path: Path) -> None:
    """No stand-in can compute a function only the application has: the snapshot says so,
    with a message a sync can count as a failure that will not fix itself."""
    src = tmp_path / "f.db"
    conn = sqlite3.connect(src)
    conn.create_function("agentfn", 1, lambda x: x, deterministic=True)
    conn.executescript("CREATE TABLE f(a); CREATE INDEX fi ON f(agentfn(a)); "
                       "INSERT INTO f VALUES (1);")
    conn.commit()
    conn.close()
    with pytest.raises(SqliteSnapshotError) as caught:
        snapshot_sqlite(src)
    assert caught.value.message.startswith(NEEDS_APPLICATION)
    assert "agentfn" in caught.value.message


def test_show_sql_queries_a_database_with_the_collation(tmp_path: Path) -> None:
    src = tmp_path / "c.db"
    make_app_db(src)
    dump = snapshot_sqlite(src)
    result = query_dump(dump, "SELECT name FROM t WHERE name > 'a' ORDER BY name")
    assert {r[0] for r in result.rows} <= set(NAMES) and result.rows
    assert query_dump(dump, "SELECT count(*) FROM sorted").rows == ((len(NAMES),),)


def test_restore_helpers_name_the_collation(tmp_path: Path) -> None:
    src = tmp_path / "c.db"
    make_app_db(src)
    dump = snapshot_sqlite(src)
    target = tmp_path / "live.db"
    assert restore_sqlite_file(dump, target) == ("agentcoll",)
    assert tables(target) == tables(src)
    assert reindex_warning("a/c.db", ("agentcoll",)) == (
        "a/c.db uses collation agentcoll, which only the application knows: the indexes that "
        "use it were rebuilt with a stand-in; the application must run REINDEX agentcoll "
        "before using it")


def run_vault(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vault", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_sync_stores_it_and_restore_brings_it_back(tmp_path: Path) -> None:
    """The QA engineer's case, through the CLI: the database is stored (exit 0, nothing
    skipped), and `vault restore --to` rebuilds it with every row."""
    source = tmp_path / "src" / "a"
    source.mkdir(parents=True)
    config = tmp_path / "vault.toml"
    config.write_text('[vault]\nbranch = "main"\n[[sources]]\nname = "a"\npath = "src/a"\n')
    env = {**os.environ, "VAULT_HOME": str(tmp_path / "home"), "VAULT_CONFIG": str(config),
           "PYTHONPATH": str(REPO)}
    assert run_vault(env, "init").returncode == 0
    make_app_db(source / "c.db")
    (source / "n.md").write_text("note\n")
    synced = run_vault(env, "sync", "--json")
    assert synced.returncode == 0, synced.stderr
    report = json.loads(synced.stdout)
    assert report["skipped"] == []
    assert sorted(report["added"]) == ["a/c.db", "a/n.md"]
    shown = run_vault(env, "show", "a/c.db", "--at", "HEAD", "--sql",
                      "SELECT count(*) FROM k", "--json")
    assert shown.returncode == 0, shown.stderr
    assert str(len(NAMES)) in shown.stdout

    out = tmp_path / "out"
    restored = run_vault(env, "restore", "--at", "HEAD", "--to", str(out))
    assert restored.returncode == 0, restored.stderr
    assert tables(out / "a" / "c.db") == tables(source / "c.db")
    assert schema(out / "a" / "c.db") == schema(source / "c.db")
    assert "Warning: a/c.db uses collation agentcoll, which only the application knows" \
        in restored.stderr  # (the application must REINDEX it)
    again = run_vault(env, "restore", "--at", "HEAD", "--to", str(tmp_path / "out2"), "--json")
    assert json.loads(again.stdout)["warnings"] == [reindex_warning("a/c.db", ("agentcoll",))]

    # A schema that calls a function only the application has cannot be stored: exit 1
    conn = sqlite3.connect(source / "f.db")
    conn.create_function("agentfn", 1, lambda x: x, deterministic=True)
    conn.executescript("CREATE TABLE f(a); CREATE INDEX fi ON f(agentfn(a)); "
                       "INSERT INTO f VALUES (1);")
    conn.commit()
    conn.close()
    failed = run_vault(env, "sync")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "a/f.db: SQLite: needs the application's own SQL code" in failed.stderr


def test_restore_helper_reports_the_stand_ins(tmp_path: Path) -> None:
    """dbbuild's result carries the collations (what Databases.warnings() turns into lines)."""
    from vault.repo import VaultRepo

    src = tmp_path / "c.db"
    make_app_db(src)
    repo, _created = VaultRepo.init(tmp_path / "vault", "main")
    oid = repo.write_blob(snapshot_sqlite(src))
    folder = tmp_path / ".vault-restore-x"
    folder.mkdir()
    result = build(repo.path, oid, folder)
    assert result == {"redacted": False, "stand_ins": ["agentcoll"]}
    assert tables(folder / "db") == tables(src)


def test_auto_rollback_says_the_application_must_reindex(tmp_path: Path) -> None:
    """A database with the application's collation, corrupted and rolled back by [health]
    auto_rollback: the sync says REINDEX, as restore does (before: not a word)."""
    source = tmp_path / "src" / "a"
    source.mkdir(parents=True)
    config = tmp_path / "vault.toml"
    config.write_text('[vault]\nbranch = "main"\n[health]\nauto_rollback = true\n'
                      '[[sources]]\nname = "a"\npath = "src/a"\n')
    env = {**os.environ, "VAULT_HOME": str(tmp_path / "home"), "VAULT_CONFIG": str(config),
           "PYTHONPATH": str(REPO)}
    assert run_vault(env, "init").returncode == 0
    db = source / "c.db"
    make_app_db(db)
    assert run_vault(env, "sync", "--quiet").returncode == 0
    good = tables(db)
    db.write_bytes(db.read_bytes()[:9])  # cut inside its header: corrupt
    old = db.stat().st_mtime - 10
    os.utime(db, (old, old))  # (not written a moment ago: a rollback may replace it)
    synced = run_vault(env, "sync", "--json")
    assert synced.returncode == 1, synced.stderr
    [rollback] = json.loads(synced.stdout)["rollbacks"]
    assert rollback["warning"] == reindex_warning(str(db), ["agentcoll"])
    assert tables(db) == good
    shown = run_vault(env, "sync")  # (nothing corrupt now: the rollback was the last sync's)
    assert shown.returncode == 0, shown.stderr
    db.write_bytes(db.read_bytes()[:9])
    os.utime(db, (old, old))
    said = run_vault(env, "sync")
    assert f"Warning: {reindex_warning(str(db), ['agentcoll'])}" in said.stderr, said.stderr
