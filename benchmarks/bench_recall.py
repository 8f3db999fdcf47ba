"""Recall speed: a cold `vault recall` at ~10,000 chunks, warm queries at ~100,000 chunks.

1. Cold: a new process runs `vault recall QUERY` (to printed results) against an index of about
   10,000 chunks made with the real model; the baseline, timed the same way, is a script that
   imports sentence-transformers and encodes one query. Also printed: the cosine between the
   query vectors vault computes (ONNX twin) and sentence-transformers' own.
2. Warm: one process, the index of about 100,000 chunks loaded once (as `--queries` does), then
   one query at a time end to end (encode with the ONNX twin, dense + BM25, fuse, hits): p50.
   Embedding 100,000 chunks with the real model would take hours on this machine, so this
   index's vectors come from the deterministic hash:384 model (same size, same search work);
   the queries are still encoded by the real model's ONNX twin.

    python benchmarks/bench_recall.py [--cold-files 1550] [--warm-files 15500]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from vault.config import Config, load_config  # noqa: E402
from vault.embed import (DEFAULT_MODEL, HashEmbedder, SentenceTransformerEmbedder,  # noqa: E402
                         ensure_query_encoder, load_query_encoder, resolve_model)
from common import write_config  # noqa: E402
from vault.examples import generate_files  # noqa: E402
from vault.index import IndexOptions, IndexStore, build_index  # noqa: E402
from vault.recall import Searcher  # noqa: E402
from vault.repo import VaultRepo  # noqa: E402
from vault.sync import sync  # noqa: E402

QUERIES = [
    "what did Sam decide about the kitchen renovation",
    "BILL-412",
    "who is Sam's manager",
    "when is the Tidewater cutover",
    "how long is the marathon training plan",
    "which dashboard should be linked in incident channels",
    "what does Sam eat",
    "pgbouncer max_client_conn incident",
    "flaky test in CI with pytest-xdist",
    "book recommendation from Grace",
    "how much was the IKEA plan",
    "staff engineer path conversation with Lena",
    "Portuguese lessons schedule",
    "why are Nordhaven ETAs an hour off",
    "Postgres 16 upgrade benchmark",
    "driver app offline sync conflicts",
    "SCIM provisioning decision",
    "when is the pen test",
    "daughter piano lessons",
    "what editor and terminal does Sam use",
]


def make_vault(root: Path, files: int, model: str) -> Config:
    """Generated agent memory in a synced vault whose index uses model."""
    memory = root / "memory"
    generate_files(memory, files=files)
    os.environ.update(write_config(root, memory, extra=f'[index]\nmodel = "{model}"',
                                   vault_dir="vault"))
    config = load_config(root / "vault.toml")
    VaultRepo.init(config.vault.path, config.vault.branch)
    sync(config)
    return config


def timed_run(argv: Sequence[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(list(argv), env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:4]} failed: {proc.stderr[-2000:]}")
    return elapsed


def cold(root: Path, files: int, runs: int) -> dict[str, Any]:
    """Build a real-model index of ~10k chunks; time new-process recalls and the baseline."""
    import numpy as np

    config = make_vault(root, files, DEFAULT_MODEL)
    spec = resolve_model(DEFAULT_MODEL)
    reference = SentenceTransformerEmbedder(spec)
    ensure_query_encoder(reference, config.models_dir)
    twin = load_query_encoder(config.models_dir, spec)
    assert twin is not None
    # The ONNX twin gives sentence-transformers' vectors (checked below) about twice as fast.
    started = time.perf_counter()
    result = build_index(config, IndexOptions(), twin, export_encoder=False)
    build_seconds = time.perf_counter() - started
    ours = twin.embed_queries(QUERIES)
    theirs = reference.model.encode(QUERIES, convert_to_numpy=True)
    theirs = theirs / np.linalg.norm(theirs, axis=1, keepdims=True)
    cosines = np.sum(ours * theirs, axis=1)

    from vault import cli

    module = "vault" if "recall" in cli.cli.commands else "vault.cli_recall"
    env = {**os.environ, "VAULT_CONFIG": str(config.file), "VAULT_HOME": str(config.home)}
    timed_run([sys.executable, "-m", module, "recall", "warm the page cache"], env)
    recall_times = [timed_run([sys.executable, "-m", module, "recall", QUERIES[i % len(QUERIES)]],
                              env) for i in range(runs)]
    script = ("from sentence_transformers import SentenceTransformer; "
              f"m = SentenceTransformer({str(spec.path)!r}, device='cpu'); "
              f"print(m.encode([{QUERIES[0]!r}])[0][:4])")
    base_env = {**env, "HF_HUB_OFFLINE": "1"}
    timed_run([sys.executable, "-c", script], base_env)
    baseline = [timed_run([sys.executable, "-c", script], base_env) for _ in range(3)]
    return {"chunks": result.chunks, "files": result.files,
            "build_seconds": round(build_seconds, 1), "command": f"python -m {module} recall",
            "recall_seconds_median": round(statistics.median(recall_times), 3),
            "recall_seconds_all": [round(t, 3) for t in recall_times],
            "baseline_seconds_median": round(statistics.median(baseline), 3),
            "cosine_min": float(cosines.min()), "cosine_mean": float(cosines.mean())}


class _RealQueries:
    """hash:384 vectors in the index, real ONNX encoding cost for each query."""

    def __init__(self, twin: Any) -> None:
        self.twin = twin
        self.hash = HashEmbedder(384)

    @property
    def key(self) -> str:
        return self.hash.key

    @property
    def dim(self) -> int:
        return 384

    def embed_documents(self, texts: Sequence[str], progress: Any = None) -> Any:
        return self.hash.embed_documents(texts, progress)

    def embed_queries(self, texts: Sequence[str]) -> Any:
        return self.twin.embed_queries(texts)


def warm(root: Path, files: int, queries: int, models: Path) -> dict[str, Any]:
    """Index ~100k chunks (hash:384 vectors), then time single queries in one process."""
    config = make_vault(root, files, "hash:384")
    started = time.perf_counter()
    result = build_index(config, IndexOptions(), HashEmbedder(384), export_encoder=False)
    build_seconds = time.perf_counter() - started
    twin = load_query_encoder(models, resolve_model(DEFAULT_MODEL))
    assert twin is not None
    embedder = _RealQueries(twin)
    with IndexStore(config.index_path, readonly=True) as store:
        started = time.perf_counter()
        searcher = Searcher(store, result.commits[-1], embedder)
        load_seconds = time.perf_counter() - started
        for query in QUERIES[:5]:
            searcher.search(query, 10)
        times: list[float] = []
        encode: list[float] = []
        for i in range(queries):
            query = QUERIES[i % len(QUERIES)] + ("" if i < len(QUERIES) else f" {i}")
            started = time.perf_counter()
            embedder.embed_queries([query])
            encode.append(time.perf_counter() - started)
            started = time.perf_counter()
            hits = searcher.search(query, 10)
            times.append(time.perf_counter() - started)
            assert hits
    times.sort()
    return {"chunks": searcher.chunks, "files": result.files,
            "build_seconds": round(build_seconds, 1), "load_seconds": round(load_seconds, 2),
            "queries": queries, "p50_ms": round(1000 * statistics.median(times), 2),
            "p90_ms": round(1000 * times[int(0.9 * len(times))], 2),
            "max_ms": round(1000 * times[-1], 2),
            "encode_p50_ms": round(1000 * statistics.median(encode), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold-files", type=int, default=1550)
    parser.add_argument("--warm-files", type=int, default=15500)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--skip-warm", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "recall.json")
    args = parser.parse_args()
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, Python "
               f"{platform.python_version()}")
    print(f"machine: {machine}")
    root = Path(tempfile.mkdtemp(prefix="vault-bench-recall-"))
    report: dict[str, Any] = {"machine": machine}
    try:
        c = report["cold"] = cold(root / "cold", args.cold_files, args.runs)
        print(f"cold `vault recall` (new process to printed results), {c['chunks']} chunks: "
              f"median {c['recall_seconds_median']:.2f} s over {args.runs} runs (goal <= 1.0 s)")
        print(f"baseline: import sentence-transformers and encode one query: "
              f"{c['baseline_seconds_median']:.2f} s -> vault takes "
              f"{c['recall_seconds_median'] / c['baseline_seconds_median']:.1%} of it")
        print(f"query vectors vs sentence-transformers: cosine min {c['cosine_min']:.6f}, "
              f"mean {c['cosine_mean']:.6f} over {len(QUERIES)} queries (goal >= 0.999)")
        if not args.skip_warm:
            w = report["warm"] = warm(root / "warm", args.warm_files, args.queries,
                                      root / "cold" / "home" / "models")
            print(f"warm recall in one process, {w['chunks']} chunks (loaded in "
                  f"{w['load_seconds']} s): p50 {w['p50_ms']} ms, p90 {w['p90_ms']} ms, max "
                  f"{w['max_ms']} ms over {w['queries']} queries (goal p50 <= 20 ms); "
                  f"of which encoding the query p50 {w['encode_p50_ms']} ms")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
