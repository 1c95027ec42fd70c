"""Time handling: one UTC text format in the database and strict parsing of `--now`."""

from __future__ import annotations

from datetime import UTC, datetime

from .errors import DigestError

DB_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def to_db(moment: datetime) -> str:
    """The sortable UTC text stored in every *_at column."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime given to to_db; attach a time zone first")
    return moment.astimezone(UTC).strftime(DB_FORMAT)


def from_db(text: str) -> datetime:
    return datetime.strptime(text, DB_FORMAT).replace(tzinfo=UTC)


def parse_moment(text: str, what: str = "--now") -> datetime:
    """Parse an ISO 8601 time given by a user; a time without offset is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise DigestError(
            f"{what} {text!r} is not an ISO 8601 time; write it like 2026-11-26T07:00:00Z."
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        # 9999-12-31T23:59:59-14:00 is a valid text but past the last moment Python knows.
        raise DigestError(
            f"{what} {text!r} is out of range; give a time between 1970 and 9999."
        ) from None
