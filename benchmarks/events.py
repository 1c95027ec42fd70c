"""Receive and process N Event Webhook events, posted signed in 768 KB bodies to `digest serve`.

    python benchmarks/events.py                     # 1,000,000 events
    python benchmarks/events.py --events 100000 --clients 4

Makes a fresh database in a temporary folder with one edition sent to N/4 readers (plain
SQL), starts `digest serve` in its own process with a fresh signing key, and posts four
events per reader (processed, delivered, an open, a third of them by Apple's proxy, and a
click or a second open), as SendGrid does: compact JSON arrays of at most 768 KB, signed,
from `--clients` connections at once. Prints events per second from the first post until
the last event is processed, the time to receive (store and answer) alone, and the server's
peak RSS. Run by hand; nothing here is a test.
"""

from __future__ import annotations

import argparse
import os
import queue
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from digest.feedback.events import PROCESSING_CACHE_KB, pending_posts  # noqa: E402
from digest.store import open_db  # noqa: E402

from sendgrid_server import event_bodies, make_webhook_key, post_event_body  # noqa: E402
from servers import digest_server  # noqa: E402

EVENTS_PER_READER = 4
CHUNK_READERS = 2000
CONFIG = """[site]
name = "Benchmark Courier"
url = "https://news.example.com"
postal_address = "1 Test Street"
from_email = "digest@news.example.com"

[transport]
secret_key = "benchmark-secret"

[newsletters.daily]
title = "Daily"
"""


def make_database(path: Path, readers: int) -> None:
    """One edition of `daily` sent to N readers, one batch per thousand, with plain SQL."""
    db = open_db(path)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with db.atomic():
        db.execute(
            """INSERT INTO editions (id, newsletter, slot_at, variant, subject, html, text,
               story_ids, created_at)
               VALUES (1, 'daily', ?, '', 'Today', '', '', '[1, 2, 3]', ?)""",
            [stamp, stamp],
        )
        # What the send writes beside it, so story clicks are summarised as in production.
        db.execute(
            """INSERT INTO edition_lineups (edition_id, newsletter, slot_at, story_ids, stories)
               VALUES (1, 'daily', ?, '[1, 2, 3]', 3)""",
            [stamp],
        )
        db.execute(
            """WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
               INSERT INTO subscribers (id, email, status, created_at, updated_at)
               SELECT i, 'reader' || i || '@example.com', 'active', ?, ? FROM n""",
            [readers, stamp, stamp],
        )
        db.execute(
            """INSERT INTO deliveries (id, edition_id, subscriber_id, email, status, batch_key,
               attempts, created_at, updated_at, sent_at)
               SELECT id, 1, id, email, 'sent', '1-batch' || (id / 1000), 1, ?, ?, ?
               FROM subscribers""",
            [stamp, stamp, stamp],
        )
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def reader_events(reader: int, at: int) -> list[dict]:
    """Four events for one reader, shaped as SendGrid posts them (custom args flattened)."""
    common = {
        "email": f"reader{reader}@example.com",
        "sg_message_id": f"batch{reader // 1000}msgid.filterdrecv-5bd4c8f-{reader % 1000}-0",
        "smtp-id": f"<batch{reader // 1000}msgid@ismtpd0001p1.test>",
        "category": ["daily"],
        "digest_edition": "1",
        "digest_newsletter": "daily",
        "digest_batch": f"1-batch{reader // 1000}",
        "digest_delivery": str(reader),
    }
    second = (
        {"event": "click", "url": f"https://news.example.com/story?digest_story={reader % 3 + 1}"}
        if reader % 5 == 0
        else {"event": "open", "sg_machine_open": False, "useragent": "Mozilla/5.0"}
    )
    events = [
        {"event": "processed"},
        {"event": "delivered", "response": "250 2.0.0 OK", "ip": "168.245.1.1", "tls": 1},
        {"event": "open", "sg_machine_open": reader % 3 == 0, "useragent": "Mozilla/5.0"},
        second,
    ]
    return [
        {**common, **fields, "timestamp": at + n * 30, "sg_event_id": f"e{reader}-{n}"}
        for n, fields in enumerate(events)
    ]


def bodies(readers: int) -> Iterator[bytes]:
    """The post bodies, made a few thousand readers at a time (never all in memory)."""
    at = int(time.time())
    for start in range(1, readers + 1, CHUNK_READERS):
        stop = min(start + CHUNK_READERS, readers + 1)
        yield from event_bodies([e for r in range(start, stop) for e in reader_events(r, at)])


def poster(url: str, key, work: queue.Queue, failures: list[int | None]) -> None:
    while (body := work.get()) is not None:
        status = post_event_body(url, key, body)
        if status != 204:
            failures.append(status)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=2, help="connections posting at once")
    args = parser.parse_args()
    readers = args.events // EVENTS_PER_READER
    private, public = make_webhook_key()
    with tempfile.TemporaryDirectory() as folder:
        folder_path = Path(folder)
        (folder_path / "digest.toml").write_text(CONFIG)
        make_database(folder_path / "digest.db", readers)
        # Every DIGEST_* and SENDGRID_* setting of the caller's shell is left out: the server
        # reads the folder's digest.toml and this key alone.
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DIGEST_", "SENDGRID_"))},
            "SENDGRID_WEBHOOK_PUBLIC_KEY": public,
        }
        with digest_server("serve", cwd=folder, env=env) as server:
            url = f"http://127.0.0.1:{server.port}/webhooks/sendgrid"
            # Python, Flask, SQLite and the digest modules, imported, before any post.
            at_start = peak_rss_mb(server.process.pid)
            work: queue.Queue = queue.Queue(maxsize=args.clients * 2)
            failures: list[int | None] = []
            threads = [
                threading.Thread(target=poster, args=(url, private, work, failures))
                for _ in range(args.clients)
            ]
            for thread in threads:
                thread.start()
            started = time.perf_counter()
            posts = sizes = 0
            for body in bodies(readers):
                work.put(body)
                posts += 1
                sizes += len(body)
            for _ in threads:
                work.put(None)
            for thread in threads:
                thread.join()
            received = time.perf_counter() - started
            db = open_db(folder_path / "digest.db")
            while (
                pending_posts(db)
                or db.execute("SELECT 1 FROM leases WHERE name = 'events'").fetchone()
            ):
                time.sleep(0.05)
            done = time.perf_counter() - started
            events = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            peak = peak_rss_mb(server.process.pid)
            db.close()
            database_mb = sum(f.stat().st_size for f in folder_path.glob("digest.db*")) / 2**20
    print(f"events posted      {readers * EVENTS_PER_READER:,} in {posts:,} posts")
    print(f"  mean post        {sizes / posts / 1024:,.0f} KB, {args.clients} client(s) at once")
    print(f"  failed posts     {len(failures)}")
    print(f"events kept        {events:,}")
    print(f"received (stored)  {received:.1f} s")
    print(f"received+processed {done:.1f} s = {events / done:,.0f} events/s")
    print(f"server peak RSS    {peak:.0f} MB, of which")
    print(f"  at start         {at_start:.0f} MB: Python and the libraries, imported")
    print(
        f"  grown by         {peak - at_start:.0f} MB while receiving: SQLite's page cache while "
        f"posts are applied (at most {PROCESSING_CACHE_KB // 1024} MB), and posts being received, "
        f"stored and parsed (768 KB each, {args.clients} at once)"
    )
    print(f"database after     {database_mb:.0f} MB")


if __name__ == "__main__":
    main()
