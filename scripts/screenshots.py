"""Screenshots of the digest a reader opens, for README's Render section.

    .venv/bin/python scripts/screenshots.py [OUT_DIR]     # default: docs/screenshots

Renders the sample stories through the shipped `digest.toml` and `templates/` (two top
stories and two recent posts, so one picture shows masthead to footer), opens the result
in Debian's Chromium and writes one PNG per width (375 and 680 px), colour scheme (light,
dark) and images (on, off). "Images on" answers every image request with a drawn
placeholder picture; "images off" refuses them, as a mail client that blocks remote images
does. Nothing leaves the machine.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from playwright.sync_api import Route, sync_playwright

from digest.config import load_config, with_overrides
from digest.demo import sample_stories
from digest.edition.build import latest_slot
from digest.newsroom.stories import upsert_stories
from digest.preview import write_preview
from digest.store import open_db

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
EDITION_TIME = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
WIDTHS = (375, 680)
# A 16:9 "photo": sky, sun and two hills, in a few bytes of SVG.
PICTURE = b"""<svg xmlns="http://www.w3.org/2000/svg" width="1200" height="675">
<defs><linearGradient id="s" x1="0" y1="0" x2="0" y2="1">
<stop offset="0" stop-color="#6d9ccf"/><stop offset="1" stop-color="#d9e6f2"/>
</linearGradient></defs>
<rect width="1200" height="675" fill="url(#s)"/><circle cx="880" cy="190" r="70" fill="#f6d26b"/>
<path d="M0 470 Q300 330 620 460 T1200 420 V675 H0Z" fill="#5b7f4f"/>
<path d="M0 560 Q420 450 800 560 T1200 540 V675 H0Z" fill="#3f5e38"/></svg>"""


def render_sample(folder: Path) -> Path:
    """The sample edition as `digest preview` writes it, trimmed to fit one picture."""
    config = load_config(ROOT / "digest.toml", env={})
    newsletter = replace(config.newsletter(None), top_stories=2, recent_posts=2)
    config = with_overrides(
        config, db_path=folder / "digest.db", newsletters={newsletter.name: newsletter}
    )
    db = open_db(config.db_path)
    try:
        upsert_stories(db, sample_stories(latest_slot(newsletter, EDITION_TIME)), "sample")
        return write_preview(db, config, None, EDITION_TIME, folder / "preview").html_path
    finally:
        db.close()


def serve_picture(route: Route) -> None:
    route.fulfill(body=PICTURE, content_type="image/svg+xml")


def block(route: Route) -> None:
    route.abort()


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        url = render_sample(Path(tmp)).as_uri()
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for width in WIDTHS:
            for scheme in ("light", "dark"):
                for images in ("on", "off"):
                    page = browser.new_page(
                        viewport={"width": width, "height": 800}, color_scheme=scheme
                    )
                    page.route("http*://**/*", serve_picture if images == "on" else block)
                    page.goto(url, wait_until="load")
                    path = out_dir / f"{width}-{scheme}-images-{images}.png"
                    page.screenshot(path=path, full_page=True)
                    page.close()
                    print(path)
        browser.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshots")
