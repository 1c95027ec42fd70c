"""A lease in SQLite with an expiry: one process at a time does a piece of work, and a crashed
holder blocks the next one only until its lease runs out."""

from __future__ import annotations

import os
import socket
import uuid
from datetime import timedelta

from sqlite_utils import Database

from ..clock import to_db, utcnow
from ..errors import LeaseHeldError


def _holder_is_dead(holder: str) -> bool:
    """True when the holder ran on this host and its process no longer exists."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class Lease:
    """Held while sending; `renew()` between batches pushes the expiry forward."""

    def __init__(self, db: Database, name: str, ttl_seconds: float = 300):
        self.db = db
        self.name = name
        self.ttl = timedelta(seconds=ttl_seconds)
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def acquire(self) -> None:
        now = utcnow()
        # One statement, so two processes cannot both see the lease free and both take it.
        self.db.execute(
            """INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?)
               ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
               expires_at = excluded.expires_at
               WHERE leases.expires_at <= ? OR leases.holder = excluded.holder""",
            [self.name, self.holder, to_db(now + self.ttl), to_db(now)],
        )
        row = self.db.execute(
            "SELECT holder, expires_at FROM leases WHERE name = ?", [self.name]
        ).fetchone()
        if row[0] != self.holder and _holder_is_dead(row[0]):
            # A process on this machine that was killed: no need to wait out its lease.
            self.db.execute(
                "UPDATE leases SET holder = ?, expires_at = ? WHERE name = ? AND holder = ?",
                [self.holder, to_db(now + self.ttl), self.name, row[0]],
            )
            row = self.db.execute(
                "SELECT holder, expires_at FROM leases WHERE name = ?", [self.name]
            ).fetchone()
        if row[0] != self.holder:
            raise LeaseHeldError(
                f"Another process ({row[0]}) is already doing {self.name!r} until {row[1]}; "
                "this run stops here. Wait for it, or for the lease to expire if it crashed."
            )

    def renew(self) -> None:
        cursor = self.db.execute(
            "UPDATE leases SET expires_at = ? WHERE name = ? AND holder = ?",
            [to_db(utcnow() + self.ttl), self.name, self.holder],
        )
        if cursor.rowcount != 1:
            raise LeaseHeldError(
                f"Lost the lease on {self.name!r} (it expired and another process took it); "
                "stopping so that no one is sent twice."
            )

    def release(self) -> None:
        self.db.execute(
            "DELETE FROM leases WHERE name = ? AND holder = ?", [self.name, self.holder]
        )

    def __enter__(self) -> Lease:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
