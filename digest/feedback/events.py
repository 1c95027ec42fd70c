"""SendGrid Event Webhook posts: stored as received, then processed once into what each send became.

A verified post is stored whole (`store_post`) before it is answered. `process_pending` then
reads each stored post in one transaction: every event is kept once (deduplicated on
`sg_event_id` and on a natural key, because SendGrid re-delivers with new ids), each delivery's
state only moves up the ladder below whatever order events arrive in, engagement (opens,
clicks) is counted apart, and events change readers: a hard bounce or a spam report marks the
address for every newsletter, an unsubscribe ends the subscription, and any event carrying the
id of an unknown batch proves SendGrid accepted it. A crash anywhere leaves the post
unprocessed; the next request or `digest run` processes it, and nothing is counted twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlsplit

from sqlite_utils import Database

from ..addresses import lookup_form
from ..clock import from_db, to_db, utcnow
from ..delivery.lease import Lease
from ..delivery.ledger import DeliveryStatus, settle_batch
from ..edition.lift import NOT_REACHED
from ..edition.render import STORY_PARAMETER
from ..errors import DigestError, LeaseHeldError, NotFoundError
from ..invocation import digest_command
from ..readers.audit import record
from ..readers.subscriptions import address_status, mark_address, set_subscription
from ..store import write_transaction
from .machines import machine_times, opened_by_person

log = logging.getLogger(__name__)

# A delivery's state moves only up this ladder, so late and out-of-order events never undo a
# later fact: a bounce or complaint beats delivered, which beats deferred, which beats processed.
LADDER = {
    "processed": 1,
    "deferred": 2,
    "delivered": 3,
    "dropped": 4,
    "blocked": 5,
    "bounced": 6,
    "complained": 7,
}
# SendGrid's `dropped` reasons that echo its own suppression lists, and what they mean here.
DROPPED_LISTS = {
    "Bounced Address": "bounced",
    "Spam Reporting Address": "complained",
    "Unsubscribed Address": "unsubscribed",
}
CUSTOM_ARG_PREFIX = "digest_"
EVENTS_LEASE = "events"
# Longer than any one post takes; renewed after every post.
EVENTS_LEASE_SECONDS = 120
MAX_TEXT = 300
PROCESSING_CACHE_KB = 16 * 1024
# A click timestamped this long after its post was received, or before its edition's slot, is
# set aside: clocks drift by seconds, not minutes.
FUTURE_SLACK_SECONDS = 300
BEFORE_SEND_SLACK_SECONDS = 600
FUTURE_CLICK = "timestamped after its post was received"
EARLY_CLICK = "timestamped before its edition's slot"
CHUNK = 500
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
# How an internationalized domain's labels begin in the ASCII form SendGrid reports.
ASCII_LABEL = "xn--"


class Event(NamedTuple):
    """One webhook event, checked: only the fields we use, with hostile values made harmless."""

    name: str
    occurred_at: int
    email: str
    sg_event_id: str | None
    message_id: str | None
    edition_id: int | None
    batch_key: str | None
    delivery_id: int | None
    subscriber_id: int | None
    newsletter: str | None
    bounce_type: str | None
    url: str | None
    machine_open: bool
    reason: str
    classification: str
    smtp_status: str
    # It carried `digest_*` custom args: mail from a batch of ours, or of another database's.
    tagged: bool = False

    @property
    def state(self) -> str | None:
        """The delivery state this event proves (an open or click proves delivery)."""
        if self.name == "bounce":
            return "bounced" if self.bounce_type == "bounce" else "blocked"
        if self.name == "spamreport":
            return "complained"
        if self.name in ("open", "click"):
            return "delivered"
        return self.name if self.name in LADDER else None

    @property
    def natural_key(self) -> bytes:
        """What makes an event the same event when SendGrid re-delivers it under a new id."""
        parts = (
            self.message_id or "",
            str(self.delivery_id or ""),
            self.email.casefold(),
            self.name,
            str(self.occurred_at),
            self.url or "",
            self.bounce_type or "",
        )
        return hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()[:16]


def _text(value: Any, limit: int = MAX_TEXT) -> str:
    """A value shown to people (reasons, classifications): a short single line of text."""
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return ""
    return _CONTROL.sub(" ", str(value)).strip()[:limit]


def _id(value: Any) -> int | None:
    """One of our own ids from custom_args (always strings of digits), else None."""
    if isinstance(value, str) and value.isdigit() and len(value) < 19:
        return int(value)
    return None


def _key(value: Any, limit: int = 100) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= limit else None


def _timestamp(value: Any) -> int | None:
    """Unix seconds, from a number or a string of digits; None for anything else or absurd."""
    if isinstance(value, str) and value.isdigit() and len(value) < 12:
        return int(value)
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 1e11:
        return int(value)
    return None


def parse_event(item: Any) -> Event | None:
    """An event from one item of a webhook body, or None when the item is not a usable event."""
    if not isinstance(item, dict):
        return None
    name = item.get("event")
    email = item.get("email")
    timestamp = _timestamp(item.get("timestamp"))
    if not (isinstance(name, str) and 0 < len(name) <= 40 and isinstance(email, str)):
        return None
    if timestamp is None:
        return None
    url = item.get("url") if name == "click" else None
    event = Event(
        name=name,
        occurred_at=timestamp,
        email=email[:320],
        sg_event_id=_key(item.get("sg_event_id")),
        message_id=_key(item.get("sg_message_id"), 200),
        edition_id=_id(item.get("digest_edition")),
        batch_key=_key(item.get("digest_batch")),
        delivery_id=_id(item.get("digest_delivery")),
        # Sent before deliveries were named: with the edition, it finds the delivery too.
        subscriber_id=_id(item.get("digest_subscriber")),
        newsletter=_key(item.get("digest_newsletter")),
        bounce_type=_key(item.get("type"), 20) if name == "bounce" else None,
        url=url[:2000] if isinstance(url, str) else None,
        machine_open=item.get("sg_machine_open") is True,
        reason=_text(item.get("reason") or item.get("response")),
        classification=_text(item.get("bounce_classification"), 60),
        smtp_status=_text(item.get("status"), 20),
        tagged=any(isinstance(k, str) and k.startswith(CUSTOM_ARG_PREFIX) for k in item),
    )
    # JSON may carry lone surrogates ("\ud800"), which no UTF-8 column can hold.
    try:
        "".join(v for v in event if isinstance(v, str)).encode("utf-8")
    except UnicodeEncodeError:
        return None
    return event


def link_key(url: str) -> str:
    """A link without its scheme, query and fragment: what a story's URL and a click share
    when the click's query string was changed on the way (tracking parameters, a lost id)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return url.strip()[:MAX_TEXT]
    return f"{(parts.hostname or '').lower()}{parts.path.rstrip('/') or '/'}"


def story_of(url: str | None) -> int | None:
    """The story id a link in our email carries (its `digest_story` parameter), if any."""
    if not url:
        return None
    try:
        query = parse_qsl(urlsplit(url).query)
    except ValueError:
        return None
    found = [value for key, value in query if key == STORY_PARAMETER]
    return _id(found[-1]) if found else None


def store_post(db: Database, body: bytes, headers: Mapping[str, str], received_at: datetime) -> int:
    """Keep one verified post as received, committed (and synced) before it is answered.

    A body already stored (a replay, or SendGrid sending the same post again) is not stored
    twice: its events count once anyway, and each copy would cost a synced write.
    """
    digest = hashlib.sha256(body).hexdigest()
    # Synced to disk at commit, not only at the next checkpoint: SendGrid forgets a post
    # once it has our 2xx, so a power cut must not lose it either.
    db.execute("PRAGMA synchronous = FULL")
    try:
        with write_transaction(db):
            known = db.execute(
                "SELECT id FROM webhook_posts WHERE body_sha256 = ?", [digest]
            ).fetchone()
            if known is not None:
                return int(known[0])
            cursor = db.execute(
                """INSERT INTO webhook_posts (received_at, headers, body, size, body_sha256)
                   VALUES (?, ?, ?, ?, ?)""",
                [to_db(received_at), json.dumps(dict(headers)), body, len(body), digest],
            )
    finally:
        db.execute("PRAGMA synchronous = NORMAL")
    assert cursor.lastrowid is not None
    return cursor.lastrowid


@dataclass
class ProcessReport:
    """What one `process_pending` call did."""

    posts: int = 0
    events: int = 0
    new_events: int = 0
    settled_batches: list[str] = field(default_factory=list)
    failed_posts: list[int] = field(default_factory=list)
    # Posts whose body is no JSON array of events (however hostile): marked failed, never retried.
    unreadable_posts: list[int] = field(default_factory=list)
    # Another process held the lease: it processes what is pending.
    busy: bool = False

    def summary(self) -> str:
        text = (
            f"events: {self.posts} webhook post(s), {self.events} events, "
            f"{self.new_events} new, {self.events - self.new_events} duplicate or unusable"
        )
        if self.unreadable_posts:
            text += (
                f"; {len(self.unreadable_posts)} post(s) unreadable, given up "
                f"(ids {', '.join(map(str, self.unreadable_posts))})"
            )
        if self.settled_batches:
            text += f"; settled {len(self.settled_batches)} unknown batch(es) by event"
        if self.failed_posts:
            text += f"; {len(self.failed_posts)} post(s) could not be processed (see the log)"
        return text


def pending_posts(db: Database, limit: int = 100) -> list[int]:
    rows = db.execute(
        "SELECT id FROM webhook_posts WHERE processed_at IS NULL ORDER BY id LIMIT ?", [limit]
    )
    return [row[0] for row in rows]


def waiting_posts(db: Database) -> tuple[int, str | None]:
    """How many stored posts are not processed yet, and why one of them failed, if one did
    (naming that post, which `discard_post` gives up on)."""
    count, note = db.execute(
        "SELECT COUNT(*), MAX(note) FROM webhook_posts WHERE processed_at IS NULL"
    ).fetchone()
    if note:
        failing = db.execute(
            "SELECT id FROM webhook_posts WHERE processed_at IS NULL AND note = ?", [note]
        ).fetchone()[0]
        note = f"post {failing}: {note}"
    return count, note


def discard_post(db: Database, post_id: int) -> str:
    """Give up on one stored post that cannot be processed: its body is dropped, it is no
    longer pending, and its note says so. Returns what it was."""
    with write_transaction(db):
        row = db.execute(
            "SELECT processed_at, note FROM webhook_posts WHERE id = ?", [post_id]
        ).fetchone()
        if row is None:
            raise NotFoundError(
                f"No webhook post {post_id}; `{digest_command()} status` names those waiting."
            )
        if row[0] is not None:
            raise DigestError(f"Webhook post {post_id} was already processed ({row[1] or 'ok'}).")
        now = to_db(utcnow())
        db.execute(
            """UPDATE webhook_posts SET processed_at = ?, failed_at = ?, body = NULL, note = ?
               WHERE id = ?""",
            [now, now, f"discarded by hand: {row[1] or 'not processed'}"[:MAX_TEXT], post_id],
        )
    return row[1] or "not processed"


def erase_address_from_posts(db: Database, addresses: Iterable[str]) -> int:
    """Remove a reader's events from the bodies of posts not processed yet (`forget`).

    Items about the address (as stored or as sent) are dropped from each body holding it; a
    body that cannot be read but holds the address is dropped whole and the post given up.
    Returns how many posts were changed.
    """
    forms = {a.casefold() for a in addresses}
    changed = 0
    rows = db.execute(
        "SELECT id, body FROM webhook_posts WHERE processed_at IS NULL AND body IS NOT NULL"
    ).fetchall()
    for post_id, body in rows:
        items, note = decode_body(body)
        if note:
            text = body.decode("utf-8", "replace").casefold()
            if any(form in text or json.dumps(form) in text for form in forms):
                now = to_db(utcnow())
                db.execute(
                    """UPDATE webhook_posts SET body = NULL, processed_at = ?, failed_at = ?,
                       note = ? WHERE id = ?""",
                    [now, now, f"erased by forget: {note}"[:MAX_TEXT], post_id],
                )
                changed += 1
            continue
        kept = [item for item in items if not _names(item, forms)]
        if len(kept) != len(items):
            db.execute(
                "UPDATE webhook_posts SET body = ? WHERE id = ?",
                [json.dumps(kept).encode(), post_id],
            )
            changed += 1
    return changed


def _names(item: Any, forms: set[str]) -> bool:
    email = item.get("email") if isinstance(item, dict) else None
    return isinstance(email, str) and (
        email.casefold() in forms or lookup_form(email).casefold() in forms
    )


def process_pending(db: Database) -> ProcessReport:
    """Process every stored post not yet processed, oldest first, one transaction each.

    One process at a time (a lease): a post stored while another holds it is processed by
    that holder, which looks again after letting go. A post that cannot be processed (a bug)
    is logged, keeps its body, and is tried again next time; the others go on.
    """
    # The dedupe indexes are random-keyed: with SQLite's 2 MB default cache, a million events
    # make every insert a page read (benchmarks/events.py). 16 MB keeps the webhook server
    # under 100 MB; 64 MB was about a third faster at 600,000 events but held it at 137 MB.
    # Only while processing: `digest run` goes on to send on the same connection, where a
    # large cache is only memory.
    cache_size = db.execute("PRAGMA cache_size").fetchone()[0]
    db.execute(f"PRAGMA cache_size = -{PROCESSING_CACHE_KB}")
    try:
        return _process_pending(db)
    finally:
        db.execute(f"PRAGMA cache_size = {int(cache_size)}")


def _process_pending(db: Database) -> ProcessReport:
    report = ProcessReport()
    while True:
        lease = Lease(db, EVENTS_LEASE, EVENTS_LEASE_SECONDS)
        try:
            lease.acquire()
        except LeaseHeldError:
            report.busy = True
            return report
        try:
            _drain(db, lease, report)
        finally:
            lease.release()
        # A post stored while we held the lease found it held and left it to us.
        remaining = set(pending_posts(db)) - set(report.failed_posts)
        if not remaining:
            return report


def _drain(db: Database, lease: Lease, report: ProcessReport) -> None:
    while batch := [p for p in pending_posts(db) if p not in report.failed_posts]:
        for post_id in batch:
            try:
                process_post(db, post_id, report)
            except Exception as exc:
                log.exception("webhook post %s could not be processed", post_id)
                report.failed_posts.append(post_id)
                with write_transaction(db):
                    db.execute(
                        "UPDATE webhook_posts SET note = ? WHERE id = ?",
                        [f"processing failed: {type(exc).__name__}: {exc}"[:MAX_TEXT], post_id],
                    )
            lease.renew()


def decode_body(body: bytes) -> tuple[list[Any], str]:
    """The items of a post body (a JSON array), and a note when it is not one."""
    try:
        items = json.loads(body)
    except (ValueError, RecursionError) as exc:
        # RecursionError: 200,000 nested `[` are signed JSON's poison, not a bug to retry.
        return [], f"not JSON ({type(exc).__name__}: {exc})"[:MAX_TEXT]
    if not isinstance(items, list):
        return [], "not a JSON array"
    return items, ""


def process_post(db: Database, post_id: int, report: ProcessReport | None = None) -> None:
    """Apply one stored post's events, all in one transaction with marking it processed."""
    report = report if report is not None else ProcessReport()
    with write_transaction(db):
        row = db.execute(
            "SELECT body, processed_at, received_at FROM webhook_posts WHERE id = ?", [post_id]
        ).fetchone()
        if row is None or row[1] is not None:
            return
        items, note = decode_body(row[0] or b"")
        if note:
            # Unreadable for good: given up now, never retried.
            now = to_db(utcnow())
            db.execute(
                """UPDATE webhook_posts SET processed_at = ?, failed_at = ?, body = NULL,
                   note = ? WHERE id = ?""",
                [now, now, note, post_id],
            )
            report.unreadable_posts.append(post_id)
            return
        applier = EventApplier(db, post_id, int(from_db(row[2]).timestamp()))
        unusable = 0
        for item in items:
            event = parse_event(item)
            if event is None:
                unusable += 1
            else:
                applier.apply(event)
        applier.flush()
        if unusable:
            note = f"{unusable} item(s) were not usable events"
        # The body held addresses; once its events are kept, only the counts stay.
        db.execute(
            """UPDATE webhook_posts SET processed_at = ?, body = NULL, events = ?,
               new_events = ?, note = ? WHERE id = ?""",
            [to_db(utcnow()), len(items), applier.new_events, note, post_id],
        )
    report.posts += 1
    report.events += len(items)
    report.new_events += applier.new_events
    report.settled_batches += applier.settled


class Delivery(NamedTuple):
    id: int
    edition_id: int
    subscriber_id: int
    status: str
    batch_key: str | None


class EditionStories(NamedTuple):
    """What the events of one edition are matched against: its newsletter and stories."""

    newsletter: str
    # Unix time of its slot: nothing of it left before then.
    slot_at: int
    # Each story's position in the edition (1 first), and how many story links it has.
    positions: dict[int, int]
    links: int
    # link_key of each story's URL (stories deleted since are not here).
    by_link: dict[str, int]

    def story(self, url: str | None) -> int | None:
        """The story a click is for: the id on its link, else its URL without the query."""
        story_id = story_of(url)
        if story_id is not None:
            return story_id if story_id in self.positions else None
        return self.by_link.get(link_key(url)) if url else None


class EventApplier:
    """Applies the events of one post inside its transaction, remembering what it looked up."""

    def __init__(self, db: Database, post_id: int, received_at: int | None = None):
        self.db = db
        self.post_id = post_id
        self.received_at = received_at
        self.new_events = 0
        self.settled: list[str] = []
        self._deliveries: dict[tuple, tuple[Delivery, str] | None] = {}
        self._editions: dict[int, EditionStories | None] = {}
        self._states: dict[int, tuple[Delivery, str, int, int]] = {}
        self._engagement: dict[int, list] = {}
        self._delivered: dict[int, tuple[Delivery, int]] = {}
        # Per delivery, per story: the first click's time and how many clicks.
        self._clicks: dict[int, tuple[Delivery, dict[int, tuple[int, int]]]] = {}
        self._set_aside: Counter[tuple[int, str]] = Counter()
        # Per delivery, its latest open not by Apple's proxy: a person's unless a scanner's
        # (at delivery); and (subscriber, newsletter) -> [last human open, last human click].
        self._opens: dict[int, tuple[Delivery, int]] = {}
        self._readers: dict[tuple[int, str], list[int | None]] = {}

    def apply(self, event: Event) -> bool:
        """Keep and act on one event; False when it was already kept (a duplicate)."""
        delivery = self.delivery(event)
        edition = self.edition(delivery.edition_id) if delivery else None
        # Mail outside our batches (a confirmation, which carries no `digest_*` args) is tied
        # to its reader by address; mail with ids this database never issued (a staging copy
        # on the same SendGrid account) is tied to no one. An event about no reader keeps no
        # text that could hold an address: nothing would ever remove it.
        if delivery is not None:
            reader: int | None = delivery.subscriber_id
        else:
            reader = None if event.tagged else self._subscriber(event.email)
        story_id = edition.story(event.url) if edition and event.name == "click" else None
        cursor = self.db.conn.execute(
            """INSERT OR IGNORE INTO events (post_id, sg_event_id, natural_key, event,
               bounce_type, occurred_at, edition_id, delivery_id, subscriber_id, batch_key,
               message_id, url, story_id, machine_open, detail)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            [
                self.post_id,
                event.sg_event_id,
                event.natural_key,
                event.name,
                event.bounce_type,
                event.occurred_at,
                delivery.edition_id if delivery else None,
                delivery.id if delivery else None,
                reader,
                event.batch_key,
                event.message_id,
                event.url if reader else None,
                story_id,
                int(event.machine_open),
                _detail(event) if reader else event.name,
            ],
        )
        if cursor.rowcount == 0:
            return False
        self.new_events += 1
        if delivery is not None:
            self._settle(event, delivery)
            self._advance(event, delivery)
            self._note_story_click(event, delivery, story_id)
        if reader is not None:
            self._change_reader(event, reader, edition.newsletter if edition else None)
        return True

    def delivery(self, event: Event) -> Delivery | None:
        """Our delivery the event is about, if its custom_args name one sent to its address."""
        if event.delivery_id is not None:
            key: tuple = ("id", event.delivery_id)
            where, params = "id = ?", [event.delivery_id]
        elif event.edition_id is not None and event.subscriber_id is not None:
            key = ("reader", event.edition_id, event.subscriber_id)
            where, params = (
                "edition_id = ? AND subscriber_id = ?",
                [
                    event.edition_id,
                    event.subscriber_id,
                ],
            )
        else:
            return None
        if key not in self._deliveries:
            row = self.db.conn.execute(
                f"""SELECT id, edition_id, subscriber_id, status, batch_key, email
                    FROM deliveries WHERE {where}""",
                params,
            ).fetchone()
            self._deliveries[key] = (Delivery(*row[:5]), row[5]) if row else None
        found = self._deliveries[key]
        if found is None:
            return None
        delivery, address = found
        # Another database's ids (a staging copy on the same SendGrid account) never match
        # both the address and the edition.
        if not same_mailbox(address, event.email):
            return None
        if event.edition_id is not None and event.edition_id != delivery.edition_id:
            return None
        return delivery

    def edition(self, edition_id: int) -> EditionStories | None:
        """The edition's newsletter and the stories it carried."""
        if edition_id not in self._editions:
            row = self.db.execute(
                """SELECT newsletter, story_ids, slot_at FROM edition_lineups
                   WHERE edition_id = ?""",
                [edition_id],
            ).fetchone()
            found = None
            if row:
                ids = json.loads(row[1])
                marks = ",".join("?" * len(ids))
                urls = (
                    self.db.execute(
                        f"SELECT id, url FROM stories WHERE id IN ({marks})", ids
                    ).fetchall()
                    if ids
                    else []
                )
                found = EditionStories(
                    row[0],
                    int(from_db(row[2]).timestamp()),
                    {story: n for n, story in reversed(list(enumerate(ids, 1)))},
                    len(ids),
                    {link_key(url): i for i, url in urls},
                )
            self._editions[edition_id] = found
        return self._editions[edition_id]

    def _settle(self, event: Event, delivery: Delivery) -> None:
        """An event from a batch not known to be sent proves SendGrid accepted all of it."""
        if (
            delivery.status == DeliveryStatus.SENT
            or event.batch_key is None
            or event.batch_key != delivery.batch_key
            or event.batch_key in self.settled
        ):
            return
        provider_id = (event.message_id or "").partition(".")[0] or None
        if settle_batch(self.db, delivery.edition_id, event.batch_key, provider_id, event.name):
            self.settled.append(event.batch_key)
            log.info("batch %s settled by a %s event", event.batch_key, event.name)

    def _advance(self, event: Event, delivery: Delivery) -> None:
        """Note the state and engagement the event proves; `flush` writes them once per post."""
        state = event.state
        if state is not None:
            rank = LADDER[state]
            known = self._states.get(delivery.id)
            if known is None or rank > known[3]:
                self._states[delivery.id] = (delivery, state, event.occurred_at, rank)
        if event.name == "delivered":
            known_at = self._delivered.get(delivery.id, (delivery, event.occurred_at))[1]
            self._delivered[delivery.id] = (delivery, min(known_at, event.occurred_at))
        if event.name not in ("open", "click"):
            return
        tally = self._engagement.setdefault(delivery.id, [delivery, 0, 0, 0, None, None])
        if event.name == "click":
            tally[3] += 1
            tally[5] = min(tally[5] or event.occurred_at, event.occurred_at)
        # A click is made by a person: it counts as a person's open too.
        tally[2 if event.name == "open" and event.machine_open else 1] += 1
        tally[4] = min(tally[4] or event.occurred_at, event.occurred_at)
        if event.name == "open" and not event.machine_open:
            latest = self._opens.get(delivery.id, (delivery, event.occurred_at))[1]
            self._opens[delivery.id] = (delivery, max(latest, event.occurred_at))

    def _note_reader(self, delivery: Delivery, at: int, slot: int) -> None:
        """Keep a reader's human open (`slot` 0) or click (1) for the edition's newsletter."""
        edition = self.edition(delivery.edition_id)
        if edition is None:
            return
        # No event happened after its post arrived: a clock ahead (SendGrid's or a reader's)
        # cannot make a reader look engaged in our future.
        at = at if self.received_at is None else min(at, self.received_at)
        last = self._readers.setdefault((delivery.subscriber_id, edition.newsletter), [None, None])
        last[slot] = max(last[slot] or at, at)

    def _flush_reader_opens(self) -> None:
        """The post's opens not by Apple's proxy that `machines.opened_by_person` judges a
        person's are their reader's engagement."""
        delivered = self._stored_delivery_times(list(self._opens))
        for delivery_id, (delivery, opened) in self._opens.items():
            if opened_by_person(opened, delivered.get(delivery_id)):
                self._note_reader(delivery, opened, 0)

    def _note_story_click(self, event: Event, delivery: Delivery, story_id: int | None) -> None:
        """Remember a reader's click on a story, or set it aside when its time cannot be."""
        if event.name != "click" or story_id is None:
            return
        reason = None
        if self.received_at is not None and event.occurred_at > (
            self.received_at + FUTURE_SLACK_SECONDS
        ):
            reason = FUTURE_CLICK
        elif (edition := self.edition(delivery.edition_id)) and event.occurred_at < (
            edition.slot_at - BEFORE_SEND_SLACK_SECONDS
        ):
            reason = EARLY_CLICK
        if reason:
            self._set_aside[(delivery.edition_id, reason)] += 1
            return
        stories = self._clicks.setdefault(delivery.id, (delivery, {}))[1]
        first, clicks = stories.get(story_id, (event.occurred_at, 0))
        stories[story_id] = (min(first, event.occurred_at), clicks + 1)

    def flush(self) -> None:
        """Write the post's states (only ever up the ladder) and engagement (added up)."""
        self._flush_reach()
        self.db.conn.executemany(
            """INSERT INTO delivery_states
               (delivery_id, edition_id, subscriber_id, state, rank, occurred_at, delivered_at)
               VALUES (?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (delivery_id) DO UPDATE SET
               state = CASE WHEN excluded.rank > rank THEN excluded.state ELSE state END,
               occurred_at = CASE WHEN excluded.rank > rank THEN excluded.occurred_at
                             ELSE occurred_at END,
               rank = MAX(rank, excluded.rank),
               delivered_at = MIN(COALESCE(delivered_at, excluded.delivered_at),
                                  COALESCE(excluded.delivered_at, delivered_at))
               WHERE excluded.rank > rank OR excluded.delivered_at IS NOT NULL""",
            [
                (d.id, d.edition_id, d.subscriber_id, state, rank, at, self._delivered_at(d.id))
                for d, state, at, rank in self._states.values()
            ],
        )
        self._flush_story_clicks()
        self._flush_reader_opens()
        self.db.conn.executemany(
            """INSERT INTO engagement (delivery_id, edition_id, subscriber_id, human_opens,
                   machine_opens, clicks, first_open_at, first_click_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (delivery_id) DO UPDATE SET
                   human_opens = human_opens + excluded.human_opens,
                   machine_opens = machine_opens + excluded.machine_opens,
                   clicks = clicks + excluded.clicks,
                   first_open_at = MIN(COALESCE(first_open_at, excluded.first_open_at),
                                       COALESCE(excluded.first_open_at, first_open_at)),
                   first_click_at = MIN(COALESCE(first_click_at, excluded.first_click_at),
                                        COALESCE(excluded.first_click_at, first_click_at))""",
            [
                (d.id, d.edition_id, d.subscriber_id, human, machine, clicks, opened, clicked)
                for d, human, machine, clicks, opened, clicked in self._engagement.values()
            ],
        )
        # Later events win whatever order they arrive in: only ever the latest is kept.
        self.db.conn.executemany(
            """INSERT INTO reader_engagement (subscriber_id, newsletter, last_open_at,
                   last_click_at) VALUES (?, ?, ?, ?)
               ON CONFLICT (subscriber_id, newsletter) DO UPDATE SET
                   last_open_at = NULLIF(MAX(COALESCE(last_open_at, ''),
                                             COALESCE(excluded.last_open_at, '')), ''),
                   last_click_at = NULLIF(MAX(COALESCE(last_click_at, ''),
                                              COALESCE(excluded.last_click_at, '')), '')""",
            [
                (subscriber_id, newsletter, _db_time(opened), _db_time(clicked))
                for (subscriber_id, newsletter), (opened, clicked) in self._readers.items()
            ],
        )

    def _flush_reach(self) -> None:
        """Note, by hour, each delivery of the post that stops or starts being one that did not
        reach its reader (`reach_hours`), from the state it had to the state it moves up to."""
        ids = list(self._states)
        before: dict[int, tuple[str, int, int]] = {}
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            for delivery_id, state, at, rank in self.db.conn.execute(
                f"""SELECT delivery_id, state, occurred_at, rank FROM delivery_states
                    WHERE delivery_id IN ({",".join("?" * len(chunk))})""",
                chunk,
            ):
                before[delivery_id] = (state, at, rank)
        lost: Counter[tuple[int, int]] = Counter()
        for delivery, state, at, rank in self._states.values():
            old_state, old_at, old_rank = before.get(delivery.id, ("", at, 0))
            if rank <= old_rank:
                continue
            hour = max(at, old_at) // 3600
            lost[(delivery.edition_id, hour)] += (state in NOT_REACHED) - (old_state in NOT_REACHED)
        self.db.conn.executemany(
            """INSERT INTO reach_hours (edition_id, hour, lost) VALUES (?, ?, ?)
               ON CONFLICT (edition_id, hour) DO UPDATE SET lost = lost + excluded.lost""",
            [(edition_id, hour, n) for (edition_id, hour), n in lost.items() if n],
        )

    def _stored_delivery_times(self, ids: list[int]) -> dict[int, int | None]:
        """When each delivery was delivered, as `delivery_states` holds it now (None: not yet)."""
        delivered: dict[int, int | None] = {}
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            delivered |= dict(
                self.db.conn.execute(
                    f"""SELECT delivery_id, delivered_at FROM delivery_states
                        WHERE delivery_id IN ({",".join("?" * len(chunk))})""",
                    chunk,
                ).fetchall()
            )
        return delivered

    def _delivered_at(self, delivery_id: int) -> int | None:
        found = self._delivered.get(delivery_id)
        return found[1] if found else None

    def _flush_story_clicks(self) -> None:
        """Bring each touched reader's story clicks up to date, and their hourly sums with them.

        A delivery is touched by a click on a story or by its `delivered` event (which may come
        after the clicks): its stories are judged again by `machines.machine_times`, and each
        change is written with what it changes in `story_click_hours`.
        """
        deliveries = {d.id: d for d, _ in self._delivered.values()}
        deliveries |= {d.id: d for d, _ in self._clicks.values()}
        stored: dict[int, dict[int, tuple[int, int, int | None]]] = {}
        ids = list(deliveries)
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            marks = ",".join("?" * len(chunk))
            for delivery_id, story_id, first, clicks, machine in self.db.conn.execute(
                f"""SELECT delivery_id, story_id, first_at, clicks, machine_at FROM story_clicks
                    WHERE delivery_id IN ({marks})""",
                chunk,
            ):
                stored.setdefault(delivery_id, {})[story_id] = (first, clicks, machine)
        judged = [i for i in ids if i in stored or i in self._clicks]
        delivered = self._stored_delivery_times(judged)
        rows = []
        hours: Counter[tuple[int, int, int, str]] = Counter()
        positions: Counter[tuple[str, int, int, int]] = Counter()
        for delivery_id in judged:
            delivery = deliveries[delivery_id]
            old = stored.get(delivery_id, {})
            merged = {story: (first, clicks) for story, (first, clicks, _) in old.items()}
            for story, (first, clicks) in self._clicks.get(delivery_id, (delivery, {}))[1].items():
                was_first, was_clicks = merged.get(story, (first, 0))
                merged[story] = (min(was_first, first), was_clicks + clicks)
            edition = self.edition(delivery.edition_id)
            machine = machine_times(
                {story: first for story, (first, _) in merged.items()},
                delivered.get(delivery_id),
                edition.links if edition else len(merged),
            )
            # A reader's clicks judged a person's are their engagement (`reader_engagement`).
            human = [first for story, (first, _) in merged.items() if machine[story] is None]
            if human:
                self._note_reader(delivery, max(human), 1)
            for story, (first, clicks) in merged.items():
                new = (first, clicks, machine[story])
                if old.get(story) == new:
                    continue
                rows.append((delivery_id, story, delivery.edition_id, *new))
                key = (delivery.edition_id, story)
                delta = Counter[tuple[int, int, int, str]]()
                if story in old:
                    _hour_changes(delta, key, old[story][0], old[story][2], -1)
                _hour_changes(delta, key, first, machine[story], 1)
                hours.update(delta)
                if edition is not None:
                    where = (edition.newsletter, edition.slot_at // 86400, edition.positions[story])
                    for (_, _, hour, kind), n in delta.items():
                        if kind == "human":
                            positions[(*where, hour)] += n
        self.db.conn.executemany(
            """INSERT OR REPLACE INTO story_clicks
               (delivery_id, story_id, edition_id, first_at, clicks, machine_at)
               VALUES (?, ?, ?, ?, ?, ?)""",
            rows,
        )
        changes: dict[tuple[int, int, int], list[int]] = {}
        for (edition_id, story, hour, kind), n in hours.items():
            changes.setdefault((edition_id, story, hour), [0, 0])[kind == "machine"] += n
        self.db.conn.executemany(
            """INSERT INTO story_click_hours (edition_id, story_id, hour, human, machine)
               VALUES (?, ?, ?, ?, ?)
               ON CONFLICT (edition_id, story_id, hour) DO UPDATE SET
               human = human + excluded.human, machine = machine + excluded.machine""",
            [
                (*key, human, machine)
                for key, (human, machine) in changes.items()
                if human or machine
            ],
        )
        self.db.conn.executemany(
            """INSERT INTO position_click_hours (newsletter, slot_day, position, hour, human)
               VALUES (?, ?, ?, ?, ?)
               ON CONFLICT (newsletter, slot_day, position, hour) DO UPDATE SET
               human = human + excluded.human""",
            [(*key, n) for key, n in positions.items() if n],
        )
        self.db.conn.executemany(
            """INSERT INTO clicks_set_aside (edition_id, reason, clicks) VALUES (?, ?, ?)
               ON CONFLICT (edition_id, reason) DO UPDATE SET clicks = clicks + excluded.clicks""",
            [(edition_id, reason, n) for (edition_id, reason), n in self._set_aside.items()],
        )

    def _change_reader(self, event: Event, subscriber_id: int, newsletter: str | None) -> None:
        """Bounces, complaints and unsubscribes change the reader, as SendGrid now treats them."""
        wanted = _reader_change(event)
        if wanted is None:
            return
        if wanted == "unsubscribed":
            self._unsubscribe(event, subscriber_id, newsletter or event.newsletter)
            return
        current = address_status(self.db, subscriber_id)
        # A complaint is the reader's own word: a bounce reported after it does not replace it.
        if current == "complained" or current == wanted:
            return
        mark_address(self.db, subscriber_id, wanted, "webhook")
        record(
            self.db,
            subscriber_id,
            "provider event",
            "webhook",
            old_status=current,
            new_status=wanted,
            detail=_detail(event, with_id=True),
        )

    def _unsubscribe(self, event: Event, subscriber_id: int, newsletter: str | None) -> None:
        if newsletter is None:
            return
        row = self.db.execute(
            """SELECT status, updated_at FROM subscriptions
               WHERE subscriber_id = ? AND newsletter = ?""",
            [subscriber_id, newsletter],
        ).fetchone()
        # A reader who subscribed again after the event (it arrived late) stays subscribed.
        if row is None or row[0] == "unsubscribed" or row[1] > to_db(_moment(event)):
            return
        set_subscription(self.db, subscriber_id, newsletter, "unsubscribed", "webhook")
        record(
            self.db,
            subscriber_id,
            "provider event",
            "webhook",
            newsletter=newsletter,
            old_status=row[0],
            new_status="unsubscribed",
            detail=_detail(event, with_id=True),
        )

    def _subscriber(self, email: str) -> int | None:
        row = self.db.conn.execute("SELECT id FROM subscribers WHERE email = ?", [email]).fetchone()
        if row is None and ASCII_LABEL in email.casefold():
            # Sent to `ana@xn--bcher-kva.de`, stored as `ana@bücher.de`.
            row = self.db.conn.execute(
                "SELECT id FROM subscribers WHERE email = ?", [lookup_form(email)]
            ).fetchone()
        return row[0] if row else None


def same_mailbox(stored: str, reported: str) -> bool:
    """Whether an event's address is a stored one: as stored, or as sent (an IDN's ASCII form)."""
    if stored.casefold() == reported.casefold():
        return True
    return ASCII_LABEL in reported.casefold() and (
        lookup_form(reported).casefold() == stored.casefold()
    )


def _hour_changes(
    hours: Counter[tuple[int, int, int, str]],
    key: tuple[int, int],
    first_at: int,
    machine_at: int | None,
    sign: int,
) -> None:
    """What one reader's click on a story adds to the hourly sums (`sign` -1 takes it back):
    a person's click in the hour of the first click, turned a machine's in the hour it was."""
    hours[(*key, first_at // 3600, "human")] += sign
    if machine_at is not None:
        hours[(*key, machine_at // 3600, "human")] -= sign
        hours[(*key, machine_at // 3600, "machine")] += sign


def _reader_change(event: Event) -> str | None:
    """What the event makes of the reader: bounced, complained, unsubscribed, or nothing.

    Blocks and deferrals change no one: blocks during an IP's warm-up are not bad addresses.
    """
    if event.name == "bounce" and event.bounce_type == "bounce":
        return "bounced"
    if event.name == "spamreport":
        return "complained"
    if event.name in ("unsubscribe", "group_unsubscribe"):
        return "unsubscribed"
    if event.name == "dropped":
        return DROPPED_LISTS.get(event.reason)
    return None


def _db_time(seconds: int | None) -> str | None:
    return to_db(datetime.fromtimestamp(seconds, UTC)) if seconds is not None else None


def _moment(event: Event) -> datetime:
    return datetime.fromtimestamp(event.occurred_at, UTC)


def _detail(event: Event, *, with_id: bool = False) -> str:
    """The reason, SMTP status and classification of an event, as one line."""
    kind = "hard bounce" if event.name == "bounce" and event.bounce_type == "bounce" else None
    parts = [kind or event.name]
    if event.smtp_status:
        parts.append(event.smtp_status)
    if event.reason:
        parts.append(event.reason)
    if event.classification:
        parts.append(f"({event.classification})")
    if with_id:
        parts.append(f"[event {event.sg_event_id or 'without id'} at {to_db(_moment(event))}]")
    return " ".join(parts)[: MAX_TEXT * 2]


def editions_heard_from(db: Database, edition_ids: Iterable[int]) -> dict[int, int]:
    """Per edition, how many of its batches the webhook has had events for."""
    ids = list(edition_ids)
    if not ids:
        return {}
    rows = db.execute(
        f"""SELECT edition_id, COUNT(DISTINCT batch_key) FROM events
            WHERE edition_id IN ({",".join("?" * len(ids))}) GROUP BY edition_id""",
        ids,
    )
    return dict(rows.fetchall())


def last_event_received(db: Database) -> str | None:
    """When the webhook last stored a post (any post), or None if it never has."""
    row = db.execute("SELECT MAX(received_at) FROM webhook_posts").fetchone()
    return row[0] if row else None


def unknown_batch_hint(db: Database, edition_id: int, batch_key: str) -> str:
    """What the webhook says about an unknown batch, from events for the edition's other batches.

    Events for its other batches but none for this one: this one most likely never reached
    SendGrid (any event of it would have settled it). None at all: the webhook may be silent,
    so its silence proves nothing.
    """
    row = db.execute(
        """SELECT COUNT(DISTINCT batch_key) FROM events
           WHERE edition_id = ? AND batch_key IS NOT NULL AND batch_key != ?""",
        [edition_id, batch_key],
    ).fetchone()
    if row[0]:
        return (
            f"the webhook has had events for {row[0]} other batch(es) of this edition and none "
            "for this one, so it probably never reached SendGrid"
        )
    last = last_event_received(db)
    heard = f"its last post came at {last}" if last else "it has never received a post"
    return (
        f"the webhook is silent about this edition ({heard}), so it may or may not have left; "
        "check the webhook and SendGrid's activity log before resending"
    )
