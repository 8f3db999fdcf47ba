"""Recall and index: a hit's source with a host prefix, an [index] path that cannot be used, an
index made by a newer vault, and a model that cannot be loaded (QA findings F3, F5, F6, F7)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import apsw
import pytest
from click.testing import CliRunner

from conftest import Clock, run_cli, write_config
from test_recall import _group, add_notes
from vault.config import Config, load_config
from vault.embed import HashEmbedder
from vault.errors import ConfigError
from vault.index import IndexOptions, IndexStoreError, build_index
from vault.recall import RecallOptions, recall
from vault.repo import VaultRepo
from vault.sync import sync


def _vault(tmp_path: Path, workspace: Path, clock: Clock, extra: str = "",
           index: str = "") -> Config:
    path = write_config(tmp_path / "vault.toml", {"agent": workspace},
                        extra=extra + f'\n[index]\nmodel = "hash:64"\n{index}')
    config = load_config(path)
    VaultRepo.init(config.vault.path, config.vault.branch)
    sync(config, now=clock)
    return config


# --- F3: the source of a hit under layout "{host}/{source}" --------------------------------


def test_source_of_a_vault_path() -> None:
    from vault.recall import source_of

    assert source_of("agent/notes.md") == "agent"
    assert source_of("laptop/openclaw/memory/2026-11-20.md", 2) == "openclaw"
    # a commit made before the host prefix: its first folder is the source
    assert source_of("agent/notes.md", 2) == "agent"


def test_hits_name_their_source_not_the_host(tmp_path: Path, workspace: Path,
                                             clock: Clock) -> None:
    add_notes(workspace)
    config = _vault(tmp_path, workspace, clock, extra='layout = "{host}/{source}"')
    for sources in ((), ("agent",)):
        hits = recall(config, "kitchen quote", RecallOptions(k=3, sources=sources)).hits
        assert hits and all(h.path.startswith("testhost/agent/") for h in hits)
        assert {h.source for h in hits} == {"agent"}, sources
    out = CliRunner().invoke(_group(), ["recall", "kitchen quote", "-k", "3", "--json",
                                        "--source", "agent", "--config", str(config.file)])
    assert out.exit_code == 0, out.output
    hits = json.loads(out.output)["hits"]
    assert hits and {h["source"] for h in hits} == {"agent"}


# --- F5: an [index] path whose folder cannot be made ---------------------------------------


def _cli_error(proc: object) -> list[str]:
    lines = getattr(proc, "stderr").splitlines()
    return [line for line in lines if not line.startswith("The index is not up to date")]


@pytest.mark.parametrize("case", ["file in the way", "file above", "unwritable folder"])
def test_an_index_path_that_cannot_be_used_is_a_config_error(tmp_path: Path, workspace: Path,
                                                             clock: Clock, case: str) -> None:
    (tmp_path / "indexes").write_text("not a folder\n")
    if case == "file in the way":
        index = tmp_path / "indexes" / "index.db"
        reason = f"cannot create the folder {tmp_path}/indexes: a file has that name"
    elif case == "file above":
        index = tmp_path / "indexes" / "deeper" / "index.db"
        reason = (f"cannot create the folder {tmp_path}/indexes/deeper: "
                  f"{tmp_path}/indexes is a file")
    else:
        if not sys.platform.startswith("linux"):
            pytest.skip("needs /proc, a folder that takes no new files")
        index = Path("/proc/index.db")
        reason = "cannot write /proc/index.db.lock: No such file or directory"
    config = _vault(tmp_path, workspace, clock, index=f'path = "{index}"')
    env = {"VAULT_CONFIG": str(config.file)}
    for args in (["index"], ["recall", "tea"]):
        proc = run_cli(*args, env=env)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert _cli_error(proc) == [
            f"Error: {config.file}: index.path: {reason}",
            "Hint: set [index] path to a file in a folder vault can write"], args
    with pytest.raises(ConfigError):
        build_index(config, IndexOptions(), HashEmbedder(64))


def test_a_default_index_folder_that_cannot_be_made_is_one_line(tmp_path: Path,
                                                                workspace: Path,
                                                                clock: Clock) -> None:
    config = _vault(tmp_path, workspace, clock)
    state = config.state_dir
    for child in state.iterdir():
        child.unlink()
    state.rmdir()
    state.write_text("in the way\n")
    with pytest.raises(IndexStoreError) as caught:
        build_index(config, IndexOptions(), HashEmbedder(64))
    assert str(caught.value) == (f"the index {state}/index.db: cannot create the folder "
                                 f"{state}: a file has that name")
    assert caught.value.exit_code == 1


# --- F6: an index made by a newer vault ----------------------------------------------------


def test_a_newer_index_gives_a_hint_that_works(tmp_path: Path, workspace: Path,
                                               clock: Clock) -> None:
    add_notes(workspace)
    config = _vault(tmp_path, workspace, clock)
    build_index(config, IndexOptions(), HashEmbedder(64))
    conn = apsw.Connection(str(config.index_path))
    conn.execute("PRAGMA user_version=3")
    conn.close()
    env = {"VAULT_CONFIG": str(config.file)}
    expected = [f"Error: the index {config.index_path} was made by a newer vault (schema 3, "
                f"this vault knows 2)",
                "Hint: upgrade vault, or run `vault index --rebuild` to make it again from "
                "the vault"]
    for args in (["recall", "kitchen"], ["index"]):
        proc = run_cli(*args, env=env)
        assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
        assert proc.stderr.splitlines() == expected, args
    # the hint, followed: the index is made again and recall answers
    rebuilt = run_cli("index", "--rebuild", env=env)
    assert rebuilt.returncode == 0, rebuilt.stderr
    proc = run_cli("recall", "kitchen quote", "-k", "1", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["hits"][0]["path"] == "agent/notes.md"


# --- F7: a model that cannot be loaded -----------------------------------------------------


def test_a_model_missing_from_the_cache_is_one_line_without_the_hub(
        tmp_path: Path, workspace: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("sentence_transformers")
    config = _vault(tmp_path, workspace, clock)
    text = config.file.read_text().replace('model = "hash:64"',
                                           'model = "vault-tests/no-such-model"')
    config.file.write_text(text)
    cache = tmp_path / "hf-cache"
    monkeypatch.delenv("SENTENCE_TRANSFORMERS_HOME", raising=False)
    proc = run_cli("index", env={"VAULT_CONFIG": str(config.file), "HF_HUB_CACHE": str(cache)})
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert lines[0] == (f"Error: cannot load model vault-tests/no-such-model: not in the local "
                        f"model cache {cache} (vault never downloads models)")
    assert len(lines) == 2 and lines[1].startswith("Hint: set [index] model to a model folder "
                                                   "or a cached model, or leave it out for "
                                                   "the default all-MiniLM-L6-v2")
    assert "huggingface.co" not in proc.stderr


def test_a_model_folder_that_cannot_be_loaded_is_one_line(tmp_path: Path) -> None:
    pytest.importorskip("sentence_transformers")
    from vault.embed import EmbedError, SentenceTransformerEmbedder, resolve_model

    folder = tmp_path / "broken-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    embedder = SentenceTransformerEmbedder(resolve_model("broken-model", tmp_path))
    with pytest.raises(EmbedError) as caught:
        embedder.embed_documents(["tea"])
    message = str(caught.value)
    assert message.startswith(f"cannot load model broken-model: from {folder}: ")
    assert "\n" not in message and "huggingface.co" not in message


# --- --queries FILE that is not UTF-8 --------------------------------------------------------


def test_queries_file_is_read_as_memory_files_are_whatever_it_was_saved_as(
        tmp_path: Path, workspace: Path, clock: Clock) -> None:
    add_notes(workspace)
    config = _vault(tmp_path, workspace, clock)
    build_index(config, IndexOptions(), HashEmbedder(64))
    env = {"VAULT_CONFIG": str(config.file)}
    wanted = ["kitchen quote", "café menu", "", "naïve\u2028plan"]
    saved = {"latin1.txt": b"kitchen quote\ncaf\xe9 menu\n\nna\xefve plan\n",  # Notepad's ANSI
             "utf8.txt": "\ufeff" + "\n".join(wanted) + "\n",
             "utf16.txt": "\r\n".join(wanted).encode("utf-16")}  # PowerShell's `>`
    for name, data in saved.items():
        path = tmp_path / name
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        proc = run_cli("recall", "--queries", str(path), "-k", "1", env=env)
        assert proc.returncode == 0, (name, proc.stderr)
        # (split at newlines only: a query's U+2028 is written raw)
        results = [json.loads(line) for line in proc.stdout.split("\n") if line]
        expected = wanted if name != "latin1.txt" else [*wanted[:3], "naïve plan"]
        assert [r["query"] for r in results] == expected, name  # line N answers line N
        assert results[0]["hits"][0]["path"] == "agent/notes.md"
    binary = tmp_path / "queries.bin"
    binary.write_bytes(b"kitchen\0\x01\x02\xff")
    for args, shown in ((["--queries", str(binary)], str(binary)), (["--queries", "-"], "-")):
        proc = subprocess.run([sys.executable, "-m", "vault", "recall", *args],
                              input=binary.read_bytes(), capture_output=True, timeout=120,
                              env={**os.environ, **env})
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.decode().splitlines() == [
            f"Error: --queries {shown}: not a text file (one query a line)"]


def test_a_query_with_a_lone_surrogate_is_a_usage_error(tmp_path: Path, workspace: Path,
                                                        clock: Clock) -> None:
    # (the CLI reads a query's bytes as text first; a library caller may pass anything)
    config = _vault(tmp_path, workspace, clock)
    from vault.errors import UsageError

    with pytest.raises(UsageError) as err:
        recall(config, "caf\udce9", RecallOptions(mode="lexical"))
    assert err.value.message == "the query is not valid text (it holds a lone surrogate)"


def test_a_k_beyond_the_limit_is_a_usage_error(tmp_path: Path, workspace: Path,
                                               clock: Clock) -> None:
    config = _vault(tmp_path, workspace, clock)
    from vault.errors import UsageError
    from vault.recall import MAX_K

    with pytest.raises(UsageError) as err:
        recall(config, "tea", RecallOptions(k=2**63 - 1, mode="lexical"))
    assert err.value.message == f"-k must be at most {MAX_K}"
    assert recall(config, "tea", RecallOptions(k=MAX_K, mode="lexical")).hits


# --- a tool call whose "function" is not an object -------------------------------------------


@pytest.mark.parametrize("function", ["lookup", ["lookup"], 7, None, True])
def test_a_tool_call_whose_function_is_not_an_object_is_summarised(function: object) -> None:
    from vault.chunk import chunk_jsonl

    for part, shown in (({"arguments": "{}"}, "[tool lookup: {}]"),
                        ({"input": {"q": "tea"}}, "[tool lookup: tea]"),
                        ({}, "[tool lookup: ]")):
        line = json.dumps({"role": "assistant", "content": [
            {"type": "function_call", "name": "lookup", "function": function, **part}]})
        assert [c.text for c in chunk_jsonl(line)] == [f"assistant: {shown}"], part
    line = json.dumps({"role": "assistant", "content": [
        {"type": "tool_call", "function": function}, {"type": "text", "text": "done"}]})
    assert [c.text for c in chunk_jsonl(line)] == ["assistant: [tool tool: ]\ndone"]
    line = json.dumps({"role": "assistant", "content": [
        {"type": "tool_call", "function": {"name": "find", "arguments": '{"q": 1}'}}]})
    assert [c.text for c in chunk_jsonl(line)] == ['assistant: [tool find: {"q": 1}]']


def test_a_transcript_with_a_string_function_is_indexed(tmp_path: Path, workspace: Path,
                                                        clock: Clock) -> None:
    (workspace / "sessions" / "s2.jsonl").write_text(json.dumps(
        {"role": "assistant", "content": [{"type": "function_call", "name": "lookup",
                                           "arguments": "{}", "function": "lookup"}]}) + "\n")
    config = _vault(tmp_path, workspace, clock)
    env = {"VAULT_CONFIG": str(config.file)}
    for args in (["index"], ["recall", "lookup", "-k", "1", "--json"]):
        proc = run_cli(*args, env=env)
        assert proc.returncode == 0, (args, proc.stderr)
    assert json.loads(proc.stdout)["hits"][0]["path"] == "agent/sessions/s2.jsonl"


# --- a snake_case key or a heading that took exponential or quadratic time -------------------


def test_key_words_and_headings_are_read_as_before() -> None:
    from vault.chunk import _KEY_WORD, _heading, chunk_markdown

    for key in ("what_did_i_say", "_private", "a__b", "first name", "e-mail", "naïve_key_"):
        assert _KEY_WORD.match(key), key
    for key in ("what_did_i_say_v2", "a  b", "a-", "a -b", "2fa", " a", "what_did_i-"):
        assert not _KEY_WORD.match(key), key
    spaces = " " * 16000
    assert _heading("# a" + spaces + "b") == (1, "a" + spaces + "b")
    assert _heading("## a" + spaces + "#" + spaces) == (2, "a")
    for line, heading in (("## Title ##", (2, "Title")), ("# foo#", (1, "foo#")),
                          ("#  ##", (1, "##")), ("# foo # bar", (1, "foo # bar")),
                          ("#", (1, "")), ("#\t", (1, "")), ("   ### x", (3, "x")),
                          ("####### x", None), ("#x", None), ("    # x", None)):
        assert _heading(line) == heading, line
    chunks = chunk_markdown("# a" + spaces + "b ##\n\nbody text here\n")
    assert [(c.context, c.text) for c in chunks] == [("a" + spaces + "b", "body text here")]


def test_a_long_snake_case_key_and_a_long_heading_are_chunked(tmp_path: Path) -> None:
    # Before: 35 words of a key with a digit at its end took about an hour to chunk, a heading
    # with 60,000 spaces in it 22 s. The timeout is a guard against a hang, not a speed test.
    key = "_".join(["what", "did", "i", "say"] * 9) + "_v2"
    script = (
        "import sys\n"
        "from vault.chunk import chunk_json, chunk_markdown\n"
        f"doc = {{{key!r}: {{'note': 'The user prefers green tea in the morning.'}}}}\n"
        "print(len(chunk_json(doc)))\n"
        "print(chunk_markdown('# a' + ' ' * 60000 + 'b\\n\\nbody text\\n')[0].context == "
        "'a' + ' ' * 60000 + 'b')\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False, cwd=Path(__file__).parent.parent)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "True"]


# --- an [index] path that is a FIFO or a device ----------------------------------------------


def _special_index(tmp_path: Path, workspace: Path, clock: Clock, kind: str) -> Config:
    index = tmp_path / "special" / "index.db"
    index.parent.mkdir()
    if kind == "fifo":
        os.mkfifo(index)
    else:
        if os.geteuid() != 0:
            pytest.skip("making a device takes root")
        os.mknod(index, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # a /dev/null of our own
    add_notes(workspace)
    return _vault(tmp_path, workspace, clock, index=f'path = "{index}"')


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_an_index_path_that_is_a_fifo_or_a_device_is_refused(tmp_path: Path, workspace: Path,
                                                             clock: Clock, kind: str) -> None:
    config = _special_index(tmp_path, workspace, clock, kind)
    index = config.index_path
    what = "a FIFO" if kind == "fifo" else "a character device"
    env = {**os.environ, "VAULT_CONFIG": str(config.file)}
    for args in (["recall", "kitchen"], ["index"], ["index", "--rebuild"]):
        # (before, opening the FIFO blocked for good: the timeout guards against a hang)
        proc = subprocess.run([sys.executable, "-m", "vault", *args], capture_output=True,
                              text=True, env=env, timeout=60, check=False)
        assert proc.returncode == 1, (args, proc.stderr)
        assert _cli_error(proc) == [f"Error: {index} is not a vault index ({what}, not a file)",
                                    "Hint: set [index] path to a new file"], args
        mode = os.lstat(index).st_mode
        assert (stat.S_ISFIFO(mode) if kind == "fifo" else stat.S_ISCHR(mode)), args
