"""The story table: upsert from sources, reads for selection, editorial pins and scores."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlite_utils import Database

from ..clock import from_db, to_db, utcnow
from ..errors import DigestError, NotFoundError
from ..invocation import digest_command
from ..models import Story
from ..store import write_transaction

# Story text a source may leave empty; then it does not carry it (see upsert_stories).
_OPTIONAL_TEXT = ("summary", "author", "category", "image_url")


@dataclass
class UpsertCounts:
    added: int = 0
    updated: int = 0
    unchanged: int = 0


def upsert_stories(db: Database, stories: Iterable[Mapping[str, Any]], source: str) -> UpsertCounts:
    """Insert new stories and update changed ones, matching by guid first, then by url.

    Each story is a mapping with `url`, `title` and `published_at` (aware datetime) and
    optionally `guid`, `summary`, `author`, `category`, `image_url`, `score` and `pinned`.
    A field a source does not carry (empty text, None score or pin) never wipes what another
    source or an editor set:
    ranking signals often come from a second source, read before or after the feed. The
    guid (once set) and the `source` column stay with the source that first brought it in, and
    score and pin stay with the editor once `digest stories pin/score` set them.
    """
    counts = UpsertCounts()
    now = to_db(utcnow())
    with write_transaction(db):
        for story in stories:
            carried: dict[str, Any] = {
                "url": story["url"],
                "title": story["title"],
                "published_at": to_db(story["published_at"]),
            }
            carried |= {key: story[key] for key in _OPTIONAL_TEXT if story.get(key)}
            guid = story.get("guid") or ""
            existing = None
            if guid:
                existing = db.execute(
                    "SELECT * FROM stories WHERE guid = ? AND source = ?", [guid, source]
                ).fetchone()
            if existing is None:
                existing = db.execute(
                    "SELECT * FROM stories WHERE url = ?", [carried["url"]]
                ).fetchone()
            signals = {}
            if story.get("score") is not None:
                signals["score"] = float(story["score"])
            if story.get("pinned") is not None:
                signals["pinned"] = 1 if story["pinned"] else 0
            if existing is None:
                db.execute(
                    """INSERT INTO stories (url, guid, title, summary, author, category, image_url,
                       published_at, score, pinned, source, ingested_at, updated_at)
                       VALUES (:url, :guid, :title, :summary, :author, :category, :image_url,
                       :published_at, :score, :pinned, :source, :now, :now)""",
                    dict.fromkeys(_OPTIONAL_TEXT, "")
                    | {"score": 0.0, "pinned": 0}
                    | carried
                    | signals
                    | {"guid": guid, "source": source, "now": now},
                )
                counts.added += 1
                continue
            columns = [d[0] for d in db.execute("SELECT * FROM stories LIMIT 0").description]
            current = dict(zip(columns, existing, strict=True))
            wanted = dict(carried)
            if guid and (current["source"] == source or not current["guid"]):
                wanted["guid"] = guid
            if not current["editor_locked"]:
                wanted |= signals
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
                if not changes:
                    counts.unchanged += 1
                    continue
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


def categories_published_since(db: Database, since: datetime) -> list[str]:
    """The categories of stories published after `since` (not normalized; '' left out)."""
    rows = db.execute(
        "SELECT DISTINCT category FROM stories WHERE published_at > ? AND category != ''",
        [to_db(since)],
    )
    return [category for (category,) in rows]


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
            f"No story with id or url {ref!r}; `{digest_command()} stories list` shows ids and "
            "urls."
        )
    return _story(row)


def set_story_editorial(
    db: Database, ref: str, *, pinned: bool | None = None, score: float | None = None
) -> Story:
    """Pin, unpin or score a story; the editor's choice then survives re-ingesting its feed."""
    if score is not None and not math.isfinite(score):
        raise DigestError(f"Score {score} is not a number; give one such as 7 or 2.5.")
    if score is not None and score < 0:
        raise DigestError(
            f"Score {score:g} is below 0: ranking multiplies by 1 + score, so a negative score "
            "would rank the story by age backwards. Give 0 (ranked by freshness alone) or "
            "more; to leave a story out of one edition, drop it from that edition."
        )
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


def stories_by_ids(db: Database, ids: Iterable[int]) -> list[Story]:
    """The stories with these ids, in the order given (ids no longer stored are left out)."""
    wanted = list(ids)
    found = (
        {
            row["id"]: _story(row)
            for row in db.query(
                f"SELECT * FROM stories WHERE id IN ({', '.join('?' * len(wanted))})", wanted
            )
        }
        if wanted
        else {}
    )
    return [found[i] for i in wanted if i in found]
