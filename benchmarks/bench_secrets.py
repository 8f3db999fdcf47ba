"""Benchmark vault's secret scan of 1 MB of agent memory against Yelp's detect-secrets.

    python benchmarks/bench_secrets.py [--rounds 5]

Every changed file is scanned before it is committed, so the scan is on sync's path. The text
is the bundled example memory (Markdown, JSON, JSONL) repeated to 1 MB per kind, as sync would
store it. The baseline is detect-secrets' own `scan_line` with its default plugins over the
same lines, in the same run: vault takes its provider patterns from it and adds its own rules
(URLs, assignments, index words), then scans the whole buffer at once.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine  # noqa: E402

from vault.config import SnapshotSettings, SourceConfig  # noqa: E402
from vault.examples import generate  # noqa: E402
from vault.secrets import scan_bytes  # noqa: E402
from vault.snapshot import take_snapshot  # noqa: E402
from vault.sources import scan_source  # noqa: E402

MB = 1_000_000


def memory_text(root: Path) -> dict[str, bytes]:
    """1 MB of each kind of text file of the example memory, as sync stores it."""
    generate(root, seed=1)
    scan = scan_source(SourceConfig("src", root))
    by_kind: dict[str, bytes] = {".md": b"", ".json": b"", ".jsonl": b""}
    for entry in scan.entries:
        suffix = "." + entry.rel.rpartition(".")[2]
        if suffix in by_kind:
            data = take_snapshot(entry, SnapshotSettings()).data
            if data is not None:
                by_kind[suffix] += data
    return {k: (v * (MB // len(v) + 1))[:MB].rpartition(b"\n")[0] + b"\n"
            for k, v in by_kind.items()}


def best_of(rounds: int, func: Callable[[], object]) -> float:
    """The fastest of several runs, in seconds (the least disturbed by the machine)."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    from detect_secrets.core.scan import scan_line
    from detect_secrets.settings import default_settings

    with tempfile.TemporaryDirectory() as tmp:
        texts = memory_text(Path(tmp) / "ex")
    print(f"machine: {machine()}")
    print(f"secret scan of 1 MB per kind, best of {args.rounds}")
    print(f"{'kind':8} {'vault':>10} {'detect-secrets':>15} {'ratio':>7}")
    with default_settings():
        for suffix, text in texts.items():
            lines = text.decode("utf-8", "replace").splitlines()
            scan_bytes(text, path="warm-up" + suffix)
            ours = best_of(args.rounds, lambda: scan_bytes(text, path="x" + suffix))
            theirs = best_of(max(1, args.rounds // 2),
                             lambda: [s for line in lines for s in scan_line(line)])
            print(f"{suffix:8} {ours * 1000:8.1f}ms {theirs * 1000:13.1f}ms "
                  f"{ours / theirs:7.3f}")


if __name__ == "__main__":
    main()
