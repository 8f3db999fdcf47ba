"""`vault log` at its edges: a clock that went backwards, bad --path and --since values."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import run_cli

from vault.config import Config
from vault.errors import UsageError
from vault.history import log, since_time
from vault.repo import VaultRepo
from vault.sync import sync


def sync_at(config: Config, workspace: Path, at: datetime) -> str:
    """One commit stamped at `at` (the workspace changes so that there is something to commit),
    its committer time too: as vault wrote commits before it kept their times in order (a sync
    now takes its parent's time when the clock went back), which a vault's history from then,
    or a commit made by hand, can still hold."""
    import pygit2

    (workspace / "MEMORY.md").write_text(f"# Memory\n\n- noted at {at.isoformat()}\n")
    result = sync(config, now=lambda: at)
    assert result.commit is not None
    repo = pygit2.Repository(str(config.vault.path))
    made = repo[result.commit]
    if made.commit_time == made.author.time:
        return result.commit
    again = repo.create_commit(None, made.author, made.author, made.message, made.tree_id,
                               made.parent_ids)  # (the committer time: the clock's, as then)
    repo.references[f"refs/heads/{config.vault.branch}"].set_target(again)
    return str(again)


def test_since_walks_past_a_clock_that_went_backwards(config_file: Path, config: Config,
                                                       vault: VaultRepo, workspace: Path) -> None:
    now = datetime.now(timezone.utc)
    ten, hours_ago, five = (sync_at(config, workspace, now - timedelta(minutes=m))
                            for m in (10, 120, 5))
    proc = run_cli("log", "--json", "--since", "20 minutes ago", "--config", str(config_file))
    assert proc.returncode == 0, proc.stderr
    assert [c["commit"] for c in json.loads(proc.stdout)["commits"]] == [five, ten]
    assert hours_ago not in proc.stdout


@pytest.mark.parametrize("older, listed", [(4, True), (5, False)])
def test_since_stops_after_five_older_commits_in_a_row(config: Config, vault: VaultRepo,
                                                       workspace: Path, older: int,
                                                       listed: bool) -> None:
    now = datetime(2026, 11, 21, 10, 15, tzinfo=timezone.utc)
    first = sync_at(config, workspace, now - timedelta(minutes=10))
    for i in range(older):
        sync_at(config, workspace, now - timedelta(hours=2, minutes=i))
    last = sync_at(config, workspace, now - timedelta(minutes=5))
    ids = [e.commit.id for e in log(vault, since=now - timedelta(minutes=20))]
    assert ids == ([last, first] if listed else [last])  # git's SLOP: the same walk, the same cut


@pytest.mark.parametrize("pattern, message", [
    ("!", "'!' is not a valid gitignore pattern (a lone '!' negates nothing)"),
    ("\\", "'\\\\' is not a valid gitignore pattern (it ends with a lone '\\')"),
    ("[z-a]", "'[z-a]' is not a valid pattern: bad character range z-a"),
])
def test_bad_path_pattern_is_a_usage_error(config_file: Path, config: Config, vault: VaultRepo,
                                           pattern: str, message: str) -> None:
    sync(config)
    proc = run_cli("log", "--path", "MEMORY.md", "--path", pattern, "--config", str(config_file))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines()[0] == f"Error: --path: {message}"


@pytest.mark.parametrize("pattern", ["agent/MEMORY.md", "./agent/MEMORY.md",
                                     "agent//MEMORY.md", "agent/memory/../MEMORY.md",
                                     "{ws}/MEMORY.md", "{ws}/", "{ws}",
                                     "MEMORY.md"])  # (from inside the source's folder)
def test_path_spelled_another_way_finds_the_same_commits(config_file: Path, config: Config,
                                                         vault: VaultRepo, workspace: Path,
                                                         pattern: str) -> None:
    """A path as a shell completes it, or the file's own path in its source: not "No commits
    match", which says the file was never recorded."""
    commit = sync(config).commit
    proc = run_cli("log", "--json", "--path", pattern.format(ws=workspace),
                   "--config", str(config_file), cwd=workspace if pattern == "MEMORY.md" else None)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)["commits"]
    assert [c["commit"] for c in found] == [commit]
    assert {"status": "A", "path": "agent/MEMORY.md"} in found[0]["changes"]


@pytest.mark.parametrize("pattern, message", [
    ("", "--path '': an empty path matches nothing"),
    ("../agent/MEMORY.md", "--path ../agent/MEMORY.md: goes above the vault's top"),
    ("/nowhere/MEMORY.md", "--path /nowhere/MEMORY.md: not inside any source's folder"),
])
def test_a_path_that_can_match_nothing_is_refused(config_file: Path, config: Config,
                                                  vault: VaultRepo, pattern: str,
                                                  message: str) -> None:
    sync(config)
    proc = run_cli("log", "--path", pattern, "--config", str(config_file))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [f"Error: {message}",
                                        "Hint: give a vault path such as agent/MEMORY.md"]


def test_an_empty_since_is_refused_not_ignored(config_file: Path, config: Config,
                                               vault: VaultRepo) -> None:
    """A script passing an empty variable got the whole history without a word."""
    sync(config)
    proc = run_cli("log", "--since", "", "--config", str(config_file))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("Error: no time given")


@pytest.mark.parametrize("spec", ["HEAD~99", "0123abcd"])
def test_since_an_unknown_commit_is_a_usage_error(config: Config, vault: VaultRepo,
                                                  spec: str) -> None:
    sync(config)
    now = datetime.now(timezone.utc)
    with pytest.raises(UsageError, match=f"^--since: no commit '{spec}' in the vault$") as info:
        since_time(vault, spec, now)
    assert info.value.exit_code == 2
    assert since_time(vault, "HEAD", now) == vault.resolve("HEAD")


def test_since_an_unknown_commit_on_the_command_line(config_file: Path, config: Config,
                                                    vault: VaultRepo) -> None:
    """Before: exit 1, which means "a source could not be synced"."""
    sync(config)
    proc = run_cli("log", "--since", "HEAD~99", "--config", str(config_file))
    assert (proc.returncode, proc.stderr.splitlines()[0]) == (
        2, "Error: --since: no commit 'HEAD~99' in the vault")


def test_since_a_commit_lists_it_and_those_after_it_not_older_ones_of_its_second(
        config: Config, vault: VaultRepo, workspace: Path, clock: Clock) -> None:
    """The commit was turned into its one-second time: its parent and grandparent, synced in
    the same second, were listed too."""
    for n in range(3):
        (workspace / "MEMORY.md").write_text(f"# Memory\n\n- version {n}\n")
        sync(config, now=clock)  # (the same clock: three commits in one second)
    ids = [e.commit.id for e in log(vault)]
    now = datetime.now(timezone.utc)
    assert [e.commit.id for e in log(vault, since=since_time(vault, "HEAD", now))] == ids[:1]
    assert [e.commit.id for e in log(vault, since=since_time(vault, "HEAD~1", now))] == ids[:2]
    narrowed = log(vault, since=since_time(vault, "HEAD~1", now), paths=("memory.json",))
    assert narrowed == []  # (HEAD~1 does not match the path: the walk still ends there)
    proc = run_cli("log", "--since", "HEAD~1", "--json", "--config", str(config.file))
    assert [c["commit"] for c in json.loads(proc.stdout)["commits"]] == ids[:2]
