"""Shared fixtures: an isolated VAULT_HOME and HOME, a small agent workspace, an initialised vault."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import apsw
import pytest

from vault.config import Config, load_config
from vault.repo import VaultRepo

REAL_HOME = Path.home()
GUARDED = [REAL_HOME / ".local" / "share" / "vault", REAL_HOME / ".config" / "vault"]


def _fingerprint() -> list[tuple[str, float | None]]:
    return [(str(p), p.stat().st_mtime if p.exists() else None) for p in GUARDED]


@pytest.fixture(scope="session", autouse=True)
def _real_home_untouched() -> Iterator[None]:
    """Fail the run if any test wrote vault data or config under the real home directory."""
    before = _fingerprint()
    yield
    assert _fingerprint() == before, "a test touched the real home directory"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own VAULT_HOME and HOME; VAULT_CONFIG is never inherited."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("VAULT_HOME", str(home / "vault-data"))
    monkeypatch.delenv("VAULT_CONFIG", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    return home


def make_sqlite(path: Path, rows: int = 5, wal: bool = False) -> None:
    """A small memory database with an embedding BLOB column."""
    db = apsw.Connection(str(path))
    if wal:
        db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE memories(id INTEGER PRIMARY KEY, content TEXT, embedding BLOB)")
    with db:
        for i in range(rows):
            db.execute("INSERT INTO memories(content, embedding) VALUES(?, ?)",
                       (f"memory {i}", bytes(range(i, i + 16))))
    db.close()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A small agent memory tree: markdown, daily notes, JSON, a JSONL transcript, SQLite."""
    ws = tmp_path / "agent"
    (ws / "memory").mkdir(parents=True)
    (ws / "sessions").mkdir()
    (ws / "MEMORY.md").write_text("# Memory\n\n- The user prefers tea.\n")
    (ws / "memory" / "2026-11-20.md").write_text("# 2026-11-20\n\n- Fixed the backup job.\n")
    (ws / "memory.json").write_text(json.dumps([{"id": 1, "content": "likes tea"}], indent=2))
    (ws / "sessions" / "s1.jsonl").write_text(
        json.dumps({"type": "session", "id": "s1"}) + "\n"
        + json.dumps({"type": "message", "role": "user", "text": "hello"}) + "\n")
    make_sqlite(ws / "memory.db", wal=True)
    return ws


def write_config(path: Path, sources: dict[str, Path], extra: str = "",
                 vault_path: Path | None = None) -> Path:
    """Write a vault.toml for the given sources."""
    lines = ["[vault]", f'path = "{vault_path or path.parent / "memory-vault"}"', 'host = "testhost"',
             extra, ""]
    for name, root in sources.items():
        lines += ["[[sources]]", f'name = "{name}"', f'path = "{root}"', ""]
    path.write_text("\n".join(lines))
    return path


@pytest.fixture
def config_file(tmp_path: Path, workspace: Path) -> Path:
    """vault.toml with the workspace as source 'agent'."""
    return write_config(tmp_path / "vault.toml", {"agent": workspace})


@pytest.fixture
def config(config_file: Path) -> Config:
    """The loaded config for the workspace."""
    return load_config(config_file)


@pytest.fixture
def vault(config: Config) -> VaultRepo:
    """An initialised, empty vault for the workspace."""
    repo, created = VaultRepo.init(config.vault.path, config.vault.branch)
    assert created
    return repo


@dataclass
class Clock:
    """A settable clock for sync timestamps."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def tick(self, minutes: int = 15) -> datetime:
        self.now += timedelta(minutes=minutes)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 21, 10, 15, tzinfo=timezone.utc))


def git(repo: Path, *args: str) -> str:
    """Run the real git CLI against the vault and return its output."""
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=True)
    return proc.stdout


def run_cli(*args: str, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m vault` in a real subprocess."""
    return subprocess.run([sys.executable, "-m", "vault", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, check=False, timeout=120)


def age(path: Path, seconds: int = 60) -> None:
    """Make a file look untouched for a while (a file written a moment ago is never rolled back)."""
    old = time.time_ns() - seconds * 10**9
    os.utime(path, ns=(old, old))


def rows(path: Path) -> list[tuple[object, ...]]:
    db = apsw.Connection(str(path))
    try:
        return list(db.execute("SELECT id, content FROM memories ORDER BY id"))
    finally:
        db.close()


def deep_file(root: Path, parts: list[str], name: str, data: bytes) -> None:
    """A file below folders made one at a time, each by its parent's fd: its path may pass
    PATH_MAX, which no single call could make."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts:
            os.mkdir(part, dir_fd=fd)
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        out = os.open(name, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(out, data)
        os.close(out)
    finally:
        os.close(fd)
