"""Shared by the benchmarks: the machine line, timing a command, a workspace and its config."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vault.examples import KINDS  # noqa: E402


def machine() -> str:
    """CPU model, cores, memory and Python version of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}"


def timed(cmd: list[str] | str, env: dict[str, str], cwd: Path, check: bool = True) -> float:
    """Seconds a command takes as a fresh process (shell string or argv)."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, shell=isinstance(cmd, str),
                          capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if check and proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {cmd}\n{proc.stderr}")
    return elapsed


def write_config(work: Path, ws: Path, extra: str = "",
                 vault_dir: str = "memory-vault") -> dict[str, str]:
    """A vault.toml with one source per example kind; the environment that selects it."""
    config = work / "vault.toml"
    lines = ["[vault]", f'path = "{work / vault_dir}"', "", extra, ""]
    for kind in KINDS:
        lines += ["[[sources]]", f'name = "{kind}"', f'path = "{ws / kind}"', ""]
    config.write_text("\n".join(lines))
    return {**os.environ, "VAULT_CONFIG": str(config), "VAULT_HOME": str(work / "home")}


def _vault_command() -> list[str]:
    """The installed `vault` script beside this interpreter, as a user runs it; else -m vault."""
    script = Path(sys.executable).parent / "vault"
    return [str(script)] if script.exists() else [sys.executable, "-m", "vault"]


VAULT = _vault_command()
