"""`digest backup` and `digest restore`: consistent copies, checked, and restores that refuse."""

from __future__ import annotations

import collections
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from click.testing import CliRunner

from digest.backups import backup, daily_backup
from digest.cli import cli
from digest.errors import StoreError
from digest.readers.subscribers import add_subscriber
from digest.store import open_db

from helpers import CLEAN_ENV, EDITION_TIME, add_stories, story, write_config
from sendgrid_server import Fault, SendGridTestServer

API_KEY = "SG.test-key"


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def emails(path) -> list[str]:
    db = open_db(path)
    try:
        return [row[0] for row in db.execute("SELECT email FROM subscribers ORDER BY email")]
    finally:
        db.close()


def test_a_backup_is_the_database_as_it_stood_and_passes_the_integrity_check(db, config, tmp_path):
    add_subscriber(db, "ana@example.com")
    size = backup(config.db_path, tmp_path / "copy.db")
    assert size == (tmp_path / "copy.db").stat().st_size
    copy = sqlite3.connect(tmp_path / "copy.db")
    assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    # One self-contained file: not a WAL database needing its -wal beside it.
    assert copy.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    copy.close()
    assert emails(tmp_path / "copy.db") == ["ana@example.com"]


def test_a_backup_taken_while_another_connection_writes_has_only_committed_rows(
    db, config, tmp_path
):
    add_subscriber(db, "ana@example.com")
    writer = sqlite3.connect(config.db_path)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute(
        "INSERT INTO subscribers (email, created_at, updated_at) VALUES ('half@x.org', '', '')"
    )
    try:
        backup(config.db_path, tmp_path / "copy.db")
    finally:
        writer.rollback()
        writer.close()
    assert emails(tmp_path / "copy.db") == ["ana@example.com"]


def test_a_backup_never_overwrites_a_file(config, tmp_path):
    (tmp_path / "copy.db").write_text("precious")
    with pytest.raises(StoreError, match="exists already"):
        backup(config.db_path, tmp_path / "copy.db")
    assert (tmp_path / "copy.db").read_text() == "precious"


def test_the_daily_backup_is_taken_once_a_day_and_old_ones_go(config, tmp_path):
    folder = tmp_path / "backups"
    now = EDITION_TIME
    assert daily_backup(config.db_path, folder, 2, now)[0].startswith("backup: ")
    assert daily_backup(config.db_path, folder, 2, now + timedelta(hours=5)) == []
    daily_backup(config.db_path, folder, 2, now + timedelta(days=1))
    done = daily_backup(config.db_path, folder, 2, now + timedelta(days=3))
    assert "backup: removed digest-2026-11-26.db (older than 2 days)" in done
    assert sorted(p.name for p in folder.iterdir()) == [
        "digest-2026-11-27.db",
        "digest-2026-11-29.db",
    ]


def test_restore_refuses_a_database_that_exists_without_force(project_dir):
    write_config(project_dir)
    invoke("subscribers", "add", "ana@example.com")
    assert invoke("backup", "monday.db").exit_code == 0
    invoke("subscribers", "add", "bo@example.com")
    refused = invoke("restore", "monday.db")
    assert refused.exit_code == 1 and "add --force" in refused.output
    assert emails(project_dir / "digest.db") == ["ana@example.com", "bo@example.com"]
    done = invoke("restore", "monday.db", "--force")
    assert done.exit_code == 0, done.output
    assert emails(project_dir / "digest.db") == ["ana@example.com"]
    [kept] = project_dir.glob("digest.db.before-restore-*")
    assert emails(kept) == ["ana@example.com", "bo@example.com"]


def test_restore_refuses_a_file_that_is_not_a_whole_digest_database(project_dir):
    write_config(project_dir)
    (project_dir / "notes.db").write_text("not a database at all, just some text")
    result = invoke("restore", "notes.db")
    assert result.exit_code == 1 and "is not a digest database" in result.output
    sqlite3.connect(project_dir / "empty.db").execute("CREATE TABLE t (x)").connection.close()
    assert "no schema version" in invoke("restore", "empty.db").output


def test_restore_refuses_a_backup_from_a_newer_schema(project_dir):
    write_config(project_dir)
    invoke("subscribers", "add", "ana@example.com")
    assert invoke("backup", "future.db").exit_code == 0
    future = sqlite3.connect(project_dir / "future.db")
    future.execute(
        """INSERT INTO _sqlite_migrations (migration_set, name, applied_at)
           VALUES ('digest', 'm099_from_the_future', '2030-01-01')"""
    )
    future.commit()
    future.close()
    (project_dir / "digest.db").unlink()
    result = invoke("restore", "future.db")
    assert result.exit_code == 1
    assert "made by a newer digest (schema m099_from_the_future)" in result.output
    assert not (project_dir / "digest.db").exists()


@pytest.mark.slow  # a real `digest send`, killed mid-send
def test_a_backup_taken_during_a_send_restores_and_the_send_resumes_mailing_no_one_twice(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.chdir(tmp_path)
    write_config(
        tmp_path,
        transport={"kind": "sendgrid", "secret_key": "test-secret"},
        sendgrid={"batch_size": 2, "concurrency": 1, "timeout_seconds": 120.0},
    )
    db = open_db(tmp_path / "digest.db")
    add_stories(db, story(1, title="Tram runs all night"), story(2, title="Otters return"))
    readers = [f"reader{n}@example.com" for n in range(8)]
    for address in readers:
        add_subscriber(db, address)
    db.close()
    now = (EDITION_TIME + timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with SendGridTestServer(api_key=API_KEY) as server:
        # The second batch is taken at once but answered only much later: the send is under
        # way, that batch in flight, when the backup is taken and the machine is lost.
        server.script(Fault("slow", delay=0), Fault("slow", delay=60))
        env = CLEAN_ENV | {"SENDGRID_API_KEY": API_KEY, "SENDGRID_API_HOST": server.url}
        sender = subprocess.Popen(
            [sys.executable, "-m", "digest", "send", "--now", now],
            cwd=tmp_path,
            env=env | {"no_proxy": "127.0.0.1,localhost"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 60
            while len(server.requests) < 2:
                assert time.monotonic() < deadline and sender.poll() is None, sender.stderr
                time.sleep(0.05)
            assert invoke("backup", "during-send.db").exit_code == 0
        finally:
            os.kill(sender.pid, signal.SIGKILL)
            sender.communicate(timeout=30)
        # The standby: the backup restored over what is left, then the send resumed.
        result = invoke("restore", "during-send.db", "--force")
        assert result.exit_code == 0, result.output
        monkeypatch.setenv("SENDGRID_API_KEY", API_KEY)
        monkeypatch.setenv("SENDGRID_API_HOST", server.url)
        resumed = invoke("send", "--now", now)
        # It sends the rest, and leaves the batch that was in flight at the backup unknown
        # (SendGrid did take it): never resent blind, so no one gets it twice.
        assert "sent 6, failed 0, skipped 0, unknown 2" in resumed.output
        mailed = collections.Counter(server.recipients())
    assert set(mailed) == set(readers)
    assert max(mailed.values()) == 1
