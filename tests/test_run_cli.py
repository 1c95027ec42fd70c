"""`digest run` and `digest status` on the command line: exit codes, overlapping runs, status.

Overlapping runs are real processes started together; the rest use click's runner.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.config import load_config
from digest.delivery.lease import Lease
from digest.delivery.transports import BatchTransport
from digest.errors import SendRejectedError
from digest.readers.subscribers import add_subscriber
from digest.run import run_due
from digest.store import open_db

from helpers import write_config

LONDON_DAILY = {"timezone": "Europe/London", "grace_hours": 6, "sources": ["stories.csv"]}


STORIES = """url,title,summary,author,category,published_at,score,pinned
https://news.test/a,Tram runs all night,Trams all night.,Mira,world,2026-11-02T05:00:00Z,3,false
https://news.test/b,Otters return,Otters seen.,Priya,science,2026-11-02T04:00:00Z,1,false
"""
SLOT = "2026-11-02T07:00:00Z"
AFTER_SLOT = "2026-11-02T07:05:00Z"


@pytest.fixture
def project(project_dir):
    """A project folder with a config whose source is a story file, and London readers."""
    write_config(project_dir, LONDON_DAILY)
    (project_dir / "stories.csv").write_text(STORIES)
    db = open_db(project_dir / "digest.db")
    for n in range(40):
        add_subscriber(db, f"reader{n:02}@example.com", timezone="Europe/London")
    db.close()
    return project_dir


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def eml_names(project: Path) -> list[str]:
    return sorted(path.name for path in (project / "outbox").rglob("*.eml"))


def test_run_sends_the_due_slot_and_exits_zero(project):
    result = run("run", "--now", AFTER_SLOT)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"ingest {project / 'stories.csv'}: 2 added, 0 updated, 0 unchanged, 0 skipped",
        "daily Europe/London 2026-11-02 07:00 (2026-11-02 07:00 UTC): "
        "sent 40, failed 0, skipped 0, unknown 0 in 1 edition(s)",
    ]
    assert len(eml_names(project)) == 40


def test_run_with_nothing_due_says_so(project):
    run("run", "--now", AFTER_SLOT)
    result = run("run", "--now", "2026-11-02T07:10:00Z")
    assert (result.exit_code, result.output) == (0, "nothing due\n")


def test_run_exits_one_when_a_source_fails_but_still_sends(project):
    write_config(project, LONDON_DAILY | {"sources": ["missing.xml", "stories.csv"]})
    result = CliRunner().invoke(cli, ["run", "--now", AFTER_SLOT])
    assert result.exit_code == 1
    assert f"ingest {project / 'missing.xml'}: FAILED" in result.output
    assert "sent 40, failed 0" in result.output


def test_a_run_that_finds_another_holding_the_lease_says_so_and_does_nothing(project):
    db = open_db(project / "digest.db")
    with Lease(db, "run"):
        result = run("run", "--now", AFTER_SLOT)
    assert result.exit_code == 0
    assert "Another process" in result.output and "'run'" in result.output
    assert not (project / "outbox").exists()


@pytest.mark.slow
def test_two_runs_started_together_deliver_once(project):
    command = [sys.executable, "-m", "digest", "run", "--now", AFTER_SLOT]
    processes = [
        subprocess.Popen(command, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0].decode() for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    assert eml_names(project) == [f"reader{n:02}@example.com.eml" for n in range(40)]
    db = open_db(project / "digest.db")
    assert db.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0] == 40
    assert db.execute("SELECT COUNT(*) FROM slots").fetchone()[0] == 1
    assert sum("sent 40" in output for output in outputs) == 1, outputs


def test_status_shows_recent_slots_what_is_due_and_the_next_slot_per_time_zone(project):
    db = open_db(project / "digest.db")
    add_subscriber(db, "tokyo@example.com", timezone="Asia/Tokyo")
    run("run", "--now", AFTER_SLOT)
    lines = run("status", "--now", "2026-11-02T07:30:00Z").output.splitlines()
    assert lines[0] == "status at 2026-11-02 07:30 UTC"
    assert lines[2].startswith(
        f"  2026-11-02 07:05 UTC  digest run  ok: ingest {project / 'stories.csv'}: 2 added"
    )
    assert lines[4:] == [
        "daily: '0 7 * * *' in each reader's time zone, grace 6h",
        "  recent slots:",
        "    daily Europe/London 2026-11-02 07:00 (2026-11-02 07:00 UTC)  sent  "
        "sent 40, failed 0, skipped 0, unknown 0",
        "  due now: nothing",
        "  next:",
        "    daily Asia/Tokyo 2026-11-03 07:00 (2026-11-02 22:00 UTC)",
        "    daily Europe/London 2026-11-03 07:00 (2026-11-03 07:00 UTC)",
        "  needs attention: nothing",
    ]


def test_status_shows_a_slot_that_is_due_before_the_run_comes(project):
    lines = run("status", "--now", AFTER_SLOT).output.splitlines()
    assert "last runs: none recorded yet (is cron set up?)" in lines
    assert lines[lines.index("  due now:") + 1] == (
        "    daily Europe/London 2026-11-02 07:00 (2026-11-02 07:00 UTC): send"
    )


class RejectingTransport(BatchTransport):
    """A provider that refuses every batch for its content, as SendGrid does with HTTP 400."""

    batch_size = 25

    def send_batch(self, edition, batch) -> str:
        raise SendRejectedError("The provider rejected the batch (HTTP 400): bad from address.")


def test_status_names_the_command_that_retries_failed_deliveries_and_it_works(project):
    db = open_db(project / "digest.db")
    now = datetime(2026, 11, 2, 7, 5, tzinfo=UTC)
    report = run_due(db, load_config(project / "digest.toml"), now, transport=RejectingTransport())
    assert report.failed
    assert report.lines[-1].endswith(
        "sent 0, failed 40, skipped 0, unknown 0 in 1 edition(s); retry them with "
        "`digest send --newsletter daily --timezone Europe/London --now 2026-11-02T07:00:00Z "
        "--retry-failed`"
    )
    status = run("status", "--now", AFTER_SLOT).output.splitlines()
    attention = status[status.index("  needs attention:") + 1]
    assert attention.startswith("    40 failed at 2026-11-02T07:00:00Z in Europe/London (The ")
    command = attention.split("`")[1]
    assert command == (
        "digest send --newsletter daily --timezone Europe/London --now 2026-11-02T07:00:00Z "
        "--retry-failed"
    )
    retried = run(*command.split()[1:])
    assert retried.exit_code == 0, retried.output
    assert len(eml_names(project)) == 40
    assert "  needs attention: nothing" in run("status", "--now", AFTER_SLOT).output


class DyingTransport(BatchTransport):
    """The sender dies while a batch is with the provider: the batch's fate is unknown."""

    batch_size = 25

    def send_batch(self, edition, batch) -> str:
        raise RuntimeError("killed mid-request")


def test_status_names_the_command_for_batches_left_unknown(project):
    db = open_db(project / "digest.db")
    now = datetime(2026, 11, 2, 7, 5, tzinfo=UTC)
    report = run_due(db, load_config(project / "digest.toml"), now, transport=DyingTransport())
    assert report.failed
    assert "Sending stopped on an unexpected RuntimeError: killed mid-request" in report.lines[-1]
    status = run("status", "--now", AFTER_SLOT).output
    assert (
        "the webhook is silent about this edition (it has never received a post), so it may "
        "or may not have left; check the webhook and SendGrid's activity log before resending"
    ) in status
    assert (
        "`digest send --newsletter daily --timezone Europe/London --now 2026-11-02T07:00:00Z "
        "--resend-unknown`" in status
    )
    # The slot was not recorded, so the next run finishes the queue (not the unknown batch).
    assert "daily Europe/London 2026-11-02 07:00 (2026-11-02 07:00 UTC): send" in status


def test_the_shipped_config_sends_daily_at_0700_local_with_six_hours_grace():
    daily = load_config(Path(__file__).resolve().parent.parent / "digest.toml").newsletter("daily")
    assert (daily.schedule, daily.grace_hours, daily.min_stories) == ("0 7 * * *", 6, 1)
