"""Build an edition variant (select, then render once) for a newsletter slot, and keep it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlite_utils import Database

from ..clock import from_db, to_db, utcnow
from ..config import Config, NewsletterConfig
from ..models import Story
from ..newsroom.stories import stories_published_between
from ..schedule import latest_slot_at, next_slot_after
from ..urls import site_link, variant_copy_path
from .edits import EditionEdits, current_edits, edition_date
from .lift import story_lifts
from .render import Renderer
from .select import NO_LIFTS, Lifts, normalize_topics, select_digest, variant_key


@dataclass(frozen=True)
class Edition:
    """One rendered variant of one newsletter slot: the same bytes for every reader in it."""

    newsletter: str
    slot_at: datetime
    variant: str
    topics: tuple[str, ...]
    timezone: str | None
    subject: str
    preheader: str
    html: str
    text: str
    story_ids: tuple[int, ...]
    id: int | None = None
    # When it was saved, which is when its audience was frozen.
    created_at: datetime | None = None
    warnings: tuple[str, ...] = field(default=(), compare=False)
    # The check errors that hold it ("" when it may go), and who sent it out past them.
    held: str = ""
    forced_by: str = ""

    @property
    def saved_id(self) -> int:
        """The database id: only a saved edition (`save_edition`, `slot_editions`) is sent."""
        if self.id is None:
            raise ValueError(f"Edition {self.slug} is not saved yet")
        return self.id

    @property
    def slug(self) -> str:
        """A file-name-safe name, used for the outbox folder."""
        topics = "+".join(self.topics) or "all"
        zone = f"-{self.timezone.replace('/', '_')}" if self.timezone else ""
        return f"{self.newsletter}-{self.slot_at:%Y%m%dT%H%MZ}-{topics}{zone}"


def latest_slot(
    newsletter: NewsletterConfig, now: datetime, timezone: str | None = None
) -> datetime:
    """The newsletter's latest scheduled time at or before `now`, in UTC.

    The schedule is read in `timezone` (else the newsletter's own), so 07:00 stays 07:00
    local time across daylight-saving changes; `digest.schedule` says how gaps and repeats go.
    """
    return latest_slot_at(newsletter.schedule, timezone or newsletter.timezone, now)


def upcoming_slot(
    newsletter: NewsletterConfig, now: datetime, timezone: str | None = None
) -> datetime:
    """The newsletter's first scheduled time at or after `now`, in UTC: the next one to go."""
    return next_slot_after(
        newsletter.schedule, timezone or newsletter.timezone, now - timedelta(microseconds=1)
    )


def carried_story_ids(db: Database, newsletter: str, variant: str, before: datetime) -> set[int]:
    """Stories that earlier editions of this newsletter already carried to these readers."""
    carried: set[int] = set()
    for row in db.query(
        "SELECT story_ids FROM editions WHERE newsletter = ? AND variant = ? AND slot_at < ?",
        [newsletter, variant, to_db(before)],
    ):
        carried.update(json.loads(row["story_ids"]))
    return carried


def too_few_stories(newsletter: NewsletterConfig, story_count: int) -> bool:
    """Whether a variant with this many new stories is skipped rather than sent."""
    return story_count < max(newsletter.min_stories, 1)


def edition_stories(
    db: Database, newsletter: NewsletterConfig, slot_at: datetime, variant: str
) -> tuple[list[Story], set[int]]:
    """What a variant selects from: the stories of its look-back, and those already carried.

    Stories an editor dropped from this edition are not among them.
    """
    lookback = max(
        timedelta(hours=newsletter.window_hours), timedelta(days=newsletter.also_read_days)
    )
    stories = stories_published_between(db, slot_at - lookback, slot_at)
    dropped = edition_edits(db, newsletter, slot_at, variant_zone(variant)).dropped
    stories = [story for story in stories if story.id not in dropped]
    return stories, carried_story_ids(db, newsletter.name, variant, slot_at)


def edition_lifts(db: Database, newsletter: NewsletterConfig, slot_at: datetime) -> Lifts:
    """The stories' engagement a selection at `slot_at` ranks with; none when `weight` is 0."""
    if newsletter.engagement.weight == 0:
        return NO_LIFTS
    return story_lifts(db, newsletter, slot_at)


def variant_zone(variant: str) -> str | None:
    """The time zone in a variant key (`variant_key`), or None for an all-zones variant."""
    _, _, zone = variant.partition("|tz:")
    return zone or None


def edition_edits(
    db: Database, newsletter: NewsletterConfig, slot_at: datetime, timezone: str | None
) -> EditionEdits:
    """The editors' edits of the edition this slot belongs to (its local date)."""
    return current_edits(
        db, newsletter.name, edition_date(slot_at, timezone or newsletter.timezone)
    )


def build_edition(
    db: Database,
    config: Config,
    renderer: Renderer,
    newsletter: NewsletterConfig,
    slot_at: datetime,
    topics: tuple[str, ...] = (),
    timezone: str | None = None,
    lifts: Lifts | None = None,
) -> tuple[Edition, int]:
    """Select and render one variant; returns the edition (not yet saved) and its story count.

    `lifts` (`edition_lifts` at `slot_at`, read once for a slot's variants) else read here.
    """
    topics = normalize_topics(topics)
    variant = variant_key(topics, timezone)
    stories, carried = edition_stories(db, newsletter, slot_at, variant)
    edits = edition_edits(db, newsletter, slot_at, timezone)
    if lifts is None:
        lifts = edition_lifts(db, newsletter, slot_at)
    selection = select_digest(stories, slot_at, newsletter, topics, carried, lifts)
    zone = timezone or newsletter.timezone
    local_time = slot_at.astimezone(ZoneInfo(zone))
    web_url = (
        site_link(config, variant_copy_path(newsletter.name, local_time, topics, zone))
        if newsletter.archive
        else ""
    )
    rendered = renderer.render_edition(
        newsletter,
        config.site,
        selection,
        local_time,
        topics,
        web_url=web_url,
        subject=edits.subject,
        preheader=edits.preheader,
        note=edits.note,
    )
    edition = Edition(
        newsletter=newsletter.name,
        slot_at=slot_at,
        variant=variant,
        topics=topics,
        timezone=timezone,
        subject=rendered.subject,
        preheader=rendered.preheader,
        html=rendered.html,
        text=rendered.text,
        story_ids=tuple(selection.story_ids),
        warnings=tuple(rendered.warnings),
    )
    return edition, len(selection)


def _edition(row: dict) -> Edition:
    return Edition(
        id=row["id"],
        newsletter=row["newsletter"],
        slot_at=from_db(row["slot_at"]),
        variant=row["variant"],
        topics=tuple(t for t in row["topics"].split(";") if t),
        timezone=row["timezone"],
        subject=row["subject"],
        preheader=row["preheader"],
        html=row["html"],
        text=row["text"],
        story_ids=tuple(json.loads(row["story_ids"])),
        created_at=from_db(row["created_at"]),
        held=row["held"],
        forced_by=row["forced_by"],
    )


def slot_editions(
    db: Database, newsletter: str, slot_at: datetime, timezone: str | None
) -> list[Edition]:
    """The editions of one newsletter slot (in one time zone, or the all-zones one), in order."""
    rows = db.query(
        """SELECT * FROM editions WHERE newsletter = ? AND slot_at = ? AND timezone IS ?
           ORDER BY id""",
        [newsletter, to_db(slot_at), timezone],
    )
    return [_edition(row) for row in rows]


def slot_edition_ids(db: Database, newsletter: str, slot_at: datetime, timezone: str) -> list[int]:
    """The ids of a slot's editions in one time zone (what `slot_editions` finds, unloaded)."""
    rows = db.execute(
        "SELECT id FROM editions WHERE newsletter = ? AND slot_at = ? AND timezone = ?",
        [newsletter, to_db(slot_at), timezone],
    )
    return [edition_id for (edition_id,) in rows]


def edition_slot(db: Database, edition_id: int) -> tuple[str, datetime, str | None]:
    """The newsletter, slot time and time zone of an edition."""
    newsletter, slot_at, timezone = db.execute(
        "SELECT newsletter, slot_at, timezone FROM editions WHERE id = ?", [edition_id]
    ).fetchone()
    return newsletter, from_db(slot_at), timezone


def save_edition(db: Database, edition: Edition) -> Edition:
    """Store a built edition; call inside the transaction that queues its audience."""
    created_at = utcnow()
    cursor = db.execute(
        """INSERT INTO editions (newsletter, slot_at, variant, topics, timezone, subject,
           preheader, html, text, story_ids, created_at, held, forced_by)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        [
            edition.newsletter,
            to_db(edition.slot_at),
            edition.variant,
            ";".join(edition.topics),
            edition.timezone,
            edition.subject,
            edition.preheader,
            edition.html,
            edition.text,
            json.dumps(list(edition.story_ids)),
            to_db(created_at),
            edition.held,
            edition.forced_by,
        ],
    )
    # What lift reads of an edition, without reading past its HTML (`edition.lift`).
    db.execute(
        """INSERT INTO edition_lineups (edition_id, newsletter, slot_at, story_ids, stories)
           VALUES (?, ?, ?, ?, ?)""",
        [
            cursor.lastrowid,
            edition.newsletter,
            to_db(edition.slot_at),
            json.dumps(list(edition.story_ids)),
            len(edition.story_ids),
        ],
    )
    return replace(edition, id=cursor.lastrowid, created_at=created_at)


def update_held_edition(db: Database, edition: Edition) -> None:
    """Store a held edition's rebuilt content and whether it is still held or forced out.

    Its audience was frozen when it was first saved: only what they will get changes.
    """
    db.execute(
        """UPDATE editions SET subject = ?, preheader = ?, html = ?, text = ?, story_ids = ?,
           held = ?, forced_by = ? WHERE id = ?""",
        [
            edition.subject,
            edition.preheader,
            edition.html,
            edition.text,
            json.dumps(list(edition.story_ids)),
            edition.held,
            edition.forced_by,
            edition.saved_id,
        ],
    )
