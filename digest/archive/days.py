"""Each newsletter's edition of a day (the editors' edition), frozen when first built.

The editors' edition of a day is what a reader of every topic in the newsletter's home zone
got (or would have got) at that day's slot there. It is built once, from the stories as they
were, and kept: later ingests and edits never rewrite an archived day.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlite_utils import Database

from ..clock import from_db, to_db, utcnow
from ..config import Config, NewsletterConfig
from ..edition.build import build_edition
from ..edition.render import Renderer
from ..errors import NotFoundError
from ..newsroom.stories import stories_by_ids
from ..schedule import slot_times
from ..store import write_transaction
from .copies import web_copy


@dataclass(frozen=True)
class ArchivedStory:
    """A story as an archived day carried it (a snapshot: later edits do not reach it)."""

    title: str
    url: str
    summary: str
    category: str
    author: str
    image: str = ""


@dataclass(frozen=True)
class ArchiveDay:
    """One newsletter's edition of one day, as the archive shows it."""

    newsletter: str
    day: date
    slot_at: datetime
    subject: str
    preheader: str
    html: str
    # The first three titles (what a list shows); `stories` is empty when read for a list.
    leads: tuple[str, ...]
    stories: tuple[ArchivedStory, ...]
    built_at: datetime
    changed_at: datetime
    hidden: bool

    @property
    def image(self) -> str:
        """The first picture the day carried (its social card's image), or ""."""
        return next((s.image for s in self.stories if s.image), "")

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(sorted({s.category.strip().lower() for s in self.stories if s.category}))


def _day(row: dict) -> ArchiveDay:
    return ArchiveDay(
        newsletter=row["newsletter"],
        day=date.fromisoformat(row["day"]),
        slot_at=from_db(row["slot_at"]),
        subject=row["subject"],
        preheader=row["preheader"],
        html=row.get("html", ""),
        leads=tuple(json.loads(row["leads"])),
        stories=tuple(ArchivedStory(**s) for s in json.loads(row.get("stories", "[]"))),
        built_at=from_db(row["built_at"]),
        changed_at=from_db(row["changed_at"]),
        hidden=bool(row["hidden"]),
    )


# An edition some reader was sent (one held by its checks or an editor is saved, not sent).
_WENT_OUT = "EXISTS (SELECT 1 FROM deliveries d WHERE d.edition_id = e.id AND d.status = 'sent')"


def home_slot(newsletter: NewsletterConfig, day: date) -> datetime | None:
    """The newsletter's first slot of `day` in its home zone (UTC), if it has one that day."""
    zone = ZoneInfo(newsletter.timezone)
    start = datetime.combine(day, time(), zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(), zone).astimezone(UTC)
    slots = slot_times(newsletter.schedule, newsletter.timezone, start - timedelta(seconds=1), end)
    slots = [slot for slot in slots if slot < end]
    return slots[0] if slots else None


def _sent_days(db: Database, newsletter: NewsletterConfig, since: date | None) -> set[date]:
    """The days on which the newsletter saved an edition (from `since` on): each edition's
    day in the home zone and in its own, so a day whose home-zone slot only readers far
    east or west were sent still counts."""
    home = ZoneInfo(newsletter.timezone)
    query = "SELECT DISTINCT slot_at, timezone FROM editions WHERE newsletter = ?"
    params: list[str] = [newsletter.name]
    if since is not None:
        query += " AND slot_at >= ?"
        params.append(to_db(datetime.combine(since, time(), UTC)))
    days = set()
    for slot_at, timezone in db.execute(query, params):
        slot = from_db(slot_at)
        days.add(slot.astimezone(home).date())
        if timezone:
            days.add(slot.astimezone(ZoneInfo(timezone)).date())
    return days


def due_days(
    db: Database, newsletter: NewsletterConfig, now: datetime
) -> list[tuple[date, datetime]]:
    """The days (with their home-zone slot) the newsletter sent on that are not archived yet
    and whose home-zone slot has gone out (or is past its grace), oldest first.

    Only days from two before the latest archived one are looked at again (a per-zone send
    can land on a home day before that day's own slot), so a request does not rescan years.
    """
    latest = db.execute(
        "SELECT MAX(day) FROM archive_days WHERE newsletter = ?", [newsletter.name]
    ).fetchone()[0]
    since = date.fromisoformat(latest) - timedelta(days=2) if latest else None
    days = _sent_days(db, newsletter, since)
    known = {
        date.fromisoformat(day)
        for (day,) in db.execute(
            "SELECT day FROM archive_days WHERE newsletter = ? AND day >= ?",
            [newsletter.name, since.isoformat() if since else ""],
        )
    }
    due = []
    for day in sorted(days - known):
        slot = home_slot(newsletter, day)
        if slot is not None and slot <= now and _home_slot_settled(db, newsletter, slot, now):
            due.append((day, slot))
    return due


def _home_slot_settled(
    db: Database, newsletter: NewsletterConfig, slot: datetime, now: datetime
) -> bool:
    """Whether the home-zone slot has gone out (its editions are frozen) or never will (its
    grace is over): before that, a day built now could differ from what its readers get."""
    if now >= slot + timedelta(hours=newsletter.grace_hours):
        return True
    started = db.execute(
        f"""SELECT 1 FROM editions e WHERE newsletter = ? AND slot_at = ?
           AND (timezone = ? OR timezone IS NULL) AND {_WENT_OUT} LIMIT 1""",
        [newsletter.name, to_db(slot), newsletter.timezone],
    ).fetchone()
    return started is not None


def _home_edition(db: Database, newsletter: NewsletterConfig, slot: datetime) -> dict | None:
    """The all-topics edition sent at the home-zone slot, if one went out."""
    rows = list(
        db.query(
            f"""SELECT subject, preheader, html, story_ids FROM editions e
               WHERE newsletter = ? AND slot_at = ? AND topics = ''
               AND (timezone = ? OR timezone IS NULL) AND {_WENT_OUT}
               ORDER BY timezone IS NULL, id LIMIT 1""",
            [newsletter.name, to_db(slot), newsletter.timezone],
        )
    )
    return rows[0] if rows else None


def freeze_day(
    db: Database,
    config: Config,
    renderer: Renderer,
    newsletter: NewsletterConfig,
    day: date,
    slot: datetime,
) -> None:
    """Build and keep the editors' edition of `day` (a no-op if it is already kept)."""
    sent = _home_edition(db, newsletter, slot)
    if sent is not None:
        subject, preheader, email_html = sent["subject"], sent["preheader"], sent["html"]
        story_ids: list[int] = json.loads(sent["story_ids"])
    else:
        edition, _count = build_edition(
            db, config, renderer, newsletter, slot, (), newsletter.timezone
        )
        subject, preheader, email_html = edition.subject, edition.preheader, edition.html
        story_ids = list(edition.story_ids)
    stories = [
        {
            "title": s.title,
            "url": s.url,
            "summary": s.summary,
            "category": s.category,
            "author": s.author,
            "image": s.image_url,
        }
        for s in stories_by_ids(db, story_ids)
    ]
    now = to_db(utcnow())
    with write_transaction(db):
        # Two requests may freeze the same day at once: the first one's copy stays.
        db.execute(
            """INSERT OR IGNORE INTO archive_days (newsletter, day, slot_at, subject,
               preheader, html, stories, leads, topics, built_at, changed_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            [
                newsletter.name,
                day.isoformat(),
                to_db(slot),
                subject,
                preheader,
                web_copy(config, newsletter, email_html),
                json.dumps(stories, ensure_ascii=False),
                json.dumps([s["title"] for s in stories[:3]], ensure_ascii=False),
                ";".join(sorted({s["category"].strip().lower() for s in stories if s["category"]})),
                now,
                now,
            ],
        )


_LISTED = "newsletter, day, slot_at, subject, preheader, leads, built_at, changed_at, hidden"


def shown_days(db: Database, newsletter: str, offset: int = 0, limit: int = 50) -> list[ArchiveDay]:
    """A newsletter's archived days that are not hidden, newest first (without their HTML)."""
    rows = db.query(
        f"""SELECT {_LISTED} FROM archive_days WHERE newsletter = ? AND hidden = 0
            ORDER BY day DESC LIMIT ? OFFSET ?""",
        [newsletter, limit, offset],
    )
    return [_day(row) for row in rows]


def shown_days_with_html(db: Database, newsletter: str, limit: int) -> list[ArchiveDay]:
    """The newest shown days with their web copies (what a feed carries)."""
    rows = db.query(
        """SELECT * FROM archive_days WHERE newsletter = ? AND hidden = 0
           ORDER BY day DESC LIMIT ?""",
        [newsletter, limit],
    )
    return [_day(row) for row in rows]


def count_shown_days(db: Database, newsletter: str) -> int:
    return int(
        db.execute(
            "SELECT COUNT(*) FROM archive_days WHERE newsletter = ? AND hidden = 0", [newsletter]
        ).fetchone()[0]
    )


def topic_days(db: Database, newsletter: str, topic: str, limit: int) -> list[ArchiveDay]:
    """The newest shown days that carried a story of `topic`."""
    rows = db.query(
        f"""SELECT {_LISTED}, stories FROM archive_days WHERE newsletter = ? AND hidden = 0
            AND instr(';' || topics || ';', ';' || ? || ';') > 0
            ORDER BY day DESC LIMIT ?""",
        [newsletter, topic, limit],
    )
    return [_day(row) for row in rows]


def archived_day(db: Database, newsletter: str, day: date) -> ArchiveDay | None:
    """One archived day, hidden or not."""
    rows = list(
        db.query(
            "SELECT * FROM archive_days WHERE newsletter = ? AND day = ?",
            [newsletter, day.isoformat()],
        )
    )
    return _day(rows[0]) if rows else None


def is_hidden(db: Database, newsletter: str, day: date) -> bool:
    row = db.execute(
        "SELECT hidden FROM archive_days WHERE newsletter = ? AND day = ?",
        [newsletter, day.isoformat()],
    ).fetchone()
    return bool(row and row[0])


def neighbours(db: Database, newsletter: str, day: date) -> tuple[date | None, date | None]:
    """The shown days before and after `day`."""
    before = db.execute(
        """SELECT MAX(day) FROM archive_days WHERE newsletter = ? AND hidden = 0 AND day < ?""",
        [newsletter, day.isoformat()],
    ).fetchone()[0]
    after = db.execute(
        """SELECT MIN(day) FROM archive_days WHERE newsletter = ? AND hidden = 0 AND day > ?""",
        [newsletter, day.isoformat()],
    ).fetchone()[0]
    return (
        date.fromisoformat(before) if before else None,
        date.fromisoformat(after) if after else None,
    )


def last_change(db: Database, newsletter: str | None = None) -> datetime | None:
    """When anything a newsletter's archive shows last changed (a day built, hidden, shown)."""
    if newsletter is None:
        row = db.execute("SELECT MAX(changed_at) FROM archive_days").fetchone()
    else:
        row = db.execute(
            "SELECT MAX(changed_at) FROM archive_days WHERE newsletter = ?", [newsletter]
        ).fetchone()
    return from_db(row[0]) if row[0] else None


def set_hidden(
    db: Database, newsletter: str, day: date, hidden: bool, now: datetime | None = None
) -> ArchiveDay:
    """Withdraw a day from the archive (410 where it was, gone from lists and feeds) or
    bring it back; NotFoundError if the day has no archived edition."""
    with write_transaction(db):
        cursor = db.execute(
            """UPDATE archive_days SET hidden = ?, changed_at = ?
               WHERE newsletter = ? AND day = ?""",
            [int(hidden), to_db(now or utcnow()), newsletter, day.isoformat()],
        )
    if cursor.rowcount == 0:
        raise NotFoundError(
            f"{newsletter} has no archived edition on {day:%Y-%m-%d} (a day is archived once "
            "that day's edition has gone out in the newsletter's home time zone); check the date."
        )
    found = archived_day(db, newsletter, day)
    assert found is not None
    return found
