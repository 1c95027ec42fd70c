"""The honest lineup of one edition variant, in the email's order, each story with its marks.

Built from the same pieces `build_edition` selects with (`edition_stories`, `select.candidates`,
`select.rank_top_stories`, `select.select_digest`), so it shows the choice the send makes,
and also what that choice left out and why: a pinned story that `per_category` pushed out
is flagged, not silently moved to the recent posts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqlite_utils import Database

from .edition.build import edition_edits, edition_stories
from .edition.lift import story_lifts
from .edition.select import NO_LIFTS, candidates, rank_top_stories, select_digest
from .models import Story, StoryEngagement
from .newsroom.stories import find_story
from .preview import Target


@dataclass(frozen=True)
class LineupRow:
    story: Story
    rank: float
    # "top 1", "recent 2", "also read (top 3)", "left out", "dropped" or "sent before".
    place: str
    # Why the story is not where its pin would put it (a real surprise); "" when nothing.
    flag: str = ""
    # What else is worth knowing about its place (what a cap did), shown quietly.
    note: str = ""
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

    @property
    def dropped(self) -> bool:
        return self.place == "dropped"

    @property
    def marks(self) -> tuple[str, ...]:
        """Short marks for the row: pinned, dropped, unscored (ranked by freshness alone)."""
        marks = []
        if self.story.pinned:
            marks.append("pinned")
        if self.dropped:
            marks.append("dropped")
        if self.story.score == 0 and not self.story.pinned:
            marks.append("unscored")
        return tuple(marks)


def _displaced(newsletter_cap: str, story: Story, settings_value: int) -> str:
    category = story.category.strip().lower() or "no category"
    if newsletter_cap == "per_category":
        return f"displaced by per_category: {settings_value} from {category} already chosen"
    return f"displaced by top_stories: the {settings_value} places were taken"


def _order(row: LineupRow) -> tuple[int, int]:
    """The email's order: top stories (each with its also-read), recent posts, then the rest."""
    place, _, number = row.place.partition(" ")
    if place == "top":
        return (0, 2 * int(number))
    if place == "also":
        return (0, 2 * int(row.place.rsplit(" ", 1)[1].rstrip(")")) + 1)
    if place == "recent":
        return (1, int(number))
    return ({"left": 2, "dropped": 3, "sent": 4}.get(place, 5), 0)


def lineup(db: Database, target: Target) -> list[LineupRow]:
    """Every candidate of the target's variant in the email's order, then those left out,
    those an editor dropped from this edition, and those sent before."""
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
        flag = note = ""
        if ranked.outcome != "top":
            cap = (
                settings.per_category if ranked.outcome == "per_category" else settings.top_stories
            )
            note = _displaced(ranked.outcome, story, cap)
            if story.pinned:
                flag, note = "pinned, but " + note, ""
        if ranked.outcome == "exploration":
            note = "displaced by exploration: its place went to a story too few readers have seen"
        rows.append(
            LineupRow(
                story,
                ranked.rank,
                place,
                flag,
                note,
                engagement=shown.get(story.id),
                editor_rank=ranked.editor_rank,
                factor=ranked.factor,
                order=order,
                editor_order=editor_order[story.id],
                explored=ranked.explored,
            )
        )
    in_rows = {row.story.id for row in rows}
    for story_id, under in also.items():
        if story_id not in in_rows:
            story = next(s for s in stories if s.id == story_id)
            rows.append(
                LineupRow(story, 0.0, f"also read (top {under})", engagement=shown.get(story_id))
            )
    rows.sort(key=_order)
    edits = edition_edits(db, settings, target.slot_at, target.timezone)
    rows += [
        LineupRow(find_story(db, str(story_id)), 0.0, "dropped", note="dropped from this edition")
        for story_id in sorted(edits.dropped)
    ]
    _, sent_before = candidates(stories, target.slot_at, settings, target.topics)
    rows += [
        LineupRow(
            s,
            0.0,
            "sent before",
            note="an earlier edition carried it to these readers",
            engagement=shown.get(s.id),
        )
        for s in sent_before
        if s.id in carried
    ]
    return rows
