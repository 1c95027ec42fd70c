"""The sunset policy: readers who stopped reading are asked once ("Still want it?"), then rest.

`digest run` calls `apply_sunset` for every newsletter whose `[newsletters.NAME.sunset]` is
enabled. A reader is *cold* when, since their last human open or click (`reader_engagement`,
kept by `events`; Apple's proxy and link scanners do not count), since they pressed the keep
button and since their subscription last changed, at least `min_editions` editions reached
them over at least `after_days` (by the editions' slot times), counting only editions the
webhook has reported on (an edition it was silent about proves nothing) and not those that
bounced, were blocked or dropped. With no events at all for a newsletter nobody is cold:
the policy waits for them.

Each cold reader gets one reconfirm email (claimed before it is sent, so never twice).
Pressing its keep button (a POST), or a human open or click that happened after their
silence began, ends the ask, and brings back a reader who had lapsed (a late event after the
lapse included). A reader still asked `grace_days` after the email left becomes `lapsed`.
A bounced or complained address is that, not lapsed. Finding cold readers reads every
subscription's deliveries, so `digest run` asks (`ask=True`) once per newsletter and UTC day,
when it records the day's list health (`list_health`); ending asks and lapsing run every time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlite_utils import Database

from ..clock import from_db, to_db
from ..config import Config, NewsletterConfig
from ..delivery.transports import Transport
from ..edition.checks import has_errors
from ..edition.render import Renderer
from ..errors import DeliveryUnknownError, DigestError, TransportAuthError
from ..readers.reconfirm import reconfirm_checks, render_reconfirm, send_reconfirm
from ..readers.subscribers import subscriber_by_id
from ..readers.subscriptions import (
    claim_reconfirm,
    keep_subscription,
    lapse_subscription,
    reconfirm_sent,
    release_reconfirm,
)
from ..store import write_transaction

# The delivery states that prove an edition did not reach the reader: not their silence.
NOT_DELIVERED = ("dropped", "blocked", "bounced")


@dataclass
class SunsetReport:
    """What the policy did for one newsletter in one run."""

    newsletter: str
    asked: int = 0
    kept: int = 0
    revived: int = 0
    lapsed: int = 0
    released: int = 0
    waiting: bool = False
    errors: list[str] = field(default_factory=list)

    def line(self) -> str | None:
        """One line for the run's report, or None when nothing happened."""
        parts = [
            f"{n} {what}"
            for n, what in (
                (self.asked, "asked"),
                (self.kept, "kept by reading"),
                (self.revived, "back from lapsed"),
                (self.lapsed, "lapsed"),
                (self.released, "ask(s) of unknown fate released"),
            )
            if n
        ]
        parts += [f"FAILED: {error}" for error in self.errors]
        return f"sunset {self.newsletter}: {', '.join(parts)}" if parts else None


def heard_editions(db: Database, newsletter: str) -> list[int]:
    """The newsletter's editions the webhook has reported on (any event at all)."""
    rows = db.execute(
        """SELECT DISTINCT ev.edition_id FROM events ev
           JOIN editions e ON e.id = ev.edition_id WHERE e.newsletter = ?""",
        [newsletter],
    )
    return [edition_id for (edition_id,) in rows]


def waiting_for_events(db: Database, newsletter: str) -> bool:
    """Whether no edition of the newsletter has any event yet: then nobody can be cold."""
    return not heard_editions(db, newsletter)


def cold_readers(db: Database, newsletter: NewsletterConfig, now: datetime) -> list[int]:
    """The active, not yet asked readers of the newsletter who are cold at `now` (ids)."""
    policy = newsletter.sunset
    silent_since = to_db(now - timedelta(days=policy.after_days))
    heard = heard_editions(db, newsletter.name)
    editions = db.execute(
        f"""SELECT id, slot_at FROM editions WHERE id IN ({",".join(map(str, heard))})
            AND slot_at <= ? ORDER BY slot_at DESC, id DESC""",
        [to_db(now)],
    ).fetchall()
    if not editions or editions[-1][1] > silent_since:
        return []
    # Who could be cold: silent since before the window, with when their silence began.
    baseline = """MAX(s.updated_at, COALESCE(s.kept_at, ''), COALESCE(g.last_open_at, ''),
                      COALESCE(g.last_click_at, ''))"""
    since: dict[int, str] = dict(
        db.execute(
            f"""SELECT s.subscriber_id, {baseline} FROM subscriptions s
                JOIN subscribers r ON r.id = s.subscriber_id
                LEFT JOIN reader_engagement g
                  ON g.subscriber_id = s.subscriber_id AND g.newsletter = s.newsletter
                WHERE s.newsletter = ? AND s.status = 'active' AND r.status = 'active'
                  AND s.asked_at IS NULL AND {baseline} < ?""",
            [newsletter.name, silent_since],
        ).fetchall()
    )
    # Then the heard editions' deliveries, edition by edition in the order they are stored,
    # newest first: a million readers' deliveries are not each looked up by reader. Past the
    # window, an older edition is read only while some candidate still needs one, and none
    # older than twice `after_days`: a year of editions is not read every day, and a reader
    # whose silence shows only in older ones is not asked (benchmarks/sunset.py).
    oldest = to_db(now - timedelta(days=2 * policy.after_days))
    counts: dict[int, int] = {}
    old_enough: set[int] = set()
    unresolved = set(since)
    for edition_id, slot_at in editions:
        if slot_at <= silent_since and (
            slot_at <= oldest or not unresolved or slot_at <= min(since[r] for r in unresolved)
        ):
            break
        undelivered = {
            subscriber_id
            for (subscriber_id,) in db.execute(
                f"""SELECT subscriber_id FROM delivery_states WHERE edition_id = ?
                    AND state IN ({",".join(repr(s) for s in NOT_DELIVERED)})""",
                [edition_id],
            )
        }
        for (subscriber_id,) in db.execute(
            "SELECT subscriber_id FROM deliveries WHERE edition_id = ? AND status = 'sent'",
            [edition_id],
        ):
            began = since.get(subscriber_id)
            if began is None or slot_at <= began or subscriber_id in undelivered:
                continue
            count = counts[subscriber_id] = counts.get(subscriber_id, 0) + 1
            if slot_at <= silent_since:
                old_enough.add(subscriber_id)
            if count >= policy.min_editions and subscriber_id in old_enough:
                unresolved.discard(subscriber_id)
    return sorted(
        subscriber_id
        for subscriber_id in old_enough
        if counts[subscriber_id] >= policy.min_editions
    )


def apply_sunset(
    db: Database,
    config: Config,
    newsletter: NewsletterConfig,
    now: datetime,
    *,
    transport: Transport,
    renderer: Renderer | None = None,
    ask: bool = True,
) -> SunsetReport:
    """End the asks readers answered, lapse the unanswered, then (with `ask`) ask the cold."""
    report = SunsetReport(newsletter.name)
    _end_answered_asks(db, newsletter, now, report)
    _lapse_unanswered(db, newsletter, now, report)
    report.waiting = waiting_for_events(db, newsletter.name)
    if ask and not report.waiting:
        _ask_cold(db, config, newsletter, now, transport, renderer, report)
    return report


def _end_answered_asks(
    db: Database, newsletter: NewsletterConfig, now: datetime, report: SunsetReport
) -> None:
    """Asked or lapsed readers with a human open or click after their silence began."""
    after = timedelta(days=newsletter.sunset.after_days)
    rows = db.execute(
        """SELECT s.subscriber_id, s.asked_at,
                  MAX(COALESCE(g.last_open_at, ''), COALESCE(g.last_click_at, ''))
           FROM subscriptions s JOIN reader_engagement g
             ON g.subscriber_id = s.subscriber_id AND g.newsletter = s.newsletter
           WHERE s.newsletter = ? AND s.asked_at IS NOT NULL
             AND s.status IN ('active', 'lapsed')""",
        [newsletter.name],
    ).fetchall()
    for subscriber_id, asked_at, engaged_at in rows:
        # Known when they were asked, an engagement was older than this: a later one (late
        # in arriving, or new) shows the silence was not what it seemed.
        if not engaged_at or from_db(engaged_at) <= from_db(asked_at) - after:
            continue
        detail = f"a human open or click at {engaged_at}"
        kept = keep_subscription(db, subscriber_id, newsletter.name, now, "webhook", detail)
        if kept == "lapsed":
            report.revived += 1
        elif kept is not None:
            report.kept += 1


def _lapse_unanswered(
    db: Database, newsletter: NewsletterConfig, now: datetime, report: SunsetReport
) -> None:
    """Asked readers whose grace is over: lapsed if the email left, asked again if unknown."""
    cutoff = to_db(now - timedelta(days=newsletter.sunset.grace_days))
    rows = db.execute(
        """SELECT s.subscriber_id, s.reconfirm_id FROM subscriptions s
           JOIN subscribers r ON r.id = s.subscriber_id
           WHERE s.newsletter = ? AND s.asked_at IS NOT NULL AND s.asked_at <= ?
             AND s.status = 'active' AND r.status = 'active'""",
        [newsletter.name, cutoff],
    ).fetchall()
    for subscriber_id, reconfirm_id in rows:
        if reconfirm_id is None:
            # Claimed, but the run stopped before it knew the email left: never lapse a
            # reader who may not have been asked; they are asked again when next found cold.
            with write_transaction(db):
                release_reconfirm(db, subscriber_id, newsletter.name)
            report.released += 1
        elif lapse_subscription(db, subscriber_id, newsletter.name):
            report.lapsed += 1


def _ask_cold(
    db: Database,
    config: Config,
    newsletter: NewsletterConfig,
    now: datetime,
    transport: Transport,
    renderer: Renderer | None,
    report: SunsetReport,
) -> None:
    cold = cold_readers(db, newsletter, now)
    if not cold:
        return
    try:
        email = render_reconfirm(
            config, renderer or Renderer(config.templates_dir), newsletter, now
        )
    except DigestError as exc:
        report.errors.append(f"the reconfirm email does not render: {exc}; nobody was asked")
        return
    findings = reconfirm_checks(config, email)
    if has_errors(findings):
        problems = "; ".join(f.message for f in findings if f.level == "error")
        report.errors.append(f"the reconfirm email fails its checks ({problems}); nobody was asked")
        return
    for subscriber_id in cold:
        subscriber = subscriber_by_id(db, subscriber_id)
        with write_transaction(db):
            claimed = subscriber is not None and claim_reconfirm(
                db, subscriber_id, newsletter.name, now
            )
        if not claimed or subscriber is None:
            continue
        try:
            provider_id = send_reconfirm(config, transport, email, subscriber, now)
        except TransportAuthError:
            with write_transaction(db):
                release_reconfirm(db, subscriber_id, newsletter.name)
            raise
        except DeliveryUnknownError as exc:
            # It may have left: the claim stays (never sent again tomorrow); unanswered, it is
            # released after grace_days like a run that stopped (`_lapse_unanswered`).
            report.errors.append(
                f"reconfirm email to subscriber {subscriber_id} may or may not have left ({exc}); "
                "it is not sent again, and the cold readers not yet asked are asked tomorrow"
            )
            return
        except DigestError as exc:
            with write_transaction(db):
                release_reconfirm(db, subscriber_id, newsletter.name)
            # The transport is failing: the others are asked on the next day's run.
            report.errors.append(
                f"reconfirm email to subscriber {subscriber_id} not sent ({exc}); "
                "the cold readers not yet asked are asked tomorrow"
            )
            return
        reconfirm_sent(db, subscriber_id, newsletter.name, provider_id)
        report.asked += 1
