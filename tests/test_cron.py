"""The `cron/` files: the digest-run wrapper (settings, lock, log, exit status) and the units."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from digest.readers.subscribers import add_subscriber
from digest.scaffold import init_newsroom
from digest.store import open_db

from helpers import write_config

# The quick tier leaves this module out: every test runs the real cron wrapper.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
# Before London's 07:00: nothing is due, so these runs are quick (no rendering).
NOTHING_DUE = "2026-11-02T05:00:00Z"
WRAPPER = REPO / "cron" / "digest-run"
DIGEST = Path(sys.executable).parent / "digest"


STORIES = """url,title,summary,author,category,published_at,score,pinned
https://news.test/a,Tram runs all night,Trams all night.,Mira,world,2026-11-02T05:00:00Z,3,false
"""


@pytest.fixture
def project(tmp_path) -> Path:
    """A project folder with a config, a story file, and one reader in a database named by
    the `.env` beside the config."""
    write_config(tmp_path, {"timezone": "Europe/London", "sources": ["stories.csv"]})
    (tmp_path / "stories.csv").write_text(STORIES)
    db = open_db(tmp_path / "data" / "news.db")
    add_subscriber(db, "ana@example.com", timezone="Europe/London")
    db.close()
    (tmp_path / ".env").write_text("DIGEST_DB=data/news.db\n")
    return tmp_path


def wrapper(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("DIGEST_")}
    environment |= {
        "DIGEST_HOME": str(project),
        "DIGEST_BIN": str(DIGEST),
        **env,
    }
    return subprocess.run(
        [str(WRAPPER), *args],
        cwd="/",
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def log_of(project: Path) -> str:
    return (project / "log" / "digest-run.log").read_text()


def test_the_wrapper_runs_digest_in_the_project_with_its_env_file_and_logs_it(project):
    result = wrapper(project, "--now", "2026-11-02T07:05:00Z")
    assert result.returncode == 0, result
    assert (result.stdout, result.stderr) == ("", "")
    log = log_of(project).splitlines()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ digest-run: start \(pid \d+\)", log[0])
    assert log[1:3] == [
        f"ingest {project / 'stories.csv'}: 1 added, 0 updated, 0 unchanged, 0 skipped",
        "daily Europe/London 2026-11-02 07:00 (2026-11-02 07:00 UTC): "
        "sent 1, failed 0, skipped 0, unknown 0 in 1 edition(s)",
    ]
    assert log[3].endswith("digest-run: exit 0")
    assert [p.name for p in (project / "outbox").rglob("*.eml")] == ["ana@example.com.eml"]


def test_each_run_appends_to_the_log(project):
    (project / "log").mkdir()
    (project / "log" / "digest-run.log").write_text("an earlier run's line\n")
    wrapper(project, "--now", NOTHING_DUE)
    log = log_of(project).splitlines()
    assert log[0] == "an earlier run's line"
    assert "digest-run: start" in log[1]
    assert log[-2] == "nothing due"


def test_the_wrapper_passes_digests_exit_status_through(project):
    result = wrapper(project, "--now", "2026-11-02T07:05:00Z", DIGEST_CONFIG="missing.toml")
    assert result.returncode == 1
    log = log_of(project)
    assert "Config file missing.toml does not exist" in log
    assert log.splitlines()[-1].endswith("digest-run: exit 1")


def test_a_run_that_finds_the_lock_taken_does_nothing_and_exits_zero(project):
    (project / "log").mkdir()
    with open(project / "log" / "digest-run.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = wrapper(project, "--now", "2026-11-02T07:05:00Z")
    assert result.returncode == 0
    assert "another run holds" in log_of(project)
    assert "digest-run: start" not in log_of(project)
    assert not (project / "outbox").exists()


def test_the_lock_is_free_again_once_a_run_ends(project):
    wrapper(project, "--now", NOTHING_DUE)
    with open(project / "log" / "digest-run.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if still held


def test_a_log_of_dash_writes_to_stdout_for_the_journal(project):
    result = wrapper(project, "--now", NOTHING_DUE, DIGEST_LOG="-")
    assert "nothing due" in result.stdout.splitlines()
    assert not (project / "log" / "digest-run.log").exists()


def test_the_crontab_runs_the_wrapper_every_five_minutes():
    [line] = [
        line
        for line in (REPO / "cron" / "crontab").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    schedule, command = line.split(maxsplit=5)[:5], line.split(maxsplit=5)[5]
    assert schedule == ["*/5", "*", "*", "*", "*"]
    assert command.endswith("/cron/digest-run")


def test_the_systemd_timer_starts_the_service_every_five_minutes():
    timer = (REPO / "cron" / "digest.timer").read_text()
    service = (REPO / "cron" / "digest.service").read_text()
    assert "OnCalendar=*:0/5" in timer and "Unit=digest.service" in timer
    assert re.search(r"^ExecStart=\S+/cron/digest-run$", service, re.MULTILINE)
    assert "Type=oneshot" in service


def test_the_wrapper_is_executable():
    assert os.access(WRAPPER, os.X_OK)


def test_the_env_file_is_parsed_never_run_as_shell(project):
    (project / ".env").write_text("DIGEST_DB=data/news.db\nNOTE=$(touch ran-as-shell)\n")
    result = wrapper(project, "--now", NOTHING_DUE)
    assert result.returncode == 0, log_of(project)
    assert not (project / "ran-as-shell").exists()


def test_a_bad_env_line_fails_the_run_by_line_number_without_its_value(project):
    (project / ".env").write_text("DIGEST_DB=data/news.db\nexport SENDGRID_API_KEY=SG.hunter2\n")
    result = wrapper(project, "--now", NOTHING_DUE)
    assert result.returncode == 1
    log = log_of(project)
    assert f"{project / '.env'}, line 2: not a KEY=value line" in log
    assert "hunter2" not in log


def test_what_a_run_writes_is_readable_by_its_user_only(project):
    assert wrapper(project, "--now", "2026-11-02T07:05:00Z").returncode == 0
    written = [project / "log", project / "log" / "digest-run.log", project / "outbox"]
    written += list((project / "outbox").rglob("*"))
    assert {oct(path.stat().st_mode & 0o077) for path in written} == {"0o0"}


@pytest.fixture
def crontab(tmp_path) -> tuple[Path, dict[str, str]]:
    """A stand-in `crontab` that keeps the table in a file, as `crontab -l` / `crontab -` do,
    first on the PATH of the environment it comes with; the table holds a backup line."""
    table = tmp_path / "table"
    table.write_text("0 3 * * * /usr/local/bin/backup\n")
    fake = tmp_path / "bin" / "crontab"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\nif [ "$1" = -l ]; then cat {table}; else cat > {table}; fi\n')
    fake.chmod(0o755)
    return table, os.environ | {"PATH": f"{fake.parent}:{os.environ['PATH']}"}


def install_crontab(newsroom: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(newsroom / "cron" / "install-crontab")], env=env, capture_output=True, text=True
    )


def test_install_crontab_adds_the_line_once_and_keeps_the_others(tmp_path, crontab):
    table, env = crontab
    newsroom = tmp_path / "news"
    init_newsroom(newsroom)
    for _ in range(2):
        assert install_crontab(newsroom, env).returncode == 0
    assert table.read_text().splitlines() == [
        "0 3 * * * /usr/local/bin/backup",
        f"*/5 * * * * {newsroom}/cron/digest-run",
    ]


def test_install_crontab_after_the_schedule_is_edited_replaces_the_line_that_runs_it(
    tmp_path, crontab
):
    table, env = crontab
    newsroom = tmp_path / "news"
    init_newsroom(newsroom)
    assert install_crontab(newsroom, env).returncode == 0
    with table.open("a") as lines:
        lines.write(f"# the old schedule was */5 * * * * {newsroom}/cron/digest-run\n")
        lines.write(f"0 4 * * * {tmp_path}/other/cron/digest-run\n")
        lines.write(f"0 5 * * * cp {newsroom}/cron/digest-run /backup\n")
    schedule = newsroom / "cron" / "crontab"
    schedule.write_text(schedule.read_text().replace("*/5 * * * *", "*/10 * * * *"))
    for _ in range(2):
        assert install_crontab(newsroom, env).returncode == 0
    assert table.read_text().splitlines() == [
        "0 3 * * * /usr/local/bin/backup",
        f"*/10 * * * * {newsroom}/cron/digest-run",
        f"# the old schedule was */5 * * * * {newsroom}/cron/digest-run",
        f"0 4 * * * {tmp_path}/other/cron/digest-run",
        f"0 5 * * * cp {newsroom}/cron/digest-run /backup",
    ]


def test_install_crontab_refuses_a_line_that_runs_another_folders_wrapper(crontab):
    """The repository's own cron/crontab names /srv/digest, to be edited in a checkout."""
    table, env = crontab
    result = install_crontab(REPO, env)
    assert result.returncode == 1
    assert f"not this folder's {REPO}/cron/digest-run" in result.stderr
    assert table.read_text() == "0 3 * * * /usr/local/bin/backup\n"


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd-analyze")
def test_the_systemd_units_that_init_writes_pass_systemd_analyze_verify(tmp_path):
    init_newsroom(tmp_path)
    units = [str(tmp_path / "cron" / name) for name in ("digest.service", "digest.timer")]
    result = subprocess.run(
        ["systemd-analyze", "verify", *units], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_with_a_backup_dir_the_wrapper_keeps_one_backup_a_day_and_drops_old_ones(project):
    config = project / "digest.toml"
    config.write_text(config.read_text() + '\n[backup]\ndir = "backups"\nkeep_days = 3\n')
    (project / "backups").mkdir()
    old = project / "backups" / "digest-2020-01-01.db"
    old.write_bytes(b"an old backup")
    for _ in range(2):
        assert wrapper(project, "--now", NOTHING_DUE).returncode == 0, log_of(project)
    [today] = list((project / "backups").iterdir())
    assert re.fullmatch(r"digest-\d{4}-\d\d-\d\d\.db", today.name)
    assert "removed digest-2020-01-01.db (older than 3 days)" in log_of(project)
    copy = open_db(today)
    assert copy.execute("SELECT email FROM subscribers").fetchall() == [("ana@example.com",)]
    copy.close()
    assert today.stat().st_mode & 0o077 == 0
