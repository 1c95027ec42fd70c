"""The honest lineup of one edition variant: each candidate, its rank, place, and what displaced it.

Built from the same pieces `build_edition` selects with (`edition_stories`, `select.candidates`,
`select.rank_top_stories`, `select.select_digest`), so it shows the choice the send makes,
and also what that choice left out and why: a pinned story that `per_category` pushed out
is flagged, not silently moved to the recent posts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqlite_utils import Database

from .edition.build import edition_stories
from .edition.lift import story_lifts
from .edition.select import NO_LIFTS, candidates, rank_top_stories, select_digest
from .models import Story, StoryEngagement
from .preview import Target


@dataclass(frozen=True)
class LineupRow:
    story: Story
    rank: float
    # "top 1", "recent 2", "also read (top 3)", "left out", or "sent before".
    place: str
    # Why the story is not where its rank or pin would put it; "" when nothing to say.
    flag: str = ""
    # What its readers did with it in the last window's editions (None: no edition carried it).
    engagement: StoryEngagement | None = None
    # The rank without lift, the lift's factor, and the story's place in the ranking with
    # lift and without (the editor's): what the lift did to its rank.
    editor_rank: float = 0.0
    factor: float = 1.0
    order: int = 0
    editor_order: int = 0
    explored: bool = False

    @property
    def flagged(self) -> bool:
        return bool(self.flag)

    @property
    def moved(self) -> str:
        """What the lift (and exploration) did to the story's place in the ranking."""
        if not self.order or self.order == self.editor_order:
            return "none"
        way = "up" if self.order < self.editor_order else "down"
        return f"{way} {abs(self.editor_order - self.order)} (editor's rank: {self.editor_order})"


def _displaced(newsletter_cap: str, story: Story, settings_value: int) -> str:
    category = story.category.strip().lower() or "no category"
    if newsletter_cap == "per_category":
        return f"displaced by per_category: {settings_value} from {category} already chosen"
    return f"displaced by top_stories: the {settings_value} places were taken"


def lineup(db: Database, target: Target) -> list[LineupRow]:
    """Every candidate of the target's variant in rank order, then those sent before."""
    settings = target.newsletter
    stories, carried = edition_stories(db, settings, target.slot_at, target.variant)
    _, in_window = candidates(stories, target.slot_at, settings, target.topics, carried)
    shown = story_lifts(db, settings, target.slot_at)
    lifts = shown if settings.engagement.weight > 0 else NO_LIFTS
    selection = select_digest(stories, target.slot_at, settings, target.topics, carried, lifts)
    editors = replace(settings, engagement=replace(settings.engagement, weight=0))
    editor_order = {
        r.story.id: n for n, r in enumerate(rank_top_stories(in_window, target.slot_at, editors), 1)
    }
    top = {t.story.id: n for n, t in enumerate(selection.top_stories, 1)}
    recent = {s.id: n for n, s in enumerate(selection.recent_posts, 1)}
    also = {t.also_read.id: top[t.story.id] for t in selection.top_stories if t.also_read}
    rows = []
    ranking = rank_top_stories(in_window, target.slot_at, settings, lifts)
    for order, ranked in enumerate(ranking, 1):
        story = ranked.story
        if story.id in top:
            place = f"top {top[story.id]}"
        elif story.id in recent:
            place = f"recent {recent[story.id]}"
        elif story.id in also:
            place = f"also read (top {also[story.id]})"
        else:
            place = "left out"
        flag = ""
        if ranked.outcome != "top":
            cap = (
                settings.per_category if ranked.outcome == "per_category" else settings.top_stories
            )
            reason = _displaced(ranked.outcome, story, cap)
            if story.pinned or ranked.outcome == "per_category":
                flag = ("pinned, but " if story.pinned else "") + reason
        if ranked.outcome == "exploration":
            flag = "displaced by exploration: its place went to a story too few readers have seen"
        rows.append(
            LineupRow(
                story,
                ranked.rank,
                place,
                flag,
                shown.get(story.id),
                ranked.editor_rank,
                ranked.factor,
                order,
                editor_order[story.id],
                ranked.explored,
            )
        )
    in_rows = {row.story.id for row in rows}
    for story_id, under in also.items():
        if story_id not in in_rows:
            story = next(s for s in stories if s.id == story_id)
            rows.append(
                LineupRow(story, 0.0, f"also read (top {under})", engagement=shown.get(story_id))
            )
    _, sent_before = candidates(stories, target.slot_at, settings, target.topics)
    rows += [
        LineupRow(
            s,
            0.0,
            "sent before",
            "an earlier edition carried it to these readers",
            shown.get(s.id),
        )
        for s in sent_before
        if s.id in carried
    ]
    return rows
