"""The run record: how each newsletter time-zone slot ended (sent, missed, skipped, failed, held).

A slot is recorded once it is acted on, so a repeated run finds it done and does nothing;
a `failed` slot is updated in place when a later run tries it again. Each run is recorded
too, so `digest status` can say when cron last ran.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlite_utils import Database

from ..clock import from_db, to_db, utcnow
from ..schedule import LastRecord, Slot, SlotStatus
from .ledger import DeliveryStatus


@dataclass(frozen=True)
class SlotRecord:
    """One slot's outcome; the counts are the ledger's as the run left them."""

    slot: Slot
    status: SlotStatus
    note: str
    editions: int
    sent: int
    failed: int
    skipped: int
    unknown: int
    attempts: int
    run_at: datetime


@dataclass(frozen=True)
class RunRecord:
    run_at: datetime
    started_at: datetime
    finished_at: datetime
    actions: int
    failed: bool
    summary: str
    command: str = "run"


def last_records(db: Database) -> dict[tuple[str, str], LastRecord]:
    """The newest recorded slot of each newsletter and time zone."""
    # SQLite takes `status` from the row that holds the MAX.
    rows = db.query(
        """SELECT newsletter, timezone, MAX(slot_at) AS slot_at, status
           FROM slots GROUP BY newsletter, timezone"""
    )
    return {
        (row["newsletter"], row["timezone"]): LastRecord(
            from_db(row["slot_at"]), SlotStatus(row["status"])
        )
        for row in rows
    }


def record_slot(
    db: Database,
    slot: Slot,
    status: SlotStatus,
    run_at: datetime,
    *,
    note: str = "",
    editions: int = 0,
    counts: Mapping[str, int] | None = None,
) -> None:
    """Record (or, after a retry, update) how a slot ended; `counts` are ledger statuses."""
    counts = counts or {}
    now = to_db(utcnow())
    db.execute(
        """INSERT INTO slots (newsletter, timezone, slot_at, status, note, editions, sent, failed,
               skipped, unknown, run_at, created_at, updated_at)
           VALUES (:newsletter, :timezone, :slot_at, :status, :note, :editions, :sent, :failed,
               :skipped, :unknown, :run_at, :now, :now)
           ON CONFLICT (newsletter, timezone, slot_at) DO UPDATE SET
               status = excluded.status, note = excluded.note, editions = excluded.editions,
               sent = excluded.sent, failed = excluded.failed, skipped = excluded.skipped,
               unknown = excluded.unknown, run_at = excluded.run_at,
               attempts = slots.attempts + 1, updated_at = excluded.updated_at""",
        {
            "newsletter": slot.newsletter,
            "timezone": slot.timezone,
            "slot_at": to_db(slot.at),
            "status": status,
            "note": note,
            "editions": editions,
            "sent": counts.get(DeliveryStatus.SENT, 0),
            "failed": counts.get(DeliveryStatus.FAILED, 0),
            "skipped": counts.get(DeliveryStatus.SKIPPED, 0),
            "unknown": counts.get(DeliveryStatus.SENDING, 0),
            "run_at": to_db(run_at),
            "now": now,
        },
    )


def find_slot_record(db: Database, slot: Slot) -> SlotRecord | None:
    """The record of one slot, or None when no run acted on it yet."""
    rows = db.query(
        "SELECT * FROM slots WHERE newsletter = ? AND timezone = ? AND slot_at = ?",
        [slot.newsletter, slot.timezone, to_db(slot.at)],
    )
    records = _slot_records(rows)
    return records[0] if records else None


def slot_record(db: Database, slot: Slot) -> SlotRecord:
    """The record of one slot (which must be recorded)."""
    record = find_slot_record(db, slot)
    if record is None:
        raise ValueError(f"slot {slot} is not recorded")
    return record


def recent_slots(db: Database, newsletter: str, limit: int = 10) -> list[SlotRecord]:
    """The newsletter's latest recorded slots, newest first."""
    rows = db.query(
        """SELECT * FROM slots WHERE newsletter = ?
           ORDER BY slot_at DESC, timezone LIMIT ?""",
        [newsletter, limit],
    )
    return _slot_records(rows)


def slots_between(
    db: Database, newsletter: str, start: datetime, end: datetime
) -> list[SlotRecord]:
    """The newsletter's recorded slots with start <= slot time <= end, oldest first."""
    rows = db.query(
        """SELECT * FROM slots WHERE newsletter = ? AND slot_at >= ? AND slot_at <= ?
           ORDER BY slot_at, timezone""",
        [newsletter, to_db(start), to_db(end)],
    )
    return _slot_records(rows)


def _slot_records(rows: Iterable[dict]) -> list[SlotRecord]:
    return [
        SlotRecord(
            slot=Slot(from_db(row["slot_at"]), row["newsletter"], row["timezone"]),
            status=SlotStatus(row["status"]),
            note=row["note"],
            editions=row["editions"],
            sent=row["sent"],
            failed=row["failed"],
            skipped=row["skipped"],
            unknown=row["unknown"],
            attempts=row["attempts"],
            run_at=from_db(row["run_at"]),
        )
        for row in rows
    ]


def record_run(
    db: Database,
    run_at: datetime,
    started_at: datetime,
    actions: int,
    failed: bool,
    summary: str,
    command: str = "run",
) -> None:
    """Record one `digest run`, or a send by `digest send` or `digest demo` (`command`)."""
    db.execute(
        """INSERT INTO runs (run_at, started_at, finished_at, actions, failed, summary, command)
           VALUES (?, ?, ?, ?, ?, ?, ?)""",
        [to_db(run_at), to_db(started_at), to_db(utcnow()), actions, int(failed), summary, command],
    )


def recent_runs(db: Database, limit: int = 3) -> list[RunRecord]:
    """The latest runs, newest first."""
    rows = db.query("SELECT * FROM runs ORDER BY id DESC LIMIT ?", [limit])
    return [
        RunRecord(
            run_at=from_db(row["run_at"]),
            started_at=from_db(row["started_at"]),
            finished_at=from_db(row["finished_at"]),
            actions=row["actions"],
            failed=bool(row["failed"]),
            summary=row["summary"],
            command=row["command"],
        )
        for row in rows
    ]
