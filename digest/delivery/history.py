"""What each reader was already sent within a slot's window, and the variants it makes.

Per reader, never a repeat: readers who share topics, zone and the window's stories already
sent to them share one variant (rendered once); a reader whose history differs (moved zone,
changed topics, re-subscribed, got a demo or another newsletter) gets a variant of their
own, named by what makes it different. The histories come from one grouped query over the
ledger rows of the window's editions (`ledger.collect_histories`), never one per reader.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlite_utils import Database

from ..clock import to_db
from ..config import NewsletterConfig
from ..edition.build import window_start
from ..edition.select import in_topics
from ..models import Story
from .ledger import audience_editions, collect_histories, reader_editions


@dataclass(frozen=True)
class SentEdition:
    """An edition of the window, as a history sees it."""

    id: int
    newsletter: str
    timezone: str | None
    topics: str
    # Its stories published inside the window and still in the store.
    story_ids: frozenset[int]


@dataclass(frozen=True)
class VariantGroup:
    """The readers of one topic set who share a history: one edition variant."""

    topics: str
    already_sent: frozenset[int]
    # The `collect_histories` keys it takes ('' = readers with no history in the window).
    history_keys: tuple[str, ...]
    # What makes it different, for people: '' for readers with nothing already sent.
    history: str
    # How many readers it has (for readers without history only when counted: else 0).
    readers: int


def window_editions(
    db: Database,
    newsletter: NewsletterConfig,
    slot_at: datetime,
    timezone: str | None,
    stories: Iterable[Story],
) -> dict[int, SentEdition]:
    """Every edition (of any newsletter) that may have sent one of the window's stories.

    The slot's own editions are not history. An edition from before the window opened can
    only carry older stories, so only the window's editions are read (by the slot index);
    story ids no longer in the store, or older than the window, are dropped.
    """
    start = window_start(newsletter, slot_at)
    in_window = {s.id for s in stories if start < s.published_at <= slot_at}
    rows = db.execute(
        """SELECT id, newsletter, timezone, topics, story_ids FROM editions
           WHERE slot_at > ? AND NOT (newsletter = ? AND slot_at = ? AND timezone IS ?)""",
        [to_db(start), newsletter.name, to_db(slot_at), timezone],
    )
    found = {}
    for edition_id, name, zone, topics, story_ids in rows:
        carried = in_window.intersection(json.loads(story_ids))
        if carried:
            found[edition_id] = SentEdition(edition_id, name, zone, topics, frozenset(carried))
    return found


def describe_history(
    seen: Iterable[SentEdition], topics: str, timezone: str | None, newsletter: str, count: int
) -> str:
    """A history's name: what makes it different, then how many stories were already sent."""
    seen = list(seen)
    zones = sorted({e.timezone for e in seen if e.timezone and timezone and e.timezone != timezone})
    other_topics = sorted({e.topics for e in seen if e.topics != topics})
    others = sorted({e.newsletter for e in seen if e.newsletter != newsletter})
    if zones:
        reason = "moved from " + ", ".join(zones)
    elif other_topics:
        named = (t.replace(";", "+") or "every topic" for t in other_topics)
        reason = "topics were " + " / ".join(named)
    elif others:
        reason = "also got " + ", ".join(others)
    else:
        reason = "got an earlier edition"
    return f"{reason}: {count} {'story' if count == 1 else 'stories'} already sent"


def _sent_stories(
    seen: Iterable[SentEdition], topics: str, stories: dict[int, Story]
) -> frozenset[int]:
    """The stories of `seen` the topics could choose: the others change nothing."""
    wanted = tuple(t for t in topics.split(";") if t)
    return frozenset(
        i for e in seen for i in e.story_ids if i in stories and in_topics(stories[i], wanted)
    )


def variant_groups(
    db: Database,
    newsletter: NewsletterConfig,
    slot_at: datetime,
    timezone: str | None,
    topic_sets: Iterable[tuple[str, int | None]],
    stories: Iterable[Story],
) -> list[VariantGroup]:
    """The slot's variants: each topic set's readers, grouped by what they were already sent.

    `topic_sets` are the audience's topic sets with their readers (None when not counted).
    Histories that exclude the same stories for a topic set share a variant; one whose
    stories lie outside the topics joins the readers with none.
    """
    by_id = {s.id: s for s in stories}
    editions = window_editions(db, newsletter, slot_at, timezone, by_id.values())
    histories: dict[str, list[tuple[str, int]]] = {}
    for topics, key, readers in collect_histories(db, newsletter.name, timezone, list(editions)):
        histories.setdefault(topics, []).append((key, readers))
    totals = dict(topic_sets)
    groups = []
    for topics in sorted(totals.keys() | histories.keys()):
        merged: dict[frozenset[int], list[tuple[str, int]]] = {frozenset(): []}
        for key, readers in histories.get(topics, []):
            sent = _sent_stories((editions[int(i)] for i in key.split(",")), topics, by_id)
            merged.setdefault(sent, []).append((key, readers))
        total = totals.get(topics)
        with_history = sum(n for _, n in histories.get(topics, []))
        for sent, members in merged.items():
            readers = sum(n for _, n in members)
            if not sent:
                members = [("", max((total or 0) - with_history, 0)), *members]
                readers = sum(n for _, n in members) if total is not None else 0
            name = ""
            if sent:
                seen = [editions[int(i)] for key, _ in members for i in key.split(",")]
                name = describe_history(seen, topics, timezone, newsletter.name, len(sent))
            keys = tuple(key for key, _ in members)
            groups.append(VariantGroup(topics, sent, keys, name, readers))
    return groups


def reader_history(
    db: Database,
    newsletter: NewsletterConfig,
    slot_at: datetime,
    timezone: str | None,
    subscriber_id: int,
    topics: str,
    stories: Iterable[Story],
) -> tuple[frozenset[int], str]:
    """One reader's history at the slot: the stories already sent to them, and its name."""
    by_id = {s.id: s for s in stories}
    editions = window_editions(db, newsletter, slot_at, timezone, by_id.values())
    seen = [editions[i] for i in reader_editions(db, subscriber_id, list(editions))]
    sent = _sent_stories(seen, topics, by_id)
    if not sent:
        return sent, ""
    return sent, describe_history(seen, topics, timezone, newsletter.name, len(sent))


def audience_history(
    db: Database,
    newsletter: NewsletterConfig,
    slot_at: datetime,
    timezone: str | None,
    edition_id: int,
    topics: str,
    stories: Iterable[Story],
) -> frozenset[int]:
    """The window's stories any reader queued in a saved edition was sent by another edition.

    A held variant is rebuilt after its readers were frozen: another send may have reached
    them meanwhile, and its stories must not come back in the rebuilt one.
    """
    by_id = {s.id: s for s in stories}
    editions = window_editions(db, newsletter, slot_at, timezone, by_id.values())
    seen = [editions[i] for i in audience_editions(db, edition_id, list(editions))]
    return _sent_stories(seen, topics, by_id)
