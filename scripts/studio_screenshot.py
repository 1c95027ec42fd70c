"""Make docs/studio.png, the README's picture of the studio, from the demo's sample content.

Runs the whole thing for real: a fresh demo project in a temporary folder, the studio on
an ephemeral port of 127.0.0.1, Debian's Chromium through Playwright. Run it from the
repository: `.venv/bin/python scripts/studio_screenshot.py [--out docs/studio.png]`.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path

from playwright.sync_api import sync_playwright
from werkzeug.serving import make_server

from digest.config import load_config, with_overrides
from digest.delivery.transports.outbox import OutboxTransport
from digest.demo import run_demo
from digest.newsroom.stories import list_stories, set_story_editorial
from digest.store import open_db
from digest.studio import create_studio

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
# The demo's stories lead up to the 07:00 slot; the studio looks at it two hours before.
DEMO_NOW = datetime(2026, 11, 26, 7, 5, tzinfo=UTC)
STUDIO_NOW = datetime(2026, 11, 26, 5, 0, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "studio.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        config = load_config(REPO / "digest.toml", env={})
        config = with_overrides(config, db_path=Path(folder) / "demo" / "digest.db")
        run_demo(config, Path(folder) / "demo", DEMO_NOW)
        config = with_overrides(
            config,
            db_path=Path(folder) / "demo" / "digest.db",
            outbox_dir=Path(folder) / "demo" / "outbox",
        )
        db = open_db(config.db_path)
        # Undo the demo's send, so the studio shows its slot still to come.
        with db.conn:
            db.execute("DELETE FROM deliveries")
            db.execute("DELETE FROM editions")
        # One pinned story, so the lineup shows a pin.
        set_story_editorial(db, str(list_stories(db, 5)[-1].id), pinned=True)
        db.close()
        app = create_studio(lambda: config, OutboxTransport(config), now=STUDIO_NOW)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            shoot(f"http://127.0.0.1:{server.server_port}", args.out)
        finally:
            server.shutdown()
            thread.join(timeout=10)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB)")


def shoot(base: str, out: Path) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1400, "height": 860}, device_scale_factor=0.75)
        page.goto(f"{base}/?as=ana.pereira@example.com")
        page.frame_locator("#email").locator("table.container").wait_for()
        page.get_by_role("button", name="Mobile 375").click()
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out))
        browser.close()


if __name__ == "__main__":
    main()
