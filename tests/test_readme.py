"""The README's commands are the ones CI and users run, and the demo runs the way it says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _sh_blocks() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    return [line for block in re.findall(r"```sh\n(.*?)```", readme, re.S)
            for line in block.splitlines()]


def test_ci_runs_the_readme_test_command() -> None:
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line and not line.startswith(("#", "set ", "cd ", "git ", "rm "))]
    assert len(ci) == 1
    assert ci[0] in _sh_blocks()


def test_demo_runs_as_the_readme_says(tmp_path: Path) -> None:
    demo = next(line for line in _sh_blocks() if "vault demo" in line)
    assert demo.endswith(".venv/bin/vault demo")
    # The install half is what CI just did; run the demo itself the same way a user would.
    proc = subprocess.run([sys.executable, "-m", "vault", "demo", "--keep", str(tmp_path / "d")],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Created " in out
    assert re.search(r"Committed [0-9a-f]{10} at .*: 0 modified, \d+ added, 0 deleted", out)
    assert re.search(r"Committed [0-9a-f]{10} at .*: 2 modified, 1 added, 0 deleted", out)
    assert "Nothing changed" in out
    assert "M memento/memory.db" in out
    subprocess.run(["git", "-C", str(tmp_path / "d" / "memory-vault"), "fsck", "--no-dangling"],
                   check=True, capture_output=True)
