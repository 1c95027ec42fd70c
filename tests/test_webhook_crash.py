"""kill -9 of `digest serve` between storing webhook posts and processing them: nothing lost,
nothing counted twice, after a restart and SendGrid's retries."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import timedelta

import pytest

from digest.delivery.lease import Lease
from digest.delivery.send import send_newsletter
from digest.delivery.transports.sendgrid import SendGridTransport
from digest.feedback.events import pending_posts, process_pending
from digest.feedback.webhook import KEYS_VARIABLE
from digest.readers.subscribers import add_subscriber
from digest.store import open_db

from helpers import EDITION_TIME, add_stories, make_config, story, write_config
from sendgrid_server import SendGridTestServer, event_bodies, make_webhook_key
from servers import CLEAN_ENV, free_port, start_digest_server

# The quick tier leaves this module out: every test kills a real `digest serve`.
pytestmark = pytest.mark.slow

API_KEY = "SG.test-key"
READERS = [f"reader{n}@example.com" for n in range(6)]


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


class App:
    """`digest serve` as a real process on one port, started and killed at will."""

    def __init__(self, folder, public_key: str):
        self.folder = folder
        self.port = free_port()
        self.env = {**CLEAN_ENV, KEYS_VARIABLE: public_key}
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhooks/sendgrid"

    def start(self) -> None:
        self.process = start_digest_server(["serve"], self.port, self.folder, self.env)

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def project(tmp_path):
    write_config(tmp_path)
    config = make_config(tmp_path, transport={"kind": "outbox", "secret_key": "test-secret"})
    db = open_db(config.db_path)
    add_stories(db, story(1, title="Tram runs all night"), story(2))
    for address in READERS:
        add_subscriber(db, address)
    yield config, db
    db.close()


@pytest.fixture
def key_pair():
    return make_webhook_key()


@pytest.fixture
def app(project, key_pair):
    running = App(project[0].db_path.parent, key_pair[1])
    running.start()
    yield running
    running.stop()


@pytest.fixture
def sendgrid(project, app, key_pair):
    config, db = project
    with SendGridTestServer(api_key=API_KEY) as server:
        server.send_events_to(app.url, key_pair[0])
        transport = SendGridTransport(
            config, env={"SENDGRID_API_KEY": API_KEY, "SENDGRID_API_HOST": server.url}
        )
        for address in READERS:
            server.script_events(address, "processed", "delivered", "open")
        send_newsletter(db, config, None, EDITION_TIME + timedelta(minutes=2), transport=transport)
        yield server


def wait_processed(db) -> None:
    deadline = time.monotonic() + 60
    while pending_posts(db) or db.execute("SELECT 1 FROM leases WHERE name = 'events'").fetchone():
        assert time.monotonic() < deadline, "stored posts were never processed"
        time.sleep(0.05)


def many_opens(events: list[dict], count: int) -> list[dict]:
    """`count` more human opens of the mail, each a distinct event, spread over the readers."""
    opens = [e for e in events if e["event"] == "open"]
    return [
        dict(opens[n % len(opens)], timestamp=opens[0]["timestamp"] + 1 + n, sg_event_id=f"o{n}")
        for n in range(count)
    ]


def totals(db) -> tuple[int, int, int]:
    events = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    opens = db.execute("SELECT COALESCE(SUM(human_opens), 0) FROM engagement").fetchone()[0]
    delivered = db.execute(
        "SELECT COUNT(*) FROM delivery_states WHERE state = 'delivered'"
    ).fetchone()[0]
    return events, opens, delivered


def test_posts_stored_when_the_app_is_killed_are_processed_once_after_a_restart(
    project, app, sendgrid
):
    _, db = project
    first = sendgrid.pending_events()
    # Another processor holds the lease: the app stores and answers, and leaves processing.
    holder = Lease(db, "events", 600)
    holder.acquire()
    assert set(sendgrid.post_events(max_bytes=2048)) == {204}
    stored = db.execute("SELECT COUNT(*) FROM webhook_posts WHERE body IS NOT NULL").fetchone()
    assert stored[0] == len(pending_posts(db)) > 1
    app.kill()
    holder.release()
    assert totals(db) == (0, 0, 0)

    app.start()
    late = many_opens(first, 3)
    assert sendgrid.post_events(late) == [204]
    wait_processed(db)
    assert totals(db) == (len(first) + 3, len(READERS) + 3, len(READERS))


def test_killed_mid_stream_then_retried_and_redelivered_counts_every_event_once(
    project, app, sendgrid
):
    _, db = project
    first = sendgrid.pending_events()
    stream = first + many_opens(first, 12_000)
    bodies = event_bodies(stream)
    assert len(bodies) >= 4
    chunks, start = [], 0
    for body in bodies:
        size = body.count(b'"sg_event_id"')
        chunks.append(stream[start : start + size])
        start += size
    assert sendgrid.post_events(chunks[0]) == [204]
    assert sendgrid.post_events(chunks[1]) == [204]
    # Killed at once after the answer: the second post is stored, its processing cut short.
    app.kill()
    # Its body is stored and its events are not: the processing transaction never committed.
    assert len(pending_posts(db)) == 1
    for chunk in chunks[2:]:
        assert sendgrid.post_events(chunk) == [None]  # SendGrid keeps it to retry

    app.start()
    assert set(sendgrid.post_events()) == {204}  # the retries
    assert set(sendgrid.post_events(stream, new_ids=True)) == {204}  # re-delivered, new ids
    wait_processed(db)
    process_pending(db)
    assert totals(db) == (len(stream), len(READERS) + 12_000, len(READERS))


def test_a_signed_poison_post_to_a_real_app_is_given_up_and_the_next_run_is_clean(
    project, app, key_pair, monkeypatch
):
    from click.testing import CliRunner

    from digest.cli import cli

    from sendgrid_server import post_event_body

    config, db = project
    # Validly signed, answered 2xx (SendGrid would retry anything else for a day), but
    # nested too deep for any JSON parser: it must not stay pending for ever.
    assert post_event_body(app.url, key_pair[0], b"[" * 200_000) == 204
    # The same post again (a replay, or SendGrid's retry) is answered and not stored twice.
    assert post_event_body(app.url, key_pair[0], b"[" * 200_000) == 204
    wait_processed(db)
    rows = db.execute("SELECT note, failed_at IS NOT NULL FROM webhook_posts").fetchall()
    assert len(rows) == 1 and rows[0][0].startswith("not JSON (RecursionError") and rows[0][1]
    monkeypatch.chdir(config.db_path.parent)
    run = CliRunner().invoke(cli, ["run", "--now", "2026-11-26T05:00:00Z"])
    assert run.exit_code == 0, run.output
    assert "webhook:" not in CliRunner().invoke(cli, ["status"]).output
