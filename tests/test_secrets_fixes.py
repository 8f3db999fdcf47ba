"""Secrets a sync once let through: full-text indexes whose words only the index holds,
passwords in URLs with sub-delims, passwords with & or ; in them; and a scan that stopped at
one missing source. Real SQLite files (apsw), real vaults, real `vault` processes."""

from __future__ import annotations

import json
from pathlib import Path

import apsw
import pytest

from conftest import Clock, run_cli, write_config
from test_secrets_sync import all_objects
from vault import secrets as sec
from vault.config import SecretsSettings, load_config
from vault.repo import VaultRepo
from vault.sqlite_dump import snapshot_sqlite
from vault.sync import sync

AWS_ID = "AKIAZ7Q2WERTY3ASDFG4"
GH_TOKEN = "ghp_Z8xCvBnM2aSdFgHjKl4QwErTyUiOp6LkJhGf"
INDEXED = f"aws {AWS_ID} gh {GH_TOKEN}"
# Every form the two secrets take in a vault blob: as written, lower-cased as an index keeps
# its words, and either of those as hex (a dump writes BLOB cells so).
_PIECES = [AWS_ID, GH_TOKEN, GH_TOKEN[4:]]
NEEDLES = [form for p in _PIECES for text in (p, p.lower())
           for form in (text.encode(), text.encode().hex().encode())]


def leaked(repo: Path) -> list[bytes]:
    return [n[:12] for blob in all_objects(repo) for n in NEEDLES if n in blob]


def _app_tokenizer(conn: apsw.Connection) -> None:
    conn.register_fts5_tokenizer(
        "apptok", lambda con, args: con.fts5_tokenizer("unicode61", list(args)))


def contentless_fts5(path: Path, text: str = INDEXED) -> None:
    conn = apsw.Connection(str(path))
    conn.execute("CREATE VIRTUAL TABLE n USING fts5(content, content='')")
    conn.execute("INSERT INTO n(rowid, content) VALUES (1, ?)", (text,))
    conn.close()


def contentless_fts4(path: Path, text: str = INDEXED) -> None:
    conn = apsw.Connection(str(path))
    conn.execute('CREATE VIRTUAL TABLE n USING fts4(content, content="")')
    conn.execute("INSERT INTO n(docid, content) VALUES (1, ?)", (text,))
    conn.close()


def app_tokenizer_fts5(path: Path, text: str = INDEXED) -> None:
    """An index with its own content, on a tokenizer only its application has: the content
    row can take a marker, the index's words cannot."""
    conn = apsw.Connection(str(path))
    _app_tokenizer(conn)
    conn.execute("CREATE VIRTUAL TABLE n USING fts5(content, tokenize='apptok')")
    conn.execute("INSERT INTO n(rowid, content) VALUES (1, ?)", (text,))
    conn.close()


MAKERS = {"fts5 content=''": contentless_fts5, 'fts4 content=""': contentless_fts4,
          "fts5 app tokenizer": app_tokenizer_fts5}


def setup(tmp_path: Path, policy: str) -> tuple[Path, Path]:
    src = tmp_path / "src"
    src.mkdir()
    config_file = write_config(tmp_path / "vault.toml", {"a": src},
                               extra=f'[secrets]\npolicy = "{policy}"')
    return src, config_file


@pytest.mark.parametrize("policy", ["block", "redact"])
@pytest.mark.parametrize("make", MAKERS.values(), ids=MAKERS.keys())
def test_a_secret_only_a_full_text_index_holds_is_never_committed(
        tmp_path: Path, clock: Clock, make: object, policy: str) -> None:
    """The dump keeps such an index's own tables as they are: its words, lower-cased, in hex
    BLOBs, which the scan passed over. Now its words are listed and checked; an index cannot
    take a marker, so the file is held back under redact too, and the reason says so."""
    src, config_file = setup(tmp_path, policy)
    assert callable(make)
    make(src / "m.db")
    config = load_config(config_file)
    repo, _ = VaultRepo.init(config.vault.path, config.vault.branch)

    result = sync(config, now=clock)

    assert not result.ok
    assert [s.path for s in result.skipped] == ["a/m.db"]
    reason = result.skipped[0].reason
    assert "full-text index" in reason, reason
    if policy == "redact":
        assert "blocked, not redacted" in reason and "cannot take a marker" in reason
    assert leaked(config.vault.path) == []
    assert "a/m.db" not in repo.files(repo.head_id()) if repo.head_id() else True


def test_index_words_are_found_by_secrets_scan_with_the_index_named(tmp_path: Path) -> None:
    src, config_file = setup(tmp_path, "block")
    contentless_fts5(src / "m.db")

    done = run_cli("secrets", "scan", "--json", "--config", str(config_file))

    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    kinds = {f["kind"] for f in report["findings"]}
    assert "AWS access key" in kinds, report
    assert len(report["findings"]) == 2, report  # the key id, and the token's random body
    assert {loc["locator"] for f in report["findings"] for loc in f["locations"]} == {
        "full-text index n"}
    assert AWS_ID.lower() not in done.stdout and GH_TOKEN[4:].lower() not in done.stdout


def test_an_index_that_keeps_its_words_in_mixed_case_is_scanned_as_it_is(
        tmp_path: Path) -> None:
    """A tokenizer that keeps case and punctuation: the ordinary patterns find the token."""
    db = tmp_path / "m.db"
    conn = apsw.Connection(str(db))

    def whole_words(con: apsw.Connection, args: list[str]) -> object:
        def tokenize(utf8: bytes, flags: int, locale: str | None) -> list[tuple[int, int, str]]:
            spans, start = [], 0
            for word in utf8.split(b" "):
                spans.append((start, start + len(word), word.decode()))
                start += len(word) + 1
            return spans
        return tokenize

    conn.register_fts5_tokenizer("keepcase", whole_words)
    conn.execute("CREATE VIRTUAL TABLE n USING fts5(content, content='', tokenize='keepcase')")
    conn.execute("INSERT INTO n(rowid, content) VALUES (1, ?)", (f"token {GH_TOKEN}",))
    conn.close()

    found = sec.scan_bytes(snapshot_sqlite(db), path="a/m.db")

    assert [(f.kind, f.locator, f.redactable) for f in found] == [
        ("GitHub token", "full-text index n", False)]


def _example_lines() -> list[str]:
    """Every line of text of the bundled examples, and every text cell of their databases."""
    root = Path(__file__).resolve().parent.parent / "examples"
    lines: list[str] = []
    for path in sorted(root.rglob("*")):
        if path.suffix in (".md", ".json", ".jsonl"):
            lines += path.read_text(encoding="utf-8").splitlines()
        elif path.suffix == ".db":
            conn = apsw.Connection(f"file:{path}?mode=ro", flags=apsw.SQLITE_OPEN_READONLY
                                   | apsw.SQLITE_OPEN_URI)
            for (table,) in list(conn.execute(
                    "SELECT name FROM sqlite_schema WHERE type = 'table' "
                    "AND sql NOT LIKE 'CREATE VIRTUAL%' AND name NOT LIKE '%fts%'")):
                for row in conn.execute(f'SELECT * FROM "{table}"'):
                    lines += [v for v in row if isinstance(v, str)]
            conn.close()
    assert len(lines) > 1000
    return lines


@pytest.mark.parametrize("module", ["fts5(content, content='')", 'fts4(content, content="")'])
def test_ordinary_memory_in_a_contentless_index_gives_no_finding(
        tmp_path: Path, module: str) -> None:
    """The bundled examples (notes, transcripts with their ids and hashes, the memory
    databases), all of it in one contentless index: not one word is taken for a secret."""
    db = tmp_path / "m.db"
    conn = apsw.Connection(str(db))
    conn.execute(f"CREATE VIRTUAL TABLE n USING {module}")
    with conn:
        for i, line in enumerate(_example_lines(), 1):
            conn.execute("INSERT INTO n(rowid, content) VALUES (?, ?)", (i, line))
    conn.close()

    found = sec.scan_bytes(snapshot_sqlite(db), path="a/m.db")

    assert [(f.kind, f.fingerprint) for f in found] == []


def test_allowing_an_index_finding_lets_the_file_through(tmp_path: Path, clock: Clock) -> None:
    src, config_file = setup(tmp_path, "block")
    contentless_fts5(src / "m.db", f"just one key {AWS_ID} here")
    dump = snapshot_sqlite(src / "m.db")
    [finding] = sec.scan_bytes(dump, path="a/m.db")

    screened = sec.screen(dump, path="a/m.db", settings=SecretsSettings(policy="redact"),
                          allowed=frozenset({finding.fingerprint}))

    assert screened.data == dump and screened.findings == ()


def test_an_index_whose_words_cannot_be_read_holds_the_file_back(tmp_path: Path) -> None:
    """Nothing can say such an index holds no secret: it is a finding (which may be allowed),
    never a silent pass."""
    contentless_fts5(tmp_path / "m.db", "nothing secret here")
    dump = snapshot_sqlite(tmp_path / "m.db")
    assert sec.scan_bytes(dump, path="a/m.db") == []
    version = b"""INSERT INTO "n_config"("k","v") VALUES('version',4);"""
    assert version in dump
    unreadable = dump.replace(version, version.replace(b"4", b"99"))

    [finding] = sec.scan_bytes(unreadable, path="a/m.db")

    assert (finding.kind, finding.locator, finding.redactable) == (
        "unreadable full-text index", "full-text index n", False)
    screened = sec.screen(unreadable, path="a/m.db", settings=SecretsSettings(policy="redact"))
    assert screened.data is None and "could not be read" in screened.reason


# Passwords in URLs ---------------------------------------------------------------------------

URL_SECRETS = [
    ("postgres://app:S3cr3t!Passw0rd@db.internal:5432/prod", "S3cr3t!Passw0rd"),
    ("redis://:Xk9vQ2mLp7wE@cache:6379/0", "Xk9vQ2mLp7wE"),
    ("amqp://svc:p$ssW0rd*2026@mq.local/vhost", "p$ssW0rd*2026"),
    ("mysql://root:7q+d;e=f,g'h(x)@10.0.0.5/db", "7q+d;e=f,g'h(x)"),
]
URL_NOT_SECRETS = [
    "postgres://user:${DB_PASSWORD}@db:5432/app",
    "postgres://user:$DB_PASSWORD@db:5432/app",
    "postgres://user:<password>@db:5432/app",
    "https://user:****@example.com/",
    "postgres://app:password@db/app",
    "https://example.com:8443/search?mail=someone@example.com",
    "ssh://git@github.com:22/owner/repo.git",
    "see https://example.com/a:b@c for details",
]


@pytest.mark.parametrize("url, password", URL_SECRETS)
def test_a_password_in_a_url_with_sub_delims_or_no_user_is_found(url: str,
                                                                  password: str) -> None:
    data = f"db: {url}\n".encode()

    found = sec.scan_bytes(data, path="a/notes.md")

    assert [(f.kind, data[f.start:f.end].decode()) for f in found] == [
        ("password in URL", password)]
    assert password not in sec.scrub(f"pre_sync said: cannot reach {url}")


@pytest.mark.parametrize("text", URL_NOT_SECRETS)
def test_a_url_without_a_password_in_it_is_no_finding(text: str) -> None:
    assert sec.scan_bytes(f"note: {text}\n".encode(), path="a/notes.md") == []


def test_a_url_password_with_a_bang_is_never_committed(tmp_path: Path, clock: Clock) -> None:
    src, config_file = setup(tmp_path, "block")
    (src / "notes.md").write_text("".join(f"- {url}\n" for url, _ in URL_SECRETS))
    config = load_config(config_file)
    VaultRepo.init(config.vault.path, config.vault.branch)

    result = sync(config, now=clock)

    assert [s.path for s in result.skipped] == ["a/notes.md"]
    blobs = all_objects(config.vault.path)
    assert [p for _, p in URL_SECRETS if any(p.encode() in b for b in blobs)] == []


# Passwords with & ; , in them -----------------------------------------------------------------

PASSWORD_SPANS = [
    ("password: Ab&9xQz!2mLk\n", "Ab&9xQz!2mLk"),
    ("NAS password = K7;vR2pL9wQx\n", "K7;vR2pL9wQx"),
    ("password: Tr0ub4dor&3xQ9z\n", "Tr0ub4dor&3xQ9z"),
    ("wifi password: Qz,8mL;w&Vx2 (guest)\n", "Qz,8mL;w&Vx2"),
    ('{"note": "password: Tr0ub4dor&3xQ9z"}\n', "Tr0ub4dor&3xQ9z"),
    ('{"note": "password: Tr0ub4dor&3xQ9z\\nnext line"}\n', "Tr0ub4dor&3xQ9z"),
    ("password=hunter2xy, then the next item\n", "hunter2xy"),
    ("password: Tr0ub4dor&3xQ9z.\n", "Tr0ub4dor&3xQ9z"),
    # in a URL's query string, & ends a value; in a connection string, ; does
    ("https://app.example/login?user=bob&password=Tr0ub4dor9&next=/home\n", "Tr0ub4dor9"),
    ("Server=db;User Id=sa;Password=K7vR2pL9wQ;Database=app\n", "K7vR2pL9wQ"),
]


@pytest.mark.parametrize("text, password", PASSWORD_SPANS)
def test_a_password_value_runs_to_the_whitespace_not_to_the_first_ampersand(
        text: str, password: str) -> None:
    data = text.encode()

    found = sec.scan_bytes(data, path="a/notes.md")

    assert [data[f.start:f.end].decode() for f in found] == [password]


def test_redact_leaves_no_tail_of_a_password_with_an_ampersand(
        tmp_path: Path, clock: Clock) -> None:
    src, config_file = setup(tmp_path, "redact")
    (src / "notes.md").write_text("password: Tr0ub4dor&3xQ9z\nNAS password = K7;vR2pL9wQx\n")
    config = load_config(config_file)
    repo, _ = VaultRepo.init(config.vault.path, config.vault.branch)

    result = sync(config, now=clock)

    assert result.ok and [r.path for r in result.redacted] == ["a/notes.md"]
    stored = repo.read_blob(repo.files(repo.head_id())["a/notes.md"][0])
    assert b"3xQ9z" not in stored and b"vR2pL9wQx" not in stored and b"K7" not in stored
    assert stored.startswith(b"password: [REDACTED:password-assignment:")


# A source that cannot be scanned ----------------------------------------------------------------


def test_secrets_scan_scans_the_other_sources_when_one_folder_is_missing(
        tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "notes.md").write_text(f"key {AWS_ID}\n")
    config_file = write_config(tmp_path / "vault.toml", {"gone": tmp_path / "unmounted",
                                                         "a": src})

    done = run_cli("secrets", "scan", "--json", "--config", str(config_file))

    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert [(f["kind"], f["locations"][0]["path"]) for f in report["findings"]] == [
        ("AWS access key", "a/notes.md")]
    assert report["failures"] == [{"source": "gone", "message": (
        f"source 'gone': folder not found: {tmp_path / 'unmounted'}")}]

    text = run_cli("secrets", "scan", "--config", str(config_file))
    assert text.returncode == 1 and text.stderr == ""
    assert "1 secret found in the sources" in text.stdout
    assert f"Not scanned: source 'gone': folder not found: {tmp_path / 'unmounted'}" \
        in text.stdout.splitlines()


def test_a_missing_source_alone_fails_the_scan(tmp_path: Path) -> None:
    config_file = write_config(tmp_path / "vault.toml", {"gone": tmp_path / "unmounted"})

    done = run_cli("secrets", "scan", "--config", str(config_file))

    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines()[0] == "No secrets found in the sources."
    assert "Not scanned: source 'gone': folder not found" in done.stdout
