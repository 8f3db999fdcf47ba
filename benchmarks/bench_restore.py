"""Benchmark `vault restore --at OLD --to DIR` of 10,000 files against `git archive | tar -x`.

    python benchmarks/bench_restore.py [--files 10000] [--rounds 3]

Both restore the same old commit of the same vault into empty folders, as fresh processes, in
the same run. The goal is a ratio (vault / git) at or under 1.2. vault also checks every
SQLite database it rebuilds (PRAGMA integrity_check) and writes each file atomically.
"""

from __future__ import annotations

import argparse
import os
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, VAULT, machine, timed, write_config  # noqa: E402

from vault.examples import generate_files, mutate  # noqa: E402


def settle() -> None:
    """Flush and pause, so that no run pays for the writeback of the one before."""
    os.sync()
    time.sleep(3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "restore.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vault-bench-restore-"))
    try:
        ws = work / "ws"
        counts = generate_files(ws, files=args.files, seed=2)
        env = write_config(work, ws)
        timed(VAULT + ["init"], env, work)
        timed(VAULT + ["sync", "--quiet"], env, work)
        old = json.loads(__import__("subprocess").run(
            VAULT + ["log", "--json", "-n", "1"], env=env, capture_output=True, text=True,
            check=True).stdout)["commits"][0]["commit"]
        for r in range(3):  # newer commits on top, so the restore is of an old commit
            mutate(ws, fraction=0.05, seed=r)
            time.sleep(0.01)
            timed(VAULT + ["sync", "--quiet"], env, work)
        vault_s, git_s = [], []
        for r in range(args.rounds):
            a, b = work / f"vault-out{r}", work / f"git-out{r}"
            b.mkdir()
            git = (f"git -C {work / 'memory-vault'} archive {old} | tar -x -C {b}")
            settle()
            if r % 2:
                git_s.append(timed(git, env, work))
                settle()
                vault_s.append(timed(VAULT + ["restore", "--at", old, "--to", str(a)], env, work))
            else:
                vault_s.append(timed(VAULT + ["restore", "--at", old, "--to", str(a)], env, work))
                settle()
                git_s.append(timed(git, env, work))
            restored = sum(1 for p in a.rglob("*") if p.is_file())
            archived = sum(1 for p in b.rglob("*") if p.is_file())
            assert restored == archived, (restored, archived)
            # The outputs stay until the end. On an ext4 without a journal (this VM's disk),
            # inodes freed in the last minute are skipped, one scan each, when new ones are
            # allocated (ext4's recently_deleted): deleting 20,000 files between rounds made
            # the next creates several times slower, for whichever command ran first.
        med = statistics.median
        result = {"machine": machine(), "files": sum(counts.values()), "rounds": args.rounds,
                  "vault_s": med(vault_s), "git_s": med(git_s),
                  "ratio": med(vault_s) / med(git_s), "vault_runs": vault_s, "git_runs": git_s}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
        print(f"machine: {result['machine']}")
        print(f"restore of an old commit, {result['files']} files, median of {args.rounds}")
        print(f"{'case':24} {'vault':>9} {'git':>9} {'ratio':>7}")
        print(f"{'restore --to vs archive':24} {result['vault_s']:8.3f}s {result['git_s']:8.3f}s "
              f"{result['ratio']:7.2f}")
        print("runs: vault " + " ".join(f"{s:.3f}" for s in vault_s)
              + " | git " + " ".join(f"{s:.3f}" for s in git_s))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
