"""The plain records passed between pipeline stages: stories, readers and selections."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Story:
    id: int
    url: str
    title: str
    published_at: datetime
    summary: str = ""
    author: str = ""
    category: str = ""
    image_url: str = ""
    score: float = 0.0
    pinned: bool = False
    guid: str = ""
    source: str = ""


@dataclass(frozen=True)
class StoryEngagement:
    """What a story's readers did with it over some editions, against what its positions predict.

    `impressions`: readers it reached (delivered, or sent with no outcome reported yet);
    clicks are unique readers; `expected_clicks` is the sum over its editions of readers
    times the click-through expected at its position there; `lift` is the shrunk ratio of
    clicks to expected clicks (1: as its positions predict; see `edition.lift`).
    """

    story_id: int
    positions: tuple[int, ...] = ()
    impressions: int = 0
    human_clicks: int = 0
    machine_clicks: int = 0
    expected_clicks: float = 0.0
    lift: float = 1.0

    @property
    def ctr(self) -> float | None:
        return self.human_clicks / self.impressions if self.impressions else None

    @property
    def expected_ctr(self) -> float | None:
        return self.expected_clicks / self.impressions if self.impressions else None


@dataclass(frozen=True)
class TopStory:
    story: Story
    rank: float
    also_read: Story | None = None


@dataclass(frozen=True)
class Selection:
    """What one edition variant carries: top stories first, then recent posts."""

    top_stories: tuple[TopStory, ...]
    recent_posts: tuple[Story, ...]

    @property
    def story_ids(self) -> list[int]:
        """Every story the edition carries, also-read links included."""
        ids = [t.story.id for t in self.top_stories]
        ids += [t.also_read.id for t in self.top_stories if t.also_read]
        ids += [s.id for s in self.recent_posts]
        return ids

    def __len__(self) -> int:
        return len(self.top_stories) + len(self.recent_posts)


@dataclass(frozen=True)
class Subscriber:
    id: int
    email: str
    name: str = ""
    topics: tuple[str, ...] = ()
    timezone: str = "UTC"
    status: str = "active"
    # The random value in the reader's links (see tokens), and whether links of the old
    # format (no nonce, made before the m005 migration) still name them.
    link_nonce: str = ""
    legacy_links: bool = False
