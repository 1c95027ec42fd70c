"""The delivery ledger: who an edition goes to, and each recipient's state before and after sending.

A delivery moves queued -> sending -> sent | failed, or queued -> skipped when the reader
left before their batch went (or is skipped from the start when their history left them
nothing new). A batch still `sending` when no send is running (its process
died, or the provider never answered) is *unknown*: its mail may or may not have left, so
it is neither re-sent nor dropped without being asked.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal, NamedTuple

from sqlite_utils import Database

from ..addresses import sendable_recipient
from ..clock import to_db, utcnow
from ..errors import SubscriberError
from ..store import write_transaction


class DeliveryStatus(StrEnum):
    """A delivery's state; each value is what `deliveries.status` holds and what is printed."""

    QUEUED = "queued"
    # Handed to the provider with no answer recorded yet: unknown when no send is running.
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"


class Recipient(NamedTuple):
    """One reader in a batch (a tuple: a million of them are made per edition)."""

    delivery_id: int
    subscriber_id: int
    email: str
    name: str
    # The reader's `subscribers.link_nonce`, read with the batch: their links carry it.
    link_nonce: str


@dataclass(frozen=True)
class Batch:
    key: str
    edition_id: int
    recipients: tuple[Recipient, ...]
    first_id: int
    last_id: int


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


def audience_values(
    db: Database,
    newsletter: str,
    column: Literal["topics", "timezone"],
    timezone: str | None = None,
) -> list[str]:
    """The distinct topic sets (or time zones) among the newsletter's readers (in `timezone`).

    The values come from an index, then one reader is looked for with each: a million
    readers are not each checked for a subscription to learn that there are four time zones.
    """
    where, params = audience_filter(newsletter, timezone)
    zone = " AND timezone = :timezone" if timezone else ""
    rows = db.execute(
        f"""SELECT value FROM (SELECT DISTINCT {column} AS value FROM subscribers
                               WHERE status = 'active'{zone})
            WHERE EXISTS (SELECT 1 FROM subscribers WHERE {where} AND subscribers.{column} = value)
            ORDER BY value""",
        params,
    )
    return [value for (value,) in rows]


def audience_variants(
    db: Database, newsletter: str, timezone: str | None = None
) -> list[tuple[str, int]]:
    """Each distinct topic set among the newsletter's readers, with how many have it."""
    where, params = audience_filter(newsletter, timezone)
    rows = db.query(
        f"""SELECT topics, COUNT(*) AS readers FROM subscribers
            WHERE {where} GROUP BY topics ORDER BY topics""",
        params,
    )
    return [(row["topics"], row["readers"]) for row in rows]


def in_audience(db: Database, newsletter: str, subscriber_id: int) -> bool:
    """Whether one reader receives `newsletter` now."""
    where, params = audience_filter(newsletter)
    query = f"SELECT 1 FROM subscribers WHERE {where} AND subscribers.id = :id"
    return db.execute(query, {**params, "id": subscriber_id}).fetchone() is not None


HISTORY_CACHE_KB = 256
# A delivery in one of these states reached its reader, or will: its stories are history.
HISTORY_STATUSES = ("queued", "sending", "sent")
_HISTORY_STATUSES_SQL = ", ".join(f"'{status}'" for status in HISTORY_STATUSES)


def collect_histories(
    db: Database, newsletter: str, timezone: str | None, edition_ids: Sequence[int]
) -> list[tuple[str, str, int]]:
    """Which of `edition_ids` each reader of the audience was sent, in one grouped query.

    Fills the connection's temporary table `reader_history` (one row per reader with any:
    their topics and the edition ids, comma-separated, the history key) that
    `queue_audience` reads; returns each distinct (topics, history key) with its readers.
    Only the given editions' rows are read (those of a slot's window), so neither a long
    ledger nor rows of editions since deleted cost anything.
    """
    db.execute("DROP TABLE IF EXISTS temp.reader_history")
    # Its pages stay on disk rather than in memory: a send's memory stays flat (benchmarks).
    db.execute(f"PRAGMA temp.cache_size = -{HISTORY_CACHE_KB}")
    db.execute(
        """CREATE TEMP TABLE reader_history (
               subscriber_id INTEGER PRIMARY KEY, topics TEXT NOT NULL, editions TEXT NOT NULL)"""
    )
    if edition_ids:
        where, params = audience_filter(newsletter, timezone)
        db.execute(
            f"""INSERT INTO temp.reader_history (subscriber_id, topics, editions)
                SELECT subscribers.id, subscribers.topics, sent.editions
                FROM (SELECT subscriber_id, group_concat(edition_id) AS editions
                      FROM (SELECT subscriber_id, edition_id FROM deliveries
                            WHERE edition_id IN (SELECT value FROM json_each(:editions))
                              AND status IN ({_HISTORY_STATUSES_SQL})
                            ORDER BY subscriber_id, edition_id)
                      GROUP BY subscriber_id) AS sent
                JOIN subscribers ON subscribers.id = sent.subscriber_id
                WHERE {where}""",
            {**params, "editions": json.dumps(sorted(edition_ids))},
        )
    db.execute("CREATE INDEX temp.reader_history_key ON reader_history (topics, editions)")
    rows = db.execute(
        "SELECT topics, editions, COUNT(*) FROM temp.reader_history GROUP BY topics, editions"
    ).fetchall()
    # Give back the pages read: rendering the variants next reuses that memory, rather than
    # adding to it (a send's peak, benchmarks/send.py).
    db.execute("PRAGMA shrink_memory")
    return [(topics, editions, readers) for topics, editions, readers in rows]


def forget_histories(db: Database) -> None:
    """Drop the slot's history table once its audiences are queued: the send needs it no more."""
    db.execute("DROP TABLE IF EXISTS temp.reader_history")


def reader_editions(db: Database, subscriber_id: int, edition_ids: Sequence[int]) -> list[int]:
    """Which of `edition_ids` one reader was sent (or is queued for)."""
    rows = db.execute(
        f"""SELECT edition_id FROM deliveries
            WHERE edition_id IN (SELECT value FROM json_each(?)) AND subscriber_id = ?
              AND status IN ({_HISTORY_STATUSES_SQL}) ORDER BY edition_id""",
        [json.dumps(sorted(edition_ids)), subscriber_id],
    )
    return [edition_id for (edition_id,) in rows]


def audience_editions(db: Database, edition_id: int, edition_ids: Sequence[int]) -> list[int]:
    """Which of `edition_ids` any reader of edition `edition_id` was sent (or is queued for)."""
    rows = db.execute(
        f"""SELECT DISTINCT other.edition_id FROM deliveries AS mine
            JOIN deliveries AS other ON other.subscriber_id = mine.subscriber_id
            WHERE mine.edition_id = ?
              AND other.edition_id IN (SELECT value FROM json_each(?))
              AND other.status IN ({_HISTORY_STATUSES_SQL}) ORDER BY other.edition_id""",
        [edition_id, json.dumps(sorted(edition_ids))],
    )
    return [found for (found,) in rows]


def queue_audience(
    db: Database,
    edition_id: int,
    newsletter: str,
    topics: str,
    timezone: str | None = None,
    histories: Sequence[str] | None = None,
    skip_reason: str = "",
) -> int:
    """Freeze the edition's audience: every active reader of the variant, queued now.

    `histories` are the history keys of `collect_histories` the variant takes ('' for
    readers with none); None takes every reader of the topics whatever they were sent.
    With `skip_reason` the readers are recorded `skipped`, with it as the reason: a history
    variant with nothing new still says, per reader, what became of their slot.
    Who joins later waits for the next edition; who leaves before their batch goes is skipped.
    Address, name and link nonce are copied as they are now, so a batch is read from the
    ledger alone.
    """
    where, params = audience_filter(newsletter, timezone)
    values = {
        **params,
        "edition": edition_id,
        "now": to_db(utcnow()),
        "topics": topics,
        "status": DeliveryStatus.SKIPPED if skip_reason else DeliveryStatus.QUEUED,
        "error": skip_reason or None,
        "keys": json.dumps(list(histories or ())),
    }
    insert = """INSERT OR IGNORE INTO deliveries (edition_id, subscriber_id, email, name,
                    link_nonce, status, error, created_at, updated_at)
                SELECT :edition, subscribers.id, email, name, link_nonce, :status, :error,
                    :now, :now"""
    if histories is not None and "" not in histories:
        # Only readers with a history: found from the history table, not among all readers
        # (CROSS JOIN keeps that order: SQLite would rather walk every reader of the topics).
        query = f"""{insert} FROM temp.reader_history AS history
                    CROSS JOIN subscribers ON subscribers.id = history.subscriber_id
                    WHERE history.topics = :topics
                      AND history.editions IN (SELECT value FROM json_each(:keys))
                      AND {where} AND subscribers.topics = :topics"""
    else:
        query = f"{insert} FROM subscribers WHERE {where} AND topics = :topics"
        if histories is not None:
            query += """ AND COALESCE((SELECT editions FROM temp.reader_history AS history
                                       WHERE history.subscriber_id = subscribers.id), '')
                         IN (SELECT value FROM json_each(:keys))"""
    return db.execute(query, values).rowcount


def claim_batch(db: Database, edition_id: int, newsletter: str, size: int) -> Batch | None:
    """Mark the next queued recipients `sending` under one batch key, in one transaction.

    Readers of the batch who are no longer in the newsletter's audience are marked `skipped`
    first, and readers no message can be made for are `failed` alone, with the reason
    (`fail_unsendable`). None when nothing is queued.
    """
    now = to_db(utcnow())
    where, params = audience_filter(newsletter)
    with write_transaction(db):
        recipients: list[Recipient] = []
        while not recipients:
            # Each row's reader is checked against their status now, inside the transaction
            # that claims them: whoever left in a commit before this one is skipped, however
            # many readers changed, at the cost of the batch alone. A name or nonce missing
            # (NULL) was queued before the ledger kept them.
            rows = db.execute(
                f"""SELECT deliveries.id, subscriber_id, deliveries.email,
                       COALESCE(deliveries.name, subscribers.name, ''),
                       COALESCE(deliveries.link_nonce, subscribers.link_nonce, ''),
                       subscribers.id IS NOT NULL AND {where}
                   FROM deliveries LEFT JOIN subscribers ON subscribers.id = subscriber_id
                   WHERE edition_id = :edition AND deliveries.status = 'queued'
                   ORDER BY deliveries.id LIMIT :size""",
                {**params, "edition": edition_id, "size": size},
            ).fetchall()
            if not rows:
                return None
            skip_leavers(db, [row[0] for row in rows if not row[5]], now)
            recipients = fail_unsendable(db, [row[:5] for row in rows if row[5]], now)
        key = f"{edition_id}-{uuid.uuid4().hex[:12]}"
        first, last = recipients[0].delivery_id, recipients[-1].delivery_id
        # Every queued row of the edition in [first, last] is one of `rows`: they are the
        # first `size` queued ids in order.
        db.execute(
            """UPDATE deliveries SET status = 'sending', batch_key = ?, attempts = attempts + 1,
               error = NULL, updated_at = ?
               WHERE edition_id = ? AND status = 'queued' AND id BETWEEN ? AND ?""",
            [key, now, edition_id, first, last],
        )
    return Batch(key, edition_id, tuple(recipients), first, last)


def fail_unsendable(db: Database, rows: list[tuple], now: str) -> list[Recipient]:
    """The queued rows as recipients, each address and name as the transports send them.

    A reader no transport can deliver to (a row stored before the entry checks, such as an
    address with a non-ASCII local part) is marked `failed` with the reason, before their
    batch is claimed: their bad data never leaves a whole batch unknown.
    """
    recipients, failed = [], []
    for delivery_id, subscriber_id, email, name, link_nonce in rows:
        try:
            email, name = sendable_recipient(email, name)
        except SubscriberError as exc:
            failed.append((str(exc), now, delivery_id))
            continue
        recipients.append(Recipient(delivery_id, subscriber_id, email, name, link_nonce))
    if failed:
        db.conn.executemany(
            """UPDATE deliveries SET status = 'failed', error = ?, attempts = attempts + 1,
               updated_at = ? WHERE id = ?""",
            failed,
        )
    return recipients


def skip_leavers(db: Database, delivery_ids: list[int], now: str) -> None:
    """Mark `skipped` the queued deliveries of readers who left before their batch went."""
    if delivery_ids:
        db.conn.executemany(
            """UPDATE deliveries SET status = 'skipped', error = 'left before their batch was sent',
                   updated_at = ? WHERE id = ?""",
            [(now, delivery_id) for delivery_id in delivery_ids],
        )


NOT_SENT_IN_GRACE = "not sent within grace: the slot was missed"


def skip_queued(db: Database, edition_ids: Sequence[int]) -> int:
    """Mark `skipped` the readers still queued in editions whose slot's grace is over.

    A held variant's readers are queued when it is held; once its grace is over it is never
    sent, and a queued row would count as their history (its stories kept out of their next
    editions) and wait for a late send. Returns how many were skipped.
    """
    cursor = db.execute(
        """UPDATE deliveries SET status = 'skipped', error = ?, updated_at = ?
           WHERE edition_id IN (SELECT value FROM json_each(?)) AND status = 'queued'""",
        [NOT_SENT_IN_GRACE, to_db(utcnow()), json.dumps(list(edition_ids))],
    )
    return cursor.rowcount


def _update_batch(db: Database, batch: Batch, assignments: str, values: dict) -> int:
    """Change the rows of one batch that are still `sending` (found by id range, then key)."""
    cursor = db.execute(
        f"""UPDATE deliveries SET {assignments}, updated_at = :now
            WHERE id BETWEEN :first AND :last AND batch_key = :key AND status = 'sending'""",
        {
            **values,
            "now": to_db(utcnow()),
            "first": batch.first_id,
            "last": batch.last_id,
            "key": batch.key,
        },
    )
    return cursor.rowcount


def _count_sends(db: Database, edition_id: int, readers: int) -> None:
    """Add readers to the edition's send tally (what a slot's lift counts impressions from)."""
    if readers:
        db.execute(
            """INSERT INTO edition_sends (edition_id, readers) VALUES (?, ?)
               ON CONFLICT (edition_id) DO UPDATE SET readers = readers + excluded.readers""",
            [edition_id, readers],
        )


def mark_batch_sent(db: Database, batch: Batch, provider_id: str | None) -> None:
    readers = _update_batch(
        db,
        batch,
        "status = 'sent', provider_id = :provider, error = NULL, sent_at = :sent",
        {"provider": provider_id, "sent": to_db(utcnow())},
    )
    _count_sends(db, batch.edition_id, readers)


def mark_batch_failed(db: Database, batch: Batch, error: str) -> None:
    _update_batch(db, batch, "status = 'failed', error = :error", {"error": error})


def mark_recipients_failed(db: Database, batch: Batch, delivery_ids: list[int], error: str) -> None:
    """Fail some readers of a batch (those the provider named), leaving the rest as they are."""
    db.execute(
        """UPDATE deliveries SET status = 'failed', error = ?, updated_at = ?
           WHERE batch_key = ? AND status = 'sending' AND id IN (SELECT value FROM json_each(?))""",
        [error, to_db(utcnow()), batch.key, json.dumps(delivery_ids)],
    )


def note_batch_unknown(db: Database, batch: Batch, error: str) -> None:
    """Keep the batch `sending` (unknown) but say why, for `digest status` and the operator."""
    _update_batch(db, batch, "error = :error", {"error": error})


def requeue_batch(db: Database, batch: Batch) -> None:
    """Put a batch that certainly did not leave back in the queue."""
    _update_batch(db, batch, "status = 'queued'", {})


SENT_SINCE = "got its stories from a later edition since it failed"


def skip_failed_sent_since(db: Database, edition_id: int) -> int:
    """Mark `skipped` the failed readers of an edition a later edition has sent one of its stories.

    A failed delivery is no history: a later slot (they moved zone, another newsletter) may
    have sent them its stories. Retrying it would repeat them. Returns how many were skipped.
    """
    cursor = db.execute(
        f"""UPDATE deliveries SET status = 'skipped', error = :reason, updated_at = :now
            WHERE edition_id = :edition AND status = 'failed' AND EXISTS (
                SELECT 1 FROM deliveries AS later
                JOIN editions ON editions.id = later.edition_id
                WHERE later.subscriber_id = deliveries.subscriber_id
                  AND later.edition_id > :edition AND later.status IN ({_HISTORY_STATUSES_SQL})
                  AND EXISTS (SELECT 1 FROM json_each(editions.story_ids) AS theirs
                              WHERE theirs.value IN (SELECT value FROM json_each(
                                  (SELECT story_ids FROM editions WHERE id = :edition)))))""",
        {"reason": SENT_SINCE, "now": to_db(utcnow()), "edition": edition_id},
    )
    return cursor.rowcount


def requeue(db: Database, edition_id: int, status: DeliveryStatus) -> int:
    """Put failed (or unknown = still `sending`) deliveries of an edition back in the queue."""
    cursor = db.execute(
        """UPDATE deliveries SET status = 'queued', updated_at = ?
           WHERE edition_id = ? AND status = ?""",
        [to_db(utcnow()), edition_id, status],
    )
    return cursor.rowcount


def edition_counts(db: Database, edition_id: int) -> dict[str, int]:
    """Deliveries of an edition by status; a `sending` batch found here is reported as unknown."""
    counts: dict[str, int] = {status: 0 for status in DeliveryStatus}
    for row in db.query(
        "SELECT status, COUNT(*) AS n FROM deliveries WHERE edition_id = ? GROUP BY status",
        [edition_id],
    ):
        counts[row["status"]] = row["n"]
    return counts


def failed_by_edition(db: Database, newsletter: str, since: datetime) -> Iterator[dict]:
    """Editions of a newsletter since a moment with failed readers: each edition's slot and
    zone, how many failed and one of their errors."""
    return db.query(
        """SELECT e.slot_at, e.timezone, COUNT(*) AS recipients, MAX(d.error) AS error
           FROM deliveries d JOIN editions e ON e.id = d.edition_id
           WHERE e.newsletter = ? AND e.slot_at >= ? AND d.status = 'failed'
           GROUP BY e.id ORDER BY e.slot_at""",
        [newsletter, to_db(since)],
    )


def unknown_batches(db: Database, edition_id: int | None = None) -> Iterator[dict]:
    """Batches left `sending`, with their size: unknown when no send is running (their
    process died, or no answer came), in flight while one is."""
    where = "AND edition_id = ?" if edition_id is not None else ""
    return db.query(
        f"""SELECT edition_id, batch_key, COUNT(*) AS recipients, MAX(updated_at) AS since
            FROM deliveries WHERE status = 'sending' {where}
            GROUP BY edition_id, batch_key ORDER BY since""",
        [edition_id] if edition_id is not None else [],
    )


def describe_unknown_batch(batch: Mapping) -> str:
    """One unknown batch (a row of `unknown_batches`), as operators are told of it."""
    return (
        f"batch {batch['batch_key']} ({batch['recipients']} readers, unknown since "
        f"{batch['since']}) may or may not have left; check the provider's activity log, "
        "and only if it did not"
    )


def tally(counts: Mapping[str, int]) -> str:
    """How counts are always shown: sent, failed, skipped, unknown (`sending`), and queued if any.

    Queued readers left over (a run that stopped) must never be hidden by a tidy summary.
    """
    sent, failed, skipped, unknown = (
        counts.get(status, 0)
        for status in (
            DeliveryStatus.SENT,
            DeliveryStatus.FAILED,
            DeliveryStatus.SKIPPED,
            DeliveryStatus.SENDING,
        )
    )
    text = f"sent {sent}, failed {failed}, skipped {skipped}, unknown {unknown}"
    if counts.get(DeliveryStatus.QUEUED):
        text += f", still queued {counts[DeliveryStatus.QUEUED]}"
    return text


def settle_batch(
    db: Database, edition_id: int, batch_key: str, provider_id: str | None, event: str
) -> int:
    """Mark `sent` ("settled by event") the readers of a batch SendGrid is known to have accepted.

    A webhook event carrying the batch's id proves it: a 202 covers the whole request. Its
    readers may be unknown (`sending`), put back in the queue by `--resend-unknown` and not
    yet claimed, or failed after a retried timeout whose first attempt was in fact accepted;
    settling them keeps all three from being mailed twice. `sent_at` is when the batch was
    claimed. Returns how many readers changed.
    """
    settling = """FROM deliveries WHERE edition_id = :edition AND batch_key = :key
                  AND status IN ('sending', 'queued', 'failed')"""
    cursor = db.execute(
        f"""UPDATE deliveries SET status = 'sent', sent_at = COALESCE(sent_at, updated_at),
               provider_id = COALESCE(provider_id, :provider), updated_at = :now,
               error = 'settled by event (' || :event || ')'
           WHERE rowid IN (SELECT rowid {settling})""",
        {
            "provider": provider_id,
            "now": to_db(utcnow()),
            "event": event,
            "edition": edition_id,
            "key": batch_key,
        },
    )
    _count_sends(db, edition_id, cursor.rowcount)
    return cursor.rowcount
