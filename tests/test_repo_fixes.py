"""Repository fixes: revisions resolved through checked reads (a truncated commit hangs
libgit2), a project's bare repository never adopted, damaged loose objects rewritten when
their content comes back, write probes and HEAD checks in doctor, a vault without HEAD.

Real vaults, real git, real subprocesses: a hang shows as a subprocess that never ends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import Clock, git
from test_repo_damage import two_syncs
from vault.config import Config
from vault.repo import VaultRepo
from vault.sync import sync


def truncate(vault: VaultRepo, oid: str, keep: int | None = None) -> None:
    """Cut a loose object short (10 bytes off its end, or to keep bytes)."""
    path = vault.path / "objects" / oid[:2] / oid[2:]
    path.chmod(0o644)
    raw = path.read_bytes()
    path.write_bytes(raw[:keep] if keep is not None else raw[:-10])


def commit_tree(path: Path, parent: str, message: str, clock: Clock) -> str:
    """A commit made by hand (git commit-tree) on parent's tree, at the clock's time."""
    stamp = f"{int(clock.now.timestamp())} +0000"
    return subprocess.run(["git", "-C", str(path), "commit-tree", "-p", parent, "-m", message,
                           f"{parent}^{{tree}}"], capture_output=True, text=True, check=True,
                          env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x",
                               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x",
                               "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}
                          ).stdout.strip()


def cli(config: Config, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """`vault ARGS` in a subprocess; one that never ends is a hang (libgit2#7342)."""
    assert config.file is not None
    try:
        return subprocess.run([sys.executable, "-m", "vault", *args],
                              env={**os.environ, "VAULT_CONFIG": str(config.file)},
                              capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"vault {' '.join(args)} hung on a damaged object") from None


def in_child(config: Config, code: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run library code against the vault in a subprocess (`repo` is the opened vault)."""
    script = "\n".join([
        "import sys",
        "from pathlib import Path",
        "from vault.repo import VaultRepo",
        "repo = VaultRepo.open(Path(sys.argv[1]), 'main')",
        "try:",
        textwrap.indent(textwrap.dedent(code), "    "),
        "except Exception as exc:",
        "    print(type(exc).__name__ + ': ' + str(exc))",
    ])
    try:
        return subprocess.run([sys.executable, "-c", script, str(config.vault.path)],
                              capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"hung on a damaged object: {code}") from None


# --- 1. revisions read through checked readers -------------------------------------------------

@pytest.mark.parametrize("args", [
    ("show", "agent/MEMORY.md"),
    ("show", "--at", "HEAD~1", "agent/MEMORY.md"),
    ("show", "--at", "PREFIX", "agent/MEMORY.md"),
    ("show", "--at", "TIP", "agent/MEMORY.md"),
    ("diff", "HEAD~1"),
    ("restore", "--at", "HEAD", "--dry-run"),
    ("log", "--since", "HEAD~1"),
])
def test_a_truncated_tip_commit_is_named_not_spun_on(config: Config, vault: VaultRepo,
                                                     workspace: Path, clock: Clock,
                                                     args: tuple[str, ...]) -> None:
    """libgit2's revparse read the truncated commit unchecked and looped forever, deaf to
    SIGTERM (a restore hung holding the sync lock)."""
    tip = two_syncs(config, workspace, clock)
    truncate(vault, tip)
    args = tuple(tip[:8] if a == "PREFIX" else tip if a == "TIP" else a for a in args)
    proc = cli(config, *args)
    assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
    assert proc.stderr.splitlines()[0] == (
        f"Error: vault object {tip} is damaged (truncated or not a zlib stream)")
    assert proc.stderr.splitlines()[1].startswith("Hint: `vault doctor` checks the vault")


def test_a_truncated_older_commit_is_named_by_head_tilde(config: Config, vault: VaultRepo,
                                                        workspace: Path, clock: Clock) -> None:
    tip = two_syncs(config, workspace, clock)
    (workspace / "MEMORY.md").write_text("# Memory\n\n- third\n")
    clock.tick()
    sync(config, now=clock)
    truncate(vault, tip)
    for spec in ("HEAD~1", "HEAD~2", "HEAD^^", "main~2", tip[:10] + "^"):
        proc = cli(config, "show", "--at", spec, "agent/MEMORY.md")
        assert proc.returncode == 1, (spec, proc.stderr)
        assert f"vault object {tip} is damaged" in proc.stderr.splitlines()[0]
    # (the tip itself still reads)
    assert cli(config, "show", "--at", "HEAD", "agent/MEMORY.md").stdout.endswith("third\n")


def test_revisions_resolve_as_git_resolves_them(config: Config, vault: VaultRepo,
                                               workspace: Path, clock: Clock) -> None:
    """The checked resolver gives what git gives: HEAD, @, ~N, ^, ^N, ^0, a prefix, a full id,
    a branch, a remote-tracking ref, a tag (annotated too)."""
    two_syncs(config, workspace, clock)
    (workspace / "MEMORY.md").write_text("# Memory\n\n- third\n")
    clock.tick()
    sync(config, now=clock)
    git(vault.path, "update-ref", "refs/remotes/origin/main", "main~1")
    git(vault.path, "tag", "light", "main~2")
    git(vault.path, "-c", "user.name=t", "-c", "user.email=t@x", "tag", "-a", "-m", "a",
        "annotated", "main~1")
    tip = git(vault.path, "rev-parse", "main").strip()
    for spec, rev in [("HEAD", "main"), ("@", "main"), ("HEAD~1", "main~1"), ("@~2", "main~2"),
                      ("HEAD^", "main^"), ("HEAD^1", "main^"), ("HEAD^0", "main"),
                      ("HEAD~", "main~"), ("HEAD~1^", "main~2"), ("main", "main"),
                      ("main~2", "main~2"), ("origin/main~1", "main~2"),
                      ("refs/heads/main^", "main^"), ("light", "main~2"),
                      ("annotated", "main~1"), ("annotated~1", "main~2"),
                      (tip, "main"), (tip[:7], "main"), (tip[:7].upper() + "~1", "main~1")]:
        want = git(vault.path, "rev-parse", rev + "^{commit}").strip()
        assert vault.resolve(spec).id == want, spec
    git(vault.path, "repack", "-adq")  # (packed objects and refs: a user may `git gc`)
    git(vault.path, "pack-refs", "--all")
    for spec, rev in [("HEAD~1", "main~1"), ("annotated", "main~1"), ("light~0", "main~2"),
                      (tip[:7] + "^", "main^"), ("origin/main", "main~1")]:
        want = git(vault.path, "rev-parse", rev + "^{commit}").strip()
        assert vault.resolve(spec).id == want, spec
    from vault.errors import RepoError, VaultError

    for spec in ("HEAD~3", "HEAD^2", "nosuch", "nosuch~1", "0000000", "main..x"):
        with pytest.raises(RepoError, match="no commit"):
            vault.resolve(spec)
    blob = git(vault.path, "rev-parse", "main:agent/MEMORY.md").strip()
    with pytest.raises(RepoError, match="no commit"):
        vault.resolve(blob)
    empty = VaultRepo.init(vault.path.parent / "empty", "main")[0]
    with pytest.raises(VaultError, match="no commits yet"):
        empty.resolve("HEAD~1")


def test_an_ambiguous_prefix_is_still_a_usage_error(config: Config, vault: VaultRepo,
                                                   workspace: Path, clock: Clock) -> None:
    """Only commits count for a prefix (a blob sharing it does not make it ambiguous); two
    commits sharing it is a usage error that lists them."""
    from vault.errors import UsageError

    sync(config, now=clock)
    tips = set()
    n = 0
    while True:  # commits until two share their first 4 hex digits
        (workspace / "MEMORY.md").write_text(f"# Memory\n\n- {n}\n")
        n += 1
        clock.tick()
        commit = sync(config, now=clock).commit
        assert commit is not None
        twin = next((t for t in tips if t[:4] == commit[:4]), None)
        if twin is not None:
            break
        tips.add(commit)
        assert n < 2000
    with pytest.raises(UsageError, match="ambiguous commit prefix"):
        vault.resolve(commit[:4])
    assert vault.resolve(commit[:12]).id == commit


def test_library_reads_never_spin_on_a_truncated_commit(config: Config, vault: VaultRepo,
                                                       workspace: Path, clock: Clock) -> None:
    """Every other libgit2 read of commits: merge_base, count_ahead, hosts_since, has_object,
    last_by_vault (a hand-made tip over a damaged one) read them unchecked."""
    tip = two_syncs(config, workspace, clock)
    first = git(vault.path, "rev-parse", "main~1").strip()
    git(vault.path, "update-ref", "refs/remotes/origin/main", first)
    (workspace / "MEMORY.md").write_text("# Memory\n\n- third\n")
    clock.tick()
    newest = sync(config, now=clock).commit
    assert newest is not None
    by_hand = commit_tree(vault.path, tip, "by hand", clock)  # (on top of the damaged one)
    truncate(vault, tip)
    damaged = f"vault object {tip} is damaged"
    for code in (f"print(repo.merge_base('{first}', '{newest}'))",
                 "print(repo.count_ahead('refs/remotes/origin/main'))",
                 f"print(repo.hosts_since('{first}', '{newest}'))",
                 f"print(repo.last_by_vault('{by_hand}'))"):
        proc = in_child(config, code)
        assert damaged in proc.stdout, (code, proc.stdout, proc.stderr)
    proc = in_child(config, f"print(repo.has_object('{tip}'))")
    assert proc.stdout == "True\n", proc.stderr


def test_merge_base_and_counts_match_git(config: Config, vault: VaultRepo, workspace: Path,
                                        clock: Clock) -> None:
    """The checked merge_base, count_ahead and hosts_since give what libgit2 gave."""
    first = two_syncs(config, workspace, clock)
    base = git(vault.path, "rev-parse", "main~1").strip()
    # A second line of history from base (another host's), and the branch's own line.
    other = base
    for n in range(3):
        clock.tick(1)
        other = commit_tree(vault.path, other, f"other {n}\n\nVault-Host: there", clock)
    for n in range(2):
        (workspace / "MEMORY.md").write_text(f"# Memory\n\n- {n}\n")
        clock.tick()
        sync(config, now=clock)
    tip = git(vault.path, "rev-parse", "main").strip()
    assert vault.merge_base(tip, other) == base == vault.merge_base(other, tip)
    assert vault.merge_base(tip, first) == first
    assert vault.merge_base(tip, tip) == tip
    git(vault.path, "update-ref", "refs/remotes/origin/main", other)
    assert vault.count_ahead("refs/remotes/origin/main") == 3
    git(vault.path, "update-ref", "refs/remotes/origin/main", base)
    assert vault.count_ahead("refs/remotes/origin/main") == 3
    git(vault.path, "update-ref", "refs/remotes/origin/main", tip)
    assert vault.count_ahead("refs/remotes/origin/main") == 0
    assert vault.hosts_since(base, other) == ["there"] * 3
    assert vault.hosts_since(base, tip) == ["testhost"] * 3
    assert vault.hosts_since(None, other) == ["there"] * 3 + ["testhost"]
    assert vault.hosts_since(other, other) == []


def _json(proc: subprocess.CompletedProcess[str]) -> dict[str, object]:
    data = json.loads(proc.stdout)
    assert isinstance(data, dict)
    return data


# --- 2. a project's bare repository on another branch is never adopted -------------------------

def project_clone(tmp_path: Path, vault_path: Path, branch: str = "master") -> Path:
    """A project's repository (its branch `branch`) pushed to an origin, and a bare clone of
    that origin at vault_path; the origin."""
    proj = tmp_path / "proj"
    subprocess.run(["git", "init", "-q", "-b", branch, str(proj)], check=True)
    (proj / "app.py").write_text("code\n")
    git(proj, "add", ".")
    git(proj, "-c", "user.name=d", "-c", "user.email=d@x", "commit", "-qm", "code")
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
    git(proj, "push", "-q", str(origin), branch)
    subprocess.run(["git", "clone", "-q", "--bare", str(origin), str(vault_path)], check=True)
    return origin


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file of a repository and its bytes (init must write nothing into a refused one)."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("what", ["branch", "tag", "packed branch"])
def test_init_refuses_a_projects_bare_repository_on_another_branch(
        tmp_path: Path, config: Config, workspace: Path, clock: Clock, what: str) -> None:
    """`vault init` took it ("Created ... (branch main)", exit 0), and the next sync pushed
    the memory commit to the project's origin."""
    origin = project_clone(tmp_path, config.vault.path)
    if what == "tag":
        git(config.vault.path, "tag", "v1", "master")
        git(config.vault.path, "update-ref", "-d", "refs/heads/master")
    elif what == "packed branch":
        git(config.vault.path, "pack-refs", "--all")
        assert not (config.vault.path / "refs" / "heads" / "master").exists()
    before = snapshot(config.vault.path)
    proc = cli(config, "init")
    name = "refs/tags/v1" if what == "tag" else "refs/heads/master"
    assert (proc.returncode, proc.stderr.splitlines()[:2]) == (1, [
        f"Error: {config.vault.path} is a git repository whose branch 'main' is missing and "
        f"whose ref {name} was not made by vault; refusing to use it as the vault",
        "Hint: set [vault] path to an empty or new folder"]), proc.stderr
    assert snapshot(config.vault.path) == before  # nothing written
    for args in (["sync", "--dry-run"], ["sync"]):
        proc = cli(config, *args)
        assert proc.returncode == 1 and "was not made by vault" in proc.stderr
        # (before: the sync wrote its blobs and its state folder first, and the first
        # commit's guard refused it after)
        assert snapshot(config.vault.path) == before
    assert git(config.vault.path, "for-each-ref", "--format=%(refname)").split() == [name]
    assert not (config.vault.path / "refs" / "heads" / "main").exists()
    assert git(origin, "for-each-ref", "--format=%(refname)").split() == ["refs/heads/master"]


def test_init_takes_a_vault_clone_whose_branch_is_another(tmp_path: Path, config: Config,
                                                          vault: VaultRepo,
                                                          workspace: Path, clock: Clock) -> None:
    """A bare clone of a vault (every ref made by vault) is fine whatever [vault] branch
    says, and so is an empty bare repository or an empty clone."""
    sync(config, now=clock)
    origin = tmp_path / "vault-origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(config.vault.path), str(origin)],
                   check=True)
    for name, make in (("clone", ["git", "clone", "-q", "--bare", str(origin)]),
                       ("empty", ["git", "init", "-q", "--bare"])):
        path = tmp_path / name
        subprocess.run([*make, str(path)], check=True, capture_output=True)
        repo, _fresh = VaultRepo.init(path, "laptop")
        assert repo.head_id() is None


# --- 3. a damaged loose object is written anew when its content comes back ----------------------

def damage_file(vault: VaultRepo, oid: str, how: str) -> None:
    path = vault.path / "objects" / oid[:2] / oid[2:]
    path.chmod(0o644)
    if how == "emptied":
        path.write_bytes(b"")
    else:  # cut after its header: libgit2 takes it as there (it reads the header alone)
        path.write_bytes(path.read_bytes()[:-6])


@pytest.mark.parametrize("how", ["emptied", "truncated"])
def test_a_damaged_blob_is_written_anew_when_its_content_comes_back(
        config: Config, vault: VaultRepo, workspace: Path, clock: Clock, how: str) -> None:
    """An emptied blob failed every later sync ("cannot write to the vault: failed to insert
    entry: invalid object specified", hint: free space); a truncated one was committed as it
    was (libgit2 keeps an object file it finds, whatever it holds)."""
    memory = workspace / "MEMORY.md"
    memory.write_text("a\n" * 200)
    sync(config, now=clock)
    blob = git(vault.path, "rev-parse", "main:agent/MEMORY.md").strip()
    damage_file(vault, blob, how)
    memory.write_text("b\n")
    clock.tick()
    sync(config, now=clock)
    memory.write_text("a\n" * 200)
    (workspace / "memory" / "2026-11-20.md").write_text("new\n")
    clock.tick()
    result = sync(config, now=clock)
    assert result.commit is not None and "agent/MEMORY.md" in result.modified
    assert git(vault.path, "cat-file", "blob", f"{result.commit}:agent/MEMORY.md") == "a\n" * 200
    git(vault.path, "fsck", "--strict", "--no-dangling")
    assert oct((vault.path / "objects" / blob[:2] / blob[2:]).stat().st_mode & 0o777) == "0o444"
    assert not list((vault.path / "objects").glob("tmp_*"))


def test_a_damaged_tree_is_written_anew_when_its_content_comes_back(
        config: Config, vault: VaultRepo, workspace: Path, clock: Clock) -> None:
    note = workspace / "memory" / "2026-11-20.md"
    sync(config, now=clock)
    tree = git(vault.path, "rev-parse", "main:agent/memory").strip()
    old = note.read_text()
    note.write_text("changed\n")
    clock.tick()
    sync(config, now=clock)
    damage_file(vault, tree, "truncated")
    note.write_text(old)
    clock.tick()
    result = sync(config, now=clock)
    assert result.commit is not None
    assert git(vault.path, "rev-parse", "main:agent/memory").strip() == tree
    git(vault.path, "fsck", "--strict", "--no-dangling")


def test_a_damaged_object_a_commit_would_take_unread_is_named(tmp_path: Path) -> None:
    """A change naming an object that is damaged on disk (not written by this commit) is
    'damaged', with doctor's hint, not 'check free space and permissions'."""
    from datetime import datetime, timezone

    from vault.errors import RepoError

    repo, _ = VaultRepo.init(tmp_path / "v", "main")
    oid = repo.write_blob(b"x\n")
    (repo.path / "objects" / oid[:2] / oid[2:]).chmod(0o644)
    (repo.path / "objects" / oid[:2] / oid[2:]).write_bytes(b"")
    with pytest.raises(RepoError) as caught:
        repo.commit(None, {"a/f": (oid, 0o100644)}, "1\n", datetime.now(timezone.utc), "h")
    assert caught.value.message == (f"vault object {oid} (a/f) is missing or damaged; nothing "
                                    "was committed")
    assert caught.value.hint is not None and "vault doctor" in caught.value.hint


# --- 4. doctor probes that a sync can write ----------------------------------------------------

def unprivileged(args: list[str]) -> list[str]:
    """args run without the power to write past permissions: as root, with CAP_DAC_OVERRIDE
    and CAP_FOWNER dropped (root writes anywhere otherwise), else as is."""
    if os.geteuid() != 0:
        return args
    if subprocess.run(["setpriv", "--version"], capture_output=True, check=False).returncode:
        pytest.skip("running as root without setpriv: a read-only folder cannot be made")
    return ["setpriv", "--inh-caps=-dac_override,-fowner",
            "--bounding-set=-dac_override,-fowner", *args]


@pytest.mark.parametrize("where", ["objects", "objects/SUB", "refs/heads", "vault",
                                   "logs/refs/heads", "logs/refs/heads/main"])
def test_doctor_fails_a_vault_no_sync_can_write_to(config: Config, vault: VaultRepo,
                                                  workspace: Path, clock: Clock,
                                                  where: str) -> None:
    """doctor said all was well while every sync failed (a read-only objects folder, refs,
    reflog or state folder)."""
    sync(config, now=clock)
    assert config.file is not None
    content = "# Memory\n\n- more\n"
    if where == "objects/SUB":  # (the folder the new blob goes to)
        where = "objects/" + vault.hash_blob(content.encode())[:2]
        (vault.path / where).mkdir(exist_ok=True)
    target = vault.path / where
    modes = {p: p.stat().st_mode for p in [target, *target.rglob("*")]}
    for path in modes:
        path.chmod(path.stat().st_mode & ~0o222)
    try:
        (workspace / "MEMORY.md").write_text(content)
        doctor_run = subprocess.run(unprivileged(
            [sys.executable, "-m", "vault", "doctor", "--json", "--config", str(config.file),
             "--crontab-file", str(vault.path.parent / "ct")]),
            capture_output=True, text=True, timeout=120, check=False)
        sync_run = subprocess.run(unprivileged(
            [sys.executable, "-m", "vault", "sync", "--config", str(config.file)]),
            capture_output=True, text=True, timeout=120, check=False)
    finally:
        for path, mode in modes.items():
            path.chmod(mode)
    assert sync_run.returncode == 1, sync_run.stderr  # (what the probe predicts)
    checks = {c["name"]: c for c in _json(doctor_run)["checks"]}  # type: ignore[union-attr]
    assert doctor_run.returncode == 1
    assert checks["repository"]["status"] == "fail", checks["repository"]
    assert str(target) in checks["repository"]["detail"]
    assert "no sync can write to the vault" in checks["repository"]["detail"]
    assert checks["databases"]["status"] == "ok"  # (its objects are intact: read as before)


def test_the_write_probe_leaves_nothing_behind(config: Config, vault: VaultRepo,
                                              clock: Clock) -> None:
    from vault.doctor import doctor

    sync(config, now=clock)
    before = sorted(p for p in vault.path.rglob("*") if "vault" not in p.relative_to(
        vault.path).parts[:1])
    report = doctor(config, crontab_file=vault.path.parent / "ct", now=lambda: clock.now)
    assert next(c for c in report.checks if c.name == "repository").status == "ok"
    after = sorted(p for p in vault.path.rglob("*") if "vault" not in p.relative_to(
        vault.path).parts[:1])
    assert after == before
    assert not [p for p in config.state_dir.iterdir() if "probe" in p.name]


# --- 5. HEAD names the vault's branch --------------------------------------------------------

def test_init_on_an_empty_bare_repository_points_head_at_the_branch(
        config: Config, workspace: Path, clock: Clock) -> None:
    """HEAD stayed on git's default branch (master): `git log` failed ("current branch
    'master' does not have any commits yet") and `git clone` warned."""
    subprocess.run(["git", "init", "-q", "--bare", "-b", "master", str(config.vault.path)],
                   check=True)
    VaultRepo.init(config.vault.path, "main")
    assert git(config.vault.path, "symbolic-ref", "HEAD") == "refs/heads/main\n"
    sync(config, now=clock)
    assert git(config.vault.path, "log", "--format=%s").startswith("vault sync")
    clone = subprocess.run(["git", "clone", "-q", str(config.vault.path),
                            str(config.vault.path.parent / "clone")],
                           capture_output=True, text=True, check=True)
    assert clone.stderr == ""


def test_init_leaves_head_on_a_branch_that_exists(tmp_path: Path, config: Config,
                                                  vault: VaultRepo, clock: Clock) -> None:
    sync(config, now=clock)
    clone = tmp_path / "clone.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(config.vault.path), str(clone)],
                   check=True)
    VaultRepo.init(clone, "laptop")  # (another branch of the same vault: HEAD stays on main)
    assert git(clone, "symbolic-ref", "HEAD") == "refs/heads/main\n"


def test_doctor_warns_when_head_names_a_branch_that_does_not_exist(
        config: Config, vault: VaultRepo, clock: Clock) -> None:
    from vault.doctor import doctor

    sync(config, now=clock)
    (vault.path / "HEAD").write_text("ref: refs/heads/master\n")
    report = doctor(config, crontab_file=vault.path.parent / "ct", now=lambda: clock.now)
    check = next(c for c in report.checks if c.name == "repository")
    assert check.status == "warn", check
    assert "HEAD names branch 'master', which does not exist" in check.detail
    VaultRepo.init(vault.path, "main")  # (what the warning says fixes it)
    assert git(vault.path, "symbolic-ref", "HEAD") == "refs/heads/main\n"
    report = doctor(config, crontab_file=vault.path.parent / "ct", now=lambda: clock.now)
    assert next(c for c in report.checks if c.name == "repository").status == "ok"


# --- 6. doctor's report is complete on a damaged vault -----------------------------------------

ALL_CHECKS = ["repository", "databases", "index", "sources", "memory files", "last sync", "lock",
              "remote", "cron", "disk"]


@pytest.mark.parametrize("damage", ["truncated tree", "HEAD missing", "no vault"])
def test_doctor_lists_every_check_on_a_damaged_vault(config: Config, vault: VaultRepo,
                                                    workspace: Path, clock: Clock,
                                                    damage: str) -> None:
    """The databases and index checks were left out (README: checks that need an intact
    vault say `not checked`)."""
    from vault.doctor import doctor

    sync(config, now=clock)
    if damage == "truncated tree":
        truncate(vault, git(vault.path, "rev-parse", "main^{tree}").strip(), keep=20)
        why = "the vault itself is damaged"
    elif damage == "HEAD missing":
        (vault.path / "HEAD").unlink()
        why = "the vault itself is damaged"
    else:
        vault.path.rename(vault.path.with_name("elsewhere"))
        why = "no vault"
    report = doctor(config, crontab_file=vault.path.parent / "ct", now=lambda: clock.now)
    assert [c.name for c in report.checks] == ALL_CHECKS
    by_name = {c.name: c for c in report.checks}
    assert by_name["repository"].status == "fail"
    for name in ("databases", "index", "memory files"):
        assert (by_name[name].status, by_name[name].detail) == (
            "warn", f"not checked: {why} (see repository)"), name


# --- 8. a vault whose HEAD file is missing is damaged, not "not a vault" -----------------------

def test_a_vault_without_head_is_damaged_not_missing(config: Config, vault: VaultRepo,
                                                    clock: Clock) -> None:
    """It was "not a vault (not a git repository)", hint `vault init` (exit 10), and `vault
    init` then said "exists and is not empty"."""
    sync(config, now=clock)
    (vault.path / "HEAD").unlink()
    line = (f"Error: {vault.path} is a damaged vault (HEAD missing): its objects and refs are "
            "there, its HEAD file is gone")
    hint = ("Hint: `vault doctor --repair` writes it back (or by hand: printf "
            f"'ref: refs/heads/main\\n' > {vault.path / 'HEAD'})")
    for args in (("init",), ("sync",), ("status",), ("log",), ("show", "agent/MEMORY.md")):
        proc = cli(config, *args)
        assert (proc.returncode, proc.stderr.splitlines()) == (1, [line, hint]), (args,
                                                                                  proc.stderr)
    assert not (vault.path / "HEAD").exists()  # (untouched)
    from vault.doctor import doctor

    report = doctor(config, crontab_file=vault.path.parent / "ct", now=lambda: clock.now)
    check = next(c for c in report.checks if c.name == "repository")
    assert check.status == "fail" and "HEAD file is missing" in check.detail


# --- minor: the lock's holder, and a garbage line of packed-refs ----------------------------

HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""


def test_a_lock_held_by_another_program_names_it_not_a_stale_sync(tmp_path: Path) -> None:
    """status showed the pid of a stale sync.lock.json (a dead process) as the holder."""
    import json as json_module

    from vault.errors import BusyError
    from vault.lock import INFO_NAME, LOCK_NAME, SyncLock, lock_state

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / INFO_NAME).write_text(json_module.dumps(
        {"pid": dead.pid, "host": "h", "since": 1.0, "command": "sync"}))
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / LOCK_NAME)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        state = lock_state(tmp_path)
        assert state.held and state.command is None and state.since is None
        assert state.pid in (holder.pid, None)  # (None where /proc/locks cannot tell)
        if Path("/proc/locks").exists():
            assert state.pid == holder.pid
        with pytest.raises(BusyError) as caught:
            with SyncLock(tmp_path):
                pass
        assert str(dead.pid) not in caught.value.message
    finally:
        holder.communicate("")
    assert not lock_state(tmp_path).held


def test_a_live_sync_is_still_named_from_its_info_file(tmp_path: Path) -> None:
    from vault.lock import lock_state, SyncLock

    with SyncLock(tmp_path, command="sync"):
        state = lock_state(tmp_path)
    assert (state.held, state.pid, state.command) == (True, os.getpid(), "sync")


def test_doctor_names_a_lock_holder_no_vault_command_recorded(config: Config, vault: VaultRepo,
                                                              clock: Clock) -> None:
    from vault.doctor import check_lock
    from vault.lock import LOCK_NAME

    sync(config, now=clock)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(config.state_dir / LOCK_NAME)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        check = check_lock(config)
    finally:
        holder.communicate("")
    assert "None" not in check.detail
    if Path("/proc/locks").exists():
        assert (check.status, check.detail) == ("warn", f"held by pid {holder.pid}, a process "
                                                "no vault command recorded: no sync can run "
                                                "while it holds the lock")


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="needs the kernel's lock table")
def test_status_and_sync_name_a_lock_holder_no_vault_command_recorded(
        config: Config, vault: VaultRepo, workspace: Path, clock: Clock) -> None:
    """Before: status said "Lock: held by pid 12 (None)" and a sync "holds the lock (pid 12
    on None, None)"."""
    from vault.lock import LOCK_NAME

    sync(config, now=clock)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(config.state_dir / LOCK_NAME)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        status = cli(config, "status")
        (workspace / "MEMORY.md").write_text("# Memory\n\n- changed\n")
        busy = cli(config, "sync")
    finally:
        holder.communicate("")
    who = f"pid {holder.pid}, a process no vault command recorded"
    assert f"Lock:      held by {who}\n" in status.stdout, status.stdout
    assert (busy.returncode, busy.stderr.splitlines()[0]) == (
        11, f"Error: another vault process holds the lock ({who})"), busy.stderr


def test_repair_names_a_dropped_garbage_line_of_packed_refs_whole(config: Config,
                                                                 vault: VaultRepo,
                                                                 clock: Clock) -> None:
    """A line `garbage line` was reported as "dropped: line" (its last word taken for a ref
    name)."""
    from vault.doctor import doctor

    sync(config, now=clock)
    tip = vault.head_id()
    git(vault.path, "pack-refs", "--all")
    with open(vault.path / "packed-refs", "a") as handle:
        handle.write("garbage line\n")
    report = doctor(config, repair=True, crontab_file=vault.path.parent / "ct",
                    now=lambda: clock.now)
    assert report.repairs[0].endswith("; dropped (nothing records them): 'garbage line'"), \
        report.repairs
    assert vault.head_id() == tip


def test_resolve_on_a_vault_that_lost_its_branch_names_the_damage(
        config: Config, vault: VaultRepo, workspace: Path, clock: Clock) -> None:
    """Damage found while resolving is no typo: a VaultError (exit 1), never resolve's
    RepoError, which callers turn into a usage error (exit 2)."""
    from vault.errors import RepoError, VaultError

    two_syncs(config, workspace, clock)
    (vault.path / "refs" / "heads" / "main").unlink()
    for spec in ("HEAD~1", "abcdef0"):
        with pytest.raises(VaultError, match="branch main is missing") as caught:
            vault.resolve(spec)
        assert not isinstance(caught.value, RepoError)
