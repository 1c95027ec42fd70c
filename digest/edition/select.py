"""Choose an edition's top stories and recent posts: a pure function of stories, readers and a time.

Ranking (also in docs/how-it-works/ranking.md):

    editor_rank = (1 + score) * 0.5 ** (age_hours / half_life_hours)
    rank        = editor_rank * lift ** weight

so a story loses half its weight every `half_life_hours` [12], and a story its readers
clicked more (or less) than its positions predicted moves up (or down). `lift` is the
story's position-corrected, shrunk click-through ratio from the editions of the last
window, counting only events at or before the selection's time (`edition.lift`, passed in
as `lifts`); it is 1 for a story fewer than `engagement.min_impressions` [200] readers got
(unproven), and `engagement.weight` [1] 0 turns it off. A negative editor_rank is divided
by the factor instead, so a lift above 1 always raises a story.

Top stories are the pinned ones first, then by rank, ties newest first, then lowest id, with
at most `per_category` [2] stories from one category. Then exploration: when lift is on,
`round(engagement.exploration * top_stories)` [1 of 5] places go to unproven stories: the
best-ranked unproven ones left out take the places of the lowest-ranked proven, unpinned
chosen ones (within `per_category`). Nothing here reads a clock or a database.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..config import EngagementSettings, NewsletterConfig
from ..models import Selection, Story, StoryEngagement, TopStory

Lifts = Mapping[int, StoryEngagement]
NO_LIFTS: Lifts = {}


def normalize_topics(topics: Iterable[str]) -> tuple[str, ...]:
    """Topics as stored and compared: lower case, stripped, unique, sorted."""
    return tuple(sorted({t.strip().lower() for t in topics if t.strip()}))


def variant_key(topics: Iterable[str], timezone: str | None = None) -> str:
    """The name of the edition variant that readers with these topics share."""
    key = "topics:" + (";".join(normalize_topics(topics)) or "*")
    return f"{key}|tz:{timezone}" if timezone else key


def story_rank(story: Story, now: datetime, half_life_hours: float) -> float:
    """The editor's rank: score decayed by age."""
    age_hours = max(0.0, (now - story.published_at).total_seconds() / 3600)
    return (1 + story.score) * 0.5 ** (age_hours / half_life_hours)


def proven(engagement: StoryEngagement | None, settings: EngagementSettings) -> bool:
    """Whether enough readers got the story for its lift to count."""
    return engagement is not None and engagement.impressions >= settings.min_impressions


def lift_factor(engagement: StoryEngagement | None, settings: EngagementSettings) -> float:
    """What a story's lift multiplies its rank by: 1 when off or unproven."""
    if settings.weight == 0 or engagement is None or not proven(engagement, settings):
        return 1.0
    return float(engagement.lift**settings.weight)


def lifted(rank: float, factor: float) -> float:
    return rank * factor if rank >= 0 else rank / factor


def _in_topics(story: Story, topics: tuple[str, ...]) -> bool:
    return not topics or story.category.strip().lower() in topics


def _newest_first(story: Story) -> tuple[float, int]:
    return (-story.published_at.timestamp(), -story.id)


@dataclass(frozen=True)
class RankedStory:
    """A candidate for the top stories, its rank, and what became of it (see `rank_top_stories`)."""

    story: Story
    rank: float
    # "top", or why not: "per_category" (its category was full), "top_stories" (no room) or
    # "exploration" (its place went to an unproven story).
    outcome: str
    # The rank without lift, and the lift's factor (1: none).
    editor_rank: float = 0.0
    factor: float = 1.0
    # Chosen in an exploration place: unproven, and lift ranking alone left it out.
    explored: bool = False


def _category(story: Story) -> str:
    return story.category.strip().lower()


def rank_top_stories(
    candidates: Iterable[Story], now: datetime, settings: NewsletterConfig, lifts: Lifts = NO_LIFTS
) -> list[RankedStory]:
    """Every candidate in rank order (pinned first), each marked chosen or displaced and by what.

    The one ranking pass: `select_top_stories` keeps the chosen ones, and the studio's lineup
    shows the rest, so a pinned story pushed out by `per_category` is seen, not lost.
    """
    engagement = settings.engagement
    scored = []
    for story in candidates:
        editor_rank = story_rank(story, now, settings.half_life_hours)
        factor = lift_factor(lifts.get(story.id), engagement)
        scored.append((story, lifted(editor_rank, factor), editor_rank, factor))
    scored.sort(key=lambda item: (not item[0].pinned, -item[1], *_newest_first(item[0])))
    per_category: Counter[str] = Counter()
    chosen = 0
    result: list[RankedStory] = []
    for story, rank, editor_rank, factor in scored:
        category = _category(story)
        if chosen == settings.top_stories:
            outcome = "top_stories"
        elif per_category[category] >= settings.per_category:
            outcome = "per_category"
        else:
            per_category[category] += 1
            chosen += 1
            outcome = "top"
        result.append(RankedStory(story, rank, outcome, editor_rank, factor))
    if engagement.weight > 0:
        _explore(result, settings, lifts, per_category)
    return result


def exploration_places(settings: NewsletterConfig) -> int:
    return int(settings.engagement.exploration * settings.top_stories + 0.5)


def _explore(
    ranked: list[RankedStory], settings: NewsletterConfig, lifts: Lifts, per_category: Counter
) -> None:
    """Give unproven stories their exploration places, taken from the lowest-ranked proven,
    unpinned chosen stories (in place: `ranked` keeps its order)."""

    def unproven(item: RankedStory) -> bool:
        return not proven(lifts.get(item.story.id), settings.engagement)

    wanted = exploration_places(settings) - sum(
        1 for r in ranked if r.outcome == "top" and unproven(r)
    )
    for n, item in enumerate(ranked):
        if wanted <= 0:
            return
        if item.outcome == "top" or not unproven(item):
            continue
        category = _category(item.story)
        for m in range(len(ranked) - 1, -1, -1):
            victim = ranked[m]
            if victim.outcome != "top" or victim.story.pinned or unproven(victim):
                continue
            same = _category(victim.story) == category
            if not same and per_category[category] >= settings.per_category:
                continue
            ranked[m] = RankedStory(
                victim.story, victim.rank, "exploration", victim.editor_rank, victim.factor
            )
            ranked[n] = RankedStory(
                item.story, item.rank, "top", item.editor_rank, item.factor, explored=True
            )
            per_category[_category(victim.story)] -= 1
            per_category[category] += 1
            wanted -= 1
            break


def select_top_stories(
    candidates: Iterable[Story], now: datetime, settings: NewsletterConfig, lifts: Lifts = NO_LIFTS
) -> list[TopStory]:
    """Pinned first, then by rank (ties newest first), capped per category, with exploration."""
    return [
        TopStory(story=r.story, rank=r.rank)
        for r in rank_top_stories(candidates, now, settings, lifts)
        if r.outcome == "top"
    ]


def select_recent_posts(
    candidates: Iterable[Story], exclude: Collection[int], limit: int
) -> list[Story]:
    """The newest stories that are not already among the top stories."""
    fresh = [story for story in candidates if story.id not in exclude]
    return sorted(fresh, key=_newest_first)[:limit]


def select_also_read(
    top: list[TopStory],
    pool: Iterable[Story],
    exclude: Collection[int],
    now: datetime,
    settings: NewsletterConfig,
) -> list[TopStory]:
    """Give each top story one related link: the best-ranked other story of its category."""
    taken = set(exclude)
    pool = sorted(
        (s for s in pool if s.category.strip()),
        key=lambda s: (-story_rank(s, now, settings.half_life_hours), *_newest_first(s)),
    )
    result = []
    for item in top:
        category = item.story.category.strip().lower()
        related = (
            next(
                (s for s in pool if s.id not in taken and s.category.strip().lower() == category),
                None,
            )
            if category
            else None
        )
        if related is not None:
            taken.add(related.id)
        result.append(TopStory(story=item.story, rank=item.rank, also_read=related))
    return result


def candidates(
    stories: Iterable[Story],
    now: datetime,
    settings: NewsletterConfig,
    topics: Iterable[str] = (),
    already_sent: Collection[int] = frozenset(),
) -> tuple[list[Story], list[Story]]:
    """The stories an edition may carry (`eligible`), and those of them inside the window.

    Stories published after `now`, outside the reader's topics, or carried by an earlier
    edition to the same readers are never eligible.
    """
    wanted = normalize_topics(topics)
    window_start = now - timedelta(hours=settings.window_hours)
    eligible = [
        s
        for s in stories
        if s.published_at <= now and s.id not in already_sent and _in_topics(s, wanted)
    ]
    return eligible, [s for s in eligible if s.published_at > window_start]


def select_digest(
    stories: Iterable[Story],
    now: datetime,
    settings: NewsletterConfig,
    topics: Iterable[str] = (),
    already_sent: Collection[int] = frozenset(),
    lifts: Lifts = NO_LIFTS,
) -> Selection:
    """The whole selection for one edition variant at `now`.

    `stories` may reach further back than the window (also-read links may come from
    the last `also_read_days`); stories published after `now`, outside the reader's
    topics, or carried by an earlier edition to the same readers are never chosen.
    `lifts` are the stories' engagement as of `now` (`edition.lift.story_lifts`).
    """
    eligible, in_window = candidates(stories, now, settings, topics, already_sent)
    top = select_top_stories(in_window, now, settings, lifts)
    top_ids = {t.story.id for t in top}
    recent = select_recent_posts(in_window, top_ids, settings.recent_posts)
    if settings.also_read:
        used = top_ids | {s.id for s in recent}
        pool_start = now - timedelta(days=settings.also_read_days)
        pool = [s for s in eligible if s.published_at > pool_start]
        top = select_also_read(top, pool, used, now, settings)
    return Selection(top_stories=tuple(top), recent_posts=tuple(recent))
