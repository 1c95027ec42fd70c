"""`digest status`: the last runs, each newsletter's recent slots, what is due, what needs a hand.

For each newsletter: its recent slots with the ledger's sent, failed, skipped and unknown
counts (`sending` rows are unknown), what a run now would do, the next slot in each of its
readers' time zones, and any failed or unknown deliveries with the command that deals with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlite_utils import Database

from .clock import from_db, to_db
from .config import Config, NewsletterConfig
from .delivery.holds import Hold, active_holds, hold_on
from .delivery.ledger import (
    DeliveryStatus,
    audience_filter,
    audience_variants,
    edition_counts,
    failed_by_edition,
    tally,
    unknown_batches,
)
from .delivery.send import send_command
from .delivery.slots import (
    RunRecord,
    SlotRecord,
    find_slot_record,
    last_records,
    recent_runs,
    recent_slots,
    slot_record,
    slots_between,
)
from .edition.build import edition_slot, slot_edition_ids, slot_histories
from .edition.checks import CheckSummary, summarize
from .feedback.events import unknown_batch_hint, waiting_posts
from .feedback.sunset import waiting_for_events
from .invocation import digest_command
from .preview import VariantPlan
from .readers.signup import unsent_confirmations
from .run import reader_timezones, schedules, slot_label
from .schedule import (
    BACKFILL,
    Decision,
    Slot,
    SlotStatus,
    decide,
    next_slot_after,
    slot_times,
)

if TYPE_CHECKING:
    from .feedback.charts import Picture

# The day strip: the hours either side of now it shows, 24 in all.
STRIP_HOURS = 12


@dataclass(frozen=True)
class Attention:
    """Deliveries an operator must decide about, and the command that deals with them."""

    what: str
    command: str


def span(length: timedelta) -> str:
    """A length of time as people read it on a desk: "5 h 12 m", "40 m", "2 d 3 h"."""
    minutes = int(abs(length).total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days} d {hours} h"
    return f"{hours} h {minutes} m" if hours else f"{minutes} m"


def missed_at(deadline: datetime, now: datetime) -> str:
    """When a slot not sent is (or was) missed: "missed at 13:00 UTC, in 5 h 12 m"."""
    when = f"{deadline:%Y-%m-%d %H:%M} UTC"
    if deadline > now:
        return f"missed at {when}, in {span(deadline - now)}"
    return f"missed at {when}, {span(now - deadline)} ago"


@dataclass(frozen=True)
class SlotTrouble:
    """A time zone's latest slot that did not go (failed, held or missed), or an editor's hold."""

    status: str
    slot: Slot | None
    cause: str
    readers: int
    deadline: datetime | None
    now: datetime
    command: str = ""

    def line(self) -> str:
        where = f"{slot_label(self.slot)}: " if self.slot else ""
        parts = [f"{self.status}: {where}{self.cause}", f"{self.readers} readers"]
        if self.deadline is not None:
            parts.append(missed_at(self.deadline, self.now))
        line = "; ".join(parts)
        return line + (f"; `{self.command}`" if self.command else "")


def slot_troubles(db: Database, newsletter: NewsletterConfig, now: datetime) -> list[SlotTrouble]:
    """Every zone whose latest slot failed, was held or missed, and every hold in force.

    A failed or held slot still within grace says when it will be missed; once a later slot
    of the zone goes, the zone drops off the list.
    """
    grace = timedelta(hours=newsletter.grace_hours)
    troubles = []
    for (name, zone), last in sorted(last_records(db).items()):
        if name != newsletter.name or last.status not in (
            SlotStatus.FAILED,
            SlotStatus.HELD,
            SlotStatus.MISSED,
        ):
            continue
        slot = Slot(last.at, name, zone)
        record = slot_record(db, slot)
        deadline = None if last.status == SlotStatus.MISSED else slot.at + grace
        command = ""
        if last.status == SlotStatus.FAILED and deadline and deadline > now:
            command = f"{digest_command()} run"
        # Held by its checks (a hold by hand is listed below, with its release command).
        elif (
            last.status == SlotStatus.HELD
            and deadline
            and deadline > now
            and held_readers(db, slot)
        ):
            command = f"{digest_command()} check"
        troubles.append(
            SlotTrouble(
                str(last.status),
                slot,
                record.note,
                held_readers(db, slot) or zone_readers(db, name, zone),
                deadline,
                now,
                command,
            )
        )
    for hold in active_holds(db, newsletter.name, now):
        zones = [hold.timezone] if hold.timezone else reader_timezones(db, newsletter.name)
        troubles.append(
            SlotTrouble(
                "held by hand",
                None,
                hold.describe(),
                sum(zone_readers(db, newsletter.name, zone) for zone in zones),
                None,
                now,
                hold.release_command(),
            )
        )
    return troubles


def held_readers(db: Database, slot: Slot) -> int:
    """The readers of the slot's editions that checks hold (queued, waiting for a fix)."""
    return db.execute(
        """SELECT COUNT(*) FROM deliveries d JOIN editions e ON e.id = d.edition_id
           WHERE e.newsletter = ? AND e.timezone = ? AND e.slot_at = ? AND e.held != ''""",
        [slot.newsletter, slot.timezone, to_db(slot.at)],
    ).fetchone()[0]


def zone_readers(db: Database, newsletter: str, timezone: str) -> int:
    """How many of the newsletter's active readers are in `timezone`."""
    return sum(readers for _, readers in audience_variants(db, newsletter, timezone))


@dataclass(frozen=True)
class NewsletterStatus:
    newsletter: NewsletterConfig
    slots: list[tuple[SlotRecord, dict[str, int]]]
    due: list[Decision]
    # Per slot shown, its variants made for a history: (name, counts), in order.
    histories: dict[Slot, list[tuple[str, dict[str, int]]]]
    next_slots: list[Slot]
    attention: list[Attention]
    # Each slot of the 24 hours around now, per zone (`day_strip`).
    strip: list[dict[str, Any]] = field(default_factory=list)
    troubles: list[SlotTrouble] = field(default_factory=list)
    holds: list[Hold] = field(default_factory=list)
    # What the sunset policy is doing (off, waiting for events, or asking and lapsing).
    sunset: str = ""

    def lines(self) -> list[str]:
        nl = self.newsletter
        lines = [
            f"{nl.name}: {nl.schedule!r} in each reader's time zone, grace {nl.grace_hours:g}h"
        ]
        lines.append("  recent slots:" if self.slots else "  recent slots: none yet")
        for record, counts in self.slots:
            lines.append(
                f"    {slot_label(record.slot)}  {record.status}  {_outcome(record, counts)}"
            )
            lines += [
                f"      variant {history}: {tally(counts)}"
                for history, counts in self.histories.get(record.slot, [])
            ]
        lines.append("  due now:" if self.due else "  due now: nothing")
        for decision in self.due:
            action = "send" if decision.action == "send" else f"record missed ({decision.reason})"
            hold = next((h for h in self.holds if h.covers(decision.slot.timezone)), None)
            if decision.action == "send" and hold is not None:
                action = f"record held ({hold.describe()})"
            lines.append(f"    {slot_label(decision.slot)}: {action}")
        lines.append("  next:")
        lines += [f"    {slot_label(slot)}" for slot in self.next_slots]
        if self.sunset:
            lines.append(f"  sunset policy: {self.sunset}")
        attention = [item.line() for item in self.troubles] + [
            f"{item.what}: `{item.command}`" for item in self.attention
        ]
        lines.append("  needs attention:" if attention else "  needs attention: nothing")
        lines += [f"    {line}" for line in attention]
        return lines


@dataclass(frozen=True)
class Status:
    now: datetime
    runs: list[RunRecord]
    newsletters: list[NewsletterStatus]
    # Webhook posts stored but not processed, and why one of them failed, if one did.
    posts_waiting: int = 0
    posts_note: str | None = None
    # Sign-ups whose confirmation email could not be sent yet, and the last reason.
    confirmations_unsent: tuple[int, str | None] = (0, None)

    def lines(self) -> list[str]:
        lines = [f"status at {self.now:%Y-%m-%d %H:%M} UTC"]
        lines.append(
            "last runs:" if self.runs else "last runs: none recorded yet (is cron set up?)"
        )
        for run in self.runs:
            outcome = "FAILED" if run.failed else "ok"
            lines.append(
                f"  {run.run_at:%Y-%m-%d %H:%M} UTC  digest {run.command}  {outcome}: {run.summary}"
            )
        if self.posts_waiting:
            why = f" ({self.posts_note}; the log has the rest)" if self.posts_note else ""
            lines.append(
                f"webhook: {self.posts_waiting} post(s) stored but not processed{why}; "
                f"`{digest_command()} run` processes them"
                + (
                    f", or `{digest_command()} webhook discard ID` gives one up"
                    if self.posts_note
                    else ""
                )
            )
        unsent, reason = self.confirmations_unsent
        if unsent:
            lines.append(
                f"sign-ups: {unsent} confirmation email(s) not sent yet ({reason}); "
                f"`{digest_command()} run` tries again every few minutes"
            )
        for newsletter in self.newsletters:
            lines += ["", *newsletter.lines()]
        return lines


def digest_status(db: Database, config: Config, now: datetime, limit: int = 10) -> Status:
    """What `digest status` shows, as of `now`."""
    due = decide(schedules(db, config), now, last_records(db))
    newsletters = []
    for nl in config.newsletters.values():
        zones = reader_timezones(db, nl.name) or (nl.timezone,)
        slots = [(r, slot_counts(db, r.slot)) for r in recent_slots(db, nl.name, limit)]
        newsletters.append(
            NewsletterStatus(
                newsletter=nl,
                slots=slots,
                due=[d for d in due if d.slot.newsletter == nl.name],
                histories={r.slot: history_variants(db, r.slot) for r, _ in slots},
                next_slots=sorted(
                    Slot(next_slot_after(nl.schedule, zone, now), nl.name, zone) for zone in zones
                ),
                attention=failed_deliveries(db, nl.name, now) + unknown_deliveries(db, nl.name),
                strip=day_strip(db, nl, now, due, zones),
                troubles=slot_troubles(db, nl, now),
                holds=active_holds(db, nl.name, now),
                sunset=sunset_state(db, nl),
            )
        )
    return Status(
        now,
        recent_runs(db),
        newsletters,
        *waiting_posts(db),
        confirmations_unsent=unsent_confirmations(db),
    )


def day_strip(
    db: Database,
    nl: NewsletterConfig,
    now: datetime,
    due: list[Decision],
    zones: tuple[str, ...],
) -> list[dict[str, Any]]:
    """Each slot of the newsletter within STRIP_HOURS of now, per zone, with its state and
    readers: as recorded (sent, failed, skipped, missed, held, with the ledger's count when it
    ran), due (a run now sends it, or records it missed), held by an editor's hold, or to
    come (the zone's readers now, for those not sent).
    A past slot with no record came before the zone had readers: it is left out."""
    start, end = now - timedelta(hours=STRIP_HOURS), now + timedelta(hours=STRIP_HOURS)
    recorded = {(r.slot.timezone, r.slot.at): r for r in slots_between(db, nl.name, start, end)}
    decided = {(d.slot.timezone, d.slot.at): d for d in due if d.slot.newsletter == nl.name}
    rows = []
    for zone in sorted({*zones, *(z for z, _ in recorded)}):
        for at in slot_times(nl.schedule, zone, start, end):
            record, decision = recorded.get((zone, at)), decided.get((zone, at))
            hold = hold_on(db, nl.name, zone, max(at, now))
            if record is not None:
                state, note = str(record.status), record.note
                readers = record.sent + record.failed + record.skipped + record.unknown
                if record.status == SlotStatus.HELD:
                    readers = _zone_readers(db, nl.name, zone)
            elif decision is not None and decision.action == "missed":
                state, readers, note = "missed", _zone_readers(db, nl.name, zone), decision.reason
            elif (decision is not None or at > now) and hold is not None:
                state, readers, note = "held", _zone_readers(db, nl.name, zone), hold.describe()
            elif decision is not None:
                state, readers, note = "due", _zone_readers(db, nl.name, zone), ""
            elif at > now:
                state, readers, note = "to come", _zone_readers(db, nl.name, zone), ""
            else:
                continue
            rows.append(
                {
                    "zone": zone,
                    "at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "local": f"{Slot(at, nl.name, zone).local:%H:%M}",
                    "state": state,
                    "readers": readers,
                    "note": note,
                }
            )
    return rows


def _zone_readers(db: Database, newsletter: str, zone: str) -> int:
    where, params = audience_filter(newsletter, zone)
    count: int = db.execute(f"SELECT COUNT(*) FROM subscribers WHERE {where}", params).fetchone()[0]
    return count


def sunset_state(db: Database, newsletter: NewsletterConfig) -> str:
    """The sunset policy's state in one line."""
    if not newsletter.sunset.enabled:
        return "off"
    if waiting_for_events(db, newsletter.name):
        return (
            "waiting for events: the webhook has reported on no edition yet, so nobody is "
            "asked or lapsed (is SendGrid's Event Webhook set up?)"
        )
    asked, unknown, lapsed = db.execute(
        """SELECT COALESCE(SUM(status = 'active'), 0),
                  COALESCE(SUM(status = 'active' AND reconfirm_id IS NULL), 0),
                  COALESCE(SUM(status = 'lapsed'), 0)
           FROM subscriptions
           WHERE newsletter = ? AND (asked_at IS NOT NULL OR status = 'lapsed')""",
        [newsletter.name],
    ).fetchone()
    # Claimed with no send recorded: a run stopped, or SendGrid did not answer.
    fate = (
        f" ({unknown} of them unknown: the email may or may not have left; not sent again, "
        f"asked anew after {newsletter.sunset.grace_days} days unless they answer)"
        if unknown
        else ""
    )
    return (
        f"on: {asked} reader(s) asked and not answered yet{fate}, {lapsed} lapsed; "
        f"`{digest_command()} report --list` has the figures"
    )


def slot_counts(db: Database, slot: Slot) -> dict[str, int]:
    """The slot's deliveries by ledger status, over all its editions, as they stand now."""
    counts: dict[str, int] = {status: 0 for status in DeliveryStatus}
    for edition_id in slot_edition_ids(db, slot.newsletter, slot.at, slot.timezone):
        for status, n in edition_counts(db, edition_id).items():
            counts[status] = counts.get(status, 0) + n
    return counts


def history_variants(db: Database, slot: Slot) -> list[tuple[str, dict[str, int]]]:
    """The slot's variants made for a reader history, each with its ledger counts."""
    return [
        (history, edition_counts(db, edition_id))
        for edition_id, history in slot_histories(db, slot.newsletter, slot.at, slot.timezone)
    ]


def failed_deliveries(db: Database, newsletter: str, now: datetime) -> list[Attention]:
    """Editions of the last BACKFILL days with failed recipients."""
    return [
        Attention(
            f"{row['recipients']} failed at {row['slot_at']}"
            f"{' in ' + row['timezone'] if row['timezone'] else ''} ({row['error']})",
            send_command(newsletter, row["timezone"], from_db(row["slot_at"]), "--retry-failed"),
        )
        for row in failed_by_edition(db, newsletter, now - BACKFILL)
    ]


def unknown_deliveries(db: Database, newsletter: str) -> list[Attention]:
    """Batches a killed process left `sending`: they may or may not have reached the provider.

    Any webhook event of a batch settles it, so the webhook's news of the edition's other
    batches says which: heard about them, this one probably never arrived; silent, unknown.
    """
    attention = []
    for batch in unknown_batches(db):
        edition_newsletter, slot_at, timezone = edition_slot(db, batch["edition_id"])
        if edition_newsletter != newsletter:
            continue
        hint = unknown_batch_hint(db, batch["edition_id"], batch["batch_key"])
        attention.append(
            Attention(
                f"batch {batch['batch_key']} ({batch['recipients']} readers, unknown since "
                f"{batch['since']}): {hint}",
                send_command(newsletter, timezone, slot_at, "--resend-unknown"),
            )
        )
    return attention


def _outcome(record: SlotRecord, counts: dict[str, int]) -> str:
    if record.status in (SlotStatus.MISSED, SlotStatus.SKIPPED):
        return record.note
    if record.status == SlotStatus.FAILED:
        return f"{tally(counts)}; {record.note} (attempt {record.attempts})"
    return tally(counts)


def newsletter_strip(
    db: Database, config: Config, newsletter: str | None, now: datetime
) -> list[dict[str, Any]]:
    """The day strip of one newsletter (the studio's front page)."""
    nl = config.newsletter(newsletter)
    due = decide(schedules(db, config), now, last_records(db))
    return day_strip(db, nl, now, due, reader_timezones(db, nl.name) or (nl.timezone,))


def strip_picture(rows: list[dict[str, Any]], newsletter: str, now: datetime) -> Picture:
    from .feedback import charts  # the charts' libraries, only for the pictures (25 MB)

    return charts.day_strip(f"strip-{newsletter}", rows, f"{now:%Y-%m-%dT%H:%M:%SZ}", STRIP_HOURS)


def status_html(status: Status) -> str:
    """`digest status --html`: one self-contained page, a day strip per newsletter."""
    from .feedback.document import inline_svg, render_page

    return render_page(
        "status_file.html",
        status=status,
        strips=[
            (n.newsletter, strip_picture(n.strip, n.newsletter.name, status.now))
            for n in status.newsletters
        ],
        draw=inline_svg,
        printed="\n".join(status.lines()),
    )


@dataclass(frozen=True)
class ZoneDesk:
    """One time zone's next slot on the studio's desk: when, in what state, for whom."""

    timezone: str
    slot: Slot
    grace: timedelta
    state: str
    cause: str
    plans: list[VariantPlan]
    now: datetime
    hold: Hold | None = None

    @property
    def readers(self) -> int:
        return sum(plan.readers for plan in self.plans)

    @property
    def deadline(self) -> datetime:
        """The end of grace: not sent by then, the slot is missed."""
        return self.slot.at + self.grace

    @property
    def countdown(self) -> str:
        if self.state in ("sent", "skipped", "missed"):
            return self.state
        if self.slot.at > self.now:
            return f"in {span(self.slot.at - self.now)}"
        return f"late by {span(self.now - self.slot.at)}; {missed_at(self.deadline, self.now)}"


@dataclass(frozen=True)
class Desk:
    """The studio's front page: every zone's next slot in the order they go out, and checks."""

    zones: list[ZoneDesk]
    summary: CheckSummary
    troubles: list[SlotTrouble]


def desk(
    db: Database,
    config: Config,
    plans: list[VariantPlan],
    newsletter_name: str | None,
    now: datetime,
) -> Desk:
    """Group the next send's variants by zone, each zone with its slot's state."""
    nl = config.newsletter(newsletter_name)
    grace = timedelta(hours=nl.grace_hours)
    by_zone: dict[tuple[datetime, str], list[VariantPlan]] = {}
    for plan in plans:
        by_zone.setdefault((plan.target.slot_at, plan.target.timezone), []).append(plan)
    zones = []
    for (slot_at, zone), zone_plans in sorted(by_zone.items()):
        slot = Slot(slot_at, nl.name, zone)
        record = find_slot_record(db, slot)
        hold = hold_on(db, nl.name, zone, now)
        if record is not None:
            state, cause = str(record.status), record.note
        elif hold is not None:
            state, cause = "held", hold.describe()
        elif any(plan.errors for plan in zone_plans):
            state, cause = "would be held", "a variant's checks found an error"
        elif all(plan.view.note for plan in zone_plans):
            state, cause = "would be skipped", zone_plans[0].view.note
        else:
            state, cause = "would send", ""
        zones.append(ZoneDesk(zone, slot, grace, state, cause, zone_plans, now, hold))
    summary = summarize([list(plan.findings) for plan in plans])
    return Desk(zones, summary, slot_troubles(db, nl, now))
