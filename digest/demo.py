"""The embedded default: sample stories and readers, one digest through the outbox, a preview."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from .config import SHIPPED, Config, with_overrides
from .delivery.send import SendReport, send_newsletter
from .delivery.transports.outbox import OutboxTransport
from .edition.build import latest_slot
from .newsroom.stories import UpsertCounts, upsert_stories
from .preview import Preview, write_preview
from .readers.subscribers import ImportReport, import_csv
from .store import open_db

SAMPLE_STORIES = Path(__file__).resolve().parent / "data" / "sample_stories.jsonl"
EXAMPLE_SUBSCRIBERS = SHIPPED / "subscribers" / "example.csv"


def sample_stories(published_before: datetime) -> list[dict]:
    """The sample stories with publish times counted back from `published_before`."""
    stories = []
    for line in SAMPLE_STORIES.read_text(encoding="utf-8").splitlines():
        if line.strip():
            story = json.loads(line)
            story["published_at"] = published_before - timedelta(minutes=story.pop("age_minutes"))
            stories.append(story)
    return stories


@dataclass(frozen=True)
class DemoReport:
    directory: Path
    stories: UpsertCounts
    subscribers: ImportReport
    send: SendReport
    outbox: Path
    preview: Preview


def run_demo(config: Config, directory: Path, now: datetime) -> DemoReport:
    """Start `directory` afresh and run the whole job in it on the built-in sample content."""
    directory = directory.resolve()
    for name in ("digest.db", "digest.db-wal", "digest.db-shm"):
        (directory / name).unlink(missing_ok=True)
    for name in ("outbox", "preview"):
        shutil.rmtree(directory / name, ignore_errors=True)
    config = with_overrides(
        config,
        db_path=directory / "digest.db",
        outbox_dir=directory / "outbox",
        transport="outbox",
    )
    newsletter = config.newsletter(None)
    db = open_db(config.db_path)
    try:
        stories = upsert_stories(db, sample_stories(latest_slot(newsletter, now)), "sample")
        readers = import_csv(db, EXAMPLE_SUBSCRIBERS, newsletter.name)
        report = send_newsletter(
            db, config, newsletter.name, now, transport=OutboxTransport(config), command="demo"
        )
        preview = write_preview(db, config, newsletter.name, now, directory / "preview", last=True)
    finally:
        db.close()
    return DemoReport(directory, stories, readers, report, config.outbox_dir, preview)
