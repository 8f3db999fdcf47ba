"""Secrets never leave the machine: sync under each [secrets] policy, checked against every
object in the vault's object database (not just HEAD), every file beside them, and the CLI."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import time
from pathlib import Path

import apsw
import pytest

import vault.sync
from conftest import Clock, run_cli, write_config
from secret_corpus import planted, write_clean, write_corpus, write_encoded, write_hex_cell_db
from vault import secrets as sec
from vault.config import Config, SnapshotSettings, SourceConfig, load_config
from vault.detect import RACY_MARGIN_NS
from vault.repo import VaultRepo
from vault.snapshot import take_snapshot
from vault.sources import scan_source
from vault.sqlite_dump import is_dump, load_dump
from vault.sync import sync

SECRETS = planted()
CORPUS_FILES = ("notes/keys.md", "config.json", "sessions/chat.jsonl", "memory.db")
NEEDLES = sorted({n for p in SECRETS.values() for n in p.needles()})

wired = pytest.mark.skipif(not hasattr(vault.sync, "SECRETS_WIRED"),
                           reason="secret scanning is not wired into sync yet")


def all_objects(repo: Path) -> list[bytes]:
    """The decompressed content of every object in the repository, loose or packed."""
    out = subprocess.run(["git", "-C", str(repo), "cat-file", "--batch-all-objects", "--batch"],
                         capture_output=True, check=True).stdout
    objects: list[bytes] = []
    i = 0
    while i < len(out):
        newline = out.index(b"\n", i)
        size = int(out[i:newline].split()[2])
        objects.append(out[newline + 1:newline + 1 + size])
        i = newline + 1 + size + 1
    return objects


def leaks(blobs: list[bytes]) -> list[tuple[int, bytes]]:
    """(index, needle prefix) for every planted secret, in any form, found in the blobs."""
    return [(i, n[:10]) for i, b in enumerate(blobs) for n in NEEDLES if n in b]


def state_files(repo: Path) -> dict[str, bytes]:
    """Every file of the vault directory that is not a git object (caches, refs, logs, config)."""
    return {str(p.relative_to(repo)): p.read_bytes() for p in repo.rglob("*")
            if p.is_file() and "objects" not in p.relative_to(repo).parts}


def vault_bytes(root: Path, rel: str) -> bytes:
    """A source file as sync would store it (SQLite as its dump)."""
    entry = next(e for e in scan_source(SourceConfig("agent", root)).entries if e.rel == rel)
    data = take_snapshot(entry, SnapshotSettings()).data
    assert data is not None
    return data


def head_files(config: Config) -> dict[str, bytes]:
    repo = VaultRepo.open(config.vault.path, config.vault.branch)
    return {p: repo.read_blob(oid) for p, (oid, _) in repo.files(repo.head_id()).items()}


def setup(tmp_path: Path, extra: str = "") -> tuple[Config, Path]:
    src = tmp_path / "agent"
    write_clean(src)
    (src / "MEMORY.md").write_text("# Memory\n\n- The user prefers tea.\n")
    path = write_config(tmp_path / "vault.toml", {"agent": src}, extra=extra)
    config = load_config(path)
    VaultRepo.init(config.vault.path, config.vault.branch)
    return config, src


@wired
def test_default_policy_keeps_every_planted_secret_out_of_every_object(
        tmp_path: Path, clock: Clock) -> None:
    config, src = setup(tmp_path)
    first = sync(config, now=clock)
    assert first.commit and not first.skipped
    clean = head_files(config)

    write_corpus(src, SECRETS)
    (src / "new-note.md").write_text(f"deploy with {SECRETS['github_fine'].value}\n")
    clock.tick()
    result = sync(config, now=clock)

    skipped = {s.path: s.reason for s in result.skipped}
    assert set(skipped) == {f"agent/{rel}" for rel in (*CORPUS_FILES, "new-note.md")}
    for rel in (*CORPUS_FILES, "new-note.md"):
        reason = skipped[f"agent/{rel}"]
        findings = sec.scan_bytes(vault_bytes(src, rel), path=f"agent/{rel}")
        for f in findings[:5]:  # the reason names the first few, then counts the rest
            assert f"{f.kind} at {f.locator} (fingerprint {f.fingerprint})" in reason
        assert all(n.decode() not in reason for n in NEEDLES)
    # The last clean version of each file stays; the new file with a secret never enters.
    head = head_files(config)
    for rel in CORPUS_FILES:
        assert head[f"agent/{rel}"] == clean[f"agent/{rel}"]
    assert "agent/new-note.md" not in head
    # No planted secret in any form in any object, or in any other file of the vault.
    assert leaks(all_objects(config.vault.path)) == []
    assert [name for name, data in state_files(config.vault.path).items()
            if any(n in data for n in NEEDLES)] == []


@wired
def test_cli_output_never_carries_a_secret(tmp_path: Path, clock: Clock) -> None:
    config, src = setup(tmp_path)
    write_corpus(src, SECRETS)
    env = {"VAULT_CONFIG": str(config.file)}
    for args in (["sync", "--json"], ["sync"], ["status", "--json"], ["log", "--json"]):
        proc = run_cli(*args, env=env)
        assert proc.returncode in (0, 1), proc.stderr
        shown = (proc.stdout + proc.stderr).encode()
        assert [n[:10] for n in NEEDLES if n in shown] == [], args
    assert leaks(all_objects(config.vault.path)) == []


@wired
def test_redact_policy_commits_redacted_copies_that_still_parse(
        tmp_path: Path, clock: Clock) -> None:
    config, src = setup(tmp_path, extra='[secrets]\npolicy = "redact"')
    write_corpus(src, SECRETS)
    result = sync(config, now=clock)
    assert result.commit and not result.skipped
    head = head_files(config)
    for rel in CORPUS_FILES:
        data = head[f"agent/{rel}"]
        assert sec.is_redacted(data) and b"[REDACTED:" in data, rel
        assert sec.scan_bytes(data, path=rel) == []
    json.loads(head["agent/config.json"])
    assert all(json.loads(line) for line in head["agent/sessions/chat.jsonl"].splitlines())
    assert is_dump(head["agent/memory.db"])
    load_dump(head["agent/memory.db"], tmp_path / "restored.db")
    assert head["agent/MEMORY.md"] == (src / "MEMORY.md").read_bytes()
    assert leaks(all_objects(config.vault.path)) == []
    # The stat cache remembers the redacted blob: an unchanged file is not committed again.
    clock.tick()
    again = sync(config, now=clock)
    assert again.commit is None and not again.changed


@wired
def test_allow_policy_commits_files_as_they_are(tmp_path: Path, clock: Clock) -> None:
    config, src = setup(tmp_path, extra='[secrets]\npolicy = "allow"')
    write_corpus(src, SECRETS)
    result = sync(config, now=clock)
    assert result.commit and not result.skipped
    head = head_files(config)
    for rel in CORPUS_FILES:
        assert head[f"agent/{rel}"] == vault_bytes(src, rel)
    assert SECRETS["anthropic"].value.encode() in head["agent/notes/keys.md"]


@wired
def test_allow_paths_and_allowed_fingerprints_let_a_file_through(
        tmp_path: Path, clock: Clock) -> None:
    config, src = setup(tmp_path, extra='[secrets]\nallow_paths = ["notes/"]')
    write_corpus(src, SECRETS)
    result = sync(config, now=clock)
    assert {s.path for s in result.skipped} == {
        "agent/config.json", "agent/sessions/chat.jsonl", "agent/memory.db"}
    assert head_files(config)["agent/notes/keys.md"] == (src / "notes" / "keys.md").read_bytes()

    # `vault secrets allow` each fingerprint of config.json: the next sync takes it as it is.
    for f in sec.scan_bytes(vault_bytes(src, "config.json"), path="agent/config.json"):
        sec.allow_fingerprint(config, f.fingerprint)
    clock.tick()
    result = sync(config, now=clock)
    assert {s.path for s in result.skipped} == {"agent/sessions/chat.jsonl", "agent/memory.db"}
    assert head_files(config)["agent/config.json"] == (src / "config.json").read_bytes()

    # Fingerprints in vault.toml count too.
    fps = sorted({f.fingerprint for f in sec.scan_bytes(vault_bytes(src, "sessions/chat.jsonl"),
                                                        path="agent/sessions/chat.jsonl")})
    path = write_config(tmp_path / "vault.toml", {"agent": src},
                        extra='[secrets]\nallow_paths = ["notes/"]\nallow_fingerprints = '
                              + json.dumps(fps))
    clock.tick()
    result = sync(load_config(path), now=clock)
    assert {s.path for s in result.skipped} == {"agent/memory.db"}


@wired
def test_a_secret_removed_from_the_file_is_taken_on_the_next_sync(
        tmp_path: Path, clock: Clock) -> None:
    config, src = setup(tmp_path)
    note = src / "notes" / "keys.md"
    note.write_text(f"token {SECRETS['gitlab'].value}\n")
    assert {s.path for s in sync(config, now=clock).skipped} == {"agent/notes/keys.md"}
    note.write_text("token moved to the password manager\n")
    clock.tick()
    result = sync(config, now=clock)
    assert not result.skipped and "agent/notes/keys.md" in result.added
    assert leaks(all_objects(config.vault.path)) == []


def test_vault_and_data_dir_are_private_to_the_user(tmp_path: Path) -> None:
    path = tmp_path / "vault.toml"
    path.write_text('[vault]\nhost = "testhost"\n')
    config = load_config(path)
    assert not config.home.exists()
    old = os.umask(0o022)  # a permissive umask must not leak into the vault's modes
    try:
        repo, created = VaultRepo.init(config.vault.path, config.vault.branch)
    finally:
        os.umask(old)
    assert created and repo.path == config.vault.path.resolve()
    for folder in (config.home, config.vault.path):
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700, folder


def test_allowing_a_secret_reaches_files_stored_redacted_before(tmp_path: Path) -> None:
    # The files did not change: only what the screening lets through did. Through the CLI,
    # so that the quick check (which answers before the full sync) is part of it.
    ws = tmp_path / "ws"
    ws.mkdir()
    token = "ghp_" + "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dF3hJ5"
    (ws / "notes.md").write_text(f"example token: {token}\n")
    (ws / "b.md").write_text("b\n")
    config = write_config(tmp_path / "vault.toml", {"ws": ws},
                          extra='[secrets]\npolicy = "redact"')
    env = {"VAULT_CONFIG": str(config)}
    assert run_cli("init", env=env).returncode == 0
    time.sleep(RACY_MARGIN_NS / 1e9 + 0.1)  # stat-proven from the first sync on
    for _ in range(2):
        assert run_cli("sync", "-q", env=env).returncode == 0
    vault_dir = tmp_path / "memory-vault"

    def stored() -> str:
        return subprocess.run(["git", "-C", str(vault_dir), "show", "main:ws/notes.md"],
                              capture_output=True, text=True, check=True).stdout

    assert "[REDACTED:" in stored()
    [fp] = [f.fingerprint for f in sec.scan_bytes((ws / "notes.md").read_bytes(), path="")]
    assert run_cli("secrets", "allow", fp, env=env).returncode == 0
    assert run_cli("sync", "-q", env=env).returncode == 0
    assert stored() == f"example token: {token}\n"
    # and back: a stricter policy in the config takes the secret out again
    config.write_text(config.read_text().replace('policy = "redact"',
                                                 'policy = "redact"\nallow_fingerprints = []'))
    (tmp_path / "memory-vault" / "vault" / sec.ALLOW_FILE).unlink()
    assert run_cli("sync", "-q", env=env).returncode == 0
    assert "[REDACTED:" in stored()


# --- files that are not UTF-8, SQLite cells kept as hex, AWS keys in prose, the salt -------


def git_grep_history(repo: Path, needle: str) -> str:
    """`git grep` over every commit, binary files read as text: where needle is, if anywhere."""
    revs = subprocess.run(["git", "-C", str(repo), "rev-list", "--all"], capture_output=True,
                          text=True, check=True).stdout.split()
    proc = subprocess.run(["git", "-C", str(repo), "grep", "-a", "-l", "-F", "-e", needle, *revs],
                          capture_output=True, text=True)
    assert proc.returncode in (0, 1), proc.stderr  # 1: not found
    return proc.stdout


def forms(value: str) -> list[bytes]:
    """A value as it may sit in an object: UTF-8, UTF-16 either way, hex in a dump."""
    raw = [value.encode(), value.encode("utf-16-le"), value.encode("utf-16-be")]
    return raw + [r.hex().encode() for r in raw]


def in_any_object(repo: Path, values: list[str]) -> list[str]:
    blobs = all_objects(repo)
    return [v[:8] for v in values if any(f in b for f in forms(v) for b in blobs)]


def test_files_not_utf8_are_blocked_and_never_reach_any_commit(
        tmp_path: Path, clock: Clock) -> None:
    config, src = setup(tmp_path)
    assert sync(config, now=clock).commit
    expected = write_encoded(src, SECRETS)
    clock.tick()
    result = sync(config, now=clock)
    skipped = {s.path: s.reason for s in result.skipped}
    assert set(skipped) == {f"agent/{rel}" for rel in expected}
    for rel, items in expected.items():
        for exp in items:
            fp = sec.fingerprint(SECRETS[exp.name].value)
            assert f"{SECRETS[exp.name].kind} at {exp.locator} (fingerprint {fp})" in \
                skipped[f"agent/{rel}"]
    values = [SECRETS[e.name].value for items in expected.values() for e in items]
    assert [v[:8] for v in values if git_grep_history(config.vault.path, v)] == []
    assert in_any_object(config.vault.path, values) == []


def test_redact_commits_files_not_utf8_redacted_in_their_own_encoding(
        tmp_path: Path, clock: Clock) -> None:
    config, src = setup(tmp_path, extra='[secrets]\npolicy = "redact"')
    expected = write_encoded(src, SECRETS)
    result = sync(config, now=clock)
    assert result.commit and not result.skipped
    values = [SECRETS[e.name].value for items in expected.values() for e in items]
    assert [v[:8] for v in values if git_grep_history(config.vault.path, v)] == []
    assert in_any_object(config.vault.path, values) == []
    shown = subprocess.run(["git", "-C", str(config.vault.path), "show",
                            "HEAD:agent/notes/win-utf16.txt"], capture_output=True,
                           check=True).stdout
    fp = sec.fingerprint(SECRETS["openai"].value)
    assert shown.decode("utf-16").splitlines()[1] == f"OpenAI key: [REDACTED:openai-api-key:{fp}]"
    latin = subprocess.run(["git", "-C", str(config.vault.path), "show",
                            "HEAD:agent/notes/cafe-latin1.md"], capture_output=True,
                           check=True).stdout
    assert latin.startswith(b"# Caf\xe9 notes\nGitHub PAT: [REDACTED:github-token:")


def test_secrets_scan_and_scan_history_find_secrets_in_files_not_utf8(
        tmp_path: Path, clock: Clock) -> None:
    # A vault made before (or with policy allow) holds such files: --history must see them.
    config, src = setup(tmp_path, extra='[secrets]\npolicy = "allow"')
    expected = write_encoded(src, SECRETS)
    assert sync(config, now=clock).commit
    env = {"VAULT_CONFIG": str(config.file)}
    for args in (["secrets", "scan", "--json"], ["secrets", "scan", "--history", "--json"]):
        proc = run_cli(*args, env=env)
        assert proc.returncode == 1, proc.stderr
        doc = json.loads(proc.stdout)
        found = {(loc["path"], f["fingerprint"]) for f in doc["findings"]
                 for loc in f["locations"]}
        for rel, items in expected.items():
            for exp in items:
                assert (f"agent/{rel}", sec.fingerprint(SECRETS[exp.name].value)) in found, \
                    (args, rel, exp)


def test_sqlite_blob_and_cast_cells_are_blocked_or_redacted_never_committed(
        tmp_path: Path, clock: Clock) -> None:
    for policy in ("block", "redact"):
        root = tmp_path / policy
        root.mkdir()
        config, src = setup(root, extra=f'[secrets]\npolicy = "{policy}"')
        planted_rows = write_hex_cell_db(src / "m.db", SECRETS)
        result = sync(config, now=clock)
        reasons = {s.path: s.reason for s in (result.skipped if policy == "block"
                                               else result.redacted)}
        for rowid in planted_rows:
            assert f"at row m:{rowid} (fingerprint" in reasons["agent/m.db"], policy
        values = [SECRETS[name].value for name in planted_rows.values()]
        assert in_any_object(config.vault.path, values) == [], policy
        log = subprocess.run(["git", "-C", str(config.vault.path), "log", "-p", "--all"],
                             capture_output=True, check=True).stdout
        assert [v[:8] for v in values if any(f in log for f in forms(v))] == []
        head = head_files(config)
        if policy == "block":
            assert "agent/m.db" not in head
            continue
        # The redacted dump is still SQL that rebuilds the database, embeddings and all.
        load_dump(head["agent/m.db"], root / "rebuilt.db")
        db = apsw.Connection(str(root / "rebuilt.db"))
        meta = {int(i): m for i, m in db.execute("SELECT id, meta FROM m")}
        embeddings = [e for (e,) in db.execute("SELECT emb FROM m ORDER BY id")]
        db.close()
        original = apsw.Connection(str(src / "m.db"))
        assert embeddings == [e for (e,) in original.execute("SELECT emb FROM m ORDER BY id")]
        original.close()
        assert json.loads(meta[2])["api_key"].startswith("[REDACTED:anthropic-api-key:")


def test_an_aws_secret_key_next_to_its_key_id_is_redacted_with_it(
        tmp_path: Path, clock: Clock) -> None:
    config, src = setup(tmp_path, extra='[secrets]\npolicy = "redact"')
    key_id, secret = SECRETS["aws_key"].value, SECRETS["aws_secret"].value
    (src / "MEMORY.md").write_text(f"# Setup\nAWS creds for the deploy: access key {key_id}, "
                                   f"secret {secret}\n\nThe AWS secret access key is {secret}\n")
    assert sync(config, now=clock).commit
    for value in (key_id, secret):
        assert git_grep_history(config.vault.path, value) == ""
    stored = head_files(config)["agent/MEMORY.md"].decode()
    assert stored.count("[REDACTED:aws-secret-key:") == 2
    assert stored.count("[REDACTED:aws-access-key:") == 1


def test_a_committed_fingerprint_cannot_be_checked_against_a_guess_list(
        tmp_path: Path, clock: Clock) -> None:
    config, src = setup(tmp_path, extra='[secrets]\npolicy = "redact"')
    password = "Summer2024!"
    (src / "mem.json").write_text(json.dumps({"memories": [
        {"text": "router admin login", "password": password}]}) + "\n")
    env = {"VAULT_CONFIG": str(config.file)}
    assert run_cli("sync", "-q", env=env).returncode == 0
    shown = subprocess.run(["git", "-C", str(config.vault.path), "show", "HEAD:agent/mem.json"],
                           capture_output=True, text=True, check=True).stdout
    [fp] = re.findall(r"\[REDACTED:password-assignment:([0-9a-f]{12})\]", shown)
    # QA's attack: hash guesses with the salt in the source. The real password is among them.
    guesses = [f"{w}{y}{s}" for w in ("Summer", "Winter", "password") for y in range(2020, 2027)
               for s in ("", "!", "1")]
    assert password in guesses
    assert [g for g in guesses if sec.legacy_fingerprint(g) == fp] == []
    # It is this install's fingerprint, stable across processes, from a salt outside the vault.
    assert fp == sec.fingerprint(password)
    salt = (Path(os.environ["VAULT_HOME"]) / sec.SALT_FILE).read_bytes().strip()
    assert not (Path(os.environ["VAULT_HOME"]) / sec.SALT_FILE).resolve().is_relative_to(
        config.vault.path.resolve())
    assert not any(salt in b or bytes.fromhex(salt.decode()) in b
                   for b in all_objects(config.vault.path))
    scan = json.loads(run_cli("secrets", "scan", "--json", env=env).stdout)
    assert [f["fingerprint"] for f in scan["findings"]] == [fp]


def test_an_allow_file_written_with_the_old_salt_still_lets_files_through(
        tmp_path: Path, clock: Clock) -> None:
    config, src = setup(tmp_path)
    token = SECRETS["gitlab"].value
    note = src / "notes" / "keys.md"
    note.write_text(f"example token: {token}\n")
    # As vault wrote it before the salt was per install.
    config.state_dir.mkdir(parents=True, exist_ok=True)
    (config.state_dir / sec.ALLOW_FILE).write_text(json.dumps(
        {"version": 1, "fingerprints": [sec.legacy_fingerprint(token)]}))
    result = sync(config, now=clock)
    assert not result.skipped
    assert head_files(config)["agent/notes/keys.md"] == note.read_bytes()
    # ... and `vault secrets allow` adds fingerprints of this install beside it.
    assert sec.allow_fingerprint(config, sec.fingerprint(token))
    assert len(sec.allowed_fingerprints(config)) == 2


def test_a_file_held_back_for_a_secret_fails_the_sync_under_cron(
        config: Config, vault: VaultRepo, workspace: Path) -> None:
    """QA: under the default policy (block) a file with a secret silently stopped being
    recorded: `sync -q` printed nothing and exited 0 every time, nothing in failures.log."""
    assert run_cli("sync", "--quiet", "--config", str(config.file)).returncode == 0
    token = "ghp_" + "Zx8Qw3Er5Ty7Ui9Op1As2Df4Gh6Jk8Lz0Xc3V"
    (workspace / "MEMORY.md").write_text(f"# Memory\n\n- deploy token {token}\n")
    (workspace / "memory" / "2026-11-21.md").write_text("# 2026-11-21\n\n- new day\n")
    proc = run_cli("sync", "--quiet", "--config", str(config.file))
    assert proc.returncode == 1 and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("Error: agent/MEMORY.md: secret found: GitHub token at line 3 "
                               "(fingerprint ")
    assert lines[1] == "Hint: remove the secret, or `vault secrets allow FINGERPRINT` if it is none"
    assert token not in subprocess.run(["git", "-C", str(config.vault.path), "log", "-p", "main"],
                                       capture_output=True, text=True, check=True).stdout
    assert "new day" in subprocess.run(  # the rest of the sync is committed
        ["git", "-C", str(config.vault.path), "show", "main:agent/memory/2026-11-21.md"],
        capture_output=True, text=True, check=True).stdout
    failures = (config.home / "failures.log").read_text().splitlines()
    assert len(failures) == 1 and "secret found: GitHub token" in json.loads(failures[0])["error"]
    status = run_cli("status", "--config", str(config.file)).stdout
    assert "Problem:   agent/MEMORY.md: secret found: GitHub token" in status


def test_a_cut_transcript_with_a_redacted_line_is_corrupt_not_a_new_version(
        tmp_path: Path, clock: Clock) -> None:
    """Under redact, the stored transcript holds a marker where the live one holds the token:
    a transcript cut mid-line was no longer seen as the start of the stored one, and the cut
    was committed as a new version (auto_rollback never ran)."""
    config, src = setup(tmp_path, extra='\n[secrets]\npolicy = "redact"\n'
                                         '\n[health]\nauto_rollback = true\n')
    transcript = src / "s.jsonl"
    token = SECRETS["github_classic"].value
    whole = json.dumps({"t": f"token {token} in the first line"}) + "\n" + "".join(
        json.dumps({"t": f"turn {i}"}) + "\n" for i in range(22))
    transcript.write_text(whole)
    first = sync(config, now=clock)
    assert first.commit and first.redacted
    past = time.time() - 10
    transcript.write_text(whole[:whole.index("turn 2")])  # three whole lines, the fourth cut
    os.utime(transcript, (past, past))
    clock.tick()
    cut = sync(config, now=clock)
    assert cut.commit is None and not cut.ok
    assert cut.corrupt[0].reason == ("JSONL cut short: 3 of the vault's 23 lines left, the last "
                                     "one cut off (truncated?)")
    # rolled back to what the vault holds (its marker: the token cannot come back), the cut
    # file, token and all, kept aside
    assert transcript.read_text() == whole.replace(token, f"[REDACTED:github-token:"
                                                          f"{sec.fingerprint(token)}]")
    assert cut.rollbacks and "cannot come back" in (cut.rollbacks[0].warning or "")
    assert [p.read_text() for p in src.glob("s.jsonl.corrupt-*")] == [whole[:whole.index("turn 2")]]
    # a line that differs beyond its redacted token is a rewrite, a version like any other
    transcript.write_text(json.dumps({"t": f"token {token} in another line"}) + "\n"
                          + whole.split("\n", 1)[1][:40])
    os.utime(transcript, (past, past))
    clock.tick()
    assert sync(config, now=clock).modified == ("agent/s.jsonl",)
