"""`digest status`: the last runs, each newsletter's recent slots, what is due, what needs a hand.

For each newsletter: its recent slots with the ledger's sent, failed, skipped and unknown
counts (`sending` rows are unknown), what a run now would do, the next slot in each of its
readers' time zones, and any failed or unknown deliveries with the command that deals with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlite_utils import Database

from .clock import from_db
from .config import Config, NewsletterConfig
from .delivery.ledger import (
    DeliveryStatus,
    edition_counts,
    failed_by_edition,
    tally,
    unknown_batches,
)
from .delivery.send import send_command
from .delivery.slots import RunRecord, SlotRecord, last_records, recent_runs, recent_slots
from .edition.build import edition_slot, slot_edition_ids, slot_histories
from .feedback.events import unknown_batch_hint, waiting_posts
from .invocation import digest_command
from .run import reader_timezones, schedules, slot_label
from .schedule import BACKFILL, Decision, Slot, SlotStatus, decide, next_slot_after


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
    # Per slot shown, its variants made for a history: (name, counts), in order.
    histories: dict[Slot, list[tuple[str, dict[str, int]]]]
    next_slots: list[Slot]
    attention: list[Attention]

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
            )
        )
    return Status(now, recent_runs(db), newsletters, *waiting_posts(db))


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
