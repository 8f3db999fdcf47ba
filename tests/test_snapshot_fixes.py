"""JSONL transcripts in UTF-16 and UTF-32 (a BOM, or JSON's NUL rule) are cut at whole lines."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from conftest import Clock, write_config
from vault.config import load_config
from vault.repo import VaultRepo
from vault.sync import sync

# U+0A41 is 0a 41 in UTF-16BE: a 0a byte that is no newline; U+0100 after it (00 01 in LE)
# makes "0a 00" across two UTF-16LE units.
LINES = '{"role":"user","text":"hi \u0a41\u0100"}\n{"role":"agent","text":"yo"}\n'


@pytest.mark.parametrize("encoding,bom", [
    ("utf-16-le", codecs.BOM_UTF16_LE), ("utf-16-be", codecs.BOM_UTF16_BE),
    ("utf-32-le", codecs.BOM_UTF32_LE), ("utf-32-be", codecs.BOM_UTF32_BE),
    ("utf-16-le", b""), ("utf-16-be", b""),
])
def test_a_wide_jsonl_transcript_is_stored_whole_and_waits_for_whole_lines(
        tmp_path: Path, clock: Clock, encoding: str, bom: bytes) -> None:
    src = tmp_path / "src"
    src.mkdir()
    transcript = src / "t.jsonl"
    whole = bom + LINES.encode(encoding)
    transcript.write_bytes(whole)
    config = load_config(write_config(tmp_path / "vault.toml", {"a": src}))
    repo, _ = VaultRepo.init(config.vault.path, config.vault.branch)

    def stored() -> bytes:
        return repo.read_blob(repo.files(repo.head_id())["a/t.jsonl"][0])

    result = sync(config, now=clock)
    assert result.waiting == ()  # (UTF-16LE was stored one byte short, its last NUL waiting)
    assert stored() == whole

    partial = '{"role":"user","text":"\u0a41'.encode(encoding)  # (BE: cut after its 0a)
    transcript.write_bytes(whole + partial)
    clock.tick()
    result = sync(config, now=clock)
    assert [w.reason for w in result.waiting] == [
        f"{len(partial)} bytes of an unfinished last line wait for its newline"]
    assert stored() == whole

    done = whole + '{"role":"user","text":"more"}\n'.encode(encoding)
    transcript.write_bytes(done)
    clock.tick()
    assert sync(config, now=clock).modified == ("a/t.jsonl",)
    assert stored() == done
