"""Sign-up with double opt-in: the form queues a request, the emailed link confirms it.

The form's answer never depends on whether the address is on the list (no enumeration,
not even by timing): `sign_up` checks the fields and the flood limits and queues the
request, the same work for every address. `process_signups` handles the queue after the
answer has gone (the web app, once each response is sent; `digest run` for anything left):
a new or pending address gets a confirmation email, an already subscribed one an email
saying so, and a bounced, complained or forgotten one nothing at all. At most one such
email goes to an address every RESEND_AFTER, counted in the database.

A confirmation link works once, for CONFIRM_FOR, and only until a newer one is sent: it
carries the subscription's random `confirm_code`, replaced by each new confirmation.
Opening it shows a button; only the POST of that button confirms. Pending sign-ups not
confirmed within CONFIRM_FOR are dropped.
"""

from __future__ import annotations

import hmac
import logging
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlite_utils import Database

from ..clock import from_db, to_db, utcnow
from ..config import Config
from ..delivery.transports import Transport
from ..errors import DigestError, SubscriberError
from ..models import Subscriber
from ..store import write_transaction
from ..tokens import CONFIRM_SALT, BadTokenError, TokenSigner, new_nonce
from ..zones import check_timezone
from .audit import record
from .confirmation import send_confirmation
from .preferences import check_topics
from .privacy import erase_reader
from .subscribers import (
    check_email,
    check_name,
    create_subscriber,
    find_subscriber,
    subscriber_by_id,
    topics_text,
)
from .subscriptions import (
    ADDRESS_WIDE,
    claim_confirmation_email,
    confirmation_check,
    confirmation_state,
    delete_subscription,
    restore_confirmation_state,
    roll_up,
    set_subscription,
    stale_pending,
    subscriptions_of,
)
from .suppression import address_hash, is_suppressed

RESEND_AFTER = timedelta(minutes=10)
CONFIRM_FOR = timedelta(days=7)
# A request claimed by a worker that died is handled again after this long.
CLAIM_TIMEOUT = timedelta(minutes=5)
log = logging.getLogger(__name__)

# What handling a request did; the web page said the same thing whatever it is.
QUEUED = "queued"
MAILBOX_LIMITED = "nothing queued: too many sign-ups for this mailbox today"
CONFIRMATION_SENT = "confirmation sent"
ALREADY_SUBSCRIBED_SENT = "already subscribed: told by email"
RATE_LIMITED = "nothing sent: an email went to this address a moment ago"
REFUSED = "nothing sent: the address is bounced, complained or forgotten"
NOT_SENT = "nothing sent: the email could not be sent"
FAILED = "nothing sent: the request could not be handled"


class SignUpLimitError(SubscriberError):
    """Too many sign-ups from one client, or from everyone, in the last hour."""


@dataclass(frozen=True)
class SignUpRequest:
    """A sign-up form whose fields passed every check, as it waits in the queue."""

    email: str
    name: str
    topics: tuple[str, ...]
    timezone: str
    newsletter: str


def check_form_name(name: str) -> str:
    """The name typed in the form, or SubscriberError: one line of printable text.

    A file's rows have control characters cleaned (`check_name`); a person typing in a form
    is told instead, so what they see stored is what they typed.
    """
    if not name.strip().isprintable():
        raise SubscriberError(
            "the name has a line break or another control character; type it on one line"
        )
    return check_name(name)


def _newsletter_name(config: Config, name: str | None) -> str:
    # The config's own error tells an operator how to edit digest.toml; a reader gets this.
    if name is not None and name not in config.newsletters:
        raise SubscriberError(f"unknown newsletter {name[:100]!r}; choose from the list")
    return config.newsletter(name).name


def mailbox(address: str) -> str:
    """The mailbox an address reaches, for the flood limit: `a+news@x` and `A@x` are `a@x`.

    Only for counting: `a+news@x` stays a reader of its own (providers differ on '+').
    """
    local, _, domain = address.lower().rpartition("@")
    return f"{local.partition('+')[0]}@{domain}"


def sign_up(
    db: Database,
    config: Config,
    email: str,
    *,
    name: str = "",
    topics: Iterable[str] = (),
    timezone: str = "UTC",
    newsletter: str | None = None,
    client: str = "",
    now: datetime | None = None,
) -> str:
    """The sign-up form: check the fields and the limits, and queue the request.

    Returns QUEUED, or MAILBOX_LIMITED when the mailbox had its share of emails today (the
    page says the same). Raises SubscriberError for a bad field (which says nothing about
    the list) and SignUpLimitError when the client or everyone is over the hourly limit;
    then nothing is written. `client` is the address the request came from.
    """
    address = check_email(email)
    request = SignUpRequest(
        email=address,
        name=check_form_name(name),
        topics=tuple(check_topics(db, topics)),
        timezone=check_timezone(timezone),
        newsletter=_newsletter_name(config, newsletter),
    )
    now = now or utcnow()
    limits = config.signup
    box = address_hash(db, mailbox(request.email))
    hour_ago, day_ago = to_db(now - timedelta(hours=1)), to_db(now - timedelta(days=1))
    with write_transaction(db):
        db.execute("DELETE FROM signup_attempts WHERE at < ?", [day_ago])
        from_client, from_everyone, to_mailbox = db.execute(
            """SELECT
                 (SELECT COUNT(*) FROM signup_attempts WHERE client = :client AND at >= :hour),
                 (SELECT COUNT(*) FROM signup_attempts WHERE at >= :hour),
                 (SELECT COUNT(*) FROM signup_attempts WHERE mailbox_hash = :box)""",
            {"client": client, "hour": hour_ago, "box": box},
        ).fetchone()
        if from_client >= limits.per_client_per_hour or from_everyone >= limits.per_hour:
            raise SignUpLimitError(
                "too many sign-ups from "
                + ("your network" if from_client >= limits.per_client_per_hour else "everyone")
                + " in the last hour; try again later"
            )
        db.execute(
            "INSERT INTO signup_attempts (at, client, mailbox_hash) VALUES (?, ?, ?)",
            [to_db(now), client, box],
        )
        if to_mailbox >= limits.per_mailbox_per_day:
            return MAILBOX_LIMITED
        db.execute(
            """INSERT INTO signup_requests (email, name, topics, timezone, newsletter, created_at)
               VALUES (?, ?, ?, ?, ?, ?)""",
            [
                request.email,
                request.name,
                topics_text(request.topics),
                request.timezone,
                request.newsletter,
                to_db(now),
            ],
        )
    return QUEUED


def process_signups(
    db: Database, config: Config, transport: Transport, now: datetime | None = None
) -> list[str]:
    """Handle every queued sign-up (see the module docstring); returns what each one did.

    Several workers may drain at once: each request is claimed by one of them first.
    """
    now = now or utcnow()
    expire_pending(db, now)
    done: list[str] = []
    while True:
        # In a transaction of its own: a statement with RETURNING is only done once read.
        with write_transaction(db):
            row = db.execute(
                """UPDATE signup_requests SET claimed_at = :now
                   WHERE id = (SELECT id FROM signup_requests
                               WHERE claimed_at IS NULL OR claimed_at < :stale
                               ORDER BY id LIMIT 1)
                   RETURNING id, email, name, topics, timezone, newsletter""",
                {"now": to_db(utcnow()), "stale": to_db(utcnow() - CLAIM_TIMEOUT)},
            ).fetchone()
        if row is None:
            return done
        request_id, email, name, topics, timezone, newsletter = row
        request = SignUpRequest(
            email, name, tuple(t for t in topics.split(";") if t), timezone, newsletter
        )
        error = None
        try:
            outcome = _handle(db, config, transport, request, now)
            if outcome.startswith(NOT_SENT):
                error = outcome
        except DigestError as exc:
            # One request that cannot be handled (a broken confirmation template, say)
            # never holds up the others.
            log.error("sign-up request %s not handled: %s", request_id, exc)
            outcome = error = f"{FAILED}: {exc}"
        done.append(outcome)
        if error is None:
            db.execute("DELETE FROM signup_requests WHERE id = ?", [request_id])
        else:
            # Kept, claimed: tried again once the claim is stale; `digest status` shows it.
            db.execute(
                "UPDATE signup_requests SET error = ? WHERE id = ?", [error[:300], request_id]
            )


def unsent_confirmations(db: Database) -> tuple[int, str | None]:
    """Sign-ups whose confirmation email could not be sent yet, and the last reason."""
    count, error = db.execute(
        "SELECT COUNT(*), MAX(error) FROM signup_requests WHERE error IS NOT NULL"
    ).fetchone()
    return count, error


def _handle(
    db: Database, config: Config, transport: Transport, request: SignUpRequest, now: datetime
) -> str:
    """One queued sign-up: make or find the pending subscription and email the reader."""
    chosen = config.newsletters.get(request.newsletter)
    if chosen is None or is_suppressed(db, request.email):
        return REFUSED
    existing = find_subscriber(db, request.email)
    if existing is None:
        try:
            subscriber_id = create_subscriber(
                db,
                request.email,
                newsletter=chosen.name,
                source="form",
                name=request.name,
                topics=request.topics,
                timezone=request.timezone,
                status="pending",
            )
        except sqlite3.IntegrityError:
            # Another worker added the address a moment ago and sends the email.
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
    previous = confirmation_state(db, subscriber_id, chosen.name)
    code = None if already else new_nonce()
    if not claim_confirmation_email(db, subscriber_id, chosen.name, now, code, RESEND_AFTER):
        return RATE_LIMITED
    subscriber = subscriber_by_id(db, subscriber_id)
    assert subscriber is not None
    try:
        send_confirmation(
            config, transport, subscriber, chosen, already_subscribed=already, code=code
        )
    except DigestError as exc:
        # Not sent (the transport failed, or a template is broken): give the slot and the
        # link that still works back, so the reader may try again.
        restore_confirmation_state(db, subscriber_id, chosen.name, previous)
        log.error("confirmation email to subscriber %s not sent: %s", subscriber_id, exc)
        return f"{NOT_SENT} ({exc})"
    return ALREADY_SUBSCRIBED_SENT if already else CONFIRMATION_SENT


def expire_pending(db: Database, now: datetime) -> int:
    """Drop pending subscriptions not confirmed within CONFIRM_FOR; returns how many.

    A reader left with no subscription at all (an address that never confirmed anything)
    is erased; anyone else keeps the rest of their subscriptions and their history.
    """
    stale = stale_pending(db, now - CONFIRM_FOR)
    for subscriber_id, newsletter in stale:
        with write_transaction(db):
            delete_subscription(db, subscriber_id, newsletter)
            subscriber = subscriber_by_id(db, subscriber_id)
            if subscriber is None:
                continue
            if not subscriptions_of(db, subscriber_id) and subscriber.status == "pending":
                erase_reader(db, subscriber)
                continue
            record(
                db,
                subscriber_id,
                "subscription",
                "form",
                newsletter=newsletter,
                old_status="pending",
                detail=f"not confirmed within {CONFIRM_FOR.days} days",
            )
            roll_up(db, subscriber_id, "form")
    return len(stale)


@dataclass(frozen=True)
class Confirmation:
    """What a confirmation link names: one reader's subscription, and whether it is active."""

    subscriber: Subscriber
    newsletter: str
    already: bool


_DEAD_LINK = (
    "This confirmation link does not work any more: it was replaced by a newer one, or the "
    "sign-up was cancelled or dropped since. Sign up again to get a new link."
)


def check_confirmation(
    db: Database, config: Config, token: str, now: datetime | None = None
) -> Confirmation:
    """The subscription a confirmation link may confirm; changes nothing (GET shows this).

    Raises BadTokenError for a forged link, one replaced by a newer confirmation, one
    whose subscription was left or dropped, or one older than CONFIRM_FOR. A link of the
    old format (no code, sent before the m005 migration) works for the reader it was sent
    to while no newer confirmation was sent.
    """
    claim = TokenSigner(config.secret_key, CONFIRM_SALT).read(token)
    subscriber = subscriber_by_id(db, claim.subscriber_id)
    row = confirmation_check(db, claim.subscriber_id, claim.newsletter)
    if subscriber is None or row is None or claim.newsletter not in config.newsletters:
        raise BadTokenError(_DEAD_LINK)
    status, code, sent_at = row
    if claim.nonce is None:
        valid = subscriber.legacy_links and code is None
    else:
        valid = code is not None and hmac.compare_digest(claim.nonce, code)
    if not valid:
        raise BadTokenError(_DEAD_LINK)
    if status == "active":
        return Confirmation(subscriber, claim.newsletter, already=True)
    if status != "pending":
        raise BadTokenError(_DEAD_LINK)
    if sent_at is None or from_db(sent_at) < (now or utcnow()) - CONFIRM_FOR:
        raise BadTokenError(
            f"This confirmation link has expired: links work for {CONFIRM_FOR.days} days. "
            "Sign up again to get a new one."
        )
    return Confirmation(subscriber, claim.newsletter, already=False)


def confirm(db: Database, config: Config, token: str, now: datetime | None = None) -> Confirmation:
    """The confirmation button: the pending subscription the link names becomes active.

    Confirming again changes nothing (`already` is then True).
    """
    found = check_confirmation(db, config, token, now)
    if not found.already:
        set_subscription(db, found.subscriber.id, found.newsletter, "active", "link")
    return found
