"""Send a realistic audience through `digest send` and `digest run`, each beside the floor.

    python benchmarks/send.py                      # 100,000 readers
    python benchmarks/send.py --subscribers 1000000
    python benchmarks/send.py --subscribers 200000 --rtt-ms 100 --server-ms 100

Makes two databases in a temporary folder, each of N readers over 20 topic sets, subscribed
to `daily`, with a day of stories and a day of history (half the readers received yesterday's
edition; 2% moved here from Asia/Tokyo since and got its edition last night): in one all N
are in the slot's zone (UTC), in the other
they are spread over 4 time zones (all at UTC+0 in November, so one `digest run` finds four
slots due). Then four contenders, each a fresh process on a fresh copy of its database,
each against its own SendGrid-compatible test server (`tests/sendgrid_server.py`, counting
only) in another process:

- on the one-zone database, the floor (`benchmarks/floor.py`) for the slot's N readers,
  then `digest send --timezone UTC` (one slot, 20 variants: select and render run once each);
- on the four-zone database, the floor for all four zones, then `digest run` (four slots,
  N readers, 80 variants).

Beside `digest send`, two more contenders, each compared with that send:

- `digest send` right after a bulk change: every reader and subscription stamped changed
  just before the send (a list imported at 06:59, a night of bounces applied);
- with `--rtt-ms` / `--server-ms`, `digest send` against a test server that costs what a far
  SendGrid costs (`NetworkModel`: a new connection 2 round trips, its first request one more
  per doubling of a 14.6 KB window until the body fits, every request 1 round trip and the
  server's time).

For each: the wall time from start to exit, the peak memory of all its processes together
(the sum of each process's peak RSS: the contender, any process it starts, and its test
server), and the connections and requests its server saw. The ratios to the floor (or to
`digest send`) measured in the same invocation are what compares across machines. Every
DIGEST_* and SENDGRID_* variable of the caller's shell is cleared first: the contenders
read only the benchmark's own digest.toml and test server. Run by hand; nothing here is a
test.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
API_KEY = "SG.benchmark"
SECRET = "benchmark-secret"
NOW = datetime(2026, 11, 26, 7, 2, tzinfo=UTC)
CATEGORIES = ("world", "business", "science", "sport", "culture")
# 20 topic sets: each topic alone, every pair, and five of the triples.
TOPIC_SETS = [
    ";".join(topics)
    for size, limit in ((1, 5), (2, 10), (3, 5))
    for topics in itertools.islice(itertools.combinations(sorted(CATEGORIES), size), limit)
]
ZONES = ("Africa/Abidjan", "Atlantic/Reykjavik", "Europe/London", "UTC")
SLOT_ZONE = "UTC"


def make_database(path: Path, readers: int, zones: tuple[str, ...]) -> None:
    """N active `daily` readers spread evenly over the topic sets and `zones`; a day of stories."""
    from digest.newsroom.stories import upsert_stories
    from digest.store import open_db

    db = open_db(path)
    stamp = (NOW - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    sets, zone_count = len(TOPIC_SETS), len(zones)
    with db.atomic():
        db.execute("CREATE TEMP TABLE topic_sets (i INTEGER PRIMARY KEY, topics TEXT)")
        db.conn.executemany("INSERT INTO topic_sets VALUES (?, ?)", enumerate(TOPIC_SETS))
        db.execute("CREATE TEMP TABLE zones (i INTEGER PRIMARY KEY, zone TEXT)")
        db.conn.executemany("INSERT INTO zones VALUES (?, ?)", enumerate(zones))
        db.execute(
            f"""WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ? - 1)
               INSERT INTO subscribers (email, name, topics, timezone, status, created_at,
                                        updated_at)
               SELECT 'reader' || i || '@example.com', 'Reader ' || i,
                      (SELECT topics FROM topic_sets WHERE topic_sets.i = n.i % {sets}),
                      (SELECT zone FROM zones WHERE zones.i = (n.i / {sets}) % {zone_count}),
                      'active', ?, ?
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
            "published_at": NOW - timedelta(minutes=20 * i + 5),
            "score": float(i % 7),
        }
        for i in range(70)
    ]
    upsert_stories(db, stories, "benchmark")
    give_a_day(db, zones)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def give_a_day(db, zones: tuple[str, ...]) -> None:
    """One realistic day before the measured send, in the ledger as a real day leaves it.

    Half the readers (every other one) received yesterday's edition of their variant (its
    slot opens today's window, so its stories are no longer news); 2% of all (one in 49)
    moved here since from Asia/Tokyo, whose edition went out at 07:00 there (22:00 UTC
    yesterday) with stories still inside today's window: they get variants of their own.
    """
    yesterday = (NOW - timedelta(days=1)).replace(minute=0)
    tokyo = yesterday.replace(hour=22)
    # What Tokyo's edition carried for each topic set: its stories published by then.
    carried = {
        topics: [
            i
            for (i,) in db.execute(
                """SELECT id FROM stories WHERE category IN (SELECT value FROM json_each(?))
                   AND published_at <= ? ORDER BY published_at DESC LIMIT 13""",
                [json.dumps(topics.split(";")), tokyo.strftime("%Y-%m-%dT%H:%M:%SZ")],
            )
        ]
        for topics in TOPIC_SETS
    }
    stamp = yesterday.strftime("%Y-%m-%dT%H:%M:%SZ")
    with db.atomic():
        for zone in (*zones, "Asia/Tokyo"):
            slot = tokyo if zone == "Asia/Tokyo" else yesterday
            for topics in TOPIC_SETS:
                story_ids = carried[topics] if zone == "Asia/Tokyo" else []
                db.execute(
                    """INSERT INTO editions (newsletter, slot_at, variant, topics, timezone,
                       subject, html, text, story_ids, created_at)
                       VALUES ('daily', ?, ?, ?, ?, 'Yesterday', '<p>Yesterday</p>',
                       'Yesterday', ?, ?)""",
                    [
                        slot.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        f"topics:{topics}|tz:{zone}",
                        topics,
                        zone,
                        json.dumps(story_ids),
                        stamp,
                    ],
                )
        # Every other reader got yesterday's edition; one block of 20 readers (one of each topic
        # set) in 49 got Tokyo's instead.
        db.execute(
            """INSERT INTO deliveries (edition_id, subscriber_id, email, name, link_nonce,
                   status, created_at, updated_at, sent_at)
               SELECT editions.id, subscribers.id, subscribers.email, subscribers.name,
                   subscribers.link_nonce, 'sent', :stamp, :stamp, :stamp
               FROM subscribers JOIN editions ON editions.topics = subscribers.topics
                   AND editions.timezone = CASE WHEN (subscribers.id / 20) % 49 = 0
                       THEN 'Asia/Tokyo' ELSE subscribers.timezone END
               WHERE subscribers.id % 2 = 0 OR (subscribers.id / 20) % 49 = 0
               ORDER BY editions.id, subscribers.id""",
            {"stamp": stamp},
        )


def write_config(folder: Path, concurrency: int | None) -> Path:
    sendgrid = f"concurrency = {concurrency}\n" if concurrency else ""
    path = folder / "digest.toml"
    path.write_text(
        f"""[site]
url = "https://news.example.com"
from_email = "digest@news.example.com"
from_name = "Benchmark News"
postal_address = "1 Benchmark Street"

[store]
path = "digest.db"

[templates]
path = {json.dumps(str(REPO / "templates"))}

[transport]
kind = "sendgrid"
secret_key = "{SECRET}"

[sendgrid]
{sendgrid}
[newsletters.daily]
title = "Benchmark Daily"
timezone = "UTC"
schedule = "0 7 * * *"
""",
        encoding="utf-8",
    )
    return path


def peak_kb(pid: int) -> int:
    """A live process's peak resident memory so far (VmHWM), 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@dataclass
class Measurement:
    name: str
    readers: int
    wall: float
    # Peak RSS in MB of each process: the contender, what it started, its test server.
    peaks: dict[str, float]
    # What its test server saw: connections opened, requests made.
    connections: int
    requests: int

    @property
    def memory(self) -> float:
        return sum(self.peaks.values())


def touch_everyone(path: Path, age: timedelta) -> None:
    """Stamp every reader and subscription changed `age` ago: a bulk change before the send."""
    now = (datetime.now(UTC) - age).strftime("%Y-%m-%dT%H:%M:%SZ")
    db = sqlite3.connect(path)
    with db:
        db.execute("UPDATE subscribers SET updated_at = ?", [now])
        db.execute("UPDATE subscriptions SET updated_at = ?", [now])
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def measure(
    name: str,
    command: list[str],
    folder: Path,
    base: Path,
    expected: int,
    *,
    network: tuple[float, float] = (0.0, 0.0),
    bulk_change: timedelta | None = None,
) -> Measurement:
    """Run one contender on a fresh copy of the database against a fresh test server
    (`network`: its round trip and server time in ms)."""
    work = folder / "digest.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{work}{suffix}").unlink(missing_ok=True)
    shutil.copy(base, work)
    if bulk_change is not None:
        touch_everyone(work, bulk_change)
    rtt, server_ms = network
    server = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "tests" / "sendgrid_server.py"),
            "--api-key",
            API_KEY,
            "--no-schema",
            "--no-bodies",
            "--no-checks",
            "--rtt-ms",
            str(rtt),
            "--server-ms",
            str(server_ms),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    url = server.stdout.readline().strip()
    env = os.environ | {
        "SENDGRID_API_KEY": API_KEY,
        "SENDGRID_API_HOST": url,
        "DIGEST_CONFIG": str(folder / "digest.toml"),
        "no_proxy": "127.0.0.1,localhost",
    }
    command = [arg.replace("{url}", url) for arg in command]
    try:
        started = time.perf_counter()
        # To a file, not a pipe: nobody reads a pipe until the contender has finished.
        log = (folder / "contender.log").open("w+b")
        child = subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
        helpers: dict[int, int] = {}
        contender_kb = polls = 0
        while True:
            finished_pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if finished_pid:
                break
            if polls % 10 == 0:
                helpers.update((pid, 0) for pid in children_of(child.pid) if pid not in helpers)
            for pid in helpers:
                helpers[pid] = max(helpers[pid], peak_kb(pid))
            contender_kb = max(contender_kb, peak_kb(child.pid))
            polls += 1
            time.sleep(0.05)
        wall = time.perf_counter() - started
        log.seek(0)
        output = log.read().decode()
        log.close()
        child.returncode = os.waitstatus_to_exitcode(status)
        # ru_maxrss is exact but never below this process's own peak, which is kept small.
        contender = max(usage.ru_maxrss, contender_kb) / 1024
        peaks = {"contender": contender, "server": peak_kb(server.pid) / 1024}
        for number, peak in enumerate(helpers.values(), 1):
            peaks[f"process {number}"] = peak / 1024
        with urllib.request.urlopen(f"{url}/_stats") as answer:
            stats = json.load(answer)
        accepted = stats["recipients"]
    finally:
        server.terminate()
        server.wait()
    if child.returncode != 0 or accepted != expected:
        sys.exit(
            f"{name}: exit {child.returncode}, the server accepted {accepted} of {expected}:\n"
            f"{output}"
        )
    return Measurement(name, expected, wall, peaks, stats["connections"], stats["requests"])


def render_seconds(folder: Path, base: Path) -> list[float]:
    """Seconds to select and render each of the slot's variants, as `digest send` does."""
    from digest.config import load_config
    from digest.edition.build import build_edition
    from digest.edition.render import Renderer
    from digest.store import open_db

    config = load_config(folder / "digest.toml")
    renderer = Renderer(config.templates_dir)
    db = open_db(base)
    newsletter = config.newsletter("daily")
    seconds = []
    for topics in TOPIC_SETS:
        started = time.perf_counter()
        build_edition(db, config, renderer, newsletter, NOW, tuple(topics.split(";")), SLOT_ZONE)
        seconds.append(time.perf_counter() - started)
    db.close()
    return seconds


def history_seconds(folder: Path, base: Path) -> tuple[int, int, float]:
    """The slot's variants and how long deciding every reader's history takes, for all zones
    (`digest send --timezone UTC` decides one zone's; `digest run` each zone's in turn)."""
    from digest.config import load_config
    from digest.delivery.history import variant_groups
    from digest.delivery.ledger import audience_values
    from digest.edition.build import edition_stories
    from digest.store import open_db

    config = load_config(folder / "digest.toml")
    newsletter = config.newsletter("daily")
    db = open_db(base)
    variants = with_history = 0
    started = time.perf_counter()
    for zone in audience_values(db, "daily", "timezone"):
        topic_sets = [(t, None) for t in audience_values(db, "daily", "topics", zone)]
        stories = edition_stories(db, newsletter, NOW, zone)
        groups = variant_groups(db, newsletter, NOW, zone, topic_sets, stories)
        variants += len(groups)
        with_history += sum(bool(g.already_sent) for g in groups)
    seconds = time.perf_counter() - started
    db.close()
    return variants, with_history, seconds


def prepare(folder: Path, readers: int) -> None:
    """Make both databases and time select + render per variant; print what was done."""
    for name, zones in (("slot.db", (SLOT_ZONE,)), ("zones.db", ZONES)):
        started = time.perf_counter()
        make_database(folder / name, readers, zones)
        print(
            f"audience: {readers:,} readers over {len(TOPIC_SETS)} topic sets and "
            f"{len(zones)} time zone(s), made in {time.perf_counter() - started:.1f} s"
        )
    for name in ("slot.db", "zones.db"):
        variants, with_history, seconds = history_seconds(folder, folder / name)
        print(
            f"histories ({name}): {variants} variants, {with_history} of them for a history, "
            f"decided in {seconds:.2f} s"
        )
    first, *rest = render_seconds(folder, folder / "slot.db")
    print(
        f"select + render per variant: {first:.3f} s for the first (it parses email.css), "
        f"then {sum(rest) / len(rest):.3f} s on average, {max(rest):.3f} s at most"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument(
        "--concurrency", type=int, default=None, help="sendgrid.concurrency (default: config's)"
    )
    parser.add_argument(
        "--rtt-ms", type=float, default=0.0, help="round trip to a far test server (ms)"
    )
    parser.add_argument(
        "--server-ms", type=float, default=0.0, help="the far server's time per request (ms)"
    )
    parser.add_argument("--prepare", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name in [n for n in os.environ if n.startswith(("DIGEST_", "SENDGRID_"))]:
        del os.environ[name]
    if args.prepare:
        prepare(Path(args.prepare[0]), int(args.prepare[1]))
        return
    if args.subscribers % (len(TOPIC_SETS) * len(ZONES)):
        sys.exit(f"--subscribers must be a multiple of {len(TOPIC_SETS) * len(ZONES)}")
    now = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
    floor = [sys.executable, str(REPO / "benchmarks" / "floor.py"), "--db", "digest.db"]
    floor += ["--url", "{url}", "--api-key", API_KEY, "--secret", SECRET]
    digest = [sys.executable, "-m", "digest"]

    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        write_config(folder, args.concurrency)
        # Made in another process: this one stays small, since a process it starts begins
        # with its peak memory (Linux carries ru_maxrss across fork and exec).
        prepared = subprocess.run(
            [sys.executable, __file__, "--prepare", str(folder), str(args.subscribers)],
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        )
        print(prepared.stdout, end="")
        slot, zones = folder / "slot.db", folder / "zones.db"
        send = [*digest, "send", "--timezone", SLOT_ZONE, "--now", now]
        n = args.subscribers
        floor_slot = measure("floor, one slot", [*floor, "--timezone", SLOT_ZONE], folder, slot, n)
        digest_send = measure(f"digest send --timezone {SLOT_ZONE}", send, folder, slot, n)
        # (contender, what its ratios are to)
        rows = [(floor_slot, None), (digest_send, floor_slot)]
        # The same file either way: only how long ago everyone changed differs.
        settled = measure(
            "  an hour after a bulk change", send, folder, slot, n, bulk_change=timedelta(hours=1)
        )
        just = measure("  just after it", send, folder, slot, n, bulk_change=timedelta(0))
        rows += [(settled, digest_send), (just, settled)]
        if args.rtt_ms or args.server_ms:
            far = f"  {args.rtt_ms:g} ms RTT + {args.server_ms:g} ms server"
            network = (args.rtt_ms, args.server_ms)
            rows.append((measure(far, send, folder, slot, n, network=network), digest_send))
        zones_floor = [*floor, *(arg for zone in ZONES for arg in ("--timezone", zone))]
        floor_zones = measure("floor, four slots", zones_floor, folder, zones, n)
        run = measure("digest run", [*digest, "run", "--now", now], folder, zones, n)
        rows += [(floor_zones, None), (run, floor_zones)]
    print(
        f"{'':34} {'readers':>10} {'wall s':>7} {'ratio':>6} {'peak MB':>8} {'ratio':>6} "
        f"{'conns':>6} {'requests':>8}"
    )
    for contender, to in rows:
        print(
            f"{contender.name:34} {contender.readers:>10,} {contender.wall:>7.1f} "
            f"{f'{contender.wall / to.wall:.2f}x' if to else '':>6} "
            f"{contender.memory:>8.0f} "
            f"{f'{contender.memory / to.memory:.2f}x' if to else '':>6} "
            f"{contender.connections:>6} {contender.requests:>8}  "
            + ", ".join(f"{who} {peak:.0f}" for who, peak in contender.peaks.items())
        )
    print(
        "ratios: to the floor above; indented rows to `digest send --timezone UTC` with no "
        "delay, measured in the same run, but `just after it` to `an hour after a bulk change`"
    )


if __name__ == "__main__":
    main()
