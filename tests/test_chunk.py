"""Chunking follows each kind's structure: headings, JSON entries, messages, table rows."""

from __future__ import annotations

import json
from pathlib import Path

import apsw

from vault.chunk import HARD_CHARS, chunk_file, chunk_json, chunk_jsonl, chunk_markdown, file_kind
from vault.sqlite_dump import snapshot_sqlite

MARKDOWN = """# Memory

Intro line.

## About Sam
- Sam prefers tea in the morning.
- Editor: Neovim.

## Projects
### Tidewater
Cutover moved to 18 Nov.

```python
# not a heading
x = 1
```
"""


def test_markdown_sections_keep_the_heading_path_and_lines() -> None:
    chunks = chunk_markdown(MARKDOWN, title="MEMORY.md")
    by_text = {c.text.splitlines()[0]: c for c in chunks}
    assert by_text["Intro line."].context == "Memory"
    assert by_text["Intro line."].locator == "L3"
    about = by_text["- Sam prefers tea in the morning."]
    assert about.context == "Memory > About Sam"
    assert about.locator == "L6-L7"
    tide = by_text["Cutover moved to 18 Nov."]
    assert tide.context == "Memory > Projects > Tidewater"
    assert "# not a heading" in tide.text  # a fenced comment is not a heading
    assert tide.embed_text.startswith("Memory > Projects > Tidewater\n")


def test_long_sections_split_by_paragraph_and_stay_under_the_limit() -> None:
    paragraphs = [f"Paragraph {i}: " + "word " * 60 for i in range(12)]
    text = "# Notes\n\n" + "\n\n".join(paragraphs) + "\n\n" + "x" * 3000 + "\n"
    chunks = chunk_markdown(text)
    assert len(chunks) > 4
    assert all(len(c.text) <= HARD_CHARS for c in chunks)
    assert all(c.context == "Notes" for c in chunks)
    assert chunks[0].locator.startswith("L3")


def test_json_entries_with_pointers_and_ids_kept_for_exact_search() -> None:
    doc = [{"id": "0677e1e5-3f00-4773-8d4c-b900a9b8950a", "timestamp": "2026-11-01T07:54:53",
            "content": "Sourdough starter lives in the fridge; feed it the night before.",
            "tags": ["cooking", "food"], "embedding": [0.1, 0.2, 0.3]},
           {"id": "x", "content": "The electrician is booked for 23 Nov."}]
    chunks = chunk_json(doc)
    assert [c.locator for c in chunks] == ["/0", "/1"]
    first = chunks[0]
    assert first.text.startswith("Sourdough starter lives in the fridge")
    assert "tags: cooking, food" in first.text
    assert "0677e1e5-3f00-4773-8d4c-b900a9b8950a" in first.keys  # searchable, not embedded
    assert "0677e1e5" not in first.text and "0.1" not in first.text


def test_json_keyed_records_and_nested_conversation_turns() -> None:
    doc = {"ctx_0001": {"title": "Kitchen renovation", "content": "Quote of 21.000 euro from "
                        "Van Dijk, installation included."},
           "sessions": [{"date": "8 May 2023", "turns": [
               {"speaker": "Caroline", "text": "I went to a support group yesterday."},
               {"speaker": "Melanie", "text": "That sounds like it was really helpful."}]}]}
    chunks = {c.locator: c for c in chunk_json(doc)}
    assert "Van Dijk" in chunks["/ctx_0001"].text
    turn = chunks["/sessions/0/turns/0"]
    assert turn.text == "Caroline: I went to a support group yesterday."
    assert "8 May 2023" in turn.context


def test_jsonl_transcript_by_message_with_tool_calls_summarised() -> None:
    lines = [
        {"type": "session", "id": "s1"},
        {"type": "message", "message": {"role": "user", "content": [
            {"type": "text", "text": "Why is the elevation gain so high?"}]}},
        {"type": "message", "message": {"role": "assistant", "content": [
            {"type": "text", "text": "Checking."},
            {"type": "toolCall", "name": "exec", "arguments": {"command": "cargo test -q"}}]}},
        {"type": "message", "message": {"role": "toolResult", "content": [
            {"type": "text", "text": "test result: ok. 50 passed"}]}},
        {"role": "assistant", "content": "GPS noise: smooth the elevations first."},
    ]
    text = "\n".join(json.dumps(x) for x in lines) + "\n{\"role\": \"user\", \"cont"
    chunks = chunk_jsonl(text)
    assert [c.locator for c in chunks] == ["L2", "L3", "L5"]
    assert chunks[0].text == "user: Why is the elevation gain so high?"
    assert chunks[1].text == "assistant: Checking.\n[tool exec: cargo test -q]"
    assert "50 passed" not in " ".join(c.text for c in chunks)  # tool output left out


def test_sqlite_rows_without_blobs_or_fts_shadow_tables(tmp_path: Path) -> None:
    db_path = tmp_path / "memory.db"
    db = apsw.Connection(str(db_path))
    db.execute("CREATE TABLE memories(id INTEGER PRIMARY KEY, content TEXT, metadata TEXT, "
               "embedding BLOB)")
    db.execute("CREATE VIRTUAL TABLE memories_fts USING fts5(content, content='memories', "
               "content_rowid='id')")
    db.execute("CREATE VIRTUAL TABLE notes_fts USING fts5(body)")
    db.execute("CREATE TABLE counters(name TEXT PRIMARY KEY, n INTEGER) WITHOUT ROWID")
    with db:
        db.execute("INSERT INTO memories VALUES(7, 'The user prefers tea over coffee.', "
                   "'{\"topic\": \"food\", \"tags\": [\"drinks\"]}', x'00ff00ff')")
        db.execute("INSERT INTO memories_fts(rowid, content) VALUES(7, 'The user prefers tea "
                   "over coffee.')")
        db.execute("INSERT INTO notes_fts(rowid, body) VALUES(3, 'Standup moved to 9:30 on "
                   "Mondays.')")
        db.execute("INSERT INTO counters VALUES('x', 1)")
    db.close()
    data = snapshot_sqlite(db_path)
    assert file_kind("memory.db", data) == "sqlite"
    chunks = chunk_file("agent/memory.db", data)
    by_locator = {c.locator: c for c in chunks}
    assert set(by_locator) == {"memories:7", "notes_fts:3"}
    memory = by_locator["memories:7"]
    assert memory.text.startswith("The user prefers tea over coffee.")
    assert "topic: food" in memory.text and memory.context == "memories"
    assert "ff00" not in memory.text + memory.keys


def test_other_text_by_paragraph_and_binary_gives_nothing() -> None:
    chunks = chunk_file("notes.txt", b"First paragraph here.\n\nSecond one, a bit later.\n")
    assert [c.locator for c in chunks] == ["L1-L3"]  # packed: both are short
    assert chunk_file("image.png", b"\x89PNG\0\0binary") == []
    assert chunk_file("broken.json", b"{not json but words in it}")[0].text.startswith("{not")


def test_a_lone_surrogate_escape_is_read_as_the_replacement_character() -> None:
    # JSON.stringify of a string cut in the middle of an emoji writes half a surrogate pair;
    # json.loads gives it back as a lone surrogate, which UTF-8 cannot encode.
    line = (b'{"type":"message","message":{"role":"user",'
            b'"content":"Cut mid emoji here \\ud83d so what now"}}\n')
    assert [c.text for c in chunk_file("t.jsonl", line)] == [
        "user: Cut mid emoji here \ufffd so what now"]
    doc = b'[{"note \\udc00": "The kitchen is blue \\ud83d\\ude00 and \\ud83d done"}]'
    assert [c.text for c in chunk_file("m.json", doc)] == [
        "note \ufffd: The kitchen is blue \U0001F600 and \ufffd done"]
    for chunk in chunk_file("m.json", doc) + chunk_file("t.jsonl", line):
        chunk.embed_text.encode("utf-8")  # (raised UnicodeEncodeError before)


def test_json_deeper_than_the_limit_is_read_as_text_wherever_it_is_cut() -> None:
    import sys

    from vault.chunk import MAX_JSON_DEPTH

    def doc(depth: int) -> bytes:
        return ("[" * depth + '"The attic key hangs behind the blue door"'
                + "]" * depth).encode()

    assert [c.locator for c in chunk_file("a.json", doc(60))] == ["/0" * 60]
    over = chunk_file("a.json", doc(MAX_JSON_DEPTH + 1))
    assert over and over[0].locator == "L1" and "attic key" in over[0].text

    def nested(n: int) -> list[object]:  # the same cut from deeper in the call stack
        return nested(n - 1) if n else chunk_file("a.json", doc(MAX_JSON_DEPTH + 1))

    assert nested(sys.getrecursionlimit() - MAX_JSON_DEPTH - 200) == over


def test_lines_end_at_newlines_only_so_locators_match_the_file() -> None:
    # json.dumps(ensure_ascii=False) and JSON.stringify write U+2028 raw inside a string;
    # str.splitlines() cut the line there, dropped the message and misnumbered later lines.
    msgs = [("user", "Please book the dentist for Tuesday."),
            ("assistant", "Booked for Tuesday at 10.\u2028The address is Harbour Street 12."),
            ("user", "Also remind me to water the \x0c tomato\x85 plants tonight.")]
    data = "".join(json.dumps({"type": "message", "message": {"role": r, "content": t}},
                              ensure_ascii=False) + "\r\n" for r, t in msgs).encode()
    chunks = chunk_file("chat.jsonl", data)
    assert [c.locator for c in chunks] == ["L1", "L2", "L3"]
    assert "Harbour Street 12" in chunks[1].text and "tomato" in chunks[2].text
    text = ("# Notes\r\n\r\nFirst line\u2028still the first.\r\n\r\n"
            "Second\x1c paragraph\x0b here.\n\n## Later\n\nOn line nine.\n")
    assert [(c.locator, c.text) for c in chunk_markdown(text)] == [
        ("L3-L5", "First line\u2028still the first.\nSecond\x1c paragraph\x0b here."),
        ("L9", "On line nine.")]
    assert [c.locator for c in chunk_file("notes.txt", text.encode())] == ["L1-L9"]


def test_cut_long_cuts_as_before_and_a_long_run_whole() -> None:
    from vault.chunk import _cut_long

    # the cuts as the chunker has always made them (sentence ends, then spaces, then hard)
    assert _cut_long("a" * 30 + "   \t" + "b" * 30 + " " + "c" * 5, 20) == [
        "a" * 20, "a" * 10 + "  ", "b" * 20, "b" * 10 + " ccccc"]
    assert _cut_long("One two three four. Five six seven eight nine ten eleven. X"
                     + "y" * 25 + "\u3000\u3000z", 16) == [
        "One two three", "four.", "Five six seven", "eight nine ten", "eleven.",
        "X" + "y" * 15, "y" * 10 + "\u3000\u3000z"]
    assert _cut_long("word " * 12, 10) == ["word word"] * 5 + ["word word "]

    # A Markdown note with an inlined image is one run without a space (cutting it was
    # quadratic: 32 MiB took half a minute, 0.4 s now; speed is not asserted in tests)
    text = "iVBORw0KGgoAAAANSUhEUgAA" * (4 * 1024 * 1024 // 24)
    pieces = _cut_long(text)
    assert "".join(pieces) == text and {len(p) for p in pieces[:-1]} == {HARD_CHARS}
