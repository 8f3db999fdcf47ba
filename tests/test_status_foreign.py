"""A repository vault did not make: status and doctor refuse it as sync does; no last sync
comes from a commit vault did not make."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

from conftest import Clock, git, run_cli, write_config
from vault.config import load_config
from vault.doctor import doctor
from vault.repo import NotMadeByVaultError, VaultRepo
from vault.status import status
from vault.sync import format_time, sync

HINT = "set [vault] path to an empty or new folder"


def foreign(tmp_path: Path) -> Path:
    """A project's bare repository: one commit, no vault trailer, and an origin."""
    bare = tmp_path / "other.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    tree = git(bare, "hash-object", "-t", "tree", "-w", "/dev/null").strip()
    commit = git(bare, "-c", "user.name=x", "-c", "user.email=x@x", "commit-tree", "-m",
                 "Initial commit", tree).strip()
    git(bare, "update-ref", "refs/heads/main", commit)
    git(bare, "remote", "add", "origin", str(tmp_path / "upstream.git"))
    return bare


def setup(tmp_path: Path, workspace: Path) -> tuple[Path, Path, str]:
    bare = foreign(tmp_path)
    config_file = write_config(tmp_path / "v.toml", {"agent": workspace}, vault_path=bare)
    reason = (f"{bare} is a git repository whose branch 'main' was not made by vault; "
              "refusing to use it as the vault")
    return bare, config_file, reason


def test_status_refuses_a_branch_vault_did_not_make_as_sync_does(tmp_path: Path,
                                                                 workspace: Path) -> None:
    bare, config_file, reason = setup(tmp_path, workspace)
    config = load_config(config_file)
    with pytest.raises(NotMadeByVaultError) as caught:
        status(config)
    assert (caught.value.message, caught.value.hint) == (reason, HINT)
    for command in ("sync", "status"):  # the same line, the same exit code
        proc = run_cli(command, "--config", str(config_file))
        assert (proc.returncode, proc.stderr.splitlines()[:2]) == (
            1, [f"Error: {reason}", f"Hint: {HINT}"]), (command, proc.stderr)


def test_doctor_fails_a_branch_vault_did_not_make(tmp_path: Path, workspace: Path) -> None:
    bare, config_file, reason = setup(tmp_path, workspace)
    config = load_config(config_file)
    refs = git(bare, "for-each-ref")
    report = doctor(config, repair=True, drill=True, crontab_file=tmp_path / "crontab")
    got = {c.name: (c.status, c.detail) for c in report.checks}
    assert got["repository"] == ("fail", f"{reason} ({HINT})")
    assert got["last sync"] == ("fail", "never synced")  # (its commit is no sync)
    assert got["remote"][0] == "warn" and got["memory files"][0] == "warn"
    assert not report.ok and report.repairs == ()  # never re-cloned over a project's repo
    assert report.drill is not None and report.drill.problems == (f"nothing to drill: "
                                                                  f"{reason} ({HINT})",)
    assert bare.is_dir() and not list(tmp_path.glob("other.git.damaged-*"))
    assert git(bare, "for-each-ref") == refs  # no tracking ref recorded or forgotten
    proc = run_cli("doctor", "--json", "--crontab-file", str(tmp_path / "ct"), "--config",
                   str(config_file))
    assert proc.returncode == 1
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert checks["repository"]["status"] == "fail"
    assert checks["last sync"]["detail"] == "never synced"


def test_last_sync_is_the_last_commit_vault_made(tmp_path: Path, workspace: Path,
                                                 clock: Clock) -> None:
    """A commit made by hand on top of a vault's keeps it a vault, but it is no sync."""
    config = load_config(write_config(tmp_path / "v.toml", {"agent": workspace}))
    VaultRepo.init(config.vault.path, "main")
    synced = sync(config, now=clock)
    assert synced.commit  # (its stamp says the sync's time: the clock's)
    later = "2026-11-21T10:20:00+00:00"
    hand = subprocess.run(
        ["git", "-C", str(config.vault.path), "-c", "user.name=u", "-c", "user.email=u@x",
         "commit-tree", "-m", "by hand", "-p", "main", "main^{tree}"], check=True, text=True,
        capture_output=True, env={**os.environ, "GIT_COMMITTER_DATE": later,
                                  "GIT_AUTHOR_DATE": later}).stdout.strip()
    git(config.vault.path, "update-ref", "refs/heads/main", hand)

    st = status(config, now=lambda: datetime(2026, 11, 21, 10, 25, tzinfo=timezone.utc))
    assert st.last_sync is not None and st.last_sync.id == hand  # (the last *commit*)
    assert st.last_run == clock.now
    report = doctor(config, now=lambda: datetime(2026, 11, 21, 10, 25, tzinfo=timezone.utc))
    detail = {c.name: c.detail for c in report.checks}["last sync"]
    assert detail == f"{format_time(clock.now)}, 10 min ago"
