"""The index: content-addressed chunks and vectors, snapshots of commits, rebuild, migrations."""

from __future__ import annotations

import json
from pathlib import Path

import apsw
import pytest

from conftest import Clock, write_config
from vault.config import Config, load_config
from vault.embed import HashEmbedder
from vault.errors import ConfigError, VaultError
from vault.index import (APPLICATION_ID, SCHEMA_VERSION, IndexOptions, IndexStore, build_index,
                         index_after_sync)
from vault.repo import VaultRepo
from vault.sync import sync


def hash_config(tmp_path: Path, workspace: Path, extra: str = "") -> Config:
    """A config for the workspace whose index uses the fake hash:64 model."""
    path = write_config(tmp_path / "vault.toml", {"agent": workspace},
                        extra=f'\n[index]\nmodel = "hash:64"\n{extra}')
    config = load_config(path)
    VaultRepo.init(config.vault.path, config.vault.branch)
    return config


def test_index_section_is_parsed_and_unknown_keys_are_errors(tmp_path: Path,
                                                            workspace: Path) -> None:
    config = hash_config(tmp_path, workspace, 'after_sync = true\nbatch_size = 8\n'
                                              'path = "idx/index.db"')
    assert config.index.model == "hash:64" and config.index.after_sync
    assert config.index.batch_size == 8
    assert config.index_path == tmp_path / "idx" / "index.db"
    bad = write_config(tmp_path / "bad.toml", {"agent": workspace},
                       extra='\n[index]\nmodle = "x"')
    with pytest.raises(ConfigError, match="index.modle: unknown key"):
        load_config(bad)


def test_index_head_then_again_embeds_nothing(tmp_path: Path, workspace: Path,
                                              clock: Clock) -> None:
    config = hash_config(tmp_path, workspace)
    sync(config, now=clock)
    embedder = HashEmbedder(64)
    first = build_index(config, IndexOptions(), embedder)
    assert first.new_commits == 1 and first.files == 5
    assert first.chunks > 0 and first.embedded > 0 and first.blobs_chunked == 5
    assert embedder.calls == first.embedded
    again = build_index(config, IndexOptions(), embedder)
    assert (again.new_commits, again.embedded, again.blobs_chunked) == (0, 0, 0)
    with IndexStore(config.index_path, readonly=True) as store:
        assert store.conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert len(store.indexed_commits("hash:64")) == 1


def test_a_changed_file_is_the_only_one_read_and_only_new_text_is_embedded(
        tmp_path: Path, workspace: Path, clock: Clock) -> None:
    config = hash_config(tmp_path, workspace)
    sync(config, now=clock)
    embedder = HashEmbedder(64)
    build_index(config, IndexOptions(), embedder)
    with (workspace / "MEMORY.md").open("a") as handle:
        handle.write("\n## Learned\n\n- The user now drinks rooibos in the evening.\n")
    clock.tick(60)
    sync(config, now=clock)
    calls = embedder.calls
    result = build_index(config, IndexOptions(), embedder)
    assert result.blobs_chunked == 1  # only MEMORY.md's new blob was read and cut
    assert result.embedded == 1 and embedder.calls - calls == 1  # only the new section
    assert result.reused == result.chunks - 1


def test_chunk_times_say_when_each_text_last_changed(tmp_path: Path, workspace: Path,
                                                      clock: Clock) -> None:
    from vault.recall import recall, RecallOptions

    config = hash_config(tmp_path, workspace, "after_sync = true")
    first_time = clock.now
    first = sync(config, now=clock)
    index_after_sync(config, first.commit)
    with (workspace / "MEMORY.md").open("a") as handle:
        handle.write("\n## Learned\n\n- Rooibos in the evening.\n")
    later = clock.tick(90)
    second = sync(config, now=clock)
    assert index_after_sync(config, second.commit) is not None
    hits = {h.text: h for h in recall(config, "tea rooibos evening", RecallOptions(k=10)).hits}
    assert hits["- Rooibos in the evening."].changed == later.replace(microsecond=0)
    assert hits["- The user prefers tea."].changed == first_time.replace(microsecond=0)


def test_index_at_and_all(tmp_path: Path, workspace: Path, clock: Clock) -> None:
    config = hash_config(tmp_path, workspace)
    sync(config, now=clock)
    (workspace / "memory.json").write_text(json.dumps([{"content": "likes green tea now"}]))
    clock.tick(60)
    sync(config, now=clock)
    (workspace / "memory" / "2026-11-21.md").write_text("# 2026-11-21\n\n- Demo day.\n")
    clock.tick(60)
    sync(config, now=clock)
    embedder = HashEmbedder(64)
    at = build_index(config, IndexOptions(at="HEAD~2"), embedder, now=clock.now)
    assert at.new_commits == 1 and at.files == 5
    every = build_index(config, IndexOptions(all=True), embedder, now=clock.now)
    assert len(every.commits) == 3 and every.new_commits == 2
    assert every.files == 6
    assert every.blobs_chunked == 2  # the two files that changed after the first commit


def test_rebuild_makes_the_same_index_from_the_vault_alone(tmp_path: Path, workspace: Path,
                                                           clock: Clock) -> None:
    config = hash_config(tmp_path, workspace)
    sync(config, now=clock)
    build_index(config, IndexOptions(), HashEmbedder(64))
    with IndexStore(config.index_path) as store:
        before = store.stats()
        store.conn.execute("DELETE FROM vectors")  # damage it
    inode = config.index_path.stat().st_ino
    result = build_index(config, IndexOptions(rebuild=True), HashEmbedder(64))
    assert result.rebuilt and result.embedded == before["vectors"]
    assert config.index_path.stat().st_ino != inode  # a new file, swapped in
    assert not list(config.index_path.parent.glob(".index.db.rebuild-*"))
    with IndexStore(config.index_path, readonly=True) as store:
        assert store.stats() == before


def test_vectors_of_one_model_are_never_used_for_another(tmp_path: Path, workspace: Path,
                                                          clock: Clock) -> None:
    config = hash_config(tmp_path, workspace)
    sync(config, now=clock)
    one = build_index(config, IndexOptions(), HashEmbedder(64))
    other = build_index(config, IndexOptions(), HashEmbedder(32))
    assert other.new_commits == 1 and other.embedded == one.embedded  # all embedded again
    assert other.blobs_chunked == 0  # but the files were not read again
    with IndexStore(config.index_path, readonly=True) as store:
        models = dict(store.conn.execute("SELECT key, dim FROM models").fetchall())
        assert models == {"hash:64": 64, "hash:32": 32}


def test_a_newer_schema_or_a_foreign_file_is_refused(tmp_path: Path) -> None:
    newer = tmp_path / "newer.db"
    db = apsw.Connection(str(newer))
    db.execute(f"PRAGMA application_id={APPLICATION_ID}")  # (every vault index has it)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(VaultError, match="newer vault"):
        IndexStore(newer)
    foreign = tmp_path / "foreign.db"
    db = apsw.Connection(str(foreign))
    db.execute("PRAGMA application_id=42")
    db.close()
    with pytest.raises(VaultError, match="not a vault index"):
        IndexStore(foreign)


def test_after_sync_is_off_by_default_and_needs_an_exported_encoder(
        tmp_path: Path, workspace: Path, clock: Clock) -> None:
    config = hash_config(tmp_path, workspace)
    result = sync(config, now=clock)
    assert index_after_sync(config, result.commit) is None  # [index] after_sync = false
    path = write_config(tmp_path / "st.toml", {"agent": workspace},
                        extra='\n[index]\nafter_sync = true\nmodel = "all-MiniLM-L6-v2"')
    st_config = load_config(path)
    with pytest.raises(VaultError, match="not exported yet"):
        index_after_sync(st_config, result.commit)


def _spoil_page_of(path: Path, table: str) -> None:
    """Overwrite one page of a table with 0xff bytes, the rest of the file intact."""
    with apsw.Connection(str(path)) as db:
        page = db.execute("SELECT max(pageno) FROM dbstat WHERE name=?", (table,)).fetchone()[0]
        size = db.execute("PRAGMA page_size").fetchone()[0]
    with path.open("r+b") as handle:
        handle.seek((page - 1) * size)
        handle.write(b"\xff" * size)


def test_a_damaged_page_is_reported_by_index_and_recall_with_the_rebuild_hint(
        tmp_path: Path, workspace: Path, clock: Clock) -> None:
    from conftest import run_cli

    config = hash_config(tmp_path, workspace)
    sync(config, now=clock)
    build_index(config, IndexOptions(), HashEmbedder(64))
    # A page an index run with nothing new to do never reads: it used to report success.
    _spoil_page_of(config.index_path, "vectors")
    env = {"VAULT_CONFIG": str(config.file)}
    expected = f"Error: the index {config.index_path} is damaged: database disk image is " \
               "malformed"
    hint = "Hint: `vault index --rebuild` makes it again from the vault"
    index = run_cli("index", env=env)
    assert index.returncode == 1, index.stdout + index.stderr
    assert index.stderr.startswith(expected) and hint in index.stderr.splitlines()
    assert len(index.stderr.splitlines()) == 2
    for mode in ("hybrid", "lexical"):
        found = run_cli("recall", "tea", "--mode", mode, env=env)
        assert found.returncode == 1, found.stderr
        assert found.stderr.splitlines() == [expected, hint]
    rebuilt = run_cli("index", "--rebuild", env=env)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert run_cli("recall", "tea", env=env).returncode == 0


def _change_times(config: Config, at: str, now: object) -> dict[tuple[str, str], object]:
    """(path, text) -> when that text last changed, for every chunk of the commit at `at`."""
    from vault.recall import RecallOptions, recall

    hits = recall(config, "x", RecallOptions(k=500, mode="dense", at=at),
                  embedder=HashEmbedder(64), now=now).hits  # type: ignore[arg-type]
    return {(h.path, h.text): h.changed for h in hits}


def test_change_times_are_right_whatever_the_indexing_order(tmp_path: Path, workspace: Path,
                                                            clock: Clock) -> None:
    import sqlite3

    config = hash_config(tmp_path, workspace)
    db = workspace / "notes.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT)")
        conn.execute("INSERT INTO notes(body) VALUES('Dentist on Tuesday with Dr. Okafor')")
    plan = workspace / "plan.md"
    plan.write_text("# Plan\n\n## Garden\n\nPlant tulips.\n\n## Car\n\nService the car.\n")
    talk = workspace / "sessions" / "trip.jsonl"
    ask = json.dumps({"role": "user", "content": "Book a flight to Reykjavik"}) + "\n"
    booked = json.dumps({"role": "assistant", "content": "Flight booked: FI-615"}) + "\n"
    talk.write_text(ask)
    t1 = clock.now.replace(microsecond=0)
    c1 = sync(config, now=clock).commit
    with sqlite3.connect(db) as conn:  # another row: the file changes, the first row does not
        conn.execute("INSERT INTO notes(body) VALUES('Dentist moved to Thursday')")
    plan.write_text("# Plan\n\n## Garden\n\nPlant tulips.\n")  # a section goes ...
    talk.write_text(ask + booked)
    t2 = clock.tick(10).replace(microsecond=0)
    c2 = sync(config, now=clock).commit
    plan.write_text("# Plan\n\n## Garden\n\nPlant tulips.\n\n## Car\n\nService the car.\n")
    talk.write_text(booked)  # a line goes ...
    t3 = clock.tick(10).replace(microsecond=0)  # ... and a section comes back: it changed now
    c3 = sync(config, now=clock).commit
    (workspace / "MEMORY.md").write_text("# Memory\n\n- The user prefers coffee now.\n")
    talk.write_text(booked + ask)  # ... and comes back: it changed now
    t4 = clock.tick(10).replace(microsecond=0)
    c4 = sync(config, now=clock).commit
    assert c1 and c2 and c3 and c4
    expected = {c1: {"Dentist on Tuesday with Dr. Okafor": t1, "Service the car.": t1},
                c2: {"Dentist on Tuesday with Dr. Okafor": t1,
                     "Dentist moved to Thursday": t2},
                c3: {"Dentist on Tuesday with Dr. Okafor": t1, "Plant tulips.": t1,
                     "Service the car.": t3},
                c4: {"Dentist on Tuesday with Dr. Okafor": t1, "Dentist moved to Thursday": t2,
                     "Service the car.": t3, "- The user prefers coffee now.": t4,
                     "assistant: Flight booked: FI-615": t2,
                     "user: Book a flight to Reykjavik": t4}}
    expected[c2]["user: Book a flight to Reykjavik"] = t1
    expected[c3]["assistant: Flight booked: FI-615"] = t2
    seen = []
    for order in ([c4], [c4, c1, c3, c2], [c1, c2, c3, c4], [c2, c4]):
        config.index_path.unlink(missing_ok=True)
        for commit in order:
            build_index(config, IndexOptions(at=commit), HashEmbedder(64), now=clock.now)
        for commit in order:
            times = _change_times(config, commit, clock.now)
            got = {text: when for (_path, text), when in times.items()
                   if text in expected[commit]}
            assert got == expected[commit], (order, commit)
            seen.append((commit, times))
    by_commit: dict[str, list[object]] = {}
    for commit, times in seen:
        by_commit.setdefault(commit, []).append(times)
    assert all(all(t == runs[0] for t in runs) for runs in by_commit.values())


def test_an_index_of_the_first_schema_is_upgraded_and_caught_up_without_embedding(
        tmp_path: Path, workspace: Path, clock: Clock) -> None:
    from vault.recall import RecallOptions, recall

    config = hash_config(tmp_path, workspace)
    sync(config, now=clock)
    build_index(config, IndexOptions(), HashEmbedder(64))
    with apsw.Connection(str(config.index_path)) as db:
        db.execute("PRAGMA user_version=1")  # as vault made it before change times were traced
    result = recall(config, "tea", RecallOptions(k=1))
    assert result.indexed is not None and result.indexed.embedded == 0
    assert "tea" in result.hits[0].text
    with IndexStore(config.index_path, readonly=True) as store:
        assert store.conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
