"""`vault init --github`: the real PyGithub client against a small GitHub API on 127.0.0.1."""

from __future__ import annotations

import json
import stat
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conftest import git, run_cli
from vault.github import GitHubError, ensure_private_repo, parse_spec
from vault.errors import UsageError

TOKEN = "ghp_testtoken0123456789abcdefghijklmnopqr"


class FakeGitHub(BaseHTTPRequestHandler):
    """Answers the endpoints PyGithub calls for get_user, get_repo, create_repo."""

    repos: dict[str, dict[str, Any]] = {}
    requests: list[tuple[str, str]] = []
    drop_create_answer = False  # create the repository, then close without answering
    clone_url = ""  # the clone URL it gives (a local bare repository); default a github one

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") != f"token {TOKEN}" and \
                self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._send(401, {"message": "Bad credentials"})
            return False
        return True

    def _repo(self, owner: str, name: str, private: bool) -> dict[str, Any]:
        base = f"http://{self.headers['Host']}"
        return {"id": len(self.repos) + 1, "name": name, "full_name": f"{owner}/{name}",
                "private": private, "owner": {"login": owner},
                "url": f"{base}/repos/{owner}/{name}",
                "clone_url": self.clone_url or f"https://github.example/{owner}/{name}.git",
                "ssh_url": f"git@github.example:{owner}/{name}.git"}

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self.requests.append(("GET", self.path))
        if not self._authorized():
            return
        if self.path == "/user":
            self._send(200, {"login": "sam", "id": 1, "url": "x"})
        elif self.path.startswith("/repos/"):
            full = self.path[len("/repos/"):]
            if full in self.repos:
                self._send(200, self.repos[full])
            else:
                self._send(404, {"message": "Not Found"})
        elif self.path.startswith("/orgs/"):
            org = self.path.split("/")[2]
            self._send(200, {"login": org, "id": 7,
                             "url": f"http://{self.headers['Host']}/orgs/{org}"})
        else:
            self._send(404, {"message": "Not Found"})

    def do_POST(self) -> None:  # noqa: N802
        self.requests.append(("POST", self.path))
        if not self._authorized():
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        owner = "sam" if self.path == "/user/repos" else self.path.split("/")[2]
        repo = self._repo(owner, body["name"], bool(body.get("private")))
        self.repos[repo["full_name"]] = repo
        if self.drop_create_answer:
            self.close_connection = True  # (the answer lost on the way: no response at all)
            return
        self._send(201, repo)


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    FakeGitHub.repos = {}
    FakeGitHub.requests = []
    FakeGitHub.drop_create_answer = False
    FakeGitHub.clone_url = ""
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGitHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("GITHUB_API_URL", url)
    yield url
    server.shutdown()


def test_creates_a_private_repo_for_the_user(api: str) -> None:
    repo = ensure_private_repo("sam")
    assert (repo.full_name, repo.created) == ("sam/memory-vault", True)
    assert FakeGitHub.repos["sam/memory-vault"]["private"] is True
    assert ("POST", "/user/repos") in FakeGitHub.requests
    again = ensure_private_repo("sam/memory-vault")
    assert again.created is False


def test_creates_in_an_organisation(api: str) -> None:
    repo = ensure_private_repo("acme/agent-memory")
    assert repo.full_name == "acme/agent-memory"
    assert ("POST", "/orgs/acme/repos") in FakeGitHub.requests


def test_refuses_a_public_repository(api: str) -> None:
    FakeGitHub.repos["sam/open"] = {"id": 9, "name": "open", "full_name": "sam/open",
                                    "private": False, "owner": {"login": "sam"},
                                    "clone_url": "https://github.example/sam/open.git",
                                    "ssh_url": "git@github.example:sam/open.git"}
    with pytest.raises(GitHubError, match="refusing to use sam/open: it is public"):
        ensure_private_repo("sam/open")


def test_bad_or_missing_token(api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_wrong")
    with pytest.raises(GitHubError, match="GitHub rejected the token in GITHUB_TOKEN") as info:
        ensure_private_repo("sam")
    assert "ghp_wrong" not in str(info.value)
    monkeypatch.delenv("GITHUB_TOKEN")
    with pytest.raises(GitHubError, match="no GitHub token: set GITHUB_TOKEN"):
        ensure_private_repo("sam")


@pytest.mark.parametrize("spec", ["", "a/b/c", "a b", "/"])
def test_bad_spec(spec: str) -> None:
    with pytest.raises(UsageError):
        parse_spec(spec)


def test_cli_init_github_sets_the_remote(api: str, config_file: Path, tmp_path: Path) -> None:
    proc = run_cli("init", "--github", "sam", "--json", "--config", str(config_file))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["github"] == {"repository": "sam/memory-vault", "created": True,
                             "remote": "https://github.example/sam/memory-vault.git"}
    assert git(tmp_path / "memory-vault", "remote", "get-url", "origin").strip() == \
        "https://github.example/sam/memory-vault.git"
    assert TOKEN not in proc.stdout + proc.stderr
    public = run_cli("init", "--github", "sam/open", "--config", str(config_file),
                     env={"GITHUB_TOKEN": "nope"})
    assert public.returncode == 1
    assert public.stderr.splitlines()[0] == "Error: GitHub rejected the token in GITHUB_TOKEN"


def test_cli_init_github_offline_is_a_failure_not_a_crash(config_file: Path,
                                                          tmp_path: Path) -> None:
    """GitHub unreachable (a port nothing listens on): one line, exit 1, nothing created."""
    import socket

    with socket.socket() as sock:  # a free port, closed again: connections are refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = run_cli("init", "--github", "sam/mv", "--config", str(config_file),
                   env={"GITHUB_TOKEN": "fake", "GITHUB_API_URL": f"http://127.0.0.1:{port}"})
    assert proc.returncode == 1, proc.stderr
    first = proc.stderr.splitlines()[0]
    assert first == (f"Error: cannot reach http://127.0.0.1:{port}: ConnectionError; nothing "
                     "was created"), first
    assert "unexpected" not in proc.stderr
    assert not (tmp_path / "memory-vault").exists()


def test_a_create_whose_answer_is_lost_does_not_say_nothing_was_created(api: str) -> None:
    """QA: a create request that timed out said "nothing was created", though GitHub may have
    made the repository. It says it may exist; running again takes it."""
    FakeGitHub.drop_create_answer = True
    with pytest.raises(GitHubError) as caught:
        ensure_private_repo("sam/memory-vault")
    assert "while creating sam/memory-vault: it may have been created" in caught.value.message
    assert "nothing was created" not in caught.value.message
    assert "sam/memory-vault" in FakeGitHub.repos  # (it was)
    FakeGitHub.drop_create_answer = False
    again = ensure_private_repo("sam/memory-vault")
    assert again.full_name == "sam/memory-vault" and again.created is False


def test_init_github_on_a_vault_that_pushed_elsewhere_pushes_there(api: str, config_file: Path,
                                                                   tmp_path: Path) -> None:
    """QA: `init --github` switched origin but kept the old remote's tracking ref, so the new
    repository stayed empty while sync and status said "up to date"."""
    import subprocess

    old, new = tmp_path / "old.git", tmp_path / "new.git"
    for bare in (old, new):
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    FakeGitHub.clone_url = str(new)
    vault_path = tmp_path / "memory-vault"
    assert run_cli("init", "--config", str(config_file)).returncode == 0
    git(vault_path, "remote", "add", "origin", str(old))
    assert run_cli("sync", "-q", "--config", str(config_file)).returncode == 0
    head = git(vault_path, "rev-parse", "main").strip()
    assert git(old, "rev-parse", "main").strip() == head
    proc = run_cli("init", "--github", "sam", "--config", str(config_file))
    assert proc.returncode == 0, proc.stderr
    status = run_cli("status", "--config", str(config_file))
    assert f"Remote:    {new} (1 commit(s) not pushed yet)" in status.stdout, status.stdout
    proc = run_cli("sync", "--config", str(config_file))
    assert proc.returncode == 0 and "Pushed to the remote." in proc.stdout, proc.stdout
    assert git(new, "rev-parse", "main").strip() == head
    status = run_cli("status", "--config", str(config_file))
    assert f"Remote:    {new} (up to date)" in status.stdout, status.stdout


def test_init_github_needs_no_git_program(api: str, config_file: Path, tmp_path: Path) -> None:
    """QA: with no git on PATH, setting the remote crashed (ImportError "Bad git executable",
    exit 3) after the GitHub repository was made: the remote is written without git."""
    import os
    import subprocess
    import sys

    empty = tmp_path / "bin-without-git"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "GIT_PYTHON_GIT_EXECUTABLE"}
    proc = subprocess.run([sys.executable, "-m", "vault", "init", "--github", "sam",
                           "--config", str(config_file)], capture_output=True, text=True,
                          env={**env, "PATH": str(empty)}, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert git(tmp_path / "memory-vault", "remote", "get-url", "origin").strip() == \
        "https://github.example/sam/memory-vault.git"
    assert git(tmp_path / "memory-vault", "config", "--get-all", "remote.origin.fetch") == \
        "+refs/heads/*:refs/remotes/origin/*\n"


@pytest.mark.parametrize("url,why", [
    ("ghe.example.com/api/v3", "not an http(s) URL with a host"),
    ("ftp://ghe.example.com/api/v3", "not an http(s) URL with a host"),
    ("https://", "not an http(s) URL with a host"),
    ("http://ghe.example.com:abc/api/v3", "Port could not be cast to integer value as 'abc'"),
    ("https://ghe.example.com:99999/api/v3", "Port out of range 0-65535"),
    ("http://[::1/api", "Invalid IPv6 URL"),
    ("ftp://sam:s3cret@ghe.example.com/api", "not an http(s) URL with a host"),
])
def test_a_malformed_github_api_url_is_a_usage_error(config_file: Path, tmp_path: Path,
                                                     url: str, why: str) -> None:
    """QA: PyGithub fails on such a URL with an AttributeError, an assert or a ValueError
    while it is built, outside the try: "unexpected", exit 3."""
    proc = run_cli("init", "--github", "sam", "--config", str(config_file),
                   env={"GITHUB_TOKEN": TOKEN, "GITHUB_API_URL": url})
    assert proc.returncode == 2, proc.stderr
    shown = url.replace("sam:s3cret@", "***@")
    assert proc.stderr.splitlines() == [
        f"Error: GITHUB_API_URL {shown!r}: {why}",
        "Hint: GitHub Enterprise's is https://HOST/api/v3; unset it for github.com"]
    assert not (tmp_path / "memory-vault").exists()  # nothing made


def test_an_alert_with_a_malformed_github_api_url_says_so(tmp_path: Path, workspace: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import write_config
    from vault.alerts import alert, record_failure
    from vault.config import load_config

    config = load_config(write_config(tmp_path / "vault.toml", {"agent": workspace},
                                      extra='\n[alerts]\ngithub_repo = "sam/ops"\n'))
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("GITHUB_API_URL", "ghe.example.com/api/v3")
    result = alert(config, record_failure(config, "sync", "boom"))
    assert (result.action, result.message) == (
        "failed", "alert not sent: GITHUB_API_URL 'ghe.example.com/api/v3': not an http(s) URL "
                  "with a host")


def test_cli_init_github_over_a_work_tree_creates_nothing_on_github(
        api: str, config_file: Path, tmp_path: Path) -> None:
    """The GitHub repository was created before the vault path was checked: a path that can
    never be a vault (a project's work tree) left a new private repository behind."""
    subprocess.run(["git", "init", "-q", str(tmp_path / "memory-vault")], check=True)
    proc = run_cli("init", "--github", "sam", "--config", str(config_file))
    assert proc.returncode == 10, proc.stderr
    assert "work tree" in proc.stderr.splitlines()[0]
    assert FakeGitHub.requests == [] and FakeGitHub.repos == {}


@pytest.mark.parametrize("where", ["under a file", "new folders"])
def test_cli_init_github_to_a_path_that_cannot_be_made_creates_nothing_on_github(
        api: str, tmp_path: Path, workspace: Path, where: str) -> None:
    """Before: a missing vault path counted as free, so the GitHub repository was created,
    then making the vault failed (a file on the way): a private repository left behind. And
    when GitHub fails, the folders made for the vault go again."""
    from conftest import write_config

    (tmp_path / "afile").write_text("x")
    vault_path = tmp_path / ("afile/sub/vault" if where == "under a file" else "new/sub/vault")
    config = write_config(tmp_path / "v.toml", {"agent": workspace}, vault_path=vault_path)
    if where == "under a file":
        proc = run_cli("init", "--github", "sam", "--config", str(config))
        assert (proc.returncode, proc.stderr.splitlines()[0]) == (
            1, f"Error: cannot create the vault at {vault_path}: Not a directory"), proc.stderr
        assert FakeGitHub.requests == [] and FakeGitHub.repos == {}
    else:
        proc = run_cli("init", "--github", "sam", "--config", str(config),
                       env={"GITHUB_TOKEN": "nope"})
        assert proc.returncode == 1 and "rejected the token" in proc.stderr, proc.stderr
        assert not (tmp_path / "new").exists()  # (the folders made for it are gone)
        proc = run_cli("init", "--github", "sam", "--config", str(config))
        assert proc.returncode == 0, proc.stderr
        assert "sam/memory-vault" in FakeGitHub.repos
        assert (vault_path / "HEAD").is_file()
        assert stat.S_IMODE(vault_path.stat().st_mode) == 0o700
