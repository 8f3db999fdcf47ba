"""The vault repository: incremental trees equal full rebuilds; refs move last and atomically."""

from __future__ import annotations

import json
import random
import stat
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pygit2
import pytest

from vault.errors import NoVaultError, RepoError
from vault.repo import VaultRepo

WHEN = datetime(2026, 11, 21, 10, 15, tzinfo=timezone.utc)


def full_tree(repo: VaultRepo, files: dict[str, tuple[str, int]]) -> str:
    """The tree id a from-scratch build of files gives (libgit2's index)."""
    index = pygit2.Index()
    for path, (oid, mode) in files.items():
        index.add(pygit2.IndexEntry(path, pygit2.Oid(hex=oid), pygit2.enums.FileMode(mode)))
    raw = pygit2.Repository(str(repo.path))
    return str(index.write_tree(raw))


def tree_of(repo: VaultRepo, commit: str) -> str:
    return subprocess.run(["git", "-C", str(repo.path), "rev-parse", f"{commit}^{{tree}}"],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.parametrize("seed", range(12))
def test_incremental_tree_equals_full_rebuild(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    repo, _ = VaultRepo.init(tmp_path / "v", "main")
    names = ["a", "b", "c", "d.md", "e.json"]
    blobs = [repo.write_blob(f"blob {i}\n".encode()) for i in range(8)]

    def path() -> str:
        return "/".join(rng.choice(names) for _ in range(rng.randint(1, 4)))

    files: dict[str, tuple[str, int]] = {}
    parent = None
    for _ in range(6):
        changes: dict[str, tuple[str, int] | None] = {}
        for _ in range(rng.randint(1, 12)):
            p = path()
            if p in files and rng.random() < 0.4:
                changes[p] = None
            else:
                changes[p] = (rng.choice(blobs), rng.choice([0o100644, 0o100755]))
        # A filesystem cannot hold a file and a folder of the same name: drop what clashes.
        merged = {**files, **{k: v for k, v in changes.items() if v is not None}}
        for k in list(changes):
            if changes[k] is not None and any(o.startswith(k + "/") or k.startswith(o + "/")
                                              for o in merged if o != k):
                del changes[k]
        for k, v in list(changes.items()):
            if v is None and k not in files:
                del changes[k]
        for k in [k for k in files if any(k.startswith(c + "/") or c.startswith(k + "/")
                                          for c, v in changes.items() if v is not None)]:
            changes[k] = None
        parent = repo.commit(parent, changes, "test\n", WHEN, "host")
        for k, v in changes.items():
            if v is None:
                files.pop(k, None)
            else:
                files[k] = v
        assert tree_of(repo, parent) == full_tree(repo, files)
        assert repo.files(parent) == files
    subprocess.run(["git", "-C", str(repo.path), "fsck", "--strict", "--no-dangling"],
                   check=True, capture_output=True)


def test_file_replaced_by_folder_and_back(tmp_path: Path) -> None:
    repo, _ = VaultRepo.init(tmp_path / "v", "main")
    blob = repo.write_blob(b"x\n")
    c1 = repo.commit(None, {"s/notes": (blob, 0o100644)}, "1\n", WHEN, "h")
    c2 = repo.commit(c1, {"s/notes": None, "s/notes/today.md": (blob, 0o100644)}, "2\n", WHEN, "h")
    assert repo.files(c2) == {"s/notes/today.md": (blob, 0o100644)}
    c3 = repo.commit(c2, {"s/notes/today.md": None, "s/notes": (blob, 0o100644)}, "3\n", WHEN, "h")
    assert repo.files(c3) == {"s/notes": (blob, 0o100644)}
    c4 = repo.commit(c3, {"s/notes": None}, "4\n", WHEN, "h")
    assert repo.files(c4) == {}


def test_a_change_to_a_file_never_drops_a_folder_or_the_reverse(tmp_path: Path) -> None:
    """The tree writer's own guard (sync holds such changes back first; QA lost files when it
    did not): deleting the file 'x' leaves a folder x/ alone, deletions below x/ leave a file
    'x' alone, and a file over a kept folder (or files below a kept file) is refused whole."""
    repo, _ = VaultRepo.init(tmp_path / "v", "main")
    blob = repo.write_blob(b"x\n")
    folder = repo.commit(None, {"s/x/f.md": (blob, 0o100644)}, "1\n", WHEN, "h")
    kept = repo.commit(folder, {"s/x": None}, "2\n", WHEN, "h")
    assert repo.files(kept) == {"s/x/f.md": (blob, 0o100644)}
    with pytest.raises(RepoError, match=r"cannot store s/x: a folder whose files the vault "
                                        r"keeps stands where this file would go"):
        repo.commit(kept, {"s/x": (blob, 0o100644)}, "3\n", WHEN, "h")
    assert repo.head_id() == kept
    file = repo.commit(kept, {"s/x/f.md": None, "s/x": (blob, 0o100644)}, "4\n", WHEN, "h")
    assert repo.files(file) == {"s/x": (blob, 0o100644)}
    still = repo.commit(file, {"s/x/f.md": None, "s/x/g.md": None}, "5\n", WHEN, "h")
    assert repo.files(still) == {"s/x": (blob, 0o100644)}
    with pytest.raises(RepoError, match=r"cannot store s/x: a file the vault keeps stands "
                                        r"where these files' folder would go"):
        repo.commit(still, {"s/x/new.md": (blob, 0o100644)}, "6\n", WHEN, "h")
    assert repo.head_id() == still


def test_branch_moves_only_from_where_the_sync_started(tmp_path: Path) -> None:
    repo, _ = VaultRepo.init(tmp_path / "v", "main")
    blob = repo.write_blob(b"x\n")
    first = repo.commit(None, {"a": (blob, 0o100644)}, "1\n", WHEN, "h")
    with pytest.raises(RepoError, match="moved during the sync"):
        repo.commit(None, {"b": (blob, 0o100644)}, "2\n", WHEN, "h")
    assert repo.head_id() == first
    log = subprocess.run(["git", "-C", str(repo.path), "reflog", "main"], capture_output=True,
                         text=True, check=True).stdout
    assert len(log.splitlines()) == 1


def test_head_read_without_and_with_packed_refs(tmp_path: Path) -> None:
    repo, _ = VaultRepo.init(tmp_path / "v", "main")
    blob = repo.write_blob(b"x\n")
    first = repo.commit(None, {"a": (blob, 0o100644)}, "1\n", WHEN, "h")
    subprocess.run(["git", "-C", str(repo.path), "pack-refs", "--all"], check=True)
    assert not (repo.path / "refs" / "heads" / "main").exists()
    assert VaultRepo.open(repo.path, "main").head_id() == first


def test_open_refuses_what_is_not_a_vault(tmp_path: Path) -> None:
    with pytest.raises(NoVaultError, match="no vault at"):
        VaultRepo.open(tmp_path / "missing", "main")
    (tmp_path / "plain").mkdir()
    with pytest.raises(NoVaultError, match="is not a vault"):
        VaultRepo.open(tmp_path / "plain", "main")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(Exception, match="not empty"):
        VaultRepo.init(tmp_path / "full", "main")


def test_a_project_repository_is_never_taken_for_the_vault(tmp_path: Path,
                                                           workspace: Path) -> None:
    """Before: `vault init` said "Already a vault" for any folder with a .git, and the sync
    then committed agent memory onto the project's checked-out branch (its `git status`
    showing staged deletions) and wrote the lock and stat cache into its work tree."""
    from conftest import git, run_cli, write_config

    proj = tmp_path / "proj"
    subprocess.run(["git", "init", "-q", "-b", "main", str(proj)], check=True)
    (proj / "code.py").write_text("print('hi')\n")
    git(proj, "add", "code.py")
    git(proj, "-c", "user.name=u", "-c", "user.email=u@x", "commit", "-q", "-m", "code")
    before = git(proj, "rev-parse", "HEAD")
    config = write_config(tmp_path / "w.toml", {"agent": workspace}, vault_path=proj)
    for command in ("init", "sync", "status"):
        proc = run_cli(command, "--config", str(config))
        assert (proc.returncode, proc.stderr.splitlines()[0]) == (
            10, f"Error: {proj} is a git work tree (it has a .git), not a vault"), proc.stderr
    assert git(proj, "rev-parse", "HEAD") == before and not (proj / "vault").exists()

    bare = tmp_path / "proj.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(proj), str(bare)], check=True)
    config = write_config(tmp_path / "b.toml", {"agent": workspace}, vault_path=bare)
    objects = sorted(str(p) for p in (bare / "objects").rglob("*"))
    for command in ("init", "sync", "sync --dry-run"):  # (no object written into it; the dry
        proc = run_cli(*command.split(), "--config", str(config))  # run says what sync says)
        assert (proc.returncode, proc.stderr.splitlines()[0]) == (
            1, f"Error: {bare} is a git repository whose branch 'main' was not made by vault; "
               "refusing to use it as the vault"), proc.stderr
    assert sorted(str(p) for p in (bare / "objects").rglob("*")) == objects
    assert git(bare, "rev-parse", "main") == before
    assert not (bare / "vault").exists()  # (before: the sync's lock files were written into it)

    # An empty bare repository, and a bare clone of a vault, are taken.
    empty, copy = tmp_path / "empty.git", tmp_path / "copy.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(empty)], check=True)
    config = write_config(tmp_path / "e.toml", {"agent": workspace}, vault_path=empty)
    made = run_cli("init", "--json", "--config", str(config))
    assert made.returncode == 0 and json.loads(made.stdout)["created"] is True  # (QA: it said
    again = run_cli("init", "--json", "--config", str(config))  # "Already a vault" at once)
    assert json.loads(again.stdout)["created"] is False
    assert run_cli("sync", "--quiet", "--config", str(config)).returncode == 0
    subprocess.run(["git", "clone", "-q", "--bare", str(empty), str(copy)], check=True)
    config = write_config(tmp_path / "c.toml", {"agent": workspace}, vault_path=copy)
    proc = run_cli("init", "--config", str(config))
    assert proc.returncode == 0 and "Already a vault" in proc.stdout, proc.stdout
    for adopted in (empty, copy):  # the vault's own settings, as on a vault it made
        assert stat.S_IMODE(adopted.stat().st_mode) == 0o700
        assert git(adopted, "config", "gc.auto").strip() == "0"
        assert git(adopted, "config", "core.logAllRefUpdates").strip() == "always"
    # A commit made by hand on top of a vault's keeps it a vault.
    hand = git(copy, "-c", "user.name=u", "-c", "user.email=u@x", "commit-tree", "-m",
               "by hand", "-p", "main", "main^{tree}").strip()
    git(copy, "update-ref", "refs/heads/main", hand)
    (workspace / "MEMORY.md").write_text("# changed\n")
    for command in ("init", "sync"):
        proc = run_cli(command, "--config", str(config))
        assert proc.returncode == 0, proc.stderr
    assert git(copy, "rev-parse", "main^").strip() == hand
