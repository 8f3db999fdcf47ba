"""Remote: push after each sync, offline keeps commits local, several hosts share one vault."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from conftest import Clock, git, run_cli, write_config
from vault.config import Config, load_config
from vault.repo import VaultRepo
from vault.status import status
from vault.sync import sync


def bare(path: Path) -> Path:
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(path)], check=True)
    return path


def host_config(tmp_path: Path, name: str, remote: str, layout: str = "{host}/{source}") -> Config:
    ws = tmp_path / f"ws-{name}"
    ws.mkdir(parents=True, exist_ok=True)
    (ws / "MEMORY.md").write_text(f"# {name}\n")
    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(f'[vault]\npath = "{tmp_path / ("vault-" + name)}"\nhost = "{name}"\n'
                   f'layout = "{layout}"\nremote = "{remote}"\n\n'
                   f'[[sources]]\nname = "agent"\npath = "{ws}"\n')
    config = load_config(cfg)
    VaultRepo.init(config.vault.path, "main")
    return config


def remote_files(remote: Path) -> dict[str, str]:
    out = git(remote, "ls-tree", "-r", "main")
    return {line.split("\t")[1]: line.split()[2] for line in out.splitlines()}


def linear(remote: Path) -> list[str]:
    """Commits on the remote branch, asserting each has at most one parent."""
    lines = git(remote, "rev-list", "--parents", "main").splitlines()
    assert all(len(line.split()) <= 2 for line in lines), "history is not linear"
    return [line.split()[0] for line in lines]


def test_push_after_each_sync(tmp_path: Path, clock: Clock) -> None:
    remote = bare(tmp_path / "remote.git")
    config = host_config(tmp_path, "laptop", str(remote), layout="{source}")
    result = sync(config, now=clock)
    assert result.push is not None and result.push.pushed
    assert git(remote, "rev-parse", "main").strip() == result.commit
    assert remote_files(remote).keys() == {"agent/MEMORY.md"}
    # nothing changed and nothing to push: no network at all
    assert sync(config, now=clock).push is None
    subprocess.run(["git", "-C", str(remote), "fsck", "--no-dangling"], check=True,
                   capture_output=True)


def test_offline_keeps_commits_local_and_the_next_sync_pushes(tmp_path: Path,
                                                              clock: Clock) -> None:
    remote = tmp_path / "not-yet.git"
    config = host_config(tmp_path, "laptop", str(remote), layout="{source}")
    first = sync(config, now=clock)
    assert first.commit and first.push is not None and not first.push.pushed
    assert first.push.unpushed == 1 and first.push.message.startswith("offline:")
    (tmp_path / "ws-laptop" / "MEMORY.md").write_text("# laptop\n- more\n")
    clock.tick()
    second = sync(config, now=clock)
    assert second.push is not None and second.push.unpushed == 2
    st = status(config, now=clock)
    assert st.unpushed == 2 and st.remote == str(remote)
    proc = run_cli("status", "--config", str(config.file))
    assert f"Remote:    {remote} (2 commit(s) not pushed yet)" in proc.stdout
    bare(remote)  # back online
    clock.tick()
    third = sync(config, now=clock)  # no file changed, but the commits go out
    assert third.commit is None and third.push is not None and third.push.pushed
    assert linear(remote) == [second.commit, first.commit]
    assert status(config, now=clock).unpushed == 0


def test_two_hosts_one_vault(tmp_path: Path, clock: Clock) -> None:
    remote = bare(tmp_path / "remote.git")
    a = host_config(tmp_path, "alpha", str(remote))
    b = host_config(tmp_path, "beta", str(remote))
    assert sync(a, now=clock).push.pushed  # type: ignore[union-attr]
    pushed_b = sync(b, now=clock).push
    assert pushed_b is not None and pushed_b.pushed and pushed_b.replayed == 1
    assert remote_files(remote).keys() == {"alpha/agent/MEMORY.md", "beta/agent/MEMORY.md"}
    # alpha learns beta's commit on its next push, and keeps its own folder
    (tmp_path / "ws-alpha" / "MEMORY.md").write_text("# alpha v2\n")
    clock.tick()
    assert sync(a, now=clock).push.pushed  # type: ignore[union-attr]
    files = remote_files(remote)
    assert git(remote, "show", f"main:alpha/agent/MEMORY.md") == "# alpha v2\n"
    assert git(remote, "show", f"main:beta/agent/MEMORY.md") == "# beta\n"
    assert len(linear(remote)) == 3 and len(files) == 2


def test_two_hosts_syncing_at_the_same_time(tmp_path: Path) -> None:
    remote = bare(tmp_path / "remote.git")
    configs = [host_config(tmp_path, name, str(remote)) for name in ("alpha", "beta")]
    for round_ in range(4):
        for config in configs:
            ws = config.sources[0].root
            (ws / f"note{round_}.md").write_text(f"{config.vault.host} round {round_}\n")
        procs = [subprocess.Popen([sys.executable, "-m", "vault", "sync", "--json", "--config",
                                   str(c.file)], stdout=subprocess.PIPE, text=True)
                 for c in configs]
        for proc in procs:
            out, _ = proc.communicate(timeout=120)
            assert proc.returncode == 0
            assert json.loads(out)["push"]["pushed"] is True
    files = remote_files(remote)
    for config in configs:
        for round_ in range(4):
            path = f"{config.vault.host}/agent/note{round_}.md"
            assert git(remote, "show", f"main:{path}") == f"{config.vault.host} round {round_}\n"
    commits = linear(remote)
    assert len(commits) == 8  # one commit per host per round: none lost, none merged away
    assert len(files) == 2 + 8
    for config in configs:  # each host's branch is on the remote's line of history
        assert VaultRepo.open(config.vault.path, "main").head_id() in commits


def test_single_layout_refuses_to_mix_writers(tmp_path: Path, clock: Clock) -> None:
    remote = bare(tmp_path / "remote.git")
    a = host_config(tmp_path, "alpha", str(remote), layout="{source}")
    b = host_config(tmp_path, "beta", str(remote), layout="{source}")
    sync(a, now=clock)
    result = sync(b, now=clock)
    assert result.commit and result.push is not None and not result.push.pushed
    assert 'set [vault] layout = "{host}/{source}"' in result.push.message
    assert VaultRepo.open(b.vault.path, "main").head_id() == result.commit  # kept, not lost


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_push_to_a_git_daemon_on_localhost(tmp_path: Path, clock: Clock) -> None:
    served = tmp_path / "served"
    served.mkdir()
    bare(served / "vault.git")
    port = free_port()
    daemon = subprocess.Popen(["git", "daemon", "--reuseaddr", "--export-all",
                               "--enable=receive-pack", f"--base-path={served}",
                               "--listen=127.0.0.1", f"--port={port}", str(served)],
                              stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        config = host_config(tmp_path, "alpha", f"git://127.0.0.1:{port}/vault.git")
        result = sync(config, now=clock)
        assert result.push is not None and result.push.pushed, result.push
        assert remote_files(served / "vault.git").keys() == {"alpha/agent/MEMORY.md"}
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)


@pytest.mark.parametrize("url", ["https://user:ghp_abcdefabcdef1234@example.invalid/x.git"])
def test_credentials_never_printed(tmp_path: Path, clock: Clock, url: str) -> None:
    config = host_config(tmp_path, "alpha", url, layout="{source}")
    result = sync(config, now=clock)
    assert result.push is not None and not result.push.pushed
    assert "ghp_abcdef" not in result.push.message
    proc = run_cli("status", "--json", "--config", str(config.file))
    assert "ghp_abcdef" not in proc.stdout and "***@" in json.loads(proc.stdout)["remote"]


def test_a_replayed_commit_never_makes_a_moment_show_later_content(tmp_path: Path,
                                                                   clock: Clock) -> None:
    """beta syncs while offline; alpha syncs twice; beta comes back and its commit is replayed
    on top. A moment between beta's commit and alpha's second must still show alpha's first
    version (before: the replayed commit kept its old time and the moment resolved to it, whose
    tree holds alpha's newest version)."""
    from vault.restore import resolve_at

    remote = bare(tmp_path / "remote.git")
    a = host_config(tmp_path, "alpha", str(remote))
    b = host_config(tmp_path, "beta", str(remote))
    assert sync(a, now=clock).push.pushed  # type: ignore[union-attr]
    assert sync(b, now=clock).push.pushed  # type: ignore[union-attr]
    away = tmp_path / "away.git"
    remote.rename(away)  # beta is offline
    (tmp_path / "ws-beta" / "MEMORY.md").write_text("# beta offline\n")
    offline_at = clock.tick()
    assert not sync(b, now=clock).push.pushed  # type: ignore[union-attr]
    away.rename(remote)
    for version in ("v2", "v3"):
        (tmp_path / "ws-alpha" / "MEMORY.md").write_text(f"# alpha {version}\n")
        clock.tick()
        assert sync(a, now=clock).push.pushed  # type: ignore[union-attr]
    clock.tick()
    back = sync(b, now=clock).push  # nothing changed on beta: its offline commit goes out
    assert back is not None and back.pushed and back.replayed == 1
    times = [int(t) for t in git(remote, "log", "--first-parent", "--format=%ct",
                                 "main").split()]
    assert times == sorted(times, reverse=True)  # the line of history is in time order
    repo = VaultRepo.open(b.vault.path, "main")
    moment = offline_at + timedelta(minutes=5)  # after beta's offline sync, before alpha's v2
    chosen = resolve_at(repo, moment.isoformat(), clock())
    assert repo.read_blob(repo.files(chosen.id)["alpha/agent/MEMORY.md"][0]) == b"# alpha\n"
    # the replayed commit keeps the sync's own time as its author time
    authored = git(remote, "log", "-1", "--format=%at %s", "main").split(" ", 1)
    assert int(authored[0]) == int(offline_at.timestamp())


def test_a_push_the_remote_rejects_is_a_failure_someone_hears_of(tmp_path: Path) -> None:
    remote = bare(tmp_path / "remote.git")
    hook = remote / "hooks" / "pre-receive"
    tries = tmp_path / "tries"
    hook.write_text(f"#!/bin/sh\necho try >> '{tries}'\necho 'quota exceeded' >&2\nexit 1\n")
    hook.chmod(0o755)
    config = host_config(tmp_path, "laptop", str(remote), layout="{source}")
    proc = run_cli("sync", "--quiet", "--config", str(config.file))
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "Error: not pushed: the remote refused the push: [remote rejected] main -> main "
        "(pre-receive hook declined) remote: quota exceeded (1 commit(s) kept in the vault "
        "only)"]
    assert git(config.vault.path, "rev-list", "--count", "main").strip() == "1"  # kept
    assert tries.read_text() == "try\n" and git(remote, "branch").strip() == ""  # no retries
    failures = (config.home / "failures.log").read_text().splitlines()
    assert len(failures) == 1 and json.loads(failures[0])["command"] == "push"
    st = run_cli("status", "--config", str(config.file))
    assert "Failed:" in st.stdout and "quota exceeded" in st.stdout
    as_json = run_cli("sync", "--json", "--config", str(config.file))
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["push"]["refused"] is True
    assert json.loads(as_json.stdout)["ok"] is False


def test_a_remote_with_a_readme_commit_is_refused_with_the_reason(tmp_path: Path) -> None:
    remote = bare(tmp_path / "remote.git")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(remote), str(clone)], check=True,
                   capture_output=True)
    (clone / "README.md").write_text("# my vault\n")
    for args in (["add", "README.md"], ["-c", "user.name=u", "-c", "user.email=u@u", "commit",
                                        "-qm", "Initial commit"], ["push", "-q", "origin",
                                                                   "HEAD:main"]):
        git(clone, *args)
    config = host_config(tmp_path, "laptop", str(remote), layout="{source}")
    proc = run_cli("sync", "--quiet", "--config", str(config.file))
    assert proc.returncode == 1
    assert "commits vault did not make (a README or license made with the repository?)" \
        in proc.stderr
    assert "several machines" not in proc.stderr


def test_two_machines_with_one_host_name_are_refused(tmp_path: Path, clock: Clock) -> None:
    remote = bare(tmp_path / "remote.git")
    configs = []
    for name in ("one", "two"):
        ws = tmp_path / f"ws-{name}"
        ws.mkdir()
        (ws / "MEMORY.md").write_text(f"# {name}\n")
        cfg = tmp_path / f"{name}.toml"
        cfg.write_text(f'[vault]\npath = "{tmp_path / name}"\nhost = "ubuntu"\n'
                       f'layout = "{{host}}/{{source}}"\nremote = "{remote}"\n\n'
                       f'[[sources]]\nname = "agent"\npath = "{ws}"\n')
        configs.append(load_config(cfg))
        VaultRepo.init(configs[-1].vault.path, "main")
    assert sync(configs[0], now=clock).push.pushed  # type: ignore[union-attr]
    second = sync(configs[1], now=clock).push
    assert second is not None and not second.pushed and second.refused
    assert "the remote has commits from host 'ubuntu' that this vault does not have" in second.message
    assert git(remote, "show", "main:ubuntu/agent/MEMORY.md") == "# one\n"  # not overwritten


def test_a_new_remote_gets_everything_pushed(tmp_path: Path, clock: Clock) -> None:
    first = bare(tmp_path / "first.git")
    config = host_config(tmp_path, "laptop", str(first), layout="{source}")
    head = sync(config, now=clock).commit
    second = bare(tmp_path / "second.git")
    text = config.file.read_text().replace(str(first), str(second))
    config.file.write_text(text)
    config = load_config(config.file)
    clock.tick()
    result = sync(config, now=clock)  # nothing changed, but the new remote has nothing
    assert result.commit is None and result.push is not None and result.push.pushed
    assert git(second, "rev-parse", "main").strip() == head


def test_doctor_finds_an_emptied_remote_and_the_next_sync_fills_it(tmp_path: Path,
                                                                   clock: Clock) -> None:
    import shutil

    from vault.doctor import check_remote

    remote = bare(tmp_path / "remote.git")
    config = host_config(tmp_path, "laptop", str(remote), layout="{source}")
    head = sync(config, now=clock).commit
    repo = VaultRepo.open(config.vault.path, "main")
    assert check_remote(config, repo).status == "ok"
    shutil.rmtree(remote)
    bare(remote)  # re-created empty
    clock.tick()
    assert sync(config, now=clock).push is None  # no network when nothing is known to be due
    check = check_remote(config, repo)
    assert check.status == "warn" and "lacks 1 commit(s)" in check.detail
    clock.tick()
    result = sync(config, now=clock)
    assert result.push is not None and result.push.pushed
    assert git(remote, "rev-parse", "main").strip() == head


def test_a_refused_push_runs_on_failure_not_post_sync(tmp_path: Path, clock: Clock) -> None:
    from vault.hooks import sync_with_hooks

    remote = bare(tmp_path / "remote.git")
    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\nexit 1\n")
    hook.chmod(0o755)
    config = host_config(tmp_path, "laptop", str(remote), layout="{source}")
    marker = tmp_path / "hook.env"
    config.file.write_text(config.file.read_text() + (
        f'\n[hooks]\npost_sync = "echo post > {marker}"\n'
        f'on_failure = "env | grep -E \'^VAULT_(OK|ERROR)=\' | sort > {marker}"\n'))
    result, runs = sync_with_hooks(load_config(config.file), now=clock)
    assert result.commit and result.push is not None and result.push.refused
    assert [r.event for r in runs] == ["on_failure"]
    assert marker.read_text().splitlines() == [
        "VAULT_ERROR=not pushed: the remote refused the push: [remote rejected] main -> main "
        "(pre-receive hook declined)", "VAULT_OK=0"]


@pytest.mark.parametrize("text,refused", [
    (" ! [remote rejected] main -> main (pre-receive hook declined)", True),
    (" ! [remote rejected] main -> main (protected branch hook declined)", True),
    (" ! [remote rejected] main -> main (failed to update ref)", False),  # two pushes at once
    (" ! [remote rejected] main -> main (cannot lock ref 'refs/heads/main')", False),
    (" ! [rejected]        main -> main (fetch first)", False),  # another host pushed
    ("git@github.com: Permission denied (publickey).", True),
    ("ERROR: Permission to sam/memory-vault.git denied to deploy-bot.", True),
    ("ERROR: The key you are authenticating with has been marked as read only.", True),
    ("remote: You are not allowed to push code to this project.", True),
    ("Host key verification failed.", True),
    ("remote: Repository not found.", True),
    ("fatal: repository 'https://gitlab.example/sam/typo.git/' not found", True),  # not GitHub
    ("fatal: Authentication failed for 'https://github.com/sam/memory-vault.git/'", True),
    ("fatal: could not read Username for 'https://github.com': terminal prompts disabled", True),
    ("fatal: unable to access 'https://x/': The requested URL returned error: 403", True),
    ("ssh: Could not resolve hostname github.com: Name or service not known", False),
    ("fatal: unable to access 'https://x/': Failed to connect to x port 443: Connection refused",
     False),
    ("fatal: '/mnt/usb/vault.git' does not appear to be a git repository", False),  # unmounted
])
def test_refused_or_offline(text: str, refused: bool) -> None:
    from vault.remote import _refused

    assert _refused(text) is refused


def clone_config(tmp_path: Path, name: str, remote: Path, with_remote: bool) -> Config:
    """The laptop's config (host_config), on a `git clone --bare` of remote made on a new
    machine (with or without [vault] remote: without it, the clone's origin is the remote)."""
    clone = tmp_path / f"{name}.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(remote), str(clone)], check=True)
    ws = tmp_path / "ws-laptop"
    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(f'[vault]\npath = "{clone}"\nhost = "laptop"\nlayout = "{{host}}/{{source}}"\n'
                   + (f'remote = "{remote}"\n' if with_remote else "")
                   + f'\n[[sources]]\nname = "agent"\npath = "{ws}"\n')
    return load_config(cfg)


@pytest.mark.parametrize("with_remote", [True, False])
def test_a_bare_clone_of_a_vault_is_up_to_date_from_the_start(tmp_path: Path, clock: Clock,
                                                              with_remote: bool) -> None:
    remote = bare(tmp_path / "remote.git")
    first = sync(host_config(tmp_path, "laptop", str(remote)), now=clock)
    assert first.push is not None and first.push.pushed
    config = clone_config(tmp_path, "desk", remote, with_remote)
    proc = run_cli("init", "--config", str(config.file))
    assert proc.returncode == 0 and "Already a vault" in proc.stdout, proc.stderr
    assert status(config, now=clock).unpushed == 0
    proc = run_cli("status", "--config", str(config.file))
    assert f"Remote:    {remote} (up to date)" in proc.stdout, proc.stdout
    from vault.doctor import check_remote

    repo = VaultRepo.open(config.vault.path, "main")
    assert check_remote(config, repo).detail == f"{remote} reachable, up to date"
    assert sync(config, now=clock).push is None  # nothing to push: no "Pushed to the remote."


def test_a_bare_clone_without_init_learns_what_the_remote_has(tmp_path: Path,
                                                              clock: Clock) -> None:
    remote = bare(tmp_path / "remote.git")
    sync(host_config(tmp_path, "laptop", str(remote)), now=clock)
    config, other = (clone_config(tmp_path, name, remote, False) for name in ("desk", "den"))
    from vault.doctor import check_remote

    # doctor's ls-remote says what the remote holds: recorded as a fetch would
    repo = VaultRepo.open(config.vault.path, "main")
    assert check_remote(config, repo).detail == f"{remote} reachable, up to date"
    assert status(config, now=clock).unpushed == 0
    # a sync's fetch finds it all there: nothing is pushed
    result = sync(other, now=clock)
    assert result.push is not None and result.push.message == "up to date with the remote"
    assert status(other, now=clock).unpushed == 0


def test_init_takes_a_tracking_ref_only_from_a_clone_as_git_made_it(tmp_path: Path,
                                                                    clock: Clock) -> None:
    """A vault with an origin added by hand, or a clone that committed since, was not pushed."""
    remote = bare(tmp_path / "remote.git")
    local = load_config(write_config(tmp_path / "l.toml", {"agent": tmp_path / "ws"},
                                     vault_path=tmp_path / "local.git"))
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "MEMORY.md").write_text("# local\n")
    VaultRepo.init(local.vault.path, "main")
    sync(local, now=clock)
    git(local.vault.path, "remote", "add", "origin", str(remote))
    git(local.vault.path, "pack-refs", "--all")  # (even with its branch in packed-refs)
    assert run_cli("init", "--config", str(local.file)).returncode == 0
    assert status(local, now=clock).unpushed == 1

    sync(host_config(tmp_path, "laptop", str(remote)), now=clock)
    config = clone_config(tmp_path, "desk", remote, False)
    (remote.parent / "away.git").mkdir()
    remote.rename(remote.parent / "away.git" / "r.git")  # offline
    (tmp_path / "ws-laptop" / "MEMORY.md").write_text("# laptop\n- offline\n")
    clock.tick()
    assert sync(config, now=clock).commit  # a commit the remote never got
    assert run_cli("init", "--config", str(config.file)).returncode == 0
    assert status(config, now=clock).unpushed == 2  # (no tracking ref: all counted)


def test_a_new_remote_unreachable_at_first_still_gets_everything(tmp_path: Path,
                                                                 clock: Clock) -> None:
    """QA: a new [vault] remote that was offline at the first sync after the change kept the
    old remote's tracking ref, so every later sync called it up to date and never pushed."""
    old = bare(tmp_path / "old.git")
    config = host_config(tmp_path, "laptop", str(old), layout="{source}")
    head = sync(config, now=clock).commit
    new = tmp_path / "new.git"  # not there yet (a disk not mounted)
    config.file.write_text(config.file.read_text().replace(str(old), str(new)))
    config = load_config(config.file)
    # before any sync points the vault at it, status does not call the new remote up to date
    assert status(config, now=clock).unpushed == 1
    clock.tick()
    first = sync(config, now=clock)
    assert first.push is not None and not first.push.pushed and first.push.unpushed == 1
    assert status(config, now=clock).unpushed == 1
    bare(new)  # mounted again
    clock.tick()
    second = sync(config, now=clock)  # nothing changed: still due
    assert second.commit is None and second.push is not None and second.push.pushed
    assert git(new, "rev-parse", "main").strip() == head
    assert status(config, now=clock).unpushed == 0


def test_origin_moved_to_a_new_url_is_pushed_at_the_next_sync(tmp_path: Path,
                                                              clock: Clock) -> None:
    """What `vault init --github` does to a vault that pushed elsewhere before: set_remote
    forgets the old remote's tracking ref (init never fetches)."""
    from vault.remote import set_remote

    old, new = bare(tmp_path / "old.git"), bare(tmp_path / "new.git")
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "MEMORY.md").write_text("# m\n")
    config = load_config(write_config(tmp_path / "v.toml", {"agent": tmp_path / "ws"}))
    repo, _ = VaultRepo.init(config.vault.path, "main")
    set_remote(repo, str(old))
    head = sync(config, now=clock).commit
    assert git(old, "rev-parse", "main").strip() == head
    set_remote(repo, str(old))  # the same URL again: still up to date, nothing forgotten
    assert status(config, now=clock).unpushed == 0
    set_remote(repo, str(new))
    assert git(config.vault.path, "remote", "get-url", "origin").strip() == str(new)
    assert status(config, now=clock).unpushed == 1
    clock.tick()
    result = sync(config, now=clock)
    assert result.push is not None and result.push.pushed
    assert git(new, "rev-parse", "main").strip() == head


def test_unpushed_counts_everything_for_a_remote_no_sync_pointed_at_yet(tmp_path: Path,
                                                                      clock: Clock) -> None:
    from vault.remote import unpushed

    old = bare(tmp_path / "old.git")
    config = host_config(tmp_path, "laptop", str(old), layout="{source}")
    sync(config, now=clock)
    repo = VaultRepo.open(config.vault.path, "main")
    assert unpushed(config, repo) == 0
    config.file.write_text(config.file.read_text().replace(str(old), str(tmp_path / "n.git")))
    assert unpushed(load_config(config.file), repo) == 1  # (before any sync ran)


@pytest.mark.parametrize("in_config", [True, False])
def test_a_remote_url_git_writes_quoted_is_read_as_git_reads_it(tmp_path: Path, clock: Clock,
                                                                in_config: bool) -> None:
    """QA: git writes a URL holding '#' or ';' quoted in the vault's config; vault read it with
    the quotes, so it never matched [vault] remote: every sync pushed, doctor said the remote
    lacked what vault pushed there (and forgot it), status counted it all as not pushed."""
    from vault.doctor import check_remote
    from vault.remote import nothing_to_push, origin_url

    (tmp_path / 'backup#1;b "q"').mkdir()
    remote = bare(tmp_path / 'backup#1;b "q"' / "vault.git")
    config = host_config(tmp_path, "laptop", str(remote).replace('"', '\\"'), layout="{source}")
    if not in_config:  # the vault's own origin, as `init --github` sets it
        config.file.write_text(config.file.read_text().replace("remote =", "# remote ="))
        config = load_config(config.file)
        git(config.vault.path, "remote", "add", "origin", str(remote))
    head = sync(config, now=clock).commit
    assert git(remote, "rev-parse", "main").strip() == head
    assert '"' in (config.vault.path / "config").read_text().split("url = ")[1].splitlines()[0]
    repo = VaultRepo.open(config.vault.path, "main")
    assert nothing_to_push(config, repo)
    check = check_remote(config, repo)
    assert (check.status, check.detail) == ("ok", f"{remote} reachable, up to date")
    st = status(config, now=clock)
    assert (st.remote, st.unpushed) == (str(remote), 0)
    clock.tick()
    assert sync(config, now=clock).push is None  # nothing due: no network
    assert origin_url(config.vault.path) == str(remote)


def test_origin_url_without_an_origin_or_a_readable_config(tmp_path: Path) -> None:
    from vault.remote import origin_url

    assert origin_url(tmp_path / "nowhere") is None
    bare(tmp_path / "r.git")
    assert origin_url(tmp_path / "r.git") is None
    (tmp_path / "r.git" / "config").write_text('[remote "origin"\n\turl = x\n')
    assert origin_url(tmp_path / "r.git") is None


def run_without_git(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m vault` where no git program is on PATH (cron's PATH=/usr/bin:/bin on a
    machine with git in /usr/local/bin)."""
    import os

    empty = tmp_path / "bin-without-git"
    empty.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "GIT_PYTHON_GIT_EXECUTABLE"}
    return subprocess.run([sys.executable, "-m", "vault", *args], capture_output=True,
                          text=True, env={**env, "PATH": str(empty)}, check=False, timeout=120)


def test_no_git_program_on_path_is_a_failed_push_someone_hears_of(tmp_path: Path,
                                                                  clock: Clock) -> None:
    """QA: sync committed, then `import git` raised ImportError ("Bad git executable"): exit 3,
    a many-line message, nothing in failures.log, no alert."""
    from vault.alerts import read_failures

    remote = bare(tmp_path / "remote.git")
    config = host_config(tmp_path, "laptop", str(remote), layout="{source}")
    no_git = f"no git program on PATH ({tmp_path / 'bin-without-git'}): put git's folder"
    proc = run_without_git(tmp_path, "sync", "--quiet", "--config", str(config.file))
    assert proc.returncode == 1, proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith(f"Error: not pushed: {no_git}"), proc.stderr
    assert proc.stderr.rstrip().endswith("(1 commit(s) kept in the vault only)")
    repo = VaultRepo.open(config.vault.path, "main")
    assert repo.head_id() is not None  # the sync's commit is made
    failed = read_failures(config)
    assert [f.command for f in failed] == ["push"] and no_git in failed[0].error
    again = run_without_git(tmp_path, "sync", "--json", "--config", str(config.file))
    assert again.returncode == 1
    doc = json.loads(again.stdout)["push"]
    assert (doc["pushed"], doc["refused"], doc["unpushed"]) == (False, True, 1)
    doctor = run_without_git(tmp_path, "doctor", "--json", "--config", str(config.file),
                             "--crontab-file", str(tmp_path / "no-crontab"))
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert checks["remote"]["status"] == "fail"
    assert checks["remote"]["detail"].startswith(f"{remote} not checked: {no_git}")
    assert "unexpected" not in doctor.stderr
    back = sync(config, now=clock).push  # git on PATH again
    assert back is not None and back.pushed


class _HTTPStatus:
    """An HTTP server on 127.0.0.1 that answers every request with one status (a git host
    whose repository is missing: 404; one that is down: 503)."""

    def __init__(self, code: int) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("code,refused", [(404, True), (503, False)])
def test_a_missing_repository_on_any_https_host_is_refused(tmp_path: Path, clock: Clock,
                                                           code: int, refused: bool) -> None:
    """QA: a missing repository on GitLab or Gitea (git: "fatal: repository '...' not found")
    was called offline: exit 0, no alert, forever. A host that is down stays offline."""
    server = _HTTPStatus(code)
    try:
        config = host_config(tmp_path, "laptop", f"{server.url}/sam/typo.git",
                             layout="{source}")
        result = sync(config, now=clock)
        assert result.commit and result.push is not None and not result.push.pushed
        assert result.push.refused is refused, result.push.message
        if refused:
            assert result.push.message.startswith("the remote refused: ")
            assert "not found" in result.push.message
            proc = run_cli("sync", "--config", str(config.file))
            assert proc.returncode == 1
            assert proc.stderr.startswith("Error: not pushed: the remote refused: "), proc.stderr
        else:
            assert result.push.message.startswith("offline: ")
    finally:
        server.close()
