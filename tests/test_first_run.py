"""A newcomer's first run: from `digest demo` to the studio, status and report on its database.

Every command that reads a database names it when it is new or empty, the demo says how to
look at its own, and an outbox send is reported as having no delivery events, not 0%.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from digest.cli import cli

from helpers import write_config

NOW = "2026-11-26T07:05:00Z"


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def demo(project_dir):
    write_config(project_dir)
    result = run("demo", "--dir", "demo", "--now", NOW)
    assert result.exit_code == 0, result.output
    return project_dir / "demo" / "digest.db"


def test_the_demo_says_how_to_open_its_database(demo):
    result = run("demo", "--dir", "demo", "--now", NOW)
    assert f"database: {demo}; to look at it, give every command its --db:" in result.output
    for command in ("studio", "status", "report"):
        assert f"  digest --db {demo} {command}\n" in result.output


def test_status_on_the_demo_counts_its_send_among_the_last_runs(demo):
    lines = run("--db", str(demo), "status", "--now", NOW).output.splitlines()
    assert lines[1] == "last runs:"
    assert "digest demo  ok: daily at 2026-11-26 07:00 UTC: sent 8" in lines[2]


def test_the_report_of_an_outbox_send_says_it_has_no_delivery_events(demo):
    output = run("--db", str(demo), "report").output
    assert "outbox sends have no delivery events" in output
    assert "delivered n/a" in output and "0.0%" not in output
    assert "Event Webhook set up" not in output


def test_a_command_on_a_database_that_did_not_exist_names_it(project_dir):
    write_config(project_dir)
    result = run("status")
    assert f"digest: {project_dir / 'digest.db'} did not exist: this is a new, empty database." in (
        result.output
    )
    assert "the demo's is demo/digest.db (`digest --db demo/digest.db studio`)" in result.output


def test_a_command_reading_an_empty_database_names_it(project_dir):
    write_config(project_dir)
    run("status")
    result = run("subscribers", "list")
    assert f"digest: {project_dir / 'digest.db'} has no readers and no stories yet." in (
        result.output
    )


def test_a_database_with_readers_is_read_without_a_word(demo):
    result = run("--db", str(demo), "subscribers", "count")
    assert "digest:" not in result.output


def test_the_shipped_defaults_raise_no_warning_on_the_demo(tmp_path):
    from datetime import timedelta

    from digest.clock import parse_moment
    from digest.config import SHIPPED, load_config
    from digest.demo import run_demo
    from digest.edition.gate import edition_findings
    from digest.preview import check_next_send
    from digest.store import open_db

    config = load_config(SHIPPED / "digest.toml", env={"DIGEST_SECRET_KEY": "k" * 40})
    now = parse_moment(NOW)
    report = run_demo(config, tmp_path / "demo", now)
    db = open_db(tmp_path / "demo" / "digest.db")
    try:
        sent = [
            finding
            for result in report.send.editions
            for finding in edition_findings(db, config, result.edition)
            if finding.level != "ok"
        ]
        checked = check_next_send(db, config, None, now + timedelta(hours=1))
        upcoming = [f for _, findings in checked for f in findings if f.level != "ok"]
    finally:
        db.close()
    # The demo's sent variants, and the next send's that are not skipped, all checked. The
    # demo sent every reader the day's stories: most of the next send's variants are their
    # history's, with nothing new (skipped, per reader, never a repeat).
    assert len(report.send.editions) > 1 and sum(bool(f) for _, f in checked) >= 1
    assert sent == [] and upcoming == []


def test_the_studio_on_the_demos_database_shows_its_readers_and_names_it(demo):
    from digest.config import load_config, with_overrides
    from digest.delivery.transports.outbox import OutboxTransport
    from digest.studio import create_studio

    # What `digest --db demo/digest.db studio` serves.
    config = with_overrides(load_config(), db_path=demo)
    studio = create_studio(lambda: config, OutboxTransport(config)).test_client()
    page = studio.get("/", query_string={"now": "2026-11-26T05:00:00Z"}).get_data(as_text=True)
    assert f'<code class="database">{demo}</code>' in page
    assert "across 8 readers" in page and "no active readers" not in page


@pytest.mark.slow
def test_from_the_shell_the_demos_lines_run_as_printed(tmp_path):
    import shlex
    import subprocess
    import sys
    from pathlib import Path

    digest = Path(sys.executable).parent / "digest"
    shown = subprocess.run(
        [digest, "demo", "--dir", "demo", "--now", NOW],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    [line] = [line for line in shown.splitlines() if line.endswith(" status")]
    status = subprocess.run(
        [*shlex.split(line), "--now", NOW], cwd="/", capture_output=True, text=True, check=True
    )
    assert line.startswith(f"  {digest} --db {tmp_path / 'demo' / 'digest.db'}")
    assert "digest demo  ok: daily" in status.stdout and "sent 8" in status.stdout
