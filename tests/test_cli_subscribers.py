"""The subscriber commands end to end: newsletters, count, export, export-data and forget."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from digest.addresses import CONTROL_CHARACTERS
from digest.cli import cli
from digest.store import open_db

from helpers import write_config


@pytest.fixture
def workdir(project_dir):
    write_config(
        project_dir,
        newsletters={"daily": {"title": "Test Daily"}, "weekly": {"title": "Test Weekly"}},
    )
    (project_dir / "readers.csv").write_text(
        "email,name,topics,timezone\nana@example.com,Ana,,UTC\nbo@example.com,Bo,world,UTC\n"
    )
    return project_dir


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_import_and_add_subscribe_to_the_first_newsletter_unless_told(workdir):
    run("subscribers", "import", "readers.csv")
    run("subscribers", "add", "cy@example.com", "--newsletter", "weekly")
    assert run("subscribers", "list", "--newsletter", "daily").output.count("\tactive\t") == 2
    weekly = run("subscribers", "list", "--newsletter", "weekly").output
    assert weekly == "cy@example.com\tactive\tUTC\t*\t\n"


def test_unsubscribe_from_one_newsletter_or_from_all(workdir):
    run("subscribers", "import", "readers.csv")
    run("subscribers", "import", "readers.csv", "--newsletter", "weekly")
    out = run("subscribers", "unsubscribe", "ana@example.com", "--newsletter", "weekly").output
    assert out == "unsubscribed ana@example.com from weekly\n"
    assert "ana@example.com\tactive" in run("subscribers", "list").output
    run("subscribers", "unsubscribe", "ana@example.com")
    assert "ana@example.com\tunsubscribed" in run("subscribers", "list").output


def test_count_gives_every_status_and_the_total(workdir):
    run("subscribers", "import", "readers.csv")
    run("subscribers", "unsubscribe", "bo@example.com")
    assert run("subscribers", "count").output == (
        "active\t1\npending\t0\nunsubscribed\t1\nbounced\t0\ncomplained\t0\ntotal\t2\n"
    )
    assert run("subscribers", "count", "--newsletter", "weekly").output.endswith("total\t0\n")


def test_export_writes_a_csv_of_the_whole_list(workdir):
    run("subscribers", "import", "readers.csv")
    assert run("subscribers", "export", "all.csv").output == "exported 2 readers to all.csv\n"
    lines = (workdir / "all.csv").read_text().splitlines()
    assert lines[0] == "email,name,topics,timezone,status,newsletters,created_at,updated_at"
    assert lines[2].startswith("bo@example.com,Bo,world,UTC,active,daily:active,")


def test_export_data_prints_json_about_one_reader(workdir):
    run("subscribers", "import", "readers.csv")
    data = json.loads(run("subscribers", "export-data", "ana@example.com").output)
    assert data["profile"]["name"] == "Ana"
    assert set(data) >= {"profile", "subscriptions", "deliveries", "audit"}


def test_forget_prints_what_was_removed_and_import_then_refuses_the_address(workdir):
    run("subscribers", "import", "readers.csv")
    out = run("subscribers", "forget", "ana@example.com").output
    assert out.startswith("forgot ana@example.com: removed profile 1, subscriptions 1,")
    again = run("subscribers", "import", "readers.csv")
    assert "ana@example.com was forgotten at their request" in again.output
    assert "ana@example.com" not in run("subscribers", "list").output


def test_a_missing_reader_is_one_clear_line(workdir):
    result = CliRunner().invoke(cli, ["subscribers", "export-data", "zed@example.com"])
    assert result.exit_code == 1
    assert "No subscriber 'zed@example.com'" in result.output


def stored_name(workdir, email: str, name: str) -> None:
    """Give a reader a name as older versions stored it, before names were cleaned at entry."""
    db = open_db(workdir / "digest.db")
    db.execute("UPDATE subscribers SET name = ? WHERE email = ?", [name, email])
    db.close()


def test_list_prints_control_characters_escaped_never_run(workdir):
    run("subscribers", "import", "readers.csv")
    stored_name(workdir, "ana@example.com", "Ana\x1b[2J\rEve\x9b\u202e")
    listing = run("subscribers", "list").output
    assert "ana@example.com\tactive\tUTC\t*\tAna\\x1b[2J\\rEve\\x9b\\u202e\n" in listing
    assert not CONTROL_CHARACTERS.search(listing.replace("\t", "").replace("\n", ""))


def test_export_data_keeps_control_characters_as_json_escapes(workdir):
    run("subscribers", "import", "readers.csv")
    stored_name(workdir, "ana@example.com", "Ana\x1b\x9b\u2028")
    output = run("subscribers", "export-data", "ana@example.com").output
    assert not CONTROL_CHARACTERS.search(output.replace("\n", ""))
    assert json.loads(output)["profile"]["name"] == "Ana\x1b\x9b\u2028"


def test_add_refuses_a_non_ascii_local_part_in_one_line(workdir):
    result = CliRunner().invoke(cli, ["subscribers", "add", "josé@example.com"])
    assert result.exit_code == 1
    assert "Error: invalid address 'josé@example.com': neither SendGrid nor the outbox" in (
        result.output
    )


def test_export_data_of_a_reader_with_webhook_events_is_json(workdir):
    from digest.clock import utcnow
    from digest.feedback.events import process_pending, store_post

    run("subscribers", "import", "readers.csv")
    db = open_db(workdir / "digest.db")
    body = json.dumps(
        [{"email": "ana@example.com", "event": "spamreport", "timestamp": 1700000000}]
    )
    store_post(db, body.encode(), {}, utcnow())
    process_pending(db)
    db.close()
    data = json.loads(run("subscribers", "export-data", "ana@example.com").output)
    [event] = data["events"]
    assert event["event"] == "spamreport" and len(event["natural_key"]) == 32


def test_forget_erases_the_address_from_webhook_posts_not_processed_yet(workdir):
    from digest.clock import utcnow
    from digest.feedback.events import store_post

    run("subscribers", "import", "readers.csv")
    db = open_db(workdir / "digest.db")
    items = [
        {"email": "ANA@example.com", "event": "open", "timestamp": 1700000000},
        {"email": "bo@example.com", "event": "open", "timestamp": 1700000000},
    ]
    store_post(db, json.dumps(items).encode(), {}, utcnow())
    store_post(db, b'{"unreadable": "ana@example.com"', {}, utcnow())
    out = run("subscribers", "forget", "ana@example.com").output
    assert "webhook posts 2" in out
    bodies = [row[0] for row in db.execute("SELECT body FROM webhook_posts ORDER BY id")]
    assert bodies[1] is None and b"ana@" not in bodies[0].lower()
    assert [item["email"] for item in json.loads(bodies[0])] == ["bo@example.com"]
    db.close()


def test_a_post_that_keeps_failing_is_discarded_by_its_id(workdir):
    from digest.clock import utcnow
    from digest.feedback.events import pending_posts, store_post

    db = open_db(workdir / "digest.db")
    post = store_post(db, b"[]", {}, utcnow())
    # As the web app leaves a post whose processing raised: kept, with the reason.
    db.execute("UPDATE webhook_posts SET note = 'processing failed: KeyError: x'")
    status = run("status").output
    assert f"(post {post}: processing failed: KeyError: x; the log has the rest)" in status
    assert "`digest webhook discard ID` gives one up" in status
    out = run("webhook", "discard", str(post)).output
    assert (
        out == f"discarded webhook post {post} (processing failed: KeyError: x); its body is gone\n"
    )
    assert pending_posts(db) == []
    assert "webhook:" not in run("status").output
    again = CliRunner().invoke(cli, ["webhook", "discard", str(post)])
    assert again.exit_code == 1 and "already processed" in again.output
    db.close()
