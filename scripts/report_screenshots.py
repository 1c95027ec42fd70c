"""Make the docs' pictures of the report: its charts, the click map and the day strip.

Runs the whole thing for real in a temporary folder: the demo's config with a few hundred
sample readers in three time zones, `digest run` every hour of the last two weeks sending
through the outbox (new sample stories each day), then the webhook events such a send gets
(deliveries, bounces, opens by people and by Apple's proxy, clicks that fall with a story's
place, a few complaints and unsubscribes), drawn from a seeded random generator, stored and
processed by the webhook's own code; then the studio on an ephemeral port of 127.0.0.1 and
Debian's Chromium through Playwright. Run it from the repository:
`.venv/bin/python scripts/report_screenshots.py [--out docs]`.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import tempfile
import threading
from datetime import datetime, timedelta
from html import unescape
from pathlib import Path

from playwright.sync_api import sync_playwright
from werkzeug.serving import make_server

from digest.clock import from_db, utcnow
from digest.config import load_config, with_overrides
from digest.delivery.transports.outbox import OutboxTransport
from digest.demo import sample_stories
from digest.feedback.events import process_pending, store_post
from digest.newsroom.stories import upsert_stories
from digest.readers.subscribers import add_subscriber
from digest.run import run_due
from digest.store import open_db
from digest.studio import create_studio

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
DAYS = 14
ZONES = {"Europe/London": 180, "America/New_York": 90, "Asia/Kolkata": 50}
EVENTS_PER_POST = 2000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        config = load_config(REPO / "digest.toml", env={})
        config = with_overrides(
            config,
            db_path=Path(folder) / "digest.db",
            outbox_dir=Path(folder) / "outbox",
            transport="outbox",
        )
        now = utcnow().replace(minute=30, second=0, microsecond=0)
        newsroom(config, now)
        app = create_studio(lambda: config, OutboxTransport(config), now=now)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            shoot(f"http://127.0.0.1:{server.server_port}", args.out)
        finally:
            server.shutdown()
            thread.join(timeout=10)


def newsroom(config, now: datetime) -> None:
    """Readers, two weeks of editions sent hour by hour, and the events they got back."""
    db = open_db(config.db_path)
    chance = random.Random(24)
    for zone, count in ZONES.items():
        for n in range(count):
            add_subscriber(db, f"reader{n}.{zone.split('/')[1].lower()}@example.com", "", (), zone)
    start = now - timedelta(days=DAYS)
    hour = start
    while hour <= now:
        if hour.hour == 0:
            day = (hour - start).days
            stories = sample_stories(hour + timedelta(hours=1))
            for story in stories:
                story |= {
                    "url": f"{story['url']}-{day}",
                    "guid": f"{story['guid']}-{day}",
                    "pinned": False,
                }
            upsert_stories(db, stories, "sample")
        run_due(db, config, hour, transport=OutboxTransport(config))
        hour += timedelta(hours=1)
    events = list(webhook_events(db, chance))
    for first in range(0, len(events), EVENTS_PER_POST):
        body = json.dumps(events[first : first + EVENTS_PER_POST]).encode()
        store_post(db, body, {"Content-Type": "application/json"}, utcnow())
    process_pending(db)
    db.close()


def webhook_events(db, chance: random.Random):
    """What SendGrid would post about every sent delivery, with custom_args as we send them."""
    rows = db.execute(
        """SELECT d.id, d.edition_id, d.email, d.sent_at, e.html FROM deliveries d
           JOIN editions e ON e.id = d.edition_id WHERE d.status = 'sent'"""
    ).fetchall()
    for delivery_id, edition_id, email, sent_at, html in rows:
        at = from_db(sent_at).timestamp()
        base = {
            "email": email,
            "digest_delivery": str(delivery_id),
            "digest_edition": str(edition_id),
            "sg_message_id": f"msg{delivery_id}.filter",
        }

        def event(name: str, delay: float, base=base, at=at, **fields):
            return base | fields | {"event": name, "timestamp": int(at + delay)}

        yield event("processed", 1)
        fate = chance.random()
        if fate < 0.02:
            yield event("bounce", 30, type="bounce", status="5.1.1", reason="550 no such user")
            continue
        if fate < 0.03:
            yield event("bounce", 30, type="blocked", status="5.7.1", reason="554 blocked")
            continue
        yield event("delivered", 20)
        if chance.random() < 0.25:
            yield event("open", 120, sg_machine_open=True)
        if chance.random() > 0.5:
            continue
        opened = chance.expovariate(1 / 3) * 3600
        if opened > 47 * 3600:
            continue
        yield event("open", opened, sg_machine_open=False)
        links = story_links(html)
        for place, url in enumerate(links, start=1):
            if chance.random() < 0.22 / place**0.7:
                yield event("click", opened + chance.uniform(10, 600), url=url)
        if chance.random() < 0.004:
            yield event("spamreport", opened + 60)
        elif chance.random() < 0.008:
            yield event("unsubscribe", opened + 90)


def story_links(html: str) -> list[str]:
    """Each story link of an email, once, in the order the email shows them."""
    found = re.findall(r'href="([^"]*digest_story=\d+[^"]*)"', html)
    return list(dict.fromkeys(unescape(url) for url in found))


def shoot(base: str, out: Path) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        for scheme, name in (("light", "report-charts.png"), ("dark", "report-charts-dark.png")):
            page = browser.new_page(viewport={"width": 1100, "height": 900}, color_scheme=scheme)
            page.goto(f"{base}/report?last=1")
            page.locator("section.charts").screenshot(path=str(out / name))
            page.close()
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(f"{base}/report?last=1")
        page.get_by_role("link", name="The email and its click map").first.click()
        page.frame_locator("#email").locator("table.container").wait_for()
        page.get_by_label("Click map").check()
        page.frame_locator("#email").locator(".studio-clickmap").first.wait_for()
        page.locator(".views").screenshot(path=str(out / "click-map.png"))
        page.goto(f"{base}/")
        page.locator("section.strip").screenshot(path=str(out / "day-strip.png"))
        browser.close()
    for name in ("report-charts.png", "report-charts-dark.png", "click-map.png", "day-strip.png"):
        path = out / name
        print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
