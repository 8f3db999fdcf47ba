"""Soak: ten `vault sync` processes started at once on one vault, round after round.

    python benchmarks/soak_concurrency.py [--rounds 30] [--procs 10] [--files 3000]
                                          [--out benchmarks/out/soak_concurrency.json]

Between rounds the workspace changes the way an agent changes it. Each round checks: every
process exits 0 or 11 (busy, with its one-line `Error:`), exactly one records the round's
changes, the history stays linear (one parent per commit, every reported commit on the
branch), the vault holds every change after the round, and `git fsck` passes at the end.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, VAULT, machine, write_config  # noqa: E402
from soak_crash import agent_step, expected_tree, git, tree  # noqa: E402

from vault.examples import generate_files  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--procs", type=int, default=10)
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--out", type=Path,
                        default=ROOT / "benchmarks" / "out" / "soak_concurrency.json")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="vault-soak-conc-"))
    started = time.time()
    rng = random.Random(args.seed)
    exits: Counter[int] = Counter()
    figures = {"rounds": 0, "processes": 0, "bad_exit_codes": 0, "unclear_busy_messages": 0,
               "rounds_without_exactly_one_commit": 0, "lost_changes": 0,
               "nonlinear_commits": 0, "reported_commits_missing": 0, "fsck_failures": 0}
    problems: list[str] = []
    try:
        ws = work / "ws"
        nfiles = sum(generate_files(ws, files=args.files, seed=args.seed).values())
        env = write_config(work, ws)
        vault = work / "memory-vault"
        subprocess.run(VAULT + ["init"], env=env, cwd=work, check=True, capture_output=True)
        dumps: dict[str, str] = {}
        reported: list[str] = []
        for round_ in range(args.rounds):
            if round_:
                agent_step(ws, rng, round_)
            want = expected_tree(ws, dumps)
            procs = [subprocess.Popen(VAULT + ["sync", "--json"], env=env, cwd=work,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for _ in range(args.procs)]
            commits = []
            for proc in procs:
                out, err = proc.communicate(timeout=300)
                exits[proc.returncode] += 1
                figures["processes"] += 1
                if proc.returncode not in (0, 11) or "Traceback" in err:
                    figures["bad_exit_codes"] += 1
                    problems.append(f"round {round_}: exit {proc.returncode}: {err[:200]}")
                elif proc.returncode == 11:
                    if not err.startswith("Error: another vault process holds the lock"):
                        figures["unclear_busy_messages"] += 1
                        problems.append(f"round {round_}: busy message {err[:200]!r}")
                elif json.loads(out)["commit"]:
                    commits.append(json.loads(out)["commit"])
            figures["rounds"] += 1
            if len(commits) != 1:
                figures["rounds_without_exactly_one_commit"] += 1
                problems.append(f"round {round_}: {len(commits)} commits")
            reported += commits
            have = tree(vault)
            lost = [p for p in set(have) | set(want) if have.get(p) != want.get(p)]
            figures["lost_changes"] += len(lost)
            if lost:
                problems.append(f"round {round_}: {len(lost)} changes not recorded")
        history = git(vault, "rev-list", "--parents", "main").stdout.splitlines()
        figures["nonlinear_commits"] = sum(1 for line in history if len(line.split()) > 2)
        on_branch = {line.split()[0] for line in history}
        figures["reported_commits_missing"] = sum(1 for c in reported if c not in on_branch)
        fsck = git(vault, "fsck", "--strict", "--no-dangling", "--no-progress")
        figures["fsck_failures"] = int(fsck.returncode != 0)
        commits_total = len(history)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    seconds = time.time() - started
    report = {**figures, "exit_codes": {str(k): v for k, v in sorted(exits.items())},
              "commits": commits_total, "files": nfiles, "seconds": round(seconds, 1),
              "machine": machine(), "problems": problems[:50]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{args.procs} x `vault sync` at once, {figures['rounds']} rounds on {nfiles} files "
          f"({machine()}), {seconds:.0f} s")
    print("exit codes: " + ", ".join(f"{k}: {v}" for k, v in sorted(exits.items())))
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"  {key:{width}}  {value}")
    for line in problems[:20]:
        print(line)
    print(f"wrote {args.out}")
    bad = sum(v for k, v in figures.items() if k not in ("rounds", "processes"))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
