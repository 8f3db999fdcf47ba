"""vault doctor: checks, drills, repairs; corrupt memory files are rolled back, never deleted."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
import zlib
from datetime import timedelta
from pathlib import Path

import apsw
import pytest

from conftest import Clock, age, git, rows, run_cli, write_config
from vault.config import Config, load_config
from vault.doctor import doctor
from vault.repo import VaultRepo
from vault.sync import sync


def checks(report) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {c.name: c.status for c in report.checks}


def damage_sqlite(path: Path) -> None:
    """Overwrite the middle of a database (header kept): SQLite reports it malformed."""
    data = bytearray(path.read_bytes())
    page = 4096 if len(data) >= 8192 else len(data) // 2
    data[page:page + 400] = os.urandom(400)
    path.write_bytes(bytes(data))


def test_healthy_vault(config: Config, vault: VaultRepo, clock: Clock, tmp_path: Path) -> None:
    sync(config)
    report = doctor(config, drill=True, crontab_file=tmp_path / "crontab")
    assert report.ok
    got = checks(report)
    assert {k: got[k] for k in ("repository", "databases", "sources", "memory files",
                                "last sync", "lock", "disk")} == dict.fromkeys(
        ("repository", "databases", "sources", "memory files", "last sync", "lock", "disk"), "ok")
    assert got["remote"] == "warn" and got["cron"] == "warn"
    assert report.drill is not None and report.drill.files == 5 and not report.drill.problems
    proc = run_cli("doctor", "--json", "--crontab-file", str(tmp_path / "ct"), "--config",
                   str(config.file))
    assert proc.returncode == 0 and json.loads(proc.stdout)["ok"] is True


def test_a_sync_that_always_fails_fails_the_memory_files_check(config: Config, vault: VaultRepo,
                                                                tmp_path: Path) -> None:
    """A damaged secrets-allow.json makes every sync fail, nothing backed up: doctor said
    WARN ("not checked") and exit 0."""
    sync(config)
    (config.state_dir / "secrets-allow.json").write_text("{garbage")
    report = doctor(config, crontab_file=tmp_path / "crontab")
    [memory] = [c for c in report.checks if c.name == "memory files"]
    assert memory.status == "fail" and memory.detail.startswith("a sync fails: ")
    assert "secrets-allow.json" in memory.detail and not report.ok


def test_damaged_object_fails_with_a_clear_line(config: Config, vault: VaultRepo,
                                                clock: Clock, workspace: Path) -> None:
    sync(config, now=clock)
    oid = git(vault.path, "rev-parse", "main:agent/MEMORY.md").strip()
    loose = vault.path / "objects" / oid[:2] / oid[2:]
    loose.chmod(0o644)
    loose.write_bytes(zlib.compress(b"blob 5\0evil!"))
    report = doctor(config, now=lambda: clock.now)
    repo_check = next(c for c in report.checks if c.name == "repository")
    assert repo_check.status == "fail" and oid[:10] in repo_check.detail
    proc = run_cli("doctor", "--config", str(config.file))
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0].startswith(f"Error: repository: blob {oid[:10]}")


def test_corrupt_sqlite_fails_sync_and_repair_rolls_back(config: Config, vault: VaultRepo,
                                                         clock: Clock, workspace: Path) -> None:
    db = workspace / "memory.db"
    conn = apsw.Connection(str(db))
    with conn:  # big enough to have pages to damage
        conn.executemany("INSERT INTO memories(content, embedding) VALUES(?, ?)",
                         [(f"memory {i} " * 20, os.urandom(1536)) for i in range(400)])
    conn.close()
    sync(config, now=clock)
    good = rows(db)
    damage_sqlite(db)
    age(db)
    clock.tick()
    result = sync(config, now=clock)
    assert not result.ok and [c.path for c in result.corrupt] == ["agent/memory.db"]
    assert "is corrupt (SQLite:" in result.failures[0].message
    proc = run_cli("doctor", "--config", str(config.file))
    assert proc.returncode == 1 and "memory files" in proc.stderr
    report = doctor(config, repair=True, now=lambda: clock.now)
    assert any(r.startswith("rolled back agent/memory.db") for r in report.repairs)
    assert rows(db) == good
    aside = list(workspace.glob("memory.db.corrupt-*"))
    assert len(aside) == 1 and aside[0].stat().st_size > 0  # kept, never deleted
    assert checks(doctor(config, now=lambda: clock.now))["memory files"] == "ok"


def rolling_back(tmp_path: Path, workspace: Path, clock: Clock) -> Config:
    """A vault with [health] auto_rollback on, the workspace synced once."""
    config = load_config(write_config(tmp_path / "vault.toml", {"agent": workspace},
                                      extra="[health]\nauto_rollback = true"))
    VaultRepo.init(config.vault.path, "main")
    sync(config, now=clock)
    return config


def test_file_written_a_moment_ago_is_never_rolled_back(tmp_path: Path, workspace: Path,
                                                        clock: Clock) -> None:
    config = rolling_back(tmp_path, workspace, clock)
    (workspace / "memory.json").write_text('[{"id": 1, "content": "still being wri')
    clock.tick()
    result = sync(config, now=clock)
    assert not result.ok and result.rollbacks == ()
    assert (workspace / "memory.json").read_text().endswith("still being wri")


def test_auto_rollback_in_sync(tmp_path: Path, workspace: Path, clock: Clock) -> None:
    config = rolling_back(tmp_path, workspace, clock)
    good = (workspace / "memory.json").read_text()
    (workspace / "memory.json").write_text('[{"id": 1, "content": "trunc')
    age(workspace / "memory.json")
    clock.tick()
    result = sync(config, now=clock)
    assert not result.ok and [r.path for r in result.rollbacks] == ["agent/memory.json"]
    assert (workspace / "memory.json").read_text() == good
    assert Path(result.rollbacks[0].aside).read_text() == '[{"id": 1, "content": "trunc'


def test_auto_rollback_of_a_database_cut_inside_its_header(tmp_path: Path, workspace: Path,
                                                            clock: Clock) -> None:
    # An agent's database cut to a few bytes (a failed rewrite, a stray truncate): the sync
    # calls it corrupt and puts the last version back.
    config = rolling_back(tmp_path, workspace, clock)
    db = workspace / "memory.db"
    rows = sqlite3.connect(db).execute("SELECT count(*) FROM memories").fetchone()
    db.write_bytes(db.read_bytes()[:9])
    age(db)
    clock.tick()
    result = sync(config, now=clock)
    assert not result.ok and [r.path for r in result.rollbacks] == ["agent/memory.db"]
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM memories").fetchone() == rows
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert Path(result.rollbacks[0].aside).read_bytes() == b"SQLite fo"


def test_overdue_and_never_synced(config: Config, vault: VaultRepo, clock: Clock) -> None:
    assert checks(doctor(config))["last sync"] == "fail"
    sync(config, now=clock)
    late = doctor(config, now=lambda: clock.now + timedelta(minutes=31))
    assert checks(late)["last sync"] == "fail" and not late.ok


def test_damaged_index_is_reported(config: Config, vault: VaultRepo, clock: Clock) -> None:
    sync(config)
    config.index_path.parent.mkdir(parents=True, exist_ok=True)
    config.index_path.write_bytes(b"SQLite format 3\0" + os.urandom(5000))
    assert checks(doctor(config))["index"] == "fail"


def test_repair_reclones_a_damaged_vault_from_its_remote(tmp_path: Path, workspace: Path,
                                                         clock: Clock) -> None:
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    config = load_config(write_config(tmp_path / "vault.toml", {"agent": workspace},
                                      extra=f'remote = "{remote}"'))
    vault, _ = VaultRepo.init(config.vault.path, "main")
    pushed = sync(config, now=clock)
    assert pushed.push is not None and pushed.push.pushed
    (workspace / "MEMORY.md").write_text("# local only\n")
    # offline for one sync (the remote moved away, not another URL: a new URL would make
    # every commit one the remote may lack)
    remote.rename(tmp_path / "away.git")
    clock.tick()
    local = sync(config, now=clock)
    assert local.push is not None and not local.push.pushed
    (tmp_path / "away.git").rename(remote)
    for obj in (config.vault.path / "objects").glob("??/*"):
        obj.chmod(0o644)
        obj.write_bytes(b"garbage")
    allow = config.state_dir / "secrets-allow.json"
    allow.write_text('{"fingerprints": []}\n')  # the state folder (lock, cache, allow list)...
    report = doctor(config, repair=True, now=lambda: clock.now)
    assert report.repairs and report.repairs[0].startswith(f"re-cloned the vault from {remote}")
    assert f"1 commit(s) were only local" in report.repairs[0]
    assert allow.read_text() == '{"fingerprints": []}\n'  # ...moved into the new vault
    assert not list(tmp_path.glob(".memory-vault.clone-*"))
    assert checks(report)["repository"] == "ok"
    assert list(tmp_path.glob("memory-vault.damaged-*"))
    assert VaultRepo.open(config.vault.path, "main").head_id() == pushed.commit


def test_failing_sync_and_doctor_reach_failures_log(config: Config, vault: VaultRepo,
                                                    workspace: Path, tmp_path: Path) -> None:
    workspace.rename(tmp_path / "unmounted")
    proc = run_cli("sync", "--quiet", "--config", str(config.file))
    assert proc.returncode == 1
    proc = run_cli("doctor", "--config", str(config.file))
    assert proc.returncode == 1
    log = [json.loads(line) for line in (config.home / "failures.log").read_text().splitlines()]
    assert [entry["command"] for entry in log] == ["sync", "doctor"]
    assert log[0]["error"] == f"source 'agent': folder not found: {workspace}"
    assert log[0]["host"] == "testhost" and log[0]["time"].endswith("Z")
    busy_free = run_cli("sync", "--dry-run", "--config", str(config.file))
    assert busy_free.returncode == 1  # a dry run fails the same way but records nothing
    assert len((config.home / "failures.log").read_text().splitlines()) == 2


def test_each_failure_of_a_sync_reaches_failures_log(tmp_path: Path, workspace: Path) -> None:
    # Before: a sync with two failures logged one line, "2 failures: <the first>", so the
    # second (a rollback's own reason, say) was only ever on stderr.
    other = tmp_path / "other"
    other.mkdir()
    path = write_config(tmp_path / "vault.toml", {"agent": workspace, "other": other})
    config = load_config(path)
    VaultRepo.init(config.vault.path, "main")
    workspace.rename(tmp_path / "unmounted")
    other.rmdir()
    proc = run_cli("sync", "--quiet", "--config", str(path))
    assert proc.returncode == 1
    log = [json.loads(line) for line in (config.home / "failures.log").read_text().splitlines()]
    assert [(e["command"], e["error"]) for e in log] == [
        ("sync", f"source 'agent': folder not found: {workspace}"),
        ("sync", f"source 'other': folder not found: {other}"),
        ("sync", f"2 failures: source 'agent': folder not found: {workspace}")]


def test_index_current_lagging_damaged_and_rebuilt(tmp_path: Path, workspace: Path,
                                                   clock: Clock) -> None:
    from vault.embed import make_embedder, resolve_model
    from vault.index import IndexOptions, build_index

    config = load_config(write_config(tmp_path / "vault.toml", {"agent": workspace},
                                      extra='[index]\nmodel = "hash:64"'))
    VaultRepo.init(config.vault.path, "main")
    sync(config, now=clock)
    build_index(config, IndexOptions(), make_embedder(resolve_model("hash:64")))
    index = next(c for c in doctor(config, now=lambda: clock.now).checks if c.name == "index")
    assert index.status == "ok" and index.detail.startswith("current at")
    (workspace / "MEMORY.md").write_text("# Memory\n\n- more\n")
    clock.tick()
    sync(config, now=clock)
    index = next(c for c in doctor(config, now=lambda: clock.now).checks if c.name == "index")
    assert (index.status, index.detail.split(" (")[0]) == ("warn", "lagging by 1 commit(s)")
    data = bytearray(config.index_path.read_bytes())
    data[200:4000] = os.urandom(3800)
    config.index_path.write_bytes(bytes(data))
    damaged = next(c for c in doctor(config, now=lambda: clock.now).checks if c.name == "index")
    assert damaged.status == "fail" and "is damaged" in damaged.detail
    report = doctor(config, repair=True, now=lambda: clock.now)
    assert any(r.startswith("rebuilt the index from the vault") for r in report.repairs)
    assert next(c for c in report.checks if c.name == "index").status == "ok"


def test_database_with_a_damaged_header_is_corrupt_and_rolled_back(
        config: Config, vault: VaultRepo, clock: Clock, workspace: Path) -> None:
    # Its 16-byte header overwritten: no longer recognised as SQLite by its content, and sync
    # calls it corrupt (the vault's last version is a database); doctor says the same.
    db = workspace / "memory.db"
    sync(config, now=clock)
    good = rows(db)
    with open(db, "r+b") as handle:
        handle.write(b"GARBAGEGARBAGE!!")
    age(db)
    report = doctor(config, now=lambda: clock.now)
    memory = next(c for c in report.checks if c.name == "memory files")
    assert memory.status == "fail" and "agent/memory.db" in memory.detail
    repaired = doctor(config, repair=True, now=lambda: clock.now)
    assert any(r.startswith("rolled back agent/memory.db") for r in repaired.repairs)
    assert rows(db) == good
    aside = list(workspace.glob("memory.db.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"GARBAGEGARBAGE!!")
    assert checks(repaired)["memory files"] == "ok"


def _damage(vault: VaultRepo, kind: str) -> str:
    """Damage the vault the way a disk or a stray command does; the id of what was damaged."""
    def loose(oid: str) -> Path:
        path = vault.path / "objects" / oid[:2] / oid[2:]
        path.chmod(0o644)
        return path

    if kind == "truncated tree":
        oid = git(vault.path, "rev-parse", "main^{tree}").strip()
        data = loose(oid).read_bytes()
        loose(oid).write_bytes(data[:len(data) // 2])
    elif kind == "deleted tip commit":
        oid = git(vault.path, "rev-parse", "main").strip()
        loose(oid).unlink()
    else:  # "truncated ref"
        oid = "refs/heads/main"
        (vault.path / oid).write_text("")
    return oid


@pytest.mark.parametrize("kind", ["truncated tree", "deleted tip commit", "truncated ref"])
def test_damaged_vault_gets_the_whole_report(config: Config, vault: VaultRepo, clock: Clock,
                                             workspace: Path, tmp_path: Path,
                                             kind: str) -> None:
    sync(config, now=clock)
    (workspace / "MEMORY.md").write_text("# Memory\n\n- more\n")
    clock.tick()
    sync(config, now=clock)
    damaged = _damage(vault, kind)
    proc = run_cli("doctor", "--json", "--crontab-file", str(tmp_path / "ct"), "--config",
                   str(config.file))
    assert proc.returncode == 1
    report = json.loads(proc.stdout)  # complete, not one Error: line
    assert report["ok"] is False
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name["repository"]["status"] == "fail"
    assert damaged[:10] in by_name["repository"]["detail"]
    assert {"sources", "memory files", "last sync", "lock", "cron", "disk"} <= set(by_name)
    text = run_cli("doctor", "--crontab-file", str(tmp_path / "ct"), "--config",
                   str(config.file))
    assert text.returncode == 1 and text.stdout.startswith("FAIL  repository")
    assert text.stderr.startswith("Error: repository: ")
    log = [json.loads(line) for line in (config.home / "failures.log").read_text().splitlines()]
    assert [e["command"] for e in log] == ["doctor", "doctor"]
    assert log[0]["error"].startswith("repository: ")


def test_drill_on_a_vault_missing_a_blob_reports_it(config: Config, vault: VaultRepo,
                                                    clock: Clock, tmp_path: Path) -> None:
    sync(config, now=clock)
    oid = git(vault.path, "rev-parse", "main:agent/MEMORY.md").strip()
    (vault.path / "objects" / oid[:2] / oid[2:]).unlink()
    report = doctor(config, drill=True, crontab_file=tmp_path / "ct", now=lambda: clock.now)
    assert not report.ok and checks(report)["repository"] == "fail"
    assert report.drill is not None and report.drill.problems
    assert oid in report.drill.problems[0]
    proc = run_cli("doctor", "--drill", "--json", "--crontab-file", str(tmp_path / "ct"),
                   "--config", str(config.file))
    assert proc.returncode == 1 and json.loads(proc.stdout)["drill"]["problems"]


def test_repair_right_after_a_json_went_bad_says_too_fresh_to_judge(
        config: Config, vault: VaultRepo, clock: Clock, workspace: Path) -> None:
    sync(config, now=clock)
    memory = workspace / "memory.json"
    memory.write_text('[{"id": 1, "content": "lik')
    soon = time.time_ns() + 10 * 10**9  # "just written" however slow this machine is
    os.utime(memory, ns=(soon, soon))
    report = doctor(config, repair=True, now=lambda: clock.now)
    check = next(c for c in report.checks if c.name == "memory files")
    assert check.status == "warn" and "too fresh to judge" in check.detail
    assert "written in the last 2 s" in check.detail and "--repair" not in check.detail
    assert report.repairs == () and report.ok
    assert memory.read_text() == '[{"id": 1, "content": "lik'


TOKEN = "ghp_Zx8Qw3Er5Ty7Ui9Op1As2Df4Gh6Jk8Lz0Xc3V"


def test_rollback_of_a_redacted_file_says_it_holds_placeholders(
        tmp_path: Path, workspace: Path, clock: Clock) -> None:
    # [secrets] policy = "redact": the vault's good version has [REDACTED:...] where the
    # token was; putting it back writes those placeholders into the live file, and says so.
    config = load_config(write_config(
        tmp_path / "vault.toml", {"agent": workspace},
        extra='[secrets]\npolicy = "redact"\n[health]\nauto_rollback = true'))
    VaultRepo.init(config.vault.path, "main")
    memory = workspace / "memory.json"
    memory.write_text(json.dumps({"notes": ["likes tea"], "github_token": TOKEN}))
    assert [r.path for r in sync(config, now=clock).redacted] == ["agent/memory.json"]
    memory.write_text('{"notes": ["likes tea"], "github_token": "ghp_Zx8')
    age(memory)
    clock.tick()
    result = sync(config, now=clock)
    [rollback] = result.rollbacks
    assert "[REDACTED:" in memory.read_text()
    assert rollback.warning == (f"{memory} holds [REDACTED:...] markers: the secrets it held "
                                "were never stored and cannot come back")
    memory.write_text('{"notes": ["likes tea"], "github_token": "ghp_Zx8')
    age(memory)
    report = doctor(config, repair=True, now=lambda: clock.now)
    assert [r for r in report.repairs if r.startswith("rolled back agent/memory.json")
            and rollback.warning in r]
    assert (memory.parent / "memory.json").read_text().count("[REDACTED:") == 1


def test_last_sync_is_judged_by_the_cron_entrys_interval(config: Config, vault: VaultRepo,
                                                          clock: Clock, tmp_path: Path) -> None:
    from vault.schedule import install

    crontab = tmp_path / "crontab"
    sync(config, now=clock)
    late = lambda: clock.now + timedelta(minutes=45)  # noqa: E731
    report = doctor(config, crontab_file=crontab, now=late)  # no entry: [schedule] interval
    last = next(c for c in report.checks if c.name == "last sync")
    assert last.status == "fail" and "(15 min each, [schedule] interval)" in last.detail
    install(config, "1h", crontab_file=crontab)
    assert checks(doctor(config, crontab_file=crontab, now=late))["last sync"] == "ok"
    report = doctor(config, crontab_file=crontab,
                    now=lambda: clock.now + timedelta(minutes=121))
    last = next(c for c in report.checks if c.name == "last sync")
    assert last.status == "fail"
    assert "(60 min each, vault's cron entry '0 * * * *')" in last.detail


def test_an_index_made_by_an_older_vault_is_not_called_damaged(config: Config,
                                                               vault: VaultRepo) -> None:
    import apsw

    from vault.doctor import check_index

    from vault.index import APPLICATION_ID

    config.index_path.parent.mkdir(parents=True, exist_ok=True)
    conn = apsw.Connection(str(config.index_path))
    conn.execute(f"CREATE TABLE t(x); PRAGMA user_version=1; "
                 f"PRAGMA application_id={APPLICATION_ID}")  # (as every index vault made)
    conn.close()
    check = check_index(config, vault)
    assert check.status == "warn" and "made by an older vault" in check.detail
    # another program's database at [index] path (no vault application_id) is not called
    # an older index: `vault index` would refuse to write into it
    conn = apsw.Connection(str(config.index_path))
    conn.execute("PRAGMA application_id=0")
    conn.close()
    check = check_index(config, vault)
    assert "made by an older vault" not in check.detail and "not a vault index" in check.detail


def test_a_cron_entry_whose_interpreter_is_gone_fails(config: Config, vault: VaultRepo,
                                                      tmp_path: Path) -> None:
    import shutil
    import sys

    from vault.schedule import install

    crontab = tmp_path / "crontab"
    install(config, "15m", crontab_file=crontab)
    report = doctor(config, crontab_file=crontab)
    assert checks(report)["cron"] == "ok"
    # a virtualenv deleted after `vault cron install`: cron would fail every run, silently
    venv = tmp_path / "venv" / "bin"
    venv.mkdir(parents=True)
    python = venv / "python3"
    shutil.copy(sys.executable, python)  # (a copy outside its venv: cannot import vault)
    text = crontab.read_text()
    crontab.write_text(text.replace(sys.executable, str(python)))
    cron = next(c for c in doctor(config, crontab_file=crontab).checks if c.name == "cron")
    assert cron.status == "fail" and f"it runs {python}, which cannot import vault" in cron.detail
    python.unlink()
    cron = next(c for c in doctor(config, crontab_file=crontab).checks if c.name == "cron")
    assert cron.status == "fail"
    assert f"cannot sync: it runs {python}, which is gone (`vault cron install` again)" \
        in cron.detail


def test_repair_without_a_git_program_says_so_and_touches_nothing(tmp_path: Path,
                                                                   workspace: Path,
                                                                   clock: Clock) -> None:
    """QA: with no git on PATH the re-clone's `import git` raised ImportError: exit 3."""
    import sys

    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    config = load_config(write_config(tmp_path / "vault.toml", {"agent": workspace},
                                      extra=f'remote = "{remote}"'))
    VaultRepo.init(config.vault.path, "main")
    assert sync(config, now=clock).commit
    for obj in (config.vault.path / "objects").glob("??/*"):
        obj.chmod(0o644)
        obj.write_bytes(b"garbage")
    empty = tmp_path / "bin-without-git"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "GIT_PYTHON_GIT_EXECUTABLE"}
    proc = subprocess.run([sys.executable, "-m", "vault", "doctor", "--repair", "--json",
                           "--config", str(config.file), "--crontab-file",
                           str(tmp_path / "none")], capture_output=True, text=True,
                          env={**env, "PATH": str(empty)}, check=False, timeout=120)
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    assert len(doc["repairs"]) == 1
    assert f"cannot re-clone from {remote}: no git program on PATH ({empty})" in doc["repairs"][0]
    assert doc["repairs"][0].endswith("; the damaged vault is untouched")
    assert not list(tmp_path.glob("memory-vault.damaged-*"))
    assert not list(tmp_path.glob(".memory-vault.clone-*"))
