"""One reader's record: their subscriptions, and every edition they were sent with what came of it.

What the studio's reader page shows: for each delivery, its ledger status, the furthest
delivery state SendGrid told of (delivered, bounced...), opens by a person or only by
Apple's proxy, clicks and the stories clicked, and the edition's stories; and the email
itself, made again from the frozen edition with the reader's links inert.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlite_utils import Database

from ..config import Config
from ..edition.personalize import personalize, recipient_values
from ..errors import NotFoundError
from ..models import Subscriber
from ..readers.subscribers import get_subscriber
from ..readers.subscriptions import subscriptions_of
from ..urls import ReaderLinks


@dataclass(frozen=True)
class SentStory:
    id: int
    # '' when the story has since been deleted from the store.
    title: str
    clicked: bool


@dataclass(frozen=True)
class SentEdition:
    """One delivery of an edition to the reader, and what came of it."""

    delivery_id: int
    edition_id: int
    newsletter: str
    slot_at: str
    timezone: str | None
    subject: str
    # The variant's history ('' for none), see delivery/history.
    history: str
    status: str
    sent_at: str | None
    # The furthest state SendGrid's events proved (delivered, bounced...), '' for none yet.
    state: str
    human_opens: int
    machine_opens: int
    clicks: int
    stories: tuple[SentStory, ...]

    @property
    def opened(self) -> str:
        """'by a person', 'only by Apple's proxy', or '' when no open is known."""
        if self.human_opens:
            return "by a person"
        if self.machine_opens:
            return "only by Apple's proxy"
        return ""


@dataclass(frozen=True)
class ReaderRecord:
    subscriber: Subscriber
    subscriptions: dict[str, str]
    editions: tuple[SentEdition, ...]


def reader_record(db: Database, email: str) -> ReaderRecord:
    """Everything the studio shows of one reader, newest edition first."""
    subscriber = get_subscriber(db, email)
    rows = db.query(
        """SELECT d.id AS delivery_id, d.edition_id, d.status, d.sent_at, e.newsletter,
                  e.slot_at, e.timezone, e.subject, e.history, e.story_ids,
                  COALESCE(s.state, '') AS state, COALESCE(g.human_opens, 0) AS human_opens,
                  COALESCE(g.machine_opens, 0) AS machine_opens, COALESCE(g.clicks, 0) AS clicks
           FROM deliveries d JOIN editions e ON e.id = d.edition_id
           LEFT JOIN delivery_states s ON s.delivery_id = d.id
           LEFT JOIN engagement g ON g.delivery_id = d.id
           WHERE d.subscriber_id = ? ORDER BY e.slot_at DESC, d.id DESC""",
        [subscriber.id],
    )
    editions = []
    for row in rows:
        story_ids = json.loads(row["story_ids"])
        titles = dict(
            db.execute(
                "SELECT id, title FROM stories WHERE id IN (SELECT value FROM json_each(?))",
                [json.dumps(story_ids)],
            ).fetchall()
        )
        clicked = {
            story_id
            for (story_id,) in db.execute(
                """SELECT DISTINCT story_id FROM events WHERE delivery_id = ? AND event = 'click'
                   AND story_id IS NOT NULL""",
                [row["delivery_id"]],
            )
        }
        stories = tuple(SentStory(i, titles.get(i, ""), i in clicked) for i in story_ids)
        fields = {k: row[k] for k in SentEdition.__dataclass_fields__ if k != "stories"}
        editions.append(SentEdition(**fields, stories=stories))
    return ReaderRecord(subscriber, subscriptions_of(db, subscriber.id), tuple(editions))


def frozen_email(
    db: Database, config: Config, edition_id: int, name: str = ""
) -> tuple[str, str, str]:
    """The subject, HTML and text of a frozen edition for a reader of `name`, links inert."""
    row = db.execute(
        "SELECT newsletter, subject, html, text FROM editions WHERE id = ?", [edition_id]
    ).fetchone()
    if row is None:
        raise NotFoundError(f"There is no edition {edition_id}: it may have been deleted.")
    newsletter, subject, html, text = row
    values = recipient_values(name, ReaderLinks(config, newsletter).preview_url())
    return subject, personalize(html, values), personalize(text, values)


def delivered_email(db: Database, config: Config, delivery_id: int) -> tuple[str, str, str]:
    """The subject, HTML and text one reader got from one delivery, links made inert.

    Made again from the frozen edition with the name the ledger kept for them, so it is the
    email they got but for their own links, which would act for them.
    """
    row = db.execute(
        "SELECT edition_id, COALESCE(name, '') FROM deliveries WHERE id = ?", [delivery_id]
    ).fetchone()
    if row is None:
        raise NotFoundError(f"There is no delivery {delivery_id}.")
    return frozen_email(db, config, row[0], row[1])


def find_readers(db: Database, text: str, limit: int = 20) -> list[Subscriber]:
    """Readers whose address contains `text` (case-insensitive), for the studio's search box."""
    needle = text.strip()
    if not needle:
        return []
    escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    emails = [
        email
        for (email,) in db.execute(
            "SELECT email FROM subscribers WHERE email LIKE ? ESCAPE '\\' ORDER BY email LIMIT ?",
            [f"%{escaped}%", limit],
        )
    ]
    return [get_subscriber(db, email) for email in emails]
