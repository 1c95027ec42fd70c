"""The delivery ledger: who an edition goes to, and each recipient's state before and after sending.

A delivery moves queued -> sending -> sent | failed, or queued -> skipped when the reader
left before their batch went. A batch still `sending` after its process died is *unknown*:
its mail may or may not have left, so it is neither re-sent nor dropped without being asked.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from sqlite_utils import Database

from .clock import to_db, utcnow
from .store import write_transaction


@dataclass(frozen=True)
class Recipient:
    delivery_id: int
    subscriber_id: int
    email: str
    name: str


@dataclass(frozen=True)
class Batch:
    key: str
    edition_id: int
    recipients: tuple[Recipient, ...]


def audience_filter(newsletter: str, timezone: str | None = None) -> tuple[str, dict]:
    """The WHERE clause (over `subscribers`) of who receives `newsletter` now, and its params.

    The one place that says who is mailed: sending, dry runs and reports all use it. A reader
    is mailed when their address is active (not pending, unsubscribed from everything,
    bounced or complained) and their subscription to this newsletter is active.
    """
    clause = (
        "subscribers.status = 'active' AND EXISTS (SELECT 1 FROM subscriptions"
        " WHERE subscriptions.subscriber_id = subscribers.id"
        " AND subscriptions.newsletter = :newsletter AND subscriptions.status = 'active')"
    )
    if timezone:
        clause += " AND subscribers.timezone = :timezone"
    return clause, {"newsletter": newsletter, "timezone": timezone}


def queue_audience(
    db: Database, edition_id: int, newsletter: str, topics: str, timezone: str | None = None
) -> int:
    """Freeze the edition's audience: every active reader of the variant, queued now.

    Who joins later waits for the next edition; who leaves before their batch goes is skipped.
    """
    where, params = audience_filter(newsletter, timezone)
    cursor = db.execute(
        f"""INSERT OR IGNORE INTO deliveries
               (edition_id, subscriber_id, email, status, created_at, updated_at)
           SELECT :edition, id, email, 'queued', :now, :now FROM subscribers
           WHERE {where} AND topics = :topics ORDER BY id""",
        {**params, "edition": edition_id, "now": to_db(utcnow()), "topics": topics},
    )
    return cursor.rowcount


def claim_batch(db: Database, edition_id: int, newsletter: str, size: int) -> Batch | None:
    """Mark the next queued recipients `sending` under one batch key, in one transaction.

    Readers who left the newsletter since the audience was frozen are marked `skipped`
    instead. None when nothing is queued.
    """
    now = to_db(utcnow())
    where, params = audience_filter(newsletter)
    with write_transaction(db):
        while True:
            rows = db.execute(
                f"""SELECT d.id, d.subscriber_id, d.email, COALESCE(s.name, ''),
                       EXISTS (SELECT 1 FROM subscribers
                               WHERE subscribers.id = d.subscriber_id AND {where})
                   FROM deliveries d LEFT JOIN subscribers s ON s.id = d.subscriber_id
                   WHERE d.edition_id = :edition AND d.status = 'queued'
                   ORDER BY d.id LIMIT :size""",
                {**params, "edition": edition_id, "size": size},
            ).fetchall()
            if not rows:
                return None
            gone = [row[0] for row in rows if not row[4]]
            if gone:
                _set_status(db, gone, "skipped", now, error="left before their batch was sent")
            recipients = tuple(Recipient(*row[:4]) for row in rows if row[4])
            if recipients:
                break
        key = f"{edition_id}-{uuid.uuid4().hex[:12]}"
        db.execute(
            """UPDATE deliveries SET status = 'sending', batch_key = ?, attempts = attempts + 1,
               error = NULL, updated_at = ? WHERE id IN (SELECT value FROM json_each(?))""",
            [key, now, json.dumps([r.delivery_id for r in recipients])],
        )
    return Batch(key=key, edition_id=edition_id, recipients=recipients)


def _set_status(db: Database, ids: list[int], status: str, now: str, error: str | None = None):
    db.execute(
        """UPDATE deliveries SET status = ?, error = ?, updated_at = ?
           WHERE id IN (SELECT value FROM json_each(?))""",
        [status, error, now, json.dumps(ids)],
    )


def mark_batch_sent(db: Database, batch_key: str, provider_id: str | None) -> None:
    now = to_db(utcnow())
    db.execute(
        """UPDATE deliveries SET status = 'sent', provider_id = ?, error = NULL,
           sent_at = ?, updated_at = ? WHERE batch_key = ? AND status = 'sending'""",
        [provider_id, now, now, batch_key],
    )


def mark_batch_failed(db: Database, batch_key: str, error: str) -> None:
    db.execute(
        """UPDATE deliveries SET status = 'failed', error = ?, updated_at = ?
           WHERE batch_key = ? AND status = 'sending'""",
        [error, to_db(utcnow()), batch_key],
    )


def note_batch_unknown(db: Database, batch_key: str, error: str) -> None:
    """Keep the batch `sending` (unknown) but say why, for `digest status` and the operator."""
    db.execute(
        """UPDATE deliveries SET error = ?, updated_at = ?
           WHERE batch_key = ? AND status = 'sending'""",
        [error, to_db(utcnow()), batch_key],
    )


def requeue(db: Database, edition_id: int, status: str) -> int:
    """Put failed (or unknown = still `sending`) deliveries of an edition back in the queue."""
    cursor = db.execute(
        """UPDATE deliveries SET status = 'queued', updated_at = ?
           WHERE edition_id = ? AND status = ?""",
        [to_db(utcnow()), edition_id, status],
    )
    return cursor.rowcount


def edition_counts(db: Database, edition_id: int) -> dict[str, int]:
    """Deliveries of an edition by status; a `sending` batch found here is reported as unknown."""
    counts = dict.fromkeys(("queued", "sending", "sent", "failed", "skipped"), 0)
    for row in db.query(
        "SELECT status, COUNT(*) AS n FROM deliveries WHERE edition_id = ? GROUP BY status",
        [edition_id],
    ):
        counts[row["status"]] = row["n"]
    return counts


def unknown_batches(db: Database, edition_id: int | None = None) -> Iterator[dict]:
    """Batches left `sending` (their process died mid-request), with their size."""
    where = "AND edition_id = ?" if edition_id is not None else ""
    return db.query(
        f"""SELECT edition_id, batch_key, COUNT(*) AS recipients, MAX(updated_at) AS since
            FROM deliveries WHERE status = 'sending' {where}
            GROUP BY edition_id, batch_key ORDER BY since""",
        [edition_id] if edition_id is not None else [],
    )
