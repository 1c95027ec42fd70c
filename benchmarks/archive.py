"""The public archive at three years of daily editions: its index, a day's page, its feeds.

    python benchmarks/archive.py                 # 1,100 days
    python benchmarks/archive.py --days 3650 --runs 50

Makes a fresh database in a temporary folder with a day of stories and one real edition
(selected and rendered by `build_edition`), saved again for each of N days as that day's
all-topics edition in the newsletter's home zone (`save_edition`), each sent to one reader;
then asks the archive for its list (which freezes all N days once, timed alone), and times,
through the Flask app in this process (routing, ETag and headers included, no network), the
median and slowest of `--runs` requests for each page. Targets: the newsletter's list under
50 ms, a day's page under 20 ms. Then `digest archive build` twice: every file, then none
changed. Run by hand; nothing here is a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from digest.archive.static import build_static  # noqa: E402
from digest.edition.build import build_edition, save_edition  # noqa: E402
from digest.edition.render import Renderer  # noqa: E402
from digest.store import open_db, write_transaction  # noqa: E402
from digest.web import create_app  # noqa: E402

from helpers import EDITION_TIME, add_stories, make_config, story  # noqa: E402

TARGETS_MS = {"list, page 1": 50.0, "list, last page": 50.0, "a day's page": 20.0}


def make_archive(folder: Path, days: int):
    config = make_config(folder)
    db = open_db(config.db_path)
    categories = ["world", "science", "sport", "business", "culture"]
    add_stories(
        db,
        *[
            story(h * 0.7, title=f"A headline of a usual length, story {h}", category=c)
            for h, c in zip(range(1, 30), categories * 6, strict=False)
        ],
    )
    newsletter = config.newsletter("daily")
    first = EDITION_TIME - timedelta(days=days - 1)
    edition, _ = build_edition(
        db, config, Renderer(config.templates_dir), newsletter, EDITION_TIME, (), "UTC"
    )
    with write_transaction(db):
        for day in range(days):
            saved = save_edition(db, replace(edition, slot_at=first + timedelta(days=day)))
            # One reader got it (plain SQL: the ledger's own path is benchmarks/send.py's).
            db.execute(
                """INSERT INTO deliveries (edition_id, subscriber_id, email, status,
                   created_at, updated_at) VALUES (?, 1, 'reader@example.com', 'sent', ?, ?)""",
                [saved.id, "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z"],
            )
    return config, db


def timed(client, path: str, runs: int) -> tuple[float, float]:
    spent = []
    for _ in range(runs):
        start = time.perf_counter()
        answer = client.get(path)
        spent.append((time.perf_counter() - start) * 1000)
        assert answer.status_code == 200, (path, answer.status_code)
    return statistics.median(spent), max(spent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=1100, help="archived days (default 1100)")
    parser.add_argument("--runs", type=int, default=30, help="requests per page (default 30)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        config, db = make_archive(Path(temp), args.days)
        client = create_app(config).test_client()
        start = time.perf_counter()
        assert client.get("/archive/daily/").status_code == 200
        frozen = time.perf_counter() - start
        last_page = -(-args.days // 50)
        middle = (EDITION_TIME - timedelta(days=args.days // 2)).date()
        pages = {
            "list, page 1": "/archive/daily/",
            "list, last page": f"/archive/daily/page/{last_page}/",
            "a day's page": f"/archive/daily/{middle:%Y-%m-%d}/",
            "the archive's index": "/archive/",
            "the Atom feed (20 days)": "/archive/daily/feed.atom",
            "a topic's feed": "/archive/daily/topics/world/feed.atom",
            f"sitemap.xml ({args.days} days)": "/archive/sitemap.xml",
        }
        print(f"{args.days} archived days; freezing them all on first request: {frozen:.2f} s")
        print(f"{'page':<28} {'median ms':>10} {'slowest ms':>11}  target")
        for name, path in pages.items():
            median, slowest = timed(client, path, args.runs)
            target = TARGETS_MS.get(name)
            verdict = (
                ""
                if target is None
                else f"< {target:.0f} ms: " + ("yes" if median < target else "NO")
            )
            print(f"{name:<28} {median:>10.1f} {slowest:>11.1f}  {verdict}")
        for attempt in ("first", "again"):
            start = time.perf_counter()
            built = build_static(db, config, Path(temp) / "static")
            spent = time.perf_counter() - start
            print(f"digest archive build, {attempt}: {spent:.2f} s ({built.summary()})")
        db.close()


if __name__ == "__main__":
    main()
