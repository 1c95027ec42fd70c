"""The SQLite lease: one holder at a time, expiry, and a killed holder on this host."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from digest.delivery.lease import Lease
from digest.errors import LeaseHeldError
from digest.store import open_db


def test_a_second_holder_is_refused_while_the_first_holds(config):
    first, second = open_db(config.db_path), open_db(config.db_path)
    with Lease(first, "send:daily"), pytest.raises(LeaseHeldError, match="Another process"):
        Lease(second, "send:daily").acquire()


def test_a_released_lease_can_be_taken_again(db):
    with Lease(db, "send:daily"):
        pass
    with Lease(db, "send:daily"):
        pass


def test_an_expired_lease_can_be_taken_over(db):
    stale = Lease(db, "send:daily", ttl_seconds=-1)
    stale.acquire()
    with Lease(db, "send:daily") as taker:
        holder = db.execute("SELECT holder FROM leases").fetchone()[0]
        assert holder == taker.holder


def test_a_killed_holder_on_this_host_does_not_block_until_expiry(db):
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = finished.stdout.strip()
    db.execute(
        "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, '2999-01-01T00:00:00Z')",
        ["send:daily", f"{socket.gethostname()}:{dead_pid}:abcd"],
    )
    with Lease(db, "send:daily") as taker:
        assert db.execute("SELECT holder FROM leases").fetchone()[0] == taker.holder


def test_renewing_a_lease_that_was_taken_over_stops_the_holder(db):
    lease = Lease(db, "send:daily", ttl_seconds=-1)
    lease.acquire()
    Lease(db, "send:daily").acquire()
    with pytest.raises(LeaseHeldError, match="Lost the lease"):
        lease.renew()


def test_a_send_whose_lease_is_taken_mid_send_records_every_batch_already_under_way(
    config, monkeypatch
):
    """`digest run` renews its lease after each batch: losing it stops the send, but the
    batches SendGrid already has are recorded sent, none left unknown."""
    from dataclasses import replace

    from digest.delivery.ledger import edition_counts
    from digest.delivery.send import send_newsletter
    from digest.delivery.transports.sendgrid import SendGridTransport
    from digest.readers.subscribers import add_subscriber

    from helpers import EDITION_TIME, add_stories, story
    from sendgrid_server import Fault, SendGridTestServer

    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    config = replace(config, sendgrid=replace(config.sendgrid, batch_size=10, concurrency=4))
    db = open_db(config.db_path)
    add_stories(db, story(1))
    for n in range(100):
        add_subscriber(db, f"r{n}@example.com")
    lost = []

    def renew(_result, _recipients):
        if not lost:
            lost.append(True)
            raise LeaseHeldError("Lost the lease on 'run'")

    with SendGridTestServer(api_key="SG.lease") as server:
        # Every batch takes a while: more than one is under way when the first answer comes.
        server.script(*[Fault("slow", delay=0.2)] * 10)
        env = {"SENDGRID_API_KEY": "SG.lease", "SENDGRID_API_HOST": server.url}
        transport = SendGridTransport(config, env=env, sleep=lambda _: None)
        with pytest.raises(LeaseHeldError):
            send_newsletter(db, config, None, EDITION_TIME, transport=transport, progress=renew)
        accepted = len(server.recipients())

    [(edition_id,)] = db.execute("SELECT id FROM editions").fetchall()
    counts = edition_counts(db, edition_id)
    assert accepted > 10
    assert counts["sending"] == 0
    assert counts["sent"] == accepted
    assert counts["queued"] == 100 - accepted
