"""Secret scanning: a planted corpus in every format, redaction that keeps files valid, stable
fingerprints, silence on the clean examples, speed, and the `vault secrets` commands."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import re
import stat
import string
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import apsw
import click
import pytest
from click.testing import CliRunner

from conftest import write_config
from secret_corpus import (Expected, Planted, planted, png_with_text, write_binaries, write_clean,
                           write_corpus, write_encoded, write_hex_cell_db)
from vault import secrets as sec
from vault.cli_secrets import register
from vault.config import Config, SecretsSettings, SnapshotSettings, SourceConfig, load_config
from vault.errors import NoVaultError, UsageError, VaultError
from vault.examples import generate
from vault.repo import VaultRepo
from vault.snapshot import take_snapshot
from vault.sources import scan_source
from vault.sqlite_dump import is_dump, load_dump

SECRETS = planted()
CORPUS_FILES = ("notes/keys.md", "config.json", "sessions/chat.jsonl", "memory.db")


def snapshots(root: Path) -> dict[str, bytes]:
    """Every file under root as the vault would store it (SQLite as its dump)."""
    scan = scan_source(SourceConfig("src", root))
    result: dict[str, bytes] = {}
    for entry in scan.entries:
        snap = take_snapshot(entry, SnapshotSettings())
        assert snap.data is not None, (entry.rel, snap.reason)
        result[entry.rel] = snap.data
    return result


PlantedFiles = tuple[dict[str, bytes], dict[str, list[Expected]]]


def planted_files(factory: pytest.TempPathFactory, name: str,
                  write: Callable[[Path, dict[str, Planted]], dict[str, list[Expected]]]) -> PlantedFiles:
    """Files written by one of secret_corpus's writers, as vault bytes, and where each planted
    secret is."""
    root = factory.mktemp(name)
    expected = write(root, SECRETS)
    return snapshots(root), expected


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> PlantedFiles:
    """The corpus files as vault bytes, and where each planted secret is."""
    return planted_files(tmp_path_factory, "corpus", write_corpus)


def matches(finding: sec.Finding, exp: Expected) -> bool:
    planted_ = SECRETS[exp.name]
    place = finding.locator.startswith(exp.locator) if exp.prefix else finding.locator == exp.locator
    return (place and finding.kind == planted_.kind
            and finding.fingerprint == sec.fingerprint(planted_.value))


def test_corpus_has_at_least_15_kinds_in_four_formats(
        corpus: tuple[dict[str, bytes], dict[str, list[Expected]]]) -> None:
    data, expected = corpus
    kinds = {SECRETS[e.name].kind for items in expected.values() for e in items}
    assert len(kinds) >= 15, kinds
    assert set(expected) == set(CORPUS_FILES)
    assert is_dump(data["memory.db"])
    # Every planted secret is somewhere in the corpus.
    assert {e.name for items in expected.values() for e in items} == set(SECRETS)


@pytest.mark.parametrize("rel", CORPUS_FILES)
def test_scan_finds_each_planted_secret_with_kind_and_locator(
        corpus: tuple[dict[str, bytes], dict[str, list[Expected]]], rel: str) -> None:
    data, expected = corpus
    findings = sec.scan_bytes(data[rel], path=f"agent/{rel}")
    for exp in expected[rel]:
        assert any(matches(f, exp) for f in findings), (
            exp, SECRETS[exp.name].kind, [(f.kind, f.locator) for f in findings])
    # ... and nothing else: every finding is a planted secret.
    for f in findings:
        assert any(matches(f, exp) for exp in expected[rel]), f


def test_offsets_cover_exactly_the_secret_in_text_files(
        corpus: tuple[dict[str, bytes], dict[str, list[Expected]]]) -> None:
    data, expected = corpus
    for rel in ("notes/keys.md", "sessions/chat.jsonl", "config.json"):
        by_fp = {f.fingerprint: f for f in sec.scan_bytes(data[rel], path=rel)}
        for exp in expected[rel]:
            value = SECRETS[exp.name].value
            f = by_fp[sec.fingerprint(value)]
            span = data[rel][f.start:f.end]
            assert span in (value.encode(), json.dumps(value)[1:-1].encode()), (exp, span[:20])


@pytest.mark.parametrize("rel", CORPUS_FILES)
def test_redact_removes_every_secret_and_keeps_the_format_valid(
        corpus: tuple[dict[str, bytes], dict[str, list[Expected]]], rel: str,
        tmp_path: Path) -> None:
    data, expected = corpus
    findings = sec.scan_bytes(data[rel], path=rel)
    out = sec.redact(data[rel], findings)
    for exp in expected[rel]:
        for needle in SECRETS[exp.name].needles():
            assert needle not in out, (exp.name, needle[:12])
    markers = re.findall(rb"\[REDACTED:([a-z0-9-]+):([0-9a-f]{12})\]", out)
    assert len(markers) == len(findings)
    assert {fp.decode() for _, fp in markers} == {f.fingerprint for f in findings}
    assert sec.is_redacted(out) and not sec.is_redacted(data[rel])
    assert sec.scan_bytes(out, path=rel) == []  # markers are not secrets themselves
    if rel.endswith(".json"):
        doc = json.loads(out)
        assert doc["api_key"].startswith("[REDACTED:high-entropy-secret:")
        assert doc["service_account"]["private_key"].startswith("[REDACTED:private-key:")
        assert doc["max_tokens"] == 4096
    elif rel.endswith(".jsonl"):
        rows = [json.loads(line) for line in out.decode().splitlines()]
        assert rows[0]["type"] == "session" and rows[-1]["usage"] == {"input_tokens": 812}
    elif rel.endswith(".db"):
        load_dump(out, tmp_path / "restored.db")
        db = apsw.Connection(str(tmp_path / "restored.db"))
        cells = {int(i): str(c) for i, c in db.execute("SELECT id, content FROM memories")}
        assert cells[1] == "The user prefers tea."
        assert cells[3].startswith("ssh key for the NAS:\n[REDACTED:private-key:")
        assert cells[4].startswith("db password: [REDACTED:password-assignment:")
        assert json.loads(cells[6])["api_key"].startswith("[REDACTED:")
        blobs = [b for (b,) in db.execute("SELECT embedding FROM memories")]
        assert all(isinstance(b, bytes) and len(b) == 64 for b in blobs)
        db.close()
    else:
        text = out.decode()
        assert "postgres://app:[REDACTED:password-in-url:" in text
        assert "Authorization: Bearer [REDACTED:bearer-token:" in text


def test_redact_marker_names_kind_and_fingerprint() -> None:
    token = SECRETS["github_classic"].value
    data = f"token {token} here\n".encode()
    (f,) = sec.scan_bytes(data, path="a.md")
    assert sec.redact(data, [f]) == f"token [REDACTED:github-token:{f.fingerprint}] here\n".encode()
    assert sec.marker("password in URL", "0123456789ab") == "[REDACTED:password-in-url:0123456789ab]"


def test_fingerprints_are_stable_across_formats_and_reveal_nothing(
        corpus: tuple[dict[str, bytes], dict[str, list[Expected]]]) -> None:
    data, _ = corpus
    value = SECRETS["slack_bot"].value  # in the markdown and in a SQLite cell
    in_md = [f for f in sec.scan_bytes(data["notes/keys.md"], path="x") if f.kind == "Slack token"]
    in_db = [f for f in sec.scan_bytes(data["memory.db"], path="y")
             if f.locator.startswith("row notes")]
    assert in_md[0].fingerprint == in_db[0].fingerprint == sec.fingerprint(value)
    assert sec.fingerprint(value) == sec.fingerprint(value.encode())
    for p in SECRETS.values():
        fp = sec.fingerprint(p.value)
        assert re.fullmatch(r"[0-9a-f]{12}", fp)
        assert fp not in p.value and p.value[:8] not in fp
    findings = [f for blob in data.values() for f in sec.scan_bytes(blob, path="z")]
    shown = repr(findings) + sec.describe(findings, limit=len(findings))
    for p in SECRETS.values():
        for needle in p.needles():
            assert needle.decode() not in shown


def test_same_secret_in_a_pem_block_has_one_fingerprint_in_json_and_markdown() -> None:
    pem = SECRETS["rsa_pem"].value
    md = f"key:\n{pem}\n".encode()
    js = (json.dumps({"private_key": pem + "\n"}) + "\n").encode()
    (a,) = sec.scan_bytes(md, path="a.md")
    (b,) = sec.scan_bytes(js, path="b.json")
    assert a.fingerprint == b.fingerprint == sec.fingerprint(pem)
    assert a.locator == "line 2" and b.locator == "line 1"


@pytest.mark.parametrize("text", [
    "Session tokens rotate every 15 minutes; refresh tokens last 14 days.",
    '{"max_tokens": 4096, "totalTokens": 16777, "input_tokens": 812}',
    '{"token_count": 1234, "password_hash": "$2b$12$abcdefghijklmnopqrstuv", "api_key_id": "k-1"}',
    "commit 3f9a2b1c4d5e6f708192a3b4c5d6e7f8091a2b3c and uuid f3b2c1d0-1234-4abc-8def-0123456789ab",
    "sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "password: rotated on Monday (see 1Password)",
    "password: ${DB_PASSWORD}\napi_key = os.environ['API_KEY']\ntoken: <your token here>",
    '"password": "changeme", "secret": null, "api_key": "[REDACTED:high-entropy-secret:0123456789ab]"',
    "The author key (OPS-1234) is in the keyring; AUTH: required",
    "INSERT INTO \"t\"(\"id\",\"v\") VALUES(1,X'736b5f6c6976655f000102');",
    "Bearer of bad news: the basic plan was cancelled.",
    "postgres://app@db.internal:5432/app and https://user:${PASSWORD}@host/",
    "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----",
    '{"sessionKey": "agent:main:telegram:dm:123456789", "cache_key": "a1b2c3d4e5f60718293a4b5c"}',
    '{"idempotency_key": "f3b2c1d0-1234-4abc-8def-0123456789ab", "key": "9f86d081884c7d659a2f"}',
    "ticket OPS-1234: rotate the signing key (key id kid-2026-11-21-a)",
    'access_token: "refresh-token-v2-enabled-2026"',
    "secrets: SecretsSettings = field(default_factory=SecretsSettings)\n"
    "secrets = SecretsSettings(policy=policy, allow_paths=raw.strings('allow_paths', ()))",
    "password = getpass.getpass()\ntoken = request.headers['Authorization']\n"
    "db_password = settings.database.password",
])
def test_ordinary_text_is_not_a_secret(text: str) -> None:
    assert sec.scan_bytes(text.encode(), path="note.md") == []


def test_scrub_redacts_secrets_in_messages() -> None:
    token = SECRETS["github_classic"].value
    message = (f"push failed: https://x-access-token:{token}@github.com/sam/vault.git "
               "rejected; https://0a1b2c3d4e5f60718293a4b5c6d7e8f9@github.com/sam/v.git")
    out = sec.scrub(message)
    assert token not in out and "0a1b2c3d4e5f60718293a4b5c6d7e8f9" not in out
    assert out.startswith("push failed: https://x-access-token:[REDACTED:github-token:")
    assert "https://[REDACTED:token-in-url:" in out
    assert sec.scrub("nothing to see: OPS-1234 failed") == "nothing to see: OPS-1234 failed"


@pytest.fixture(scope="module")
def encoded(tmp_path_factory: pytest.TempPathFactory) -> PlantedFiles:
    """The same secrets in Latin-1, UTF-16 and NUL-holding files."""
    return planted_files(tmp_path_factory, "encoded", write_encoded)


def test_files_not_utf8_are_scanned(
        encoded: tuple[dict[str, bytes], dict[str, list[Expected]]]) -> None:
    # Latin-1, one NUL, UTF-16 with and without a BOM: once passed over whole, now scanned.
    data, expected = encoded
    assert set(data) == set(expected)
    for rel, items in expected.items():
        findings = sec.scan_bytes(data[rel], path=rel)
        for exp in items:
            assert any(matches(f, exp) for f in findings), (rel, exp, findings)
        assert len(findings) == len(items), (rel, findings)
        assert all(f.redactable for f in findings), rel


@pytest.mark.parametrize("rel", ["notes/cafe-latin1.md", "sessions/latin1-tool.jsonl",
                                 "notes/nul.md", "notes/win-utf16.txt", "notes/utf16be.txt"])
def test_files_not_utf8_are_redacted_in_their_own_encoding(
        encoded: tuple[dict[str, bytes], dict[str, list[Expected]]], rel: str) -> None:
    data, expected = encoded
    screened = sec.screen(data[rel], path=rel, settings=SecretsSettings(policy="redact"))
    out = screened.data
    assert screened.redacted and out is not None
    for exp in expected[rel]:
        value = SECRETS[exp.name].value
        for form in ("utf-8", "utf-16-le", "utf-16-be"):
            assert value.encode(form) not in out, (exp.name, form)
    assert sec.is_redacted(out) and sec.scan_bytes(out, path=rel) == []
    if "utf16" in rel:  # still UTF-16 text, the same but for the markers
        codec = "utf-16" if out.startswith(b"\xff\xfe") else "utf-16-be"
        text = data[rel].decode(codec)
        for exp in expected[rel]:
            planted_ = SECRETS[exp.name]
            text = text.replace(planted_.value, sec.marker(planted_.kind,
                                                           sec.fingerprint(planted_.value)))
        assert out.decode(codec) == text
    else:  # the bytes that are not UTF-8 stay as they were
        for odd in (b"\xe9", b"\x00"):
            assert out.count(odd) == data[rel].count(odd)
    if rel.endswith(".jsonl"):  # each line is still JSON (read as the Latin-1 it is)
        assert all(json.loads(line.decode("latin-1")) for line in out.splitlines())


def test_binary_files_raise_nothing(tmp_path: Path) -> None:
    # Random bytes, float32 embeddings, integers, a PNG, gzip, a database of embedding BLOBs.
    write_binaries(tmp_path / "bin")
    data = snapshots(tmp_path / "bin")
    assert len(data) == 6 and is_dump(data["vectors.db"])
    assert {rel: f for rel, blob in data.items() if (f := sec.scan_bytes(blob, path=rel))} == {}


def test_a_secret_in_binary_data_blocks_the_file_even_under_redact() -> None:
    token = SECRETS["github_classic"].value
    png = png_with_text(f"uploaded with {token}\n".encode())
    (f,) = sec.scan_bytes(png, path="a/shot.png")
    assert (f.kind, f.fingerprint, f.redactable) == ("GitHub token", sec.fingerprint(token), False)
    screened = sec.screen(png, path="a/shot.png", settings=SecretsSettings(policy="redact"))
    assert screened.data is None and not screened.redacted
    assert screened.reason == (f"secret found: GitHub token at {f.locator} (fingerprint "
                               f"{f.fingerprint}); blocked, not redacted: binary data cannot "
                               "take a marker in place of a secret without breaking its format")


def test_empty_data_and_utf8_offsets() -> None:
    token = SECRETS["github_classic"].value.encode()
    assert sec.scan_bytes(b"", path="empty") == []
    assert sec.scan_bytes("café ".encode() + token, path="x.md")[0].start == len("café ".encode())


def test_dump_cells_with_quotes_newlines_and_unicode_redact_cleanly(tmp_path: Path) -> None:
    token = SECRETS["github_classic"].value
    password = SECRETS["password_sql"].value
    cells = [f"it's '{token}'", f"x\n{token}\ny", f"pw: ''{password}''", f"{token}'",
             "é" * 5 + token, "password: ab'cd'ef12345"]
    db = apsw.Connection(str(tmp_path / "a.db"))
    db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, c TEXT)")
    for i, cell in enumerate(cells, 1):
        db.execute("INSERT INTO t VALUES(?, ?)", (i, cell))
    db.close()
    from vault.sqlite_dump import snapshot_sqlite

    dump = snapshot_sqlite(tmp_path / "a.db")
    findings = sec.scan_bytes(dump, path="a.db")
    assert [f.locator for f in findings] == [f"row t:{i}" for i in range(1, 7)]
    assert [f.fingerprint for f in findings if f.kind == "GitHub token"] == [
        sec.fingerprint(token)] * 4
    assert findings[2].fingerprint == sec.fingerprint(password)
    assert findings[5].fingerprint == sec.fingerprint("ab'cd'ef12345")
    load_dump(sec.redact(dump, findings), tmp_path / "b.db")
    db = apsw.Connection(str(tmp_path / "b.db"))
    rows = [c for (c,) in db.execute("SELECT c FROM t ORDER BY id")]
    db.close()
    fp = sec.fingerprint(token)
    assert rows[:2] == [f"it's '[REDACTED:github-token:{fp}]'",
                        f"x\n[REDACTED:github-token:{fp}]\ny"]
    assert rows[2].startswith("pw: ''[REDACTED:password-assignment:") and rows[2].endswith("''")
    assert rows[3:5] == [f"[REDACTED:github-token:{fp}]'", f"ééééé[REDACTED:github-token:{fp}]"]


def test_blob_and_cast_cells_of_a_dump_are_scanned(tmp_path: Path) -> None:
    from vault.sqlite_dump import snapshot_sqlite

    planted_rows = write_hex_cell_db(tmp_path / "m.db", SECRETS)
    dump = snapshot_sqlite(tmp_path / "m.db")
    assert b"CAST(X'" in dump  # the cells really are hex in the dump
    findings = sec.scan_bytes(dump, path="m.db")
    assert [(f.locator, f.kind, f.fingerprint) for f in findings] == [
        (f"row m:{rowid}", SECRETS[name].kind, sec.fingerprint(SECRETS[name].value))
        for rowid, name in planted_rows.items()]
    assert all(f.redactable and f.encoding.startswith("hex:") for f in findings)


def test_blob_and_cast_cells_are_redacted_and_the_dump_rebuilds(tmp_path: Path) -> None:
    from vault.sqlite_dump import snapshot_sqlite

    planted_rows = write_hex_cell_db(tmp_path / "m.db", SECRETS)
    dump = snapshot_sqlite(tmp_path / "m.db")
    out = sec.redact(dump, sec.scan_bytes(dump, path="m.db"))
    for name in planted_rows.values():
        value = SECRETS[name].value
        for form in (value.encode(), value.encode("utf-16-le")):
            assert form not in out and form.hex().encode() not in out, name
    assert sec.is_redacted(out) and not sec.is_redacted(dump)
    assert sec.scan_bytes(out, path="m.db") == []
    load_dump(out, tmp_path / "r.db")
    db = apsw.Connection(str(tmp_path / "r.db"))
    rows = {int(r[0]): r[1:] for r in db.execute(
        "SELECT id, typeof(content), CAST(content AS BLOB), meta, emb FROM m")}
    before = {int(r[0]): r[1:] for r in apsw.Connection(str(tmp_path / "m.db")).execute(
        "SELECT id, typeof(content), CAST(content AS BLOB), meta, emb FROM m")}
    db.close()
    fp = {name: sec.fingerprint(SECRETS[name].value) for name in planted_rows.values()}
    assert rows[1][:2] == ("text", f"caf\xe9 deploy token [REDACTED:github-token:"
                                   f"{fp['github_classic']}]".encode("latin-1"))
    assert json.loads(rows[2][2]) == {"api_key": f"[REDACTED:anthropic-api-key:{fp['anthropic']}]"}
    assert rows[3][2].decode("utf-16") == f"token [REDACTED:gitlab-token:{fp['gitlab']}]\n"
    assert rows[4][2] == f"[REDACTED:stripe-secret-key:{fp['stripe_live2']}]".encode()
    assert rows[5] == before[5]
    assert [r[3] for r in rows.values()] == [r[3] for r in before.values()]  # embeddings


def test_allowed_fingerprints_are_not_reported() -> None:
    value = SECRETS["gitlab"].value
    data = f"gitlab {value}\n".encode()
    fp = sec.fingerprint(value)
    assert [f.fingerprint for f in sec.scan_bytes(data, path="a")] == [fp]
    assert sec.scan_bytes(data, path="a", allow_fingerprints=frozenset({fp})) == []
    assert sec.scan_bytes(data, path="a", allow_fingerprints=frozenset({fp[:8]})) == []
    assert sec.scan_bytes(data, path="a", allow_fingerprints=frozenset({"0" * 12})) != []


def test_path_allowed_uses_gitignore_patterns() -> None:
    assert sec.path_allowed("agent/fixtures/keys.md", ["fixtures/"])
    assert sec.path_allowed("agent/a/b.json", ["agent/**/*.json"])
    assert not sec.path_allowed("agent/notes.md", ["*.json"])
    assert not sec.path_allowed("agent/notes.md", [])
    assert not sec.path_allowed("agent/keep.json", ["*.json", "!keep.json"])


def test_screen_applies_the_policy() -> None:
    value = SECRETS["anthropic"].value
    data = f"key: {value}\n".encode()
    blocked = sec.screen(data, path="a/n.md", settings=SecretsSettings())
    assert blocked.data is None and len(blocked.findings) == 1
    fp = blocked.findings[0].fingerprint
    assert blocked.reason == f"secret found: Anthropic API key at line 1 (fingerprint {fp})"
    redacted = sec.screen(data, path="a/n.md", settings=SecretsSettings(policy="redact"))
    assert redacted.redacted and redacted.data is not None
    assert redacted.data == f"key: [REDACTED:anthropic-api-key:{fp}]\n".encode()
    for settings, allowed in ((SecretsSettings(policy="allow"), frozenset[str]()),
                              (SecretsSettings(allow_paths=("n.md",)), frozenset()),
                              (SecretsSettings(), frozenset({fp}))):
        passed = sec.screen(data, path="a/n.md", settings=settings, allowed=allowed)
        assert passed.data == data and not passed.findings and not passed.redacted


def test_describe_caps_the_list() -> None:
    findings = [sec.Finding("JWT", f"{i:012x}", f"line {i}", 0, 1) for i in range(8)]
    text = sec.describe(findings)
    assert text.startswith("8 secrets found: JWT at line 0 (fingerprint 000000000000); ")
    assert text.endswith("; and 3 more")


def test_clean_examples_raise_nothing(tmp_path: Path) -> None:
    generate(tmp_path / "ex", scale=2, seed=3)
    data = snapshots(tmp_path / "ex")
    assert len(data) > 40
    found = {rel: sec.scan_bytes(blob, path=rel) for rel, blob in data.items()}
    assert {rel: f for rel, f in found.items() if f} == {}


def test_import_loads_no_detector() -> None:
    """Importing the scanner (on sync's path) loads none of the heavy libraries; how fast it
    scans is measured by benchmarks/bench_secrets.py, not asserted here."""
    code = ("import sys, json, re, dataclasses, vault.errors\n"
            "import vault.secrets, vault.cli_secrets\n"
            "print(sorted(m for m in ('detect_secrets', 'hashlib', 'pathspec', 'apsw', 'pygit2')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out == ["[]"]


# --- history -----------------------------------------------------------------------------


def test_scan_history_finds_every_commit_and_each_blob_once(tmp_path: Path) -> None:
    repo, _ = VaultRepo.init(tmp_path / "v", "main")
    from datetime import datetime, timezone

    when = datetime(2026, 11, 21, tzinfo=timezone.utc)
    token = SECRETS["github_classic"].value
    clean = repo.write_blob(b"nothing here\n")
    leak = repo.write_blob(f"token {token}\n".encode())
    c1 = repo.commit(None, {"a/notes.md": (leak, 0o100644), "a/ok.md": (clean, 0o100644)},
                     "one", when, "h")
    c2 = repo.commit(c1, {"a/copy.md": (leak, 0o100644)}, "two", when, "h")
    c3 = repo.commit(c2, {"a/notes.md": (clean, 0o100644)}, "three", when, "h")
    found = sec.scan_history(repo)
    fp = sec.fingerprint(token)
    assert [(f.fingerprint, f.path, f.first_commit, f.last_commit, f.commits, f.locator)
            for f in found] == [(fp, "a/copy.md", c2, c3, 2, "line 1"),
                                (fp, "a/notes.md", c1, c2, 2, "line 1")]
    assert sec.scan_history(repo, allow_fingerprints=frozenset({fp})) == []
    assert sec.scan_history(repo, allow_paths=["copy.md", "notes.md"]) == []


# --- allowlist and CLI -------------------------------------------------------------------


@pytest.fixture
def leaky(tmp_path: Path) -> tuple[Config, Path]:
    """A config whose source holds the corpus, and an initialised vault."""
    src = tmp_path / "agent"
    write_corpus(src, SECRETS)
    path = write_config(tmp_path / "vault.toml", {"agent": src})
    config = load_config(path)
    VaultRepo.init(config.vault.path, config.vault.branch)
    return config, path


def cli_group() -> click.Group:
    @click.group()
    def root() -> None:
        """Test root."""

    register(root)
    return root


def test_allow_fingerprint_records_it_atomically(leaky: tuple[Config, Path]) -> None:
    config, _ = leaky
    fp = sec.fingerprint(SECRETS["hf"].value)
    assert sec.allow_fingerprint(config, fp.upper())
    assert not sec.allow_fingerprint(config, fp)
    path = config.state_dir / sec.ALLOW_FILE
    assert json.loads(path.read_text()) == {"version": 1, "fingerprints": [fp]}
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert fp in sec.allowed_fingerprints(config)
    with pytest.raises(UsageError, match="not a fingerprint"):
        sec.allow_fingerprint(config, "hunter2")


def test_allowed_fingerprints_unions_config_and_file(tmp_path: Path) -> None:
    path = write_config(tmp_path / "vault.toml", {},
                        extra='[secrets]\nallow_fingerprints = ["aaaaaaaaaaaa"]')
    config = load_config(path)
    VaultRepo.init(config.vault.path, config.vault.branch)
    sec.allow_fingerprint(config, "bbbbbbbbbbbb")
    assert sec.allowed_fingerprints(config) == {"aaaaaaaaaaaa", "bbbbbbbbbbbb"}
    (config.state_dir / sec.ALLOW_FILE).write_text("{broken")
    with pytest.raises(VaultError, match="cannot read"):
        sec.allowed_fingerprints(config)


def test_allow_needs_a_vault(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path / "vault.toml", {}))
    with pytest.raises(NoVaultError):
        sec.allow_fingerprint(config, "aaaaaaaaaaaa")


def test_cli_scan_lists_findings_by_fingerprint_and_never_a_value(
        leaky: tuple[Config, Path]) -> None:
    config, path = leaky
    runner = CliRunner()
    result = runner.invoke(cli_group(), ["secrets", "scan", "--config", str(path)])
    assert result.exit_code == 1, result.output
    out = result.output
    assert out.splitlines()[0].endswith("found in the sources (values are never shown):")
    fp = sec.fingerprint(SECRETS["gitlab"].value)
    assert f"  {fp}  GitLab token\n      agent/notes/keys.md line 6\n" in out
    assert "row memories:3" in out and "If one is not a secret: vault secrets allow" in out
    result = runner.invoke(cli_group(), ["secrets", "scan", "--json", "--config", str(path)])
    doc = json.loads(result.output)
    assert doc["scope"] == "sources" and doc["policy"] == "block"
    by_fp = {f["fingerprint"]: f for f in doc["findings"]}
    assert doc["count"] == len(by_fp) == len({sec.fingerprint(p.value) for p in SECRETS.values()})
    assert by_fp[fp] == {"fingerprint": fp, "kind": "GitLab token",
                         "locations": [{"path": "agent/notes/keys.md", "locator": "line 6"}]}
    for p in SECRETS.values():
        for needle in p.needles():
            assert needle.decode() not in out and needle.decode() not in result.output


def test_cli_scan_names_the_files_it_could_not_scan(leaky: tuple[Config, Path]) -> None:
    """A half-written JSON file (or one too large) hides what it holds: "no secrets found"
    alone would be a clean bill for a file nobody read."""
    config, path = leaky
    src = config.sources[0].root
    fps = {sec.fingerprint(p.value) for p in SECRETS.values()}
    for fp in fps:
        sec.allow_fingerprint(config, fp)
    (src / "half.json").write_text('{"token": "ghp_')
    runner = CliRunner()
    result = runner.invoke(cli_group(), ["secrets", "scan", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "No secrets found in the sources."
    assert "Not scanned (1, and not synced either until they can be read):\n" \
           "  agent/half.json: invalid JSON (half-written?)" in result.output
    result = runner.invoke(cli_group(), ["secrets", "scan", "--json", "--config", str(path)])
    doc = json.loads(result.output)
    assert [n["path"] for n in doc["not_scanned"]] == ["agent/half.json"]
    assert doc["not_scanned"][0]["reason"].startswith("invalid JSON (half-written?)")
    result = runner.invoke(cli_group(), ["secrets", "scan", "--history", "--json", "--config",
                                         str(path)])
    assert json.loads(result.output)["not_scanned"] == []


def test_scan_lists_the_files_its_walk_could_not_take(tmp_path: Path) -> None:
    """A file whose name is not UTF-8 (sync skips it, saying so) was left out of the scan
    without a word: "No secrets found" of a file holding a token nobody read."""
    src = tmp_path / "agent"
    src.mkdir()
    (src / "ok.md").write_text("nothing here\n")
    token = SECRETS["github_classic"].value
    with open(os.fsencode(src) + b"/\xffsecret.md", "wb") as handle:
        handle.write(f"token {token}\n".encode())
    path = write_config(tmp_path / "vault.toml", {"agent": src})
    result = CliRunner().invoke(cli_group(), ["secrets", "scan", "--json", "--config", str(path)])
    doc = json.loads(result.output)
    assert doc["count"] == 0
    assert [n["path"] for n in doc["not_scanned"]] == ["agent/\ufffdsecret.md"]
    assert "not valid UTF-8" in doc["not_scanned"][0]["reason"]


def test_cli_allow_then_scan_skips_it(leaky: tuple[Config, Path]) -> None:
    config, path = leaky
    runner = CliRunner()
    fps = {sec.fingerprint(p.value) for p in SECRETS.values()}
    for i, fp in enumerate(sorted(fps)):
        args = ["secrets", "allow", fp, "--config", str(path)] + (["--json"] if i == 0 else [])
        result = runner.invoke(cli_group(), args)
        assert result.exit_code == 0, result.output
        if i == 0:
            assert json.loads(result.output) == {
                "fingerprint": fp, "added": True,
                "file": str(config.state_dir / sec.ALLOW_FILE)}
        else:
            assert result.output == f"Allowed {fp}: later syncs take files holding it as they are.\n"
    result = runner.invoke(cli_group(), ["secrets", "scan", "--config", str(path)])
    assert result.exit_code == 0 and result.output == "No secrets found in the sources.\n"
    result = runner.invoke(cli_group(), ["secrets", "allow", "nothex", "--config", str(path)])
    assert isinstance(result.exception, UsageError)


def test_cli_scan_history(leaky: tuple[Config, Path]) -> None:
    config, path = leaky
    repo = VaultRepo.open(config.vault.path, config.vault.branch)
    from datetime import datetime, timezone

    token = SECRETS["stripe_live"].value
    blob = repo.write_blob(f"stripe {token}\n".encode())
    commit = repo.commit(None, {"agent/old.md": (blob, 0o100644)}, "leak",
                         datetime(2026, 11, 21, tzinfo=timezone.utc), "h")
    runner = CliRunner()
    result = runner.invoke(cli_group(), ["secrets", "scan", "--history", "--config", str(path)])
    assert result.exit_code == 1
    fp = sec.fingerprint(token)
    assert (f"  {fp}  Stripe secret key\n      agent/old.md line 1 "
            f"(commit {commit[:10]}, 1 in all)\n") in result.output
    assert token not in result.output
    result = runner.invoke(cli_group(),
                           ["secrets", "scan", "--history", "--json", "--config", str(path)])
    doc = json.loads(result.output)
    assert doc["scope"] == "history" and doc["findings"] == [
        {"fingerprint": fp, "kind": "Stripe secret key",
         "locations": [{"path": "agent/old.md", "locator": "line 1", "first_commit": commit,
                        "last_commit": commit, "commits": 1}]}]


def test_clean_corpus_files_are_clean(tmp_path: Path) -> None:
    write_clean(tmp_path / "c")
    assert all(sec.scan_bytes(v, path=k) == [] for k, v in snapshots(tmp_path / "c").items())


def test_planted_values_are_unique() -> None:
    values = [p.value for p in SECRETS.values()]
    assert len(set(values)) == len(values)
    assert all(isinstance(p, Planted) for p in SECRETS.values())


def _probe_rules(env: dict[str, str]) -> dict[str, object]:
    """In a fresh process: the library rules as compiled, and whether detect-secrets was imported."""
    code = ("import json, sys; from vault import secrets as s; r = s._rules(); "
            "print(json.dumps({'rules': [[x.kind, x.pattern.pattern.decode(), x.pattern.flags] "
            "for x in r.tokens], 'imported': 'detect_secrets' in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    result: dict[str, object] = json.loads(out)
    return result


def test_library_patterns_are_cached_and_identical_to_an_import(tmp_path: Path) -> None:
    env = {**os.environ, "VAULT_HOME": str(tmp_path / "home")}
    first = _probe_rules(env)
    assert first["imported"] is True  # no cache yet: read from the plugins
    cache = tmp_path / "home" / "cache" / sec.PATTERN_CACHE
    assert cache.is_file()
    second = _probe_rules(env)
    assert second["imported"] is False  # from the cache: detect-secrets (and requests) not loaded
    assert second["rules"] == first["rules"]
    assert len(first["rules"]) > len(sec._OWN)  # type: ignore[arg-type]

    cache.write_bytes(b"\x00damaged")  # a damaged cache is read past, never trusted
    third = _probe_rules(env)
    assert third["imported"] is True and third["rules"] == first["rules"]


def test_library_pattern_cache_follows_the_installed_plugins(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    monkeypatch.setenv("VAULT_HOME", str(tmp_path / "home"))
    stamp = sec._library_stamp()
    assert stamp is not None
    real = sec._library_patterns()
    # Another install (different plugin files) must not reuse patterns cached for this one.
    monkeypatch.setattr(sec, "_library_stamp", lambda: ("other",) + tuple(stamp))
    monkeypatch.setattr(sec, "_import_library_patterns", lambda: [])
    assert sec._library_patterns() == []
    monkeypatch.undo()
    monkeypatch.setenv("VAULT_HOME", str(tmp_path / "home"))
    assert sec._library_patterns() == real  # the cache now names the other install: re-read


# --- AWS secret access keys: no prefix, so found by what is near them ---------------------

AWS_ID, AWS_SECRET = SECRETS["aws_key"].value, SECRETS["aws_secret"].value


@pytest.mark.parametrize("text", [
    f"AWS creds for the deploy: access key {AWS_ID}, secret {AWS_SECRET}",
    f"access key {AWS_ID}\nregion us-east-1\nsecret {AWS_SECRET}\n",
    f"The AWS secret access key is {AWS_SECRET}",
    f"aws secret: {AWS_SECRET}",
    f"secret access key => {AWS_SECRET} (rotated)",
    f'{{"AccessKeyId": "{AWS_ID}", "SecretAccessKey": "{AWS_SECRET}"}}',
    f"export AWS_SECRET_ACCESS_KEY={AWS_SECRET}",
], ids=["id-then-secret", "two-lines-apart", "prose", "aws-secret", "secret-access-key",
        "sts-json", "env"])
def test_an_aws_secret_key_is_found_near_what_names_it(text: str) -> None:
    findings = sec.scan_bytes(text.encode(), path="n.md")
    by_fp = {f.fingerprint: f.kind for f in findings}
    assert by_fp.get(sec.fingerprint(AWS_SECRET)) == "AWS secret key", findings
    out = sec.redact(text.encode(), findings).decode()
    assert AWS_SECRET not in out and AWS_ID not in out


def _b64(n: int, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(string.ascii_letters + string.digits + "+/") for _ in range(n))


@pytest.mark.parametrize("text", [
    f"cache entry {_b64(40, 1)} expired",  # 40 random characters, nothing AWS near
    f"aws s3 cp done, etag {hashlib.sha1(b'x').hexdigest()}",  # a hash next to "aws"
    f"aws embedding: {_b64(2048, 2)}==",  # base64 of a vector near "aws": no 40-char run
    f"aws digest {base64.b64encode(hashlib.sha256(b'x').digest()).decode()}",  # 44 with =
    f"aws\n\n\n\nlater: {_b64(40, 3)}",  # four lines away
    "AWS region us-east-1; bucket arn:aws:s3:::my-bucket-for-the-agent-memory-vault-2026",
])
def test_forty_characters_without_aws_context_are_not_a_secret(text: str) -> None:
    assert sec.scan_bytes(text.encode(), path="n.md") == []


# --- fingerprint salt ----------------------------------------------------------------------


def _fp_in_process(value: str, home: Path) -> str:
    code = "import sys; from vault import secrets as s; print(s.fingerprint(sys.argv[1]))"
    return subprocess.run([sys.executable, "-c", code, value], capture_output=True, text=True,
                          check=True, env={**os.environ, "VAULT_HOME": str(home)}).stdout.strip()


def test_fingerprints_use_a_salt_made_once_per_install_outside_the_vault(tmp_path: Path) -> None:
    value = SECRETS["password"].value
    home = Path(os.environ["VAULT_HOME"])
    fp = sec.fingerprint(value)
    salt_file = home / sec.SALT_FILE
    assert stat.S_IMODE(os.stat(salt_file).st_mode) == 0o600
    assert re.fullmatch(rb"[0-9a-f]{64}\n", salt_file.read_bytes())
    # Not the constant salt: the fingerprint cannot be checked offline with a guess list.
    assert fp != sec.legacy_fingerprint(value)
    assert fp != hashlib.sha256(b"vault-secret\0" + value.encode()).hexdigest()[:12]
    # Stable: another process of this install gives the same; another install does not.
    assert _fp_in_process(value, home) == fp
    assert _fp_in_process(value, tmp_path / "other") not in ("", fp)


def test_a_salt_made_by_many_processes_at_once_is_one_salt(tmp_path: Path) -> None:
    home = tmp_path / "fresh"
    code = ("import sys, time; t = float(sys.argv[1])\n"
            "while time.time() < t: pass\n"
            "from vault import secrets as s; print(s.fingerprint('one value'))")
    start = str(time.time() + 1.0)
    procs = [subprocess.Popen([sys.executable, "-c", code, start], stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "VAULT_HOME": str(home)})
             for _ in range(8)]
    outs = {p.communicate()[0].strip() for p in procs}
    assert len(outs) == 1 and re.fullmatch(r"[0-9a-f]{12}", outs.pop())
    assert [p.name for p in home.iterdir()] == [sec.SALT_FILE]  # no temp file left behind


def test_allow_entries_and_markers_made_with_the_old_salt_still_count() -> None:
    value = SECRETS["gitlab"].value
    data = f"gitlab {value}\n".encode()
    old = sec.legacy_fingerprint(value)
    assert sec.scan_bytes(data, path="a", allow_fingerprints=frozenset({old})) == []
    assert sec.scan_bytes(data, path="a", allow_fingerprints=frozenset({old[:8]})) == []
    assert sec.scan_bytes(data, path="a", allow_fingerprints=frozenset({"0" * 12})) != []
    # A marker committed by an older version is a marker, not a secret.
    committed = f"gitlab [REDACTED:gitlab-token:{old}]\n".encode()
    assert sec.is_redacted(committed) and sec.scan_bytes(committed, path="a") == []


def test_a_damaged_salt_is_an_error_and_messages_are_scrubbed_all_the_same(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "damaged"
    home.mkdir()
    (home / sec.SALT_FILE).write_text("not a salt\n")
    monkeypatch.setenv("VAULT_HOME", str(home))
    token = SECRETS["github_classic"].value
    with pytest.raises(VaultError, match="not a salt") as info:
        sec.fingerprint(token)
    assert info.value.hint is not None and "delete it" in info.value.hint
    out = sec.scrub(f"push failed with {token}")
    assert token not in out and out.startswith("push failed with [REDACTED:github-token:")


def test_markers_in_utf16_text_and_in_dump_cells_are_told_on_restore_and_rollback() -> None:
    """The cheap test before the scanner looked for the ASCII marker only: a UTF-16 file or a
    BLOB cell carrying one (written since such files are scanned) came back without a word."""
    from vault.dbbuild import is_redacted_blob
    from vault.objects import Blob
    from vault.rollback import redaction_warning
    from vault.sources import DUMP_HEADER

    utf16 = "note [REDACTED:github-token:7ac1ba0f74bc] end\n".encode("utf-16")
    cell = b"[REDACTED:github-token:7ac1ba0f74bc]".hex()
    dump = DUMP_HEADER + f"\nINSERT INTO t VALUES(1,X'{cell}');\n".encode()
    for data in (utf16, dump):
        assert redaction_warning("f", data).endswith("cannot come back")
        assert is_redacted_blob(Blob("0" * 40, data=data))
    assert not is_redacted_blob(Blob("0" * 40, data=b"plain text\n"))


def test_an_aws_secret_key_in_another_cell_of_the_row_is_found(tmp_path: Path) -> None:
    """A row is one record: the key id in one column (or a column named for the secret key)
    is the context for the secret key in another. Before, only the key id was found."""
    secret = "dz1C5Jau2RJtBRnlWmTSHf6pWkLUyifDLkDmWJ6U"
    db = apsw.Connection(str(tmp_path / "c.db"))
    db.execute("CREATE TABLE creds(id INTEGER PRIMARY KEY, key_id TEXT, secret TEXT);"
               "CREATE TABLE tool(id INTEGER PRIMARY KEY, aws_secret_access_key TEXT);"
               "CREATE TABLE notes(id INTEGER PRIMARY KEY, a TEXT, b TEXT)")
    db.execute("INSERT INTO creds VALUES(1, 'AKIAIOSFODNN7QWERTYU', ?)", (secret,))
    db.execute("INSERT INTO tool VALUES(1, ?)", (secret,))
    db.execute("INSERT INTO notes VALUES(1, 'a commit', ?)", (secret,))  # no AWS context
    db.close()
    from vault.sqlite_dump import snapshot_sqlite

    dump = snapshot_sqlite(tmp_path / "c.db")
    findings = sec.scan_bytes(dump, path="c.db")
    keys = [f.locator for f in findings if f.kind == "AWS secret key"]
    assert keys == ["row creds:1", "row tool:1"]
    load_dump(sec.redact(dump, findings), tmp_path / "d.db")
    db = apsw.Connection(str(tmp_path / "d.db"))
    assert [s for (s,) in db.execute("SELECT secret FROM creds")][0].startswith("[REDACTED:")
    assert [s for (s,) in db.execute("SELECT b FROM notes")] == [secret]
    db.close()


SLASHED_AWS = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"
SLASHED_URL = "S3cr3tPassw0rd" + "Xyz"


@pytest.mark.parametrize("plain", [
    {"aws_secret_access_key": SLASHED_AWS},
    {"url": f"https://admin:{SLASHED_URL}@db.example.com/x"},
])
def test_json_with_escaped_slashes_hides_no_secret(plain: dict[str, str]) -> None:
    """PHP's json_encode writes every slash as `\\/`: the same secrets, escaped so, went into
    the vault under policy "block"."""
    written = json.dumps(plain).replace("/", "\\/").encode()  # as PHP writes it
    want = sec.scan_bytes(json.dumps(plain).encode(), path="m.json")
    got = sec.scan_bytes(written, path="m.json")
    assert want and [(f.kind, f.fingerprint) for f in got] == [
        (f.kind, f.fingerprint) for f in want]  # the secret's own fingerprint
    redacted = sec.redact(written, got)
    assert SLASHED_AWS.encode() not in redacted.replace(b"\\/", b"/")
    assert SLASHED_URL.encode() not in redacted
    value = next(iter(json.loads(redacted).values()))
    assert "[REDACTED:" in value  # still JSON, the marker in the value
    assert sec.screen(written, path="m.json", settings=SecretsSettings()).data is None  # block
