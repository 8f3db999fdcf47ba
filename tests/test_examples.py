"""The example generator: deterministic, valid files, bundled examples in step with the code."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import apsw
import pytest

from vault import examples
from vault.errors import UsageError

REPO = Path(__file__).resolve().parent.parent
BUNDLED = REPO / "examples"
SQLITE_HEADER = b"SQLite format 3\x00"


def _files(root: Path) -> dict[str, Path]:
    """Every file under root, keyed by its relative POSIX path."""
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def _kind_files(root: Path) -> dict[str, Path]:
    """The files of the four generated kind folders under root."""
    found: dict[str, Path] = {}
    for kind in examples.KINDS:
        found.update({f"{kind}/{rel}": p for rel, p in _files(root / kind).items()})
    return found


def _is_sqlite(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(16) == SQLITE_HEADER


@contextmanager
def _open_copy(path: Path) -> Iterator[apsw.Connection]:
    """Open a private copy of a database: even a read-only open of a WAL database can leave
    -wal/-shm files behind, and these checks must never touch examples/."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / path.name
        shutil.copyfile(path, copy)
        con = apsw.Connection(str(copy))
        try:
            yield con
        finally:
            con.close()


def _scalar(con: apsw.Connection, sql: str) -> Any:
    """The single value a query returns."""
    return con.execute(sql).fetchall()[0][0]


def _db_rows(path: Path) -> dict[str, Any]:
    """Schema and every row of every table, sorted: the logical content of a database."""
    with _open_copy(path) as con:
        schema = con.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name").fetchall()
        content: dict[str, Any] = {"schema": schema}
        tables = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        for (name,) in con.execute(tables).fetchall():
            rows = con.execute(f'SELECT * FROM "{name}"').fetchall()
            content[str(name)] = sorted(rows, key=repr)
        content["user_version"] = con.execute("PRAGMA user_version").fetchall()
        return content


def _assert_same_tree(left: Path, right: Path) -> None:
    """Text files byte-identical, databases with the same rows, same file names."""
    a, b = _kind_files(left), _kind_files(right)
    assert sorted(a) == sorted(b)
    for rel in a:
        if _is_sqlite(a[rel]):
            assert _db_rows(a[rel]) == _db_rows(b[rel]), rel
        else:
            assert a[rel].read_bytes() == b[rel].read_bytes(), rel


def _assert_valid(root: Path) -> None:
    """Every JSON parses, every JSONL line parses, every database is sound."""
    for rel, path in _files(root).items():
        if path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix == ".jsonl":
            text = path.read_text(encoding="utf-8")
            assert text.endswith("\n"), rel
            for line in text.splitlines():
                json.loads(line)
        elif path.suffix == ".md":
            path.read_bytes().decode("utf-8")
        elif _is_sqlite(path):
            with _open_copy(path) as con:
                assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)], rel


@pytest.fixture(scope="module")
def scale1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One fresh generate(scale=1) shared by the read-only tests."""
    out = tmp_path_factory.mktemp("scale1")
    examples.generate(out)
    return out


def test_generate_is_deterministic(scale1: Path, tmp_path: Path) -> None:
    examples.generate(tmp_path)
    _assert_same_tree(scale1, tmp_path)


def test_seed_changes_content(scale1: Path, tmp_path: Path) -> None:
    examples.generate(tmp_path, seed=1, kinds=("ragent",))
    other = (tmp_path / "ragent/memory.json").read_bytes()
    assert other != (scale1 / "ragent/memory.json").read_bytes()


def test_bundled_examples_match_the_generator(scale1: Path) -> None:
    # If this fails, run `python examples/generate.py` and commit the result.
    _assert_same_tree(scale1, BUNDLED)
    assert not [p for p in BUNDLED.rglob("*") if p.name.endswith(("-wal", "-shm", "-journal"))]


def test_counts_match_files_on_disk(scale1: Path) -> None:
    for kind in examples.KINDS:
        assert len(_files(scale1 / kind)) == examples.file_count(kind, 1)
    assert 30 <= sum(examples.file_count(k, 1) for k in examples.KINDS) <= 100


def test_bundled_examples_are_small() -> None:
    total = sum(p.stat().st_size for p in _kind_files(BUNDLED).values())
    assert total < 1_500_000
    for kind in examples.KINDS:
        size = sum(p.stat().st_size for p in _files(BUNDLED / kind).values())
        assert 2_000 < size < 250_000, kind


def test_every_file_is_valid(scale1: Path) -> None:
    _assert_valid(scale1)


def test_layouts(scale1: Path) -> None:
    claw = scale1 / "openclaw"
    for name in ("MEMORY.md", "AGENTS.md", "USER.md", "SOUL.md", "memory.db",
                 "agents/main/sessions/sessions.json"):
        assert (claw / name).is_file(), name
    assert len(list((claw / "memory").glob("2026-1?-??.md"))) == 8
    transcripts = sorted((claw / "agents/main/sessions").glob("*.jsonl"))
    assert len(transcripts) == 4
    index = json.loads((claw / "agents/main/sessions/sessions.json").read_text(encoding="utf-8"))
    indexed = sorted(e["sessionId"] + ".jsonl" for e in index.values())
    assert indexed == [p.name for p in transcripts]
    lines = [json.loads(line) for line in transcripts[0].read_text(encoding="utf-8").splitlines()]
    assert lines[0]["type"] == "session" and lines[0]["id"] == transcripts[0].stem
    roles = {line["message"]["role"] for line in lines if line["type"] == "message"}
    assert roles <= {"user", "assistant", "toolResult"} and "user" in roles
    for parent, child in zip(lines[1:], lines[2:]):
        assert child["parentId"] == parent["id"]

    synth = scale1 / "synthians"
    index = json.loads((synth / "memory_index.json").read_text(encoding="utf-8"))
    assert sorted(index["memories"]) == sorted(p.stem for p in (synth / "memories").glob("*.json"))
    for entry in index["assemblies"].values():
        assembly = json.loads((synth / entry["path"]).read_text(encoding="utf-8"))
        assert set(assembly["memory_ids"]) <= set(index["memories"])

    for name in ("memory.json", "claude_opus_memories.json", "gpt4o_memories.json",
                 "extendedcontext.json", "user_profile.json", "conversation_summaries.json"):
        assert (scale1 / "ragent" / name).is_file(), name


def test_databases(scale1: Path) -> None:
    # WAL mode is recorded in the file header (bytes 18-19 are 2 for WAL, 1 for rollback).
    assert (scale1 / "memento/memory.db").read_bytes()[18:20] == b"\x02\x02"
    assert (scale1 / "openclaw/memory.db").read_bytes()[18:20] == b"\x01\x01"
    assert not list(scale1.rglob("*-wal")) and not list(scale1.rglob("*-shm"))
    with _open_copy(scale1 / "memento/memory.db") as memento:
        assert memento.execute("PRAGMA journal_mode").fetchall() == [("wal",)]
        blob = _scalar(memento, "SELECT embedding FROM memories LIMIT 1")
        assert len(blob) == 384 * 4
        assert _scalar(memento, "SELECT count(*) FROM embedding_cache") > 0

    with _open_copy(scale1 / "openclaw/memory.db") as claw:
        assert claw.execute("PRAGMA journal_mode").fetchall() == [("delete",)]
        hits = _scalar(claw, "SELECT count(*) FROM memory_cells_fts WHERE memory_cells_fts "
                             "MATCH 'stripe OR marathon OR postgres OR lisbon'")
        assert hits > 0
        assert _scalar(claw, "SELECT count(*) FROM scenes") == 5


def test_content_is_varied(scale1: Path) -> None:
    text = "\n".join(p.read_text(encoding="utf-8") for p in _files(scale1 / "openclaw").values()
                     if p.suffix == ".md")
    needles = ("Stripe", "OpenSearch", "pgbouncer", "marathon", "Lisbon", "sourdough", "gpxkit")
    for needle in needles:
        assert needle.lower() in text.lower(), needle
    bullets = [line for line in text.splitlines() if line.startswith("- ")]
    assert len(set(bullets)) > 0.7 * len(bullets)


def test_subset_of_kinds_gives_the_same_files(scale1: Path, tmp_path: Path) -> None:
    assert examples.generate(tmp_path, kinds=["synthians"]) == {"synthians": 24}
    for rel, path in _files(tmp_path / "synthians").items():
        assert path.read_bytes() == (scale1 / "synthians" / rel).read_bytes()


def test_scale_grows_files_and_rows(tmp_path: Path) -> None:
    counts = examples.generate(tmp_path, scale=3)
    assert counts == {k: examples.file_count(k, 3) for k in examples.KINDS}
    with _open_copy(tmp_path / "memento/memory.db") as con:
        assert _scalar(con, "SELECT count(*) FROM memories") == 120


def test_generate_files_lands_within_ten_percent(tmp_path: Path) -> None:
    counts = examples.generate_files(tmp_path, files=2000)
    on_disk = len(_kind_files(tmp_path))
    assert on_disk == sum(counts.values())
    assert abs(on_disk - 2000) <= 200


@pytest.mark.parametrize("files", [50, 350, 1000, 10_000, 100_000])
def test_scale_for_files(files: int) -> None:
    scale = examples.scale_for_files(files)
    total = sum(examples.file_count(k, scale) for k in examples.KINDS)
    if files >= 350:
        assert abs(total - files) <= 0.1 * files


def test_refuses_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        examples.generate(tmp_path, kinds=["nope"])
    with pytest.raises(UsageError):
        examples.generate(tmp_path, scale=0)
    (tmp_path / "ragent").mkdir()
    (tmp_path / "ragent/keep.txt").write_text("user data")
    with pytest.raises(UsageError):
        examples.generate(tmp_path, kinds=["ragent"])
    with pytest.raises(UsageError):
        examples.mutate(tmp_path, fraction=1.5, seed=0)


def test_mutate_keeps_files_valid_and_changes_the_fraction(scale1: Path, tmp_path: Path) -> None:
    shutil.copytree(scale1, tmp_path / "a")
    shutil.copytree(scale1, tmp_path / "b")
    candidates = examples.mutable_files(tmp_path / "a")
    before = {p: p.read_bytes() for p in candidates}
    changed = examples.mutate(tmp_path / "a", fraction=0.25, seed=7)
    assert abs(len(changed) - 0.25 * len(candidates)) <= 1
    for path in candidates:
        assert (path.read_bytes() != before[path]) == (path in changed), path
    _assert_valid(tmp_path / "a")
    # Growth, not rewrites: each changed file keeps its old entries.
    for path in changed:
        if path.suffix in (".md", ".jsonl"):
            assert path.read_bytes().startswith(before[path])
    # Same seed, same changes.
    again = examples.mutate(tmp_path / "b", fraction=0.25, seed=7)
    assert [p.relative_to(tmp_path / "b") for p in again] == [
        p.relative_to(tmp_path / "a") for p in changed]
    for path in changed:
        assert path.read_bytes() == (tmp_path / "b" / path.relative_to(tmp_path / "a")).read_bytes()
    assert examples.mutate(tmp_path / "a", fraction=0.0, seed=1) == []


def test_mutate_every_file_once(scale1: Path, tmp_path: Path) -> None:
    shutil.copytree(scale1, tmp_path, dirs_exist_ok=True)
    changed = examples.mutate(tmp_path, fraction=1.0, seed=3)
    assert len(changed) == len(examples.mutable_files(tmp_path))
    _assert_valid(tmp_path)
    sessions = tmp_path / "openclaw/agents/main/sessions/sessions.json"
    index = json.loads(sessions.read_text("utf-8"))
    assert all(isinstance(e["updatedAt"], int) for e in index.values())


def test_script_regenerates(tmp_path: Path, scale1: Path) -> None:
    (tmp_path / "openclaw").mkdir()
    (tmp_path / "openclaw/stale.md").write_text("old")
    (tmp_path / "notes.txt").write_text("not ours")
    result = subprocess.run(
        [sys.executable, str(BUNDLED / "generate.py"), "--out", str(tmp_path)],
        capture_output=True, text=True, check=True)
    assert "total" in result.stdout
    assert (tmp_path / "notes.txt").read_text() == "not ours"
    _assert_same_tree(scale1, tmp_path)
