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
