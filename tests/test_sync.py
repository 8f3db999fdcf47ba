"""Sync: one commit per sync, read back with the real git CLI; skips, deletions, locks, crashes."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import apsw
import pytest

from conftest import Clock, git, make_sqlite, run_cli, write_config
from vault.config import Config, load_config
from vault.errors import BusyError, NoVaultError, UsageError
from vault.repo import VaultRepo
from vault.sqlite_dump import is_dump, load_dump
from vault.sync import SyncOptions, sync


def tree(vault: VaultRepo) -> dict[str, str]:
    """Path -> blob id at the branch tip, read with the git CLI."""
    out = git(vault.path, "ls-tree", "-r", "main")
    return {line.split("\t")[1]: line.split()[2] for line in out.splitlines()}


def show(vault: VaultRepo, rev: str, path: str) -> bytes:
    return subprocess.run(["git", "-C", str(vault.path), "show", f"{rev}:{path}"],
                          capture_output=True, check=True).stdout


def test_first_sync_is_one_readable_commit(config: Config, vault: VaultRepo, clock: Clock,
                                           workspace: Path) -> None:
    result = sync(config, now=clock)
    assert result.commit and result.ok
    assert sorted(result.added) == ["agent/MEMORY.md", "agent/memory.db", "agent/memory.json",
                                    "agent/memory/2026-11-20.md", "agent/sessions/s1.jsonl"]
    assert git(vault.path, "rev-list", "--count", "main").strip() == "1"
    assert git(vault.path, "log", "-1", "--format=%an|%at|%ct|%s", "main").strip() == (
        f"vault|{int(clock.now.timestamp())}|{int(clock.now.timestamp())}|"
        "vault sync 2026-11-21T10:15:00Z: 0 modified, 5 added, 0 deleted")
    body = git(vault.path, "log", "-1", "--format=%B", "main")
    assert "A agent/MEMORY.md" in body
    assert git(vault.path, "log", "-1", "--format=%(trailers:key=Vault-Host,valueonly)",
               "main").strip() == "testhost"
    assert show(vault, "main", "agent/MEMORY.md") == (workspace / "MEMORY.md").read_bytes()
    subprocess.run(["git", "-C", str(vault.path), "fsck", "--strict", "--no-dangling"],
                   check=True, capture_output=True)
    # The vault is private to its owner.
    assert (vault.path.stat().st_mode & 0o777) == 0o700


def test_nothing_changed_no_commit(config: Config, vault: VaultRepo, clock: Clock) -> None:
    first = sync(config, now=clock)
    clock.tick()
    again = sync(config, now=clock)
    assert again.commit is None and not again.changed
    assert again.unchanged == 5
    assert vault.head_id() == first.commit


def test_changes_are_classified(config: Config, vault: VaultRepo, clock: Clock,
                                workspace: Path) -> None:
    sync(config, now=clock)
    (workspace / "MEMORY.md").write_text("# Memory\n\n- The user prefers coffee now.\n")
    (workspace / "memory" / "2026-11-21.md").write_text("# 2026-11-21\n")
    (workspace / "memory" / "2026-11-20.md").unlink()
    clock.tick()
    result = sync(config, now=clock)
    assert (result.modified, result.added, result.deleted) == (
        ("agent/MEMORY.md",), ("agent/memory/2026-11-21.md",), ("agent/memory/2026-11-20.md",))
    assert "agent/memory/2026-11-20.md" not in tree(vault)
    # history keeps the deleted file
    assert show(vault, "main~1", "agent/memory/2026-11-20.md").startswith(b"# 2026-11-20")
    assert git(vault.path, "log", "-1", "--format=%s", "main").strip().endswith(
        "1 modified, 1 added, 1 deleted")


def test_same_size_same_mtime_rewrite_is_caught(config: Config, vault: VaultRepo, clock: Clock,
                                                workspace: Path) -> None:
    target = workspace / "MEMORY.md"
    old = target.stat()
    sync(config, now=clock)
    new_text = target.read_text().replace("tea", "gin")
    assert len(new_text) == old.st_size
    target.write_text(new_text)
    os.utime(target, ns=(old.st_atime_ns, old.st_mtime_ns))  # same size, same mtime
    clock.tick()
    result = sync(config, now=clock)
    assert result.modified == ("agent/MEMORY.md",)
    assert b"gin" in show(vault, "main", "agent/MEMORY.md")


def test_unchanged_files_are_not_read(config: Config, vault: VaultRepo, clock: Clock,
                                      workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import vault.snapshot
    import vault.sync as sync_module

    reads: list[str] = []
    real = vault.snapshot.take_snapshot

    def counting(entry, settings, **kwargs):  # type: ignore[no-untyped-def]
        reads.append(entry.rel)
        return real(entry, settings, **kwargs)

    monkeypatch.setattr(sync_module, "take_snapshot", counting)  # a spy: the real read runs
    sync(config, now=clock)
    assert len(reads) == 5
    # Right after the first sync every file is "racily clean"; age them past the margin.
    old = time.time_ns() - 10**10
    for path in workspace.rglob("*"):
        os.utime(path, ns=(old, old))
    reads.clear()
    sync(config, now=clock)  # ctimes moved with utime: each file is read once more
    assert len(reads) == 5
    reads.clear()
    time.sleep(2.1)
    # Still racy relative to the scan that recorded them (the same tick): read once more,
    # and this time the record is older than the margin of the scan that makes it.
    sync(config, now=clock)
    assert len(reads) == 5
    reads.clear()
    result = sync(config, now=clock)
    assert reads == [] and result.unchanged == 5 and result.commit is None
    (workspace / "MEMORY.md").write_text("# Memory\n\n- changed\n")
    sync(config, now=clock)
    assert reads == ["MEMORY.md"]


def test_half_written_json_keeps_last_good_version(config: Config, vault: VaultRepo,
                                                   clock: Clock, workspace: Path) -> None:
    sync(config, now=clock)
    good = show(vault, "main", "agent/memory.json")
    (workspace / "memory.json").write_text('[{"id": 1, "content": "likes')
    (workspace / "MEMORY.md").write_text("# Memory\n\nchanged\n")
    clock.tick()
    result = sync(config, now=clock)
    assert [s.path for s in result.skipped] == ["agent/memory.json"]
    assert result.skipped[0].reason.startswith("invalid JSON (half-written?)")
    assert result.modified == ("agent/MEMORY.md",)
    assert show(vault, "main", "agent/memory.json") == good
    # once the writer finishes, the next sync records it
    (workspace / "memory.json").write_text('[{"id": 1, "content": "likes coffee"}]')
    clock.tick()
    assert sync(config, now=clock).modified == ("agent/memory.json",)


def test_jsonl_partial_line_waits(config: Config, vault: VaultRepo, clock: Clock,
                                  workspace: Path) -> None:
    transcript = workspace / "sessions" / "s1.jsonl"
    complete = transcript.read_bytes()
    transcript.write_bytes(complete + b'{"type": "message", "role": "assis')
    # Said, not only held back (a writer that died mid-line would leave it so).
    assert [(w.path, w.reason) for w in sync(config, now=clock).waiting] == [
        ("agent/sessions/s1.jsonl", "34 bytes of an unfinished last line wait for its newline")]
    assert show(vault, "main", "agent/sessions/s1.jsonl") == complete
    transcript.write_bytes(complete + b'{"type": "message", "role": "assistant"}\n')
    clock.tick()
    done = sync(config, now=clock)
    assert done.modified == ("agent/sessions/s1.jsonl",) and done.waiting == ()
    assert show(vault, "main", "agent/sessions/s1.jsonl").endswith(b'"assistant"}\n')


def test_sqlite_is_a_deterministic_dump_and_companions_are_not_files(
        config: Config, vault: VaultRepo, clock: Clock, workspace: Path, tmp_path: Path) -> None:
    reader = apsw.Connection(str(workspace / "memory.db"))  # keeps -wal and -shm on disk
    reader.execute("SELECT count(*) FROM memories").fetchall()
    assert (workspace / "memory.db-wal").exists()
    result = sync(config, now=clock)
    assert not any(p.endswith(("-wal", "-shm", "-journal")) for p in tree(vault))
    assert "agent/memory.db" in result.added
    dump = show(vault, "main", "agent/memory.db")
    assert is_dump(dump)
    load_dump(dump, tmp_path / "restored.db")
    restored = apsw.Connection(str(tmp_path / "restored.db"))
    assert restored.execute("SELECT id, content, embedding FROM memories ORDER BY id").fetchall() \
        == reader.execute("SELECT id, content, embedding FROM memories ORDER BY id").fetchall()
    # a write that only reaches the WAL is still seen, and shows as a one-row diff
    writer = apsw.Connection(str(workspace / "memory.db"))
    writer.execute("UPDATE memories SET content = 'memory two' WHERE id = 3")
    clock.tick()
    assert sync(config, now=clock).modified == ("agent/memory.db",)
    diff = git(vault.path, "diff", "main~1", "main", "--", "agent/memory.db")
    changed = [line for line in diff.splitlines()
               if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert len(changed) == 2 and "memory two" in changed[1]
    writer.close()
    reader.close()


def test_missing_source_fails_only_that_source(tmp_path: Path, workspace: Path, clock: Clock) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.md").write_text("notes\n")
    config = load_config(write_config(tmp_path / "vault.toml", {"agent": workspace, "other": other}))
    vault, _ = VaultRepo.init(config.vault.path, config.vault.branch)
    sync(config, now=clock)
    other.rename(tmp_path / "unmounted")
    (workspace / "MEMORY.md").write_text("changed\n")
    clock.tick()
    result = sync(config, now=clock)
    assert not result.ok
    assert [(f.source, f.message.split(":")[0]) for f in result.failures] == [
        ("other", "source 'other'")]
    assert "folder not found" in result.failures[0].message
    assert result.modified == ("agent/MEMORY.md",) and not result.deleted
    assert "other/notes.md" in tree(vault)


def test_mass_delete_refused_unless_allowed(config: Config, vault: VaultRepo, clock: Clock,
                                            workspace: Path) -> None:
    sync(config, now=clock)
    for name in ("MEMORY.md", "memory.json", "memory.db"):
        (workspace / name).unlink()
    clock.tick()
    refused = sync(config, now=clock)
    assert refused.commit is None and not refused.ok
    assert "3 of 5 files would be deleted; refusing, the vault keeps them" \
        in refused.failures[0].message
    assert len(tree(vault)) == 5
    # Only the deletions wait (before: the source's new and changed files waited too, and the
    # CLI said "Nothing changed").
    (workspace / "memory" / "2026-11-20.md").write_text("# changed meanwhile\n")
    (workspace / "memory" / "2026-11-21.md").write_text("# new meanwhile\n")
    clock.tick()
    partial = sync(config, now=clock)
    assert partial.commit is not None and not partial.ok and not partial.deleted
    assert (partial.added, partial.modified) == (("agent/memory/2026-11-21.md",),
                                                 ("agent/memory/2026-11-20.md",))
    assert "3 of 5 files would be deleted" in partial.failures[0].message
    assert len(tree(vault)) == 6
    allowed = sync(config, SyncOptions(allow_mass_delete=True), now=clock)
    assert allowed.ok and len(allowed.deleted) == 3
    assert len(tree(vault)) == 3


def test_dry_run_writes_nothing(config: Config, vault: VaultRepo, clock: Clock) -> None:
    objects_before = sorted(p.name for p in (vault.path / "objects").rglob("*"))
    result = sync(config, SyncOptions(dry_run=True), now=clock)
    assert result.dry_run and len(result.added) == 5 and result.commit is None
    assert vault.head_id() is None
    assert sorted(p.name for p in (vault.path / "objects").rglob("*")) == objects_before
    assert not (config.state_dir / "stat-cache.json").exists()


def test_skips_are_listed_never_silent(config: Config, vault: VaultRepo, clock: Clock,
                                       workspace: Path, tmp_path: Path) -> None:
    (tmp_path / "outside.md").write_text("outside\n")
    (workspace / "link.md").symlink_to(tmp_path / "outside.md")
    os.mkfifo(workspace / "pipe")
    (workspace / "empty.json").write_text("")
    result = sync(config, now=clock)
    reasons = {s.path: s.reason for s in result.skipped}
    assert reasons == {"agent/link.md": "symbolic link (not followed)",
                       "agent/pipe": "not a regular file",
                       "agent/empty.json": "empty JSON file (being written?)"}
    assert "agent/link.md" not in tree(vault)


def test_size_limit(tmp_path: Path, workspace: Path, clock: Clock) -> None:
    (workspace / "big.md").write_bytes(b"x" * 300_000)
    config = load_config(write_config(tmp_path / "vault.toml", {"agent": workspace},
                                      extra="[snapshot]\nmax_file_size = 200000"))
    VaultRepo.init(config.vault.path, config.vault.branch)
    result = sync(config, now=clock)
    assert [s.path for s in result.skipped] == ["agent/big.md"]
    assert result.skipped[0].reason == (  # (was "0.3 MiB > 0.2 MiB"; small sizes "0.0 MiB")
        "larger than snapshot.max_file_size (293.0 KiB > 195.3 KiB)")


def test_include_exclude_patterns(tmp_path: Path, workspace: Path, clock: Clock) -> None:
    config_path = tmp_path / "vault.toml"
    write_config(config_path, {})
    config_path.write_text(config_path.read_text() + (
        f'[[sources]]\nname = "agent"\npath = "{workspace}"\n'
        'include = ["*.md", "*.jsonl"]\nexclude = ["memory/"]\n'))
    config = load_config(config_path)
    VaultRepo.init(config.vault.path, config.vault.branch)
    assert sorted(sync(config, now=clock).added) == ["agent/MEMORY.md", "agent/sessions/s1.jsonl"]


def test_unknown_source_and_no_vault(config: Config, clock: Clock) -> None:
    with pytest.raises(NoVaultError):
        sync(config, now=clock)
    VaultRepo.init(config.vault.path, config.vault.branch)
    with pytest.raises(UsageError, match="no source named 'nope'"):
        sync(config, SyncOptions(sources=("nope",)), now=clock)


HOLD_LOCK = """
import sys, time
from pathlib import Path
from vault.lock import SyncLock
with SyncLock(Path(sys.argv[1]), command="test-holder"):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_busy_lock_and_no_stale_lock_after_kill(config: Config, vault: VaultRepo,
                                                clock: Clock) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(config.state_dir)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(BusyError, match="another vault process holds the lock"):
            sync(config, now=clock)
        proc = run_cli("sync", "--config", str(config.file))
        assert proc.returncode == 11
        assert proc.stderr.splitlines()[0].startswith(
            f"Error: another vault process holds the lock (pid {holder.pid}")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the kernel dropped the lock with its process: the next sync just runs
    assert sync(config, now=clock).commit


WRITER = """
import sqlite3, sys, time, random
db = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
db.execute("PRAGMA journal_mode=" + sys.argv[2])
db.execute("CREATE TABLE IF NOT EXISTS accounts(id INTEGER PRIMARY KEY, balance INTEGER)")
db.execute("CREATE TABLE IF NOT EXISTS ledger(id INTEGER PRIMARY KEY, amount INTEGER)")
db.execute("CREATE TABLE IF NOT EXISTS counter(n INTEGER)")
if db.execute("SELECT count(*) FROM accounts").fetchone()[0] == 0:
    db.executemany("INSERT INTO accounts VALUES(?, 1000)", [(i,) for i in range(10)])
    db.execute("INSERT INTO counter VALUES(0)")
print("ready", flush=True)
rng = random.Random(1)
deadline = time.time() + float(sys.argv[3])
while time.time() < deadline:
    a, b, amount = rng.randrange(10), rng.randrange(10), rng.randrange(1, 50)
    db.execute("BEGIN IMMEDIATE")
    db.execute("UPDATE accounts SET balance = balance - ? WHERE id = ?", (amount, a))
    db.execute("UPDATE accounts SET balance = balance + ? WHERE id = ?", (amount, b))
    db.execute("INSERT INTO ledger(amount) VALUES(?)", (amount,))
    db.execute("UPDATE counter SET n = n + 1")
    db.execute("COMMIT")
    time.sleep(0.001)  # a busy agent, not a tight loop: back-to-back commits starve readers
"""


@pytest.mark.parametrize("journal_mode", ["WAL", "DELETE"])
def test_sync_while_a_process_writes_sqlite(tmp_path: Path, clock: Clock, journal_mode: str) -> None:
    ws = tmp_path / "live"
    ws.mkdir()
    config = load_config(write_config(tmp_path / "vault.toml", {"live": ws}))
    vault, _ = VaultRepo.init(config.vault.path, config.vault.branch)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(ws / "bank.db"), journal_mode, "8"],
                              stdout=subprocess.PIPE, text=True)
    commits = []
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        deadline = time.time() + 5
        while time.time() < deadline:
            result = sync(config, now=clock)
            assert result.ok and not result.skipped, result.skipped
            if result.commit:
                commits.append(result.commit)
            clock.tick(1)
    finally:
        writer.kill()
        writer.wait()
    assert len(commits) >= 3
    for i, commit in enumerate(commits):
        dump = show(vault, commit, "live/bank.db")
        db_path = tmp_path / f"check{i}.db"
        load_dump(dump, db_path)
        db = apsw.Connection(str(db_path))
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("SELECT sum(balance) FROM accounts").fetchall() == [(10_000,)]
        n = db.execute("SELECT n FROM counter").fetchall()[0][0]
        assert db.execute("SELECT count(*) FROM ledger").fetchall() == [(n,)]
        db.close()


def test_file_changing_while_read_is_retried_then_skipped(tmp_path: Path, clock: Clock) -> None:
    ws = tmp_path / "busy"
    ws.mkdir()
    (ws / "notes.md").write_text("start\n")
    config = load_config(write_config(tmp_path / "vault.toml", {"busy": ws},
                                      extra="[snapshot]\nread_retries = 2"))
    VaultRepo.init(config.vault.path, config.vault.branch)
    appender = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "end = time.time() + 20\n"
        "while time.time() < end:\n"
        "    with open(sys.argv[1], 'a') as f: f.write('x' * 1000 + '\\n')\n"),
        str(ws / "notes.md")])
    try:
        time.sleep(0.5)
        (ws / "notes.md").write_bytes(b"y" * 50_000_000)  # slow to read, appended all the time
        result = sync(config, now=clock)
    finally:
        appender.kill()
        appender.wait()
    skipped = {s.path: s.reason for s in result.skipped}
    if "busy/notes.md" in skipped:
        assert skipped["busy/notes.md"] == "kept changing while being read (2 tries)"
    else:  # the reader won a race: what it committed must be one consistent version
        data = show(VaultRepo.open(config.vault.path, "main"), "main", "busy/notes.md")
        assert data.count(b"\n") >= 1


def _make_files(root: Path, count: int, tag: str) -> None:
    for i in range(count):
        sub = root / f"d{i % 20}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"note{i}.md").write_text(f"# note {i} {tag}\n" + "text " * 50)


@pytest.mark.slow
def test_kill_9_at_random_moments_leaves_a_valid_vault(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    _make_files(ws, 1500, "v0")
    config_path = write_config(tmp_path / "vault.toml", {"ws": ws})
    config = load_config(config_path)
    vault, _ = VaultRepo.init(config.vault.path, config.vault.branch)
    rng = random.Random(7)
    for trial in range(4):
        _make_files(ws, 1500, f"v{trial + 1}")
        before = vault.head_id()
        proc = subprocess.Popen([sys.executable, "-m", "vault", "sync", "--quiet",
                                 "--config", str(config_path)])
        time.sleep(rng.uniform(0.05, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        subprocess.run(["git", "-C", str(vault.path), "fsck", "--no-dangling"], check=True,
                       capture_output=True)
        after = VaultRepo.open(config.vault.path, "main").head_id()
        assert after == before or (after and vault.commit_info(after).parents == (
            (before,) if before else ()))
        follow = run_cli("sync", "--json", "--config", str(config_path))
        assert follow.returncode == 0, follow.stderr
        assert json.loads(follow.stdout)["ok"]
        for i in (0, 777, 1499):
            rel = f"ws/d{i % 20}/note{i}.md"
            assert show(vault, "main", rel).startswith(f"# note {i} v{trial + 1}\n".encode())


def test_sqlite_database_with_unusual_extension_is_recognised(tmp_path: Path, clock: Clock) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    make_sqlite(ws / "store.bin")
    config = load_config(write_config(tmp_path / "vault.toml", {"ws": ws}))
    vault, _ = VaultRepo.init(config.vault.path, config.vault.branch)
    sync(config, now=clock)
    assert is_dump(show(vault, "main", "ws/store.bin"))


def test_companion_names_beside_a_database_an_empty_file_and_a_plain_file(
        config: Config, vault: VaultRepo, clock: Clock, workspace: Path) -> None:
    make_sqlite(workspace / "new.db")
    (workspace / "new.db-journal").write_bytes(b"\xd9\xd5\x05\xf9\x20\xa1\x63\xd7")  # hot journal
    (workspace / "creating.db").write_bytes(b"")  # a database's first transaction under way
    (workspace / "creating.db-journal").write_bytes(b"\xd9\xd5\x05\xf9\x20\xa1\x63\xd7")
    (workspace / "trip").write_text("itinerary\n")
    (workspace / "trip-journal").write_text("day 1: the user's own notes\n")
    result = sync(config, now=clock)
    assert "agent/trip-journal" in result.added
    assert not [p for p in tree(vault) if p.endswith(("new.db-journal", "creating.db-journal"))]
