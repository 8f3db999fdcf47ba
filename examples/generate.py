#!/usr/bin/env python3
"""Regenerate the bundled example agent memory, or a bigger tree for benchmarks.

    python examples/generate.py                  # rewrite the four kind folders next to this script
    python examples/generate.py --out /tmp/big --files 10000
    python examples/generate.py --out /tmp/s5 --scale 5 --seed 7
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent


def _examples_module() -> ModuleType:
    """vault.examples from this checkout when there is one, else the installed package."""
    repo = HERE.parent
    if (repo / "vault" / "examples.py").is_file() and str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    from vault import examples

    return examples


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, clear the kind folders under --out, generate, print a summary."""
    parser = argparse.ArgumentParser(description="Generate deterministic example agent memory.")
    parser.add_argument("--out", type=Path, default=HERE,
                        help="where to write the kind folders (default: this script's folder)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--scale", type=int, default=1,
                      help="size multiplier (default: 1, the bundled size)")
    size.add_argument("--files", type=int, help="aim for about this many files in total")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    args = parser.parse_args(argv)

    examples = _examples_module()
    out: Path = args.out
    # Only the folders the generator owns are removed; anything else under --out stays.
    for kind in examples.KINDS:
        target = out / kind
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    if args.files is not None:
        counts = examples.generate_files(out, files=args.files, seed=args.seed)
    else:
        counts = examples.generate(out, scale=args.scale, seed=args.seed)

    total_bytes = 0
    for kind, count in counts.items():
        size_bytes = sum(p.stat().st_size for p in (out / kind).rglob("*") if p.is_file())
        total_bytes += size_bytes
        print(f"{kind:<10} {count:>6} files {size_bytes / 1024:>10.1f} KiB")
    total = sum(counts.values())
    print(f"{'total':<10} {total:>6} files {total_bytes / 1024:>10.1f} KiB  -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
