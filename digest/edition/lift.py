"""Stories' impressions, clicks and position-corrected lift at a moment, from the kept summaries.

Read from the summaries the send and the webhook keep as they go (`edition_lineups`,
`edition_sends`, `reach_hours`, `story_click_hours`, `position_click_hours`), so a slot
reads a few thousand rows, never a day's events nor the editions' HTML (benchmarks/lift.py).
Only editions of slots before `now` count, and of what happened to them only the whole hours
before `now`'s hour: outcomes reported, clicks made and clicks judged a machine's
(`feedback.machines`) by then. So nothing after `now` counts, a preview and the send it
previews agree for the same moment, and a slot's lineup changes at most once an hour.

- **Impressions** of a story: over the editions that carried it, the readers they reached:
  sent, less those whose furthest state reported by then is deferred, dropped, blocked or
  bounced (a reader with no event yet counts as reached).
- **Position** k: its place in the edition's stories (top stories, then also-read links,
  then recent posts), 1 first.
- **Expected click-through at k**, learned from the newsletter's editions of the last
  `engagement.history_days` [28] (whole UTC days, to `now`):
  `(C_k + S0 * p0_k) / (N_k + S0)`, unique human clicks C_k over impressions N_k at k,
  shrunk to the prior `p0_k = 2% / sqrt(k)` (a story-link rate falling with position, as
  examination does in the position-based click model) with the weight of `S0` = 5,000
  impressions, so a new newsletter starts from the prior.
- **Lift** of a story (beta-binomial shrinkage): with E its expected clicks (the sum over its
  editions of impressions times the expected rate at its position there) and p = E / N its
  expected rate, the posterior rate under a Beta(S*p, S*(1-p)) prior is (C + S*p) / (N + S),
  and `lift = (C + S*p) / (E + S*p)` is that over p: 1 with no clicks data, and nearer 1 the
  fewer readers there were (S = 1,000 impressions), so 3 clicks of 10 readers do not
  outrank 300 of 10,000.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from sqlite_utils import Database

from ..clock import to_db
from ..config import NewsletterConfig
from ..models import StoryEngagement

PRIOR_TOP_CTR = 0.02
PRIOR_POSITION_IMPRESSIONS = 5000
PRIOR_STORY_IMPRESSIONS = 1000
# Furthest states of a delivery that did not reach its reader (not yet, or never).
NOT_REACHED = ("deferred", "dropped", "blocked", "bounced")
HOUR = 3600
DAY = 86400

Lineups = dict[int, list[int]]


def prior_ctr(position: int) -> float:
    return PRIOR_TOP_CTR / math.sqrt(position)


def shrunk_lift(clicks: int, impressions: int, expected_clicks: float) -> float:
    """The story's lift: its shrunk click-through over the one its positions predict."""
    if impressions <= 0 or expected_clicks <= 0:
        return 1.0
    pseudo = PRIOR_STORY_IMPRESSIONS * expected_clicks / impressions
    return (clicks + pseudo) / (expected_clicks + pseudo)


def expected_ctr(totals: dict[int, tuple[int, int]], position: int) -> float:
    """The click-through expected at a position: its history shrunk to the prior."""
    impressions, clicks = totals.get(position, (0, 0))
    return (clicks + PRIOR_POSITION_IMPRESSIONS * prior_ctr(position)) / (
        impressions + PRIOR_POSITION_IMPRESSIONS
    )


def story_lifts(
    db: Database, newsletter: NewsletterConfig, now: datetime
) -> dict[int, StoryEngagement]:
    """Every story the newsletter's editions of the last window carried, as of `now`."""
    rows = db.execute(
        """SELECT edition_id, story_ids FROM edition_lineups
           WHERE newsletter = ? AND slot_at > ? AND slot_at < ?""",
        [newsletter.name, to_db(now - timedelta(hours=newsletter.window_hours)), to_db(now)],
    ).fetchall()
    lineups = {edition_id: json.loads(ids) for edition_id, ids in rows}
    hour = int(now.timestamp()) // HOUR
    totals = _position_totals(db, newsletter, now, hour)
    return _engagement(db, lineups, totals, hour)


def editions_engagement(
    db: Database,
    newsletter: NewsletterConfig,
    edition_ids: list[int],
    now: datetime,
    *,
    events_until: datetime | None = None,
) -> dict[int, StoryEngagement]:
    """The engagement of the stories of some editions, against the click-through the
    newsletter's history at `now` expects at each position.

    `events_until` counts events up to another moment (a report counts every event kept).
    """
    lineups = {
        edition_id: json.loads(ids)
        for edition_id, ids in db.execute(
            f"""SELECT edition_id, story_ids FROM edition_lineups
                WHERE edition_id IN ({_in(edition_ids)})"""
        )
    }
    hour = int((events_until or now).timestamp()) // HOUR
    return _engagement(db, lineups, _position_totals(db, newsletter, now, hour), hour)


def expected_by_position(
    db: Database,
    newsletter: NewsletterConfig,
    now: datetime,
    *,
    events_until: datetime | None = None,
) -> list[dict[str, float | int]]:
    """The click-through the newsletter's history at `now` expects at each position (the one
    `editions_engagement` measures stories against), with the impressions it learned from."""
    hour = int((events_until or now).timestamp()) // HOUR
    totals = _position_totals(db, newsletter, now, hour)
    return [
        {"position": k, "impressions": totals[k][0], "expected_ctr": expected_ctr(totals, k)}
        for k in sorted(totals)
    ]


def _engagement(
    db: Database, lineups: Lineups, totals: dict[int, tuple[int, int]], hour: int
) -> dict[int, StoryEngagement]:
    """Each story of the editions: positions, impressions, clicks, expected clicks, lift."""
    reached = _reached(db, list(lineups), hour)
    clicks = _story_clicks(db, list(lineups), hour)
    found: dict[int, list] = {}
    for edition_id, story_ids in lineups.items():
        readers = reached.get(edition_id, 0)
        for position, story_id in enumerate(story_ids, 1):
            human, machine = clicks.get((edition_id, story_id), (0, 0))
            item = found.setdefault(story_id, [set(), 0, 0, 0, 0.0])
            item[0].add(position)
            item[1] += readers
            item[2] += human
            item[3] += machine
            item[4] += readers * expected_ctr(totals, position)
    return {
        story_id: StoryEngagement(
            story_id=story_id,
            positions=tuple(sorted(positions)),
            impressions=readers,
            human_clicks=human,
            machine_clicks=machine,
            expected_clicks=expected,
            lift=shrunk_lift(human, readers, expected),
        )
        for story_id, (positions, readers, human, machine, expected) in found.items()
    }


def _in(ids: list[int]) -> str:
    return ",".join(str(int(i)) for i in ids)


def _reached(db: Database, ids: list[int], hour: int) -> dict[int, int]:
    """Readers each edition reached, by the hours before `hour`."""
    if not ids:
        return {}
    reached = dict(
        db.execute(
            f"SELECT edition_id, readers FROM edition_sends WHERE edition_id IN ({_in(ids)})"
        ).fetchall()
    )
    for edition_id, lost in db.execute(
        f"""SELECT edition_id, SUM(lost) FROM reach_hours
            WHERE edition_id IN ({_in(ids)}) AND hour < ? GROUP BY edition_id""",
        [hour],
    ):
        reached[edition_id] = max(0, reached.get(edition_id, 0) - lost)
    return reached


def _position_totals(
    db: Database, newsletter: NewsletterConfig, now: datetime, hour: int
) -> dict[int, tuple[int, int]]:
    """Impressions and people's clicks per position over the newsletter's history at `now`:
    editions of slots from the first whole UTC day of `history_days` back, before `now`."""
    first_day = int(now.timestamp() - newsletter.engagement.history_days * DAY) // DAY
    where = """l.newsletter = :newsletter AND l.slot_at >= :since AND l.slot_at < :now"""
    params = {
        "newsletter": newsletter.name,
        "since": to_db(datetime.fromtimestamp(first_day * DAY, UTC)),
        "now": to_db(now),
        "hour": hour,
    }
    # Readers reached by editions of n stories: each of positions 1..n had them.
    by_size: dict[int, int] = defaultdict(int)
    for stories, readers in db.execute(
        f"""SELECT l.stories, SUM(s.readers) FROM edition_lineups l
            JOIN edition_sends s ON s.edition_id = l.edition_id
            WHERE {where} GROUP BY l.stories""",
        params,
    ):
        by_size[stories] += readers
    for stories, lost in db.execute(
        f"""SELECT l.stories, SUM(r.lost) FROM edition_lineups l
            JOIN reach_hours r ON r.edition_id = l.edition_id
            WHERE {where} AND r.hour < :hour GROUP BY l.stories""",
        params,
    ):
        by_size[stories] -= lost
    clicks = dict(
        db.execute(
            """SELECT position, SUM(human) FROM position_click_hours
               WHERE newsletter = ? AND slot_day >= ? AND hour < ? GROUP BY position""",
            [newsletter.name, first_day, hour],
        ).fetchall()
    )
    longest = max(by_size, default=0)
    return {
        k: (sum(n for size, n in by_size.items() if size >= k), clicks.get(k, 0))
        for k in range(1, longest + 1)
    }


def _story_clicks(
    db: Database, ids: list[int], hour: int
) -> dict[tuple[int, int], tuple[int, int]]:
    """Unique human and machine clicks per edition and story, by the hours before `hour`."""
    if not ids:
        return {}
    rows = db.execute(
        f"""SELECT edition_id, story_id, SUM(human), SUM(machine) FROM story_click_hours
            WHERE edition_id IN ({_in(ids)}) AND hour < ? GROUP BY edition_id, story_id""",
        [hour],
    )
    return {
        (edition_id, story_id): (human, machine) for edition_id, story_id, human, machine in rows
    }
