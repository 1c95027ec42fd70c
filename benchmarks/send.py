"""Send one edition to N readers through the SendGrid transport and the local test server.

    python benchmarks/send.py                      # 100,000 readers
    python benchmarks/send.py --subscribers 1000000

Makes a fresh database in a temporary folder (N readers, a day of stories), starts the
project's SendGrid-compatible server in its own process (no schema check, counts only),
sends one edition and prints: recipients per second, requests, seconds in select, render,
ledger and HTTP, and this process's peak RSS. Run by hand; nothing here is a test.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import digest.edition  # noqa: E402
import digest.send  # noqa: E402
import digest.transports.sendgrid  # noqa: E402
from digest.config import PROJECT_TEMPLATES, parse_config  # noqa: E402
from digest.edition import latest_slot  # noqa: E402
from digest.render import Renderer  # noqa: E402
from digest.send import send_slot  # noqa: E402
from digest.store import open_db  # noqa: E402
from digest.stories import upsert_stories  # noqa: E402
from digest.transports.sendgrid import SendGridTransport  # noqa: E402

API_KEY = "SG.benchmark"
PHASES = ("select", "render", "ledger", "http")
CATEGORIES = ("world", "business", "science", "sport", "culture")


def make_database(path: Path, readers: int, now: datetime) -> None:
    """N active readers subscribed to `daily` and a day of stories, written with plain SQL."""
    db = open_db(path)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    with db.atomic():
        db.execute(
            """WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
               INSERT INTO subscribers (email, name, topics, timezone, status, created_at,
                                        updated_at)
               SELECT 'reader' || i || '@example.com', 'Reader ' || i, '', 'UTC', 'active', ?, ?
               FROM n""",
            [readers, stamp, stamp],
        )
        db.execute(
            """INSERT INTO subscriptions (subscriber_id, newsletter, status, created_at,
                                          updated_at)
               SELECT id, 'daily', 'active', created_at, updated_at FROM subscribers"""
        )
    stories = [
        {
            "url": f"https://news.example.com/{CATEGORIES[i % 5]}/story-{i}",
            "guid": f"bench-{i}",
            "title": f"Story number {i} about the {CATEGORIES[i % 5]} desk",
            "summary": "A paragraph of teaser text that is about as long as a real one. " * 2,
            "author": "A. Reporter",
            "category": CATEGORIES[i % 5],
            "published_at": now - timedelta(minutes=20 * i + 5),
            "score": float(i % 7),
        }
        for i in range(70)
    ]
    upsert_stories(db, stories, "benchmark")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def start_server() -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "tests" / "sendgrid_server.py"),
            "--api-key",
            API_KEY,
            "--no-schema",
            "--no-bodies",
            "--no-checks",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    return server, server.stdout.readline().strip()


def process_cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class PhaseTimer:
    """Adds up the seconds spent in chosen functions, whichever thread calls them."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds
        self.calls[phase] = self.calls.get(phase, 0) + 1

    def wrap(self, phase: str, function):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.add(phase, time.perf_counter() - started)

        return timed


def time_phases(timer: PhaseTimer) -> None:
    """Time the pipeline's stages where `digest.send` calls them, without changing them.

    Payload building and HTTP run in the worker processes, out of reach of a wrapper: they
    are timed per batch from hand-over to answer ("http"), summed over the workers.
    """
    digest.edition.select_digest = timer.wrap("select", digest.edition.select_digest)
    Renderer.render_edition = timer.wrap("render", Renderer.render_edition)
    for name in ("queue_audience", "claim_batch", "record_outcome"):
        setattr(digest.send, name, timer.wrap("ledger", getattr(digest.send, name)))
    plain_sender = SendGridTransport.sender

    @contextlib.contextmanager
    def timed_sender(transport):
        with plain_sender(transport) as submit:

            def timed_submit(edition, batch):
                started = time.perf_counter()
                future = submit(edition, batch)
                future.add_done_callback(lambda _: timer.add("http", time.perf_counter() - started))
                return future

            yield timed_submit

    SendGridTransport.sender = timed_sender


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument(
        "--concurrency", type=int, default=None, help="sendgrid.concurrency (default: config's)"
    )
    args = parser.parse_args()
    os.environ["no_proxy"] = "127.0.0.1,localhost"
    now = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
    timer = PhaseTimer()
    time_phases(timer)

    with tempfile.TemporaryDirectory() as folder:
        config = parse_config(
            {
                "templates": {"path": str(PROJECT_TEMPLATES)},
                "transport": {"kind": "sendgrid", "secret_key": "benchmark-secret"},
                "sendgrid": {"concurrency": args.concurrency} if args.concurrency else {},
                "newsletters": {"daily": {"title": "Benchmark Daily", "timezone": "UTC"}},
            },
            Path(folder) / "digest.toml",
            env={},
        )
        started = time.perf_counter()
        make_database(config.db_path, args.subscribers, now)
        print(f"setup: {args.subscribers:,} readers in {time.perf_counter() - started:.1f} s")

        server, url = start_server()
        try:
            db = open_db(config.db_path)
            newsletter = config.newsletter("daily")
            transport = SendGridTransport(
                config, env={"SENDGRID_API_KEY": API_KEY, "SENDGRID_API_HOST": url}
            )
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            cpu_before = process_cpu_seconds()
            usage = resource.getrusage(resource.RUSAGE_CHILDREN)
            children_cpu_before = usage.ru_utime + usage.ru_stime
            server_cpu_before = process_cpu_seconds(server.pid)
            started = time.perf_counter()
            report = send_slot(
                db, config, newsletter, latest_slot(newsletter, now), transport=transport
            )
            total = time.perf_counter() - started
            cpu = process_cpu_seconds() - cpu_before
            usage = resource.getrusage(resource.RUSAGE_CHILDREN)
            workers_cpu = usage.ru_utime + usage.ru_stime - children_cpu_before
            workers_rss = usage.ru_maxrss / 1024
            server_cpu = process_cpu_seconds(server.pid) - server_cpu_before
            with urllib.request.urlopen(f"{url}/_stats") as answer:
                stats = json.load(answer)
        finally:
            server.terminate()
            server.wait()

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sent = report.total("sent")
    seconds = timer.seconds
    print(report.summary())
    print(f"server accepted: {stats['recipients']:,} recipients in {stats['accepted']} requests")
    print(f"recipients/s:    {sent / total:,.0f}  ({sent:,} in {total:.1f} s wall)")
    print(f"requests:        {timer.calls.get('http', 0)} batches")
    print(
        "seconds:         "
        + ", ".join(f"{phase} {seconds.get(phase, 0):.2f}" for phase in PHASES)
        + f"  (http: payload + request per batch, summed over {transport.concurrency} workers)"
    )
    print(
        f"CPU seconds:     main process {cpu:.1f}, sending workers {workers_cpu:.1f}, "
        f"test server {server_cpu:.1f}"
    )
    print(
        f"peak RSS:        main process {peak:.0f} MB (before sending {rss_before:.0f} MB), "
        f"largest worker {workers_rss:.0f} MB; all: about "
        f"{peak + transport.concurrency * workers_rss:.0f} MB"
    )
    if stats["recipients"] != sent or sent != args.subscribers:
        sys.exit("MISMATCH: the server and the ledger disagree about who was sent")


if __name__ == "__main__":
    main()
