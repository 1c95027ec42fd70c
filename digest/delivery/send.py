"""Send a newsletter slot: build each edition variant once, freeze its audience, deliver in batches.

Every recipient is recorded before their batch leaves (`sending`) and after (`sent`,
`failed`, or still `sending` = unknown when nobody can tell), so a re-run sends only what
is still queued.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlite_utils import Database

from ..clock import to_db, utcnow
from ..config import Config, NewsletterConfig
from ..edition.build import (
    Edition,
    build_edition,
    discard_edition,
    edition_lifts,
    edition_stories,
    latest_slot,
    save_edition,
    slot_editions,
    too_few_stories,
    update_held_edition,
)
from ..edition.gate import edition_findings, held_reason
from ..edition.render import Renderer
from ..errors import (
    DeliveryUnknownError,
    DigestError,
    LeaseHeldError,
    SendRejectedError,
    TransportAuthError,
    TransportError,
)
from ..invocation import digest_command, os_user
from ..store import write_transaction
from .history import VariantGroup, audience_history, variant_groups
from .holds import check_not_held
from .lease import Lease
from .ledger import (
    Batch,
    DeliveryStatus,
    audience_values,
    audience_variants,
    claim_batch,
    describe_unknown_batch,
    edition_counts,
    forget_histories,
    mark_batch_failed,
    mark_batch_sent,
    mark_recipients_failed,
    note_batch_unknown,
    queue_audience,
    requeue,
    requeue_batch,
    skip_failed_sent_since,
    tally,
    unknown_batches,
)
from .slots import record_run
from .transports import Transport

LEASE_RENEW_SECONDS = 60
# One lease for every send, whatever the newsletter or zone: a slot's variants are made from
# the histories read when it is planned (any newsletter's editions count), so no other send
# may queue readers between that read and the slot's own queueing.
SEND_LEASE = "send"
# How often a send waiting for answers asks the transport again how many batches may be
# under way (it allows more while answers are slow to come).
PACE_CHECK_SECONDS = 0.05
ALREADY_SENT = "already sent: nothing to do"


@dataclass
class EditionResult:
    edition: Edition
    audience: int
    counts: dict[str, int] = field(default_factory=dict)
    # For display only: why it was skipped, or what a dry run would do.
    note: str = ""
    # Readers this run found to send to (or, dry, would send to); None until counted.
    waiting: int | None = None
    # Why this new variant is not sent (too few stories); empty for an edition that goes out.
    skip_reason: str = ""

    @property
    def skipped(self) -> bool:
        return bool(self.skip_reason)

    @property
    def held(self) -> bool:
        """Its checks found errors: nothing goes to its readers until fixed or forced."""
        return bool(self.edition.held)

    @property
    def already_sent(self) -> bool:
        """Started before this run, which found nobody to send to and nothing failed or unknown."""
        counts = self.counts
        done = counts.get(DeliveryStatus.SENT, 0) + counts.get(DeliveryStatus.SKIPPED, 0)
        return self.waiting == 0 and done == sum(counts.values()) > 0

    def line(self) -> str:
        name = self.edition.slug
        if self.edition.history:
            name += f" ({self.edition.history})"
        if self.held:
            return f"{name}: HELD, nothing sent to its {self.audience} readers: " + (
                self.edition.held
            )
        if self.already_sent:
            return f"{name}: {ALREADY_SENT}"
        forced = (
            f" (forced past check errors by {self.edition.forced_by})"
            if self.edition.forced_by
            else ""
        )
        return f"{name}: {self.note or tally(self.counts)}{forced}"


@dataclass
class SendReport:
    newsletter: str
    slot_at: datetime
    timezone: str | None = None
    dry_run: bool = False
    editions: list[EditionResult] = field(default_factory=list)
    unknown_batches: list[dict] = field(default_factory=list)

    def total(self, status: DeliveryStatus) -> int:
        """Readers of the editions that went out (not held ones) in this ledger status."""
        return sum(r.counts.get(status, 0) for r in self.editions if not r.held)

    @property
    def held(self) -> list[EditionResult]:
        return [r for r in self.editions if r.held]

    @property
    def warnings(self) -> list[str]:
        return sorted({w for r in self.editions for w in r.edition.warnings})

    def summary(self) -> str:
        slot = f"{self.newsletter} at {self.slot_at:%Y-%m-%d %H:%M} UTC"
        if self.dry_run:
            going = [r.waiting for r in self.editions if r.waiting]
            return (
                f"dry run: {slot} would go to {sum(going)} readers in {len(going)} edition(s); "
                "nothing sent"
            )
        started = [r for r in self.editions if not r.skipped]
        if started and all(r.already_sent for r in started):
            return f"{slot}: {ALREADY_SENT}"
        totals: dict[str, int] = {status: self.total(status) for status in DeliveryStatus}
        held = (
            f"; {len(self.held)} edition(s) HELD by check errors "
            f"({sum(r.audience for r in self.held)} readers)"
            if self.held
            else ""
        )
        return f"{slot}: {tally(totals)}{held}"

    def attention(self) -> list[str]:
        """What an operator must look at, each with the exact command that deals with it."""

        def command(flag: str) -> str:
            return send_command(self.newsletter, self.timezone, self.slot_at, flag)

        lines = [
            f"unknown: {describe_unknown_batch(batch)}, `{command('--resend-unknown')}` "
            "sends it again."
            for batch in self.unknown_batches
        ]
        if failed := self.total(DeliveryStatus.FAILED):
            lines.append(f"failed: {failed} readers; `{command('--retry-failed')}`")
        for result in self.held:
            lines.append(
                f"held: {result.edition.slug} ({result.audience} readers): fix what its checks "
                f"say (`{digest_command()} check`) and run again while within grace, or "
                f"`{command('--force')}` sends it as it is."
            )
        if queued := self.total(DeliveryStatus.QUEUED):
            lines.append(
                f"still queued: {queued} readers (the send stopped); `{command('')}` finishes it."
            )
        return lines

    @property
    def needs_attention(self) -> bool:
        """Readers failed, unknown or still queued: the exit status says so to cron."""
        return bool(self.held) or any(
            self.total(status)
            for status in (DeliveryStatus.FAILED, DeliveryStatus.SENDING, DeliveryStatus.QUEUED)
        )


def deliver_editions(
    db: Database,
    transport: Transport,
    results: list[EditionResult],
    lease: Lease | None = None,
    progress: Callable[[EditionResult, int], None] | None = None,
) -> None:
    """Send every queued recipient of the editions, up to `transport.concurrency` batches at once.

    One pipeline for all of a slot's variants: the next edition's first batches are under
    way while the last ones of the previous edition are still out. Each batch is marked
    `sending` before it is handed over and its outcome is recorded as soon as it returns. A
    batch the provider rejects is failed and the rest goes on; an authentication failure
    puts its batch back in the queue and stops everything, once the batches already under
    way are recorded.
    """
    pending = list(results)
    in_flight: dict[Future, tuple[Batch, EditionResult]] = {}
    stop: DigestError | None = None
    renewed = time.monotonic()
    with transport.sender() as submit:
        while True:
            if pending and not stop and len(in_flight) < transport.concurrency:
                result = pending[0]
                edition = result.edition
                assert edition.id is not None
                batch = claim_batch(db, edition.id, edition.newsletter, transport.batch_size)
                if batch is None:
                    pending.pop(0)
                else:
                    in_flight[submit(edition, batch)] = (batch, result)
                continue
            if not in_flight:
                break
            done, _ = wait(in_flight, timeout=PACE_CHECK_SECONDS, return_when=FIRST_COMPLETED)
            for future in done:
                batch, result = in_flight.pop(future)
                try:
                    requeued = record_outcome(db, batch, future)
                    if requeued and not any(r is result for r in pending):
                        # Some of its readers are queued again: their edition is not done.
                        pending.insert(0, result)
                except TransportAuthError as exc:
                    stop = stop or exc
                except Exception as exc:
                    # Something unforeseen: the batch may have left.
                    note_batch_unknown(db, batch, f"{type(exc).__name__}: {exc}")
                    stop = stop or TransportError(
                        f"Sending stopped on an unexpected {type(exc).__name__}: {exc}. "
                        f"Its batch is left unknown; `{digest_command()} status` says what to do."
                    )
                if progress:
                    try:
                        progress(result, len(batch.recipients))
                    except DigestError as exc:
                        # `digest run` renews its lease here: losing it stops the send, once
                        # the batches already under way are recorded (never left unknown).
                        stop = stop or exc
            # After each answer, and every LEASE_RENEW_SECONDS while none comes: one batch's
            # retries can outlast a lease.
            if lease and not stop and (done or time.monotonic() - renewed >= LEASE_RENEW_SECONDS):
                renewed = time.monotonic()
                try:
                    lease.renew()
                except LeaseHeldError as exc:
                    stop = exc
    if stop:
        raise stop


def record_outcome(db: Database, batch: Batch, future: Future) -> bool:
    """Write what became of one batch; re-raises an authentication failure after requeueing.

    Returns True when some of its readers went back to the queue: when the provider
    refused the batch for a few named readers, only they fail and the rest are sent again.
    """
    try:
        provider_id = future.result()
    except TransportAuthError:
        requeue_batch(db, batch)
        raise
    except DeliveryUnknownError as exc:
        # Left `sending`: neither re-sent by a plain re-run nor forgotten (see ledger).
        note_batch_unknown(db, batch, str(exc))
    except SendRejectedError as exc:
        named = [batch.recipients[i] for i in exc.rejected if i < len(batch.recipients)]
        if not named or len(named) == len(batch.recipients):
            mark_batch_failed(db, batch, str(exc))
            return False
        with write_transaction(db):
            mark_recipients_failed(db, batch, [r.delivery_id for r in named], str(exc))
            requeue_batch(db, batch)
        return True
    except TransportError as exc:
        mark_batch_failed(db, batch, str(exc))
    else:
        mark_batch_sent(db, batch, provider_id)
    return False


NOTHING_NEW = "nothing new: every story was already sent to them"


def plan_slot(
    db: Database,
    config: Config,
    renderer: Renderer,
    newsletter: NewsletterConfig,
    slot_at: datetime,
    timezone: str | None,
    dry_run: bool = False,
) -> tuple[list[EditionResult], list[tuple[VariantGroup, EditionResult]]]:
    """The slot's editions already started, or else its new variants, built but not saved.

    A slot's audience is frozen once, for all its variants together: once any edition of
    the slot has started, no new variant is made for it (a reader who joined or changed
    topics since waits for the next slot). The new variants are per topic set and history
    (`history.variant_groups`): readers sent some of the window's stories get a variant
    without them. A new variant with too few stories comes back skipped ("no new stories",
    or for a history variant "nothing new", whose readers the ledger records as skipped).
    New variants' readers without a history are counted only for a dry run (0 otherwise:
    `freeze_new_editions` counts whom it queues).
    """
    started = []
    for edition in slot_editions(db, newsletter.name, slot_at, timezone):
        counts = edition_counts(db, edition.saved_id)
        started.append(EditionResult(edition, sum(counts.values()), counts))
    if started:
        return started, []
    # Counting each variant's readers visits every one of them: only a dry run needs it.
    topic_sets: list[tuple[str, int | None]]
    if dry_run:
        topic_sets = list(audience_variants(db, newsletter.name, timezone))
    else:
        topic_sets = [(t, None) for t in audience_values(db, newsletter.name, "topics", timezone)]
    stories = edition_stories(db, newsletter, slot_at, timezone)
    groups = variant_groups(db, newsletter, slot_at, timezone, topic_sets, stories)
    new = []
    lifts = edition_lifts(db, newsletter, slot_at)
    for group in groups:
        if dry_run and not group.readers:
            continue
        topic_tuple = tuple(t for t in group.topics.split(";") if t)
        edition, story_count = build_edition(
            db,
            config,
            renderer,
            newsletter,
            slot_at,
            topic_tuple,
            timezone,
            already_sent=group.already_sent,
            history=group.history,
            lifts=lifts,
        )
        reason = ""
        if too_few_stories(newsletter, story_count):
            reason = NOTHING_NEW if group.already_sent else "no new stories"
        note = f"skipped: {reason}" if reason else ""
        new.append((group, EditionResult(edition, group.readers, note=note, skip_reason=reason)))
    return started, new


def freeze_new_editions(
    db: Database,
    newsletter: str,
    timezone: str | None,
    new: list[tuple[VariantGroup, EditionResult]],
) -> list[EditionResult]:
    """Save the new variants and queue their audiences, all in one transaction.

    One snapshot for every variant, so each reader is queued by exactly one of them. A
    history variant with nothing new is saved too, its readers recorded `skipped`; a variant
    that finds no reader (each went to another history) is not kept.
    """
    frozen = []
    with write_transaction(db):
        for group, result in new:
            if result.skipped and not group.already_sent:
                frozen.append(result)
                continue
            edition = save_edition(db, result.edition)
            queued = queue_audience(
                db,
                edition.saved_id,
                newsletter,
                group.topics,
                timezone,
                group.history_keys,
                skip_reason=result.skip_reason,
            )
            if not queued:
                discard_edition(db, edition.saved_id)
                continue
            if result.skipped:
                counts = edition_counts(db, edition.saved_id)
                note = f"skipped {queued}: {NOTHING_NEW}"
                reason = result.skip_reason
                frozen.append(EditionResult(edition, queued, counts, note, skip_reason=reason))
            else:
                frozen.append(EditionResult(edition, audience=queued))
    forget_histories(db)
    return frozen


def send_slot(
    db: Database,
    config: Config,
    newsletter: NewsletterConfig,
    slot_at: datetime,
    *,
    transport: Transport | None,
    timezone: str | None = None,
    renderer: Renderer | None = None,
    dry_run: bool = False,
    retry_failed: bool = False,
    resend_unknown: bool = False,
    force: bool = False,
    progress: Callable[[EditionResult, int], None] | None = None,
) -> SendReport:
    """Build and send every variant of one newsletter slot, under the sending lease.

    Every new variant is checked as `digest check` checks it before anyone is queued: one
    with an error is saved held (its audience frozen, nobody sent to) and the others go on.
    A held edition is built and checked again by the next send of its slot, and goes once
    clean; `force` sends it as it is, recording who did (the OS user).

    `--retry-failed` and `--resend-unknown` act only on editions already started: a slot
    that never started has nothing to retry, and building it anew would mail everyone.
    `progress(result, recipients)` is called after each batch. `transport` may be None only
    for a dry run, which sends nothing.
    """
    renderer = renderer or Renderer(config.templates_dir)
    report = SendReport(newsletter.name, slot_at, timezone, dry_run=dry_run)
    existing_only = retry_failed or resend_unknown
    who = os_user() if force else ""
    if dry_run:
        started, new = plan_slot(db, config, renderer, newsletter, slot_at, timezone, dry_run=True)
        for _, result in new:
            if not result.skipped:
                result.edition = gate(db, config, result.edition, who)
        for result in started:
            result.waiting = waiting(result.counts, retry_failed, resend_unknown)
            if not result.already_sent:
                result.note = f"would send to {result.waiting}"
        report.editions = started + [
            result
            if result.skipped or result.held
            else replace(result, note=f"would send to {result.audience}", waiting=result.audience)
            for _, result in new
        ]
        return report
    if transport is None:
        raise ValueError("send_slot needs a transport unless it is a dry run")
    with Lease(db, SEND_LEASE) as lease:
        started, new = plan_slot(db, config, renderer, newsletter, slot_at, timezone)
        if existing_only and not started:
            raise DigestError(
                f"No edition of {newsletter.name} for {to_db(slot_at)}"
                f"{f' in {timezone}' if timezone else ''} has started, so there is nothing to "
                f"retry; `{digest_command()} status` lists the slots and the command for each."
            )
        started = [
            recheck_held(db, config, renderer, newsletter, result, who) if result.held else result
            for result in started
        ]
        for _, result in new:
            if not result.skipped:
                result.edition = gate(db, config, result.edition, who)
        report.editions = started + freeze_new_editions(db, newsletter.name, timezone, new)
        delivering = [r for r in report.editions if not r.skipped and not r.held]
        for result in delivering:
            if retry_failed:
                skip_failed_sent_since(db, result.edition.saved_id)
                requeue(db, result.edition.saved_id, DeliveryStatus.FAILED)
            if resend_unknown:
                requeue(db, result.edition.saved_id, DeliveryStatus.SENDING)
            result.counts = edition_counts(db, result.edition.saved_id)
            result.waiting = result.counts[DeliveryStatus.QUEUED]
        deliver_editions(db, transport, [r for r in delivering if r.waiting], lease, progress)
        for result in delivering:
            if result.waiting:
                result.counts = edition_counts(db, result.edition.saved_id)
            if result.counts[DeliveryStatus.SENDING]:
                report.unknown_batches += list(unknown_batches(db, result.edition.saved_id))
    return report


def gate(db: Database, config: Config, edition: Edition, forced_by: str) -> Edition:
    """The edition held by its check errors, or (with `forced_by`) let through past them."""
    reason = held_reason(edition_findings(db, config, edition))
    if reason and forced_by:
        return replace(edition, held="", forced_by=forced_by)
    return replace(edition, held=reason, forced_by="")


def recheck_held(
    db: Database,
    config: Config,
    renderer: Renderer,
    newsletter: NewsletterConfig,
    result: EditionResult,
    forced_by: str,
) -> EditionResult:
    """A held edition built and checked again (after a fix, or an edit): it goes once clean."""
    saved = result.edition
    # What its readers were sent when frozen, and what other sends brought them since.
    stories = edition_stories(db, newsletter, saved.slot_at, saved.timezone)
    since = audience_history(
        db,
        newsletter,
        saved.slot_at,
        saved.timezone,
        saved.saved_id,
        ";".join(saved.topics),
        stories,
    )
    rebuilt, story_count = build_edition(
        db,
        config,
        renderer,
        newsletter,
        saved.slot_at,
        saved.topics,
        saved.timezone,
        already_sent=frozenset(saved.already_sent) | since,
        history=saved.history,
    )
    # Still the variant its readers were frozen in.
    rebuilt = replace(rebuilt, id=saved.id, created_at=saved.created_at, variant=saved.variant)
    if too_few_stories(newsletter, story_count):
        # Its readers are queued already: an edition emptied by edits stays held, never sent.
        checked = replace(
            rebuilt,
            held=f"only {story_count} stories left (min_stories {max(newsletter.min_stories, 1)})"
            "; restore a dropped story, or let the slot be missed",
            forced_by="",
        )
    else:
        checked = gate(db, config, rebuilt, forced_by)
    update_held_edition(db, checked)
    return replace(result, edition=checked)


def waiting(counts: dict[str, int], retry_failed: bool, resend_unknown: bool) -> int:
    """How many of an edition's readers a run sends to: the queued, and those it must retry."""
    return (
        counts[DeliveryStatus.QUEUED]
        + (counts[DeliveryStatus.FAILED] if retry_failed else 0)
        + (counts[DeliveryStatus.SENDING] if resend_unknown else 0)
    )


def send_command(newsletter: str, timezone: str | None, slot_at: datetime, flag: str = "") -> str:
    """The `digest send` line that acts on one slot's editions again (e.g. --retry-failed)."""
    words = [digest_command(), "send", "--newsletter", newsletter]
    if timezone:
        words += ["--timezone", timezone]
    words += ["--now", to_db(slot_at)]
    return " ".join([*words, flag] if flag else words)


def send_newsletter(
    db: Database,
    config: Config,
    newsletter_name: str | None,
    now: datetime,
    *,
    command: str = "send",
    **options: Any,
) -> SendReport:
    """`digest send`: the newsletter's latest slot at or before `now`, to every active reader.

    Refused while an editor holds it (`digest hold`). A real send is recorded among the runs
    `digest status` lists, under `command`.
    """
    newsletter = config.newsletter(newsletter_name)
    timezone = options.get("timezone")
    slot_at = latest_slot(newsletter, now, timezone)
    if options.get("dry_run"):
        return send_slot(db, config, newsletter, slot_at, **options)
    check_not_held(db, newsletter.name, timezone, now)
    started = utcnow()
    report = send_slot(db, config, newsletter, slot_at, **options)
    lines = [report.summary(), *report.attention()]
    record_run(
        db, now, started, len(report.editions), report.needs_attention, "; ".join(lines), command
    )
    return report
