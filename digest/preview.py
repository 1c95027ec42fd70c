"""Write exactly what a reader would get, as files an editor opens in a browser; sends nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlite_utils import Database

from .config import Config
from .edition import build_edition, latest_slot
from .ledger import Recipient
from .personalize import personalize, recipient_values
from .readers.subscribers import get_subscriber
from .render import Renderer
from .urls import ReaderLinks

SAMPLE_READER = Recipient(
    delivery_id=0,
    subscriber_id=0,
    email="reader@example.com",
    name="Sample Reader",
    link_nonce="0" * 16,
)


@dataclass(frozen=True)
class Preview:
    html_path: Path
    text_path: Path
    subject: str
    reader: str
    story_count: int
    warnings: tuple[str, ...]


def write_preview(
    db: Database,
    config: Config,
    newsletter_name: str | None,
    now: datetime,
    out_dir: Path,
    as_email: str | None = None,
) -> Preview:
    """Render the edition `digest send` would send at `now`, personalized for one reader."""
    newsletter = config.newsletter(newsletter_name)
    topics: tuple[str, ...] = ()
    reader = SAMPLE_READER
    if as_email:
        subscriber = get_subscriber(db, as_email)
        topics = subscriber.topics
        reader = Recipient(
            0, subscriber.id, subscriber.email, subscriber.name, subscriber.link_nonce
        )
    edition, story_count = build_edition(
        db, config, Renderer(config.templates_dir), newsletter, latest_slot(newsletter, now), topics
    )
    url = ReaderLinks(config, newsletter.name).unsubscribe_url(
        reader.subscriber_id, reader.link_nonce
    )
    values = recipient_values(reader.name, url)
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path = out_dir / f"{newsletter.name}.html"
    text_path = out_dir / f"{newsletter.name}.txt"
    html_path.write_text(personalize(edition.html, values), encoding="utf-8")
    text_path.write_text(personalize(edition.text, values), encoding="utf-8")
    return Preview(
        html_path, text_path, edition.subject, reader.email, story_count, edition.warnings
    )
