"""Editors' holds: `digest hold` keeps a newsletter (or one time zone of it) from going out.

A hold lasts until it is released or, when given, until its `until` time; while it lasts,
`digest run` and `digest send` record the slot `held` and send nothing to its readers. Every
hold and release keeps who did it and when.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlite_utils import Database

from ..clock import from_db, to_db, utcnow
from ..errors import DigestError, SlotHeldError
from ..invocation import digest_command


@dataclass(frozen=True)
class Hold:
    id: int
    newsletter: str
    # "" holds every time zone of the newsletter.
    timezone: str
    until: datetime | None
    held_by: str
    held_at: datetime

    def covers(self, timezone: str | None) -> bool:
        return not self.timezone or self.timezone == timezone

    def describe(self) -> str:
        zone = f" in {self.timezone}" if self.timezone else ""
        until = f" until {self.until:%Y-%m-%d %H:%M} UTC" if self.until else " until released"
        return (
            f"{self.newsletter}{zone} held by {self.held_by} "
            f"at {self.held_at:%Y-%m-%d %H:%M} UTC{until}"
        )

    def release_command(self) -> str:
        zone = f" --zone {self.timezone}" if self.timezone else ""
        return f"{digest_command()} release {self.newsletter}{zone}"


def _hold(row: dict) -> Hold:
    return Hold(
        id=row["id"],
        newsletter=row["newsletter"],
        timezone=row["timezone"],
        until=from_db(row["until"]) if row["until"] else None,
        held_by=row["held_by"],
        held_at=from_db(row["held_at"]),
    )


def active_holds(db: Database, newsletter: str, now: datetime) -> list[Hold]:
    """The newsletter's holds in force at `now`, oldest first."""
    rows = db.query(
        """SELECT * FROM holds WHERE newsletter = ? AND released_at IS NULL
           AND (until IS NULL OR until > ?) ORDER BY id""",
        [newsletter, to_db(now)],
    )
    return [_hold(row) for row in rows]


def hold_on(db: Database, newsletter: str, timezone: str | None, now: datetime) -> Hold | None:
    """The hold that keeps this newsletter's slot in `timezone` (None: every zone) at `now`."""
    for hold in active_holds(db, newsletter, now):
        if hold.covers(timezone) or timezone is None:
            return hold
    return None


def check_not_held(db: Database, newsletter: str, timezone: str | None, now: datetime) -> None:
    """Raise SlotHeldError, naming who held it and how to release it, when a hold applies."""
    hold = hold_on(db, newsletter, timezone, now)
    if hold is not None:
        raise SlotHeldError(f"{hold.describe()}; `{hold.release_command()}` lets it go.")


def hold(
    db: Database,
    newsletter: str,
    timezone: str | None,
    until: datetime | None,
    who: str,
    now: datetime | None = None,
) -> Hold:
    """Hold the newsletter (or one zone of it) from now until released or `until`."""
    held_at = now or utcnow()
    if until is not None and until <= held_at:
        raise DigestError(
            f"--until {to_db(until)} is already past; give a later time, or none to hold "
            "until released."
        )
    cursor = db.execute(
        """INSERT INTO holds (newsletter, timezone, until, held_by, held_at)
           VALUES (?, ?, ?, ?, ?)""",
        [newsletter, timezone or "", to_db(until) if until else None, who, to_db(held_at)],
    )
    row = next(db.query("SELECT * FROM holds WHERE id = ?", [cursor.lastrowid]))
    return _hold(row)


def release(db: Database, newsletter: str, timezone: str | None, who: str) -> list[Hold]:
    """Release the newsletter's holds on `timezone` (None: every hold); returns those released.

    Releasing one zone of a newsletter held whole is refused: the whole hold names no zone.
    """
    now = utcnow()
    held = [
        h for h in active_holds(db, newsletter, now) if timezone is None or h.timezone == timezone
    ]
    if not held:
        whole = [h for h in active_holds(db, newsletter, now) if not h.timezone]
        if timezone and whole:
            raise DigestError(
                f"{newsletter} is held in every time zone ({whole[0].describe()}); "
                f"`{whole[0].release_command()}` releases it."
            )
        zone = f" in {timezone}" if timezone else ""
        raise DigestError(f"{newsletter}{zone} is not held; nothing to release.")
    db.execute(
        f"""UPDATE holds SET released_by = ?, released_at = ?
            WHERE id IN ({", ".join("?" * len(held))})""",
        [who, to_db(now), *(h.id for h in held)],
    )
    return held
