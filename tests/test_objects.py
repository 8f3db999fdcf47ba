"""Bulk reads for restores: the same files and bytes as repo.py gives, and damage is reported."""

from __future__ import annotations

import os
import subprocess
import zlib
from datetime import datetime, timezone
from pathlib import Path

import pytest

from vault.errors import RepoError
from vault.objects import BlobReader, tree_files
from vault.repo import VaultRepo

WHEN = datetime(2026, 11, 21, 10, 15, tzinfo=timezone.utc)


def sample(tmp_path: Path) -> tuple[VaultRepo, str, dict[str, bytes]]:
    """A vault with nested folders, an executable, an empty file and a large blob."""
    repo, _ = VaultRepo.init(tmp_path / "vault", "main")
    contents = {
        "agent/MEMORY.md": b"# Memory\n",
        "agent/memory/2026-11-20.md": "caf\u00e9 \u2615\n".encode(),
        "agent/memory/deep/er/note.md": b"deep\n",
        "agent/empty": b"",
        "agent/hook.sh": b"#!/bin/sh\necho hi\n",
        "other/big.bin": os.urandom(3 << 20),  # stored over 1 MB: inflated into an exact buffer
    }
    changes = {path: (repo.write_blob(data), 0o100755 if path.endswith(".sh") else 0o100644)
               for path, data in contents.items()}
    commit = repo.commit(None, changes, "sample", WHEN, "testhost")
    return repo, commit, contents


def loose(repo: VaultRepo, oid: str) -> Path:
    return repo.path / "objects" / oid[:2] / oid[2:]


def test_files_and_blobs_match_repo(tmp_path: Path) -> None:
    repo, commit, contents = sample(tmp_path)
    files = tree_files(repo, commit)
    assert files == repo.files(commit)
    with BlobReader(repo) as reader:
        for path, (oid, _mode) in files.items():
            blob = reader.get(oid)
            assert blob.head(4) == contents[path][:4]
            assert bytes(blob.view()) == blob.data() == contents[path] == repo.read_blob(oid)
            assert blob.contains(b"deep") == (b"deep" in contents[path])


def test_a_packed_vault_reads_the_same(tmp_path: Path) -> None:
    repo, commit, contents = sample(tmp_path)
    subprocess.run(["git", "-C", str(repo.path), "gc", "-q", "--prune=now"], check=True)
    assert not any(p.name != "pack" and p.name != "info"
                   for p in (repo.path / "objects").iterdir())  # nothing loose left
    files = tree_files(repo, commit)
    assert files == repo.files(commit)
    with BlobReader(repo) as reader:
        assert {p: reader.read(oid) for p, (oid, _m) in files.items()} == contents


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other-content", "missing"])
def test_a_damaged_blob_is_reported(tmp_path: Path, damage: str) -> None:
    repo, commit, _contents = sample(tmp_path)
    oid = tree_files(repo, commit)["agent/MEMORY.md"][0]
    path = loose(repo, oid)
    good = path.read_bytes()
    path.chmod(0o644)
    if damage == "garbage":
        path.write_bytes(b"this is not a zlib stream\n")
    elif damage == "truncated":
        path.write_bytes(good[:12])
    elif damage == "other-content":
        path.write_bytes(zlib.compress(b"blob 9\0# Memorx\n"))
    else:
        path.unlink()
    with BlobReader(repo) as reader, pytest.raises(RepoError, match=f"vault object {oid}"):
        reader.read(oid)


def test_a_damaged_tree_goes_through_repo(tmp_path: Path) -> None:
    repo, commit, _contents = sample(tmp_path)
    sub = subprocess.run(["git", "-C", str(repo.path), "rev-parse", f"{commit}:agent/memory"],
                         capture_output=True, text=True, check=True).stdout.strip()
    loose(repo, sub).chmod(0o644)
    loose(repo, sub).write_bytes(b"garbage")
    with pytest.raises(RepoError, match="damaged"):
        tree_files(repo, commit)


def test_a_large_blob_is_read_whole_only_when_its_content_is_wanted(tmp_path: Path) -> None:
    # A database's dump is looked at (its first line) here and read whole by the helper
    # process: the restore reads only its first chunk. Anything more reads the whole file,
    # checked as ever, also after the reader is closed.
    repo, commit, contents = sample(tmp_path)
    oid = tree_files(repo, commit)["other/big.bin"][0]
    stored = loose(repo, oid)
    with BlobReader(repo) as reader:
        blob = reader.get(oid)
        stored.chmod(0o644)
        good = stored.read_bytes()
        stored.write_bytes(good[:len(good) // 2])  # cut short after the first read
        assert blob.head(8) == contents["other/big.bin"][:8]  # from the start alone
        with pytest.raises(RepoError, match=f"vault object {oid} is missing or damaged"):
            blob.data()  # the rest is read now, and checked
        stored.write_bytes(good)
        later = reader.get(oid)
    assert later.data() == contents["other/big.bin"]  # read whole after the reader is closed


def test_commits_read_by_hand_match_repo(tmp_path: Path) -> None:
    # restore resolves --at without loading pygit2 while the commits are loose: the same
    # CommitInfo as VaultRepo's, message, body and trailers included.
    from datetime import timedelta

    from vault.objects import commit_info, first_parent_line

    repo, first, _ = sample(tmp_path)
    tip = first
    messages = ["second\n\nbody line\n\nVault-Host: testhost\n", "caf\u00e9 \u2615\n",
                "\n\nleading blank lines\n"]
    for i, message in enumerate(messages):
        tip = repo.commit(tip, {f"agent/n{i}.md": (repo.write_blob(b"%d" % i), 0o100644)},
                          message, WHEN + timedelta(minutes=i + 1), "testhost")
    line = list(first_parent_line(repo, tip))
    assert line == list(repo.walk_first_parent(tip))
    assert [c.message for c in line[:3]] == [repo.resolve(c.id).message for c in line[:3]]
    assert line[0].summary == "leading blank lines"
    for info in line:
        assert commit_info(repo, info.id) == repo.resolve(info.id)
    # Packed (or otherwise not loose) from some commit on: VaultRepo takes over there.
    subprocess.run(["git", "-C", str(repo.path), "repack", "-a", "-d", "-q"], check=True)
    subprocess.run(["git", "-C", str(repo.path), "prune-packed"], check=True)
    assert list(first_parent_line(repo, tip)) == line
    assert commit_info(repo, first) == repo.resolve(first)
    with pytest.raises(RepoError, match="no commit"):
        commit_info(repo, "0" * 40)


def test_a_restore_by_id_or_time_of_loose_commits_does_not_load_pygit2(tmp_path: Path) -> None:
    # pygit2 takes 30-55 ms to import: a restore --to of a vault of loose objects needs none.
    import json
    import sys

    repo, commit, contents = sample(tmp_path)
    config = tmp_path / "vault.toml"
    config.write_text(f'[vault]\npath = "{repo.path}"\n\n[[sources]]\nname = "agent"\n'
                      f'path = "{tmp_path / "ws"}"\n')
    script = ("import sys, json\nfrom vault.cli import main\n"
              "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
              "    print(json.dumps({'code': e.code, 'pygit2': 'pygit2' in sys.modules}),"
              " file=sys.stderr)\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for at in (commit, "2026-11-21T10:20:00Z"):  # (after WHEN)
        out = tmp_path / f"out-{at[:4]}"
        proc = subprocess.run([sys.executable, "-c", script, "restore", "--at", at, "--to",
                               str(out)], capture_output=True, text=True, check=False,
                              env={**os.environ, "VAULT_CONFIG": str(config),
                                   "VAULT_HOME": str(tmp_path / "home")},
                              cwd=elsewhere)  # (not beside the folder named vault)
        assert json.loads(proc.stderr.splitlines()[-1]) == {"code": 0, "pygit2": False}, \
            proc.stderr
        assert (out / "agent" / "MEMORY.md").read_bytes() == contents["agent/MEMORY.md"]


def _read_all(repo: VaultRepo, oids: list[str], ahead: bool) -> tuple[list[object], int]:
    """Each blob's content (or its error's message) as get() gives it; how many the read-ahead
    served."""
    import time

    out: list[object] = []
    with BlobReader(repo) as reader:
        served = 0
        if ahead:
            reader.read_ahead(oids)
            assert reader._ahead is not None
            deadline = time.monotonic() + 30
            while len(reader._ahead._ready) < 100 and time.monotonic() < deadline:
                time.sleep(0.01)  # (let the threads get ahead, so that some are served)
        for oid in oids:
            try:
                out.append(reader.get(oid).data())
            except RepoError as exc:
                out.append(exc.message)
        if ahead:
            assert reader._ahead is not None
            served = reader._ahead.served
    return out, served


def test_read_ahead_gives_the_same_blobs_and_the_same_errors(tmp_path: Path) -> None:
    import threading

    repo, _ = VaultRepo.init(tmp_path / "vault", "main")
    datas = [f"note {i}\n".encode() * (i % 9 + 1) for i in range(700)]
    datas.insert(350, os.urandom(200_000))  # larger than one read: get() reads it whole
    oids = [repo.write_blob(data) for data in datas]
    damaged, missing = loose(repo, oids[10]), loose(repo, oids[20])
    damaged.chmod(0o644)
    damaged.write_bytes(zlib.compress(b"blob 3\0abc"))  # a whole object, of other content
    missing.unlink()
    plain, _ = _read_all(repo, oids, ahead=False)
    read_ahead, served = _read_all(repo, oids, ahead=True)
    assert read_ahead == plain
    assert "does not match its id" in str(plain[10]) and oids[20] in str(plain[20])
    assert plain[:10] == datas[:10] and plain[350] == datas[350]
    assert served >= 100  # the threads' reads were used, not only read
    assert not any(t.name == "vault-read-ahead" for t in threading.enumerate())
