"""Sign-up with double opt-in: the form makes a pending subscription, the emailed link confirms it.

The form's answer never depends on whether the address is on the list (no enumeration): a
new or pending address gets a confirmation email, an already subscribed one an email saying
so, and a bounced, complained or forgotten one nothing at all. At most one such email goes
to an address every RESEND_AFTER, counted in the database so that it survives restarts.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlite_utils import Database

from ..clock import to_db, utcnow
from ..config import Config
from ..errors import TransportError
from ..tokens import CONFIRM_SALT, BadTokenError, TokenSigner
from ..transports import Transport
from .confirmation import send_confirmation
from .preferences import check_topics
from .subscribers import (
    check_email,
    check_name,
    check_timezone,
    create_subscriber,
    find_subscriber,
    subscriber_by_id,
)
from .subscriptions import ADDRESS_WIDE, set_subscription, subscriptions_of
from .suppression import is_suppressed

RESEND_AFTER = timedelta(minutes=10)
log = logging.getLogger(__name__)

# What sign_up did; the web page says the same thing whatever it is.
CONFIRMATION_SENT = "confirmation sent"
ALREADY_SUBSCRIBED_SENT = "already subscribed: told by email"
RATE_LIMITED = "nothing sent: an email went to this address a moment ago"
REFUSED = "nothing sent: the address is bounced, complained or forgotten"
NOT_SENT = "nothing sent: the transport failed"


def sign_up(
    db: Database,
    config: Config,
    email: str,
    *,
    transport: Transport,
    name: str = "",
    topics: Iterable[str] = (),
    timezone: str = "UTC",
    newsletter: str | None = None,
    now: datetime | None = None,
) -> str:
    """The sign-up form: see the module docstring. Returns what happened (for logs and tests).

    Raises SubscriberError or ConfigError for a field that is not acceptable (a malformed
    address, an unknown topic, time zone or newsletter): those say nothing about the list.
    """
    address = check_email(email)
    timezone = check_timezone(timezone)
    chosen = config.newsletter(newsletter)
    topics = check_topics(db, topics)
    name = check_name(name)
    now = now or utcnow()
    if is_suppressed(db, address):
        return REFUSED
    existing = find_subscriber(db, address)
    if existing is None:
        try:
            subscriber_id = create_subscriber(
                db,
                address,
                newsletter=chosen.name,
                source="form",
                name=name,
                topics=topics,
                timezone=timezone,
                status="pending",
            )
        except sqlite3.IntegrityError:
            # A double-clicked form: the other request added the address and sends the email.
            return RATE_LIMITED
        already = False
    elif existing.status in ADDRESS_WIDE:
        return REFUSED
    else:
        subscriber_id = existing.id
        # The form never changes an existing reader's details: anyone can type any address.
        already = subscriptions_of(db, subscriber_id).get(chosen.name) == "active"
        if not already:
            set_subscription(db, subscriber_id, chosen.name, "pending", "form")
    previous = db.execute(
        "SELECT confirmation_sent_at FROM subscriptions WHERE subscriber_id = ? AND newsletter = ?",
        [subscriber_id, chosen.name],
    ).fetchone()[0]
    if not _claim_email_slot(db, subscriber_id, chosen.name, now):
        return RATE_LIMITED
    subscriber = subscriber_by_id(db, subscriber_id)
    assert subscriber is not None
    try:
        send_confirmation(config, transport, subscriber, chosen, already_subscribed=already)
    except TransportError as exc:
        # Give the slot back so that the reader may try again at once.
        db.execute(
            """UPDATE subscriptions SET confirmation_sent_at = ?
               WHERE subscriber_id = ? AND newsletter = ?""",
            [previous, subscriber_id, chosen.name],
        )
        log.error("confirmation email to subscriber %s not sent: %s", subscriber_id, exc)
        return NOT_SENT
    return ALREADY_SUBSCRIBED_SENT if already else CONFIRMATION_SENT


def _claim_email_slot(db: Database, subscriber_id: int, newsletter: str, now: datetime) -> bool:
    """Record that an email goes to this address now, unless one went within RESEND_AFTER.

    One statement, so that two requests at once cannot both send.
    """
    cursor = db.execute(
        """UPDATE subscriptions SET confirmation_sent_at = :now
           WHERE subscriber_id = :id AND newsletter = :newsletter
           AND NOT EXISTS (SELECT 1 FROM subscriptions WHERE subscriber_id = :id
                           AND confirmation_sent_at > :cutoff)""",
        {
            "now": to_db(now),
            "id": subscriber_id,
            "newsletter": newsletter,
            "cutoff": to_db(now - RESEND_AFTER),
        },
    )
    return cursor.rowcount == 1


def confirm(db: Database, config: Config, token: str) -> tuple[int, str, bool]:
    """The confirmation link: the pending subscription it names becomes active.

    Returns (subscriber id, newsletter, whether it was already active). Raises BadTokenError
    for a forged or unknown link, or one whose subscription was left since.
    """
    subscriber_id, newsletter = TokenSigner(config.secret_key, CONFIRM_SALT).read(token)
    if newsletter not in config.newsletters or subscriber_by_id(db, subscriber_id) is None:
        raise BadTokenError(
            "This confirmation link is not valid any more. Sign up again to get a new one."
        )
    status = subscriptions_of(db, subscriber_id).get(newsletter)
    if status == "active":
        return subscriber_id, newsletter, True
    if status != "pending":
        raise BadTokenError(
            "This confirmation link has expired: the subscription was cancelled since. "
            "Sign up again to get a new link."
        )
    set_subscription(db, subscriber_id, newsletter, "active", "link")
    return subscriber_id, newsletter, False
