"""The index takes whatever a memory file holds: half an emoji, JSON nested deeper than
Python's recursion limit, Unicode line separators inside a transcript message."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from conftest import Clock, write_config
from test_recall import _group
from vault.config import Config, load_config
from vault.embed import HashEmbedder
from vault.index import IndexOptions, build_index
from vault.recall import RecallOptions, recall
from vault.repo import VaultRepo
from vault.sync import sync


def _vault(tmp_path: Path, workspace: Path, clock: Clock) -> Config:
    path = write_config(tmp_path / "vault.toml", {"agent": workspace},
                        extra='\n[index]\nmodel = "hash:64"\n')
    config = load_config(path)
    VaultRepo.init(config.vault.path, config.vault.branch)
    sync(config, now=clock)
    return config


def test_half_an_emoji_in_json_and_jsonl_is_indexed_and_found(
        tmp_path: Path, workspace: Path, clock: Clock) -> None:
    (workspace / "s.jsonl").write_text(
        '{"type":"message","message":{"role":"user","content":'
        '"The dentist moved to Harbour Street \\ud83d so what now"}}\n')
    (workspace / "facts.json").write_text(
        '[{"fact": "The greenhouse tomatoes need water \\udc00 every evening"}]')
    config = _vault(tmp_path, workspace, clock)
    result = build_index(config, IndexOptions(), HashEmbedder(64))
    assert result.files == 7 and not result.warnings
    hits = recall(config, "Harbour Street dentist", RecallOptions(k=1, mode="lexical")).hits
    assert hits[0].path.endswith("s.jsonl")
    assert hits[0].text == "user: The dentist moved to Harbour Street \ufffd so what now"
    out = CliRunner().invoke(_group(), ["recall", "greenhouse tomatoes", "-k", "1", "--json",
                                        "--config", str(config.file)])
    assert out.exit_code == 0, out.output
    assert "\ufffd every evening" in json.loads(out.output)["hits"][0]["text"]


def test_json_nested_past_the_recursion_limit_is_indexed_and_the_rest_too(
        tmp_path: Path, workspace: Path, clock: Clock) -> None:
    deep = 1000
    (workspace / "deep.json").write_text(
        "[" * deep + '"The attic key hangs behind the blue door"' + "]" * deep)
    tool_input = "[" * 450 + "1" + "]" * 450
    (workspace / "t.jsonl").write_text(
        '{"role":"assistant","content":[{"type":"text","text":"Opening the archive for the '
        'tax papers now"},{"type":"tool_use","name":"unzip","input":' + tool_input + '}]}\n')
    config = _vault(tmp_path, workspace, clock)
    result = build_index(config, IndexOptions(), HashEmbedder(64))
    assert result.files == 7
    hits = recall(config, "attic key blue door", RecallOptions(k=1, mode="lexical")).hits
    assert hits[0].path.endswith("deep.json")  # read as text, as JSON that does not parse is
    hits = recall(config, "archive tax papers", RecallOptions(k=1, mode="lexical")).hits
    assert hits[0].path.endswith("t.jsonl") and hits[0].locator == "L1"
    assert hits[0].text.startswith("assistant: Opening the archive for the tax papers now\n"
                                   "[tool unzip: ")
    hits = recall(config, "user prefers tea", RecallOptions(k=1, mode="lexical")).hits
    assert hits[0].path.endswith("MEMORY.md")  # the workspace's other files are indexed


def test_a_raw_line_separator_in_a_message_keeps_it_and_later_locators(
        tmp_path: Path, workspace: Path, clock: Clock) -> None:
    msgs = [("user", "Please book the dentist appointment for Tuesday."),
            ("assistant", "Booked the dentist for Tuesday.\u2028The address is Harbour Street."),
            ("user", "Also remind me to water the tomato plants tonight.")]
    (workspace / "chat.jsonl").write_text("".join(
        json.dumps({"type": "message", "message": {"role": r, "content": t}},
                   ensure_ascii=False) + "\n" for r, t in msgs), encoding="utf-8")
    config = _vault(tmp_path, workspace, clock)
    build_index(config, IndexOptions(), HashEmbedder(64))
    for query, locator in (("Harbour Street address", "L2"), ("tomato plants", "L3")):
        hit = recall(config, query, RecallOptions(k=1, mode="lexical")).hits[0]
        assert (hit.path.rsplit("/", 1)[-1], hit.locator) == ("chat.jsonl", locator), query
