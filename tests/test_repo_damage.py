"""Damaged refs: a lost branch with a history, an empty or garbage HEAD, a damaged packed-refs.
Sync and status refuse (nothing committed), doctor fails naming the damage, --repair fixes
it in place; a new vault works as before. Read back with the real git CLI."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import pytest

from conftest import Clock, deep_file, git, run_cli, write_config
from vault.config import Config, load_config
from vault.doctor import doctor
from vault.repo import VaultRepo
from vault.sync import sync


def two_syncs(config: Config, workspace: Path, clock: Clock) -> str:
    """Two commits on main; the tip."""
    sync(config, now=clock)
    (workspace / "MEMORY.md").write_text("# Memory\n\n- second\n")
    clock.tick()
    result = sync(config, now=clock)
    assert result.commit is not None
    return result.commit


def cli(config: Config, *args: str) -> subprocess.CompletedProcess[str]:
    assert config.file is not None
    return run_cli(*args, env={"VAULT_CONFIG": str(config.file)})


def repo_check(config: Config, **kwargs: bool) -> tuple[str, str, tuple[str, ...]]:
    report = doctor(config, crontab_file=config.vault.path.parent / "crontab", **kwargs)
    check = next(c for c in report.checks if c.name == "repository")
    return check.status, check.detail, report.repairs


def objects(path: Path) -> set[str]:
    """Every loose object id (a refused sync must write no commit)."""
    return {d.name + f.name for d in (path / "objects").iterdir() if len(d.name) == 2
            for f in d.iterdir()}


def commits(path: Path) -> set[str]:
    """The loose commits (read with zlib: git refuses a repository whose HEAD is damaged)."""
    return {oid for oid in objects(path) if zlib.decompress(
        (path / "objects" / oid[:2] / oid[2:]).read_bytes()).startswith(b"commit ")}


# --- a lost branch ref --------------------------------------------------------------------------


def test_lost_branch_ref_is_damage_sync_and_status_refuse(config: Config, vault: VaultRepo,
                                                          workspace: Path, clock: Clock) -> None:
    tip = two_syncs(config, workspace, clock)
    (vault.path / "refs" / "heads" / "main").unlink()  # objects, reflog and stat cache remain
    before = commits(vault.path)
    (workspace / "MEMORY.md").write_text("# Memory\n\n- third\n")
    line = (f"Error: branch main is missing from the vault, but its reflog names its last tip "
            f"{tip[:10]}: a sync now would cut its history off")
    proc = cli(config, "sync")
    assert proc.returncode == 1 and proc.stderr.splitlines()[0] == line
    assert commits(vault.path) == before  # no new root commit
    assert not (vault.path / "refs" / "heads" / "main").exists()
    proc = cli(config, "status")
    assert proc.returncode == 1 and proc.stderr.splitlines()[0] == line
    proc = cli(config, "doctor", "--crontab-file", str(vault.path.parent / "ct"))
    assert proc.returncode == 1
    assert re.search(rf"fail\s+repository\s+branch main is missing .*last tip {tip[:10]}",
                     proc.stdout, re.IGNORECASE)


@pytest.mark.parametrize("damage", ["removed", "emptied"])
def test_repair_puts_the_lost_branch_back_at_its_last_tip(config: Config, vault: VaultRepo,
                                                          workspace: Path, clock: Clock,
                                                          damage: str) -> None:
    tip = two_syncs(config, workspace, clock)
    ref = vault.path / "refs" / "heads" / "main"
    if damage == "removed":
        ref.unlink()
    else:
        ref.write_bytes(b"")  # (what a crash while git wrote it can leave)
    assert repo_check(config)[0] == "fail"
    status, _detail, repairs = repo_check(config, repair=True)
    assert status == "ok"
    assert repairs == (f"put branch main back at {tip[:10]}, the last tip its reflog records "
                       f"({len(objects(vault.path))} objects reachable from it, all intact)",)
    assert git(vault.path, "rev-parse", "main").strip() == tip
    git(vault.path, "fsck", "--strict")
    (workspace / "MEMORY.md").write_text("# Memory\n\n- third\n")
    clock.tick()
    after = sync(config, now=clock).commit
    assert after is not None
    assert git(vault.path, "rev-parse", "main^").strip() == tip  # the history goes on
    assert git(vault.path, "rev-list", "--count", "main").strip() == "3"


def test_lost_branch_and_reflog_the_stat_cache_still_names_the_tip(
        config: Config, vault: VaultRepo, workspace: Path, clock: Clock) -> None:
    tip = two_syncs(config, workspace, clock)
    git(vault.path, "update-ref", "-d", "refs/heads/main")  # (git drops the reflog too)
    assert not (vault.path / "logs" / "refs" / "heads" / "main").exists()
    proc = cli(config, "sync")
    assert proc.returncode == 1 and proc.stderr.splitlines()[0] == (
        f"Error: branch main is missing from the vault, but the stat cache names its last "
        f"tip {tip[:10]}: a sync now would cut its history off")
    status, _detail, repairs = repo_check(config, repair=True)
    assert status == "ok" and "the last tip the stat cache records" in repairs[0]
    assert git(vault.path, "rev-parse", "main").strip() == tip


def test_lost_branch_whose_tip_is_damaged_is_not_put_back(config: Config, vault: VaultRepo,
                                                         workspace: Path, clock: Clock) -> None:
    tip = two_syncs(config, workspace, clock)
    blob = git(vault.path, "rev-parse", "main:agent/MEMORY.md").strip()
    (vault.path / "objects" / blob[:2] / blob[2:]).unlink()
    (vault.path / "refs" / "heads" / "main").unlink()
    status, _detail, repairs = repo_check(config, repair=True)
    assert status == "fail"
    assert repairs[0].startswith(f"did not put branch main back at {tip[:10]} (its reflog): "
                                 f"blob {blob[:10]}")
    assert repairs[1].startswith("cannot repair the repository")  # no remote to re-clone from
    assert not (vault.path / "refs" / "heads" / "main").exists()


def test_a_new_vault_still_starts_its_history(config: Config, vault: VaultRepo,
                                              workspace: Path) -> None:
    proc = cli(config, "status")
    assert proc.returncode == 0, proc.stderr
    status, detail, _ = repo_check(config)
    assert status == "warn" and "no commits yet" in detail
    proc = cli(config, "sync")
    assert proc.returncode == 0, proc.stderr
    assert git(vault.path, "rev-list", "--count", "main").strip() == "1"


def test_a_config_naming_a_new_branch_is_not_a_lost_one(tmp_path: Path, config: Config,
                                                        vault: VaultRepo, workspace: Path,
                                                        clock: Clock) -> None:
    """The stat cache names main's tip; a branch the config now names starts its own history."""
    two_syncs(config, workspace, clock)
    other = load_config(write_config(tmp_path / "other.toml", {"agent": workspace},
                                     extra='branch = "work"', vault_path=vault.path))
    assert other.vault.branch == "work"
    clock.tick()
    assert sync(other, now=clock).commit is not None
    assert git(vault.path, "rev-list", "--count", "work").strip() == "1"


# --- HEAD and packed-refs ------------------------------------------------------------------------


@pytest.mark.parametrize("content, what", [(b"", "empty"),
                                           (b"\x00" * 23, "damaged"),
                                           (b"garbage\n", "damaged (it reads 'garbage')")])
def test_damaged_head_fails_doctor_and_repair_rewrites_it(config: Config, vault: VaultRepo,
                                                         workspace: Path, clock: Clock,
                                                         content: bytes, what: str) -> None:
    tip = two_syncs(config, workspace, clock)
    (vault.path / "HEAD").write_bytes(content)
    before = commits(vault.path)
    (workspace / "MEMORY.md").write_text("# Memory\n\n- third\n")
    line = f"Error: the vault's HEAD file {vault.path / 'HEAD'} is {what}"
    proc = cli(config, "sync")
    assert proc.returncode == 1 and proc.stderr.splitlines()[0].startswith(line)
    assert commits(vault.path) == before
    proc = cli(config, "status")
    assert proc.returncode == 1 and proc.stderr.splitlines()[0].startswith(line)
    proc = cli(config, "doctor", "--json", "--crontab-file", str(vault.path.parent / "ct"))
    assert proc.returncode == 1
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert checks["repository"]["status"] == "fail"
    assert "HEAD file" in checks["repository"]["detail"]
    status, _detail, repairs = repo_check(config, repair=True)
    assert status == "ok" and repairs[0].startswith("rewrote HEAD (")
    assert (vault.path / "HEAD").read_text() == "ref: refs/heads/main\n"
    assert git(vault.path, "symbolic-ref", "HEAD").strip() == "refs/heads/main"
    git(vault.path, "fsck", "--strict")
    clock.tick()
    assert sync(config, now=clock).commit is not None
    assert git(vault.path, "rev-parse", "main^").strip() == tip


def test_damaged_packed_refs_fails_doctor_and_repair_rewrites_it(
        config: Config, vault: VaultRepo, workspace: Path, clock: Clock) -> None:
    tip = two_syncs(config, workspace, clock)
    git(vault.path, "pack-refs", "--all")
    packed = vault.path / "packed-refs"
    packed.write_text(re.sub(r"(?m)^[0-9a-f]{40}", "zzzz", packed.read_text()))
    damaged = packed.read_bytes()
    (workspace / "MEMORY.md").write_text("# Memory\n\n- third\n")
    proc = cli(config, "sync")
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == (
        f"Error: the vault's packed-refs file {packed} is damaged (line 2: 'zzzz refs/heads/main'"
        "); git cannot read the vault, and no sync can commit")
    assert cli(config, "status").returncode == 1
    proc = cli(config, "doctor", "--crontab-file", str(vault.path.parent / "ct"))
    assert proc.returncode == 1 and "packed-refs" in proc.stdout
    status, _detail, repairs = repo_check(config, repair=True)
    assert status == "ok"
    assert repairs[0].startswith("rewrote packed-refs from its readable lines")
    assert f"refs/heads/main at {tip[:10]}" in repairs[0]
    asides = list(vault.path.glob("packed-refs.damaged-*"))
    assert len(asides) == 1 and asides[0].read_bytes() == damaged  # kept whole
    assert git(vault.path, "rev-parse", "main").strip() == tip
    git(vault.path, "fsck", "--strict")
    clock.tick()
    assert sync(config, now=clock).commit is not None
    assert git(vault.path, "rev-parse", "main^").strip() == tip


# --- the restore drill ------------------------------------------------------------------------


def test_drill_without_an_index_needs_no_model(tmp_path: Path, workspace: Path,
                                               clock: Clock) -> None:
    """No index was ever built: the drill proves the restore and needs no embedding model (here
    one that is not there: a model folder that does not exist)."""
    missing = tmp_path / "no-such-model"
    config = load_config(write_config(tmp_path / "nomodel.toml", {"agent": workspace},
                                      extra=f'[index]\nmodel = "{missing}"'))
    VaultRepo.init(config.vault.path, config.vault.branch)
    sync(config, now=clock)
    assert not config.index_path.exists() and not missing.exists()
    report = doctor(config, drill=True, crontab_file=tmp_path / "ct")
    assert report.drill is not None and report.drill.problems == ()
    assert report.drill.files == 5 and report.drill.chunks_reindexed == 0
    proc = cli(config, "doctor", "--drill", "--json", "--crontab-file", str(tmp_path / "ct"))
    drill = json.loads(proc.stdout)["drill"]
    assert drill["problems"] == [] and drill["files"] == 5


def test_drill_verifies_a_file_whose_restored_path_is_longer_than_path_max(
        tmp_path: Path, clock: Clock) -> None:
    """Restore writes folder by folder, so the drill must read back the same way: the source's
    path is short enough for the sync, the drill's restored copy (under its temp folder, longer
    than /tmp/vd.../deep) is not."""
    short = Path(tempfile.mkdtemp(prefix="vd", dir="/tmp"))
    try:
        src = short / "deep"
        src.mkdir()
        deep_file(src, ["d" * 200] * 20 + ["e" * 37], "f.md", b"deep\n")  # (over PATH_MAX)
        config = load_config(write_config(tmp_path / "deep.toml", {"a": src},
                                          extra='[index]\nmodel = "hash:64"'))
        VaultRepo.init(config.vault.path, config.vault.branch)
        result = sync(config, now=clock)
        assert result.commit is not None, [s.reason for s in result.skipped]
        report = doctor(config, drill=True, crontab_file=tmp_path / "ct")
        assert report.drill is not None and report.drill.problems == ()
        assert report.drill.files == 1
    finally:
        shutil.rmtree(short)


# --- damaged objects behind the tip ---------------------------------------------------------------


def reader(config: Config, *args: str) -> subprocess.CompletedProcess[str]:
    """A read-only command in a real process; a hang fails the test (libgit2#7342 loops)."""
    assert config.file is not None
    try:
        return subprocess.run([sys.executable, "-m", "vault", *args, "--config",
                               str(config.file)], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"vault {' '.join(args)} hung on a damaged object") from None


@pytest.mark.parametrize("how", ["truncated", "missing"])
def test_log_and_status_report_a_damaged_older_commit(config: Config, vault: VaultRepo,
                                                      workspace: Path, clock: Clock,
                                                      how: str) -> None:
    """libgit2's walker read every commit unchecked: a truncated one made `log` and `status`
    spin forever (SIGTERM did nothing), a missing one ended in exit 3, "unexpected"."""
    two_syncs(config, workspace, clock)
    older = git(vault.path, "rev-parse", "HEAD~1").strip()
    path = vault.path / "objects" / older[:2] / older[2:]
    path.chmod(0o644)
    if how == "truncated":
        path.write_bytes(path.read_bytes()[:20])
    else:
        path.unlink()
    for args in (("log",), ("log", "-n", "5", "--json"), ("status",)):
        proc = reader(config, *args)
        assert proc.returncode == 1, (args, proc.stderr)
        line = proc.stderr.splitlines()[0]
        assert older in line and ("damaged" if how == "truncated" else "missing") in line


def test_log_path_reports_a_damaged_tree(config: Config, vault: VaultRepo, workspace: Path,
                                         clock: Clock) -> None:
    two_syncs(config, workspace, clock)
    subtree = git(vault.path, "rev-parse", "HEAD:agent").strip()
    path = vault.path / "objects" / subtree[:2] / subtree[2:]
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[:20])
    proc = reader(config, "log", "--path", "agent/MEMORY.md")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines()[0].startswith(f"Error: vault object {subtree} is damaged")


def test_log_path_lists_the_same_changes_as_git(config: Config, vault: VaultRepo,
                                                workspace: Path, clock: Clock) -> None:
    """changed_paths compares loose trees itself now: the same A/M/D as git, a file that
    became a folder (and back) included."""
    sync(config, now=clock)
    (workspace / "MEMORY.md").write_text("# Memory\n\n- changed\n")
    (workspace / "memory" / "2026-11-20.md").unlink()
    (workspace / "memory" / "2026-11-20.md").mkdir()
    (workspace / "memory" / "2026-11-20.md" / "inside.md").write_text("now a folder\n")
    (workspace / "new.md").write_text("new\n")
    os.chmod(workspace / "memory.json", 0o755)
    clock.tick()
    sync(config, now=clock)
    shutil.rmtree(workspace / "memory" / "2026-11-20.md")
    (workspace / "memory" / "2026-11-20.md").write_text("a file again\n")
    clock.tick()
    sync(config, now=clock)
    for info in vault.walk():
        want = dict(reversed(line.split("\t")) for line in git(
            vault.path, "show", "--no-renames", "--format=", "--name-status",
            info.id).splitlines())
        got = vault.changed_paths(info.id)
        assert got == {path: ("M" if status == "T" else status) for path, status in want.items()}
