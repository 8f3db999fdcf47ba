"""Cron: one idempotent entry with absolute paths; status shows the next run; overdue warning."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import Clock, run_cli, write_config
from vault.config import Config, load_config
from vault.errors import UsageError, VaultError
from vault.repo import VaultRepo
from vault.schedule import cron_spec, install, remove, status, vault_id
from vault.status import status as vault_status
from vault.sync import sync


@pytest.mark.parametrize("every, spec", [("15m", "*/15 * * * *"), ("5m", "*/5 * * * *"),
                                         ("1m", "* * * * *"), ("1h", "0 * * * *"),
                                         ("6h", "0 */6 * * *"), ("1d", "0 3 * * *")])
def test_cron_spec(every: str, spec: str) -> None:
    assert cron_spec(every) == spec


@pytest.mark.parametrize("every", ["7m", "90s", "5h", "2d"])
def test_cron_spec_refuses_what_cron_cannot_say(every: str) -> None:
    with pytest.raises(UsageError):
        cron_spec(every)


def test_install_twice_changes_nothing_and_remove(config: Config, tmp_path: Path) -> None:
    tab = tmp_path / "crontab"
    tab.write_text("MAILTO=me\n0 1 * * * backup.sh # someone else's\n")
    install(config, "15m", tab)
    first = tab.read_text()
    install(config, "15m", tab)
    assert tab.read_text() == first
    lines = [line for line in first.splitlines() if "vault-sync" in line]
    assert len(lines) == 1
    line = lines[0]
    assert line.startswith("*/15 * * * * ")
    assert f"{sys.executable} -m vault sync --quiet --config {config.file} 2>&1 | " in line
    assert line.endswith(f" >> {config.home / 'vault.log'} # vault-sync:{vault_id(config)}")
    assert "backup.sh # someone else's" in first and "MAILTO=me" in first
    st = status(config, tab, now=datetime(2026, 11, 21, 10, 7))
    assert st.next_run == datetime(2026, 11, 21, 10, 15).astimezone()  # local, with its offset
    assert st.next_run is not None and st.next_run.utcoffset() is not None
    install(config, "1h", tab)
    hourly = [line for line in tab.read_text().splitlines() if "vault-sync" in line]
    assert len(hourly) == 1 and hourly[0].startswith(("0 * * * * ", "@hourly "))
    assert remove(config, tab) is True
    assert "vault-sync" not in tab.read_text() and "backup.sh" in tab.read_text()
    assert remove(config, tab) is False


def cron_command(tab: Path, config: Config) -> str:
    """The command of config's entry as the crontab file holds it ('%' escaped as '\\%')."""
    line = next(x for x in tab.read_text().splitlines() if vault_id(config) in x)
    return line.split(" ", 5)[5].rsplit(" # vault-sync", 1)[0]


def run_as_cron(command: str, home: Path) -> None:
    """Run a crontab command the way cron does: /bin/sh from /, with cron's environment only
    (crontab(5): SHELL, HOME, LOGNAME, PATH=/usr/bin:/bin), '\\%' turned into '%'."""
    env = {"SHELL": "/bin/sh", "HOME": str(home), "LOGNAME": "cron", "PATH": "/usr/bin:/bin"}
    subprocess.run(["/bin/sh", "-c", command.replace("\\%", "%")], env=env, cwd="/",
                   check=True, timeout=120)


def test_the_installed_line_really_runs_a_sync(config: Config, vault: VaultRepo,
                                               tmp_path: Path) -> None:
    tab = tmp_path / "crontab"
    install(config, "15m", tab)
    subprocess.run(cron_command(tab, config), shell=True, check=True, cwd="/")  # from /
    assert vault.head_id() is not None
    assert (config.home / "vault.log").read_text() == ""  # a quiet sync: no line, no stamp
    run_as_cron(cron_command(tab, config), tmp_path / "home")
    assert (config.home / "vault.log").read_text() == ""


STAMP_RE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ "


def test_each_line_a_cron_run_logs_starts_with_its_time(config: Config, vault: VaultRepo,
                                                        workspace: Path, tmp_path: Path) -> None:
    """Before: vault.log held bare 'Error:' lines, and nobody could tell when they happened."""
    tab = tmp_path / "crontab"
    install(config, "15m", tab)
    shutil.rmtree(workspace)  # the source is gone: the sync fails and says so
    direct = subprocess.run([sys.executable, "-m", "vault", "sync", "--quiet", "--config",
                             str(config.file)], capture_output=True, text=True, check=False)
    assert direct.returncode == 1 and direct.stderr.startswith("Error: source 'agent'")
    log = config.home / "vault.log"
    before = datetime.now(timezone.utc).replace(microsecond=0)
    subprocess.run(cron_command(tab, config), shell=True, check=True, cwd="/")  # the file's text
    run_as_cron(cron_command(tab, config), tmp_path / "home")  # what cron gives sh
    after = datetime.now(timezone.utc)
    lines = log.read_text().splitlines()
    expected = direct.stderr.splitlines()
    assert len(lines) == 2 * len(expected) >= 2
    for line, own in zip(lines, expected + expected):
        assert re.fullmatch(STAMP_RE + re.escape(own), line), line  # the sync's line, unchanged
        stamp = datetime.strptime(line[:20], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        assert before <= stamp <= after  # UTC, when the run started


def test_the_entry_sets_the_variables_the_config_paths_name(
        tmp_path: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: a source path '$AGENT_HOME/ws' synced from the shell and failed under cron,
    which has no AGENT_HOME; the entry now sets it, with the value it has at install."""
    monkeypatch.setenv("AGENT_HOME", str(workspace.parent))
    cfg = write_config(tmp_path / "vault.toml", {"agent": Path(f"$AGENT_HOME/{workspace.name}")})
    cfg.write_text(cfg.read_text() + '\n[index]\npath = "${HOME}/idx/index.db"\n')  # cron has it
    config = load_config(cfg)
    repo, _ = VaultRepo.init(config.vault.path, "main")
    tab = tmp_path / "crontab"
    install(config, "15m", tab)
    command = cron_command(tab, config)
    run_as_cron(command, tmp_path / "home")
    assert (config.home / "vault.log").read_text() == ""
    assert repo.head_id() is not None
    assert command.startswith(f"AGENT_HOME={workspace.parent} VAULT_HOME={config.home} ")


def two_vaults(tmp_path: Path, workspace: Path) -> tuple[Config, Config]:
    """Two agents' vaults on one machine: two configs, two data dirs (VAULT_HOME)."""
    configs = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        cfg = write_config(tmp_path / name / "vault.toml", {"agent": workspace})
        configs.append(load_config(cfg, env={"VAULT_HOME": str(tmp_path / name / "data")}))
    return configs[0], configs[1]


def test_two_vaults_have_an_entry_each(tmp_path: Path, workspace: Path) -> None:
    """Before: every vault's entry carried the same marker, so installing the second vault
    replaced the first one's entry, and status and remove of either saw the other's."""
    one, two = two_vaults(tmp_path, workspace)
    tab = tmp_path / "crontab"
    install(one, "15m", tab)
    install(two, "30m", tab)
    entries = [x for x in tab.read_text().splitlines() if "vault-sync" in x]
    assert len(entries) == 2
    assert f"--config {one.file} " in entries[0] and entries[0].startswith("*/15 ")
    assert f"--config {two.file} " in entries[1] and entries[1].startswith("*/30 ")
    first = status(one, tab)
    assert first.entry is not None and first.entry.line == entries[0]
    second = status(two, tab)
    assert second.entry is not None and second.entry.line == entries[1]
    install(one, "1h", tab)  # updated in place, the other untouched
    again = [x for x in tab.read_text().splitlines() if "vault-sync" in x]
    assert again[0].startswith(("0 * * * * ", "@hourly ")) and again[1] == entries[1]
    assert remove(two, tab) is True and remove(two, tab) is False
    assert status(two, tab).entry is None
    kept = status(one, tab)
    assert kept.entry is not None and kept.entry.line == again[0]


def test_an_entry_of_an_older_version_is_updated_by_its_own_vault(tmp_path: Path,
                                                                  workspace: Path) -> None:
    """Entries written before per-vault markers carry a bare '# vault-sync': the vault whose
    config (and VAULT_HOME) the command names takes it over in place; other vaults leave it."""
    one, two = two_vaults(tmp_path, workspace)
    py = sys.executable
    old_one = (f"*/15 * * * * VAULT_HOME={one.home} {py} -m vault sync --quiet --config "
               f"{one.file} >> {one.home}/vault.log 2>&1 # vault-sync")
    by_hand = (f"*/10 * * * * /home/me/.venv/bin/vault sync --quiet --config={two.file} "
               f">> /tmp/vault.log 2>&1 # vault-sync")  # cron/crontab's line, without VAULT_HOME
    other_home = (f"*/5 * * * * VAULT_HOME={tmp_path}/elsewhere {py} -m vault sync --quiet "
                  f"--config {one.file} >> /tmp/vault.log 2>&1 # vault-sync")
    tab = tmp_path / "crontab"
    tab.write_text(f"MAILTO=me\n{old_one}\n0 1 * * * backup.sh\n{by_hand}\n{other_home}\n")
    found = status(one, tab)
    assert found.entry is not None and found.entry.line == old_one
    hand = status(two, tab)
    assert hand.entry is not None and hand.entry.line == by_hand
    install(one, "15m", tab)
    lines = tab.read_text().splitlines()
    assert lines[0] == "MAILTO=me" and lines[2:] == ["0 1 * * * backup.sh", by_hand, other_home]
    assert lines[1].endswith(f"# vault-sync:{vault_id(one)}") and "| sed " in lines[1]
    assert remove(two, tab) is True
    assert tab.read_text().splitlines() == [lines[0], lines[1], lines[2], other_home]


def test_cli_cron(config_file: Path, tmp_path: Path) -> None:
    tab = tmp_path / "ct"
    installed = json.loads(run_cli("cron", "install", "--every", "30m", "--crontab-file",
                                   str(tab), "--json", "--config", str(config_file)).stdout)
    assert installed["installed"] and installed["schedule"] == "*/30 * * * *"
    st = json.loads(run_cli("cron", "status", "--crontab-file", str(tab), "--json",
                            "--config", str(config_file)).stdout)
    assert st["line"] == installed["line"] and st["next_run"]
    bad = run_cli("cron", "install", "--every", "7m", "--crontab-file", str(tab), "--config",
                  str(config_file))
    assert bad.returncode == 2 and bad.stderr.startswith("Error: --every 7m: use a divisor")
    gone = json.loads(run_cli("cron", "remove", "--crontab-file", str(tab), "--json",
                              "--config", str(config_file)).stdout)
    assert gone == {"removed": True}


def test_cron_install_reports_the_last_sync(config_file: Path, vault: VaultRepo,
                                            tmp_path: Path) -> None:
    """QA: `cron install --json` said "last_sync": null after syncs; `cron status` had it."""
    assert run_cli("sync", "-q", "--config", str(config_file)).returncode == 0
    tab = ["--crontab-file", str(tmp_path / "ct"), "--json", "--config", str(config_file)]
    installed = json.loads(run_cli("cron", "install", *tab).stdout)
    st = json.loads(run_cli("cron", "status", *tab).stdout)
    assert st["last_sync"] is not None
    assert installed["last_sync"] == st["last_sync"]


def test_status_warns_when_overdue(tmp_path: Path, workspace: Path, clock: Clock) -> None:
    config = load_config(write_config(tmp_path / "vault.toml", {"agent": workspace},
                                      extra="[schedule]\ninterval = '15m'"))
    VaultRepo.init(config.vault.path, "main")
    sync(config, now=clock)
    assert not vault_status(config, now=lambda: clock.now + timedelta(minutes=29)).overdue
    assert vault_status(config, now=lambda: clock.now + timedelta(minutes=31)).overdue
    old = datetime.now(timezone.utc) - timedelta(hours=2)
    workspace.joinpath("MEMORY.md").write_text("changed\n")
    sync(config, now=lambda: old)
    proc = run_cli("status", "--config", str(config.file))
    assert "Warning:   the last sync is older than two intervals (15 min each)" in proc.stdout


def test_a_sync_that_finds_nothing_keeps_the_vault_from_looking_overdue(
        tmp_path: Path, workspace: Path, clock: Clock) -> None:
    config = load_config(write_config(tmp_path / "vault.toml", {"agent": workspace},
                                      extra="[schedule]\ninterval = '15m'"))
    VaultRepo.init(config.vault.path, "main")
    first = sync(config, now=clock)
    assert first.commit is not None
    quiet = sync(config, now=lambda: clock.now + timedelta(minutes=20))  # the agent was idle
    assert quiet.commit is None and quiet.ok
    later = vault_status(config, now=lambda: clock.now + timedelta(minutes=45))
    assert not later.overdue and later.last_run == clock.now + timedelta(minutes=20)
    assert later.last_sync is not None and later.last_sync.id == first.commit
    assert vault_status(config, now=lambda: clock.now + timedelta(minutes=51)).overdue


# Lines python-crontab rewrote when it wrote the crontab back (QA): a comment it moved below
# the env line, '0 0 * * *' made '@daily', ' %' before cron's '%', '# DISABLED LINE' above a
# line it could not read (and "No enumeration for Minutes: 'this'" on stderr), '#0' made
# '# 0', runs of spaces collapsed.
QA_LINES = (b"# my jobs\nSHELL=/bin/bash\n0 0 * * * /usr/bin/backup.sh\n"
            b"0 9 * * 1 /usr/bin/mail -s report me%Weekly body%\nnot a cron line\n"
            b"#0 3 * * * job\n0 0 1 1 *    two  spaces\n")
MORE_LINES = (b"\n  # indented comment  \nMAILTO=\"me@example.org\"\n\n"
              b"@reboot   /usr/bin/start\t--now   # trailing comment\n"
              b"this line is not for cron at all\n*/5 * * * * caf\xc3\xa9 \xff latin-1\n"
              b"# */15 * * * * an old commented-out line # vault-sync\n"
              b"0 1 * * * echo '# vault-sync' in quotes\n\t\n")


@pytest.mark.parametrize("original", [
    QA_LINES, QA_LINES + MORE_LINES, MORE_LINES + QA_LINES,
    QA_LINES.rstrip(b"\n"),  # no newline after the last line
    b"", b"\n", b"0 0 * * * lonely"], ids=["qa", "qa+more", "more+qa", "no-final-newline",
                                            "empty", "blank", "one-line-no-newline"])
def test_install_and_remove_keep_every_other_line_byte_for_byte(
        config: Config, tmp_path: Path, original: bytes,
        capfd: pytest.CaptureFixture[str]) -> None:
    """Before: python-crontab wrote the whole file back its own way (see QA_LINES)."""
    tab = tmp_path / "crontab"
    tab.write_bytes(original)
    tab.chmod(0o640)
    own = f"# vault-sync:{vault_id(config)}".encode()

    install(config, "15m", tab)
    installed = tab.read_bytes()
    lines = installed.split(b"\n")
    at = [i for i, line in enumerate(lines) if line.endswith(own)]
    assert len(at) == 1 and lines[at[0]].startswith(b"*/15 * * * * ")
    # the entry is added after the last full line: a last line without a newline stays last
    assert b"\n".join(lines[:at[0]] + lines[at[0] + 1:]) == original
    assert at[0] == len(original.split(b"\n")) - 1
    assert status(config, tab).entry is not None

    install(config, "1d", tab)  # updated in place
    again = tab.read_bytes().split(b"\n")
    assert again[:at[0]] + again[at[0] + 1:] == lines[:at[0]] + lines[at[0] + 1:]
    assert again[at[0]].startswith(b"0 3 * * * ") and again[at[0]].endswith(own)

    assert remove(config, tab) is True
    assert tab.read_bytes() == original
    assert tab.stat().st_mode & 0o777 == 0o640
    assert remove(config, tab) is False and tab.read_bytes() == original
    assert capfd.readouterr() == ("", "")  # the library printed nothing


def test_an_entry_in_the_middle_is_replaced_there_and_removed_alone(config: Config,
                                                                  tmp_path: Path) -> None:
    """vault's own line changes (here an old bare-marker one, with a stray twin further down);
    the lines around it, which python-crontab would have rewritten, do not."""
    py = sys.executable
    old = (f"*/15   *  * * * {py} -m vault sync --quiet --config {config.file} "
           f">> /tmp/vault.log 2>&1 #vault-sync")
    before = "0 0 * * * /usr/bin/backup.sh\nSHELL=/bin/bash\n# about the next line\n"
    after = "0 9 * * 1 /usr/bin/mail -s x me%body%\nnot a cron line\n"
    tab = tmp_path / "crontab"
    tab.write_text(f"{before}{old}\n{after}{old}\n0 0 1 1 *  last")
    found = status(config, tab)
    assert found.entry is not None and found.entry.line == old
    install(config, "30m", tab)
    text = tab.read_text()
    assert text.startswith(before) and text.endswith(f"\n{after}0 0 1 1 *  last")
    entry = text[len(before):-len(f"\n{after}0 0 1 1 *  last")]
    assert entry.startswith("*/30 * * * * ") and entry.endswith(f"# vault-sync:{vault_id(config)}")
    assert remove(config, tab) is True
    assert tab.read_text() == f"{before}{after}0 0 1 1 *  last"


def test_an_entry_on_a_last_line_without_a_newline_gets_one(config: Config,
                                                            tmp_path: Path) -> None:
    """cron needs the newline; the line before keeps its own."""
    tab = tmp_path / "crontab"
    install(config, "15m", tab)
    entry = tab.read_text()
    tab.write_text("MAILTO=me\n" + entry.rstrip("\n"))
    install(config, "15m", tab)
    assert tab.read_text() == "MAILTO=me\n" + entry
    tab.write_text("MAILTO=me\n" + entry.rstrip("\n"))
    assert remove(config, tab) is True
    assert tab.read_text() == "MAILTO=me\n"


def test_status_and_remove_of_a_missing_file_create_nothing(config: Config,
                                                            tmp_path: Path) -> None:
    tab = tmp_path / "no" / "crontab"
    assert status(config, tab).entry is None and remove(config, tab) is False
    assert not tab.parent.exists()
    install(config, "15m", tab)
    assert tab.read_text().count("\n") == 1


@pytest.fixture
def fake_crontab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `crontab` program first on PATH that keeps the user crontab in a file (the real one
    is never touched): `crontab -l` prints it, `crontab FILE` replaces it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    store = tmp_path / "user-crontab"
    program = bin_dir / "crontab"
    program.write_text(f"""#!/bin/sh
if [ "$1" = -l ]; then
    [ -f '{store}' ] || {{ echo "no crontab for $(id -un)" >&2; exit 1; }}
    exec cat '{store}'
fi
cat "$1" > '{store}'
""")
    program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return store


def test_the_user_crontab_keeps_its_other_lines_too(config: Config, fake_crontab: Path,
                                                    capfd: pytest.CaptureFixture[str]) -> None:
    assert status(config).entry is None and status(config).crontab == "user crontab"
    assert remove(config) is False and not fake_crontab.exists()  # no crontab: none written
    fake_crontab.write_bytes(QA_LINES + MORE_LINES)
    st = install(config, "15m")
    assert st.entry is not None and st.entry.schedule == "*/15 * * * *"
    assert fake_crontab.read_bytes() == QA_LINES + MORE_LINES + st.entry.line.encode() + b"\n"
    assert remove(config) is True
    assert fake_crontab.read_bytes() == QA_LINES + MORE_LINES
    assert capfd.readouterr() == ("", "")


def test_without_a_crontab_program_the_error_says_so(config: Config, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no crontab here
    with pytest.raises(VaultError) as caught:
        status(config)
    assert caught.value.message == "cannot read the crontab: no crontab program on PATH"


@pytest.fixture
def new_york(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time is New York's (EDT, -04:00, until 2026-11-01 02:00, then EST, -05:00)."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_next_run_is_local_time_with_its_own_offset(config: Config, tmp_path: Path,
                                                    new_york: None) -> None:
    """Before: a naive local time, which --json printed as if it had no zone."""
    tab = tmp_path / "crontab"
    install(config, "1d", tab)  # 03:00 local
    st = status(config, tab, now=datetime(2026, 10, 31, 16, 0, tzinfo=timezone.utc))  # 12:00 EDT
    assert st.next_run is not None
    assert st.next_run.isoformat() == "2026-11-01T03:00:00-05:00"  # after the clocks went back
    assert st.next_run == datetime(2026, 11, 1, 8, 0, tzinfo=timezone.utc)
    out = run_cli("cron", "status", "--crontab-file", str(tab), "--json", "--config",
                  str(config.file), env={"TZ": "America/New_York"})
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT03:00:00-0[45]:00", json.loads(out.stdout)["next_run"])
