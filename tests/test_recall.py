"""Recall: hybrid search over an indexed commit, at any moment, with filters, in batches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from conftest import Clock, write_config
from test_embed import link_models, real_model
from vault.cli_recall import register
from vault.config import Config, load_config
from vault.embed import HashEmbedder
from vault.errors import UsageError
from vault.index import IndexOptions, build_index
from vault.recall import Recaller, RecallOptions, combine, fts_query, recall
from vault.repo import VaultRepo
from vault.sync import sync


def make_config(tmp_path: Path, workspace: Path, model: str = "hash:64") -> Config:
    path = write_config(tmp_path / "vault.toml", {"agent": workspace},
                        extra=f'\n[index]\nmodel = "{model}"')
    config = load_config(path)
    VaultRepo.init(config.vault.path, config.vault.branch)
    return config


def add_notes(workspace: Path) -> None:
    (workspace / "notes.md").write_text(
        "# Notes\n\n## Billing\n\n- Duplicate invoice bug BILL-412 traced to webhook retries.\n\n"
        "## Home\n\n- The kitchen renovation quote came in at 21,000 euro.\n")


def test_fts_query_and_fusion() -> None:
    assert fts_query("What did Sam say about BILL-412?") == '"sam" OR "bill" OR "412"'
    assert fts_query("the") == '"the"'  # only stopwords: keep them rather than nothing
    scores = combine({1: 0.9, 2: 0.5, 3: 0.1}, {3: 12.0, 1: 6.0, 4: 2.0})
    assert scores[1] == pytest.approx(0.5 * 1.0 + 0.5 * 0.5)  # each side scaled to [0, 1]
    assert scores[3] == pytest.approx(0.5) and scores[4] == pytest.approx(0.5 / 6)
    assert max(scores, key=lambda r: scores[r]) == 1


def test_recall_finds_exact_ids_and_says_where_and_when(tmp_path: Path, workspace: Path,
                                                         clock: Clock) -> None:
    add_notes(workspace)
    config = make_config(tmp_path, workspace)
    sync(config, now=clock)
    build_index(config, IndexOptions(), HashEmbedder(64))
    result = recall(config, "BILL-412", RecallOptions(k=3))
    assert result.indexed is None
    top = result.hits[0]
    assert (top.source, top.path, top.locator) == ("agent", "agent/notes.md", "L5")
    assert top.context == "Notes > Billing" and "BILL-412" in top.snippet
    assert top.changed == clock.now.replace(microsecond=0)
    assert top.lexical is not None and top.dense is not None
    lexical = recall(config, "BILL-412", RecallOptions(k=3, mode="lexical")).hits
    assert lexical[0].path == "agent/notes.md" and lexical[0].dense is None


def test_a_stale_index_is_brought_up_to_date_first(tmp_path: Path, workspace: Path,
                                                    clock: Clock) -> None:
    config = make_config(tmp_path, workspace)
    sync(config, now=clock)
    first = recall(config, "tea", RecallOptions(k=1))  # no index at all yet
    assert first.indexed is not None and first.indexed.new_commits == 1
    assert "tea" in first.hits[0].text
    add_notes(workspace)
    clock.tick(30)
    sync(config, now=clock)
    second = recall(config, "kitchen renovation", RecallOptions(k=1))
    assert second.indexed is not None and second.indexed.blobs_chunked == 1
    assert second.hits[0].path == "agent/notes.md"
    assert recall(config, "kitchen", RecallOptions(k=1)).indexed is None


def test_recall_at_searches_memory_as_it_was(tmp_path: Path, workspace: Path,
                                             clock: Clock) -> None:
    config = make_config(tmp_path, workspace)
    sync(config, now=clock)
    then = clock.now
    (workspace / "MEMORY.md").write_text("# Memory\n\n- The user switched to coffee.\n")
    clock.tick(120)
    sync(config, now=clock)
    now_hits = recall(config, "prefers tea", RecallOptions(k=10), now=clock.now).hits
    assert all("prefers tea" not in h.text for h in now_hits)
    old = recall(config, "prefers tea", RecallOptions(k=3, at=then.isoformat()), now=clock.now)
    assert old.commit_time == then.replace(microsecond=0)
    assert old.hits[0].path == "agent/MEMORY.md" and "prefers tea" in old.hits[0].text


def test_source_and_path_filters(tmp_path: Path, workspace: Path, clock: Clock) -> None:
    add_notes(workspace)
    config = make_config(tmp_path, workspace)
    sync(config, now=clock)
    only_md = recall(config, "tea kitchen memory", RecallOptions(k=20, paths=("*.md",))).hits
    assert only_md and all(h.path.endswith(".md") for h in only_md)
    in_folder = recall(config, "backup", RecallOptions(k=20, paths=("memory/",))).hits
    assert in_folder and all(h.path.startswith("agent/memory/") for h in in_folder)
    with pytest.raises(UsageError, match=r"^no source named 'nope' \(known: agent\)$"):
        recall(config, "tea", RecallOptions(sources=("nope",)))
    with pytest.raises(UsageError):
        recall(config, "tea", RecallOptions(mode="fuzzy"))
    for blank in ("", "   "):
        with pytest.raises(UsageError, match="the query is empty"):
            recall(config, blank, RecallOptions())


def test_batch_recall_loads_once_and_answers_each(tmp_path: Path, workspace: Path,
                                                  clock: Clock) -> None:
    add_notes(workspace)
    config = make_config(tmp_path, workspace)
    sync(config, now=clock)
    recaller = Recaller.open(config)
    try:
        results = recaller.recall_many(["BILL-412", "kitchen quote", "tea"],
                                       RecallOptions(k=2))
        assert len(recaller.searchers) == 1
    finally:
        recaller.close()
    assert [r.hits[0].path for r in results[:2]] == ["agent/notes.md", "agent/notes.md"]
    assert "tea" in results[2].hits[0].text


def _group() -> click.Group:
    group = click.Group("vault")
    register(group)
    return group


def test_cli_index_and_recall_json(tmp_path: Path, workspace: Path, clock: Clock) -> None:
    add_notes(workspace)
    config = make_config(tmp_path, workspace)
    sync(config, now=clock)
    runner = CliRunner()
    cfg = str(config.file)
    out = runner.invoke(_group(), ["index", "--config", cfg, "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["files"] == 6 and data["encoder"] == "hash" and data["new_commits"] == 1
    out = runner.invoke(_group(), ["recall", "BILL-412", "-k", "2", "--config", cfg, "--json"])
    assert out.exit_code == 0, out.output
    hits = json.loads(out.output)["hits"]
    assert len(hits) == 2 and hits[0]["locator"] == "L5"
    assert set(hits[0]) == {"score", "source", "path", "locator", "context", "snippet", "text",
                            "changed", "dense", "lexical"}
    queries = tmp_path / "queries.txt"
    queries.write_text("BILL-412\n\nkitchen\n")
    out = runner.invoke(_group(), ["recall", "--queries", str(queries), "--config", cfg])
    lines = [json.loads(line) for line in out.output.splitlines()]
    assert [line["query"] for line in lines] == ["BILL-412", "", "kitchen"]
    assert lines[1]["hits"] == [] and lines[1]["commit"] == lines[0]["commit"]
    assert lines[0]["hits"] and lines[2]["hits"]
    text = runner.invoke(_group(), ["recall", "kitchen", "--config", cfg])
    assert " 1. " in text.output and "agent/notes.md  L9" in text.output
    bad = runner.invoke(_group(), ["recall", "--config", cfg])
    assert isinstance(bad.exception, UsageError)


# --- the real model ----------------------------------------------------------------------


@pytest.mark.model
def test_real_model_recall_by_meaning_with_the_fast_encoder(tmp_path: Path, workspace: Path,
                                                            clock: Clock) -> None:
    add_notes(workspace)
    config = make_config(tmp_path, workspace, model="all-MiniLM-L6-v2")
    sync(config, now=clock)
    embedder, _ = real_model()
    link_models(config.models_dir)
    result = build_index(config, IndexOptions(), embedder)
    assert result.encoder == "sentence-transformers" and result.export_cosine is None
    recaller = Recaller.open(config)
    try:
        assert type(recaller.embedder).__name__ == "BackgroundEmbedder"
        meaning = recaller.recall("what hot drink does the user like?", RecallOptions(k=3))
        assert "prefers tea" in meaning.hits[0].text
        exact = recaller.recall("BILL-412", RecallOptions(k=3))
        assert exact.hits[0].locator == "L5"
    finally:
        recaller.close()


@pytest.mark.model
def test_the_query_path_never_imports_torch(tmp_path: Path, workspace: Path,
                                            clock: Clock) -> None:
    config = make_config(tmp_path, workspace, model="all-MiniLM-L6-v2")
    sync(config, now=clock)
    embedder, _ = real_model()
    link_models(config.models_dir)
    build_index(config, IndexOptions(), embedder)
    script = ("import sys; from vault.cli_recall import register, recall; "
              "from vault import cli; register(cli.cli); "
              "sys.argv = ['vault', 'recall', 'tea', '--json', '-k', '1']; "
              "import atexit; atexit.register(lambda: print('HEAVY', 'torch' in sys.modules or "
              "'sentence_transformers' in sys.modules, file=sys.stderr)); cli.main()")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "VAULT_CONFIG": str(config.file)}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY False" in proc.stderr
    assert "prefers tea" in json.loads(proc.stdout)["hits"][0]["text"]


def test_large_indexes_rank_in_a_reduced_space_with_the_same_results(
        tmp_path: Path, workspace: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    import vault.recall as recall_module

    for i in range(40):
        (workspace / "memory" / f"note-{i}.md").write_text(
            f"# Note {i}\n\n- Topic {i}: the user talked about item {i} and tea number {i}.\n")
    config = make_config(tmp_path, workspace, model="hash:256")
    sync(config, now=clock)
    monkeypatch.setattr(recall_module, "CANDIDATES", 10)
    exact = recall(config, "tea item 7", RecallOptions(k=5)).hits
    monkeypatch.setattr(recall_module, "PROJECT_ABOVE", 10)
    monkeypatch.setattr(recall_module, "PROJECTED_DIM", 64)
    monkeypatch.setattr(recall_module, "SHORTLIST", 30)
    recaller = Recaller.open(config)
    try:
        reduced = recaller.recall("tea item 7", RecallOptions(k=5))
        assert recaller.searchers[reduced.commit].view.projected is not None
    finally:
        recaller.close()
    # The same scores in the same order (rows that tie may swap places), the same best hit.
    assert [h.score for h in reduced.hits] == [h.score for h in exact]
    assert reduced.hits[0].path == exact[0].path == "agent/memory/note-7.md"


_EXIT_PROBE = (
    "import atexit, sys, threading\n"
    "def probe():\n"
    "    alive = [t.name for t in threading.enumerate() if t is not threading.main_thread()]\n"
    "    print('PROBE', 'onnxruntime' in sys.modules, alive, file=sys.stderr)\n"
    "atexit.register(probe)\n"
    "from vault import cli\n"
    "from vault.cli_recall import register\n"
    "if 'recall' not in cli.cli.commands:\n"
    "    register(cli.cli)\n"
    "sys.argv = ['vault', 'recall'] + sys.argv[1:]\n"
    "cli.main()\n")


def _real_index(tmp_path: Path, workspace: Path, clock: Clock) -> Config:
    """A vault of the workspace, synced and indexed with the real model."""
    config = make_config(tmp_path, workspace, model="all-MiniLM-L6-v2")
    sync(config, now=clock)
    embedder, _ = real_model()
    link_models(config.models_dir)
    build_index(config, IndexOptions(), embedder)
    return config


@pytest.mark.model
def test_recall_exits_with_no_encoder_thread_left_and_lexical_never_loads_it(
        tmp_path: Path, workspace: Path, clock: Clock) -> None:
    # A thread still building the ONNX session at interpreter exit made the process abort
    # (exit 134) after a lexical recall had printed its hits.
    add_notes(workspace)
    config = _real_index(tmp_path, workspace, clock)
    env = {**os.environ, "VAULT_CONFIG": str(config.file)}
    for mode, loads in (("lexical", False), ("hybrid", True), ("dense", True)):
        proc = subprocess.run([sys.executable, "-c", _EXIT_PROBE, "BILL-412", "--mode", mode,
                               "--json", "-k", "1"], capture_output=True, text=True, env=env,
                              timeout=120)
        assert proc.returncode == 0, (mode, proc.stderr)
        assert json.loads(proc.stdout)["hits"][0]["locator"] == "L5"
        assert f"PROBE {loads} []" in proc.stderr, (mode, proc.stderr)


@pytest.mark.model
def test_the_encoder_thread_imports_nothing(tmp_path: Path) -> None:
    # Two threads importing numpy at once can see it half initialised: every import the
    # encoder needs happens in the caller's thread, before the loading thread starts.
    embedder, models = real_model()
    script = (
        "import sys, threading\n"
        "from pathlib import Path\n"
        "seen = []\n"
        "class Spy:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        seen.append((threading.current_thread().name, name))\n"
        "        return None\n"
        "sys.meta_path.insert(0, Spy())\n"
        "from vault.embed import BackgroundEmbedder, make_query_embedder, resolve_model\n"
        "spec = resolve_model('all-MiniLM-L6-v2')\n"
        "e = make_query_embedder(spec, Path(sys.argv[1]), background=True)\n"
        "assert isinstance(e, BackgroundEmbedder) and not e.started\n"
        "e.start()\n"
        "e.close()\n"
        "print(e.embed_queries(['tea']).shape)\n"
        "print('THREAD', sorted({n for t, n in seen if t == 'vault-encoder'}))\n")
    proc = subprocess.run([sys.executable, "-c", script, str(models)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "(1, 384)" in proc.stdout and "THREAD []" in proc.stdout, proc.stdout


def _five_tasks(workspace: Path) -> None:
    """A vault of five entries, as in QA's report: "bill" and "412" are in a fifth of them."""
    for name in ("MEMORY.md", "memory.json", "memory/2026-11-20.md", "sessions/s1.jsonl",
                 "memory.db"):
        (workspace / name).unlink()
    (workspace / "tasks.json").write_text(json.dumps([
        {"id": "BILL-412", "text": "Electricity invoice overdue, pay before Friday"},
        {"id": "BILL-377", "text": "Water invoice paid in October"},
        {"id": "TASK-9", "text": "Renew passport at the consulate"},
        {"id": "TASK-12", "text": "Buy a birthday gift for Maria"},
        {"id": "NOTE-3", "text": "The landlord's phone number changed"}]))


def test_exact_ids_and_words_of_a_small_vault_are_never_dropped_as_common(
        tmp_path: Path, workspace: Path, clock: Clock) -> None:
    from vault.recall import exact_words

    assert exact_words("status of BILL-412 refund, v2 and user_id") == {
        "bill", "412", "v2", "user_id"}
    _five_tasks(workspace)
    config = make_config(tmp_path, workspace)
    sync(config, now=clock)
    hits = recall(config, "status of BILL-412 refund", RecallOptions(k=2, mode="lexical")).hits
    assert hits[0].locator == "/0" and hits[0].lexical is not None
    # In five texts any word is in a tenth of them: none is left out.
    hits = recall(config, "overdue invoice refund", RecallOptions(k=2, mode="lexical")).hits
    assert [h.locator for h in hits] == ["/0", "/1"]


@pytest.mark.model
def test_real_model_hybrid_ranks_an_exact_id_first_in_a_small_vault(
        tmp_path: Path, workspace: Path, clock: Clock) -> None:
    _five_tasks(workspace)
    config = _real_index(tmp_path, workspace, clock)
    for query in ("BILL-412 refund", "status of BILL-412 refund"):
        assert recall(config, query, RecallOptions(k=2)).hits[0].locator == "/0", query


def test_cli_usage_errors_of_recall(tmp_path: Path, workspace: Path, clock: Clock) -> None:
    from conftest import run_cli

    config = make_config(tmp_path, workspace)
    sync(config, now=clock)
    env = {"VAULT_CONFIG": str(config.file)}
    for args, error in (
            (["park", "--source", "nosuch"], "Error: no source named 'nosuch' (known: agent)"),
            ([""], "Error: the query is empty: give some words to look for"),
            (["   ", "-k", "1"], "Error: the query is empty: give some words to look for")):
        proc = run_cli("recall", *args, env=env)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert proc.stderr.splitlines()[0] == error and not proc.stdout
    blank = run_cli("recall", "--queries", "-", env=env)  # no lines at all: no output
    assert blank.returncode == 0 and blank.stdout == ""


def test_source_filter_with_one_folder_per_host(tmp_path: Path, workspace: Path,
                                                clock: Clock) -> None:
    """With layout "{host}/{source}" the first folder is the host: --source used to match
    nothing there, and its error listed host names as the known sources."""
    add_notes(workspace)
    path = write_config(tmp_path / "vault.toml", {"agent": workspace},
                        extra='layout = "{host}/{source}"\n'
                              '\n[index]\nmodel = "hash:64"')
    config = load_config(path)
    VaultRepo.init(config.vault.path, config.vault.branch)
    sync(config, now=clock)
    hits = recall(config, "kitchen quote", RecallOptions(k=5, sources=("agent",))).hits
    assert hits and all(h.path.startswith("testhost/agent/") for h in hits)
    with pytest.raises(UsageError, match=r"^no source named 'testhost' \(known: agent\)$"):
        recall(config, "tea", RecallOptions(sources=("testhost",)))
