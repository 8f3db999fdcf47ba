"""Scan edges: names git refuses, SQLite's companion names beside folders and empty files, JSON
nested too deep for Python's parser. Each once blocked or silently dropped part of a sync."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pygit2
import pytest

from conftest import Clock, git, run_cli, write_config
from vault.config import load_config
from vault.repo import VaultRepo
from vault.sources import _gitmodules, scan_source
from vault.sqlite_dump import is_dump
from vault.sync import sync

# Names to hold the scan to libgit2 with: what git refuses on NTFS (".git" or "git~1" with a
# trailing dot/space, an alternate data stream ":", a "\"), on HFS+ (code points HFS+ ignores,
# and libgit2's low-byte compare: ".\u0167it"), and look-alikes git accepts.
CANDIDATES = [
    ".git", ".GIT", ".Git", ".git.", ".git ", ".git . .", ".git:stream", ".git::$INDEX_ALLOCATION",
    ".git\\x", ".git\\", ".git:", ".gitx", ".git-x", ".git.x", ".git x", ".gitmodules",
    ".gitmodules:x", ".gitignore", "git~1", "GIT~1", "git~1.", "git~1 ", "git~1:x", "git~1\\x",
    "git~10", "git~2", "GIT~2", "xgit~1", "git", "git.md", "gitlog", "Goals.md", "g", ".g", ".gi",
    ".git\u200c", "\u200c.git", ".g\u200cit", ".GIT\ufeff", "\u206a.g\u202ei\u200dt", ".git\u200c ",
    ".\u0167\u0169\u0174", ".\u0167it", ".g\u0130t", "g\u0130t~1", ".gi\u0165", ".git\u00e9",
    "a\\b", "\\", "a:b", "...", ". .", ".hidden", "notes.md", "caf\u00e9.md",
]


class Source:
    """The three things scan_source reads of a source."""

    include: tuple[str, ...] = ("**",)
    exclude: tuple[str, ...] = ()

    def __init__(self, root: Path) -> None:
        self.name = "s"
        self.root = root


def libgit2_refuses(tmp_path: Path, names: list[str], **config: bool) -> set[str]:
    """The names pygit2's TreeBuilder will not insert, in a scratch repo with this config."""
    repo = pygit2.init_repository(str(tmp_path / f"scratch-{len(config)}"), bare=True)
    for key, value in config.items():
        repo.config[key] = value
    blob = repo.create_blob(b"x")
    refused = set()
    for name in names:
        try:
            repo.TreeBuilder().insert(name, blob, pygit2.GIT_FILEMODE_BLOB)
        except (ValueError, pygit2.GitError):
            refused.add(name)
    return refused


def test_scan_skips_exactly_the_names_libgit2_refuses(tmp_path: Path) -> None:
    files, folders = tmp_path / "files", tmp_path / "folders"
    for name in CANDIDATES:
        (files / name).parent.mkdir(exist_ok=True)
        (files / name).write_text("x\n")
        (folders / name).mkdir(parents=True)
        (folders / name / "inner.md").write_text("x\n")
    # The union of both protections (HFS is on by default on macOS): what the scan refuses.
    refused = libgit2_refuses(tmp_path, CANDIDATES, **{"core.protectNTFS": True,
                                                       "core.protectHFS": True})
    assert libgit2_refuses(tmp_path, CANDIDATES) <= refused  # this platform's defaults
    assert 10 < len(refused) < len(CANDIDATES) - 10

    # Only on macOS by default: the reason says so (they are refused everywhere, so that a
    # vault synced from Linux and from a Mac holds the same files).
    hfs_only = refused - libgit2_refuses(tmp_path, CANDIDATES, **{"core.protectNTFS": True,
                                                                  "core.protectHFS": False})
    assert hfs_only

    def refusals(scan: Any, kind: str) -> tuple[set[str], set[str]]:
        return ({rel for rel, reason in scan.skipped
                 if reason == f"git cannot store a {kind} with this name"},
                {rel for rel, reason in scan.skipped
                 if reason == f"git on macOS cannot store a {kind} with this name (HFS+ reads "
                              "it as .git), so the vault takes it nowhere"})

    scan = scan_source(Source(files))
    assert refusals(scan, "file") == (refused - hfs_only, hfs_only)
    # (git takes a .gitmodules file, however spelled, for submodule settings: skipped too)
    assert {e.rel for e in scan.entries} == set(CANDIDATES) - refused - {
        n for n in CANDIDATES if _gitmodules(n)}

    scan = scan_source(Source(folders))
    # (a folder named .git is a nested repository's metadata: left out, and not listed)
    assert refusals(scan, "folder") == ({name + "/" for name in refused - hfs_only - {".git"}},
                                        {name + "/" for name in hfs_only})
    assert {e.rel for e in scan.entries} == {n + "/inner.md" for n in set(CANDIDATES) - refused}


def sync_beside_another_source(tmp_path: Path, src: Path, other: Path) -> Any:
    """vault init and sync --json (exit 0) of sources src and other (one file, made here)."""
    other.mkdir()
    (other / "n.md").write_text("other source\n")
    config = write_config(tmp_path / "vault.toml", {"src": src, "other": other})
    assert run_cli("init", "--config", str(config)).returncode == 0
    proc = run_cli("sync", "--json", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_name_git_refuses_skips_that_file_only(tmp_path: Path) -> None:
    """Before: `invalid name for a tree entry - .git:stream`, exit 1, no source committed."""
    src, other = tmp_path / "src", tmp_path / "other"
    (src / ".git:dir").mkdir(parents=True)
    (src / ".git:dir" / "inner.md").write_text("inside\n")
    for name in (".git:stream", ".git::$INDEX_ALLOCATION", ".git\\x"):
        (src / name).write_text("gitdir: elsewhere\n")
    (src / "notes.md").write_text("notes\n")
    result = sync_beside_another_source(tmp_path, src, other)
    assert result["skipped"] == [
        {"path": "src/.git::$INDEX_ALLOCATION", "reason": "git cannot store a file with this name"},
        {"path": "src/.git:dir/", "reason": "git cannot store a folder with this name"},
        {"path": "src/.git:stream", "reason": "git cannot store a file with this name"},
        {"path": "src/.git\\x", "reason": "git cannot store a file with this name"}]
    assert result["added"] == ["other/n.md", "src/notes.md"]
    vault = tmp_path / "memory-vault"
    assert git(vault, "ls-tree", "-r", "--name-only", "main").split() == [
        "other/n.md", "src/notes.md"]


def test_companion_names_beside_a_folder_or_an_empty_file_are_synced(tmp_path: Path) -> None:
    """The report's repro. Before: neither file in `added` nor in `skipped`."""
    src = tmp_path / "src"
    (src / "daily").mkdir(parents=True)
    (src / "daily-journal").write_text("important\n")
    (src / "plan").write_bytes(b"")
    (src / "plan-journal").write_text("log\n")
    config = write_config(tmp_path / "vault.toml", {"src": src})
    assert run_cli("init", "--config", str(config)).returncode == 0
    proc = run_cli("sync", "--json", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["added"] == ["src/daily-journal", "src/plan", "src/plan-journal"]
    assert result["skipped"] == []


JOURNAL_MAGIC = bytes.fromhex("d9d505f920a163d7")
# X -> (X's content, or None for a folder; {companion name: (content, SQLite's?)})
BESIDE = {
    "folder": (None, {"-journal": (JOURNAL_MAGIC + b"x" * 504, False),
                      "-wal": (bytes.fromhex("377f0682") + b"x" * 28, False),
                      "-shm": (b"important\n", False)}),
    "empty": (b"", {"-journal": (b"log\n", False), "-wal": (b"wal of my own\n", False),
                    "-shm": (b"anything\n", False)}),  # a -shm goes with SQLite's -wal only
    "empty-s0": (b"", {"-shm": (b"shm text\n", False)}),
    "empty-j0": (b"", {"-journal": (b"", True)}),
    "empty-j1": (b"", {"-journal": (JOURNAL_MAGIC + b"\0" * 504, True)}),
    "empty-j2": (b"", {"-journal": (bytes(8) + b"\x00\x00\x00\x00\x13e\xb8\xe0", True)}),
    "empty-j3": (b"", {"-journal": (b"\xd9\xd5\x05\xf9 my notes\n", False)}),
    "empty-w0": (b"", {"-wal": (b"", True)}),
    "empty-w1": (b"", {"-wal": (bytes.fromhex("377f0682002de218") + bytes(24), True)}),
    "empty-w2": (b"", {"-wal": (bytes.fromhex("377f0683002de218") + bytes(24), True),
                       "-shm": (bytes(32768), True)}),
    "zeros": (bytes(8192), {"-journal": (JOURNAL_MAGIC + bytes(504), True),
                            "-wal": (b"text\n", False)}),
    "text": (b"itinerary\n", {"-journal": (bytes(8), False), "-wal": (b"", False),
                              "-shm": (b"", False)}),
}


def test_companion_names_are_sqlite_s_only_when_their_content_says_so(
        tmp_path: Path, clock: Clock) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    want_added, want_hidden, want_waiting = [], [], []
    for stem, (content, companions) in BESIDE.items():
        if content is None:
            (ws / stem).mkdir()
            (ws / stem / "in.md").write_text("in\n")
            want_added.append(f"ws/{stem}/in.md")
        elif content and not content.strip(b"\0"):
            # pages of a database before its first commit (its journal is SQLite's): not a
            # database yet, not stored as the bytes they are; the next sync takes it
            (ws / stem).write_bytes(content)
            want_waiting.append(f"ws/{stem}")
        else:
            (ws / stem).write_bytes(content)
            want_added.append(f"ws/{stem}")
        for suffix, (data, sqlite_s) in companions.items():
            (ws / (stem + suffix)).write_bytes(data)
            (want_hidden if sqlite_s else want_added).append(f"ws/{stem}{suffix}")
    config = load_config(write_config(tmp_path / "vault.toml", {"ws": ws}))
    vault, _ = VaultRepo.init(config.vault.path, config.vault.branch)
    result = sync(config, now=clock)
    assert sorted(result.added) == sorted(want_added)
    assert [(s.path, s.reason) for s in result.skipped] == [
        (p, "a database being created (its first transaction is open); the next sync takes "
            "it") for p in want_waiting]
    assert sorted(git(vault.path, "ls-tree", "-r", "--name-only", "main").split()) \
        == sorted(want_added)


HOLDER = """
import os, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
for pragma in sys.argv[2:]:
    db.execute("PRAGMA " + pragma)
db.execute("BEGIN IMMEDIATE")
db.execute("CREATE TABLE t(x)")
for _ in range(50):
    db.execute("INSERT INTO t VALUES(?)", (os.urandom(5000),))
print("ready", flush=True)
sys.stdin.readline()
db.execute("COMMIT")
print("committed", flush=True)
sys.stdin.readline()
"""


@pytest.mark.parametrize("pragmas, companion, magic", [
    # Before its journal is synced, SQLite leaves the magic zero (the first transaction of
    # every new database in the default mode; PERSIST's first one too).
    (["journal_mode=DELETE"], "-journal", bytes(8)),
    (["journal_mode=PERSIST"], "-journal", bytes(8)),
    # Unsynced, the magic is written at once; a transaction that spills pages syncs it first.
    (["synchronous=OFF"], "-journal", JOURNAL_MAGIC),
    (["cache_size=1"], "-journal", JOURNAL_MAGIC),
], ids=["delete", "persist", "nosync", "spilled"])
def test_a_real_sqlite_s_journal_beside_a_database_being_created_is_not_a_file(
        tmp_path: Path, clock: Clock, pragmas: list[str], companion: str, magic: bytes) -> None:
    from vault.sources import JOURNAL_MAGICS

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "notes.md").write_text("notes\n")
    config = load_config(write_config(tmp_path / "vault.toml", {"ws": ws}))
    vault, _ = VaultRepo.init(config.vault.path, config.vault.branch)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(ws / "new.db"), *pragmas],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "ready"
        # A write transaction held open in another process: the database file is not a
        # database yet (empty, or its page 1 still zeros), its journal is there.
        assert not (ws / "new.db").read_bytes()[:16].strip(b"\0")
        head = (ws / f"new.db{companion}").read_bytes()[:8]
        assert head == magic and head in JOURNAL_MAGICS
        first = sync(config, now=clock)
        assert "ws/notes.md" in first.added
        # Its pages, when the transaction spilled them, are not a database yet: they wait.
        waiting = ["ws/new.db"] if (ws / "new.db").stat().st_size else []
        assert [s.path for s in first.skipped] == waiting
        assert not [p for p in first.added if p == "ws/new.db" and waiting]
        assert not [p for p in (*first.added, *first.modified) if p.endswith(companion)]
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "committed"
        clock.tick()
        second = sync(config, now=clock)
        assert not second.skipped
    finally:
        holder.kill()
        holder.wait()
    assert git(vault.path, "ls-tree", "-r", "--name-only", "main").split() == [
        "ws/new.db", "ws/notes.md"]
    assert is_dump(git(vault.path, "show", "main:ws/new.db").encode())


def test_a_real_sqlite_s_wal_header_is_recognised_beside_an_empty_file(
        tmp_path: Path, clock: Clock) -> None:
    from vault.sources import WAL_MAGICS

    ws = tmp_path / "ws"
    ws.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "live.db"),
                               "journal_mode=WAL"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "ready"
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "committed"
        wal = (tmp_path / "live.db-wal").read_bytes()  # the connection is open: not checkpointed
    finally:
        holder.kill()
        holder.wait()
    native = "82" if sys.byteorder == "little" else "83"
    assert wal[:4] == bytes.fromhex("377f06" + native) and wal[:4] in WAL_MAGICS
    # SQLite's WAL beside an empty file is SQLite's; a "-wal" of the user's is a file.
    (ws / "fresh.db").write_bytes(b"")
    (ws / "fresh.db-wal").write_bytes(wal)
    (ws / "fresh.db-shm").write_bytes(bytes(32768))
    (ws / "draft").write_bytes(b"")
    (ws / "draft-wal").write_text("a wall of text\n")
    config = load_config(write_config(tmp_path / "vault.toml", {"ws": ws}))
    VaultRepo.init(config.vault.path, config.vault.branch)
    result = sync(config, now=clock)
    assert sorted(result.added) == ["ws/draft", "ws/draft-wal", "ws/fresh.db"]


def test_json_nested_deeper_than_python_parses_does_not_stop_the_sync(tmp_path: Path) -> None:
    """Before: `Error: unexpected: RecursionError`, exit 3, nothing committed from any source.
    Now: Python cannot check such JSON, and that is not proof it is broken: a .json is stored
    as it is; a JSONL line counts as complete once it ends with a newline (a trailing line too
    deep to check waits for its newline, as any line being written)."""
    src, other = tmp_path / "src", tmp_path / "other"
    src.mkdir()
    deep = b"[" * 100_000 + b"]" * 100_000
    (src / "deep.json").write_bytes(deep + b"\n")
    (src / "broken.json").write_text('{"half": ')
    head = b'{"type": "session"}\n' + deep + b"\n"
    (src / "log.jsonl").write_bytes(head + deep)  # a complete deep line, then a partial one
    (src / "notes.md").write_text("notes\n")
    result = sync_beside_another_source(tmp_path, src, other)
    assert result["added"] == ["other/n.md", "src/deep.json", "src/log.jsonl", "src/notes.md"]
    assert [s["path"] for s in result["skipped"]] == ["src/broken.json"]  # still checked
    vault = tmp_path / "memory-vault"

    def stored(path: str) -> bytes:
        return subprocess.run(["git", "-C", str(vault), "show", f"main:{path}"],
                              capture_output=True, check=True).stdout

    assert stored("src/deep.json") == deep + b"\n"
    assert stored("src/log.jsonl") == head
    with (src / "log.jsonl").open("ab") as handle:
        handle.write(b"\n")
    proc = run_cli("sync", "--json", "--config", str(tmp_path / "vault.toml"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["modified"] == ["src/log.jsonl"]
    assert stored("src/log.jsonl") == head + deep + b"\n"


FOLDERS = ("memory", "memory/2026", "memory/old", "notes", "notes/memory", "cache",
           "cache/deep", "agents", "agents/main", "agents/main/sessions", ".hidden")


@pytest.mark.parametrize("include", [
    ("MEMORY.md", "memory/*.md"),
    ("/memory/2026/",),
    ("agents/*/sessions/*.jsonl", "/MEMORY.md"),
    ("memory/*/x.md", "notes/**/*.md"),
    ("memory/", "*.db"),  # match at any depth: every folder is walked
    ("memory/[0-9]*/*.md",),
    ("m?mory/*", "!memory/old/"),
    (".hidden/*", "cache/deep"),
])
def test_the_walk_skips_only_folders_no_include_pattern_reaches(
        tmp_path: Path, include: tuple[str, ...]) -> None:
    """The walk takes exactly the files the include patterns match (the full walk, filtered,
    is the reference) and never opens a folder that no pattern reaches: each folder holds a
    file whose name is not UTF-8, listed as skipped by any walk that enters it."""
    from vault.sources import compile_patterns, folder_filter

    root = tmp_path / "src"
    for folder in ("", *FOLDERS):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name in ("MEMORY.md", "x.md", "s.jsonl", "m.db"):
            (root / folder / name).write_text(folder + name)
        (root / folder / "x.md").parent.joinpath("bad-\udcff").write_bytes(b"")
    source = Source(root)
    source.include = include
    scan = scan_source(source)
    match = compile_patterns(include)
    every = [os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root)
             for f in fs if not f.startswith("bad-")]
    assert sorted(e.rel for e in scan.entries) == sorted(p for p in every if match(p))
    entered = {s[0].rpartition("/")[0] for s in scan.skipped}
    reach = folder_filter(include)
    assert entered == {""} | {f for f in FOLDERS if reach is None or reach(f)
                              and all(reach(f[:i]) for i, c in enumerate(f) if c == "/")}
    # anchored patterns only (`MEMORY.md` alone matches at any depth): some never entered
    assert (entered != {"", *FOLDERS}) == (reach is not None)


def test_folder_filter_is_conservative() -> None:
    from vault.sources import folder_filter

    assert folder_filter(["*.md"]) is None  # any depth
    assert folder_filter(["memory/"]) is None  # a folder named memory, at any depth
    assert folder_filter(["memory/\\*.md"]) is None  # an escape: not judged
    assert folder_filter(["!memory/x", "# memory/"]) is None  # nothing positive
    reach = folder_filter(["/notes/", "memory/*/x.md", "a/**/b"])
    assert reach is not None
    assert [f for f in ("notes", "notes/x", "memory", "memory/2026", "memory/2026/deep", "a",
                        "a/q/r/s", "cache", "notes2", "memory2/x", "b")
            if reach(f)] == ["notes", "notes/x", "memory", "memory/2026", "a", "a/q/r/s"]


@pytest.mark.parametrize("include, exclude", [
    (("**",), ("*.tmp",)),
    (("**",), ("memory/", "!memory/x.md")),  # no way back into a folder excluded as such
    (("memory/*.md", "/MEMORY.md"), ("notes/",)),
    (("*.md",), ("cache/deep", "!*.jsonl")),
    (("*",), ()),
])
def test_path_filter_takes_what_the_walk_takes(tmp_path: Path, include: tuple[str, ...],
                                               exclude: tuple[str, ...]) -> None:
    """restore asks path_filter which files of a commit the config still takes: the same
    answer as a walk of the same files."""
    from vault.sources import path_filter

    root = tmp_path / "src"
    for folder in ("", *FOLDERS):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name in ("MEMORY.md", "x.md", "s.jsonl", "x.tmp"):
            (root / folder / name).write_text(name)
    source = Source(root)
    source.include, source.exclude = include, exclude
    every = [os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root)
             for f in fs]
    takes = path_filter(source)
    assert sorted(p for p in every if takes(p)) == sorted(e.rel for e in
                                                          scan_source(source).entries)


def test_a_temp_file_of_vaults_in_a_source_is_listed(tmp_path: Path) -> None:
    """Found by a QA sweep: a restore killed between writing a file's temp copy and renaming
    it leaves `.<name>.<pid>.vault-tmp` beside it, and a user's own `ideas.vault-tmp` was
    never backed up: both were skipped without a word."""
    root = tmp_path / "src"
    root.mkdir()
    (root / ".notes.md.4242.vault-tmp").write_text("a killed restore's copy\n")
    (root / "ideas.vault-tmp").write_text("mine\n")
    (root / "notes.md").write_text("notes\n")
    scan = scan_source(Source(root))
    assert [e.rel for e in scan.entries] == ["notes.md"]
    assert sorted(scan.skipped) == [
        (name, "a temp file of vault's (a write that was killed leaves one): safe to delete")
        for name in (".notes.md.4242.vault-tmp", "ideas.vault-tmp")]
