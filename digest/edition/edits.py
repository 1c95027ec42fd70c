"""An editor's changes to one edition: stories dropped, its own subject and preheader, a note.

An edition is a newsletter's issue of one local date (the `EDITION` of `digest report`):
every time zone's slot on that date builds with the same edits. Every change is a row of
its own (who, when, what), so the rows are the audit trail and the newest one of each kind
is what the edition gets. Nothing here touches the story store: a dropped story is dropped
from this edition only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlite_utils import Database

from ..clock import from_db, to_db, utcnow
from ..errors import DigestError
from ..newsroom.stories import find_story
from ..text import one_line
from .render import PREHEADER_MAX_CHARS, SUBJECT_MAX_CHARS

ACTIONS = ("drop", "restore", "subject", "preheader", "note")
NOTE_MAX_CHARS = 1000
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True)
class EditionEdits:
    """What an edition gets from its editors: stories left out, and texts of its own."""

    dropped: frozenset[int] = frozenset()
    subject: str = ""
    preheader: str = ""
    note: str = ""

    def __bool__(self) -> bool:
        return bool(self.dropped or self.subject or self.preheader or self.note)


@dataclass(frozen=True)
class Edit:
    """One row of the audit trail."""

    id: int
    newsletter: str
    edition: str
    action: str
    story_id: int | None
    value: str
    who: str
    at: datetime

    def describe(self) -> str:
        if self.action in ("drop", "restore"):
            what = f"{'dropped' if self.action == 'drop' else 'restored'} story {self.story_id}"
        elif self.value:
            what = f"set the {self.action} to {self.value!r}"
        else:
            what = f"cleared the {self.action}"
        return f"{self.at:%Y-%m-%d %H:%M} UTC {self.who} {what}"


def edition_date(slot_at: datetime, timezone: str) -> str:
    """The edition a slot belongs to: its local date in the reader's time zone."""
    return f"{slot_at.astimezone(ZoneInfo(timezone)):%Y-%m-%d}"


def check_edition_date(value: str) -> str:
    try:
        return date.fromisoformat(value.strip()).isoformat()
    except ValueError:
        raise DigestError(
            f"Edition {value!r} is not a date; give the edition's local date as YYYY-MM-DD."
        ) from None


def current_edits(db: Database, newsletter: str, edition: str) -> EditionEdits:
    """The edition's edits as they stand: the newest row of each kind (and of each story)."""
    dropped: set[int] = set()
    texts = {"subject": "", "preheader": "", "note": ""}
    for edit in edit_trail(db, newsletter, edition):
        if edit.action == "drop" and edit.story_id is not None:
            dropped.add(edit.story_id)
        elif edit.action == "restore":
            dropped.discard(edit.story_id or 0)
        else:
            texts[edit.action] = edit.value
    return EditionEdits(frozenset(dropped), **texts)


def edit_trail(db: Database, newsletter: str, edition: str | None = None) -> list[Edit]:
    """Every edit of the newsletter's edition (or of all its editions), oldest first."""
    where, params = "newsletter = ?", [newsletter]
    if edition is not None:
        where += " AND edition_date = ?"
        params.append(edition)
    return [
        Edit(
            id=row["id"],
            newsletter=row["newsletter"],
            edition=row["edition_date"],
            action=row["action"],
            story_id=row["story_id"],
            value=row["value"],
            who=row["who"],
            at=from_db(row["at"]),
        )
        for row in db.query(f"SELECT * FROM edition_edits WHERE {where} ORDER BY id", params)
    ]


def _checked_text(action: str, value: str) -> str:
    """The editor's subject, preheader or note, or a DigestError naming what is wrong."""
    if _CONTROL.search(value):
        raise DigestError(f"The {action} has control characters; type plain text.")
    if action == "note":
        text = value.strip().replace("\r\n", "\n")
        limit = NOTE_MAX_CHARS
    else:
        text = one_line(value)
        limit = SUBJECT_MAX_CHARS if action == "subject" else PREHEADER_MAX_CHARS
    if len(text) > limit:
        raise DigestError(
            f"The {action} is {len(text)} characters; at most {limit} fit. Shorten it."
        )
    return text


def record_edit(
    db: Database,
    newsletter: str,
    edition: str,
    action: str,
    who: str,
    *,
    story: str | None = None,
    value: str = "",
) -> Edit:
    """Check and keep one edit; `story` (id or url) for drop and restore, `value` for texts.

    An empty subject, preheader or note goes back to the template's own.
    """
    edition = check_edition_date(edition)
    if action not in ACTIONS:
        raise DigestError(f"Unknown edit {action!r}; one of {', '.join(ACTIONS)}.")
    story_id = None
    if action in ("drop", "restore"):
        if not story or not story.strip():
            raise DigestError(f"Say which story to {action}: its id or url.")
        story_id = find_story(db, story.strip()).id
        value = ""
    else:
        value = _checked_text(action, value)
    cursor = db.execute(
        """INSERT INTO edition_edits (newsletter, edition_date, action, story_id, value, who, at)
           VALUES (?, ?, ?, ?, ?, ?, ?)""",
        [newsletter, edition, action, story_id, value, who, to_db(utcnow())],
    )
    return next(e for e in edit_trail(db, newsletter, edition) if e.id == cursor.lastrowid)
