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
