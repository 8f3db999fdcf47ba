"""Remote fixes: a replay never drops what a commit did outside its host's folder, a fast-forward
takes no other writer's version of this machine's files, a remote branch vault did not start is
refused under every layout, and a relative [vault] remote is relative to vault.toml."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import Clock, git, run_cli
from test_remote import bare, host_config, remote_files
from vault.config import Config, load_config
from vault.doctor import check_remote
from vault.remote import tracking_ref
from vault.repo import VaultRepo
from vault.sync import sync


def hand_commit(tmp_path: Path, config: Config, name: str, text: str) -> str:
    """A commit made by hand on top of the vault's branch (in a clone, pushed back), adding
    name at the top of the vault; its id."""
    work = tmp_path / f"hand-{config.vault.host}"
    subprocess.run(["git", "clone", "-q", str(config.vault.path), str(work)], check=True,
                   capture_output=True)
    (work / name).write_text(text)
    git(work, "add", name)
    git(work, "-c", "user.name=me", "-c", "user.email=me@example.com", "commit", "-qm",
        f"add {name} by hand")
    git(work, "push", "-q", "origin", "HEAD:main")
    return git(work, "rev-parse", "HEAD").strip()


def test_a_commit_made_by_hand_is_never_replayed_away(tmp_path: Path, clock: Clock) -> None:
    """A replay takes only <host>/ of each commit: a hand commit's NOTES.md at the top was lost
    on the vault's branch and on the remote (the push said 2 commits replayed). Now refused,
    with everything kept; pointing the branch at the remote's, as the message says, goes on."""
    remote = bare(tmp_path / "remote.git")
    a = host_config(tmp_path, "alpha", str(remote))
    b = host_config(tmp_path, "beta", str(remote))
    assert sync(a, now=clock).push.pushed  # type: ignore[union-attr]
    hand = hand_commit(tmp_path, a, "NOTES.md", "my notes\n")
    (tmp_path / "ws-beta" / "MEMORY.md").write_text("# beta v2\n")
    assert sync(b, now=clock).push.pushed  # type: ignore[union-attr]
    (tmp_path / "ws-alpha" / "MEMORY.md").write_text("# alpha v2\n")
    clock.tick()
    before = git(remote, "rev-parse", "main")
    proc = run_cli("sync", "--quiet", "--config", str(a.file))
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines() == [
        f"Error: not pushed: commit {hand[:10]} changes NOTES.md, outside this host's folder "
        "alpha/ (made by hand, or under another [vault] layout or host), which a replay would "
        "drop: push it yourself (rebased in a clone of the vault) or give it up, then point "
        f"the branch at the remote's: git -C {a.vault.path} update-ref refs/heads/main "
        f"{tracking_ref('main')} (2 commit(s) kept in the vault only)"]
    assert git(remote, "rev-parse", "main") == before  # the remote untouched
    assert git(a.vault.path, "show", "main:NOTES.md") == "my notes\n"  # kept in the vault
    assert git(a.vault.path, "show", "main:alpha/agent/MEMORY.md") == "# alpha v2\n"
    # Given up, as the message says: the next sync stores alpha's files again, on top
    git(a.vault.path, "update-ref", "refs/heads/main", tracking_ref("main"))
    clock.tick()
    result = sync(a, now=clock)
    assert result.push is not None and result.push.pushed and result.push.replayed == 0
    assert git(remote, "show", "main:alpha/agent/MEMORY.md") == "# alpha v2\n"
    assert git(remote, "show", "main:beta/agent/MEMORY.md") == "# beta v2\n"


def test_commits_from_before_a_switch_to_a_host_layout_are_not_replayed_away(
        tmp_path: Path, clock: Clock) -> None:
    """The refusal's hint says to set layout = "{host}/{source}": the commits made before (at
    the top, agent/...) were replayed as copies of the other machine's tree. Now refused."""
    remote = bare(tmp_path / "remote.git")
    assert sync(host_config(tmp_path, "alpha", str(remote)), now=clock).push.pushed  # type: ignore[union-attr]
    b = host_config(tmp_path, "beta", str(remote), layout="{source}")
    first = sync(b, now=clock)
    assert first.push is not None and first.push.refused
    assert 'set [vault] layout = "{host}/{source}"' in first.push.message
    b.file.write_text(b.file.read_text().replace('layout = "{source}"',
                                                 'layout = "{host}/{source}"'))
    b = load_config(b.file)
    clock.tick()
    before = remote_files(remote)
    second = sync(b, now=clock)
    assert second.commit is not None and second.push is not None
    assert second.push.refused and not second.push.pushed and second.push.replayed == 0
    assert second.push.message.startswith(
        f"commit {first.commit[:10]} changes agent/MEMORY.md, outside this host's folder beta/")
    assert remote_files(remote) == before
    head = VaultRepo.open(b.vault.path, "main").head_id()
    assert head == second.commit  # nothing replayed, nothing lost
    assert git(b.vault.path, "show", f"{head}~1:agent/MEMORY.md") == "# beta\n"


def clone_vault(tmp_path: Path, name: str, remote: Path, layout: str,
                host: str | None = None) -> Config:
    """A second machine's vault: a `git clone --bare` of remote, taken by `vault init`."""
    clone = tmp_path / f"vault-{name}"
    subprocess.run(["git", "clone", "-q", "--bare", str(remote), str(clone)], check=True)
    ws = tmp_path / f"ws-{name}"
    ws.mkdir()
    (ws / "MEMORY.md").write_text(f"# {name}\n")
    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(f'[vault]\npath = "{clone}"\nhost = "{host or name}"\nlayout = "{layout}"\n'
                   f'remote = "{remote}"\n\n[[sources]]\nname = "agent"\npath = "{ws}"\n')
    config = load_config(cfg)
    VaultRepo.init(config.vault.path, "main")
    return config


@pytest.mark.parametrize("layout,second_host", [("{source}", "two"),
                                                ("{host}/{source}", "one")])
def test_a_fast_forward_takes_no_other_writers_version_of_this_machines_files(
        tmp_path: Path, clock: Clock, layout: str, second_host: str) -> None:
    """Only the remote moved (here: a [vault] remote respelled, so the old tracking ref goes):
    the branch moved to another machine's version of this machine's own files, and each sync
    then overwrote the other's. Now refused as a replay would be, the branch left where it is."""
    remote = bare(tmp_path / "remote.git")
    one = host_config(tmp_path, "one", str(remote), layout=layout)
    mine = sync(one, now=clock).commit
    two = clone_vault(tmp_path, "two", remote, layout, host=second_host)
    clock.tick()
    theirs = sync(two, now=clock)
    assert theirs.push is not None and theirs.push.pushed
    one.file.write_text(one.file.read_text().replace(f'"{remote}"', f'"{remote.as_uri()}"'))
    one = load_config(one.file)
    clock.tick()
    result = sync(one, now=clock)
    assert result.commit is None and result.push is not None
    assert result.push.refused and not result.push.pushed
    expected = ("the remote branch has commits from another machine" if layout == "{source}"
                else "the remote has commits from host 'one' that this vault does not have")
    assert result.push.message.startswith(expected)
    assert VaultRepo.open(one.vault.path, "main").head_id() == mine
    proc = run_cli("sync", "--quiet", "--config", str(one.file))
    assert proc.returncode == 1 and proc.stderr.startswith(f"Error: not pushed: {expected}")
    assert "0 commit(s)" not in proc.stderr  # (nothing of this vault's waits: not said)


def test_a_fast_forward_to_other_hosts_folders_still_happens(tmp_path: Path,
                                                             clock: Clock) -> None:
    """With a host layout, another host's commits on top are taken as they are."""
    remote = bare(tmp_path / "remote.git")
    one = host_config(tmp_path, "one", str(remote))
    sync(one, now=clock)
    two = clone_vault(tmp_path, "two", remote, "{host}/{source}")
    clock.tick()
    tip = sync(two, now=clock).commit
    one.file.write_text(one.file.read_text().replace(f'"{remote}"', f'"{remote.as_uri()}"'))
    one = load_config(one.file)
    result = sync(one, now=clock)
    assert result.push is not None and result.push.pushed and not result.push.refused
    assert VaultRepo.open(one.vault.path, "main").head_id() == tip


def commit_on_remote(remote: Path, work: Path, name: str, text: str, message: str) -> None:
    """A commit made by a person (in a clone at work) adding name, pushed to remote's main."""
    subprocess.run(["git", "clone", "-q", str(remote), str(work)], check=True,
                   capture_output=True)
    (work / name).write_text(text)
    git(work, "add", name)
    git(work, "-c", "user.name=me", "-c", "user.email=me@example.com", "commit", "-qm", message)
    git(work, "push", "-q", "origin", "HEAD:main")


def readme_remote(tmp_path: Path) -> Path:
    """A remote whose branch holds one "Initial commit" with a README, as a hosting site makes."""
    remote = bare(tmp_path / "remote.git")
    commit_on_remote(remote, tmp_path / "clone", "README.md", "# my vault\n", "Initial commit")
    return remote


def test_a_remote_with_a_readme_commit_is_refused_under_a_host_layout_too(
        tmp_path: Path) -> None:
    """README: a remote branch holding commits vault did not make is refused (exit 1); under
    layout = "{host}/{source}" vault replayed its commits on top of it."""
    remote = readme_remote(tmp_path)
    before = git(remote, "rev-parse", "main")
    config = host_config(tmp_path, "laptop", str(remote))
    proc = run_cli("sync", "--quiet", "--config", str(config.file))
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "Error: not pushed: the remote branch has commits vault did not make (a README or "
        "license made with the repository?): push to an empty repository, or remove them "
        "(1 commit(s) kept in the vault only)"]
    assert git(remote, "rev-parse", "main") == before


def relative_remote_config(tmp_path: Path) -> Config:
    """vault.toml in its own folder, naming `remote = "R.git"` beside it."""
    folder = tmp_path / "conf"
    folder.mkdir()
    bare(folder / "R.git")
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "MEMORY.md").write_text("# memory\n")
    cfg = folder / "vault.toml"
    cfg.write_text(f'[vault]\npath = "{tmp_path / "vault"}"\nremote = "R.git"\n\n'
                   f'[[sources]]\nname = "agent"\npath = "{ws}"\n')
    config = load_config(cfg)
    VaultRepo.init(config.vault.path, "main")
    return config


def test_a_relative_remote_is_relative_to_vault_toml(tmp_path: Path) -> None:
    """sync read `remote = "R.git"` relative to the vault repository (an "offline" warning at
    every sync, nothing under --quiet), doctor relative to the current folder."""
    config = relative_remote_config(tmp_path)
    remote = config.file.parent / "R.git"
    assert config.vault.remote == str(remote)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = run_cli("sync", "--config", str(config.file), cwd=elsewhere)
    assert proc.returncode == 0 and "Pushed to the remote." in proc.stdout, proc.stderr
    assert remote_files(remote).keys() == {"agent/MEMORY.md"}
    repo = VaultRepo.open(config.vault.path, "main")
    assert check_remote(config, repo).detail == f"{remote} reachable, up to date"


@pytest.mark.parametrize("url", ["git@github.com:sam/memory-vault.git",
                                 "https://github.com/sam/memory-vault.git",
                                 "file:///srv/memory-vault.git", "/srv/memory-vault.git",
                                 "host:vault.git", "ext::ssh -p 22 host %S vault.git"])
def test_a_remote_url_is_taken_as_it_is(tmp_path: Path, url: str) -> None:
    cfg = tmp_path / "vault.toml"
    cfg.write_text(f"[vault]\nremote = '{url}'\n")
    assert load_config(cfg).vault.remote == url


def test_a_commit_made_by_hand_on_the_remote_is_fine_under_a_host_layout(
        tmp_path: Path, clock: Clock) -> None:
    """README: "a commit made by hand on top of a vault's is fine". With a host layout the
    replay takes only this host's folder, so a hand commit on the remote stays and this
    vault's commits go on top; only a branch vault never wrote to (the README case) is
    refused."""
    remote = bare(tmp_path / "remote.git")
    one = host_config(tmp_path, "one", str(remote))
    sync(one, now=clock)
    commit_on_remote(remote, tmp_path / "by-hand", "NOTES.md", "notes a person keeps\n", "notes")
    (tmp_path / "ws-one" / "MEMORY.md").write_text("# one\n\n- more\n")
    clock.tick()
    result = sync(one, now=clock)
    assert result.push is not None and result.push.pushed, result.push
    assert remote_files(remote).keys() == {"NOTES.md", "one/agent/MEMORY.md"}
    assert git(remote, "show", "main:one/agent/MEMORY.md") == "# one\n\n- more\n"
    assert git(remote, "rev-parse", "main").strip() == \
        VaultRepo.open(one.vault.path, "main").head_id()
