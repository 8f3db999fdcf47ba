"""Tests for vault.sqlite_dump: real SQLite files, written and read back with stdlib sqlite3."""

from __future__ import annotations

import difflib
import math
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import apsw
import numpy as np
import pytest

from vault.errors import SqliteSnapshotError
from vault.sqlite_dump import (
    DUMP_HEADER,
    SQLITE_HEADER,
    dump_connection,
    is_dump,
    is_sqlite_file,
    load_dump,
    snapshot_sqlite,
)

# Values that are easy to get wrong when written as SQL text.
TEXTS = [
    "plain",
    "it's \"quoted\"",
    "two\nlines\r\nand a CR\r",
    "unicode: héllo ☃ 日本語 🧠",
    "nul\x00inside",
    "",
    "trailing backslash \\",
    "-- not a comment; DROP TABLE notes;",
]
FLOATS = [
    0.1, 1 / 3, -2.5, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -0.0, 1e22,
    math.inf, -math.inf, 123456789.0,
]
INTS = [0, -1, 2**63 - 1, -(2**63), 42]

ACCOUNTS = 200
OPENING_BALANCE = 1000

# The start of every INSERT into the notes table of the rich database.
NOTES = 'INSERT INTO "notes"("rowid","title","body","score") VALUES('


def _embedding(seed: int) -> bytes:
    """A 384-dimension float32 vector as stored by embedding libraries."""
    vec = np.random.default_rng(seed).standard_normal(384).astype(np.float32)
    vec[0] = np.float32(np.nan) if seed % 2 else np.float32(-0.0)  # odd bit patterns too
    return vec.tobytes()


def _connect(path: Path) -> sqlite3.Connection:
    """A stdlib connection that returns text as bytes, so invalid UTF-8 can be compared."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.text_factory = bytes
    return conn


def _make_rich_db(path: Path, *, wal: bool = True, reverse: bool = False) -> None:
    """Build a database with every kind of table and value the dump must carry.

    reverse=True creates the objects and inserts the rows in the opposite order; the content
    ends up the same.
    """
    conn = sqlite3.connect(path, isolation_level=None)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA user_version=42")
    conn.execute("PRAGMA application_id=1234567")
    schema = [
        "CREATE TABLE notes(title, body, score)",
        "CREATE TABLE people(id INTEGER PRIMARY KEY, name TEXT NOT NULL)",
        "CREATE TABLE pairs(a TEXT, b INTEGER, v, PRIMARY KEY(a, b)) WITHOUT ROWID",
        "CREATE TABLE events(id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT)",
        "CREATE TABLE embeddings(chunk_hash TEXT PRIMARY KEY, model TEXT, vector BLOB)",
        "CREATE TABLE floats(x REAL, y)",
        "CREATE TABLE shadowed(rowid TEXT, oid INTEGER, v)",
        "CREATE TABLE gen(a INTEGER, b AS (a * 2) STORED, c AS (a + 1))",
        'CREATE TABLE "we""ird name"("col ""1""", [col 2])',
        "CREATE TABLE docs(id INTEGER PRIMARY KEY, body TEXT)",
        "CREATE VIRTUAL TABLE notes_fts USING fts5(title, body)",
        "CREATE VIRTUAL TABLE docs_fts USING fts5(body, content='docs', content_rowid='id')",
    ]
    for sql in reversed(schema) if reverse else schema:
        conn.execute(sql)

    def rows(items: Sequence[tuple[object, ...]]) -> list[tuple[object, ...]]:
        return list(reversed(items)) if reverse else list(items)

    conn.execute("BEGIN")
    notes: list[tuple[object, ...]] = [
        (i + 1, t, TEXTS[(i + 3) % len(TEXTS)], INTS[i % len(INTS)]) for i, t in enumerate(TEXTS)
    ]
    notes.append((20, None, None, None))
    notes.append((1000, "rowid gap", b"\x00\x01blob", 1.5))
    conn.executemany("INSERT INTO notes(rowid, title, body, score) VALUES(?, ?, ?, ?)", rows(notes))
    # Text that is not valid UTF-8 can only come in through SQL.
    conn.execute(
        "INSERT INTO notes(rowid, title, body) VALUES(21, CAST(X'ff41fe00' AS TEXT), 'bad utf8')"
    )
    people = [(1, "ada"), (2, "grace"), (7, "linus")]
    conn.executemany("INSERT INTO people(id, name) VALUES(?, ?)", rows(people))
    pairs = [(a, b, f"{a}{b}") for a in ("x", "a", "m") for b in (3, 1, 2)]
    conn.executemany("INSERT INTO pairs VALUES(?, ?, ?)", rows(pairs))
    events = [(i, f"e{i}") for i in range(1, 6)]
    conn.executemany("INSERT INTO events(id, kind) VALUES(?, ?)", rows(events))
    # Rowids are content too (the dump keeps them), so rows inserted in another order name them.
    conn.executemany(
        "INSERT INTO embeddings(rowid, chunk_hash, model, vector) VALUES(?, ?, ?, ?)",
        rows([(i + 1, f"hash{i:02d}", "all-MiniLM-L6-v2", _embedding(i)) for i in range(6)]),
    )
    floats = [(i + 1, f, f) for i, f in enumerate(FLOATS)]
    conn.executemany("INSERT INTO floats(rowid, x, y) VALUES(?, ?, ?)", rows(floats))
    shadowed = [(5, "r", 1, "a"), (9, "s", 2, "b")]
    conn.executemany(
        "INSERT INTO shadowed(_rowid_, rowid, oid, v) VALUES(?, ?, ?, ?)", rows(shadowed)
    )
    conn.executemany("INSERT INTO gen(rowid, a) VALUES(?, ?)", rows([(1, 10), (2, 20)]))
    conn.executemany(
        'INSERT INTO "we""ird name"(rowid, "col ""1""", [col 2]) VALUES(?, ?, ?)',
        rows([(1, "x", 1), (2, "y", 2)]),
    )
    docs = [(1, "alpha beta"), (2, "gamma delta"), (3, "epsilon")]
    conn.executemany("INSERT INTO docs VALUES(?, ?)", rows(docs))
    fts = [(1, "memory", "the agent remembers kittens"), (2, "todo", "buy milk"),
           (5, "quote's", "o'clock")]
    conn.executemany("INSERT INTO notes_fts(rowid, title, body) VALUES(?, ?, ?)", rows(fts))
    conn.execute("INSERT INTO docs_fts(docs_fts) VALUES('rebuild')")
    conn.execute("COMMIT")
    # AUTOINCREMENT remembers the largest id ever used, not the largest left.
    conn.execute("DELETE FROM events WHERE id >= 4")
    conn.execute("DELETE FROM notes WHERE rowid = 3")
    others = [
        "CREATE INDEX notes_by_score ON notes(score)",
        "CREATE UNIQUE INDEX people_by_name ON people(name)",
        "CREATE VIEW recent AS SELECT id, kind FROM events ORDER BY id DESC",
        "CREATE TRIGGER people_log AFTER INSERT ON people BEGIN "
        "INSERT INTO events(kind) VALUES('person ' || new.name); END",
        "CREATE TRIGGER docs_ai AFTER INSERT ON docs BEGIN "
        "INSERT INTO docs_fts(rowid, body) VALUES(new.id, new.body); END",
    ]
    for sql in reversed(others) if reverse else others:
        conn.execute(sql)
    conn.close()


def _user_objects(conn: sqlite3.Connection) -> list[tuple[object, ...]]:
    """sqlite_schema rows of everything but SQLite's own and full-text shadow tables."""
    shadow = {r[1] for r in conn.execute("PRAGMA table_list") if r[2] == b"shadow"}
    return sorted(
        (t, n, tn, s)
        for t, n, tn, s in conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_schema")
        if not n.startswith(b"sqlite_") and n not in shadow
    )


Typed = list[tuple[tuple[str, str], ...]]


def _typed(rows: list[tuple[object, ...]]) -> Typed:
    """Rows with each value as (type, repr), so 1 != 1.0 and 0.0 != -0.0."""
    return [tuple((type(v).__name__, repr(v)) for v in row) for row in rows]


def _all_rows(conn: sqlite3.Connection, *, shadow: bool = False) -> dict[bytes, Typed]:
    """Every ordinary (and with shadow=True, shadow) table's rows in key order, with the rowid."""
    result: dict[bytes, Typed] = {}
    tables = "SELECT name, type, wr FROM pragma_table_list WHERE schema = 'main'"
    for name, kind, wr in conn.execute(tables):
        internal = name.startswith(b"sqlite_")
        if internal and name not in (b"sqlite_sequence", b"sqlite_stat1"):
            continue
        if kind == b"virtual" or (kind == b"shadow" and not shadow):
            continue
        quoted = '"' + name.decode().replace('"', '""') + '"'
        if wr or internal:
            query = f"SELECT * FROM {quoted} ORDER BY 1, 2"
        else:
            query = f"SELECT _rowid_, * FROM {quoted} ORDER BY _rowid_"
        result[name] = _typed(conn.execute(query).fetchall())
    return result


def _fts_rows(conn: sqlite3.Connection, table: str) -> list[tuple[object, ...]]:
    return conn.execute(f"SELECT rowid, * FROM {table} ORDER BY rowid").fetchall()


def _integrity(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def _restore(dump: bytes, path: Path) -> sqlite3.Connection:
    load_dump(dump, path)
    return _connect(path)


# --- round trip --------------------------------------------------------------------------


def test_round_trip_keeps_schema_rows_and_settings(tmp_path: Path) -> None:
    src = tmp_path / "memory.db"
    _make_rich_db(src, wal=True)
    dump = snapshot_sqlite(src)
    restored = _restore(dump, tmp_path / "restored.db")
    original = _connect(src)

    assert _user_objects(restored) == _user_objects(original)
    assert _all_rows(restored) == _all_rows(original)
    for fts in ("notes_fts", "docs_fts"):
        assert _fts_rows(restored, fts) == _fts_rows(original, fts)
    assert restored.execute("PRAGMA integrity_check").fetchall() == [(b"ok",)]
    assert restored.execute("PRAGMA user_version").fetchone() == (42,)
    assert restored.execute("PRAGMA application_id").fetchone() == (1234567,)
    assert restored.execute("PRAGMA journal_mode").fetchone() == (b"wal",)
    seq = "SELECT seq FROM sqlite_sequence WHERE name = 'events'"
    assert restored.execute(seq).fetchone() == (5,)
    # Embeddings come back byte for byte.
    vector = "SELECT vector FROM embeddings WHERE chunk_hash = ?"
    for i in range(6):
        assert restored.execute(vector, (f"hash{i:02d}",)).fetchone() == (_embedding(i),)
    # Floats keep their exact value and sign; the REAL column stores -0.0 as 0, like SQLite does.
    got = [r[0] for r in restored.execute("SELECT y FROM floats ORDER BY rowid")]
    assert [repr(g) for g in got] == [repr(f) for f in FLOATS]
    # Text with NUL and invalid UTF-8 keeps its bytes and stays text.
    title = "SELECT typeof(title), hex(title) FROM notes WHERE rowid = ?"
    assert restored.execute(title, (21,)).fetchone() == (b"text", b"FF41FE00")
    assert restored.execute(title, (5,)).fetchone() == (b"text", b"6E756C00696E73696465")
    original.close()
    restored.close()
    # Rebuilding the restored database gives the same dump: nothing was lost or added.
    assert snapshot_sqlite(tmp_path / "restored.db") == dump


def test_restore_does_not_fire_triggers_but_keeps_them(tmp_path: Path) -> None:
    src = tmp_path / "memory.db"
    _make_rich_db(src)
    restored = _restore(snapshot_sqlite(src), tmp_path / "restored.db")
    # The trigger's earlier work is in the dump once, not twice.
    assert restored.execute("SELECT count(*) FROM events").fetchone() == (3,)
    restored.execute("INSERT INTO people(name) VALUES('barbara')")
    last = "SELECT kind FROM events ORDER BY id DESC LIMIT 1"
    assert restored.execute(last).fetchone() == (b"person barbara",)
    restored.close()


def test_restored_full_text_search_works(tmp_path: Path) -> None:
    src = tmp_path / "memory.db"
    _make_rich_db(src)
    restored = _restore(snapshot_sqlite(src), tmp_path / "restored.db")
    def match(table: str, words: str) -> list[tuple[object, ...]]:
        query = f"SELECT rowid FROM {table} WHERE {table} MATCH ?"
        return restored.execute(query, (words,)).fetchall()

    assert match("notes_fts", "kittens") == [(1,)]
    # External content: the index was rebuilt from docs.
    assert match("docs_fts", "gamma") == [(2,)]
    # And the sync trigger still feeds it.
    restored.execute("INSERT INTO docs(id, body) VALUES(4, 'zeta kittens')")
    assert match("docs_fts", "zeta") == [(4,)]
    restored.execute("INSERT INTO docs_fts(docs_fts) VALUES('integrity-check')")
    restored.close()


def test_rollback_journal_database_comes_back_in_rollback_mode(tmp_path: Path) -> None:
    src = tmp_path / "plain.db"
    _make_rich_db(src, wal=False)
    dump = snapshot_sqlite(src)
    assert b"PRAGMA journal_mode=DELETE;\n" in dump
    restored = _restore(dump, tmp_path / "restored.db")
    assert restored.execute("PRAGMA journal_mode").fetchone() == (b"delete",)
    restored.close()


def test_opaque_virtual_tables_keep_their_data(tmp_path: Path) -> None:
    """rtree, contentless FTS5 and a missing module come back through their shadow tables."""
    src = tmp_path / "vt.db"
    conn = sqlite3.connect(src, isolation_level=None)
    conn.executescript(
        """
        CREATE VIRTUAL TABLE boxes USING rtree(id, x0, x1, y0, y1);
        INSERT INTO boxes VALUES (1, 0, 10, 0, 5), (2, -3, 3, 7, 9);
        CREATE VIRTUAL TABLE words USING fts5(text, content='');
        INSERT INTO words(rowid, text) VALUES (1, 'contentless index only'), (2, 'second doc');
        CREATE TABLE vec_items_chunks(chunk_id INTEGER PRIMARY KEY, size INTEGER, vectors BLOB);
        INSERT INTO vec_items_chunks VALUES (1, 2, X'0000803f00000040');
        PRAGMA writable_schema=ON;
        INSERT INTO sqlite_schema(type, name, tbl_name, rootpage, sql)
            VALUES('table', 'vec_items', 'vec_items', 0,
                   'CREATE VIRTUAL TABLE vec_items USING vec0(embedding float[2])');
        PRAGMA writable_schema=OFF;
        """
    )
    conn.close()
    dump = snapshot_sqlite(src)
    restored = _restore(dump, tmp_path / "restored.db")
    original = _connect(src)
    schema = (
        "SELECT type, name, tbl_name, sql FROM sqlite_schema"
        " WHERE name NOT LIKE 'sqlite%' ORDER BY name"
    )
    assert restored.execute(schema).fetchall() == original.execute(schema).fetchall()
    assert _all_rows(restored, shadow=True) == _all_rows(original, shadow=True)
    boxes = "SELECT id FROM boxes WHERE x0 >= -5 AND x1 <= 5"
    assert restored.execute(boxes).fetchall() == [(2,)]
    words = "SELECT rowid FROM words WHERE words MATCH 'contentless'"
    assert restored.execute(words).fetchall() == [(1,)]
    assert restored.execute("PRAGMA integrity_check").fetchall() == [(b"ok",)]
    original.close()
    restored.close()


def test_tables_that_only_look_like_shadow_tables_are_kept(tmp_path: Path) -> None:
    src = tmp_path / "names.db"
    conn = sqlite3.connect(src, isolation_level=None)
    conn.executescript(
        """
        CREATE TABLE notes_content(id INTEGER PRIMARY KEY, body TEXT);
        INSERT INTO notes_content VALUES (1, 'external content named like a shadow table');
        CREATE VIRTUAL TABLE notes USING fts5(body, content='notes_content', content_rowid='id');
        INSERT INTO notes(notes) VALUES('rebuild');
        CREATE VIRTUAL TABLE a USING fts5(x);
        INSERT INTO a VALUES ('fts row');
        CREATE VIRTUAL TABLE a_b USING rtree(id, x0, x1);  -- its a_b_node is not a's
        INSERT INTO a_b VALUES (1, 2, 3);
        """
    )
    conn.close()
    dump = snapshot_sqlite(src).decode()
    assert "INSERT INTO \"notes_content\"(\"id\",\"body\") VALUES(1," in dump
    assert "CREATE TABLE \"a_b_node\"" in dump
    assert "CREATE TABLE 'a_data'" not in dump
    restored = _restore(dump.encode(), tmp_path / "restored.db")
    match = "SELECT rowid FROM notes WHERE notes MATCH 'shadow'"
    assert restored.execute(match).fetchall() == [(1,)]
    assert restored.execute("SELECT * FROM a_b").fetchall() == [(1, 2.0, 3.0)]
    assert restored.execute("SELECT * FROM a").fetchall() == [(b"fts row",)]
    restored.close()


def test_rowid_edge_cases(tmp_path: Path) -> None:
    src = tmp_path / "rowids.db"
    conn = sqlite3.connect(src, isolation_level=None)
    conn.executescript(
        """
        CREATE TABLE desc_pk(id INTEGER PRIMARY KEY DESC, v);  -- not a rowid alias (SQLite quirk)
        INSERT INTO desc_pk(rowid, id, v) VALUES (10, 3, 'a'), (20, 1, 'b');
        CREATE TABLE hidden_all(rowid, _rowid_, oid, v);
        INSERT INTO hidden_all VALUES (1, 2, 3, 'x'), (NULL, NULL, NULL, 'y');
        CREATE TABLE text_pk(k TEXT PRIMARY KEY, v);
        INSERT INTO text_pk(rowid, k, v) VALUES (7, 'b', 1), (3, 'a', 2);
        """
    )
    conn.close()
    dump = snapshot_sqlite(src)
    text = dump.decode()
    assert """INSERT INTO "desc_pk"("rowid","id","v") VALUES(10,3,'a');""" in text
    assert (
        '-- "hidden_all": columns named rowid, _rowid_ and oid hide the rowid; rowids are not kept'
        in text
    )
    assert """INSERT INTO "text_pk"("rowid","k","v") VALUES(3,'a',2);""" in text
    restored = _restore(dump, tmp_path / "restored.db")
    original = _connect(src)
    for query in (
        "SELECT rowid, * FROM desc_pk ORDER BY rowid",
        "SELECT * FROM hidden_all ORDER BY v",
        "SELECT rowid, * FROM text_pk ORDER BY rowid",
    ):
        assert restored.execute(query).fetchall() == original.execute(query).fetchall()
    original.close()
    restored.close()


def test_full_text_settings_and_fts4_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "fts.db"
    conn = sqlite3.connect(src, isolation_level=None)
    conn.executescript(
        """
        CREATE VIRTUAL TABLE f5 USING fts5(title, body, tokenize = 'porter unicode61');
        INSERT INTO f5(f5, rank) VALUES('rank', 'bm25(10.0, 1.0)');
        INSERT INTO f5(f5, rank) VALUES('pgsz', 1000);
        INSERT INTO f5(rowid, title, body) VALUES (3, 'running', 'dogs ran'), (1, 'jumps', 'cats');
        CREATE VIRTUAL TABLE f4 USING fts4(body);
        INSERT INTO f4(docid, body) VALUES (2, 'fts four text'), (9, 'more words');
        """
    )
    conn.close()
    dump = snapshot_sqlite(src)
    lines = dump.decode().splitlines()
    assert """INSERT INTO "f5"("f5","rank") VALUES('pgsz',1000);""" in lines
    assert """INSERT INTO "f5"("f5","rank") VALUES('rank','bm25(10.0, 1.0)');""" in lines
    assert """INSERT INTO "f4"("rowid","body") VALUES(2,'fts four text');""" in lines
    shadow = ("CREATE TABLE 'f5_", "CREATE TABLE 'f4_", 'INSERT INTO "f4_', 'INSERT INTO "f5_')
    assert not any(line.startswith(shadow) for line in lines)
    restored = _restore(dump, tmp_path / "restored.db")
    config = "SELECT k, v FROM f5_config WHERE k <> 'version' ORDER BY k"
    original = _connect(src)
    assert restored.execute(config).fetchall() == original.execute(config).fetchall()
    # The tokenizer option came back too: porter stems "running" to "run".
    assert restored.execute("SELECT rowid FROM f5 WHERE f5 MATCH 'run'").fetchall() == [(3,)]
    assert restored.execute("SELECT docid FROM f4 WHERE f4 MATCH 'words'").fetchall() == [(9,)]
    original.close()
    restored.close()


def test_utf16_database_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "utf16.db"
    conn = sqlite3.connect(src, isolation_level=None)
    conn.execute("PRAGMA encoding='UTF-16le'")
    conn.execute("CREATE TABLE t(a)")
    # The second value is a lone surrogate: not valid UTF-16.
    conn.execute("INSERT INTO t VALUES ('héllo ☃ 🧠'), (CAST(X'00d8' AS TEXT))")
    conn.close()
    dump = snapshot_sqlite(src)
    assert b"PRAGMA encoding='UTF-16le';" in dump
    assert "VALUES(1,'héllo ☃ 🧠');" in dump.decode()
    restored = _restore(dump, tmp_path / "restored.db")
    original = _connect(src)
    query = "SELECT rowid, typeof(a), hex(a) FROM t ORDER BY rowid"
    assert restored.execute(query).fetchall() == original.execute(query).fetchall()
    assert restored.execute("PRAGMA encoding").fetchone() == (b"UTF-16le",)
    original.close()
    restored.close()


# --- format ------------------------------------------------------------------------------


def test_dump_format(tmp_path: Path) -> None:
    src = tmp_path / "memory.db"
    _make_rich_db(src)
    dump = snapshot_sqlite(src)
    text = dump.decode("utf-8")
    lines = text.split("\n")
    assert is_dump(dump) and dump.startswith(DUMP_HEADER)
    assert "\r" not in text and text.endswith("COMMIT;\n")
    assert "PRAGMA journal_mode=WAL;" in lines
    assert lines.index("PRAGMA journal_mode=WAL;") < lines.index("BEGIN TRANSACTION;")
    assert "PRAGMA user_version=42;" in lines
    # One row per line, explicit rowid and column lists, quoted identifiers.
    for values in [
        """2,'it''s "quoted"','nul'||char(0)||'inside',-1""",
        "4,'unicode: héllo ☃ 日本語 🧠','trailing backslash \\',-9223372036854775808",
        "6,'','plain',0",
        "8,'-- not a comment; DROP TABLE notes;',"
        "'two'||char(10)||'lines'||char(13)||char(10)||'and a CR'||char(13),9223372036854775807",
        "20,NULL,NULL,NULL",
        "21,CAST(X'ff41fe00' AS TEXT),'bad utf8',NULL",
        "1000,'rowid gap',X'0001626c6f62',1.5",
    ]:
        assert f"{NOTES}{values});" in lines
    for line in [
        # The INTEGER PRIMARY KEY is the rowid; generated columns are left out.
        """INSERT INTO "people"("id","name") VALUES(1,'ada');""",
        """INSERT INTO "shadowed"("_rowid_","rowid","oid","v") VALUES(5,'r',1,'a');""",
        """INSERT INTO "gen"("rowid","a") VALUES(1,10);""",
        'INSERT INTO "we""ird name"("rowid","col ""1""","col 2") VALUES(1,\'x\',1);',
    ]:
        assert line in lines
    floats = [line for line in lines if line.startswith('INSERT INTO "floats"')]
    assert [f.split("VALUES(")[1].split(",")[1] for f in floats] == [
        "0.1", "0.3333333333333333", "-2.5", "5e-324", "2.2250738585072014e-308",
        "1.7976931348623157e+308", "0.0", "1e+22", "1e999", "-1e999", "123456789.0",
    ]
    assert floats[6].endswith(",-0.0);")  # the column without affinity keeps the sign
    # WITHOUT ROWID rows in primary-key order.
    pairs = [
        line.split("VALUES(")[1][:6] for line in lines if line.startswith('INSERT INTO "pairs"')
    ]
    assert pairs == [f"'{a}',{b}," for a in "amx" for b in (1, 2, 3)]
    # Embedding blobs as lowercase hex of all 384 float32s.
    embedding = next(line for line in lines if "'hash02'" in line)
    assert f"X'{_embedding(2).hex()}'" in embedding
    # Counters after the tables, full-text shadow tables never, triggers last.
    last_table_row = max(i for i, line in enumerate(lines) if line.startswith('INSERT INTO "we'))
    assert lines.index('DELETE FROM "sqlite_sequence";') > last_table_row
    assert """INSERT INTO "sqlite_sequence"("name","seq") VALUES('events',5);""" in lines
    assert not any("notes_fts_" in line or "docs_fts_" in line for line in lines)
    fts_row = """INSERT INTO "notes_fts"("rowid","title","body") VALUES(1,'memory','the agent"""
    assert fts_row + """ remembers kittens');""" in lines
    rebuild = lines.index("""INSERT INTO "docs_fts"("docs_fts") VALUES('rebuild');""")
    last_row = max(
        i for i, line in enumerate(lines) if line.startswith("INSERT INTO") and i != rebuild
    )
    triggers = [i for i, line in enumerate(lines) if line.startswith("CREATE TRIGGER")]
    assert len(triggers) == 2 and min(triggers) > max(rebuild, last_row)
    assert lines[triggers[0]].startswith("CREATE TRIGGER docs_ai")  # by name


def test_analyze_results_are_kept_sorted(tmp_path: Path) -> None:
    src = tmp_path / "memory.db"
    _make_rich_db(src, wal=False)
    conn = sqlite3.connect(src)
    conn.execute("ANALYZE")
    conn.close()
    dump = snapshot_sqlite(src)
    assert b"-- ANALYZE results: sqlite_stat1 is kept" in dump
    lines = dump.decode().splitlines()
    stats = [line for line in lines if line.startswith('INSERT INTO "sqlite_stat1"')]
    assert stats == sorted(stats) and stats
    restored = _restore(dump, tmp_path / "restored.db")
    original = _connect(src)
    stat1 = "SELECT * FROM sqlite_stat1 ORDER BY tbl, idx"
    assert restored.execute(stat1).fetchall() == original.execute(stat1).fetchall()
    original.close()
    restored.close()


@pytest.mark.parametrize("page_size", [512, 65536])
def test_page_size_is_kept(tmp_path: Path, page_size: int) -> None:
    src = tmp_path / "pages.db"
    conn = sqlite3.connect(src)
    conn.execute(f"PRAGMA page_size={page_size}")
    conn.execute("CREATE TABLE t(a)")
    conn.executemany("INSERT INTO t VALUES(?)", [(os.urandom(200),) for _ in range(100)])
    conn.commit()
    conn.close()
    dump = snapshot_sqlite(src)
    assert f"PRAGMA page_size={page_size};".encode() in dump
    restored = _restore(dump, tmp_path / "restored.db")
    assert restored.execute("PRAGMA page_size").fetchone() == (page_size,)
    restored.close()


def test_dump_connection_matches_snapshot(tmp_path: Path) -> None:
    src = tmp_path / "plain.db"
    _make_rich_db(src, wal=False)
    conn = apsw.Connection(str(src))
    try:
        assert dump_connection(conn) == snapshot_sqlite(src)
    finally:
        conn.close()


# --- determinism -------------------------------------------------------------------------


def test_dump_is_deterministic(tmp_path: Path) -> None:
    first = tmp_path / "first.db"
    _make_rich_db(first)
    dump = snapshot_sqlite(first)
    assert snapshot_sqlite(first) == dump

    # Same content, objects created and rows inserted in the opposite order.
    second = tmp_path / "second.db"
    _make_rich_db(second, reverse=True)
    assert snapshot_sqlite(second) == dump

    # VACUUM rewrites every page; the dump does not care. SQLite documents that VACUUM may
    # renumber the rowids of tables without an INTEGER PRIMARY KEY, and it does so for one
    # with columns named rowid and oid: a real change the dump rightly shows, so that table
    # is left out here.
    conn = sqlite3.connect(first)
    conn.execute("DROP TABLE shadowed")
    conn.commit()
    dump = snapshot_sqlite(first)
    conn.execute("DELETE FROM notes WHERE rowid = 1000")
    conn.commit()
    conn.execute(
        "INSERT INTO notes(rowid, title, body, score)"
        " VALUES(1000, 'rowid gap', X'0001626c6f62', 1.5)"
    )
    conn.commit()
    conn.execute("VACUUM")
    conn.close()
    assert snapshot_sqlite(first) == dump


def test_one_row_change_is_a_one_line_diff(tmp_path: Path) -> None:
    src = tmp_path / "memory.db"
    _make_rich_db(src)
    before = snapshot_sqlite(src).decode().splitlines()
    conn = sqlite3.connect(src)
    conn.execute("UPDATE pairs SET v = 'changed' WHERE a = 'm' AND b = 2")
    conn.commit()
    conn.close()
    after = snapshot_sqlite(src).decode().splitlines()
    changed = [l for l in difflib.ndiff(before, after) if l[:2] in ("- ", "+ ")]
    assert changed == [
        "- INSERT INTO \"pairs\"(\"a\",\"b\",\"v\") VALUES('m',2,'m2');",
        "+ INSERT INTO \"pairs\"(\"a\",\"b\",\"v\") VALUES('m',2,'changed');",
    ]


# --- concurrency -------------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import random, sqlite3, sys, time
    path, accounts, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    deadline = time.monotonic() + seconds
    first = True
    while time.monotonic() < deadline:
        a, b = random.sample(range(accounts), 2)
        amount = random.randint(1, 100)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE accounts SET balance = balance - ? WHERE id = ?", (amount, a))
        conn.execute("UPDATE accounts SET balance = balance + ? WHERE id = ?", (amount, b))
        conn.execute("INSERT INTO ledger(src, dst, amount, memo) VALUES (?, ?, ?, ?)",
                     (a, b, amount, "x" * random.randint(0, 400)))
        conn.execute("UPDATE counter SET n = n + 1")
        conn.execute("COMMIT")
        # A short breath between transactions, as a real application takes: without it, in
        # rollback-journal mode this loop can starve readers for seconds at a time.
        time.sleep(0.001)
        if first:
            print("ready", flush=True)
            first = False
    """
)


@pytest.fixture
def writer_process() -> Iterator[list[subprocess.Popen[str]]]:
    """Collects writer processes and makes sure each one is gone after the test."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.slow
@pytest.mark.parametrize("journal_mode", ["WAL", "DELETE"])
def test_snapshots_are_consistent_while_another_process_writes(
    tmp_path: Path, journal_mode: str, writer_process: list[subprocess.Popen[str]]
) -> None:
    src = tmp_path / "bank.db"
    conn = sqlite3.connect(src, isolation_level=None)
    conn.execute(f"PRAGMA journal_mode={journal_mode}")
    conn.executescript(
        """
        CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL, padding BLOB);
        CREATE TABLE ledger(id INTEGER PRIMARY KEY AUTOINCREMENT, src, dst, amount, memo);
        CREATE TABLE counter(n INTEGER NOT NULL);
        """
    )
    # Accounts padded over many pages, and a ledger of a few thousand rows: a copy that mixed
    # pages from before and after a commit would break the invariants below.
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO accounts VALUES (?, ?, randomblob(300))",
        [(i, OPENING_BALANCE) for i in range(ACCOUNTS)],
    )
    conn.executemany(
        "INSERT INTO ledger(src, dst, amount, memo) VALUES (0, 0, 0, randomblob(?))",
        [(i % 500,) for i in range(3000)],
    )
    conn.execute("INSERT INTO counter VALUES (3000)")
    conn.execute("COMMIT")
    conn.close()

    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(src), str(ACCOUNTS), "20"],
        stdout=subprocess.PIPE,
        text=True,
    )
    writer_process.append(proc)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

    counts = []
    deadline = time.monotonic() + 4
    for i in range(30):
        if time.monotonic() > deadline and i >= 5:
            break
        dump = snapshot_sqlite(src)
        restored = tmp_path / f"snap{i}.db"
        load_dump(dump, restored)
        check = sqlite3.connect(restored)
        try:
            assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            assert check.execute("SELECT sum(balance), count(*) FROM accounts").fetchone() == (
                ACCOUNTS * OPENING_BALANCE,
                ACCOUNTS,
            )
            (n,) = check.execute("SELECT n FROM counter").fetchone()
            ledger = "SELECT count(*), max(id) FROM ledger"
            assert check.execute(ledger).fetchone() == (n, n)
            counts.append(n)
        finally:
            check.close()
        restored.unlink()
        time.sleep(0.02)  # let the writer commit between snapshots as well as during them
    assert proc.poll() is None, "the writer stopped before the snapshots were done"
    assert len(set(counts)) > 1, "the writer made no progress between snapshots"


# --- errors ------------------------------------------------------------------------------


def test_header_with_garbage_is_not_a_database(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(SQLITE_HEADER + os.urandom(4096))
    assert is_sqlite_file(bad)
    with pytest.raises(SqliteSnapshotError) as err:
        snapshot_sqlite(bad)
    assert str(err.value) == "file is not a database"


@pytest.mark.parametrize("keep", [0.5, 0.25])
def test_truncated_database_is_reported(tmp_path: Path, keep: float) -> None:
    full = tmp_path / "full.db"
    conn = sqlite3.connect(full)
    conn.execute("CREATE TABLE t(a)")
    conn.executemany("INSERT INTO t VALUES(?)", [(os.urandom(500),) for _ in range(400)])
    conn.execute("CREATE INDEX t_a ON t(a)")
    conn.commit()
    conn.close()
    data = full.read_bytes()
    cut = tmp_path / "cut.db"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(SqliteSnapshotError) as err:
        snapshot_sqlite(cut)
    message = str(err.value)
    assert message in ("database disk image is malformed (corrupt or truncated)",) or (
        message.startswith("integrity check failed: ")
    )
    assert err.value.hint is not None and "integrity_check" in err.value.hint


def test_missing_file_is_reported(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    assert not is_sqlite_file(missing)
    with pytest.raises(SqliteSnapshotError) as err:
        snapshot_sqlite(missing)
    assert str(err.value) == "no such file"
    assert not missing.exists()  # never created


def test_locked_database_reports_busy(
    tmp_path: Path, writer_process: list[subprocess.Popen[str]]
) -> None:
    src = tmp_path / "locked.db"
    conn = sqlite3.connect(src)
    conn.execute("CREATE TABLE t(a)")
    conn.commit()
    conn.close()
    # Another process (so its locks really conflict) holds an exclusive lock until stdin closes.
    holder = textwrap.dedent(
        """
        import sqlite3, sys
        conn = sqlite3.connect(sys.argv[1], isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("INSERT INTO t VALUES (1)")
        print("locked", flush=True)
        sys.stdin.read()
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", holder, str(src)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    writer_process.append(proc)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    with pytest.raises(SqliteSnapshotError) as err:
        snapshot_sqlite(src, busy_timeout_ms=200)
    assert str(err.value) == "database is locked (busy for 0.2 s)"
    assert proc.stdin is not None
    proc.stdin.close()


def test_hot_journal_is_rolled_back(tmp_path: Path) -> None:
    """A crashed writer's journal is rolled back, so the snapshot shows the last commit."""
    src = tmp_path / "live.db"
    conn = sqlite3.connect(src)
    conn.execute("CREATE TABLE t(a)")
    conn.executemany("INSERT INTO t VALUES(?)", [(i,) for i in range(20000)])
    conn.commit()
    conn.execute("PRAGMA cache_size=10")  # spill the change to the file before commit
    conn.execute("UPDATE t SET a = a + 1000000")
    journal = Path(f"{src}-journal")
    assert journal.exists()
    crashed = tmp_path / "crashed.db"
    shutil.copy(src, crashed)
    shutil.copy(journal, f"{crashed}-journal")
    conn.rollback()
    conn.close()
    restored = _restore(snapshot_sqlite(crashed), tmp_path / "restored.db")
    assert restored.execute("SELECT count(*), max(a) FROM t").fetchone() == (20000, 19999)
    restored.close()


@pytest.mark.parametrize("piece", [7, 64, 1 << 20])
def test_round_trip_in_pieces_keeps_values_with_line_breaks(
    tmp_path: Path, piece: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A dump is replayed a piece at a time, each ending at a line break where a statement
    # ends: values with line breaks, semicolons and quotes (and a trigger's body) must never be
    # cut there, whatever the piece size (7 bytes: a piece for nearly every line).
    import vault.sqlite_dump as sqlite_dump

    monkeypatch.setattr(sqlite_dump, "_PIECE", piece)
    src = tmp_path / "notes.db"
    conn = sqlite3.connect(src, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT, raw BLOB)")
    conn.execute("CREATE TABLE log(n INTEGER)")
    conn.execute("CREATE TRIGGER t AFTER INSERT ON notes BEGIN\n  INSERT INTO log VALUES(1);\n"
                 "  INSERT INTO log VALUES(2);\nEND")
    tricky = ["a;\nb", "';\n'", "x\n" * 300 + ";", "\n;\n;\n", "snow \u2603;\n\U0001f600", ""]
    for i in range(400):
        conn.execute("INSERT INTO notes VALUES(?, ?, ?)",
                     (i, tricky[i % len(tricky)] + str(i), bytes([i % 256]) * (i % 50)))
    conn.close()
    dump = snapshot_sqlite(src)
    assert dump.count(b"\n") > 1000
    out = tmp_path / "out"
    out.mkdir()
    load_dump(dump, out / "restored.db")
    assert os.listdir(out) == ["restored.db"]  # (no -wal left)
    restored = _connect(out / "restored.db")
    original = _connect(src)
    assert _all_rows(restored) == _all_rows(original)
    assert _user_objects(restored) == _user_objects(original)
    assert restored.execute("SELECT count(*) FROM log").fetchone() == (800,)
    assert restored.execute("PRAGMA journal_mode").fetchone() == (b"wal",)


def test_bad_utf8_far_into_a_dump_is_named_by_its_byte(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import vault.sqlite_dump as sqlite_dump

    monkeypatch.setattr(sqlite_dump, "_PIECE", 100)
    rows = b"".join(b"INSERT INTO t VALUES(%d);\n" % i for i in range(50))
    data = DUMP_HEADER + b"BEGIN TRANSACTION;\nCREATE TABLE t(a);\n" + rows + b"-- \xff\nCOMMIT;\n"
    bad = data.index(b"\xff")
    assert bad > 1000
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(SqliteSnapshotError) as err:
        load_dump(data, out / "restored.db")
    assert str(err.value) == f"bad dump: not valid UTF-8 at byte {bad}"
    assert os.listdir(out) == []


def test_wal_line_outside_the_header_is_replayed_as_written(tmp_path: Path) -> None:
    # Only the header's own journal-mode line is held back until the rows are in; a dump in
    # another layout runs as it is.
    data = (DUMP_HEADER + b"CREATE TABLE t(a);\nPRAGMA journal_mode=WAL;\nBEGIN TRANSACTION;\n"
            b"INSERT INTO t VALUES(1);\nCOMMIT;\n")
    restored = _restore(data, tmp_path / "restored.db")
    assert restored.execute("SELECT a FROM t").fetchall() == [(1,)]
    assert restored.execute("PRAGMA journal_mode").fetchone() == (b"wal",)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"hello world", "not a vault sqlite dump (missing header line)"),
        (SQLITE_HEADER + b"\x00" * 100, "not a vault sqlite dump (missing header line)"),
        (DUMP_HEADER + b"this is not sql;\n", 'bad dump: near "this": syntax error'),
        (DUMP_HEADER + b"\xff\xfe\n", "bad dump: not valid UTF-8 at byte 24"),
        (
            DUMP_HEADER + b"BEGIN TRANSACTION;\nCREATE TABLE t(a);\nINSERT INTO t VALUES(1);\n",
            "bad dump: truncated (no COMMIT)",
        ),
        (DUMP_HEADER + b"INSERT INTO missing VALUES(1);\n", "bad dump: no such table: missing"),
        (DUMP_HEADER + b"ATTACH 'x.db' AS x;\n", "bad dump: it tries to attach another database"),
        (DUMP_HEADER + b"VACUUM INTO 'x.db';\n", "bad dump: it tries to attach another database"),
    ],
)
def test_load_dump_rejects_bad_dumps(
    tmp_path: Path, data: bytes, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(out)  # where an ATTACH or VACUUM INTO would write
    with pytest.raises(SqliteSnapshotError) as err:
        load_dump(data, out / "restored.db")
    assert str(err.value) == message
    assert os.listdir(out) == []  # no database, temp file, journal or attached file left


def test_load_dump_refuses_to_overwrite(tmp_path: Path) -> None:
    src = tmp_path / "memory.db"
    _make_rich_db(src)
    dest = tmp_path / "taken.db"
    dest.write_bytes(b"precious")
    with pytest.raises(SqliteSnapshotError) as err:
        load_dump(snapshot_sqlite(src), dest)
    assert str(err.value) == f"{dest}: already exists"
    assert dest.read_bytes() == b"precious"


def test_load_dump_leaves_only_the_database(tmp_path: Path) -> None:
    src = tmp_path / "src" / "memory.db"
    src.parent.mkdir()
    _make_rich_db(src)
    out = tmp_path / "out"
    out.mkdir()
    load_dump(snapshot_sqlite(src), out / "memory.db")
    assert os.listdir(out) == ["memory.db"]
    assert _integrity(out / "memory.db") == "ok"


# --- the source is left alone ------------------------------------------------------------


def test_snapshot_leaves_rollback_database_untouched(tmp_path: Path) -> None:
    src = tmp_path / "db" / "plain.db"
    src.parent.mkdir()
    _make_rich_db(src, wal=False)
    before = src.read_bytes()
    stat = src.stat()
    snapshot_sqlite(src)
    assert os.listdir(src.parent) == ["plain.db"]  # no -journal, -wal or -shm
    assert src.read_bytes() == before
    assert src.stat().st_mtime_ns == stat.st_mtime_ns


def test_snapshot_of_closed_wal_database_leaves_no_wal_files(tmp_path: Path) -> None:
    src = tmp_path / "db" / "wal.db"
    src.parent.mkdir()
    _make_rich_db(src, wal=True)
    assert os.listdir(src.parent) == ["wal.db"]  # the last connection cleaned up
    before = src.read_bytes()
    snapshot_sqlite(src)
    assert os.listdir(src.parent) == ["wal.db"]
    assert src.read_bytes() == before


def test_snapshot_sees_uncheckpointed_wal_content(
    tmp_path: Path, writer_process: list[subprocess.Popen[str]]
) -> None:
    src = tmp_path / "wal.db"
    # The application keeps the database open in another process, its last commit still in
    # the -wal file. (Another process, not this one: two SQLite libraries in one process do
    # not see each other's POSIX locks.)
    app = textwrap.dedent(
        """
        import sqlite3, sys
        conn = sqlite3.connect(sys.argv[1], isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute("CREATE TABLE t(a)")
        conn.execute("INSERT INTO t VALUES ('only in the wal')")
        print("ready", flush=True)
        sys.stdin.read()
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", app, str(src)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    writer_process.append(proc)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    dump = snapshot_sqlite(src)
    assert """INSERT INTO "t"("rowid","a") VALUES(1,'only in the wal');""" in dump.decode()
    assert Path(f"{src}-wal").exists()  # still the application's: not checkpointed away


def test_is_sqlite_file_and_is_dump(tmp_path: Path) -> None:
    db = tmp_path / "notes.md"  # the header decides, not the name
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t(a)")
    conn.close()
    short = tmp_path / "short"
    short.write_bytes(SQLITE_HEADER[:10])
    assert is_sqlite_file(db)
    assert not is_sqlite_file(short)
    assert not is_sqlite_file(tmp_path)
    assert is_dump(snapshot_sqlite(db))
    assert not is_dump(b"-- some other dump\n")


def test_trailing_comment_in_stored_sql_does_not_eat_the_semicolon(tmp_path: Path) -> None:
    """SQLite keeps a trailing -- comment in index, view and table SQL; the dump must still load."""
    src = tmp_path / "c.db"
    db = apsw.Connection(str(src))
    db.execute("CREATE TABLE t(a, b) -- the table")
    db.execute("CREATE INDEX i ON t(a) -- why this index")
    db.execute("CREATE VIEW v AS SELECT a FROM t -- a view")
    db.execute("INSERT INTO t VALUES(1, 2)")
    db.close()
    dump = snapshot_sqlite(src)
    load_dump(dump, tmp_path / "back.db")
    back = apsw.Connection(str(tmp_path / "back.db"))
    assert back.execute("SELECT a FROM v").fetchall() == [(1,)]
    assert snapshot_sqlite(tmp_path / "back.db") == dump


def test_a_snapshot_never_checkpoints_the_users_wal(tmp_path: Path) -> None:
    # Frames left in the -wal by a writer that went away without checkpointing: the snapshot
    # reads them (they are committed) but must not write them into the database file, which
    # the last connection's close would do. A backup, or a restore's dry run, writes nothing.
    db = tmp_path / "memory.db"
    conn = apsw.Connection(str(db))
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE m(id INTEGER PRIMARY KEY, content TEXT)")
    conn.close()
    writer = ("import os, sqlite3, sys\n"
              "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
              "c.execute('PRAGMA wal_autocheckpoint=0')\n"
              "c.execute(\"INSERT INTO m(content) VALUES ('only in the wal')\")\n"
              "os._exit(0)\n")
    subprocess.run([sys.executable, "-c", writer, str(db)], check=True)
    main_before = db.read_bytes()
    wal_before = Path(f"{db}-wal").read_bytes()
    assert wal_before
    dump = snapshot_sqlite(db)
    assert b"only in the wal" in dump
    assert db.read_bytes() == main_before
    assert Path(f"{db}-wal").read_bytes() == wal_before


def test_a_snapshot_leaves_no_new_shm_beside_a_wal(tmp_path: Path) -> None:
    # A writer in exclusive locking mode keeps its WAL index in memory: it leaves a -wal and
    # no -shm. The snapshot's connection makes one; it must not stay behind.
    db = tmp_path / "memory.db"
    writer = ("import os, sqlite3, sys\n"
              "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
              "c.execute('PRAGMA locking_mode=EXCLUSIVE')\n"
              "c.execute('PRAGMA journal_mode=WAL')\n"
              "c.execute('CREATE TABLE m(id INTEGER PRIMARY KEY, content TEXT)')\n"
              "c.execute(\"INSERT INTO m(content) VALUES ('in the wal')\")\n"
              "os._exit(0)\n")
    subprocess.run([sys.executable, "-c", writer, str(db)], check=True)
    assert Path(f"{db}-wal").exists() and not Path(f"{db}-shm").exists()
    assert b"in the wal" in snapshot_sqlite(db)
    assert not Path(f"{db}-shm").exists()


# --- a database whose path is not UTF-8 (SQLite takes UTF-8 names only) ------------------


def _odd_folder(tmp_path: Path) -> Path:
    folder = Path(os.fsdecode(os.fsencode(tmp_path) + b"/\xffsrc"))
    folder.mkdir()
    return folder


@pytest.mark.parametrize("name", ["memory.db", "what?#%20.db"])
@pytest.mark.parametrize("how", ["rollback", "wal", "wal-read-only", "wal-left-by-a-writer"])
def test_a_database_in_a_folder_whose_name_is_not_utf8(tmp_path: Path, name: str,
                                                        how: str) -> None:
    db = _odd_folder(tmp_path) / name
    conn = sqlite3.connect(os.fsencode(db), isolation_level=None)
    if how != "rollback":
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE m(id INTEGER PRIMARY KEY, content TEXT)")
    conn.execute("INSERT INTO m(content) VALUES ('kept')")
    conn.close()
    if how == "wal-left-by-a-writer":  # (its rows only in the -wal)
        writer = ("import os, sqlite3, sys\n"
                  "c = sqlite3.connect(os.fsencode(sys.argv[1]), isolation_level=None)\n"
                  "c.execute('PRAGMA wal_autocheckpoint=0')\n"
                  "c.execute(\"INSERT INTO m(content) VALUES ('in the wal')\")\n"
                  "os._exit(0)\n")
        subprocess.run([sys.executable, "-c", writer, db], check=True)
        assert os.path.getsize(f"{db}-wal") > 0
    if how == "wal-read-only":
        db.chmod(0o444)
    before = sorted(os.listdir(db.parent))
    dump = snapshot_sqlite(db)
    assert b"'kept'" in dump
    assert (b"'in the wal'" in dump) == (how == "wal-left-by-a-writer")
    assert sorted(os.listdir(db.parent)) == before  # (nothing made beside it, by any name)
    back = db.parent / f"back-{name}"
    load_dump(dump, back)
    assert snapshot_sqlite(back) == dump
