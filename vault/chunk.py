"""Cut a vault file into chunks that follow its structure, for the index and recall.

Each kind is cut where its own structure puts the seams:

- Markdown: by heading section, long sections by paragraph (list items count as paragraphs);
  the heading path (`MEMORY.md` > `People`) is kept as the chunk's context.
- JSON: by memory entry (list items and keyed records that hold text), located by a JSON
  pointer (`/3`, `/ctx_0001`, `/sessions/2/turns/5`).
- JSONL transcripts: by message, user and assistant text, tool calls summarised in a line;
  tool results and other events are left out. Located by line (`L12`).
- SQLite (stored as a vault dump): by row of the tables that hold text, located `table:rowid`;
  BLOB values and full-text shadow tables are left out.
- Anything else that is text: by paragraph.

Text is UTF-8, or UTF-16 or UTF-32 when a byte order mark says so, or else 8-bit text
(cp1252 or Latin-1) when it is not UTF-8 and reads like text (`decode_text`); anything else
is binary and gives no chunks. A SQLite TEXT value that is not valid UTF-8 is read from its
bytes with each invalid byte as U+FFFD, as `vault show --sql` shows it.

A chunk's `text` is what is embedded and shown; its `context` (heading path, parent record,
table) is embedded with it; its `keys` (ids, timestamps, numbers) are searched lexically only,
so an exact id is found without diluting the meaning of the text.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from vault.textkind import CONTROL_BYTES, text_like

# Bump when chunking changes: blobs chunked by an older version are chunked again.
# 2: non-UTF-8 TEXT cells, application collations, UTF-16/32 and 8-bit text files.
# 3: lines split at "\n" only (U+2028, U+0085, form feeds... no longer end a line).
CHUNKER_VERSION = 3

SOFT_CHARS = 400  # pieces are packed together up to this size
HARD_CHARS = 1200  # a piece longer than this is cut (about the model's 256-token window)


# Record fields whose value is the content itself: shown without a "key:" prefix.
CONTENT_KEYS = frozenset({
    "text", "content", "body", "message", "summary", "description", "note", "notes",
    "response", "prompt", "answer", "question", "observation", "observations", "memory",
    "value", "fact", "insight", "reflection", "msg", "utterance", "output", "input",
})
# Fields that name who speaks: "Caroline: I went to ..." reads better than two fields.
SPEAKER_KEYS = ("speaker", "role", "author", "sender", "from")

_WORD = re.compile(r"[^\W\d_]{2,}")
_HEX = re.compile(r"^(?:0x)?[0-9a-fA-F]{12,}$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"
                    r"(?:Z|[+-]\d{2}:?\d{2})?$")
# An ATX heading's opening: up to 3 spaces, 1-6 #, then a space or tab or the end. (Its title
# is cut by `_heading`: a regex's lazy title before an optional closing #s took time
# quadratic in a long run of spaces inside the title.)
_HEADING = re.compile(r" {0,3}(#{1,6})(?![^ \t\n])")
_FILE_NAME = re.compile(r"^[\w.-]+\.[A-Za-z0-9]{1,6}$")
# Words joined by one space, hyphen or _. (`_` is matched by the word classes only, not as a
# separator as well: two ways to read every `_` made a long snake_case key that fails at its
# end take time exponential in its number of words.)
_KEY_WORD = re.compile(r"^[^\W\d][^\W\d ]*(?:[ -][^\W\d]+)*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_LIST_ITEM = re.compile(r"^ {0,3}(?:[-*+]|\d{1,9}[.)])[ \t]+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")
_NON_SPACE = re.compile(r"\S")


@dataclass(frozen=True)
class Chunk:
    """One searchable piece of a file: where it is, its text, its context, lexical-only keys."""

    locator: str
    text: str
    context: str = ""
    keys: str = ""

    @property
    def embed_text(self) -> str:
        """The string the model embeds: the context line, then the text."""
        return f"{self.context}\n{self.text}" if self.context else self.text


@dataclass(frozen=True)
class FileChunks:
    """The chunks of one file, and what of it could not be read (None: all of it was)."""

    chunks: list[Chunk]
    problem: str | None = None


def file_kind(path: str, data: bytes) -> str:
    """The kind of a vault file: sqlite, markdown, json, jsonl, text or binary."""
    from vault.sqlite_dump import is_dump

    if is_dump(data):
        return "sqlite"
    if decode_text(data) is None:
        return "binary"
    from vault.snapshot import kind_by_name

    return kind_by_name(path)


def chunk_file(path: str, data: bytes) -> list[Chunk]:
    """Cut one file (as stored in the vault) into chunks; binary files give none."""
    return chunk_file_report(path, data).chunks


def chunk_file_report(path: str, data: bytes) -> FileChunks:
    """Cut one file into chunks, and say what of it could not be read (a SQLite dump that
    does not replay whole), so that the indexer can warn instead of missing it silently."""
    kind = file_kind(path, data)
    if kind == "binary":
        return FileChunks([])
    if kind == "sqlite":
        return _dump_chunks(data)
    text = decode_text(data) or ""
    if kind == "markdown":
        return FileChunks(chunk_markdown(text, title=path.rsplit("/", 1)[-1]))
    if kind == "jsonl":
        return FileChunks(chunk_jsonl(text))
    if kind == "json":
        try:
            value = _loads(text)
        except ValueError:
            return FileChunks(chunk_text(text))
        return FileChunks(chunk_json(value))
    return FileChunks(chunk_text(text))


# --- text encodings ------------------------------------------------------------------------


# A byte order mark says which Unicode encoding a file is in (UTF-32 first: FF FE 00 00
# starts with the UTF-16LE mark).
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
         (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
# Control characters are rare in text and common in binary data (vault.textkind).
_CONTROL_CHARS = {c: None for c in (*CONTROL_BYTES, 0xFFFD)}


def decode_text(data: bytes) -> str | None:
    """A file's text, or None when it is binary.

    UTF-8 first (a damaged byte here and there as U+FFFD); a byte order mark says UTF-16 or
    UTF-32; text that is not UTF-8 yet reads like 8-bit text (mostly ASCII, few control
    bytes) is cp1252, or Latin-1 when it has a byte cp1252 leaves undefined. A NUL in the first
    8 KiB (without a UTF-16/32 mark) or bytes that fit none of these make it binary.
    """
    for bom, codec in _BOMS:
        if data.startswith(bom):
            text = data[len(bom):].decode(codec, "replace")
            odd = len(text) - len(text.translate(_CONTROL_CHARS))
            return None if odd * 50 > len(text) else text
    if b"\0" in data[:8192]:
        return None
    try:
        return _without_bom(data.decode("utf-8"))
    except UnicodeDecodeError:
        pass
    text = data.decode("utf-8", "replace")
    bad = text.count("\ufffd")
    non_ascii = len(text) - len(text.encode("ascii", "ignore"))
    if non_ascii - bad > bad:
        return _without_bom(text)  # UTF-8 (its other non-ASCII characters are whole)
    if not text_like(data):  # (not UTF-8: mostly ASCII with few control bytes, or binary)
        return None
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:  # (0x81, 0x8D, 0x8F, 0x90, 0x9D are not cp1252)
        return data.decode("latin-1")


def _without_bom(text: str) -> str:
    return text[1:] if text.startswith("\ufeff") else text


# --- JSON values -------------------------------------------------------------------------


_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")
# JSON nested deeper than this is read as text. json.loads fails with RecursionError at a
# depth that depends on how deep the call stack already is; a fixed limit well below
# Python's makes the same file cut the same way wherever it is cut from.
MAX_JSON_DEPTH = 500


def _loads(text: str) -> Any:
    """A JSON text's value, each lone surrogate in its strings as U+FFFD; ValueError when it
    is not JSON or is nested deeper than MAX_JSON_DEPTH.

    JSON may escape half a surrogate pair ("\\ud83d": an emoji that JSON.stringify cut in
    half), and json.loads gives it back as a lone surrogate, which no UTF-8 encoder takes: the
    hash of the chunk, the index and the model could not take such a text.
    """
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deep") from None
    # (fewer brackets than the limit cannot nest deeper: most texts are not walked)
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and _deeper_than(value,
                                                                           MAX_JSON_DEPTH):
        raise ValueError("JSON nested too deep")
    # Decoded file text never holds a surrogate (the decoders replace them): only an escape
    # can make one, so a file without such an escape is not walked.
    if _ESCAPED_SURROGATE.search(text):
        _replace_surrogates(value)
        if isinstance(value, str):
            value = _SURROGATE.sub("\ufffd", value)
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    """True when containers in a parsed JSON value nest more than limit deep."""
    todo = [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        todo.extend((v, depth + 1) for v in item if isinstance(v, (list, dict)))
    return False


def _replace_surrogates(value: Any) -> None:
    """Replace lone surrogates in the strings (and keys) of a parsed JSON value, in place."""
    todo = [value]  # (a loop, not recursion: the value may be nested as deep as json allows)
    while todo:
        item = todo.pop()
        if isinstance(item, list):
            for i, v in enumerate(item):
                if isinstance(v, str):
                    item[i] = _SURROGATE.sub("\ufffd", v)
                elif isinstance(v, (list, dict)):
                    todo.append(v)
        elif isinstance(item, dict):
            pairs = list(item.items())
            item.clear()
            for k, v in pairs:
                if isinstance(v, str):
                    v = _SURROGATE.sub("\ufffd", v)
                elif isinstance(v, (list, dict)):
                    todo.append(v)
                item[_SURROGATE.sub("\ufffd", k)] = v


# --- pieces ------------------------------------------------------------------------------


def _cut_long(text: str, limit: int = HARD_CHARS) -> list[str]:
    """Cut text longer than limit at sentence ends, then at spaces, never mid-word if avoidable."""
    if len(text) <= limit:
        return [text]
    pieces: list[str] = []
    current = ""
    for sentence in _SENTENCE_END.split(text):
        # A long run is cut by moving an index along it: slicing off the rest at each cut
        # copied it again each time (quadratic: a 32 MiB inlined image took half a minute).
        start = 0
        while len(sentence) - start > limit:
            cut = sentence.rfind(" ", start, start + limit) - start
            cut = cut if cut > limit // 2 else limit
            head = sentence[start:start + cut]
            rest = _NON_SPACE.search(sentence, start + cut)  # (as str.lstrip() would)
            start = rest.start() if rest else len(sentence)
            if current:
                pieces.append(current)
                current = ""
            pieces.append(head)
        if start:
            sentence = sentence[start:]
        if current and len(current) + 1 + len(sentence) > limit:
            pieces.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}" if current else sentence
    if current:
        pieces.append(current)
    return pieces


def _pack(pieces: list[tuple[int, int, str]], soft: int = SOFT_CHARS
          ) -> list[tuple[int, int, str]]:
    """Join consecutive (first line, last line, text) pieces up to soft characters."""
    packed: list[tuple[int, int, str]] = []
    for first, last, text in pieces:
        if packed and len(packed[-1][2]) + 1 + len(text) <= soft:
            start, _, joined = packed[-1]
            packed[-1] = (start, last, f"{joined}\n{text}")
        else:
            packed.append((first, last, text))
    return packed


def _split_lines(text: str) -> list[str]:
    """A text's lines as git, grep and `wc -l` count them (and line locators name them).

    Only "\n" ends a line ("\r\n" too, its "\r" dropped): str.splitlines() also splits at
    U+2028, U+0085, form feeds and more, which JSON may hold raw inside a string, so a
    transcript message holding one was cut in two, lost, and every later line misnumbered.
    """
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # (the newline that ends the last line starts no line of its own)
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _lines_locator(first: int, last: int) -> str:
    return f"L{first}" if first == last else f"L{first}-L{last}"


def _blocks(lines: list[str], offset: int) -> Iterator[tuple[int, int, str]]:
    """Paragraphs (and list items, and whole fenced code blocks) as (first, last, text)."""
    block: list[str] = []
    start = 0
    fence: str | None = None

    def flush(end: int) -> Iterator[tuple[int, int, str]]:
        nonlocal block
        if block and any(line.strip() for line in block):
            yield from _split_block(block, start, offset)
        block = []

    for i, line in enumerate(lines):
        match = _FENCE.match(line)
        if fence is not None:
            block.append(line)
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
                fence = None
            continue
        if match:
            if not block:
                start = i
            block.append(line)
            fence = match.group(1)
            continue
        if not line.strip():
            yield from flush(i)
            continue
        if not block:
            start = i
        block.append(line)
    yield from flush(len(lines))


def _split_block(block: list[str], start: int, offset: int) -> Iterator[tuple[int, int, str]]:
    """One paragraph, or its list items (or lines, when long), each cut to the hard limit."""
    items: list[tuple[int, list[str]]] = []
    in_fence = False
    # A long block of lines with no blank line between them (a transcript written one turn a
    # line, "Name: text") is cut at its lines, so that each turn can be found on its own.
    by_line = (not _FENCE.match(block[0]) and len(block) > 1
               and sum(len(line) + 1 for line in block) > SOFT_CHARS)
    for j, line in enumerate(block):
        if _FENCE.match(line):
            in_fence = not in_fence
        if not in_fence and items and (_LIST_ITEM.match(line) or (
                by_line and not line.startswith((" ", "\t")))):
            items.append((j, [line]))
        elif items:
            items[-1][1].append(line)
        else:
            items.append((j, [line]))
    for j, item_lines in items:
        text = "\n".join(item_lines).strip()
        first = offset + start + j + 1
        last = first + len(item_lines) - 1
        for piece in _cut_long(text):
            yield first, last, piece


# --- markdown ----------------------------------------------------------------------------


def _heading(line: str) -> tuple[int, str] | None:
    """(level, title) of an ATX heading line (`## Title ##`), else None. In linear time."""
    opening = _HEADING.match(line)
    if opening is None:
        return None
    rest = line[opening.end():]
    if rest.endswith("\n"):
        rest = rest[:-1]
    if "\n" in rest:
        return None
    content = rest.lstrip(" \t")
    title = content.rstrip(" \t")
    if title.endswith("#"):
        # A closing run of #s is dropped when a space or tab comes before it.
        before = title.rstrip("#")
        if before and before[-1] in " \t":
            title = before.rstrip(" \t")
    return len(opening.group(1)), title.strip()


def chunk_markdown(text: str, title: str = "") -> list[Chunk]:
    """Heading sections, long ones by paragraph, each with its heading path as context."""
    lines = _split_lines(text)
    sections: list[tuple[tuple[str, ...], int, list[str]]] = []
    path: list[tuple[int, str]] = []
    body: list[str] = []
    body_start = 0
    fence: str | None = None
    for i, line in enumerate(lines):
        match = _FENCE.match(line)
        if fence is not None:
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
                fence = None
            body.append(line)
            continue
        if match:
            fence = match.group(1)
            body.append(line)
            continue
        heading = _heading(line)
        if heading:
            sections.append((tuple(t for _, t in path), body_start, body))
            level, heading_title = heading
            while path and path[-1][0] >= level:
                path.pop()
            path.append((level, heading_title))
            body, body_start = [], i + 1
            continue
        body.append(line)
    sections.append((tuple(t for _, t in path), body_start, body))

    chunks: list[Chunk] = []
    for headings, start, section in sections:
        context = " > ".join(h for h in headings if h) or title
        pieces = list(_blocks(section, start))
        if not pieces:
            continue
        for first, last, piece in _pack(pieces):
            chunks.append(Chunk(_lines_locator(first, last), piece, context))
    return chunks


def chunk_text(text: str) -> list[Chunk]:
    """Plain text by paragraph, packed up to the soft limit."""
    lines = _split_lines(text)
    return [Chunk(_lines_locator(first, last), piece)
            for first, last, piece in _pack(list(_blocks(lines, 0)))]


# --- records (JSON entries, transcript lines, table rows) -------------------------------


def _words(text: str) -> int:
    return len(_WORD.findall(text))


def _is_key_like(text: str) -> bool:
    """Ids, hashes, timestamps, paths and numbers: found by exact search, not by meaning."""
    value = text.strip()
    if not value:
        return True
    if _UUID.match(value) or _HEX.match(value) or _STAMP.match(value):
        return True
    if not any(c.isspace() for c in value):
        # One token: a path, a URL, a file name, or letters mixed with digits (an id, a
        # version, a ticket): searched exactly, it would only blur the meaning.
        if "/" in value or _FILE_NAME.match(value) or value.startswith(("http:", "https:")):
            return True
        if any(c.isdigit() for c in value) and len(value) >= 5:
            return True
        if len(value) >= 24:
            return True
    return _WORD.search(value) is None


def _is_prose(text: str) -> bool:
    return _words(text) >= 3 and any(c.isspace() for c in text.strip()) \
        and not _is_key_like(text)


def _maybe_json(value: str) -> Any:
    """A string holding a JSON object or array (SQLite metadata columns), parsed; else None."""
    stripped = value.strip()
    if len(stripped) < 2 or stripped[0] not in "[{" or stripped[-1] not in "]}":
        return None
    try:
        return _loads(stripped)
    except ValueError:
        return None


def _holds_prose(value: Any, depth: int = 0) -> bool:
    if depth > 20:
        return False
    if isinstance(value, str):
        return _is_prose(value)
    if isinstance(value, dict):
        return any(_holds_prose(v, depth + 1) for v in value.values())
    if isinstance(value, list):
        return any(_holds_prose(v, depth + 1) for v in value)
    return False


@dataclass
class _Rendered:
    prose: list[str]
    labels: list[str]
    keys: list[str]
    speaker: str | None = None

    def chunk_text(self) -> str:
        prose = list(self.prose)
        if self.speaker and prose:
            prose[0] = f"{self.speaker}: {prose[0]}"
        parts = prose + (["; ".join(self.labels)] if self.labels else [])
        return "\n".join(parts)

    def worth_a_chunk(self) -> bool:
        return bool(self.prose) or len(self.labels) >= 3


def _render_fields(fields: list[tuple[str, Any]], out: _Rendered, depth: int = 0) -> None:
    """Render a record's own fields: prose lines, short labels, lexical-only keys."""
    for key, value in fields:
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, (int, float)):
            if isinstance(value, int) and key.lower() in ("id", "rowid") or key.endswith("_id"):
                out.keys.append(str(value))
            continue
        if isinstance(value, str):
            parsed = _maybe_json(value) if depth == 0 else None
            if isinstance(parsed, (dict, list)):
                _render_fields([(key, parsed)] if isinstance(parsed, list)
                               else list(parsed.items()), out, depth + 1)
            elif _is_prose(value):
                out.prose.append(value.strip() if key.lower() in CONTENT_KEYS
                                 else f"{key}: {value.strip()}")
            elif _is_key_like(value):
                out.keys.append(value.strip())
            else:
                short = " ".join(value.split())
                if (out.speaker is None and depth == 0 and key.lower() in SPEAKER_KEYS
                        and len(short) <= 60):
                    out.speaker = short
                else:
                    out.labels.append(f"{key}: {short}")
            continue
        if isinstance(value, list):
            strings = [v for v in value if isinstance(v, str)]
            prose = [v.strip() for v in strings if _is_prose(v)]
            if prose:
                out.prose.extend(prose)
            labels = [" ".join(v.split()) for v in strings
                      if not _is_prose(v) and not _is_key_like(v)]
            if labels:
                out.labels.append(f"{key}: {', '.join(labels)}")
            out.keys.extend(v.strip() for v in strings if _is_key_like(v) and v.strip())
            for item in value:
                if isinstance(item, dict) and depth < 4:
                    _render_fields(list(item.items()), out, depth + 1)
            continue
        if isinstance(value, dict) and depth < 4 and not (
                value and all(isinstance(v, dict) for v in value.values())):
            # A nested table of records without text (an index) adds nothing to read.
            _render_fields(list(value.items()), out, depth + 1)


def _record_chunks(locator: str, fields: list[tuple[str, Any]], context: str = "",
                   extra_keys: tuple[str, ...] = ()) -> list[Chunk]:
    rendered = _Rendered([], [], list(extra_keys))
    _render_fields(fields, rendered)
    if not rendered.worth_a_chunk():
        return []
    keys = " ".join(dict.fromkeys(rendered.keys))
    text = rendered.chunk_text()
    pieces = _cut_long(text) if len(text) > HARD_CHARS else [text]
    if len(pieces) == 1:
        return [Chunk(locator, pieces[0], context, keys)]
    return [Chunk(f"{locator}#{i}", piece, context, keys) for i, piece in enumerate(pieces, 1)]


# --- JSON --------------------------------------------------------------------------------


def _pointer(parent: str, key: str | int) -> str:
    token = str(key).replace("~", "~0").replace("/", "~1")
    return f"{parent}/{token}"


def _is_container(value: Any) -> bool:
    """A field that holds records of its own (chunked separately), not a field of this one."""
    if isinstance(value, list):
        return any(isinstance(v, (dict, list)) for v in value) and _holds_prose(value)
    if isinstance(value, dict):
        return _holds_prose(value) and (
            len(value) > 1 and all(isinstance(v, dict) for v in value.values())
            or any(isinstance(v, (dict, list)) and _holds_prose(v) for v in value.values())
            or sum(1 for v in value.values() if isinstance(v, str) and _is_prose(v)) >= 1)
    return False


def chunk_json(value: Any) -> list[Chunk]:
    """Memory entries of a JSON document: list items and keyed records that hold text."""
    chunks: list[Chunk] = []
    _walk_json(value, "", [], chunks, 0)
    return chunks


def _label_of(fields: list[tuple[str, Any]]) -> str:
    """A short name for a record, used as its children's context."""
    labels = [" ".join(v.split()) for k, v in fields
              if isinstance(v, str) and not _is_key_like(v) and len(v) <= 80]
    return " · ".join(labels[:3])


def _walk_json(value: Any, pointer: str, context: list[str], out: list[Chunk],
               depth: int) -> None:
    if depth > 64:
        return
    ctx = " > ".join(c for c in context if c)
    if isinstance(value, list):
        for i, item in enumerate(value):
            here = _pointer(pointer, i)
            if isinstance(item, (dict, list)):
                _walk_json(item, here, context, out, depth + 1)
            elif isinstance(item, str) and _is_prose(item):
                out.extend(_record_chunks(here, [("text", item)], ctx))
        return
    if not isinstance(value, dict):
        if isinstance(value, str) and _is_prose(value):
            out.extend(_record_chunks(pointer or "/", [("text", value)], ctx))
        return
    own: list[tuple[str, Any]] = []
    children: list[tuple[str, Any]] = []
    for key, item in value.items():
        (children if _is_container(item) else own).append((str(key), item))
    prose_fields = [(k, v) for k, v in own if isinstance(v, str) and _is_prose(v)]
    if len(prose_fields) >= 2 and sum(len(v) for _, v in prose_fields) > SOFT_CHARS:
        # A table of texts keyed by name ({"Lena": "...", "Tomasz": "..."}): one entry each.
        for key, text in prose_fields:
            out.extend(_record_chunks(_pointer(pointer, key), [(key, text)], ctx))
        own = [(k, v) for k, v in own if (k, v) not in prose_fields]
        if own:
            out.extend(_record_chunks(pointer or "/", own, ctx))
    elif own:
        out.extend(_record_chunks(pointer or "/", own, ctx))
    label = _label_of(own)
    for key, item in children:
        key_label = key if _KEY_WORD.match(key) else ""
        # Fields named after a child ("session_1_date_time" beside "session_1") describe it.
        own_label = _label_of([(k, v) for k, v in own if k.startswith(key + "_")])
        if own_label:
            key_label = f"{key_label} {own_label}".strip()
        sub = [*context, label] if label and not own_label else list(context)
        if key_label:
            sub.append(key_label)
        _walk_json(item, _pointer(pointer, key), sub[-3:], out, depth + 1)


# --- JSONL transcripts -------------------------------------------------------------------


def _message_of(record: dict[str, Any]) -> tuple[str, Any] | None:
    """(role or speaker, content) of a transcript line, or None when it is no message."""
    inner = record.get("message")
    if isinstance(inner, dict) and ("role" in inner or "content" in inner):
        role = inner.get("role") or record.get("type") or ""
        return str(role), inner.get("content", inner.get("text"))
    for key in ("speaker", "role", "author", "sender", "from"):
        who = record.get(key)
        if isinstance(who, str) and who:
            for content_key in ("content", "text", "message", "body", "utterance"):
                if content_key in record:
                    return who, record[content_key]
    kind = record.get("type")
    if kind in ("user", "assistant", "human", "ai") and "content" in record:
        return str(kind), record["content"]
    return None


def _brief(value: Any, limit: int = 80, depth: int = 0) -> str:
    if isinstance(value, (dict, list)) and depth >= 32:
        # A tool input nested hundreds deep (valid JSON) would reach Python's recursion limit;
        # real tool inputs are nowhere near this deep, so their summaries do not change.
        text = "…"
    elif isinstance(value, dict):
        text = " ".join(_brief(v, limit, depth + 1) for v in value.values()
                        if not isinstance(v, bool))
    elif isinstance(value, list):
        text = " ".join(_brief(v, limit, depth + 1) for v in value)
    else:
        text = str(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _content_text(content: Any) -> str:
    """The visible text of a message: text parts, tool calls in a line, no tool output."""
    if isinstance(content, str):
        return content.strip()
    if isinstance(content, dict):
        content = [content]
    if not isinstance(content, list):
        return ""
    parts: list[str] = []
    for part in content:
        if isinstance(part, str):
            parts.append(part.strip())
            continue
        if not isinstance(part, dict):
            continue
        kind = str(part.get("type", ""))
        if kind in ("text", "input_text", "output_text") and isinstance(part.get("text"), str):
            parts.append(part["text"].strip())
        elif kind in ("toolCall", "tool_use", "function_call", "tool_call"):
            # "function" is {"name", "arguments"} in OpenAI's format; any other value (a
            # string, a list, a number, null) names nothing here.
            fn = part.get("function")
            fn = fn if isinstance(fn, dict) else {}
            name = part.get("name") or fn.get("name") or "tool"
            if not isinstance(name, (str, int)) or isinstance(name, bool):
                name = _brief(name, 40) or "tool"
            if "arguments" in part:
                args = part["arguments"]
            elif "input" in part:
                args = part["input"]
            else:
                args = fn.get("arguments", "")
            parts.append(f"[tool {name}: {_brief(args)}]")
        elif kind == "image":
            parts.append("[image]")
    return "\n".join(p for p in parts if p)


def chunk_jsonl(text: str) -> list[Chunk]:
    """Transcript lines: one chunk per user or assistant message (long ones in parts)."""
    chunks: list[Chunk] = []
    for lineno, line in enumerate(_split_lines(text), 1):
        chunks.extend(chunk_jsonl_line(line, lineno))
    return chunks


def jsonl_lines(data: bytes) -> list[str]:
    """The lines of a stored JSONL file, split exactly as `chunk_file` splits them."""
    return _split_lines(decode_text(data) or "")


@dataclass(frozen=True)
class LineUnits:
    """A file whose chunks each come from one line: JSONL lines, rows of a vault SQLite dump.

    Chunks of any subset of `lines` (with `header`, the lines every one needs: a dump's
    schema) are exactly the chunks those lines give in the whole file, so two versions of the
    file can be compared by the lines they do not share (see `chunk_lines`).
    """

    kind: str  # "jsonl" or "sqlite"
    header: tuple[str, ...]
    lines: list[str]


def line_units(path: str, data: bytes) -> LineUnits | None:
    """The file as independent lines, for the kinds where that holds; else None."""
    kind = file_kind(path, data)
    if kind == "jsonl":  # (blank lines give no chunk)
        return LineUnits(kind, (), [line for line in jsonl_lines(data) if line.strip()])
    if kind != "sqlite":
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    header: list[str] = []
    rows: list[str] = []
    for line in text.split("\n"):
        # The dump writes each row as one INSERT line (newlines in values as char(10)).
        (rows if line.startswith("INSERT INTO ") and line.endswith(");") else header
         ).append(line)
    if any("TRIGGER" in line.upper() for line in header):
        return None  # a trigger's body can hold INSERT lines, and fires on replayed rows
    return LineUnits(kind, tuple(header), rows)


def chunk_lines(kind: str, header: Sequence[str], lines: Iterable[str]) -> list[Chunk] | None:
    """The chunks of some lines of a `LineUnits` file (None when they cannot be replayed)."""
    if kind == "jsonl":
        return [c for line in lines for c in chunk_jsonl_line(line)]
    replayed = _replay_dump("\n".join([*header, *lines]) + "\n", whole_only=True)
    return None if replayed is None else replayed.chunks


def chunk_jsonl_line(line: str, lineno: int = 1) -> list[Chunk]:
    """The chunks of one transcript line: they depend on that line alone (and its number)."""
    stripped = line.strip()
    if not stripped:
        return []
    try:
        record = _loads(stripped)
    except ValueError:
        return []  # a torn last line, or a line that is not JSON
    locator = f"L{lineno}"
    if not isinstance(record, dict):
        if isinstance(record, str) and _is_prose(record):
            return [Chunk(locator, record.strip())]
        return []
    message = _message_of(record)
    if message is None:
        # Not a message: a memory entry written as a line (or an event without text).
        return _record_chunks(locator, list(record.items()))
    role, content = message
    role_l = role.lower()
    if role_l in ("toolresult", "tool", "function", "tool_result", "system", "developer"):
        return []
    body = _content_text(content)
    if not body or _words(body) == 0:
        return []
    keys = [str(record[k]) for k in ("id", "timestamp", "time", "date", "created_at")
            if isinstance(record.get(k), (str, int)) and not isinstance(record.get(k), bool)]
    pieces = _cut_long(f"{role}: {body}")
    return [Chunk(locator if len(pieces) == 1 else f"{locator}#{i}", piece, keys=" ".join(keys))
            for i, piece in enumerate(pieces, 1)]


# --- SQLite ------------------------------------------------------------------------------


def chunk_sqlite_dump(data: bytes) -> list[Chunk]:
    """Rows of the tables that hold text, from a vault SQLite dump, located `table:rowid`."""
    return _dump_chunks(data).chunks


def _dump_chunks(data: bytes) -> FileChunks:
    try:
        sql = data.decode("utf-8")
    except UnicodeDecodeError as e:
        return FileChunks([], f"its SQLite dump is not valid UTF-8 (at byte {e.start}): "
                              "not indexed")
    replayed = _replay_dump(sql, whole_only=False)
    assert replayed is not None  # (only whole_only gives None)
    return replayed


def _replay_connection() -> Any:
    """An in-memory database set up the way sqlite_dump rebuilds one from a dump."""
    import apsw

    from vault.sqlite_dump import replay_settings

    conn = apsw.Connection(":memory:")
    # The dump is replayed in memory only: no ATTACH, so it can never touch a file.
    conn.limit(apsw.SQLITE_LIMIT_ATTACHED, 0)
    # As a rebuild does: plain SQLite behaviour, and a collation only the application
    # registers (COLLATE agentcoll) stood in for; without it no row of its table is read.
    replay_settings(conn)
    return conn


def _replay_dump(sql: str, *, whole_only: bool) -> FileChunks | None:
    """The rows' chunks of a dump replayed in memory.

    When a statement fails: None if whole_only, else the dump is replayed once more one
    statement at a time, past the ones that fail, and the rows that made it in are read
    (with a problem that says how many statements failed and why the first did).
    """
    import apsw

    conn = _replay_connection()
    try:
        try:
            for _ in conn.execute(sql):  # a cursor runs the statements as it is read
                pass
        except apsw.Error:
            if whole_only:
                return None
        else:
            chunks, problem = _chunk_rows(conn)
            return FileChunks(chunks, problem)
    finally:
        conn.close()
    conn = _replay_connection()
    try:
        failed, total, first = _replay_each(conn, sql)
        chunks, problem = _chunk_rows(conn)
    finally:
        conn.close()
    said = (f"{failed} of the {total} statements of its SQLite dump could not be replayed "
            f"(first: {first}), so the rows they hold are not indexed")
    return FileChunks(chunks, f"{said}; {problem}" if problem else said)


def _replay_each(conn: Any, sql: str) -> tuple[int, int, str]:
    """Run a dump's statements one at a time, going on past the ones that fail: how many
    failed, how many there were, and the first one's error."""
    import apsw

    from vault.sqlite_dump import error_message

    failed = total = 0
    first = ""
    pending: list[str] = []
    lines = sql.split("\n")
    for n, line in enumerate(lines, 1):
        pending.append(line)
        statement = "\n".join(pending)
        # The dump writes a statement a line; a stored CREATE statement may take several.
        if not apsw.complete(statement) and n < len(lines):
            continue
        pending = []
        if not statement.strip():
            continue
        total += 1
        try:
            for _ in conn.execute(statement, can_cache=False):
                pass
        except apsw.Error as e:
            failed += 1
            first = first or error_message(e)
    return failed, total, first


def _chunk_rows(conn: Any) -> tuple[list[Chunk], str | None]:
    """The chunks of every table that holds text, and the tables that could not be read."""
    import apsw

    from vault.sqlite_dump import error_message

    tables = [(str(n), str(s or "")) for n, s in conn.execute(
        "SELECT name, sql FROM sqlite_schema WHERE type='table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY name")]
    names = {n for n, _ in tables}
    shadows: set[str] = set()
    readable_virtual: set[str] = set()
    for name, sql in tables:
        if sql.upper().startswith("CREATE VIRTUAL TABLE"):
            for suffix in ("data", "idx", "content", "docsize", "config", "segments", "segdir",
                           "stat", "node", "parent", "rowid"):
                shadows.add(f"{name}_{suffix}")
            # Only a full-text table that keeps its own text (a _content table) is read; an
            # external-content one repeats a table that is read anyway.
            if f"{name}_content" in names and re.search(r"\bfts[345]\b", sql, re.I):
                readable_virtual.add(name)
    chunks: list[Chunk] = []
    unread: list[str] = []
    for name, sql in tables:
        if name in shadows:
            continue
        virtual = sql.upper().startswith("CREATE VIRTUAL TABLE")
        if virtual and name not in readable_virtual:
            continue
        try:
            chunks.extend(_table_chunks(conn, name))
        except (apsw.Error, UnicodeDecodeError) as e:
            unread.append(f"{name} ({error_message(e)})")
    if not unread:
        return chunks, None
    return chunks, f"table{'s' if len(unread) > 1 else ''} {', '.join(unread)} could not be read"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _table_chunks(conn: Any, table: str) -> list[Chunk]:
    import apsw

    columns = [(str(row[1]), str(row[2] or "").upper(), int(row[5]))
               for row in conn.execute(f"PRAGMA table_info({_q(table)})")]
    if not columns:
        return []
    names = [c for c, _, _ in columns]
    blob_cols = {c for c, decl, _ in columns if "BLOB" in decl}
    pk = [c for c, _, p in sorted(columns, key=lambda c: c[2]) if p > 0]
    try:
        without_rowid = any(row[4] for row in conn.execute("PRAGMA table_list")
                            if str(row[1]) == table and len(row) > 4)
    except apsw.Error:
        without_rowid = False
    select = [_q(c) for c in names]
    if without_rowid:
        order = f" ORDER BY {', '.join(_q(c) for c in pk)}"
    else:
        select.insert(0, "rowid")
        order = " ORDER BY rowid"
    rows = _rows(conn, select, f" FROM {_q(table)}{order}")
    chunks: list[Chunk] = []
    for row in rows:
        if without_rowid:
            values = list(row)
            locator = f"{table}:" + ",".join(str(row[names.index(c)]) for c in pk)
        else:
            locator = f"{table}:{row[0]}"
            values = list(row[1:])
        fields = [(c, v) for c, v in zip(names, values)
                  if c not in blob_cols and not isinstance(v, bytes)]
        chunks.extend(_record_chunks(locator, fields, table))
    return chunks


def _rows(conn: Any, select: list[str], rest: str) -> list[tuple[Any, ...]]:
    """The rows of `SELECT select rest`; TEXT that is not valid UTF-8 (which apsw cannot give
    as str) read as bytes with each invalid byte replaced by U+FFFD, as `show --sql` does."""
    from vault.sqlite_dump import TEXT_CODECS

    try:
        return list(conn.execute(f"SELECT {', '.join(select)}{rest}").fetchall())
    except UnicodeDecodeError:
        pass
    # typeof() tells TEXT from BLOB once both come back as bytes.
    picks = ", ".join(f"typeof({e}), CASE typeof({e}) WHEN 'text' THEN CAST({e} AS BLOB) "
                      f"ELSE {e} END" for e in select)
    (encoding,), = conn.execute("PRAGMA encoding")
    codec = TEXT_CODECS.get(str(encoding), "utf-8")
    return [tuple(value.decode(codec, "replace") if kind == "text" else value
                  for kind, value in zip(raw[::2], raw[1::2]))
            for raw in conn.execute(f"SELECT {picks}{rest}")]
