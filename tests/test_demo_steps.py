"""`vault demo` runs every step with the installed vault, and stops at a step that fails."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_cli

STEPS = ["Example agent memory", "Create the vault", "First sync: every file in one commit",
         "The agent works: memory changes", "Second sync: only what changed",
         "Nothing changed: no commit", "The audit trail", "What changed in the database",
         "What changed, row by row", "The database as it was before the change",
         "An accident: MEMORY.md is overwritten",
         "Restore it as it was at the last sync (a safety sync runs first)", "Status", "Done"]


@pytest.mark.model
def test_demo_from_a_folder_that_holds_a_vault_folder(tmp_path: Path) -> None:
    # An Obsidian vault called `vault` where the user stands: `python -m vault` in the steps
    # found it first on sys.path, and every step died in a traceback while the demo said 0.
    work = tmp_path / "notes"
    (work / "vault").mkdir(parents=True)
    (work / "vault" / "Inbox.md").write_text("# Inbox\n")
    script = Path(sys.executable).parent / "vault"  # the README runs `.venv/bin/vault demo`
    assert script.exists(), script
    proc = subprocess.run([str(script), "demo"], cwd=work, capture_output=True, text=True,
                          env=dict(os.environ), timeout=600, check=False)
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out
    assert proc.returncode == 0, out
    assert proc.stderr == ""
    assert [title for title in STEPS if f"\n== {title}\n" not in proc.stdout] == []
    assert re.search(r"Committed [0-9a-f]{10} at .*: 2 modified, 1 added, 0 deleted", out)
    assert "\n== Recall an exact id\n$ vault recall BILL-412 -k 3\n" in proc.stdout


def _broken_gitconfig(home: Path) -> dict[str, str]:
    """A ~/.gitconfig that git cannot parse: `vault init`, the first command, fails on it."""
    (home / ".gitconfig").write_text("[user\n\tname = broken\n")
    env = dict(os.environ)
    env.pop("GIT_CONFIG_GLOBAL", None)
    return env


def test_a_failing_step_stops_the_demo_with_one_line(tmp_path: Path,
                                                     _isolated_home: Path) -> None:
    env = _broken_gitconfig(_isolated_home)
    keep = tmp_path / "d"
    proc = subprocess.run([sys.executable, "-m", "vault", "demo", "--keep", str(keep)],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout == ""
    error, hint = proc.stderr.splitlines()
    assert error.startswith(
        f"Error: demo step 'Create the vault' (vault init) failed with exit 1: cannot create the "
        f"vault at {keep / 'memory-vault'}: failed to parse config file: "), error
    assert str(_isolated_home / ".gitconfig") in error
    assert hint == f"Hint: the demo folder {keep} is kept as the step left it"
    # It stopped there: the memory the demo changes after the first sync is as generated.
    assert "Learned today" not in (keep / "memory" / "openclaw" / "MEMORY.md").read_text()


def test_a_failing_step_under_json(tmp_path: Path, _isolated_home: Path) -> None:
    env = _broken_gitconfig(_isolated_home)
    proc = subprocess.run([sys.executable, "-m", "vault", "demo", "--json"],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ok"] is False and doc["exit_code"] == 1
    assert doc["error"].startswith("demo step 'Create the vault' (vault init) failed with exit 1: ")
    assert doc["hint"] == "run `vault demo --keep DIR` to keep the demo folder and look into it"
    assert proc.stderr.splitlines()[0] == f"Error: {doc['error']}"


def test_keep_a_file_is_a_usage_error(tmp_path: Path) -> None:
    file = tmp_path / "notes.txt"
    file.write_text("not a folder\n")
    proc = run_cli("demo", "--keep", str(file))
    assert proc.returncode == 2
    assert proc.stderr == (f"Error: --keep {file}: not a folder; the demo needs a new or empty "
                           "folder\n")
    assert file.read_text() == "not a folder\n"


def test_keep_below_a_file_is_a_usage_error(tmp_path: Path) -> None:
    file = tmp_path / "notes.txt"
    file.write_text("not a folder\n")
    proc = run_cli("demo", "--keep", str(file / "d"))
    assert proc.returncode == 2
    assert proc.stderr == (f"Error: --keep {file / 'd'}: cannot use it as the demo folder: "
                           "Not a directory\n")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_keep_an_impossible_path_is_a_usage_error() -> None:
    proc = run_cli("demo", "--keep", "/proc/x")
    assert proc.returncode == 2
    assert proc.stderr == ("Error: --keep /proc/x: cannot use it as the demo folder: "
                           "No such file or directory\n")


def test_keep_a_folder_that_is_not_empty_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_text("")
    proc = run_cli("demo", "--keep", str(tmp_path / "d"))
    assert proc.returncode == 2
    assert proc.stderr == (f"Error: --keep {tmp_path / 'd'}: not empty; the demo needs a new "
                           "or empty folder\n")


def test_keep_a_folder_whose_name_is_not_utf8_is_a_usage_error(tmp_path: Path) -> None:
    # vault.toml (TOML: UTF-8 text) could not name it: refused before anything is made
    folder = os.fsencode(tmp_path) + b"/x/\xffdemo"
    proc = subprocess.run([sys.executable, "-m", "vault", "demo", "--keep", folder],
                          capture_output=True, check=False, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.decode() == (
        f"Error: --keep {tmp_path}/x/\\udcffdemo: the folder's name is not valid UTF-8, which "
        "vault.toml cannot hold; the demo needs another folder\n")
    assert not (tmp_path / "x").exists()


def test_a_temp_folder_whose_name_is_not_utf8_is_a_usage_error(tmp_path: Path) -> None:
    temp = os.fsencode(tmp_path) + b"/\xfftmp"
    os.mkdir(temp)
    proc = subprocess.run([sys.executable, "-m", "vault", "demo"], capture_output=True,
                          check=False, timeout=120, env={**os.environ, "TMPDIR": temp})
    assert proc.returncode == 2
    assert proc.stderr.decode().splitlines() == [
        f"Error: the temp folder {tmp_path}/\\udcfftmp: its name is not valid UTF-8, which "
        "vault.toml cannot hold", "Hint: set TMPDIR, or use --keep DIR"]
    assert os.listdir(temp) == []


def test_keep_empty_is_a_usage_error() -> None:
    proc = run_cli("demo", "--keep", "")
    assert proc.returncode == 2
    assert proc.stderr == ("Error: --keep needs a folder (an empty one would mean a temporary "
                           "folder)\n")

