"""The story table: upsert from sources, reads for selection, editorial pins and scores."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlite_utils import Database

from .clock import from_db, to_db, utcnow
from .errors import DigestError, NotFoundError
from .models import Story
from .store import write_transaction

# Story columns a feed may set; score and pinned are kept when an editor has set them.
FEED_FIELDS = ("guid", "title", "summary", "author", "category", "image_url", "published_at")


@dataclass
class UpsertCounts:
    added: int = 0
    updated: int = 0
    unchanged: int = 0


def upsert_stories(db: Database, stories: Iterable[Mapping[str, Any]], source: str) -> UpsertCounts:
    """Insert new stories and update changed ones, matching by guid first, then by url.

    Each story is a mapping with `url`, `title` and `published_at` (aware datetime) and
    optionally the other FEED_FIELDS plus `score` and `pinned`.
    """
    counts = UpsertCounts()
    now = to_db(utcnow())
    with write_transaction(db):
        for story in stories:
            row = {key: story.get(key) or "" for key in FEED_FIELDS}
            row["published_at"] = to_db(story["published_at"])
            row["url"] = story["url"]
            row["source"] = source
            existing = None
            if row["guid"]:
                existing = db.execute(
                    "SELECT * FROM stories WHERE guid = ? AND source = ?", [row["guid"], source]
                ).fetchone()
            if existing is None:
                existing = db.execute(
                    "SELECT * FROM stories WHERE url = ?", [row["url"]]
                ).fetchone()
            feed_score = float(story.get("score") or 0)
            feed_pinned = 1 if story.get("pinned") else 0
            if existing is None:
                db.execute(
                    """INSERT INTO stories (url, guid, title, summary, author, category, image_url,
                       published_at, score, pinned, source, ingested_at, updated_at)
                       VALUES (:url, :guid, :title, :summary, :author, :category, :image_url,
                       :published_at, :score, :pinned, :source, :now, :now)""",
                    {**row, "score": feed_score, "pinned": feed_pinned, "now": now},
                )
                counts.added += 1
                continue
            columns = [d[0] for d in db.execute("SELECT * FROM stories LIMIT 0").description]
            current = dict(zip(columns, existing, strict=True))
            wanted = dict(row)
            if not current["editor_locked"]:
                wanted["score"] = feed_score
                wanted["pinned"] = feed_pinned
            changes = {k: v for k, v in wanted.items() if current[k] != v}
            if not changes:
                counts.unchanged += 1
                continue
            if (
                "url" in changes
                and db.execute(
                    "SELECT 1 FROM stories WHERE url = ? AND id != ?",
                    [changes["url"], current["id"]],
                ).fetchone()
            ):
                # Another row already owns the new url; keep the old link rather than merge.
                del changes["url"]
            assignments = ", ".join(f"{k} = :{k}" for k in changes)
            db.execute(
                f"UPDATE stories SET {assignments}, updated_at = :now WHERE id = :id",
                {**changes, "now": now, "id": current["id"]},
            )
            counts.updated += 1
    return counts


def _story(row: Mapping[str, Any]) -> Story:
    return Story(
        id=row["id"],
        url=row["url"],
        title=row["title"],
        published_at=from_db(row["published_at"]),
        summary=row["summary"],
        author=row["author"],
        category=row["category"],
        image_url=row["image_url"],
        score=row["score"],
        pinned=bool(row["pinned"]),
        guid=row["guid"] or "",
        source=row["source"],
    )


def stories_published_between(db: Database, start: datetime, end: datetime) -> list[Story]:
    """Stories with start < published_at <= end, in id order (selection sorts them itself)."""
    rows = db.query(
        "SELECT * FROM stories WHERE published_at > ? AND published_at <= ? ORDER BY id",
        [to_db(start), to_db(end)],
    )
    return [_story(row) for row in rows]


def list_stories(db: Database, limit: int = 50) -> list[Story]:
    rows = db.query("SELECT * FROM stories ORDER BY published_at DESC, id DESC LIMIT ?", [limit])
    return [_story(row) for row in rows]


def find_story(db: Database, ref: str) -> Story:
    """A story by id or url."""
    row = None
    if ref.isdigit():
        row = next(db.query("SELECT * FROM stories WHERE id = ?", [int(ref)]), None)
    if row is None:
        row = next(db.query("SELECT * FROM stories WHERE url = ?", [ref]), None)
    if row is None:
        raise NotFoundError(
            f"No story with id or url {ref!r}; `digest stories list` shows ids and urls."
        )
    return _story(row)


def set_story_editorial(
    db: Database, ref: str, *, pinned: bool | None = None, score: float | None = None
) -> Story:
    """Pin, unpin or score a story; the editor's choice then survives re-ingesting its feed."""
    if score is not None and not math.isfinite(score):
        raise DigestError(f"Score {score} is not a number; give one such as 7 or 2.5.")
    story = find_story(db, ref)
    with db.atomic():
        if pinned is not None:
            db.execute(
                "UPDATE stories SET pinned = ?, editor_locked = 1, updated_at = ? WHERE id = ?",
                [int(pinned), to_db(utcnow()), story.id],
            )
        if score is not None:
            db.execute(
                "UPDATE stories SET score = ?, editor_locked = 1, updated_at = ? WHERE id = ?",
                [float(score), to_db(utcnow()), story.id],
            )
    return find_story(db, str(story.id))
