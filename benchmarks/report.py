"""How long the report's pictures take on a large edition: one edition to N readers, 4 events each.

    python benchmarks/report.py                  # 250,000 readers, 1,000,000 events
    python benchmarks/report.py --readers 25000

Makes the database of benchmarks/events.py (one edition of `daily` sent to N readers, plain
SQL), stores its event posts and processes them with the webhook's own code (no HTTP), then
times what the studio's /report page and `digest report --html` do: the report's numbers, each
figure behind the pictures, and drawing the five charts as SVG. Prints seconds for each. Run
by hand; nothing here is a test.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

from events import CONFIG, bodies, make_database  # noqa: E402

from digest.config import load_config, with_overrides  # noqa: E402
from digest.feedback import charts, figures  # noqa: E402
from digest.feedback.events import process_pending, store_post  # noqa: E402
from digest.feedback.report import edition_report  # noqa: E402
from digest.store import open_db  # noqa: E402


def timed(label: str, work):
    started = time.perf_counter()
    result = work()
    print(f"{label:<28} {time.perf_counter() - started:8.2f} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=250_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder)
        (path / "digest.toml").write_text(CONFIG)
        config = load_config(path / "digest.toml", env={})
        config = with_overrides(config, db_path=path / "digest.db")
        make_database(config.db_path, args.readers)
        db = open_db(config.db_path)
        started = time.perf_counter()
        for body in bodies(args.readers):
            store_post(db, body, {}, datetime.now(UTC))
            process_pending(db)
        print(
            f"readers {args.readers:,}, events stored and processed in "
            f"{time.perf_counter() - started:.0f} s"
        )
        now = datetime.now(UTC)
        report = timed("report (numbers)", lambda: edition_report(db, config, None, None, now))
        nl = config.newsletter(None)
        found = {
            "funnel": timed("  funnel per zone", lambda: figures.zone_funnels(report)),
            "hours": timed("  hours since send", lambda: figures.hours_since_send(db, report)),
        }
        stories, expected = timed("  stories by place", lambda: figures.story_positions(report))
        found |= {"stories": stories, "expected": expected}
        day = datetime.fromisoformat(report["edition"]).date()
        found["health"] = timed(
            "  list health, 90 days", lambda: figures.list_health(db, nl.name, day, nl.timezone)
        )
        found["rates"] = timed(
            "  rates, 30 editions",
            lambda: figures.edition_rates(db, nl.name, report["edition"], nl.timezone),
        )
        pictures = timed("charts (specs)", lambda: charts.pictures(found))
        timed("charts (five SVGs)", lambda: [p.svg() for p in pictures])
        timed("charts (five PNGs)", lambda: [p.png() for p in pictures])
        db.close()


if __name__ == "__main__":
    main()
