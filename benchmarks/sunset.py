"""Find the cold readers of a newsletter, and count its list health, over N readers and E editions.

    python benchmarks/sunset.py                          # 1,000,000 readers, 30 editions
    python benchmarks/sunset.py --readers 100000 --editions 90

Makes a fresh database in a temporary folder (plain SQL): N readers subscribed to `daily`,
E daily editions each sent to all of them, an event for each edition (so the webhook has
reported on every one), and a last human open in the last week for a third of the readers.
Then times `sunset.cold_readers` (what the first `digest run` of each day does before it
asks anyone) and `list_health.current_counts` (`digest report --list`), and prints how many
readers each found and how long it took. Run by hand; nothing here is a test.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from digest.clock import to_db  # noqa: E402
from digest.feedback.list_health import current_counts  # noqa: E402
from digest.feedback.sunset import cold_readers  # noqa: E402
from digest.store import open_db  # noqa: E402

from helpers import make_config  # noqa: E402

START = datetime(2026, 1, 1, 7, 0, tzinfo=UTC)


def build(db, readers: int, editions: int) -> datetime:
    """The list and its sends, written straight into the tables; returns the day after."""
    long_ago = to_db(START - timedelta(days=365))
    db.conn.executemany(
        """INSERT INTO subscribers (id, email, status, created_at, updated_at)
           VALUES (?, ?, 'active', ?, ?)""",
        ((n, f"reader{n}@example.com", long_ago, long_ago) for n in range(1, readers + 1)),
    )
    db.conn.executemany(
        """INSERT INTO subscriptions (subscriber_id, newsletter, status, created_at, updated_at)
           VALUES (?, 'daily', 'active', ?, ?)""",
        ((n, long_ago, long_ago) for n in range(1, readers + 1)),
    )
    for day in range(editions):
        slot = to_db(START + timedelta(days=day))
        edition_id = db.execute(
            """INSERT INTO editions (newsletter, slot_at, variant, subject, html, text,
               story_ids, created_at) VALUES ('daily', ?, '', 's', 'h', 't', '[]', ?)""",
            [slot, slot],
        ).lastrowid
        db.conn.executemany(
            """INSERT INTO deliveries (edition_id, subscriber_id, email, status, batch_key,
               created_at, updated_at, sent_at) VALUES (?, ?, ?, 'sent', 'b', ?, ?, ?)""",
            (
                (edition_id, n, f"reader{n}@example.com", slot, slot, slot)
                for n in range(1, readers + 1)
            ),
        )
        db.execute(
            """INSERT INTO events (post_id, natural_key, event, occurred_at, edition_id)
               VALUES (0, ?, 'delivered', 0, ?)""",
            [f"edition-{edition_id}".encode(), edition_id],
        )
        db.conn.commit()
    after = START + timedelta(days=editions)
    opened = to_db(after - timedelta(days=3))
    db.conn.executemany(
        """INSERT INTO reader_engagement (subscriber_id, newsletter, last_open_at)
           VALUES (?, 'daily', ?)""",
        ((n, opened) for n in range(1, readers + 1, 3)),
    )
    db.conn.commit()
    return after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=1_000_000)
    parser.add_argument("--editions", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        config = make_config(
            Path(folder),
            newsletter={"sunset": {"after_days": 14, "min_editions": 10, "grace_days": 7}},
        )
        db = open_db(config.db_path)
        started = time.perf_counter()
        now = build(db, args.readers, args.editions)
        print(
            f"built {args.readers:,} readers x {args.editions} editions "
            f"in {time.perf_counter() - started:.1f} s"
        )
        newsletter = config.newsletter(None)
        started = time.perf_counter()
        cold = cold_readers(db, newsletter, now)
        print(f"cold_readers: {len(cold):,} cold in {time.perf_counter() - started:.2f} s")
        started = time.perf_counter()
        counts = current_counts(db, newsletter, now)
        print(
            f"current_counts: active {counts['active']:,}, engaged {counts['engaged']:,}, "
            f"cold {counts['cold']:,} in {time.perf_counter() - started:.2f} s"
        )
        db.close()


if __name__ == "__main__":
    main()
