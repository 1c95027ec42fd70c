"""Stories' impressions, clicks and position-corrected lift at a moment, from the kept summaries.

Read from the tables the send and the webhook keep as they go (`edition_sends`,
`delivery_states`, `story_click_hours`, `story_clicks`), so a slot reads a few thousand rows,
not a day's events (benchmarks/lift.py). Only what happened at or before `now` counts:
editions of slots by then, outcomes reported by then, clicks made by then and judged a
machine's by then (`feedback.machines`), so a preview and the send it previews agree for
the same moment.

- **Impressions** of a story: over the editions that carried it, the readers they reached:
  sent, less those whose furthest state reported by `now` is deferred, dropped, blocked or
  bounced (a state reported later counts from its own time: until then, the reader was
  reached as far as anyone knew).
- **Position** k: its place in the edition's stories (top stories, then also-read links,
  then recent posts), 1 first.
- **Expected click-through at k**, learned from the newsletter's editions of the last
  `engagement.history_days` [28]: `(C_k + S0 * p0_k) / (N_k + S0)`, unique human clicks C_k
  over impressions N_k at k, shrunk to the prior `p0_k = 2% / sqrt(k)` (a story-link rate
  falling with position, as examination does in the position-based click model) with the
  weight of `S0` = 5,000 impressions, so a new newsletter starts from the prior.
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
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlite_utils import Database

from ..clock import to_db
from ..config import NewsletterConfig
from ..models import StoryEngagement

PRIOR_TOP_CTR = 0.02
PRIOR_POSITION_IMPRESSIONS = 5000
PRIOR_STORY_IMPRESSIONS = 1000
# Furthest states of a delivery that did not reach its reader (not yet, or never).
NOT_REACHED = ("deferred", "dropped", "blocked", "bounced")


def prior_ctr(position: int) -> float:
    return PRIOR_TOP_CTR / math.sqrt(position)


def shrunk_lift(clicks: int, impressions: int, expected_clicks: float) -> float:
    """The story's lift: its shrunk click-through over the one its positions predict."""
    if impressions <= 0 or expected_clicks <= 0:
        return 1.0
    pseudo = PRIOR_STORY_IMPRESSIONS * expected_clicks / impressions
    return (clicks + pseudo) / (expected_clicks + pseudo)


class Figures:
    """Per edition (of a set, at a moment): its stories, readers reached, and per story unique
    human and machine clicks."""

    def __init__(self, db: Database, editions: dict[int, list[int]], now: datetime):
        self.editions = editions
        self.impressions = _impressions(db, list(editions), now)
        self.clicks = _clicks(db, list(editions), now)

    def positions(self, edition_ids: Iterable[int]) -> dict[int, tuple[int, int]]:
        """Impressions and human clicks per position over these editions."""
        totals: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        for edition_id in edition_ids:
            reached = self.impressions.get(edition_id, 0)
            for position, story_id in enumerate(self.editions[edition_id], 1):
                totals[position][0] += reached
                totals[position][1] += self.clicks.get((edition_id, story_id), (0, 0))[0]
        return {k: (n, c) for k, (n, c) in totals.items()}


def expected_ctr(totals: dict[int, tuple[int, int]], position: int) -> float:
    """The click-through expected at a position: its history shrunk to the prior."""
    impressions, clicks = totals.get(position, (0, 0))
    return (clicks + PRIOR_POSITION_IMPRESSIONS * prior_ctr(position)) / (
        impressions + PRIOR_POSITION_IMPRESSIONS
    )


def newsletter_editions(
    db: Database, newsletter: NewsletterConfig, now: datetime
) -> list[tuple[int, str, list[int]]]:
    """The newsletter's editions of its history at `now` (slots in the last `history_days`,
    before `now`: a slot's own editions, sent at `now`, cannot have been read by then), with
    id, slot time and stories in order."""
    since = now - timedelta(days=newsletter.engagement.history_days)
    rows = db.execute(
        """SELECT id, slot_at, story_ids FROM editions
           WHERE newsletter = ? AND slot_at > ? AND slot_at < ? ORDER BY id""",
        [newsletter.name, to_db(since), to_db(now)],
    )
    return [(edition_id, slot_at, json.loads(ids)) for edition_id, slot_at, ids in rows]


def engagement_of(
    figures: Figures, edition_ids: Iterable[int], totals: dict[int, tuple[int, int]]
) -> dict[int, StoryEngagement]:
    """Each story of these editions: positions, impressions, clicks, expected clicks, lift."""
    found: dict[int, list] = {}
    for edition_id in edition_ids:
        reached = figures.impressions.get(edition_id, 0)
        for position, story_id in enumerate(figures.editions[edition_id], 1):
            human, machine = figures.clicks.get((edition_id, story_id), (0, 0))
            item = found.setdefault(story_id, [set(), 0, 0, 0, 0.0])
            item[0].add(position)
            item[1] += reached
            item[2] += human
            item[3] += machine
            item[4] += reached * expected_ctr(totals, position)
    return {
        story_id: StoryEngagement(
            story_id=story_id,
            positions=tuple(sorted(positions)),
            impressions=reached,
            human_clicks=human,
            machine_clicks=machine,
            expected_clicks=expected,
            lift=shrunk_lift(human, reached, expected),
        )
        for story_id, (positions, reached, human, machine, expected) in found.items()
    }


def story_lifts(
    db: Database, newsletter: NewsletterConfig, now: datetime
) -> dict[int, StoryEngagement]:
    """Every story the newsletter's editions of the last window carried, as of `now`."""
    rows = newsletter_editions(db, newsletter, now)
    window_start = to_db(now - timedelta(hours=newsletter.window_hours))
    window = [edition_id for edition_id, slot_at, _ in rows if slot_at > window_start]
    return editions_engagement(db, newsletter, window, now, {i: ids for i, _, ids in rows})


def editions_engagement(
    db: Database,
    newsletter: NewsletterConfig,
    edition_ids: list[int],
    now: datetime,
    history: dict[int, list[int]] | None = None,
    *,
    events_until: datetime | None = None,
) -> dict[int, StoryEngagement]:
    """The engagement of the stories of some editions as of `now`, against the expected
    click-through the newsletter's history at `now` gives each position.

    `events_until` counts events up to another moment (a report counts every event kept).
    """
    if history is None:
        history = {i: ids for i, _, ids in newsletter_editions(db, newsletter, now)}
    editions = dict(history)
    missing = [i for i in edition_ids if i not in editions]
    if missing:
        editions |= {
            edition_id: json.loads(ids)
            for edition_id, ids in db.execute(
                f"SELECT id, story_ids FROM editions WHERE id IN ({_in(missing)})"
            )
        }
    figures = Figures(db, editions, events_until or now)
    return engagement_of(figures, edition_ids, figures.positions(history))


def _in(ids: list[int]) -> str:
    return ",".join(str(int(i)) for i in ids)


def _impressions(db: Database, ids: list[int], now: datetime) -> dict[int, int]:
    if not ids:
        return {}
    reached = dict(
        db.execute(
            f"SELECT edition_id, readers FROM edition_sends WHERE edition_id IN ({_in(ids)})"
        ).fetchall()
    )
    for edition_id, lost in db.execute(
        f"""SELECT edition_id, COUNT(*) FROM delivery_states
            WHERE edition_id IN ({_in(ids)}) AND state IN ({",".join("?" * len(NOT_REACHED))})
              AND occurred_at <= ? GROUP BY edition_id""",
        [*NOT_REACHED, int(now.timestamp())],
    ):
        reached[edition_id] = max(0, reached.get(edition_id, 0) - lost)
    return reached


def _clicks(db: Database, ids: list[int], now: datetime) -> dict[tuple[int, int], tuple[int, int]]:
    """Unique human and machine clicks per edition and story as of `now`: whole hours from the
    hourly sums, the hour under way from the readers' rows."""
    if not ids:
        return {}
    moment = int(now.timestamp())
    hour = moment // 3600
    counts: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0])
    for edition_id, story_id, human, machine in db.execute(
        f"""SELECT edition_id, story_id, SUM(human), SUM(machine) FROM story_click_hours
            WHERE edition_id IN ({_in(ids)}) AND hour < ? GROUP BY edition_id, story_id""",
        [hour],
    ):
        counts[(edition_id, story_id)][0] += human
        counts[(edition_id, story_id)][1] += machine
    for edition_id, story_id, n in db.execute(
        f"""SELECT edition_id, story_id, COUNT(*) FROM story_clicks
            WHERE edition_id IN ({_in(ids)}) AND first_at >= ? AND first_at <= ?
            GROUP BY edition_id, story_id""",
        [hour * 3600, moment],
    ):
        counts[(edition_id, story_id)][0] += n
    for edition_id, story_id, n in db.execute(
        f"""SELECT edition_id, story_id, COUNT(*) FROM story_clicks
            WHERE edition_id IN ({_in(ids)}) AND machine_at IS NOT NULL
              AND machine_at >= ? AND machine_at <= ? GROUP BY edition_id, story_id""",
        [hour * 3600, moment],
    ):
        counts[(edition_id, story_id)][0] -= n
        counts[(edition_id, story_id)][1] += n
    return {key: (human, machine) for key, (human, machine) in counts.items()}
