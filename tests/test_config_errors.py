"""Config and vault-creation mistakes end in one clear line and the documented exit code."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import run_cli, write_config

from vault.config import branch_name_problem, load_config, parse_config
from vault.errors import ConfigError, RepoError
from vault.repo import VaultRepo
from vault.sources import compile_patterns

WHEN = datetime(2026, 11, 21, 10, 15, tzinfo=timezone.utc)


def source_config(tmp_path: Path, workspace: Path, patterns: str) -> Path:
    """vault.toml with one source whose [[sources]] table ends with the given pattern lines."""
    path = write_config(tmp_path / "vault.toml", {"agent": workspace})
    path.write_text(path.read_text() + patterns + "\n")
    return path


# Include/exclude patterns -------------------------------------------------------------------

BAD_PATTERNS = [
    ('exclude = ["[z-a].md"]',
     "sources[0].exclude[0]: '[z-a].md' is not a valid pattern: bad character range z-a"),
    ('include = ["\\\\"]',
     "sources[0].include[0]: '\\\\' is not a valid gitignore pattern (it ends with a lone "
     "'\\')"),
    ('include = ["*.md", "!"]',
     "sources[0].include[1]: '!' is not a valid gitignore pattern (a lone '!' negates nothing)"),
    ('exclude = ["#notes.md"]',
     "sources[0].exclude[0]: '#notes.md' matches nothing in gitignore syntax ('#' starts a "
     "comment; write '\\#' for a literal '#')"),
    ('include = ["memory/[ab"]',
     "sources[0].include[0]: 'memory/[ab' matches nothing in gitignore syntax (a '[' is "
     "never closed)"),
]


@pytest.mark.parametrize("command", ["sync", "status"])
@pytest.mark.parametrize("patterns, message", BAD_PATTERNS)
def test_bad_pattern_is_a_config_error(tmp_path: Path, workspace: Path, command: str,
                                       patterns: str, message: str) -> None:
    cfg = source_config(tmp_path, workspace, patterns)
    VaultRepo.init(tmp_path / "memory-vault", "main")  # `vault init` itself now refuses cfg
    proc = run_cli(command, "--config", str(cfg))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines()[0] == f"Error: {cfg}: {message}"
    assert "unexpected" not in proc.stderr


def test_bad_allow_path_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "vault.toml"
    path.write_text('[secrets]\nallow_paths = ["notes/*.md", "[9-0]"]\n')
    with pytest.raises(ConfigError, match=r"secrets\.allow_paths\[1\]: '\[9-0\]' is not a "
                                          "valid pattern: bad character range 9-0"):
        load_config(path)


@pytest.mark.parametrize("pattern", ["*.md", "memory/", "!keep.json", "**/*.jsonl", "\\#x",
                                     "/MEMORY.md", "a/**/b", "[a-z]*.md", "[!.]*", "\\!x",
                                     "*", "**"])
def test_good_patterns_still_load(tmp_path: Path, pattern: str) -> None:
    raw = {"sources": [{"name": "a", "path": str(tmp_path), "include": [pattern],
                        "exclude": [pattern]}]}
    source = parse_config(raw).sources[0]
    assert source.include == source.exclude == (pattern,)


def test_what_config_accepts_always_compiles(tmp_path: Path) -> None:
    rng = random.Random(7)
    alphabet = "ab*?[]!-/\\^.#{}() "
    accepted = 0
    for _ in range(1500):
        patterns = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6)))
                    for _ in range(rng.randint(1, 3))]
        if not all(p.strip() for p in patterns):
            continue
        raw = {"sources": [{"name": "a", "path": str(tmp_path), "include": patterns}]}
        try:
            parse_config(raw)
        except ConfigError as exc:
            assert "sources[0].include[" in str(exc)
            continue
        accepted += 1
        match = compile_patterns(patterns)  # the scan's own compiler: must not raise
        match("a/b.md")
    assert accepted > 100


# Branch names -------------------------------------------------------------------------------

BRANCHES = ["main", "vault/host-1", "feat+x", "a#b", "été", "a@b", "a{b}", "a.lock.b",
            "refs/heads/x", "HEAD/x", "x/HEAD", "a-", "a.b/c_d",
            "x.lock/y", "a/.b", ".a", "a..b", "a.", "a/b.", "a/", "/a", "a//b", "x.lock",
            "a b", "a~1", "a^", "a:b", "a?", "a*", "a[b", "a\\b", "a@{b", "a\tb", "a\x7fb",
            "HEAD", "-x", "-", ""]


def git_accepts_branch(name: str, cwd: Path) -> bool:
    """What the real `git check-ref-format --branch` says (outside any repository)."""
    proc = subprocess.run(["git", "check-ref-format", "--branch", name], cwd=cwd,
                          capture_output=True, text=True, check=False,
                          env={**os.environ, "GIT_CEILING_DIRECTORIES": str(cwd.parent)})
    return proc.returncode == 0


@pytest.mark.parametrize("name", BRANCHES)
def test_branch_rules_agree_with_git(tmp_path: Path, name: str) -> None:
    problem = branch_name_problem(name)
    assert (problem is None) == git_accepts_branch(name, tmp_path), problem
    if problem is not None:
        with pytest.raises(ConfigError, match=r"^vault\.branch: not a valid branch name "):
            parse_config({"vault": {"branch": name}})


def test_bare_at_is_refused() -> None:
    # Stricter than `git check-ref-format --branch` outside a repository: inside one git reads
    # '@' as HEAD, and so does `vault log`/`restore` (VaultRepo.resolve).
    assert branch_name_problem("@") is not None


@pytest.mark.parametrize("branch", ["x.lock/y", "a/.b"])
def test_init_refuses_a_bad_branch(tmp_path: Path, workspace: Path, branch: str) -> None:
    cfg = write_config(tmp_path / "vault.toml", {"agent": workspace},
                       extra=f'branch = "{branch}"')
    proc = run_cli("init", "--config", str(cfg))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.splitlines()[0].startswith(
        f"Error: {cfg}: vault.branch: not a valid branch name {branch!r}: ")
    assert not (tmp_path / "memory-vault").exists()


# vault init where the path cannot be a vault ---------------------------------------------

def test_init_on_a_file(tmp_path: Path, workspace: Path) -> None:
    target = tmp_path / "not-a-folder"
    target.write_text("hello\n")
    with pytest.raises(RepoError, match=f"^{target} is not a folder$"):
        VaultRepo.init(target, "main")
    cfg = write_config(tmp_path / "vault.toml", {"agent": workspace}, vault_path=target)
    proc = run_cli("init", "--config", str(cfg))
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines()[0] == f"Error: {target} is not a folder"
    assert target.read_text() == "hello\n"


def test_init_below_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    target = tmp_path / "file" / "vault"
    with pytest.raises(RepoError, match=f"^cannot create the vault at {target}: Not a "
                                        "directory$"):
        VaultRepo.init(target, "main")


def test_init_with_a_name_too_long(tmp_path: Path) -> None:
    target = tmp_path / ("v" * 300)
    with pytest.raises(RepoError, match=f"^cannot create the vault at {target}: File name "
                                        "too long$"):
        VaultRepo.init(target, "main")


# (an init below a folder that cannot be entered: tests/test_faults.py, run as nobody)


# Names the vault's trees cannot hold -------------------------------------------------------

@pytest.mark.parametrize("path, shown", [(".git:stream", "'.git:stream'"),
                                         ("notes/.GIT", "'notes/.GIT'"),
                                         ("a/b\x00c.md", "'a/b\\x00c.md'")])
def test_commit_names_a_refused_file_name(tmp_path: Path, path: str, shown: str) -> None:
    repo, _ = VaultRepo.init(tmp_path / "v", "main")
    blob = repo.write_blob(b"memory\n")
    first = repo.commit(None, {"ok.md": (blob, 0o100644)}, "first", WHEN, "host")
    with pytest.raises(RepoError) as info:
        repo.commit(first, {"x.md": (blob, 0o100644), path: (blob, 0o100644)}, "second",
                    WHEN, "host")
    assert str(info.value).startswith(f"the vault refuses the file name {shown}")
    assert "space" not in str(info.value) + str(info.value.hint)
    assert repo.head_id() == first


# Sizes that are no sizes --------------------------------------------------------------------

@pytest.mark.parametrize("value, message", [
    (f'"{"9" * 400} TiB"', "too large (at most 8 EiB, the largest size a file can have)"),
    ('"9000000 TiB"', "too large (at most 8 EiB, the largest size a file can have)"),
    ("9223372036854775808", "too large (at most 8 EiB, the largest size a file can have)"),
    ("1.5", "must be an integer (bytes) or a string such as '256 MiB', not the number 1.5"),
    ("2048.0", "must be an integer (bytes) or a string such as '256 MiB', not the number "
               "2048.0"),
], ids=["400-nines-TiB", "9000000-TiB", "2**63", "1.5", "2048.0"])
def test_bad_max_file_size_is_a_config_error(tmp_path: Path, workspace: Path, value: str,
                                             message: str) -> None:
    cfg = write_config(tmp_path / "vault.toml", {"agent": workspace},
                       extra=f"[snapshot]\nmax_file_size = {value}")
    VaultRepo.init(tmp_path / "memory-vault", "main")
    proc = run_cli("sync", "--config", str(cfg))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines()[0] == f"Error: {cfg}: snapshot.max_file_size: {message}"


# NUL characters, which no path, command or URL can hold ------------------------------------

NUL_CASES = [  # (key, text to replace ('' appends), the replacement with a TOML \u0000 in it)
    ("sources[0].path", 'path = "{ws}"', 'path = "{ws}\\u0000x"'),
    ("vault.path", 'memory-vault"', 'memory-vault\\u0000"'),
    ("vault.remote", 'host = "testhost"', 'host = "testhost"\nremote = "/tmp/r\\u0000"'),
    ("sources[0].exclude[0]", "", 'exclude = ["x\\u0000.md"]'),
    ("index.path", "", '[index]\npath = "index\\u0000.db"'),
    ("hooks.pre_sync", "", '[hooks]\npre_sync = "echo hi\\u0000"'),
]


@pytest.mark.parametrize("key, old, new", NUL_CASES, ids=[c[0] for c in NUL_CASES])
def test_nul_character_is_a_config_error(tmp_path: Path, workspace: Path, key: str, old: str,
                                         new: str) -> None:
    cfg = write_config(tmp_path / "vault.toml", {"agent": workspace})
    text = cfg.read_text()
    old, new = old.format(ws=workspace), new.format(ws=workspace)
    assert old in text
    cfg.write_text(text.replace(old, new) if old else text + new + "\n")
    VaultRepo.init(tmp_path / "memory-vault", "main")
    for command in ("sync", "init"):
        proc = run_cli(command, "--config", str(cfg))
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.splitlines()[0] == (
            f"Error: {cfg}: {key}: contains a NUL character (\\x00)")


# A source that holds the vault's own files ---------------------------------------------------

ARCHIVES_ITSELF = "every sync would archive the vault itself"


@pytest.mark.parametrize("root, shown", [
    ("{vault}", "{vault} is the vault's own folder"),
    ("{vault}/vault", "{vault}/vault is inside the vault's own folder {vault}"),
    ("{vault}/objects/../vault", "{vault}/objects/../vault is inside the vault's own folder {vault}"),
    ("{link}/sub", "{link}/sub is inside the vault's own folder {vault}"),
    ("{home}", "{home} is the vault's data folder"),
    ("{home}/models", "{home}/models is inside the vault's data folder {home}"),
], ids=["vault", "state-dir", "dotdot", "symlink", "home", "home-models"])
def test_source_inside_the_vault_is_a_config_error(tmp_path: Path, workspace: Path, root: str,
                                                   shown: str) -> None:
    vault = tmp_path / "memory-vault"
    VaultRepo.init(vault, "main")
    (tmp_path / "link").symlink_to(vault / "vault")  # (the state dir need not exist yet)
    names = {"vault": vault, "link": tmp_path / "link", "home": Path(os.environ["VAULT_HOME"])}
    cfg = write_config(tmp_path / "vault.toml", {"agent": workspace, "self": Path(root.format(
        **names))})
    proc = run_cli("sync", "--config", str(cfg))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines()[0] == (
        f"Error: {cfg}: sources[1].path: {shown.format(**names)}: {ARCHIVES_ITSELF}")


def test_vault_home_source_with_the_default_vault_path(tmp_path: Path) -> None:
    cfg = tmp_path / "vault.toml"
    cfg.write_text('[[sources]]\nname = "self"\npath = "$VAULT_HOME/memory-vault/vault"\n')
    home = Path(os.environ["VAULT_HOME"])
    proc = run_cli("sync", "--config", str(cfg))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines()[0] == (
        f"Error: {cfg}: sources[0].path: {home}/memory-vault/vault is inside the vault's own "
        f"folder {home}/memory-vault: {ARCHIVES_ITSELF}")


def test_a_vault_inside_a_source_is_fine(tmp_path: Path, workspace: Path) -> None:
    vault = workspace / "memory-vault"  # the walk skips it; and a mere name prefix is no parent
    cfg = write_config(tmp_path / "vault.toml", {"agent": workspace, "sibling": Path(
        f"{vault}-notes"), "top": tmp_path}, vault_path=vault)
    assert [s.name for s in load_config(cfg).sources] == ["agent", "sibling", "top"]


def test_an_index_inside_a_source_is_a_config_error(tmp_path: Path, workspace: Path) -> None:
    """Before: the walk took the recall index for a memory database and every sync after an
    index run stored it again (the default index lies in the vault, which the walk skips)."""
    cfg = write_config(tmp_path / "vault.toml", {"agent": workspace},
                       extra=f'\n[index]\npath = "{workspace}/cache/index.db"')
    proc = run_cli("sync", "--config", str(cfg))
    assert (proc.returncode, proc.stderr.splitlines()[0]) == (
        2, f"Error: {cfg}: index.path: {workspace}/cache/index.db is inside source 'agent' "
           f"({workspace}): every sync would archive the index")
    cfg.write_text(cfg.read_text().replace(f"{workspace}/cache", f"{tmp_path}/elsewhere"))
    assert load_config(cfg).index.path == tmp_path / "elsewhere" / "index.db"


# Variables in paths ---------------------------------------------------------------------------

UNSET_HINT = ("Hint: set AGENT_HOME where vault runs (cron passes only HOME, LOGNAME, PATH, "
              "SHELL) or write the path out; $$ is a literal $")


@pytest.mark.parametrize("extra, source, message", [
    ("", "$AGENT_HOME/ws", "sources[0].path: $AGENT_HOME is not set"),
    ("", "${AGENT_HOME}/ws", "sources[0].path: ${AGENT_HOME} is not set"),
    ('[index]\npath = "$AGENT_HOME/index.db"', "{ws}", "index.path: $AGENT_HOME is not set"),
], ids=["source", "braces", "index"])
def test_an_unset_variable_in_a_path_is_a_config_error(tmp_path: Path, workspace: Path,
                                                       extra: str, source: str,
                                                       message: str) -> None:
    """Before: '$AGENT_HOME/ws' stayed as written and became a folder of that name beside the
    config; under cron (which has no AGENT_HOME) every sync failed with 'folder not found' and
    a hint about unmounted disks."""
    root = Path(source.replace("{ws}", str(workspace)))
    cfg = write_config(tmp_path / "vault.toml", {"agent": root}, extra=extra)
    env = {k: v for k, v in os.environ.items() if k != "AGENT_HOME"}
    proc = subprocess.run([sys.executable, "-m", "vault", "sync", "--config", str(cfg)],
                          capture_output=True, text=True, env=env, check=False, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [f"Error: {cfg}: {message}", UNSET_HINT]


def test_an_unset_variable_in_the_vault_path_is_a_config_error(tmp_path: Path) -> None:
    cfg = tmp_path / "vault.toml"
    cfg.write_text('[vault]\npath = "$AGENT_HOME/memory-vault"\n')
    with pytest.raises(ConfigError, match=r"^.*: vault\.path: \$AGENT_HOME is not set$"):
        load_config(cfg, env={"VAULT_HOME": str(tmp_path / "data")})


NO_USER = "vault-test-no-such-user"


@pytest.mark.parametrize("toml, key", [
    (f'[[sources]]\nname = "a"\npath = "~{NO_USER}/workspace"\n', "sources[0].path"),
    (f'[vault]\npath = "~{NO_USER}/memory-vault"\n', "vault.path"),
    (f'[index]\npath = "~{NO_USER}/index.db"\n', "index.path"),
    (f'[alerts]\ntoken_file = "~{NO_USER}/token"\n', "alerts.token_file"),
], ids=["source", "vault", "index", "token_file"])
def test_a_path_under_an_unknown_users_home_is_a_config_error(tmp_path: Path, toml: str,
                                                              key: str) -> None:
    """'~agent/workspace' with no user 'agent' here: 'Error: unexpected: RuntimeError: Could
    not determine home directory.', exit 3."""
    cfg = tmp_path / "vault.toml"
    cfg.write_text(toml)

    proc = run_cli("status", "--config", str(cfg))

    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines()[0] == f"Error: {cfg}: {key}: ~{NO_USER}: no such user"



@pytest.mark.parametrize("patterns, message", [
    ('include = ["./memory/*.md"]',
     "sources[0].include[0]: './memory/*.md' never matches: patterns are matched against "
     "paths inside the source, which have no '.' or '..' parts (write 'memory/*.md')"),
    ('exclude = ["*.tmp", "!./keep/x.tmp"]',
     "sources[0].exclude[1]: '!./keep/x.tmp' never matches: patterns are matched against "
     "paths inside the source, which have no '.' or '..' parts (write '!keep/x.tmp')"),
    ('include = ["memory/../notes/*.md"]',
     "sources[0].include[0]: 'memory/../notes/*.md' never matches: patterns are matched "
     "against paths inside the source, which have no '.' or '..' parts"),
    ('include = ["./MEMORY.md"]',
     "sources[0].include[0]: './MEMORY.md' never matches: patterns are matched against "
     "paths inside the source, which have no '.' or '..' parts (write '/MEMORY.md')"),
])
@pytest.mark.parametrize("command", ["sync", "doctor"])
def test_a_pattern_with_a_dot_folder_is_refused(tmp_path: Path, workspace: Path, command: str,
                                                patterns: str, message: str) -> None:
    """'./memory/*.md' passed, matched nothing: sync said 'Nothing changed' and doctor 'ok'
    with 0 files, for ever."""
    cfg = source_config(tmp_path, workspace, patterns)
    VaultRepo.init(tmp_path / "memory-vault", "main")
    proc = run_cli(command, "--config", str(cfg))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines()[0] == f"Error: {cfg}: {message}"


def test_an_allow_path_with_a_dot_folder_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "vault.toml"
    path.write_text('[secrets]\nallow_paths = ["./notes/*.md"]\n')
    with pytest.raises(ConfigError, match=r"secrets\.allow_paths\[0\]: './notes/\*\.md' never "
                                          r"matches: .* \(write 'notes/\*\.md'\)$"):
        load_config(path)


@pytest.mark.parametrize("pattern", ["memory/.hidden/*.md", ".env", "a/..b", "*.", "...",
                                     "\\!x", "**/.cache/"])
def test_patterns_with_dots_that_are_no_dot_folder_still_load(tmp_path: Path,
                                                               pattern: str) -> None:
    raw = {"sources": [{"name": "a", "path": str(tmp_path), "include": [pattern]}]}
    assert parse_config(raw).sources[0].include == (pattern,)


def test_a_config_saved_with_a_bom_is_read(tmp_path: Path, workspace: Path) -> None:
    """Notepad saves UTF-8 with a byte-order mark: it was "not valid TOML ... line 1, column
    1", which names nothing the user can see. Through the quick check's path too."""
    cfg = write_config(tmp_path / "vault.toml", {"agent": workspace})
    cfg.write_bytes(b"\xef\xbb\xbf" + cfg.read_bytes())
    assert load_config(cfg).sources[0].name == "agent"
    assert run_cli("init", "--config", str(cfg)).returncode == 0
    for _ in range(2):  # (the second may be answered by the quick check)
        proc = run_cli("sync", "--config", str(cfg))
        assert proc.returncode == 0, proc.stderr


def test_a_config_that_is_not_a_regular_file_is_named_so(tmp_path: Path) -> None:
    fifo = tmp_path / "vault.toml"
    os.mkfifo(fifo)
    proc = run_cli("status", "--config", str(fifo))
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == f"Error: config file is not a regular file: {fifo}"
