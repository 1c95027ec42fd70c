"""`digest report`: what came of one edition of a newsletter, per variant, from ledger and events.

An edition is a newsletter's day: every variant (topic set, time zone) whose slot falls on
that local date. Sent comes from the ledger; delivered, deferred, bounces, blocks, drops and
complaints from each delivery's furthest state (`events.LADDER`); opens and clicks from the
engagement kept apart, unique per reader (clicks are people's: a reader all of whose clicks
were a link scanner's, by `feedback.machines`, is counted apart, as the stories' clicks are);
unsubscribes from the audit trail (a reader who
left the newsletter after this edition reached them and before the next one did, by any
route: one-click, the page, the webhook). Rates of engagement are on delivered (as SendGrid's
and Mailchimp's are), delivery rates on sent. Every story of the edition is listed with its
positions, impressions, unique human and machine clicks, click-through, the click-through
expected at its positions and its lift (`edition.lift`), most read for their position first,
and the click-through expected at each position (what the report's pictures draw);
clicks on links that are no story (the footer, the archive) are counted under their link,
and clicks set aside (impossible timestamps) under their reason. `edition_report` returns
plain data (for the CLI's `--json` and the studio); `report_lines` is the text the CLI prints.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from typing import Any
from zoneinfo import ZoneInfo

from sqlite_utils import Database

from ..clock import from_db, to_db, utcnow
from ..config import Config, NewsletterConfig
from ..edition.lift import editions_engagement, expected_by_position
from ..errors import DigestError, NotFoundError
from ..invocation import digest_command
from .events import link_key, story_of, waiting_posts

# SendGrid retries deferred mail for up to 72 hours, and a webhook post for 24 more.
OUTCOMES_SETTLE = timedelta(hours=72 + 24)
EVERY_EVENT = datetime(9999, 1, 1, tzinfo=UTC)
NUMBERS = (
    "sent",
    "delivered",
    "deferred",
    "bounced",
    "blocked",
    "dropped",
    "complaints",
    "unsubscribes",
    "opens",
    "human_opens",
    "machine_opens",
    "clicks",
    "machine_clicks",
    "no_event_yet",
)


def _ids_sql(ids: list[int]) -> str:
    return ",".join(str(int(i)) for i in ids)


def _local_date(row: dict, default_zone: str) -> date:
    return from_db(row["slot_at"]).astimezone(ZoneInfo(row["timezone"] or default_zone)).date()


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise DigestError(
            f"EDITION {text!r} is not a date; give the edition's local date, like 2026-11-26, "
            "or --last."
        ) from None


def editions_by_day(db: Database, newsletter: str, zone: str) -> dict[date, list[dict]]:
    """The newsletter's editions with readers, by local date (their zone's, else `zone`)."""
    by_day: dict[date, list[dict]] = {}
    for row in db.query(
        """SELECT e.id, e.slot_at, e.timezone, e.topics, e.subject, e.variant, e.history
           FROM editions e WHERE e.newsletter = ?
           AND EXISTS (SELECT 1 FROM deliveries d WHERE d.edition_id = e.id)
           ORDER BY e.slot_at, e.id""",
        [newsletter],
    ):
        by_day.setdefault(_local_date(row, zone), []).append(row)
    return by_day


def edition_report(
    db: Database,
    config: Config,
    newsletter: str | None = None,
    edition: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The report on one edition (its local date `YYYY-MM-DD`; None: the last one sent)."""
    nl = config.newsletter(newsletter)
    now = now or utcnow()
    by_day = editions_by_day(db, nl.name, nl.timezone)
    if not by_day:
        raise NotFoundError(f"{nl.name} has no edition with readers yet; nothing to report.")
    day = _parse_date(edition) if edition else max(by_day)
    if day not in by_day:
        recent = ", ".join(str(d) for d in sorted(by_day)[-5:])
        raise NotFoundError(f"{nl.name} has no edition on {day}; the last ones: {recent}.")
    chosen = by_day[day]
    ids = [row["id"] for row in chosen]
    numbers = edition_numbers(db, nl.name, ids)
    variants = [
        {
            "edition_id": row["id"],
            "slot_at": row["slot_at"],
            "timezone": row["timezone"] or nl.timezone,
            "topics": [t for t in row["topics"].split(";") if t],
            # What makes its readers' history different ('' for none): see delivery/history.
            "history": row["history"],
            "subject": row["subject"],
            "numbers": numbers[row["id"]],
            "rates": rates(numbers[row["id"]]),
            "links": link_clicks(db, row["id"]),
        }
        for row in chosen
    ]
    total = dict(sum((Counter(numbers[i]) for i in ids), Counter()))
    total = {name: total.get(name, 0) for name in NUMBERS}
    completeness = _completeness(db, ids, now)
    if completeness["outbox_only"]:
        # Files have no delivery events: 0% delivered would be a lie, not a measurement.
        for variant in variants:
            variant["rates"] = dict.fromkeys(variant["rates"])
    return {
        "newsletter": nl.name,
        "title": nl.title,
        "edition": day.isoformat(),
        "generated_at": to_db(now),
        "variants": variants,
        "total": {
            "numbers": total,
            "rates": dict.fromkeys(rates(total)) if completeness["outbox_only"] else rates(total),
        },
        "stories": _stories(
            db, nl, ids, now, unknown=completeness["outbox_only"] and not completeness["events"]
        ),
        "expected_ctr_by_position": [
            row | {"expected_ctr": round(row["expected_ctr"], 4)}
            for row in expected_by_position(db, nl, now, events_until=EVERY_EVENT)
        ],
        "links": _links(db, ids),
        "set_aside": _set_aside(db, ids),
        "completeness": completeness,
    }


def edition_numbers(db: Database, newsletter: str, ids: list[int]) -> dict[int, dict[str, int]]:
    """Per edition id, the report's numbers (`NUMBERS`)."""
    numbers = {i: dict.fromkeys(NUMBERS, 0) for i in ids}
    in_ids = _ids_sql(ids)
    for edition_id, n in db.execute(
        f"""SELECT edition_id, COUNT(*) FROM deliveries
            WHERE edition_id IN ({in_ids}) AND status = 'sent' GROUP BY edition_id"""
    ):
        numbers[edition_id]["sent"] = n
    state_names = {
        "deferred": "deferred",
        "bounced": "bounced",
        "blocked": "blocked",
        "dropped": "dropped",
        "complained": "complaints",
    }
    heard = dict.fromkeys(ids, 0)
    for edition_id, state, n in db.execute(
        f"""SELECT edition_id, state, COUNT(*) FROM delivery_states
            WHERE edition_id IN ({in_ids}) GROUP BY edition_id, state"""
    ):
        heard[edition_id] += n
        if state in state_names:
            numbers[edition_id][state_names[state]] += n
        # A complaint comes from a reader who had the email: it was delivered.
        if state in ("delivered", "complained"):
            numbers[edition_id]["delivered"] += n
    # A reader clicked (a person) unless every click of theirs was a machine's: their story
    # clicks all judged a scanner's by `feedback.machines` (their other links' clicks with
    # them, as the click map counts them); those readers are counted apart.
    for edition_id, human, machine, opens, clicks, machine_clicks in db.execute(
        f"""SELECT g.edition_id, SUM(g.human_opens > 0),
                   SUM(g.human_opens = 0 AND g.machine_opens > 0),
                   SUM(g.human_opens + g.machine_opens > 0),
                   SUM(g.clicks > 0 AND NOT COALESCE(k.machines > 0 AND k.people = 0, 0)),
                   SUM(g.clicks > 0 AND COALESCE(k.machines > 0 AND k.people = 0, 0))
            FROM engagement g LEFT JOIN (
                SELECT delivery_id, SUM(machine_at IS NULL) AS people,
                       SUM(machine_at IS NOT NULL) AS machines
                FROM story_clicks WHERE edition_id IN ({in_ids}) GROUP BY delivery_id
            ) k ON k.delivery_id = g.delivery_id
            WHERE g.edition_id IN ({in_ids}) GROUP BY g.edition_id"""
    ):
        numbers[edition_id] |= {
            "human_opens": human,
            "machine_opens": machine,
            "opens": opens,
            "clicks": clicks,
            "machine_clicks": machine_clicks,
        }
    for edition_id, n in _unsubscribes(db, newsletter, ids):
        numbers[edition_id]["unsubscribes"] = n
    for edition_id in ids:
        numbers[edition_id]["no_event_yet"] = max(
            0, numbers[edition_id]["sent"] - heard[edition_id]
        )
    return numbers


def _unsubscribes(db: Database, newsletter: str, ids: list[int]) -> list[tuple[int, int]]:
    """Per edition, its readers who left the newsletter after it reached them, before the next."""
    in_ids = _ids_sql(ids)
    since = db.execute(
        f"SELECT MIN(sent_at) FROM deliveries WHERE edition_id IN ({in_ids}) AND status = 'sent'"
    ).fetchone()[0]
    if since is None:
        return []
    # From the few audit rows of leavers to their deliveries, not the other way round.
    return db.execute(
        f"""SELECT d.edition_id, COUNT(DISTINCT d.id)
            FROM audit a CROSS JOIN deliveries d
            WHERE a.newsletter = :newsletter AND a.action = 'subscription'
              AND a.new_status = 'unsubscribed' AND a.at >= :since
              AND d.subscriber_id = a.subscriber_id AND d.edition_id IN ({in_ids})
              AND d.status = 'sent' AND d.sent_at <= a.at
              AND NOT EXISTS (
                  SELECT 1 FROM deliveries later JOIN editions e ON e.id = later.edition_id
                  WHERE later.subscriber_id = d.subscriber_id AND e.newsletter = :newsletter
                    AND later.status = 'sent' AND later.sent_at > d.sent_at
                    AND later.sent_at <= a.at)
            GROUP BY d.edition_id""",
        {"newsletter": newsletter, "since": since},
    ).fetchall()


# Each rate: its part and its base. Engagement and complaints on delivered, delivery on sent.
RATES = {
    "delivered_of_sent": ("delivered", "sent"),
    "bounced_of_sent": ("bounced", "sent"),
    "blocked_of_sent": ("blocked", "sent"),
    "opened": ("opens", "delivered"),
    "opened_by_people": ("human_opens", "delivered"),
    "clicked": ("clicks", "delivered"),
    "complained": ("complaints", "delivered"),
    "unsubscribed": ("unsubscribes", "delivered"),
}


def rates(numbers: dict[str, int]) -> dict[str, float | None]:
    """Each of RATES (None: no base), at most 100%: readers can leave, open or complain about
    mail whose delivery SendGrid has not reported, and more than all is no rate."""
    return {
        name: round(min(numbers[part] / numbers[base], 1.0), 4) if numbers[base] else None
        for name, (part, base) in RATES.items()
    }


def over_base(numbers: dict[str, int]) -> list[str]:
    """The counts that outnumber their rate's base (whose rate is therefore capped), said so."""
    return [
        f"{part} ({numbers[part]}) outnumber {base} ({numbers[base]})"
        for part, base in RATES.values()
        if numbers[base] and numbers[part] > numbers[base]
    ]


def _stories(
    db: Database, nl: NewsletterConfig, ids: list[int], now: datetime, *, unknown: bool = False
) -> list[dict[str, Any]]:
    """Every story of the editions, most read for their position (highest lift) first.

    `unknown`: the mail went to the outbox and no event came: clicks are None, not 0.
    """
    # Whatever was kept counts, as for the report's other numbers.
    found = editions_engagement(db, nl, ids, now, events_until=EVERY_EVENT)
    stored = (
        {
            sid: (title, url)
            for sid, title, url in db.execute(
                f"SELECT id, title, url FROM stories WHERE id IN ({_ids_sql(list(found))})"
            )
        }
        if found
        else {}
    )
    rows = []
    for e in found.values():
        title, url = stored.get(e.story_id, (None, None))
        rows.append(
            {
                "story_id": e.story_id,
                "title": title,
                "url": url,
                "positions": list(e.positions),
                "impressions": e.impressions,
                "human_clicks": e.human_clicks,
                "machine_clicks": e.machine_clicks,
                "ctr": _round(e.ctr),
                "expected_ctr": _round(e.expected_ctr),
                "lift": round(e.lift, 4),
            }
        )
    rows.sort(key=lambda r: (-r["lift"], -r["human_clicks"], r["story_id"]))
    if unknown:
        for row in rows:
            row |= dict.fromkeys(("human_clicks", "machine_clicks", "ctr", "expected_ctr", "lift"))
    return rows


def _count(value: int | None) -> str:
    return "n/a" if value is None else str(value)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _links(db: Database, ids: list[int]) -> list[dict[str, Any]]:
    """Clicks on links that are no story of the edition, counted under the link (no query)."""
    readers: dict[str, set[int]] = {}
    clicks: Counter[str] = Counter()
    for url, delivery_id in db.execute(
        f"""SELECT url, delivery_id FROM events WHERE edition_id IN ({_ids_sql(ids)})
            AND event = 'click' AND story_id IS NULL"""
    ):
        link = link_key(url or "")
        readers.setdefault(link, set()).add(delivery_id)
        clicks[link] += 1
    return sorted(
        ({"link": link, "readers": len(readers[link]), "clicks": clicks[link]} for link in clicks),
        key=lambda r: (-r["readers"], r["link"]),
    )


def _set_aside(db: Database, ids: list[int]) -> list[dict[str, Any]]:
    """Story clicks left out of every count, and why."""
    rows = db.execute(
        f"""SELECT reason, SUM(clicks) FROM clicks_set_aside
            WHERE edition_id IN ({_ids_sql(ids)}) GROUP BY reason ORDER BY reason"""
    )
    return [{"reason": reason, "clicks": n} for reason, n in rows]


class _Links(HTMLParser):
    """The distinct link targets of an email, in the order they first appear."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: dict[str, None] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href") if tag == "a" else None
        if href and href.startswith(("http://", "https://")) and "%%" not in href:
            self.hrefs.setdefault(href, None)


# A click event that no machine made: its reader's click on that story (or, on a link that is
# no story, any of their story clicks) was not judged a scanner's.
BY_PEOPLE = """NOT EXISTS (SELECT 1 FROM story_clicks sc
    WHERE sc.delivery_id = events.delivery_id AND sc.machine_at IS NOT NULL
      AND (events.story_id IS NULL OR sc.story_id = events.story_id))"""


def link_clicks(db: Database, edition_id: int) -> list[dict[str, Any]]:
    """Each link of the edition's email with its clicks and share of the edition's clicks.

    Links made for each reader (unsubscribe, preferences) are one row, `url` None. A share
    is the link's clicks over all the edition's clicks by people (None before the first):
    a click `feedback.machines` judged a scanner's is left out, and so is every other link a
    scanned delivery clicked (a scanner follows them all).
    """
    parser = _Links()
    parser.feed(db.execute("SELECT html FROM editions WHERE id = ?", [edition_id]).fetchone()[0])
    counts = {
        url: (readers, clicks)
        for url, readers, clicks in db.execute(
            f"""SELECT url, COUNT(DISTINCT delivery_id), COUNT(*) FROM events
               WHERE edition_id = ? AND event = 'click' AND url IS NOT NULL AND {BY_PEOPLE}
               GROUP BY url""",
            [edition_id],
        )
    }
    total = sum(clicks for _, clicks in counts.values())
    rows: list[tuple[str | None, int, int]] = [
        (href, *counts.pop(href, (0, 0))) for href in parser.hrefs
    ]
    if counts:
        readers = db.execute(
            f"""SELECT COUNT(DISTINCT delivery_id) FROM events WHERE edition_id = ?
                AND event = 'click' AND url IS NOT NULL AND {BY_PEOPLE}
                AND url NOT IN ({",".join("?" * len(parser.hrefs))})""",
            [edition_id, *parser.hrefs],
        ).fetchone()[0]
        rows.append((None, readers, sum(clicks for _, clicks in counts.values())))
    return [
        {
            "url": url,
            "story_id": story_of(url),
            "readers": readers,
            "clicks": clicks,
            "share": round(clicks / total, 4) if total else None,
        }
        for url, readers, clicks in rows
    ]


def _completeness(db: Database, ids: list[int], now: datetime) -> dict[str, Any]:
    in_ids = _ids_sql(ids)
    last_sent = db.execute(
        f"SELECT MAX(sent_at) FROM deliveries WHERE edition_id IN ({in_ids}) AND status = 'sent'"
    ).fetchone()[0]
    events = db.execute(f"SELECT COUNT(*) FROM events WHERE edition_id IN ({in_ids})").fetchone()[0]
    sent, to_outbox = db.execute(
        f"""SELECT COUNT(*), COUNT(*) FILTER (WHERE provider_id LIKE 'outbox:%')
            FROM deliveries WHERE edition_id IN ({in_ids}) AND status = 'sent'"""
    ).fetchone()
    outbox_only = bool(sent) and sent == to_outbox
    last_post = db.execute("SELECT MAX(received_at) FROM webhook_posts").fetchone()[0]
    pending, _ = waiting_posts(db)
    settles_at = to_db(from_db(last_sent) + OUTCOMES_SETTLE) if last_sent else None
    if not last_sent:
        note = "nothing of this edition was sent, so no events can come"
    elif outbox_only:
        note = (
            f"the {sent} sent were written to the outbox as files, not sent through SendGrid: "
            "outbox sends have no delivery events, so delivered, opened and clicked are "
            "unknown (n/a), not 0"
        )
    elif not events:
        note = (
            "no webhook events for this edition yet: delivery, opens and clicks are unknown "
            "(is SendGrid's Event Webhook set up? see the README)"
        )
    elif settles_at and to_db(now) < settles_at:
        note = (
            f"events can still arrive until {settles_at} for delivery outcomes (SendGrid retries "
            "deferred mail for 72 h and webhook posts for 24 h); opens and clicks at any time"
        )
    else:
        note = "delivery outcomes are final; opens and clicks can still come at any time"
    return {
        "last_sent_at": last_sent,
        "outcomes_final_at": settles_at,
        "events": events,
        "last_post_received_at": last_post,
        "posts_waiting": pending,
        "outbox_only": outbox_only,
        "note": note,
    }


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def _numbers_line(n: dict[str, int]) -> str:
    return (
        f"sent {n['sent']}, delivered {n['delivered']}, deferred {n['deferred']}, "
        f"bounced {n['bounced']} (+ blocked {n['blocked']}), dropped {n['dropped']}, "
        f"complaints {n['complaints']}, unsubscribes {n['unsubscribes']}; "
        f"unique opens {n['opens']} (people {n['human_opens']}, Apple proxy only "
        f"{n['machine_opens']}), unique clicks by people {n['clicks']} (+ machines only "
        f"{n['machine_clicks']}); no event yet {n['no_event_yet']}"
    )


def report_lines(report: dict[str, Any]) -> list[str]:
    """The report as `digest report` prints it."""
    lines = [
        f"{report['title']} ({report['newsletter']}), edition of {report['edition']}: "
        f"{len(report['variants'])} variant(s), as of {report['generated_at']}"
    ]
    for variant in report["variants"]:
        topics = "+".join(variant["topics"]) or "all topics"
        history = f", {variant['history']}" if variant["history"] else ""
        lines.append(
            f"  {topics}, {variant['timezone']}{history} (edition {variant['edition_id']}, "
            f"{variant['slot_at']}): {_numbers_line(variant['numbers'])}"
        )
    total, r = report["total"]["numbers"], report["total"]["rates"]
    lines.append(f"  total: {_numbers_line(total)}")
    lines.append(
        f"  on delivered ({total['delivered']}): opened {_percent(r['opened'])} (people "
        f"{_percent(r['opened_by_people'])}), clicked {_percent(r['clicked'])}, complained "
        f"{_percent(r['complained'])}, unsubscribed {_percent(r['unsubscribed'])}"
    )
    lines.append(
        f"  on sent ({total['sent']}): delivered {_percent(r['delivered_of_sent'])}, bounced "
        f"{_percent(r['bounced_of_sent'])}, blocked {_percent(r['blocked_of_sent'])}"
    )
    if over := over_base(total):
        lines.append(
            f"  capped at 100%: {'; '.join(over)}, because not every delivery has been "
            "reported by the webhook yet"
        )
    lines.append(
        "  most read for their position (lift: click-through against what the position "
        "predicts, shrunk while few readers had it; clicks are unique readers):"
    )
    for n, story in enumerate(report["stories"], start=1):
        title = story["title"] or "(story no longer in the store)"
        positions = ", ".join(str(p) for p in story["positions"])
        lines.append(
            f"    {n}. {title} [story {story['story_id']}] {story['url'] or ''}: position "
            f"{positions}, {story['impressions']} readers, clicked by "
            f"{_count(story['human_clicks'])} (+ {_count(story['machine_clicks'])} machines), "
            f"CTR {_percent(story['ctr'])}, expected {_percent(story['expected_ctr'])}, lift "
            f"{'n/a' if story['lift'] is None else format(story['lift'], '.2f')}"
        )
    if not report["stories"]:
        lines.append("    (no stories)")
    for link in report["links"]:
        lines.append(
            f"  other link {link['link']}: clicked by {link['readers']} reader(s), "
            f"{link['clicks']} click(s)"
        )
    for aside in report["set_aside"]:
        lines.append(f"  set aside: {aside['clicks']} story click(s) {aside['reason']}")
    lines.append(f"  completeness: {report['completeness']['note']}")
    if report["completeness"]["posts_waiting"]:
        lines.append(
            f"  {report['completeness']['posts_waiting']} webhook post(s) are stored but not "
            f"processed yet; `{digest_command()} run` processes them"
        )
    return lines


def report_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False)
