"""Sync edge cases a review found: skipped folders, repeated options, names that forge lines."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from pathlib import Path

import apsw
import pytest

from conftest import Clock, deep_file, git, run_cli, write_config
from vault.config import Config, load_config
from vault.detect import RACY_MARGIN_NS
from vault.repo import VaultRepo
from vault.sync import SyncOptions, quote_path, sync


def test_a_folder_that_became_a_symlink_keeps_its_files(config: Config, vault: VaultRepo,
                                                        clock: Clock, workspace: Path,
                                                        tmp_path: Path) -> None:
    sync(config, now=clock)
    elsewhere = tmp_path / "elsewhere"
    (workspace / "memory").rename(elsewhere)
    (workspace / "memory").symlink_to(elsewhere)
    clock.tick()
    result = sync(config, now=clock)
    assert [s.path for s in result.skipped] == ["agent/memory"]
    assert result.deleted == ()  # a skip is never a deletion
    files = git(config.vault.path, "ls-tree", "-r", "--name-only", "HEAD").split()
    assert "agent/memory/2026-11-20.md" in files


def test_a_source_named_twice_is_synced_once(config: Config, vault: VaultRepo,
                                             clock: Clock) -> None:
    result = sync(config, SyncOptions(sources=("agent", "agent")), now=clock)
    assert len(result.added) == len(set(result.added)) == 5
    message = git(config.vault.path, "log", "-1", "--format=%B")
    assert message.startswith("vault sync 2026-11-21T10:15:00Z: 0 modified, 5 added, 0 deleted")


def test_a_file_name_cannot_forge_lines_or_trailers(config: Config, vault: VaultRepo,
                                                    clock: Clock, workspace: Path) -> None:
    sync(config, now=clock)
    (workspace / "note\n\nVault-Host: evil\nD agent").write_text("x\n")
    (workspace / 'say "hi"\\.md').write_text("y\n")
    clock.tick()
    result = sync(config, now=clock)
    assert len(result.added) == 2
    body = git(config.vault.path, "log", "-1", "--format=%B")
    assert 'A "agent/note\\n\\nVault-Host: evil\\nD agent"' in body
    assert 'A "agent/say \\"hi\\"\\\\.md"' in body
    trailers = git(config.vault.path, "log", "-1", "--format=%(trailers:only,unfold)").split("\n")
    assert [t for t in trailers if t.startswith("Vault-Host:")] == ["Vault-Host: testhost"]
    # the real names, as git itself quotes them
    listed = git(config.vault.path, "show", "--format=", "--name-only", "HEAD").splitlines()
    assert sorted(listed) == sorted(quote_path(p) for p in result.added)


def test_quote_path_leaves_ordinary_names_alone() -> None:
    assert quote_path("agent/memory/2026-11-21.md") == "agent/memory/2026-11-21.md"
    assert quote_path("agent/caf\u00e9 \u2615.md") == "agent/caf\u00e9 \u2615.md"
    assert quote_path("agent/tab\there") == '"agent/tab\\there"'
    assert quote_path("agent/\udcff.md") == '"agent/\\377.md"'  # a byte that is not UTF-8


def test_a_database_whose_header_is_damaged_is_corrupt_not_a_new_file(
        config: Config, vault: VaultRepo, clock: Clock, workspace: Path) -> None:
    sync(config, now=clock)
    stored = git(config.vault.path, "rev-parse", "HEAD:agent/memory.db").strip()
    db = workspace / "memory.db"
    damaged = bytearray(db.read_bytes())
    damaged[:23] = b"GARBAGE-GARBAGE-GARBAGE"
    db.write_bytes(bytes(damaged))
    clock.tick()
    result = sync(config, now=clock)
    assert [c.path for c in result.corrupt] == ["agent/memory.db"]
    assert not result.ok and "agent/memory.db" not in result.modified
    assert git(config.vault.path, "rev-parse", "HEAD:agent/memory.db").strip() == stored


@pytest.mark.parametrize("left", [1, 10, 15])
def test_a_database_cut_short_of_its_header_is_corrupt_not_a_new_file(
        config: Config, vault: VaultRepo, clock: Clock, workspace: Path, left: int) -> None:
    # Cut to a few bytes of its header: the vault's last version stays, and the sync says the
    # file is corrupt (and the rollback can put it back).
    sync(config, now=clock)
    stored = git(config.vault.path, "rev-parse", "HEAD:agent/memory.db").strip()
    db = workspace / "memory.db"
    db.write_bytes(db.read_bytes()[:left])
    clock.tick()
    result = sync(config, now=clock)
    assert [c.path for c in result.corrupt] == ["agent/memory.db"]
    reason = dict((s.path, s.reason) for s in result.skipped)["agent/memory.db"]
    assert reason.startswith(f"SQLite: file is not a database (cut to {left} bytes")
    assert not result.ok and result.commit is None
    assert git(config.vault.path, "rev-parse", "HEAD:agent/memory.db").strip() == stored


def test_an_emptied_database_is_stored_as_the_empty_database_it_is(
        config: Config, vault: VaultRepo, clock: Clock, workspace: Path) -> None:
    # An app that deleted its database and opened it again leaves an empty file, which SQLite
    # takes for a new empty database: a change to record, not damage to roll back.
    sync(config, now=clock)
    db = workspace / "memory.db"
    db.unlink()
    sqlite3.connect(db).close()
    assert db.stat().st_size == 0
    clock.tick()
    result = sync(config, now=clock)
    assert result.ok and result.corrupt == () and "agent/memory.db" in result.modified
    assert git(config.vault.path, "show", "HEAD:agent/memory.db") == ""


def test_a_short_file_where_a_plain_file_was_is_stored(config: Config, vault: VaultRepo,
                                                        clock: Clock, workspace: Path) -> None:
    sync(config, now=clock)
    (workspace / "MEMORY.md").write_bytes(b"SQLite")  # (a header's start, but never a database)
    (workspace / "notes.db").write_bytes(b"")  # a new empty file: nothing to compare with
    clock.tick()
    result = sync(config, now=clock)
    assert result.ok and result.corrupt == ()
    assert "agent/MEMORY.md" in result.modified and "agent/notes.db" in result.added


def test_a_gitmodules_file_is_not_stored(config: Config, vault: VaultRepo, clock: Clock,
                                         workspace: Path) -> None:
    (workspace / ".gitmodules").write_text('[submodule "../../a"]\n\tpath = y\n'
                                           '\turl = -oProxyCommand=x\n')
    result = sync(config, now=clock)
    assert [(s.path, s.reason) for s in result.skipped] == [
        ("agent/.gitmodules", "git reads a .gitmodules file as submodule settings; not stored")]
    git(config.vault.path, "fsck", "--strict")  # raises on any error


def test_a_database_replaced_by_another_binary_file_is_taken_as_it_is(
        config: Config, vault: VaultRepo, clock: Clock, workspace: Path) -> None:
    # An encrypted copy (SQLCipher) put in its place looks random past its first bytes: the
    # user's new file, not a damaged database to roll back.
    sync(config, now=clock)
    encrypted = bytearray(os.urandom(4096 * 3))
    encrypted[100] = 0x42  # (not a b-tree page type: random bytes would be one 1 time in 128)
    encrypted = bytes(encrypted)
    (workspace / "memory.db").write_bytes(encrypted)
    for name in ("memory.db-wal", "memory.db-shm"):
        (workspace / name).unlink(missing_ok=True)
    clock.tick()
    result = sync(config, now=clock)
    assert result.ok and not result.corrupt and "agent/memory.db" in result.modified
    assert VaultRepo(config.vault.path, "main").read_blob(
        git(config.vault.path, "rev-parse", "HEAD:agent/memory.db").strip()) == encrypted


def test_a_database_whose_first_page_is_zeroed_beside_its_journal_is_corrupt(
        config: Config, vault: VaultRepo, clock: Clock, workspace: Path) -> None:
    db = workspace / "notes.db"
    conn = apsw.Connection(str(db))
    conn.execute("PRAGMA journal_mode=TRUNCATE")  # leaves an empty notes.db-journal behind
    conn.execute("CREATE TABLE t(x)")
    conn.execute("INSERT INTO t VALUES('orig')")
    conn.close()
    assert Path(f"{db}-journal").exists()
    sync(config, now=clock)
    with db.open("r+b") as f:
        f.write(bytes(4096))
    clock.tick()
    result = sync(config, now=clock)
    assert [c.path for c in result.corrupt] == ["agent/notes.db"] and not result.ok


def test_other_spellings_of_gitmodules_are_not_stored(config: Config, vault: VaultRepo,
                                                      clock: Clock, workspace: Path) -> None:
    odd = '[submodule "../../a"]\n\tpath = y\n\turl = -oProxyCommand=x\n'
    names = [".gitmodules.", ".gitmodules ", ".GITMODULES", "GITMOD~1", "gi7eba~2",
             ".gitmodules\u200c"]
    for name in names:
        (workspace / name).write_text(odd)
    result = sync(config, now=clock)
    assert sorted(s.path for s in result.skipped) == sorted(f"agent/{n}" for n in names)
    git(config.vault.path, "fsck", "--strict")


def test_patterns_silence_what_they_leave_out(tmp_path: Path, workspace: Path,
                                              clock: Clock) -> None:
    (workspace / ".gitmodules").write_text("[submodule]\n")
    path = write_config(tmp_path / "ex.toml", {"agent": workspace})
    path.write_text(path.read_text() + 'exclude = [".gitmodules"]\n')
    config = load_config(path)
    VaultRepo.init(config.vault.path, config.vault.branch)
    time.sleep(RACY_MARGIN_NS / 1e9 + 0.1)  # stat-proven: what a plan needs
    result = sync(config, now=clock)
    assert result.skipped == () and result.proof is not None  # the quick check can take over


def test_the_quick_plan_is_not_written_under_a_screening_that_changed(
        config: Config, vault: VaultRepo, clock: Clock) -> None:
    from dataclasses import replace

    from vault.quick import _plan_for

    time.sleep(RACY_MARGIN_NS / 1e9 + 0.1)  # stat-proven: what a plan needs
    result = sync(config, now=clock)
    assert _plan_for(config, result, True) is not None
    assert _plan_for(config, replace(result, screen="another"), True) is None


def test_the_hint_for_an_unreadable_folder_is_a_pattern_that_matches_it() -> None:
    from vault.sources import compile_patterns, pattern_for

    for rel in ("[old]", "#tmp", "a b", "x*y", "!n", "memory"):
        pattern = pattern_for(rel) + "/"
        assert compile_patterns([pattern])(rel + "/note.md"), pattern


@pytest.mark.parametrize(("first", "then"), [("main", "main/sub"), ("main/sub", "main")])
def test_a_branch_git_cannot_have_beside_the_old_one_is_named(tmp_path: Path, workspace: Path,
                                                               first: str, then: str) -> None:
    # `main` and `main/sub` cannot both be branches (one is a file where the other needs a
    # folder): the sync names the one in the way, and the vault keeps its history.
    path = write_config(tmp_path / "vault.toml", {"agent": workspace},
                        extra=f'branch = "{first}"')
    env = {"VAULT_CONFIG": str(path)}
    assert run_cli("init", env=env).returncode == 0
    assert run_cli("sync", "-q", env=env).returncode == 0
    path.write_text(path.read_text().replace(f'branch = "{first}"', f'branch = "{then}"'))
    proc = run_cli("sync", env=env)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines()[0] == (f"Error: branch {then} cannot be made in this vault: "
                                           f"it has a branch {first}, and git cannot have both")
    vault_dir = tmp_path / "memory-vault"
    assert git(vault_dir, "branch", "--format=%(refname:short)").split() == [first]
    assert git(vault_dir, "log", "--format=%s", first).count("\n") == 1
    git(vault_dir, "fsck", "--strict")


def test_a_truncated_tip_tree_fails_the_sync_instead_of_hanging_it(
        config: Config, vault: VaultRepo, workspace: Path, clock: Clock) -> None:
    """libgit2 loops forever inflating a truncated loose object: the parent's tree must be
    checked before libgit2 reads it (it was read through commit.tree: the sync hung, holding
    the lock, and every cron sync after it exited 11)."""
    sync(config, now=clock)
    tree = git(config.vault.path, "rev-parse", "main^{tree}").strip()
    obj = config.vault.path / "objects" / tree[:2] / tree[2:]
    obj.chmod(0o644)
    obj.write_bytes(obj.read_bytes()[:len(obj.read_bytes()) // 2])
    (workspace / "MEMORY.md").write_text("# changed\n")
    proc = run_cli("sync", "--quiet", "--config", str(config.file))  # (timeout: 120 s)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == (
        f"Error: vault object {tree} is damaged (truncated or not a zlib stream)")
    assert (config.home / "failures.log").exists()


def test_a_vault_whose_tip_commit_is_gone_is_not_called_unchanged(
        config: Config, vault: VaultRepo, clock: Clock) -> None:
    tip = sync(config, now=clock).commit
    assert tip is not None
    assert run_cli("sync", "--quiet", "--config", str(config.file)).returncode == 0
    (config.vault.path / "objects" / tip[:2] / tip[2:]).unlink()
    for args in (["sync", "--quiet"], ["sync", "--json"]):  # quick check, then the full sync
        proc = run_cli(*args, "--config", str(config.file))
        assert proc.returncode == 1, args
        assert f"Error: vault commit {tip} is missing" in proc.stderr


def test_a_transcript_cut_inside_a_line_is_corrupt_not_a_shorter_version(
        tmp_path: Path, workspace: Path, clock: Clock) -> None:
    """QA: a 22-line transcript truncated mid-line (a crash, a full disk) was committed as an
    edit with a 'waiting for its newline' note, every sync, and doctor was green."""
    import json as _json

    cfg = write_config(tmp_path / "vault.toml", {"agent": workspace},
                       extra="\n[health]\nauto_rollback = true\n")
    config = load_config(cfg)
    VaultRepo.init(config.vault.path, "main")
    transcript = workspace / "sessions" / "s1.jsonl"
    whole = "".join(_json.dumps({"n": i, "text": f"message {i}"}) + "\n" for i in range(22))
    transcript.write_text(whole)
    sync(config, now=clock)
    past = time.time() - 10
    # appended to, with a partial line: a version like any other (the partial line waits)
    whole += _json.dumps({"n": 22, "text": "message 22"}) + "\n"
    transcript.write_text(whole + '{"n": 23, "te')
    os.utime(transcript, (past, past))
    clock.tick()
    grown = sync(config, now=clock)
    assert grown.ok and grown.modified == ("agent/sessions/s1.jsonl",) and grown.waiting
    transcript.write_text(whole[:160])  # cut: five whole lines left, the sixth cut off
    os.utime(transcript, (past, past))
    clock.tick()
    cut = sync(config, now=clock)
    assert not cut.ok and cut.commit is None
    assert cut.corrupt[0].reason == ("JSONL cut short: 5 of the vault's 23 lines left, the last "
                                     "one cut off (truncated?)")
    assert transcript.read_text() == whole  # rolled back; the cut file is kept aside
    assert [p.name for p in transcript.parent.glob("s1.jsonl.corrupt-*")]
    # cut at a line end: an agent may rewrite a transcript shorter
    transcript.write_text(whole[:whole.index("\n") + 1])
    os.utime(transcript, (past, past))
    clock.tick()
    assert sync(config, now=clock).modified == ("agent/sessions/s1.jsonl",)


def _tree(vault_path: Path) -> dict[str, str]:
    out = git(vault_path, "ls-tree", "-r", "HEAD")
    return {line.split("\t")[1]: line.split()[2] for line in out.splitlines()}


def test_a_folder_that_became_a_file_never_drops_either(tmp_path: Path) -> None:
    """QA: notes/ (3 files) replaced by a file 'notes'. The mass-delete guard refused the three
    deletions ("the vault keeps them") but the new file was stored over the folder, so they
    were gone from the tree; the next sync with --allow-mass-delete then deleted 'notes/...'
    by removing whatever was at 'notes': the live file, while status said nothing pending."""
    ws = tmp_path / "a"
    (ws / "notes").mkdir(parents=True)
    (ws / "MEMORY.md").write_text("# memory\n")
    for i in range(3):
        (ws / "notes" / f"{i}.md").write_text(f"note {i}\n")
    config = write_config(tmp_path / "vault.toml", {"a": ws})
    vault = tmp_path / "memory-vault"
    for args in (["init"], ["sync", "-q"]):
        assert run_cli(*args, "--config", str(config)).returncode == 0
    for i in range(3):
        (ws / "notes" / f"{i}.md").unlink()
    (ws / "notes").rmdir()
    (ws / "notes").write_text("notes consolidated into one file\n")
    time.sleep(RACY_MARGIN_NS / 1e9 + 0.1)
    held = run_cli("sync", "--config", str(config))
    assert held.returncode == 1, held.stdout + held.stderr
    assert "3 of 4 files would be deleted" in held.stderr
    assert "a/notes: not stored yet: the vault keeps the files of the folder a/notes/" \
        in held.stderr + held.stdout
    assert sorted(_tree(vault)) == ["a/MEMORY.md", "a/notes/0.md", "a/notes/1.md",
                                    "a/notes/2.md"]  # kept, as the message says
    done = run_cli("sync", "--allow-mass-delete", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert sorted(_tree(vault)) == ["a/MEMORY.md", "a/notes"]
    shown = run_cli("show", "a/notes", "--config", str(config))
    assert shown.stdout == "notes consolidated into one file\n"
    again = run_cli("sync", "--json", "--config", str(config))
    assert again.returncode == 0 and '"commit": null' in again.stdout  # nothing pending


def test_a_file_that_became_a_folder_never_drops_either(tmp_path: Path) -> None:
    """The reverse: 'x' (the source's only file) replaced by a folder x/ with a file."""
    ws = tmp_path / "a"
    ws.mkdir()
    (ws / "x").write_text("x was a file\n")
    config = write_config(tmp_path / "vault.toml", {"a": ws})
    vault = tmp_path / "memory-vault"
    for args in (["init"], ["sync", "-q"]):
        assert run_cli(*args, "--config", str(config)).returncode == 0
    (ws / "x").unlink()
    (ws / "x").mkdir()
    (ws / "x" / "f.md").write_text("now a folder\n")
    time.sleep(RACY_MARGIN_NS / 1e9 + 0.1)
    held = run_cli("sync", "--config", str(config))
    assert held.returncode == 1
    assert sorted(_tree(vault)) == ["a/x"]
    assert run_cli("sync", "--allow-mass-delete", "--config", str(config)).returncode == 0
    assert sorted(_tree(vault)) == ["a/x/f.md"]


def test_a_folder_becoming_a_file_in_a_bigger_source_is_one_commit(tmp_path: Path) -> None:
    """No guard in the way (most files stay): the folder's files go and the file comes in the
    same commit, in either direction."""
    ws = tmp_path / "a"
    (ws / "d").mkdir(parents=True)
    for i in range(6):
        (ws / f"keep{i}.md").write_text(f"{i}\n")
    (ws / "d" / "inner.md").write_text("inner\n")
    (ws / "f").write_text("a file\n")
    config = write_config(tmp_path / "vault.toml", {"a": ws})
    vault = tmp_path / "memory-vault"
    for args in (["init"], ["sync", "-q"]):
        assert run_cli(*args, "--config", str(config)).returncode == 0
    (ws / "d" / "inner.md").unlink()
    (ws / "d").rmdir()
    (ws / "d").write_text("d is a file now\n")
    (ws / "f").unlink()
    (ws / "f").mkdir()
    (ws / "f" / "inner.md").write_text("f is a folder now\n")
    time.sleep(RACY_MARGIN_NS / 1e9 + 0.1)
    assert run_cli("sync", "-q", "--config", str(config)).returncode == 0
    tree = _tree(vault)
    assert sorted(p for p in tree if not p.startswith("a/keep")) == ["a/d", "a/f/inner.md"]
    assert git(vault, "fsck", "--strict").strip() == ""


def test_a_clock_set_back_between_syncs_keeps_the_branch_in_time_order(
        tmp_path: Path, workspace: Path, clock: Clock) -> None:
    """QA: a sync stamped with a clock set back an hour sat on top of a later commit, so
    `--at` a moment between the two resolved to the newest tree (what was synced after it),
    and no time could pick the middle commit. The committer time (what log shows and --at
    goes by) is never before the parent's; the author time and the message keep the clock's."""
    from vault.restore import resolve_at

    config = load_config(write_config(tmp_path / "vault.toml", {"agent": workspace}))
    repo, _ = VaultRepo.init(config.vault.path, "main")
    note = workspace / "f.md"
    times = [clock.now.replace(hour=h, minute=0) for h in (10, 12, 11)]  # 11: set back
    ids = []
    for n, when in enumerate(times):
        note.write_text(f"v{n}\n")
        clock.now = when
        ids.append(sync(config, now=clock).commit)
    log = git(config.vault.path, "log", "--format=%H %ct %at", "main").split("\n")
    committed = [line.split() for line in log if line]
    assert [c[0] for c in committed] == ids[::-1]
    assert [int(c[1]) for c in committed] == [int(times[1].timestamp())] * 2 + [
        int(times[0].timestamp())]  # (the newest clamped to its parent's time)
    assert int(committed[0][2]) == int(times[2].timestamp())  # (the author time: the clock's)
    at = clock.now.replace(hour=11, minute=30)
    assert resolve_at(repo, at.isoformat(), now=at).id == ids[0]  # v0: all there was by 11:30
    noon = clock.now.replace(hour=12, minute=0)
    assert resolve_at(repo, noon.isoformat(), now=noon).id == ids[2]
    assert git(config.vault.path, "show", f"{ids[0]}:agent/f.md") == "v0\n"


def test_a_folder_deeper_than_path_max_is_named_as_such(tmp_path: Path) -> None:
    """QA: a readable folder whose path passes 4,096 bytes was reported as "folder unreadable:
    File name too long ... folder cannot be read", which sent the user to its permissions. The
    limit is named now; as before, the sync fails and the vault keeps what it had."""
    import json

    src = tmp_path / "src"
    src.mkdir()
    (src / "top.md").write_text("top\n")
    deep_file(src, ["d" * 250] * 17, "deep.md", b"deep\n")  # 17 x 251 bytes: past PATH_MAX
    config = write_config(tmp_path / "vault.toml", {"a": src})
    assert run_cli("init", "--config", str(config)).returncode == 0
    proc = run_cli("sync", "--json", "--config", str(config))
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    reasons = {s["reason"] for s in report["skipped"]}
    assert reasons == {"folder not walked: its path is longer than the system allows (PATH_MAX, "
                       "4,096 bytes on Linux)"}, reasons
    [failure] = report["failures"]
    assert "its path is longer than the system allows" in failure["message"]
    assert "folder cannot be read" not in failure["message"]
    assert report["added"] == ["a/top.md"]


def test_json_in_utf16_or_utf32_is_json_not_a_corrupt_file(tmp_path: Path, workspace: Path,
                                                           clock: Clock) -> None:
    """What Windows PowerShell writes (UTF-16 with a BOM) was 'JSON is not valid UTF-8': a new
    file was skipped on every sync, and with auto_rollback the agent's rewrite of a file the
    vault had was rolled back as corrupt. A UTF-16 file cut inside a character still is."""
    import json as _json

    config = load_config(write_config(tmp_path / "vault.toml", {"agent": workspace},
                                      extra="\n[health]\nauto_rollback = true\n"))
    VaultRepo.init(config.vault.path, "main")
    sync(config, now=clock)
    past = time.time() - 10
    rewritten = _json.dumps([{"id": 2, "content": "likes coffee ☕"}]).encode("utf-16")
    (workspace / "memory.json").write_bytes(rewritten)
    new = _json.dumps({"windows": True}).encode("utf-32-le")  # no BOM: told by its NULs
    (workspace / "win.json").write_bytes(new)
    for name in ("memory.json", "win.json"):
        os.utime(workspace / name, (past, past))
    clock.tick()
    result = sync(config, now=clock)
    assert result.ok and not result.rollbacks and not result.skipped
    assert result.modified == ("agent/memory.json",) and result.added == ("agent/win.json",)
    assert subprocess.run(["git", "-C", str(config.vault.path), "show", "HEAD:agent/memory.json"],
                          capture_output=True, check=True).stdout == rewritten
    (workspace / "memory.json").write_bytes(rewritten[:-1])  # cut inside its last character
    os.utime(workspace / "memory.json", (past, past))
    clock.tick()
    cut = sync(config, now=clock)
    assert not cut.ok and cut.corrupt[0].reason.startswith("JSON is not valid UTF-16")
    assert [r.path for r in cut.rollbacks] == ["agent/memory.json"]
    assert (workspace / "memory.json").read_bytes() == rewritten


def test_the_data_dir_and_its_folders_are_made_private(tmp_path: Path, workspace: Path) -> None:
    """The first folder a sync made in it (the secret rules' cache) took the umask's mode,
    and the data dir with it: 0755, though the README says private (0700)."""
    config = write_config(tmp_path / "vault.toml", {"agent": workspace},
                          vault_path=tmp_path / "elsewhere" / "memory-vault")
    home = Path(os.environ["VAULT_HOME"])
    assert not home.exists()
    old = os.umask(0o022)
    try:
        for args in (("init",), ("sync",)):
            proc = run_cli(*args, "--config", str(config))
            assert proc.returncode == 0, proc.stderr
    finally:
        os.umask(old)
    folders = [home, *(p for p in home.rglob("*") if p.is_dir())]
    assert {p.name for p in folders} >= {home.name, "cache"}
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in folders} == {
        p.name: "0o700" for p in folders}
