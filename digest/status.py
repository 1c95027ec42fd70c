"""`digest status`: the last runs, each newsletter's recent slots, what is due, what needs a hand.

For each newsletter: its recent slots with the ledger's sent, failed, skipped and unknown
counts (`sending` rows are unknown), what a run now would do, the next slot in each of its
readers' time zones, and any failed or unknown deliveries with the command that deals with them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlite_utils import Database

from .clock import from_db
from .config import Config, NewsletterConfig
from .delivery.ledger import (
    DeliveryStatus,
    audience_filter,
    edition_counts,
    failed_by_edition,
    tally,
    unknown_batches,
)
from .delivery.send import send_command
from .delivery.slots import (
    RunRecord,
    SlotRecord,
    last_records,
    recent_runs,
    recent_slots,
    slots_between,
)
from .edition.build import edition_slot, slot_edition_ids
from .feedback import charts
from .feedback.charts import Picture
from .feedback.document import inline_svg, render_page
from .feedback.events import unknown_batch_hint, waiting_posts
from .invocation import digest_command
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

# The day strip: the hours either side of now it shows, 24 in all.
STRIP_HOURS = 12


@dataclass(frozen=True)
class Attention:
    """Deliveries an operator must decide about, and the command that deals with them."""

    what: str
    command: str


@dataclass(frozen=True)
class NewsletterStatus:
    newsletter: NewsletterConfig
    slots: list[tuple[SlotRecord, dict[str, int]]]
    due: list[Decision]
    next_slots: list[Slot]
    attention: list[Attention]
    # Each slot of the 24 hours around now, per zone (`day_strip`).
    strip: list[dict[str, Any]] = field(default_factory=list)

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
        lines.append("  due now:" if self.due else "  due now: nothing")
        for decision in self.due:
            action = "send" if decision.action == "send" else f"record missed ({decision.reason})"
            lines.append(f"    {slot_label(decision.slot)}: {action}")
        lines.append("  next:")
        lines += [f"    {slot_label(slot)}" for slot in self.next_slots]
        lines.append("  needs attention:" if self.attention else "  needs attention: nothing")
        for item in self.attention:
            lines.append(f"    {item.what}: `{item.command}`")
        return lines


@dataclass(frozen=True)
class Status:
    now: datetime
    runs: list[RunRecord]
    newsletters: list[NewsletterStatus]
    # Webhook posts stored but not processed, and why one of them failed, if one did.
    posts_waiting: int = 0
    posts_note: str | None = None

    def lines(self) -> list[str]:
        lines = [f"status at {self.now:%Y-%m-%d %H:%M} UTC"]
        lines.append(
            "last runs:" if self.runs else "last runs: none recorded yet (is cron set up?)"
        )
        for run in self.runs:
            outcome = "FAILED" if run.failed else "ok"
            lines.append(f"  {run.run_at:%Y-%m-%d %H:%M} UTC  {outcome}: {run.summary}")
        if self.posts_waiting:
            why = f" ({self.posts_note}; the log has the rest)" if self.posts_note else ""
            lines.append(
                f"webhook: {self.posts_waiting} post(s) stored but not processed{why}; "
                f"`{digest_command()} run` processes them"
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
        newsletters.append(
            NewsletterStatus(
                newsletter=nl,
                slots=[(r, slot_counts(db, r.slot)) for r in recent_slots(db, nl.name, limit)],
                due=[d for d in due if d.slot.newsletter == nl.name],
                next_slots=sorted(
                    Slot(next_slot_after(nl.schedule, zone, now), nl.name, zone) for zone in zones
                ),
                attention=failed_deliveries(db, nl.name, now) + unknown_deliveries(db, nl.name),
                strip=day_strip(db, nl, now, due, zones),
            )
        )
    return Status(now, recent_runs(db), newsletters, *waiting_posts(db))


def day_strip(
    db: Database,
    nl: NewsletterConfig,
    now: datetime,
    due: list[Decision],
    zones: tuple[str, ...],
) -> list[dict[str, Any]]:
    """Each slot of the newsletter within STRIP_HOURS of now, per zone, with its state and
    readers: as recorded (sent, failed, skipped, missed, with the ledger's count when it ran),
    due (a run now sends it, or records it missed), or to come (the zone's readers now).
    A past slot with no record came before the zone had readers: it is left out."""
    start, end = now - timedelta(hours=STRIP_HOURS), now + timedelta(hours=STRIP_HOURS)
    recorded = {(r.slot.timezone, r.slot.at): r for r in slots_between(db, nl.name, start, end)}
    decided = {(d.slot.timezone, d.slot.at): d for d in due if d.slot.newsletter == nl.name}
    rows = []
    for zone in sorted({*zones, *(z for z, _ in recorded)}):
        for at in slot_times(nl.schedule, zone, start, end):
            record, decision = recorded.get((zone, at)), decided.get((zone, at))
            if record is not None:
                state = str(record.status)
                readers = record.sent + record.failed + record.skipped + record.unknown
                note = record.note
            elif decision is not None:
                state = "due" if decision.action == "send" else "missed"
                readers, note = _zone_readers(db, nl.name, zone), decision.reason
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


def slot_counts(db: Database, slot: Slot) -> dict[str, int]:
    """The slot's deliveries by ledger status, over all its editions, as they stand now."""
    counts: dict[str, int] = {status: 0 for status in DeliveryStatus}
    for edition_id in slot_edition_ids(db, slot.newsletter, slot.at, slot.timezone):
        for status, n in edition_counts(db, edition_id).items():
            counts[status] = counts.get(status, 0) + n
    return counts


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
    return charts.day_strip(f"strip-{newsletter}", rows, f"{now:%Y-%m-%dT%H:%M:%SZ}", STRIP_HOURS)


def status_html(status: Status) -> str:
    """`digest status --html`: one self-contained page, a day strip per newsletter."""
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
