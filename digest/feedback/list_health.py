"""List health: each newsletter's readers by state now, and one recorded row of counts per day.

Every subscription of a newsletter is in exactly one state, so the states add up to the
subscriptions table: `bounced` and `complained` (the address's, whatever the subscription
says), else the subscription's own `active`, `pending`, `lapsed` or `unsubscribed`. Among the
active: `engaged` (a human open or click in the last 30 days), `cold` (the sunset policy
would ask them now) and `asked` (the reconfirm email went, no answer yet). `digest run`
records the counts once per newsletter and UTC day (`record_day`); `digest report --list`
and the studio's list health page show today's and the last 90 days'.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from sqlite_utils import Database

from ..clock import to_db
from ..config import Config, NewsletterConfig
from ..invocation import digest_command
from .sunset import cold_readers, waiting_for_events

STATES = ("active", "pending", "lapsed", "bounced", "complained", "unsubscribed")
ENGAGED_DAYS = 30
HISTORY_DAYS = 90
COUNTS = ("subscriptions", *STATES, "engaged", "cold", "asked")


def state_counts(db: Database, newsletter: str) -> dict[str, int]:
    """The newsletter's subscriptions now, by state (`STATES`), and all of them."""
    counts = dict.fromkeys(("subscriptions", *STATES), 0)
    rows = db.execute(
        """SELECT CASE WHEN r.status IN ('bounced', 'complained') THEN r.status
                       ELSE s.status END AS state, COUNT(*)
           FROM subscriptions s JOIN subscribers r ON r.id = s.subscriber_id
           WHERE s.newsletter = ? GROUP BY state""",
        [newsletter],
    )
    for state, n in rows:
        counts[state] += n
        counts["subscriptions"] += n
    return counts


def current_counts(db: Database, newsletter: NewsletterConfig, now: datetime) -> dict[str, int]:
    """The newsletter's subscriptions by state at `now`, and the active ones' engagement."""
    counts = dict.fromkeys(COUNTS, 0) | state_counts(db, newsletter.name)
    engaged_since = to_db(now - timedelta(days=ENGAGED_DAYS))
    engaged, asked = db.execute(
        """SELECT
               COALESCE(SUM(MAX(COALESCE(g.last_open_at, ''), COALESCE(g.last_click_at, ''))
                            >= :since), 0),
               COALESCE(SUM(s.asked_at IS NOT NULL), 0)
           FROM subscriptions s JOIN subscribers r ON r.id = s.subscriber_id
           LEFT JOIN reader_engagement g
             ON g.subscriber_id = s.subscriber_id AND g.newsletter = s.newsletter
           WHERE s.newsletter = :newsletter AND s.status = 'active' AND r.status = 'active'""",
        {"newsletter": newsletter.name, "since": engaged_since},
    ).fetchone()
    counts["engaged"] = engaged
    counts["asked"] = asked
    counts["cold"] = len(cold_readers(db, newsletter, now)) if newsletter.sunset.enabled else 0
    return counts


def readers_by_engagement(
    db: Database, config: Config, newsletter: str, kind: str, now: datetime
) -> list[int]:
    """The ids of the newsletter's active readers who are `engaged`, `cold` or `asked`."""
    nl = config.newsletter(newsletter)
    if kind == "cold":
        return cold_readers(db, nl, now) if nl.sunset.enabled else []
    if kind not in ("engaged", "asked"):
        raise ValueError(f"engagement {kind!r} is not one of engaged, cold, asked")
    condition = (
        "MAX(COALESCE(g.last_open_at, ''), COALESCE(g.last_click_at, '')) >= :since"
        if kind == "engaged"
        else "s.asked_at IS NOT NULL"
    )
    rows = db.execute(
        f"""SELECT s.subscriber_id FROM subscriptions s
            JOIN subscribers r ON r.id = s.subscriber_id
            LEFT JOIN reader_engagement g
              ON g.subscriber_id = s.subscriber_id AND g.newsletter = s.newsletter
            WHERE s.newsletter = :newsletter AND s.status = 'active' AND r.status = 'active'
              AND {condition} ORDER BY s.subscriber_id""",
        {"newsletter": nl.name, "since": to_db(now - timedelta(days=ENGAGED_DAYS))},
    )
    return [subscriber_id for (subscriber_id,) in rows]


def day_recorded(db: Database, newsletter: str, now: datetime) -> bool:
    """Whether `digest run` has recorded the newsletter's counts for `now`'s UTC day."""
    row = db.execute(
        "SELECT 1 FROM list_health WHERE newsletter = ? AND day = ?",
        [newsletter, now.date().isoformat()],
    ).fetchone()
    return row is not None


def record_day(db: Database, newsletter: NewsletterConfig, now: datetime) -> dict[str, int]:
    """Record the day's counts (the first record of a day stands); returns them."""
    counts = current_counts(db, newsletter, now)
    db.execute(
        """INSERT OR IGNORE INTO list_health (newsletter, day, counts, recorded_at)
           VALUES (?, ?, ?, ?)""",
        [newsletter.name, now.date().isoformat(), json.dumps(counts), to_db(now)],
    )
    return counts


def history(db: Database, newsletter: str, now: datetime) -> list[dict[str, Any]]:
    """The recorded days of the last HISTORY_DAYS up to `now`, oldest first."""
    first = (now - timedelta(days=HISTORY_DAYS - 1)).date().isoformat()
    rows = db.execute(
        """SELECT day, counts FROM list_health WHERE newsletter = ? AND day >= ? AND day <= ?
           ORDER BY day""",
        [newsletter, first, now.date().isoformat()],
    )
    return [{"day": day, **dict.fromkeys(COUNTS, 0), **json.loads(counts)} for day, counts in rows]


def list_health(
    db: Database, config: Config, newsletter: str | None, now: datetime
) -> dict[str, Any]:
    """One newsletter's list health: today's counts, the policy's state, the recorded days."""
    nl = config.newsletter(newsletter)
    policy = nl.sunset
    if not policy.enabled:
        sunset = "off (enabled = false): nobody is asked or lapsed"
    elif waiting_for_events(db, nl.name):
        sunset = (
            "waiting for events: the webhook has reported on no edition yet, so nobody is "
            "counted cold (is SendGrid's Event Webhook set up?)"
        )
    else:
        sunset = (
            f"on: cold after {policy.after_days} days and {policy.min_editions} editions "
            f"without a human open or click; lapsed {policy.grace_days} days after being asked"
        )
    return {
        "newsletter": nl.name,
        "title": nl.title,
        "as_of": to_db(now),
        "sunset": sunset,
        "counts": current_counts(db, nl, now),
        "days": history(db, nl.name, now),
    }


def list_health_lines(health: dict[str, Any]) -> list[str]:
    """List health as `digest report --list` prints it."""
    n = health["counts"]
    lines = [
        f"{health['title']} ({health['newsletter']}): list health as of {health['as_of']}",
        f"  sunset policy: {health['sunset']}",
        f"  subscriptions {n['subscriptions']} = active {n['active']} + pending {n['pending']} + "
        f"lapsed {n['lapsed']} + bounced {n['bounced']} + complained {n['complained']} + "
        f"unsubscribed {n['unsubscribed']}",
        f"  of the active: engaged in {ENGAGED_DAYS} days {n['engaged']}, cold {n['cold']}, "
        f"asked {n['asked']}",
    ]
    if not health["days"]:
        lines.append(f"  per day: none recorded yet (`{digest_command()} run` records one a day)")
        return lines
    lines.append(f"  per day (last {HISTORY_DAYS} days, as `digest run` recorded them):")
    lines.append("    day         active engaged cold asked lapsed bounced complained unsubscribed")
    lines += [
        f"    {d['day']}  {d['active']:>6} {d['engaged']:>7} {d['cold']:>4} {d['asked']:>5} "
        f"{d['lapsed']:>6} {d['bounced']:>7} {d['complained']:>10} {d['unsubscribed']:>12}"
        for d in health["days"]
    ]
    return lines
