"""`vault sync`'s quick check: it answers "nothing changed" only when the full sync would find
nothing to do, and hands every other case to the full sync.

Each case gets its own workspace and vault, all synced once after their files have aged past
the racy margin (one wait for all), then changed in one way; `vault sync` runs in a real process,
which reports whether the quick check answered (the CLI was never imported) or the full sync ran.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import git, make_sqlite, write_config
from vault.detect import RACY_MARGIN_NS
from vault.quick import _parse

PROBE = """
import os, sys
sys.argv = ["vault", *sys.argv[1:]]
from vault import entry

def report(code):
    sys.stdout.flush()
    sys.stderr.write("\\nPROBE " + ("full" if "vault.cli" in sys.modules else "quick") + " " + str(code) + "\\n")

real_exit = os._exit
def exit_now(code):  # (a sync the quick check answered ends with os._exit)
    report(code)
    real_exit(code)
os._exit = exit_now
try:
    entry.main()
    code = 0
except SystemExit as exc:
    code = exc.code
report(code)
"""


@dataclass
class Case:
    """One workspace, its config and vault, and the environment its commands run in."""

    root: Path
    ws: Path
    config: Path
    vault: Path
    env: dict[str, str]

    def run(self, *args: str) -> tuple[str, int, str]:
        """Run `vault ARGS` in a real process: (who answered: quick or full, exit code, stdout)."""
        proc = subprocess.run([sys.executable, "-c", PROBE, *args], env=self.env,
                              capture_output=True, text=True, timeout=120, check=False)
        line = [ln for ln in proc.stderr.splitlines() if ln.startswith("PROBE ")][-1]
        _, who, code = line.split()
        return who, int(code), proc.stdout

    def commits(self) -> int:
        return int(git(self.vault, "rev-list", "--count", "main").strip())


def _make_case(root: Path, extra: str = "") -> Case:
    ws = root / "agent"
    (ws / "memory").mkdir(parents=True)
    (ws / "MEMORY.md").write_text("# Memory\n\n- The user prefers tea.\n")
    (ws / "memory" / "2026-11-20.md").write_text("# 2026-11-20\n\n- Fixed the backup job.\n")
    (ws / "memory.json").write_text(json.dumps([{"id": 1, "content": "likes tea"}]))
    (ws / "notes.log").write_text("excluded by the config\n")
    make_sqlite(ws / "memory.db", wal=True)
    config = write_config(root / "vault.toml", {"agent": ws},
                          extra=extra + '\n\n[[sources]]\nname = "other"\n'
                          f'path = "{root / "other"}"\nexclude = ["*.log"]\n')
    (root / "other").mkdir()
    (root / "other" / "a.md").write_text("a\n")
    env = {k: v for k, v in os.environ.items() if k != "VAULT_CONFIG"}
    env.update(VAULT_CONFIG=str(config), VAULT_HOME=str(root / "home"), HOME=str(root / "user"),
               AGENT_DIR=str(root / "index"))  # (an unset variable in a path is an error)
    return Case(root, ws, config, root / "memory-vault", env)


def _hold_lock(case: Case) -> Callable[[], None]:
    fd = os.open(case.vault / "vault" / "sync.lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return lambda: os.close(fd)


def _same_size_same_mtime(case: Case) -> None:
    path = case.ws / "MEMORY.md"
    st = path.stat()
    path.write_text(path.read_text().replace("tea", "TEA"))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # only ctime tells


def _wal_only(case: Case) -> None:
    import apsw

    db = apsw.Connection(str(case.ws / "memory.db"))
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.execute("INSERT INTO memories(content) VALUES ('written to the WAL only')")
    db.close()


def _move_branch(case: Case) -> None:
    head = git(case.vault, "rev-parse", "main").strip()
    tree = git(case.vault, "rev-parse", "main^{tree}").strip()
    other = subprocess.run(["git", "-C", str(case.vault), "-c", "user.name=x", "-c",
                            "user.email=x@x", "commit-tree", tree, "-p", head, "-m", "elsewhere"],
                           capture_output=True, text=True, check=True).stdout.strip()
    git(case.vault, "update-ref", "refs/heads/main", other)


# name -> (change, who must answer, whether the full sync then records a commit)
CHANGES: dict[str, tuple[Callable[[Case], object], str, bool]] = {
    "nothing": (lambda c: None, "quick", False),
    "new empty folder": (lambda c: (c.ws / "empty").mkdir(), "quick", False),
    "new excluded file": (lambda c: (c.root / "other" / "b.log").write_text("x"), "quick", False),
    "modified": (lambda c: (c.ws / "MEMORY.md").write_text("# Memory\n\n- coffee now\n"),
                 "full", True),
    "same size and mtime": (_same_size_same_mtime, "full", True),
    "new file": (lambda c: (c.ws / "memory" / "2026-11-21.md").write_text("new\n"), "full", True),
    "new file in a new folder": (lambda c: (c.ws / "d" / "e").mkdir(parents=True)
                                 or (c.ws / "d" / "e" / "f.md").write_text("f\n"), "full", True),
    "deleted file": (lambda c: (c.ws / "memory.json").unlink(), "full", True),
    "SQLite write in the WAL only": (_wal_only, "full", True),
    "config edited": (lambda c: c.config.write_text(c.config.read_text() + "\n# note\n"),
                      "full", False),
    "variable the config names": (lambda c: c.env.update(AGENT_DIR="/elsewhere"), "full", False),
    "variable behind a TOML escape": (lambda c: c.env.update(AGENT_DIR="/elsewhere"), "full",
                                      False),
    "variable in a comment only": (lambda c: c.env.update(AGENT_DIR="/elsewhere"), "quick", False),
    "VAULT_HOME": (lambda c: c.env.update(VAULT_HOME=str(c.root / "home2")), "full", False),
    "branch moved by another writer": (_move_branch, "full", False),
    "temp file of a killed sync": (lambda c: (c.vault / "vault" / ".x.99999999.vault-tmp")
                                   .write_bytes(b""), "full", False),
    "source root gone": (lambda c: shutil.rmtree(c.root / "other"), "full", False),
    "a symlink (skipped every time)": (lambda c: (c.ws / "link.md").symlink_to(c.ws / "MEMORY.md"),
                                       "full", False),
}


# Config lines of some cases: paths expand $VARS (a TOML escape decodes to one too).
EXTRA = {
    "variable the config names": '[index]\npath = "$AGENT_DIR/index.db"',
    "variable behind a TOML escape": '[index]\npath = "\\u0024{AGENT_DIR}/index.db"',
    "variable in a comment only": "# paths may name variables: $AGENT_DIR",
}


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    """One synced vault per change, its files older than the racy margin when the plan was made."""
    made = {}
    for i, name in enumerate(CHANGES):
        made[name] = _make_case(tmp_path_factory.mktemp(f"case{i}"), EXTRA.get(name, ""))
    time.sleep(RACY_MARGIN_NS / 1e9 + 0.2)
    for case in made.values():
        assert case.run("init")[1] == 0
        who, code, _ = case.run("sync", "--quiet")
        assert (who, code) == ("full", 0)
        assert any((case.root / "home" / "sync-plans").iterdir())
    return made


@pytest.mark.parametrize("name", list(CHANGES))
def test_quick_check_answers_only_when_nothing_changed(cases: dict[str, Case], name: str) -> None:
    case = cases[name]
    change, expected, commits = CHANGES[name]
    change(case)
    before = case.commits()
    stamp = case.vault / "vault" / "last-sync"  # a completed sync, for status and doctor
    stamped = stamp.stat().st_mtime_ns
    who, code, out = case.run("sync")
    assert who == expected, out
    if name == "a symlink (skipped every time)":
        assert code == 0 and "Skipped 1" in out
    elif name == "source root gone":
        assert code == 1
    else:
        assert code == 0, out
    assert case.commits() == before + (1 if commits else 0)
    if expected == "quick":
        assert out.strip() == "Nothing changed (6 files checked); no commit."
        assert stamp.stat().st_mtime_ns > stamped
        # and the full sync agrees: nothing to commit
        assert "nothing to commit" in case.run("sync", "--dry-run")[2]
    if name == "temp file of a killed sync":
        assert not (case.vault / "vault" / ".x.99999999.vault-tmp").exists()  # swept


def test_a_file_the_stat_cannot_prove_keeps_the_full_sync(cases: dict[str, Case]) -> None:
    case = cases["new file"]
    path = case.ws / "MEMORY.md"
    path.write_text("# Memory\n\n- written by a clock ahead of ours\n")
    ahead = time.time_ns() + 3600 * 10**9
    os.utime(path, ns=(ahead, ahead))  # racily clean for the next hour: every sync reads it
    assert case.run("sync", "-q")[:2] == ("full", 0)
    before = case.commits()
    for _ in range(2):
        assert case.run("sync", "-q")[:2] == ("full", 0)
    assert case.commits() == before


def test_lock_held_goes_to_the_full_sync_which_reports_busy(cases: dict[str, Case]) -> None:
    case = cases["nothing"]
    release = _hold_lock(case)
    try:
        who, code, _ = case.run("sync", "-q")
    finally:
        release()
    assert (who, code) == ("full", 11)
    assert case.run("sync", "-q")[:2] == ("quick", 0)


def test_hooks_and_unpushed_commits_always_take_the_full_sync(cases: dict[str, Case],
                                                             tmp_path: Path) -> None:
    case = cases["new excluded file"]
    marker = tmp_path / "hook-ran"
    case.config.write_text(case.config.read_text() + f'\n[hooks]\npost_sync = "touch {marker}"\n')
    assert case.run("sync", "-q")[:2] == ("full", 0)
    assert case.run("sync", "-q")[:2] == ("full", 0) and marker.exists()

    case = cases["new empty folder"]
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    case.config.write_text(case.config.read_text().replace(
        "[vault]\n", f'[vault]\nremote = "{remote}"\n'))
    assert case.run("sync", "-q")[:2] == ("full", 0)  # pushes
    assert git(remote, "rev-parse", "main") == git(case.vault, "rev-parse", "main")
    assert case.run("sync", "-q")[:2] == ("quick", 0)  # pushed: nothing to do
    (case.vault / "refs" / "remotes" / "origin" / "main").unlink()  # as if never pushed
    assert case.run("sync", "-q")[:2] == ("full", 0)
    assert (case.vault / "refs" / "remotes" / "origin" / "main").exists()


@pytest.mark.parametrize("argv, parsed", [
    (["sync"], (None, False)),
    (["sync", "-q"], (None, True)),
    (["sync", "--quiet", "--config", "/x.toml"], ("/x.toml", True)),
    (["sync", "--config=/x.toml"], ("/x.toml", False)),
    (["sync", "--config"], None),
    (["sync", "--json"], None),
    (["sync", "--dry-run"], None),
    (["sync", "--source", "a"], None),
    (["sync", "--help"], None),
    (["status"], None),
])
def test_only_the_plain_forms_of_sync_are_answered(argv: list[str],
                                                   parsed: tuple[str | None, bool] | None) -> None:
    assert _parse(argv) == parsed


def test_after_a_failed_quick_check_the_full_sync_does_not_walk_again(
        cases: dict[str, Case]) -> None:
    case = cases["nothing"]
    (case.ws / "handed-over.md").write_text("found by the quick check's walk\n")
    probe = ("import sys, vault.sources as s\n"
             "real = s.scan_source\ncalls = []\n"
             "def counted(*a, **k):\n    calls.append(1)\n    return real(*a, **k)\n"
             "s.scan_source = counted\n"
             "sys.argv = ['vault', 'sync', '-q']\nfrom vault import entry\n"
             # (a finished sync ends with os._exit: here it ends as SystemExit, to be counted)
             "def end(code, exit_hooks=False):\n    raise SystemExit(code)\n"
             "entry._end_now = end\n"
             "try:\n    entry.main()\nexcept SystemExit as e:\n    code = e.code\n"
             "print(len(calls), code, 'vault.cli' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", probe], env=case.env, capture_output=True,
                         text=True, check=True, timeout=120).stdout.split()
    assert out == ["2", "0", "True"]  # two sources, each walked once, by the quick check
    assert "A agent/handed-over.md" in git(case.vault, "show", "--name-status", "--format=",
                                           "main").replace("\t", " ")


def _synced_case(root: Path) -> Case:
    """A case of its own, aged past the racy margin and synced: it has a plan."""
    case = _make_case(root)
    assert case.run("init")[1] == 0
    time.sleep(RACY_MARGIN_NS / 1e9 + 0.2)
    assert case.run("sync", "-q")[:2] == ("full", 0)
    assert case.run("sync", "-q")[:2] == ("quick", 0)
    return case


def test_a_config_edited_during_a_sync_is_not_taken_as_synced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vault.config import load_config
    from vault.sync import sync

    case = _synced_case(tmp_path)
    for name in ("VAULT_HOME", "HOME"):
        monkeypatch.setenv(name, case.env[name])
    config = load_config(case.config)  # the sync has read its config...
    new = tmp_path / "new"
    new.mkdir()
    (new / "n.md").write_text("a source added while the sync ran\n")
    case.config.write_text(case.config.read_text()  # ...and the user adds a source meanwhile
                           + f'\n[[sources]]\nname = "new"\npath = "{new}"\n')
    [plan_file] = (case.root / "home" / "sync-plans").iterdir()
    plan_file.unlink()
    result = sync(config)  # nothing changed in the sources it read: it writes a plan
    assert result.ok and result.commit is None and plan_file.exists()
    assert case.run("sync", "-q")[:2] == ("full", 0)
    assert "new/n.md" in git(case.vault, "ls-tree", "-r", "--name-only", "main").split()


def test_the_walk_is_not_handed_over_when_another_sync_ran_in_between(tmp_path: Path) -> None:
    # The quick check lets go of the lock before the CLI loads; a sync that commits in that gap
    # makes its walk stale: files the new tip has and the walk missed looked deleted.
    case = _synced_case(tmp_path)
    script = (
        "import os, subprocess, sys\n"
        "from vault.quick import quick_sync\n"
        "ws = sys.argv[1]\n"
        "open(ws + '/MEMORY.md', 'a').write('- edited\\n')\n"
        "assert quick_sync(['sync']) is None  # walked, handed over, lock released\n"
        "open(ws + '/memory/new-note.md', 'w').write('new note\\n')\n"
        "subprocess.run([sys.executable, '-m', 'vault', 'sync', '-q'], check=True)\n"
        "from vault.cli import main\n"
        "main(['sync', '-q'])\n")
    proc = subprocess.run([sys.executable, "-c", script, str(case.ws)], env=case.env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    files = git(case.vault, "ls-tree", "-r", "--name-only", "main").split()
    assert "agent/memory/new-note.md" in files
    assert "D\tagent/memory/new-note.md" not in git(case.vault, "log", "--name-status",
                                                    "--format=")


def test_a_vault_without_head_is_reported_not_answered(tmp_path: Path) -> None:
    case = _synced_case(tmp_path)
    (case.vault / "HEAD").unlink()
    stamp = (case.vault / "vault" / "last-sync").stat().st_mtime_ns
    who, code, _ = case.run("sync", "-q")
    assert (who, code) == ("full", 1)  # a damaged vault (HEAD missing), not "no vault here"
    assert (case.vault / "vault" / "last-sync").stat().st_mtime_ns == stamp


@pytest.mark.parametrize("name, content", [("HEAD", "garbage\n"), ("packed-refs", "zzzz\n")])
def test_a_damaged_head_or_packed_refs_fails_a_sync_with_nothing_to_commit(
        tmp_path: Path, name: str, content: str) -> None:
    """Nothing changed, so nothing was committed, and the sync said all was well (exit 0)
    until a file changed; cron never heard that the vault could not be read by git."""
    case = _synced_case(tmp_path)
    (case.vault / name).write_text(content)
    who, code, _ = case.run("sync", "-q")
    assert (who, code) == ("full", 1)
    who, code, out = case.run("sync", "--json")
    assert (who, code) == ("full", 1)
    assert f"the vault's {name} file" in json.loads(out)["error"]


def test_a_truncated_tip_commit_fails_a_sync_with_nothing_to_commit(tmp_path: Path) -> None:
    """The quick check only looked that the tip's object file was there, and the full sync
    only stat'ed it: `Nothing changed`, exit 0, while status said the vault was damaged."""
    case = _synced_case(tmp_path)
    tip = git(case.vault, "rev-parse", "main").strip()
    obj = case.vault / "objects" / tip[:2] / tip[2:]
    obj.chmod(0o644)
    obj.write_bytes(obj.read_bytes()[:20])
    who, code, out = case.run("sync", "--json")
    assert (who, code) == ("full", 1)
    assert f"vault object {tip} is damaged" in json.loads(out)["error"]
    assert case.run("sync", "-q")[:2] == ("full", 1)


def test_the_quick_check_says_who_holds_the_lock(tmp_path: Path) -> None:
    case = _synced_case(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", PROBE, "sync", "-q"], env=case.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=120)
    assert err.strip().endswith("PROBE quick 0")
    info = json.loads((case.vault / "vault" / "sync.lock.json").read_text())
    assert info["pid"] == proc.pid and info["command"] == "sync"


def test_a_plan_from_another_vault_version_is_not_trusted(tmp_path: Path) -> None:
    import marshal

    case = _synced_case(tmp_path)
    [plan_file] = (case.root / "home" / "sync-plans").iterdir()
    plan = marshal.loads(plan_file.read_bytes())
    plan["vault"] = "0.0.0-older"
    plan_file.write_bytes(marshal.dumps(plan))
    assert case.run("sync", "-q")[:2] == ("full", 0)
    assert case.run("sync", "-q")[:2] == ("quick", 0)  # the full sync wrote a plan of its own


def test_the_vault_script_loads_only_what_the_quick_check_needs(tmp_path: Path) -> None:
    """The installed `vault` command (bin/vault): a sync that finds nothing imports neither `re`
    (pip's generated launchers do, ~6 ms) nor `signal`'s enum wrapper (~7 ms), nor the CLI."""
    ws = tmp_path / "agent"
    (ws / "memory").mkdir(parents=True)
    (ws / "MEMORY.md").write_text("# Memory\n")
    (ws / "memory" / "2026-11-21.md").write_text("- a note\n")
    config = write_config(tmp_path / "vault.toml", {"agent": ws})  # (no patterns: no pathspec)
    env = {**os.environ, "VAULT_CONFIG": str(config), "VAULT_HOME": str(tmp_path / "home")}
    time.sleep(RACY_MARGIN_NS / 1e9 + 0.2)
    for args in (["init"], ["sync", "-q"]):
        subprocess.run([sys.executable, "-m", "vault", *args], env=env, check=True,
                       capture_output=True, timeout=120)
    repo = Path(__file__).resolve().parent.parent
    # -S: site-packages without their .pth files (which import what they like), so that
    # everything imported is the script's own doing
    import site

    path = os.pathsep.join([str(repo), *site.getsitepackages()])
    proc = subprocess.run([sys.executable, "-S", "-X", "importtime", str(repo / "bin" / "vault"),
                           "sync"], env={**env, "PYTHONPATH": path},
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0 and proc.stdout == "Nothing changed (2 files checked); no commit.\n"
    imported = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:") and "|" in line}
    assert {"vault.quick", "vault.sources"} <= imported
    assert not imported & {"re", "enum", "signal", "click", "pygit2", "typing"}, imported


def test_a_wal_left_by_a_dead_writer_is_proved_by_its_stat(tmp_path: Path) -> None:
    """A writer that died leaves its -wal beside the database. Run as root, SQLite fchowns a
    -wal on every open, the snapshot's own included: that moved its ctime, so every sync found
    the database changed, dumped it again and never let the quick check answer."""
    case = _make_case(tmp_path)
    subprocess.run([sys.executable, "-c", "import apsw, os\n"
                    f"db = apsw.Connection({str(case.ws / 'memory.db')!r})\n"
                    "db.execute('PRAGMA wal_autocheckpoint=0')\n"
                    "db.execute(\"INSERT INTO memories(content) VALUES ('in the WAL')\")\n"
                    "os._exit(0)"], check=True, timeout=60)
    assert (case.ws / "memory.db-wal").stat().st_size > 0
    time.sleep(RACY_MARGIN_NS / 1e9 + 0.2)
    assert case.run("init")[1] == 0
    assert case.run("sync", "-q")[:2] == ("full", 0)
    time.sleep(RACY_MARGIN_NS / 1e9 + 0.2)
    assert case.run("sync")[:2] == ("quick", 0)
    assert case.run("sync")[:2] == ("quick", 0)
    assert "in the WAL" in git(case.vault, "show", "main:agent/memory.db")
