"""Benchmark `vault sync` against `git add -A && git commit` on the same 10,000-file workspace.

    python benchmarks/bench_sync.py [--files 10000] [--rounds 5] [--out benchmarks/out/sync.json]

Run it with the interpreter of a regular install (`python3 -m venv /tmp/bv && /tmp/bv/bin/pip
install . && /tmp/bv/bin/python benchmarks/bench_sync.py`): it times the `vault` script beside
that interpreter, as a user runs it. An editable install adds its import finder (~10 ms here)
to every process.

Both sides run as fresh processes, in the same run, on the same files (git's work tree *is* the
workspace, its repository lives beside it), so page cache and disk are shared. Prints medians
and the ratio vault/git: the goal is <= 1.5 for "nothing changed" and for "1% changed".
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, VAULT, machine, timed, write_config  # noqa: E402

from vault.examples import generate_files, mutate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "sync.json")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="vault-bench-sync-"))
    try:
        ws = work / "ws"
        counts = generate_files(ws, files=args.files, seed=1)
        nfiles = sum(counts.values())
        env = write_config(work, ws)
        vault = VAULT
        git_dir = work / "baseline.git"
        git = f"git --git-dir={git_dir} --work-tree={ws} -c user.name=b -c user.email=b@b"
        git_commit = f"{git} add -A && {git} commit -q -m sync"
        subprocess.run(f"git init -q --bare {git_dir}", shell=True, check=True)

        timed(vault + ["init"], env, work)
        first_vault = timed(vault + ["sync", "--quiet"], env, work)
        first_git = timed(git_commit, env, work)

        # Let every file age past the racy-clean margin, then settle both sides.
        time.sleep(2.5)
        timed(vault + ["sync", "--quiet"], env, work)
        timed(vault + ["sync", "--quiet"], env, work)

        idle_vault, idle_git, change_vault, change_git = [], [], [], []
        for r in range(args.rounds):
            for i in range(3):  # cheap, and the figure most runs see: three pairs per round
                # The side that goes first alternates (as below); git exits 1: nothing new.
                sides = [(idle_vault, vault + ["sync", "--quiet"], True),
                         (idle_git, git_commit, False)]
                for times, cmd, check in (sides if (r + i) % 2 == 0 else sides[::-1]):
                    times.append(timed(cmd, env, work, check=check))
            changed = mutate(ws, fraction=0.01, seed=100 + r)
            time.sleep(2.5)  # as under cron: the change is not racily fresh when the sync runs
            # Alternate which side goes first so neither always gets the warmer cache.
            if r % 2:
                change_git.append(timed(git_commit, env, work))
                change_vault.append(timed(vault + ["sync", "--quiet"], env, work))
            else:
                change_vault.append(timed(vault + ["sync", "--quiet"], env, work))
                change_git.append(timed(git_commit, env, work))
            timed(vault + ["sync", "--quiet"], env, work)  # settle racy entries
        helps = [timed(vault + ["sync", "--help"], env, work) for _ in range(args.rounds)]
        pyempty = [timed([sys.executable, "-c", "pass"], env, work) for _ in range(args.rounds)]

        med = statistics.median
        result = {
            "machine": machine(), "files": nfiles, "rounds": args.rounds,
            "changed_per_round": len(changed),
            "first_sync": {"vault_s": first_vault, "git_s": first_git,
                           "ratio": first_vault / first_git},
            "nothing_changed": {"vault_s": med(idle_vault), "git_s": med(idle_git),
                                "ratio": med(idle_vault) / med(idle_git)},
            "one_percent_changed": {"vault_s": med(change_vault), "git_s": med(change_git),
                                    "ratio": med(change_vault) / med(change_git)},
            "sync_help_s": med(helps), "python_startup_s": med(pyempty),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
        print(f"machine: {result['machine']}")
        print(f"workspace: {nfiles} files; {len(changed)} changed per round; "
              f"medians of {args.rounds} rounds (nothing changed: 3 pairs per round)")
        print(f"{'case':24} {'vault':>9} {'git':>9} {'ratio':>7}")
        for name in ("first_sync", "nothing_changed", "one_percent_changed"):
            row = result[name]
            assert isinstance(row, dict)
            print(f"{name:24} {row['vault_s']:8.3f}s {row['git_s']:8.3f}s {row['ratio']:7.2f}")
        print(f"{'vault sync --help':24} {result['sync_help_s']:8.3f}s "
              f"(python -c pass: {result['python_startup_s']:.3f}s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
