"""Text the chunker used to miss or break on: TEXT cells that are not UTF-8, application
collations, dumps that do not replay whole, and text files in UTF-16 or an 8-bit encoding."""

from __future__ import annotations

import codecs
import struct
from pathlib import Path

import apsw
import pytest

from conftest import Clock, run_cli, write_config
from vault.chunk import (chunk_file, chunk_file_report, chunk_lines, decode_text, file_kind,
                         line_units)
from vault.config import Config, load_config
from vault.embed import HashEmbedder
from vault.index import IndexOptions, build_index
from vault.recall import RecallOptions, recall
from vault.repo import VaultRepo
from vault.sqlite_dump import snapshot_sqlite
from vault.sync import sync

# 'Müller likes gardening' as an application wrote it in Latin-1: TEXT that is not UTF-8.
LATIN1_CELL = "CAST(x'4dfc6c6c6572206c696b65732067617264656e696e67' AS TEXT)"


def hash_config(tmp_path: Path, workspace: Path) -> Config:
    path = write_config(tmp_path / "vault.toml", {"agent": workspace},
                        extra='\n[index]\nmodel = "hash:64"\n')
    config = load_config(path)
    VaultRepo.init(config.vault.path, config.vault.branch)
    return config


def bad_text_db(path: Path, extra_rows: int = 0) -> None:
    db = apsw.Connection(str(path))
    db.execute("CREATE TABLE memories(id INTEGER PRIMARY KEY, content TEXT)")
    db.execute(f"INSERT INTO memories VALUES(1, {LATIN1_CELL})")
    db.execute("INSERT INTO memories VALUES(2, 'The dentist appointment moved to Thursday.')")
    for i in range(extra_rows):
        db.execute("INSERT INTO memories(content) VALUES(?)",
                   (f"Extra memory number {i} about the garden shed.",))
    # A table keyed by the bad text itself: its locator is read from the bytes too.
    db.execute("CREATE TABLE tags(name TEXT PRIMARY KEY, note TEXT) WITHOUT ROWID")
    db.execute(f"INSERT INTO tags VALUES({LATIN1_CELL}, 'the neighbour who lends us tools')")
    db.close()


def collation_db(path: Path) -> None:
    db = apsw.Connection(str(path))
    db.create_collation("agentcoll", lambda a, b: (a.lower() > b.lower()) - (a.lower() < b.lower()))
    db.execute("CREATE TABLE memories(id INTEGER PRIMARY KEY, tag TEXT COLLATE agentcoll, "
               "content TEXT)")
    db.execute("CREATE INDEX memories_tag ON memories(tag)")
    db.execute("CREATE TABLE people(name TEXT COLLATE agentcoll PRIMARY KEY, about TEXT) "
               "WITHOUT ROWID")
    db.execute("INSERT INTO memories VALUES(1, 'home', 'We chose oak cabinets and a blue "
               "backsplash for the kitchen.')")
    db.execute("INSERT INTO people VALUES('Anna', 'Anna teaches the violin lessons on Tuesday.')")
    db.close()


# --- F1: TEXT that is not valid UTF-8 ------------------------------------------------------


def test_a_text_cell_that_is_not_utf8_is_read_with_replacement_and_the_rest_as_usual(
        tmp_path: Path) -> None:
    bad_text_db(tmp_path / "m.db")
    data = snapshot_sqlite(tmp_path / "m.db")
    assert b"AS TEXT)" in data  # stored from its bytes, as sync stores it
    report = chunk_file_report("agent/m.db", data)
    assert report.problem is None
    by_locator = {c.locator: c.text for c in report.chunks}
    assert by_locator["memories:1"] == "M\ufffdller likes gardening"
    assert by_locator["memories:2"] == "The dentist appointment moved to Thursday."
    assert by_locator["tags:M\ufffdller likes gardening"] == \
        "name: M\ufffdller likes gardening\nthe neighbour who lends us tools"
    assert chunk_file("agent/m.db", data) == report.chunks


def test_the_line_difference_path_reads_such_cells_too(tmp_path: Path) -> None:
    bad_text_db(tmp_path / "m.db", extra_rows=1)
    units = line_units("agent/m.db", snapshot_sqlite(tmp_path / "m.db"))
    assert units is not None and units.kind == "sqlite"
    bad_line = [line for line in units.lines if "AS TEXT)" in line and "memories" in line]
    chunks = chunk_lines(units.kind, units.header, bad_line)
    assert chunks is not None
    assert [c.text for c in chunks] == ["M\ufffdller likes gardening"]


def test_index_and_recall_work_with_such_a_cell_in_the_vault(tmp_path: Path, workspace: Path,
                                                            clock: Clock) -> None:
    (workspace / "notes.md").write_text("Violin lessons are on Tuesday evenings with Anna.\n")
    bad_text_db(workspace / "bad.db")
    config = hash_config(tmp_path, workspace)
    sync(config, now=clock)
    first = build_index(config, IndexOptions(), HashEmbedder(64))
    assert first.files == 7
    # A second commit that adds rows: indexing every commit traces the table line by line.
    db = apsw.Connection(str(workspace / "bad.db"))
    db.execute("INSERT INTO memories(content) VALUES('The garden shed needs a new roof.')")
    db.close()
    clock.tick(30)
    sync(config, now=clock)
    build_index(config, IndexOptions(all=True), HashEmbedder(64))
    for mode in ("lexical", "hybrid"):
        hits = recall(config, "violin lessons", RecallOptions(k=3, mode=mode)).hits
        assert hits[0].path == "agent/notes.md"
    hits = recall(config, "gardening", RecallOptions(k=1, mode="lexical",
                                                     paths=("bad.db",))).hits
    assert (hits[0].locator, hits[0].text) == ("memories:1", "M\ufffdller likes gardening")
    roof = recall(config, "shed roof", RecallOptions(k=1, mode="lexical")).hits
    assert roof[0].path == "agent/bad.db"


def test_cli_index_and_recall_exit_0_with_such_a_cell(tmp_path: Path, workspace: Path,
                                                      clock: Clock) -> None:
    (workspace / "notes.md").write_text("Violin lessons are on Tuesday evenings with Anna.\n")
    bad_text_db(workspace / "bad.db")
    config = hash_config(tmp_path, workspace)
    sync(config, now=clock)
    cfg = str(config.file)
    index = run_cli("index", "--config", cfg)
    assert index.returncode == 0, index.stderr
    assert "Error" not in index.stderr
    found = run_cli("recall", "violin lessons", "--mode", "lexical", "--config", cfg)
    assert found.returncode == 0, found.stderr
    assert "agent/notes.md" in found.stdout
    garden = run_cli("recall", "dentist Thursday", "--config", cfg)
    assert garden.returncode == 0, garden.stderr
    assert "agent/bad.db  memories:2" in garden.stdout


# --- F2: collations only the application registers, dumps that do not replay ------------


def test_rows_of_a_database_with_an_application_collation_are_chunked(tmp_path: Path) -> None:
    collation_db(tmp_path / "app.db")
    data = snapshot_sqlite(tmp_path / "app.db")
    assert b"COLLATE agentcoll" in data
    report = chunk_file_report("agent/app.db", data)
    assert report.problem is None
    by_locator = {c.locator: c.text for c in report.chunks}
    assert by_locator["memories:1"].startswith("We chose oak cabinets")
    assert by_locator["people:Anna"].startswith("about: Anna teaches the violin lessons")
    units = line_units("agent/app.db", data)
    assert units is not None
    assert chunk_lines(units.kind, units.header, units.lines) == report.chunks


def test_recall_finds_rows_of_a_database_with_an_application_collation(
        tmp_path: Path, workspace: Path, clock: Clock) -> None:
    collation_db(workspace / "app.db")
    config = hash_config(tmp_path, workspace)
    sync(config, now=clock)
    build_index(config, IndexOptions(), HashEmbedder(64))
    hits = recall(config, "oak cabinets", RecallOptions(k=3, paths=("app.db",))).hits
    assert [(h.path, h.locator) for h in hits][:1] == [("agent/app.db", "memories:1")]


def _dump_with(tmp_path: Path, statement: str) -> bytes:
    """A real dump of a two-table database, with one statement added before its COMMIT."""
    db = apsw.Connection(str(tmp_path / "two.db"))
    db.execute("CREATE TABLE notes(id INTEGER PRIMARY KEY, content TEXT)")
    db.execute("CREATE TABLE todo(id INTEGER PRIMARY KEY, content TEXT)")
    db.execute("INSERT INTO notes VALUES(1, 'The boiler service is booked for March.')")
    db.execute("INSERT INTO todo VALUES(1, 'Renew the passport before the summer trip.')")
    db.close()
    data = snapshot_sqlite(tmp_path / "two.db")
    head, commit, tail = data.rpartition(b"COMMIT;")
    return head + statement.encode() + b"\n" + commit + tail


def test_a_dump_that_does_not_replay_whole_gives_its_other_rows_and_says_so(
        tmp_path: Path) -> None:
    # An index on a function only the application registers: SQLite cannot build it here.
    data = _dump_with(tmp_path, 'CREATE INDEX notes_fn ON "notes"(app_fold("content"));')
    report = chunk_file_report("agent/two.db", data)
    assert {c.locator for c in report.chunks} == {"notes:1", "todo:1"}
    assert report.problem is not None
    assert "1 of the" in report.problem and "no such function: app_fold" in report.problem
    assert "\n" not in report.problem


def test_a_table_that_cannot_be_created_is_named_in_the_problem(tmp_path: Path) -> None:
    data = _dump_with(tmp_path, 'CREATE TABLE "calc"(x TEXT, y TEXT AS (app_fold(x)));\n'
                                "INSERT INTO \"calc\"(\"x\") VALUES('lost row of text here');")
    report = chunk_file_report("agent/two.db", data)
    assert {c.locator for c in report.chunks} == {"notes:1", "todo:1"}
    assert report.problem is not None and report.problem.startswith("2 of the ")
    assert "no such function: app_fold" in report.problem


def test_a_dump_that_replays_gives_no_problem(tmp_path: Path) -> None:
    data = _dump_with(tmp_path, "")
    report = chunk_file_report("agent/two.db", data)
    assert report.problem is None and len(report.chunks) == 2


# --- F4: text encodings --------------------------------------------------------------------

NOTE = "Meeting with Jürgen Müller about the café lease – €300 “deposit”.\n"


@pytest.mark.parametrize(("data", "text"), [
    (NOTE.encode("utf-8"), NOTE),
    (codecs.BOM_UTF8 + NOTE.encode("utf-8"), NOTE),
    (NOTE.encode("utf-16"), NOTE),  # with its BOM, in this machine's byte order
    (codecs.BOM_UTF16_LE + NOTE.encode("utf-16-le"), NOTE),
    (codecs.BOM_UTF16_BE + NOTE.encode("utf-16-be"), NOTE),
    (codecs.BOM_UTF32_LE + NOTE.encode("utf-32-le"), NOTE),
    (codecs.BOM_UTF32_BE + NOTE.encode("utf-32-be"), NOTE),
    (NOTE.encode("cp1252"), NOTE),
    ("Jürgen Müller, café\n".encode("latin-1"), "Jürgen Müller, café\n"),
    (b"caf\xe9 \x81 menu\n", "caf\xe9 \x81 menu\n"),  # 0x81 is not cp1252: Latin-1
    # UTF-8 with one damaged byte stays UTF-8: only that byte is lost.
    ("Jürgen Müller ".encode() + b"\xff" + " café".encode(), "Jürgen Müller \ufffd café"),
    (b"", ""),
])
def test_text_is_decoded_by_its_encoding(data: bytes, text: str) -> None:
    assert decode_text(data) == text
    assert file_kind("notes/lease.md", data) == "markdown"


@pytest.mark.parametrize("data", [
    bytes.fromhex("89504e470d0a1a0a0000000d49484452") + bytes(range(256)) * 4,  # a PNG
    struct.pack("<64f", *[i / 7 for i in range(64)]),  # float32 embeddings
    struct.pack("<32d", *[1.5 ** i for i in range(32)]),  # float64
    bytes(range(128, 256)) * 40,  # high bytes without a NUL
    codecs.BOM_UTF16_LE + struct.pack("<64f", *range(64)),  # a UTF-16 mark, then floats
])
def test_binary_data_is_kept_out(data: bytes) -> None:
    assert decode_text(data) is None
    assert file_kind("blob.bin", data) == "binary"
    assert chunk_file("blob.bin", data) == []


def test_utf16_markdown_and_jsonl_are_chunked_like_utf8(tmp_path: Path) -> None:
    markdown = "# Health\n\n- The dentist appointment with Dr Okafor moved to Thursday.\n"
    assert chunk_file("MEMORY.md", markdown.encode("utf-16")) == \
        chunk_file("MEMORY.md", markdown.encode())
    jsonl = '{"role": "user", "content": "Book the dentist for Thursday morning please."}\n'
    data = jsonl.encode("utf-16")
    units = line_units("s.jsonl", data)
    assert units is not None and units.lines == [jsonl.strip()]
    assert chunk_lines("jsonl", (), units.lines) == chunk_file("s.jsonl", data)
    assert chunk_file("s.jsonl", data)[0].text.startswith("user: Book the dentist")


def test_recall_finds_utf16_and_latin1_notes_and_skips_binary(
        tmp_path: Path, workspace: Path, clock: Clock) -> None:
    (workspace / "dentist.txt").write_bytes(
        "Reminder: the dentist appointment with Dr Okafor moved to Thursday.\n".encode("utf-16"))
    (workspace / "lease.txt").write_bytes(
        "Meeting with Jürgen Müller about the café lease.\n".encode("latin-1"))
    (workspace / "vectors.bin").write_bytes(struct.pack("<64f", *[i / 7 for i in range(64)]))
    config = hash_config(tmp_path, workspace)
    sync(config, now=clock)
    build_index(config, IndexOptions(), HashEmbedder(64))
    okafor = recall(config, "Okafor", RecallOptions(k=1, mode="lexical")).hits
    assert okafor and okafor[0].path == "agent/dentist.txt"
    muller = recall(config, "Müller", RecallOptions(k=1, mode="lexical")).hits
    assert muller and muller[0].path == "agent/lease.txt"
    assert muller[0].text == "Meeting with Jürgen Müller about the café lease."
    assert not recall(config, "the", RecallOptions(k=50, paths=("vectors.bin",))).hits


def test_index_warns_about_a_dump_that_does_not_replay_whole(tmp_path: Path, workspace: Path,
                                                              clock: Clock) -> None:
    """The indexer says which file it could not read whole (before: its rows were missing from
    recall without a word), once, when the file is cut; its other rows are found."""
    import json
    from datetime import datetime, timezone

    config = hash_config(tmp_path, workspace)
    sync(config, now=clock)
    repo = VaultRepo.open(config.vault.path, config.vault.branch)
    data = _dump_with(tmp_path, 'CREATE INDEX notes_fn ON "notes"(app_fold("content"));')
    repo.commit(repo.head_id(), {"agent/two.db": (repo.write_blob(data), 0o100644)},
                "vault sync: a dump written by an application's own build",
                datetime.now(timezone.utc), "testhost")
    cfg = str(config.file)
    proc = run_cli("index", "--json", "--config", cfg)
    assert proc.returncode == 0, proc.stderr
    [warning] = json.loads(proc.stdout)["warnings"]
    assert warning.startswith("agent/two.db: 1 of the ") and "app_fold" in warning
    assert proc.stderr.splitlines() == [f"Warning: {warning}"]
    found = run_cli("recall", "boiler service", "--mode", "lexical", "--config", cfg)
    assert found.returncode == 0 and "agent/two.db  notes:1" in found.stdout, found.stdout
    again = run_cli("index", "--rebuild", "--config", cfg)
    assert again.returncode == 0 and f"Warning: {warning}" in again.stderr, again.stderr
