"""Per-newsletter subscriptions: a reader's status for each newsletter, rolled up to the address.

`subscribers.status` says whether the address may be mailed at all. Bounced and complained
are set on the address and stay, whatever its subscriptions say. Otherwise the address
status follows the subscriptions: active if any is active, else pending if any is pending,
else lapsed if any lapsed (the sunset policy rested them: never an unsubscribe), else
unsubscribed (the reader left everything). A reader gets newsletter N only when the
address is active and the subscription to N is active (`ledger.audience_filter`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from sqlite_utils import Database

from ..clock import to_db, utcnow
from ..store import write_transaction
from .audit import record


class SubscriberStatus(StrEnum):
    """An address's status (`subscribers.status`): whether it may be mailed at all."""

    ACTIVE = "active"
    PENDING = "pending"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    LAPSED = "lapsed"


class SubscriptionStatus(StrEnum):
    """A reader's status for one newsletter (`subscriptions.status`)."""

    ACTIVE = "active"
    PENDING = "pending"
    UNSUBSCRIBED = "unsubscribed"
    # Stopped reading, was asked once and did not answer (`feedback.sunset`): not mailed,
    # never counted as an unsubscribe, back in one step.
    LAPSED = "lapsed"


# Set on the address, whatever its subscriptions say.
ADDRESS_WIDE = (SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED)


def is_status(status: str, statuses: type[StrEnum]) -> bool:
    """Whether `status` (any text, from a file or a form) is a value of `statuses`."""
    # Not `status in statuses`: Python 3.11 raises TypeError for a text that is no member.
    return status in {member.value for member in statuses}


def subscriptions_of(db: Database, subscriber_id: int) -> dict[str, str]:
    """Newsletter name -> status for one reader, in name order."""
    rows = db.execute(
        "SELECT newsletter, status FROM subscriptions WHERE subscriber_id = ? ORDER BY newsletter",
        [subscriber_id],
    )
    return dict(rows.fetchall())


def set_subscription(
    db: Database, subscriber_id: int, newsletter: str, status: str, source: str
) -> bool:
    """Set one subscription (made if missing), roll it up to the address and audit both.

    A reconfirm email's ask ends with any change but lapsing (which keeps when it was asked).

    False when the subscription already had that status (nothing is recorded then).
    """
    if not is_status(status, SubscriptionStatus):
        raise ValueError(
            f"subscription status {status!r} is not one of {', '.join(SubscriptionStatus)}"
        )
    now = to_db(utcnow())
    with write_transaction(db):
        row = db.execute(
            "SELECT status FROM subscriptions WHERE subscriber_id = ? AND newsletter = ?",
            [subscriber_id, newsletter],
        ).fetchone()
        old = row[0] if row else None
        if old == status:
            return False
        db.execute(
            """INSERT INTO subscriptions (subscriber_id, newsletter, status, created_at, updated_at)
               VALUES (:id, :newsletter, :status, :now, :now)
               ON CONFLICT (subscriber_id, newsletter)
               DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at,
                   asked_at = CASE WHEN excluded.status = 'lapsed' THEN asked_at END,
                   reconfirm_id = CASE WHEN excluded.status = 'lapsed' THEN reconfirm_id END""",
            {"id": subscriber_id, "newsletter": newsletter, "status": status, "now": now},
        )
        record(
            db,
            subscriber_id,
            "subscription",
            source,
            newsletter=newsletter,
            old_status=old,
            new_status=status,
        )
        roll_up(db, subscriber_id, source)
    return True


def roll_up(db: Database, subscriber_id: int, source: str) -> str:
    """Bring the address status in line with the subscriptions; returns the address status."""
    current = address_status(db, subscriber_id)
    if current in ADDRESS_WIDE:
        return current
    statuses = set(subscriptions_of(db, subscriber_id).values())
    wanted = next((s for s in ("active", "pending", "lapsed") if s in statuses), "unsubscribed")
    if wanted != current:
        _set_address(db, subscriber_id, current, wanted, source)
    return wanted


def mark_address(db: Database, subscriber_id: int, status: str, source: str) -> bool:
    """Mark the whole address bounced or complained (a webhook's job): no newsletter goes to it.

    Its subscriptions are left as they are. False when it already had that status.
    """
    if status not in ADDRESS_WIDE:
        raise ValueError(f"address status {status!r} is not one of {', '.join(ADDRESS_WIDE)}")
    with write_transaction(db):
        current = address_status(db, subscriber_id)
        if current == status:
            return False
        _set_address(db, subscriber_id, current, status, source)
    return True


def address_status(db: Database, subscriber_id: int) -> str:
    return db.execute("SELECT status FROM subscribers WHERE id = ?", [subscriber_id]).fetchone()[0]


def _set_address(db: Database, subscriber_id: int, old: str, new: str, source: str) -> None:
    db.execute(
        "UPDATE subscribers SET status = ?, updated_at = ? WHERE id = ?",
        [new, to_db(utcnow()), subscriber_id],
    )
    record(db, subscriber_id, "address", source, old_status=old, new_status=new)


def confirmation_state(
    db: Database, subscriber_id: int, newsletter: str
) -> tuple[str | None, str | None]:
    """When the last confirmation email of a subscription went, and the code its link carries."""
    row = db.execute(
        """SELECT confirmation_sent_at, confirm_code FROM subscriptions
           WHERE subscriber_id = ? AND newsletter = ?""",
        [subscriber_id, newsletter],
    ).fetchone()
    return (row[0], row[1]) if row else (None, None)


def confirmation_check(
    db: Database, subscriber_id: int, newsletter: str
) -> tuple[str, str | None, str | None] | None:
    """What a confirmation link is checked against: the subscription's status, the code its
    link must carry and when that email went; None if there is no such subscription."""
    row = db.execute(
        """SELECT status, confirm_code, confirmation_sent_at FROM subscriptions
           WHERE subscriber_id = ? AND newsletter = ?""",
        [subscriber_id, newsletter],
    ).fetchone()
    return (row[0], row[1], row[2]) if row else None


def claim_confirmation_email(
    db: Database,
    subscriber_id: int,
    newsletter: str,
    now: datetime,
    code: str | None,
    resend_after: timedelta,
) -> bool:
    """Record that an email goes to this address now, unless one went within `resend_after`.

    A new confirmation `code` replaces the old one, whose link is dead from now on. One
    statement, so that two requests at once cannot both send.
    """
    cursor = db.execute(
        """UPDATE subscriptions SET confirmation_sent_at = :now,
                  confirm_code = COALESCE(:code, confirm_code)
           WHERE subscriber_id = :id AND newsletter = :newsletter
           AND NOT EXISTS (SELECT 1 FROM subscriptions WHERE subscriber_id = :id
                           AND confirmation_sent_at > :cutoff)""",
        {
            "now": to_db(now),
            "code": code,
            "id": subscriber_id,
            "newsletter": newsletter,
            "cutoff": to_db(now - resend_after),
        },
    )
    return cursor.rowcount == 1


def restore_confirmation_state(
    db: Database, subscriber_id: int, newsletter: str, state: tuple[str | None, str | None]
) -> None:
    """Put back what `confirmation_state` read: the email was not sent after all."""
    db.execute(
        """UPDATE subscriptions SET confirmation_sent_at = ?, confirm_code = ?
           WHERE subscriber_id = ? AND newsletter = ?""",
        [*state, subscriber_id, newsletter],
    )


def stale_pending(db: Database, cutoff: datetime) -> list[tuple[int, str]]:
    """Pending subscriptions whose last confirmation email (or creation) is older than `cutoff`."""
    rows = db.execute(
        """SELECT subscriber_id, newsletter FROM subscriptions WHERE status = 'pending'
           AND COALESCE(confirmation_sent_at, created_at) < ?""",
        [to_db(cutoff)],
    )
    return [(subscriber_id, newsletter) for subscriber_id, newsletter in rows]


def delete_subscription(db: Database, subscriber_id: int, newsletter: str) -> None:
    """Remove one subscription outright (not audited: the caller records why)."""
    db.execute(
        "DELETE FROM subscriptions WHERE subscriber_id = ? AND newsletter = ?",
        [subscriber_id, newsletter],
    )


def claim_reconfirm(db: Database, subscriber_id: int, newsletter: str, now: datetime) -> bool:
    """Record that the reconfirm email goes to an active reader now; False if it already went.

    One statement, so that two runs at once cannot both send it. `reconfirm_sent` records
    that it left; `release_reconfirm` gives the claim back when it did not.
    """
    cursor = db.execute(
        """UPDATE subscriptions SET asked_at = ?, reconfirm_id = NULL
           WHERE subscriber_id = ? AND newsletter = ? AND status = 'active'
           AND asked_at IS NULL""",
        [to_db(now), subscriber_id, newsletter],
    )
    return cursor.rowcount == 1


def reconfirm_sent(db: Database, subscriber_id: int, newsletter: str, provider_id: str) -> None:
    with write_transaction(db):
        db.execute(
            """UPDATE subscriptions SET reconfirm_id = ?
               WHERE subscriber_id = ? AND newsletter = ?""",
            [provider_id or "sent", subscriber_id, newsletter],
        )
        record(db, subscriber_id, "reconfirm", "sunset", newsletter=newsletter, detail=provider_id)


def release_reconfirm(db: Database, subscriber_id: int, newsletter: str) -> None:
    """The reconfirm email did not leave (or left unknown long ago): the reader is not asked."""
    db.execute(
        """UPDATE subscriptions SET asked_at = NULL, reconfirm_id = NULL
           WHERE subscriber_id = ? AND newsletter = ? AND status = 'active'""",
        [subscriber_id, newsletter],
    )


def keep_subscription(
    db: Database, subscriber_id: int, newsletter: str, now: datetime, source: str, detail: str
) -> str | None:
    """The reader wants it (the keep button, or reading again): not asked any more, and active
    again if they had lapsed. Returns the status it had, or None when there is nothing to keep
    (no subscription, or one the reader left: only they can take that back, from their page).
    """
    with write_transaction(db):
        row = db.execute(
            "SELECT status FROM subscriptions WHERE subscriber_id = ? AND newsletter = ?",
            [subscriber_id, newsletter],
        ).fetchone()
        if row is None or row[0] not in ("active", "lapsed"):
            return None
        # Keeping covers every edition already sent, whatever the clocks say.
        db.execute(
            """UPDATE subscriptions SET asked_at = NULL, reconfirm_id = NULL,
                   kept_at = MAX(COALESCE(kept_at, ''), :now, COALESCE((
                       SELECT MAX(e.slot_at) FROM deliveries d
                       JOIN editions e ON e.id = d.edition_id
                       WHERE d.subscriber_id = :id AND e.newsletter = :newsletter), ''))
               WHERE subscriber_id = :id AND newsletter = :newsletter""",
            {"now": to_db(now), "id": subscriber_id, "newsletter": newsletter},
        )
        if row[0] == "lapsed":
            set_subscription(db, subscriber_id, newsletter, "active", source)
        else:
            record(db, subscriber_id, "kept", source, newsletter=newsletter, detail=detail)
    return str(row[0])


def lapse_subscription(db: Database, subscriber_id: int, newsletter: str) -> bool:
    """An asked reader who did not answer in time rests: `lapsed`. False if no longer asked."""
    with write_transaction(db):
        row = db.execute(
            """SELECT 1 FROM subscriptions WHERE subscriber_id = ? AND newsletter = ?
               AND status = 'active' AND reconfirm_id IS NOT NULL""",
            [subscriber_id, newsletter],
        ).fetchone()
        if row is None:
            return False
        set_subscription(db, subscriber_id, newsletter, "lapsed", "sunset")
    return True
