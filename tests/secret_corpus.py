"""Planted secrets for the secret tests, made at run time so that no real-looking secret is in
the source, written as markdown, JSON, JSONL and a SQLite database with where each one is."""

from __future__ import annotations

import base64
import json
import random
import string
from dataclasses import dataclass
from pathlib import Path

import apsw

ALNUM = string.ascii_letters + string.digits
B64 = ALNUM + "+/"
URLSAFE = ALNUM + "-_"
UPPER = string.ascii_uppercase + string.digits
HEX = "0123456789abcdef"
DASHES = "-" * 5


@dataclass(frozen=True)
class Planted:
    """One planted secret: what scan_bytes must call it, and its value as typed."""

    name: str
    kind: str
    value: str

    def needles(self) -> list[bytes]:
        """Every form the value could take in a vault object: raw, JSON- or SQL-escaped, lines."""
        forms = {self.value, json.dumps(self.value)[1:-1], self.value.replace("'", "''")}
        forms.update(line for line in self.value.splitlines() if len(line) >= 16)
        return sorted(f.encode() for f in forms)


@dataclass(frozen=True)
class Expected:
    """A planted secret in one corpus file, and the locator scan_bytes must give it."""

    name: str
    locator: str
    prefix: bool = False  # the locator only starts with this (a dump line number follows)


def _pem(rng: random.Random, label: str, lines: int = 8) -> str:
    body = "\n".join("".join(rng.choice(B64) for _ in range(64)) for _ in range(lines))
    return f"{DASHES}BEGIN {label}{DASHES}\n{body}\n{DASHES}END {label}{DASHES}"


def _b64url(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def planted(seed: int = 7) -> dict[str, Planted]:
    """The corpus: at least 15 kinds, several of them more than once in other files."""
    rng = random.Random(seed)

    def rs(n: int, alphabet: str = ALNUM) -> str:
        return "".join(rng.choice(alphabet) for _ in range(n))

    key = "PRIVATE KEY"
    items = [
        ("aws_key", "AWS access key", "AK" + "IA" + rs(16, UPPER)),
        ("aws_key2", "AWS access key", "AS" + "IA" + rs(16, UPPER)),
        ("aws_secret", "AWS secret key", rs(40, B64)),
        ("github_classic", "GitHub token", "gh" + "p_" + rs(36)),
        ("github_fine", "GitHub token", "github" + "_pat_" + rs(22) + "_" + rs(59)),
        ("github_app", "GitHub token", "gh" + "s_" + rs(36)),
        ("gitlab", "GitLab token", "gl" + "pat-" + rs(20, URLSAFE)),
        ("openai", "OpenAI API key", "sk-" + "proj-" + rs(60, URLSAFE) + "T3Blbk" + "FJ" + rs(60)),
        ("anthropic", "Anthropic API key", "sk-" + "ant-api03-" + rs(93, URLSAFE) + "AA"),
        ("anthropic2", "Anthropic API key", "sk-" + "ant-api03-" + rs(93, URLSAFE) + "AA"),
        ("slack_bot", "Slack token", "xo" + "xb-" + rs(12, string.digits) + "-"
         + rs(13, string.digits) + "-" + rs(24)),
        ("slack_webhook", "Slack webhook", "https://hooks.slack.com/services/T" + rs(10, UPPER)
         + "/B" + rs(10, UPPER) + "/" + rs(24)),
        ("stripe_live", "Stripe secret key", "sk" + "_live_" + rs(99)),
        ("stripe_live2", "Stripe secret key", "sk" + "_live_" + rs(24)),
        ("stripe_restricted", "Stripe secret key", "rk" + "_live_" + rs(60)),
        ("twilio", "Twilio API key", "S" + "K" + rs(32, HEX)),
        ("rsa_pem", "private key", _pem(rng, "RSA " + key)),
        ("rsa_pem2", "private key", _pem(rng, "EC " + key, 4)),
        ("openssh_pem", "private key", _pem(rng, "OPENSSH " + key, 6)),
        ("gcp_sa", "private key", _pem(rng, key, 10)),
        ("jwt", "JWT", _b64url({"alg": "HS256", "typ": "JWT"}) + "."
         + _b64url({"sub": "sam", "iat": 1763712000, "scope": "admin"}) + "." + rs(43, URLSAFE)),
        ("password", "password assignment", "Tr0ub4dor!" + rs(6)),
        ("password2", "password assignment", "c0rrect-Horse-" + rs(8)),
        ("password3", "password assignment", "pa55-" + rs(10)),
        ("password_sql", "password assignment", "O'Br1en-" + rs(8)),
        ("api_key_field", "high-entropy secret", rs(32, HEX)),
        ("api_key_cell", "high-entropy secret", rs(40)),
        ("google_api", "Google API key", "AI" + "za" + rs(35, URLSAFE)),
        ("sendgrid", "SendGrid API key", "SG." + rs(22, URLSAFE) + "." + rs(43, URLSAFE)),
        ("bearer", "bearer token", rs(48, URLSAFE)),
        ("url_password", "password in URL", "S3cr3t" + rs(12)),
        ("azure", "Azure storage key", rs(86, B64) + "=="),
        ("hf", "Hugging Face token", "hf" + "_" + rs(34)),
        ("telegram", "Telegram bot token", rs(9, string.digits) + ":AA" + rs(33, URLSAFE)),
    ]
    return {name: Planted(name, kind, value) for name, kind, value in items}


def write_corpus(root: Path, secrets: dict[str, Planted]) -> dict[str, list[Expected]]:
    """Write the corpus files under root; return, per relative path, the secrets in each."""
    s = {name: p.value for name, p in secrets.items()}
    expected: dict[str, list[Expected]] = {}

    # Markdown: one secret per line, or a block; the line is where it starts.
    lines = ["# Keys I was handed this week", ""]
    md: list[Expected] = []

    def put(text: str, *names: str) -> None:
        md.extend(Expected(n, f"line {len(lines) + 1}") for n in names)
        lines.extend(text.split("\n"))

    put(f"- AWS: {s['aws_key']} (us-east-1)", "aws_key")
    put(f"- aws_secret_access_key = {s['aws_secret']}", "aws_secret")
    put(f"- GitHub PAT {s['github_classic']} and fine-grained {s['github_fine']}",
        "github_classic", "github_fine")
    put(f"- GitLab: {s['gitlab']}", "gitlab")
    put(f"- OPENAI_API_KEY={s['openai']}", "openai")
    put(f"- Anthropic console key {s['anthropic']}", "anthropic")
    put(f"- Slack bot {s['slack_bot']}, alerts webhook {s['slack_webhook']}",
        "slack_bot", "slack_webhook")
    put(f"- Stripe: {s['stripe_live']}", "stripe_live")
    put(f"- Twilio API key sid {s['twilio']}", "twilio")
    put("")
    put("Deploy key:")
    put(s["rsa_pem"], "rsa_pem")
    put("")
    put(f"**Password:** {s['password']}", "password")
    put(f"Authorization: Bearer {s['bearer']}", "bearer")
    put(f"DATABASE_URL=postgres://app:{s['url_password']}@db.internal:5432/app", "url_password")
    put("")
    (root / "notes").mkdir(parents=True, exist_ok=True)
    (root / "notes" / "keys.md").write_text("\n".join(lines) + "\n")
    expected["notes/keys.md"] = md

    # JSON, pretty-printed: each field on its own line.
    config = {
        "service_account": {"type": "service_account", "project_id": "demo-proj",
                            "private_key_id": "".join(random.Random(1).choice(HEX)
                                                      for _ in range(40)),
                            "private_key": s["gcp_sa"] + "\n",
                            "client_email": "sync@demo-proj.iam.gserviceaccount.com"},
        "api_key": s["api_key_field"],
        "password": s["password2"],
        "billing": {"stripe_restricted": s["stripe_restricted"]},
        "maps": {"browser_key": s["google_api"]},
        "mail": {"provider": "sendgrid", "key": s["sendgrid"]},
        "storage": ("DefaultEndpointsProtocol=https;AccountName=samdata;AccountKey="
                    f"{s['azure']};EndpointSuffix=core.windows.net"),
        "hf": s["hf"],
        "max_tokens": 4096, "token_count": 1234, "session_id": "f3b2c1d0-1234-4abc-8def-0123456789ab",
    }
    text = json.dumps(config, indent=2) + "\n"
    (root / "config.json").write_text(text)
    js_lines = text.split("\n")

    def line_of(fragment: str) -> str:
        return f"line {next(i for i, t in enumerate(js_lines, 1) if fragment in t)}"

    expected["config.json"] = [
        Expected("gcp_sa", line_of('"private_key":')),
        Expected("api_key_field", line_of('"api_key":')),
        Expected("password2", line_of('"password":')),
        Expected("stripe_restricted", line_of('"stripe_restricted":')),
        Expected("google_api", line_of('"browser_key":')),
        Expected("sendgrid", line_of('"key": "SG.')),
        Expected("azure", line_of('"storage":')),
        Expected("hf", line_of('"hf":')),
    ]

    # JSONL: a transcript, a secret per message.
    records = [
        ({"type": "session", "id": "s1", "cwd": "/home/sam/agent"}, None),
        ({"role": "user", "text": f"use this token: {s['jwt']}"}, "jwt"),
        ({"role": "tool", "name": "read_file", "output": s["openssh_pem"] + "\n"}, "openssh_pem"),
        ({"role": "user", "text": f"the bot is {s['telegram']}"}, "telegram"),
        ({"role": "assistant", "text": "Saved config: {\"user\": \"sam\", \"password\": \""
          + s["password3"] + "\"}"}, "password3"),
        ({"role": "tool", "name": "env", "output": f"GITHUB_TOKEN={s['github_app']}\nHOME=/h"},
         "github_app"),
        ({"role": "user", "text": "thanks, that worked", "usage": {"input_tokens": 812}}, None),
    ]
    (root / "sessions").mkdir(exist_ok=True)
    (root / "sessions" / "chat.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r, _ in records))
    expected["sessions/chat.jsonl"] = [Expected(n, f"line {i}")
                                       for i, (_, n) in enumerate(records, 1) if n]

    # SQLite: text cells (one multi-line, one with a quote, one holding JSON), BLOBs beside.
    (root / "memory.db").unlink(missing_ok=True)
    db = apsw.Connection(str(root / "memory.db"))
    db.execute("CREATE TABLE memories(id INTEGER PRIMARY KEY, content TEXT, embedding BLOB)")
    db.execute("CREATE TABLE notes(k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID")
    rows = [
        (1, "The user prefers tea.", None),
        (2, f"Stripe test account key {s['stripe_live2']}", "stripe_live2"),
        (3, "ssh key for the NAS:\n" + s["rsa_pem2"] + "\n", "rsa_pem2"),
        (4, f"db password: {s['password_sql']}", "password_sql"),
        (5, f"Claude key {s['anthropic2']} (personal)", "anthropic2"),
        (6, json.dumps({"service": "weather", "api_key": s["api_key_cell"]}), "api_key_cell"),
        (7, f"old AWS key {s['aws_key2']}", "aws_key2"),
    ]
    rng = random.Random(3)
    with db:
        for rowid, content, _ in rows:
            db.execute("INSERT INTO memories VALUES(?, ?, ?)",
                       (rowid, content, bytes(rng.randrange(256) for _ in range(64))))
        db.execute("INSERT INTO notes VALUES(?, ?)", ("deploy", "token " + s["slack_bot"]))
    db.close()
    expected["memory.db"] = [Expected(n, f"row memories:{rowid}") for rowid, _, n in rows if n]
    expected["memory.db"].append(Expected("slack_bot", "row notes (dump line", prefix=True))
    return expected


def write_clean(root: Path) -> None:
    """The same files without any secret (the versions a vault holds before the leak)."""
    (root / "notes").mkdir(parents=True, exist_ok=True)
    (root / "notes" / "keys.md").write_text("# Keys I was handed this week\n\n(none yet)\n")
    (root / "config.json").write_text(json.dumps({"max_tokens": 4096, "api_key": None},
                                                 indent=2) + "\n")
    (root / "sessions").mkdir(exist_ok=True)
    (root / "sessions" / "chat.jsonl").write_text(
        json.dumps({"type": "session", "id": "s1", "cwd": "/home/sam/agent"}) + "\n")
    path = root / "memory.db"
    path.unlink(missing_ok=True)
    db = apsw.Connection(str(path))
    db.execute("CREATE TABLE memories(id INTEGER PRIMARY KEY, content TEXT, embedding BLOB)")
    db.execute("CREATE TABLE notes(k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID")
    with db:
        db.execute("INSERT INTO memories VALUES(1, 'The user prefers tea.', X'00ff')")
    db.close()


def write_encoded(root: Path, secrets: dict[str, Planted]) -> dict[str, list[Expected]]:
    """Text files that are not UTF-8 (Latin-1, a stray NUL, UTF-16 with and without a BOM),
    each holding planted secrets; return, per relative path, the secrets in each."""
    s = {name: p.value for name, p in secrets.items()}
    files: dict[str, tuple[bytes, list[Expected]]] = {
        # A note saved by an old editor in Latin-1.
        "notes/cafe-latin1.md": (f"# Caf\xe9 notes\nGitHub PAT: {s['github_fine']}\n"
                                 .encode("latin-1"), [Expected("github_fine", "line 2")]),
        # A transcript whose tool output carried one raw Latin-1 byte.
        "sessions/latin1-tool.jsonl": (
            (json.dumps({"role": "user", "content": f"my key is {s['anthropic']}"}) + "\n")
            .encode() + b'{"role": "tool", "content": "ls: r\xe9sum\xe9.pdf token '
            + s["gitlab"].encode() + b'"}\n',
            [Expected("anthropic", "line 1"), Expected("gitlab", "line 2")]),
        # One NUL in a markdown note.
        "notes/nul.md": (f"# Notes\nAnthropic key: {s['anthropic2']}\npadding\x00\n".encode(),
                         [Expected("anthropic2", "line 2")]),
        # Written by a Windows tool: UTF-16 with a BOM, CRLF; a field as well as a token.
        "notes/win-utf16.txt": (f"Notes\r\nOpenAI key: {s['openai']}\r\n"
                                f"password: {s['password']}\r\n".encode("utf-16"),
                                [Expected("openai", "line 2"), Expected("password", "line 3")]),
        # Big-endian UTF-16 without a BOM.
        "notes/utf16be.txt": (f"deploy with {s['github_classic']}\n".encode("utf-16-be"),
                              [Expected("github_classic", "line 1")]),
    }
    for rel, (data, _) in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return {rel: expected for rel, (_, expected) in files.items()}


def _png(rng: random.Random, width: int, height: int, text: bytes = b"") -> bytes:
    """A real PNG of random pixels (zlib-compressed), with a tEXt chunk when text is given."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    rows = b"".join(b"\x00" + bytes(rng.randrange(256) for _ in range(width * 3))
                    for _ in range(height))
    parts = [b"\x89PNG\r\n\x1a\n", chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                                0, 0, 0))]
    if text:
        parts.append(chunk(b"tEXt", b"Comment\x00" + text))
    parts += [chunk(b"IDAT", zlib.compress(rows, 9)), chunk(b"IEND", b"")]
    return b"".join(parts)


def float32_blob(rng: random.Random, dims: int) -> bytes:
    """An embedding as vault's neighbours store it: little-endian float32, unit-ish norm."""
    import struct

    values = [rng.gauss(0.0, 1.0 / dims ** 0.5) for _ in range(dims)]
    return struct.pack(f"<{dims}f", *values)


def write_binaries(root: Path, seed: int = 11) -> None:
    """Binary files with no secret in them: random bytes, embeddings, integers, a PNG, gzip,
    and a SQLite database of embedding and UUID BLOBs (the false positives to avoid)."""
    import gzip
    import struct
    import uuid

    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "random.bin").write_bytes(bytes(rng.randrange(256) for _ in range(400_000)))
    (root / "vectors.f32").write_bytes(b"".join(float32_blob(rng, 384) for _ in range(200)))
    (root / "token-ids.i32").write_bytes(struct.pack("<20000i", *(rng.randrange(50_000)
                                                                  for _ in range(20_000))))
    (root / "photo.png").write_bytes(_png(rng, 120, 90))
    (root / "notes.txt.gz").write_bytes(gzip.compress(b"The user prefers tea.\n" * 500, mtime=0))
    path = root / "vectors.db"
    path.unlink(missing_ok=True)
    db = apsw.Connection(str(path))
    db.execute("CREATE TABLE chunks(id INTEGER PRIMARY KEY, text TEXT, embedding BLOB, "
               "uid BLOB, meta BLOB)")
    with db:
        for i in range(1, 301):
            meta = json.dumps({"source": f"notes/{i}.md", "tokens": 42 + i}).encode()
            db.execute("INSERT INTO chunks VALUES(?, ?, ?, ?, ?)",
                       (i, f"chunk {i} about tea", float32_blob(rng, 384),
                        uuid.UUID(int=rng.getrandbits(128)).bytes, meta))
    db.close()


def png_with_text(text: bytes, seed: int = 5) -> bytes:
    """A PNG whose tEXt chunk holds text (a secret pasted into an image's comment)."""
    return _png(random.Random(seed), 16, 16, text)


def write_hex_cell_db(path: Path, secrets: dict[str, Planted]) -> dict[int, str]:
    """A database table m whose secrets are in cells a dump writes as hex: TEXT that is not
    UTF-8 (CAST(X'...' AS TEXT)) and BLOBs of JSON, UTF-16 or a bare token, beside float32
    embeddings; return the planted secret's name per rowid."""
    rng = random.Random(4)
    s = {name: p.value for name, p in secrets.items()}
    path.unlink(missing_ok=True)
    db = apsw.Connection(str(path))
    db.execute("CREATE TABLE m(id INTEGER PRIMARY KEY, content TEXT, meta BLOB, emb BLOB)")
    rows: dict[int, tuple[str, bytes | str, bytes | None, str | None]] = {
        1: ("CAST(? AS TEXT)", f"caf\xe9 deploy token {s['github_classic']}".encode("latin-1"),
            None, "github_classic"),
        2: ("?", "note", json.dumps({"api_key": s["anthropic"]}).encode(), "anthropic"),
        3: ("?", "win", f"token {s['gitlab']}\n".encode("utf-16"), "gitlab"),
        4: ("?", "raw", s["stripe_live2"].encode(), "stripe_live2"),
        5: ("?", "clean", b"x'y", None),
    }
    with db:
        for rowid, (expr, content, meta, _) in rows.items():
            db.execute(f"INSERT INTO m VALUES(?, {expr}, ?, ?)",
                       (rowid, content, meta, float32_blob(rng, 384)))
    db.close()
    return {rowid: name for rowid, (_, _, _, name) in rows.items() if name}
