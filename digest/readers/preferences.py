"""What a reader does from the link in their email: see their subscriptions, leave, or change them.

The link is `<site.url>/u/<token>`, the token naming one reader and the newsletter the email
came from. Opening it changes nothing; leaving and saving preferences are POSTs. The keep
link of a reconfirm email (`<site.url>/keep/<token>`, its own signing salt) works the same
way: opening it shows a button, only the button (a POST) keeps the reader.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from sqlite_utils import Database

from ..clock import utcnow
from ..config import Config
from ..edition.select import normalize_topics
from ..errors import SubscriberError
from ..models import Subscriber
from ..newsroom.stories import categories_published_since
from ..store import write_transaction
from ..tokens import KEEP_SALT, BadTokenError, TokenSigner
from .subscribers import subscriber_for_link, update_profile
from .subscriptions import ADDRESS_WIDE, keep_subscription, set_subscription, subscriptions_of

# The forms offer the categories of stories published this recently, and the reader's own.
TOPICS_WINDOW = timedelta(days=90)


@dataclass(frozen=True)
class ReaderPage:
    """One reader as their page shows them: the newsletter the link is for, and all of theirs."""

    subscriber: Subscriber
    newsletter: str
    subscriptions: dict[str, str]

    @property
    def status(self) -> str:
        """Their status for the link's newsletter ('unsubscribed' when they have none)."""
        return self.subscriptions.get(self.newsletter, "unsubscribed")


def topic_choices(db: Database, current: Iterable[str] = ()) -> tuple[str, ...]:
    """The topics a form offers: recent story categories plus the reader's current ones."""
    recent = categories_published_since(db, utcnow() - TOPICS_WINDOW)
    return normalize_topics(recent + list(current))


def check_topics(db: Database, topics: Iterable[str], current: Iterable[str] = ()) -> list[str]:
    """The topics, if every one is offered; SubscriberError naming the first that is not."""
    offered = set(topic_choices(db, current))
    chosen = list(normalize_topics(topics))
    for topic in chosen:
        if topic not in offered:
            raise SubscriberError(f"unknown topic {topic!r}; choose from the list")
    return chosen


def open_reader_link(
    db: Database, config: Config, token: str, salt: str | None = None
) -> ReaderPage:
    """The reader and newsletter a link names. Raises BadTokenError for a forged or stale one."""
    signer = TokenSigner(config.secret_key, salt) if salt else TokenSigner(config.secret_key)
    claim = signer.read(token)
    subscriber = subscriber_for_link(db, claim)
    if subscriber is None:
        raise BadTokenError(
            "This link is not valid any more: the address it was sent to is no longer on our "
            "list, so there is nothing to change."
        )
    return ReaderPage(subscriber, claim.newsletter, subscriptions_of(db, subscriber.id))


def open_keep_link(db: Database, config: Config, token: str) -> ReaderPage:
    """The reader a reconfirm email's keep link names; changes nothing (a GET shows this)."""
    return open_reader_link(db, config, token, KEEP_SALT)


def keep_by_link(db: Database, config: Config, token: str, *, reader_link: bool) -> ReaderPage:
    """The keep button (or, from the reader's own page, "resume"): they still want it.

    An active reader is not asked any more; a lapsed one is active again. A reader who left
    the newsletter, or whose address bounced, is not changed (their page says what to do).
    """
    page = open_reader_link(db, config, token) if reader_link else open_keep_link(db, config, token)
    if page.subscriber.status not in ADDRESS_WIDE:
        source = "form" if reader_link else "link"
        keep_subscription(db, page.subscriber.id, page.newsletter, utcnow(), source, "kept")
    return open_reader_link(db, config, token, None if reader_link else KEEP_SALT)


def unsubscribe_by_link(db: Database, config: Config, token: str, source: str) -> ReaderPage:
    """Leave the link's newsletter (source 'one-click' or 'form'); leaving twice is harmless."""
    page = open_reader_link(db, config, token)
    set_subscription(db, page.subscriber.id, page.newsletter, "unsubscribed", source)
    return open_reader_link(db, config, token)


def save_preferences(
    db: Database,
    config: Config,
    token: str,
    *,
    topics: Iterable[str],
    timezone: str,
    newsletters: Iterable[str],
) -> ReaderPage:
    """Set the reader's topics, time zone and newsletters from their preferences form.

    A newsletter ticked becomes active (the reader opened a link sent to their address), one
    left unticked becomes unsubscribed.
    """
    page = open_reader_link(db, config, token)
    chosen_topics = check_topics(db, topics, page.subscriber.topics)
    wanted = set(newsletters)
    unknown = wanted - set(config.newsletters)
    if unknown:
        raise SubscriberError(f"unknown newsletter {sorted(unknown)[0]!r}; choose from the list")
    with write_transaction(db):
        update_profile(db, page.subscriber, "form", topics=chosen_topics, timezone=timezone)
        for name in config.newsletters:
            current = page.subscriptions.get(name)
            if name in wanted and current != "active":
                set_subscription(db, page.subscriber.id, name, "active", "form")
            elif name not in wanted and current in ("active", "pending"):
                set_subscription(db, page.subscriber.id, name, "unsubscribed", "form")
    return open_reader_link(db, config, token)
