"""Retrieval quality of `vault recall`: recall@5 and recall@10 for dense, lexical and hybrid.

The set (benchmarks/eval/memory_qa.py): one user's conversations with her assistant over many
sessions; each question's answer sits in one known turn. The sessions are written as agent
memory in three layouts (JSONL transcripts, JSON session files, Markdown logs), beside the
bundled example memory of another user as noise, synced into a real vault, indexed with the
real model, and searched with the query path `vault recall` uses. A question counts as found
at k when one of the first k hits is the evidence turn (same file, locator covering the turn).

    python benchmarks/eval_recall.py [--model all-MiniLM-L6-v2] [--noise-scale 2]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE / "eval"))

from memory_qa import DISTRACTORS, FACTS, FILLER  # noqa: E402

from vault.config import load_config  # noqa: E402
from vault.embed import make_embedder, resolve_model  # noqa: E402
from vault.examples import generate  # noqa: E402
from vault.index import IndexOptions, build_index  # noqa: E402
from vault.recall import Recaller, RecallOptions  # noqa: E402
from vault.repo import VaultRepo  # noqa: E402
from vault.sync import sync  # noqa: E402

START = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
SPEAKERS = {"user": "Maya", "assistant": "Assistant"}


def write_conversations(root: Path, seed: int = 0) -> list[tuple[str, str, str]]:
    """Write the sessions; return (question, evidence path, evidence locator) per fact."""
    rng = random.Random(seed)
    content = [(s, t, q) for s, t, q in FACTS] + [(s, t, None) for s, t in DISTRACTORS]
    rng.shuffle(content)
    per_session = 3
    sessions = [content[i:i + per_session] for i in range(0, len(content), per_session)]
    truth: list[tuple[str, str, str]] = []
    for n, turns_in in enumerate(sessions):
        day = START + timedelta(days=3 * n, hours=rng.randint(0, 10))
        turns: list[tuple[str, str, str | None]] = []
        fillers = rng.sample(FILLER, 7)
        for speaker, text in fillers[:2]:
            turns.append((speaker, text, None))
        rest = [(s, t, None) for s, t in fillers[2:]] + [(s, t, q) for s, t, q in turns_in]
        rng.shuffle(rest)
        turns += rest
        layout = n % 3
        if layout == 0:
            path = f"chat/sessions/session-{n:02d}.jsonl"
            lines = [json.dumps({"type": "session", "id": f"s{n:02d}",
                                 "timestamp": day.isoformat()})]
            for i, (speaker, text, question) in enumerate(turns):
                stamp = (day + timedelta(minutes=2 * i)).isoformat()
                lines.append(json.dumps({"type": "message", "timestamp": stamp, "message": {
                    "role": speaker, "content": [{"type": "text", "text": text}]}}))
                if question:
                    truth.append((question, path, f"L{len(lines)}"))
            body = "\n".join(lines) + "\n"
        elif layout == 1:
            path = f"chat/conversations/conv-{n:02d}.json"
            records = []
            for i, (speaker, text, question) in enumerate(turns):
                records.append({"speaker": SPEAKERS[speaker], "dia_id": f"D{n}:{i + 1}",
                                "text": text})
                if question:
                    truth.append((question, path, f"/turns/{i}"))
            body = json.dumps({"session": n, "date_time": day.strftime("%-I:%M %p on %-d %B, %Y"),
                               "turns": records}, indent=2)
        else:
            path = f"chat/log/{day:%Y-%m-%d}.md"
            lines = [f"# Conversation {day:%Y-%m-%d}", ""]
            for speaker, text, question in turns:
                lines.append(f"**{SPEAKERS[speaker]}**: {text}")
                if question:
                    truth.append((question, path, f"L{len(lines)}"))
                lines.append("")
            body = "\n".join(lines)
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body, encoding="utf-8")
    return truth


def covers(locator: str, evidence: str) -> bool:
    """Whether a hit's locator points at the evidence turn."""
    if evidence.startswith("/"):
        return locator == evidence or locator.startswith(evidence + "#")
    base = locator.split("#", 1)[0]
    if not base.startswith("L"):
        return False
    first, _, last = base[1:].partition("-L")
    line = int(evidence[1:])
    return int(first) <= line <= int(last or first)


def run(model: str, noise_scale: int, keep: Path | None,
        fast_models: Path | None = None) -> dict[str, object]:
    """Build the vault, index it, answer every question in every mode."""
    root = keep or Path(tempfile.mkdtemp(prefix="vault-eval-"))
    try:
        memory = root / "memory"
        truth = write_conversations(memory)
        generate(memory / "agent", scale=noise_scale)
        config_path = root / "vault.toml"
        config_path.write_text(
            f'[vault]\npath = "{root / "vault"}"\n\n[index]\nmodel = "{model}"\n\n'
            f'[[sources]]\nname = "chat"\npath = "{memory / "chat"}"\n\n'
            f'[[sources]]\nname = "agent"\npath = "{memory / "agent"}"\n')
        import os

        os.environ["VAULT_HOME"] = str(root / "home")
        config = load_config(config_path)
        VaultRepo.init(config.vault.path, config.vault.branch)
        sync(config)
        spec = resolve_model(model)
        embedder = make_embedder(spec)
        if fast_models is not None:  # tuning runs: the ONNX twin gives the same vectors
            from vault.embed import load_query_encoder

            embedder = load_query_encoder(fast_models, spec) or embedder
            (root / "home").mkdir(exist_ok=True)
            if not (root / "home" / "models").exists():
                (root / "home" / "models").symlink_to(fast_models)
        started = time.perf_counter()
        indexed = build_index(config, IndexOptions(), embedder)
        index_seconds = time.perf_counter() - started
        recaller = Recaller.open(config)
        results: dict[str, dict[str, float]] = {}
        misses: dict[str, list[str]] = {}
        try:
            for mode in ("dense", "lexical", "hybrid"):
                found5 = found10 = 0
                rr = 0.0
                misses[mode] = []
                for question, path, locator in truth:
                    hits = recaller.recall(question, RecallOptions(k=10, mode=mode)).hits
                    rank = next((i for i, h in enumerate(hits, 1)
                                 if h.path == path and covers(h.locator, locator)), None)
                    if rank is not None:
                        found10 += 1
                        found5 += rank <= 5
                        rr += 1.0 / rank
                    else:
                        misses[mode].append(question)
                n = len(truth)
                results[mode] = {"recall@5": found5 / n, "recall@10": found10 / n,
                                 "mrr@10": rr / n}
        finally:
            recaller.close()
        return {"model": indexed.model, "questions": len(truth), "chunks": indexed.chunks,
                "files": indexed.files, "index_seconds": round(index_seconds, 1),
                "results": results, "misses": misses}
    finally:
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--noise-scale", type=int, default=2,
                        help="scale of the other user's example memory mixed in as noise")
    parser.add_argument("--keep", type=Path, help="build in this folder and keep it")
    parser.add_argument("--fast-models", type=Path,
                        help="index with the ONNX twin exported in this folder (tuning runs)")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "eval_recall.json")
    args = parser.parse_args()
    report = run(args.model, args.noise_scale, args.keep, args.fast_models)
    print(f"Retrieval evaluation: {report['questions']} questions, {report['chunks']} chunks "
          f"in {report['files']} files, model {report['model']}")
    print(f"{'ranking':10} {'recall@5':>9} {'recall@10':>10} {'MRR@10':>8}")
    results = report["results"]
    assert isinstance(results, dict)
    for mode, row in results.items():
        print(f"{mode:10} {row['recall@5']:9.3f} {row['recall@10']:10.3f} {row['mrr@10']:8.3f}")
    best_single = max(results["dense"]["recall@10"], results["lexical"]["recall@10"])
    print(f"hybrid beats both at 10: {results['hybrid']['recall@10'] > best_single}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
