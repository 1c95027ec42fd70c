"""The audit trail: every change to a reader, with its time, source and newsletter."""

from __future__ import annotations

from sqlite_utils import Database

from ..clock import to_db, utcnow


def record(
    db: Database,
    subscriber_id: int | None,
    action: str,
    source: str,
    *,
    newsletter: str | None = None,
    old_status: str | None = None,
    new_status: str | None = None,
    detail: str = "",
) -> None:
    """Append one row; `source` is one of store.AUDIT_SOURCES (the table checks it)."""
    db.execute(
        """INSERT INTO audit
           (at, subscriber_id, newsletter, action, old_status, new_status, source, detail)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
        [
            to_db(utcnow()),
            subscriber_id,
            newsletter,
            action,
            old_status,
            new_status,
            source,
            detail,
        ],
    )
