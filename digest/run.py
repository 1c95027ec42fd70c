"""`digest run`: ingest the configured sources, then send every slot that is due and record it.

Cron calls this every few minutes. Under one lease it reads the newsletters' sources, asks
`schedule.decide` which slots to act on, sends or marks each one, and records the outcome,
so a missed run catches up, a repeated run does nothing and overlapping runs never both send.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlite_utils import Database

from .clock import utcnow
from .config import Config
from .delivery.holds import check_not_held
from .delivery.lease import Lease
from .delivery.ledger import DeliveryStatus, audience_values, skip_queued, tally
from .delivery.send import SendReport, send_command, send_slot
from .delivery.slots import last_records, record_run, record_slot
from .delivery.transports import Transport
from .edition.build import slot_edition_ids
from .edition.render import Renderer
from .errors import DigestError, LeaseHeldError, SlotHeldError
from .feedback.events import process_pending
from .feedback.list_health import day_recorded, record_day
from .feedback.mailing import mail_reports
from .feedback.sunset import apply_sunset
from .invocation import digest_command
from .readers.signup import process_signups
from .schedule import LastRecord, Schedule, Slot, SlotStatus, decide

RUN_LEASE = "run"
# Renewed after every source and every batch, so only a stuck run holds it this long.
RUN_LEASE_SECONDS = 600


@dataclass
class RunReport:
    """What one run did: one line per action, and whether anything failed."""

    now: datetime
    lines: list[str] = field(default_factory=list)
    actions: int = 0
    failed: bool = False

    def add(self, line: str, *, failed: bool = False) -> None:
        self.lines.append(line)
        self.actions += 1
        self.failed = self.failed or failed


def reader_timezones(db: Database, newsletter: str) -> tuple[str, ...]:
    """The time zones of the newsletter's current readers: one slot each."""
    return tuple(audience_values(db, newsletter, "timezone"))


def schedules(db: Database, config: Config) -> list[Schedule]:
    return [
        Schedule(
            newsletter.name,
            newsletter.schedule,
            timedelta(hours=newsletter.grace_hours),
            reader_timezones(db, newsletter.name),
        )
        for newsletter in config.newsletters.values()
    ]


def slot_label(slot: Slot) -> str:
    return (
        f"{slot.newsletter} {slot.timezone} {slot.local:%Y-%m-%d %H:%M} "
        f"({slot.at:%Y-%m-%d %H:%M} UTC)"
    )


def run_due(
    db: Database,
    config: Config,
    now: datetime,
    *,
    transport: Transport,
    renderer: Renderer | None = None,
    force: bool = False,
) -> RunReport:
    """Ingest, then act on every slot due at `now`; if another run holds the lease, do nothing.

    A slot an editor holds, or one with a variant whose checks found an error, is recorded
    `held` (the held variant's readers get nothing; the others' go out) and tried again
    while within grace; a check error fails the run, so cron mails the operator. `force`
    sends past check errors (never past an editor's hold).
    """
    report = RunReport(now)
    lease = Lease(db, RUN_LEASE, RUN_LEASE_SECONDS)
    try:
        lease.acquire()
    except LeaseHeldError as exc:
        report.lines.append(str(exc))
        return report
    started = utcnow()
    try:
        _finish_events(db, report)
        # Before sending: a reader who lapses today gets no edition today.
        _sunset(db, config, now, transport, renderer, report)
        lease.renew()
        _ingest(db, config, lease, report)
        records = last_records(db)
        _close_past_grace(db, config, now, records, report)
        decisions = decide(schedules(db, config), now, records)
        if any(decision.action == "send" for decision in decisions):
            renderer = renderer or Renderer(config.templates_dir)
        for decision in decisions:
            # Outside the slot's error handling: a run that lost its lease must stop here.
            lease.renew()
            if decision.action == "missed":
                record_slot(db, decision.slot, SlotStatus.MISSED, now, note=decision.reason)
                report.add(f"{slot_label(decision.slot)}: missed, {decision.reason}; not sent")
                continue
            slot = decision.slot
            try:
                check_not_held(db, slot.newsletter, slot.timezone, now)
            except SlotHeldError as exc:
                record_slot(db, slot, SlotStatus.HELD, now, note=str(exc))
                report.add(f"{slot_label(slot)}: HELD, not sent: {exc}")
                continue
            try:
                sent = send_slot(
                    db,
                    config,
                    config.newsletter(decision.slot.newsletter),
                    decision.slot.at,
                    timezone=decision.slot.timezone,
                    transport=transport,
                    renderer=renderer,
                    force=force,
                    progress=lambda _result, _recipients: lease.renew(),
                )
            except DigestError as exc:
                record_slot(db, decision.slot, SlotStatus.FAILED, now, note=str(exc))
                report.add(
                    f"{slot_label(decision.slot)}: FAILED: {exc} (tried again while within grace)",
                    failed=True,
                )
                continue
            report.add(
                f"{slot_label(decision.slot)}: {_record_sent(db, decision.slot, now, sent)}",
                failed=bool(
                    sent.held
                    or sent.total(DeliveryStatus.FAILED)
                    or sent.total(DeliveryStatus.SENDING)
                ),
            )
            report.lines.extend(f"  {result.line()}" for result in sent.held)
        _drain_signups(db, config, transport, report)
        _mail_reports(db, config, transport, now, report)
        _rebuild_archive(
            db, config, now, report, sent_any=any(d.action == "send" for d in decisions)
        )
        if not decisions:
            report.lines.append("nothing due")
        record_run(db, now, started, report.actions, report.failed, "; ".join(report.lines))
    finally:
        lease.release()
    return report


def _close_past_grace(
    db: Database,
    config: Config,
    now: datetime,
    records: dict[tuple[str, str], LastRecord],
    report: RunReport,
) -> None:
    """Readers still queued in a held or failed slot past its grace are skipped: never sent late.

    Before any slot is planned: what they never got is not their history.
    """
    for (name, zone), last in sorted(records.items()):
        newsletter = config.newsletters.get(name)
        if newsletter is None or last.status not in (SlotStatus.HELD, SlotStatus.FAILED):
            continue
        if now - last.at <= timedelta(hours=newsletter.grace_hours):
            continue
        if skipped := skip_queued(db, slot_edition_ids(db, name, last.at, zone)):
            slot = Slot(last.at, name, zone)
            report.lines.append(
                f"{slot_label(slot)}: {last.status} past its grace; {skipped} readers still "
                "queued are skipped, never sent late"
            )


def _sunset(
    db: Database,
    config: Config,
    now: datetime,
    transport: Transport,
    renderer: Renderer | None,
    report: RunReport,
) -> None:
    """Each newsletter's sunset policy; the cold are asked, and list health recorded, once a day."""
    for newsletter in config.newsletters.values():
        first_today = not day_recorded(db, newsletter.name, now)
        if newsletter.sunset.enabled:
            try:
                done = apply_sunset(
                    db,
                    config,
                    newsletter,
                    now,
                    transport=transport,
                    renderer=renderer,
                    ask=first_today,
                )
            except DigestError as exc:
                report.add(f"sunset {newsletter.name}: FAILED: {exc}", failed=True)
                continue
            line = done.line()
            if line:
                report.add(line, failed=bool(done.errors))
        if first_today:
            record_day(db, newsletter, now)


def _drain_signups(db: Database, config: Config, transport: Transport, report: RunReport) -> None:
    """Handle sign-ups the web app queued but did not get to (a worker that stopped)."""
    try:
        handled = process_signups(db, config, transport)
    except DigestError as exc:
        report.add(f"sign-ups: FAILED: {exc}", failed=True)
        return
    if handled:
        report.lines.append(f"sign-ups: {len(handled)} queued request(s) handled")


def _mail_reports(
    db: Database, config: Config, transport: Transport, now: datetime, report: RunReport
) -> None:
    """The editors' report of yesterday's edition, once, from the morning after."""
    for line, failed in mail_reports(db, config, transport, now):
        report.add(line, failed=failed)


def _rebuild_archive(
    db: Database, config: Config, now: datetime, report: RunReport, sent_any: bool
) -> None:
    """After a send: archive the days now due and bring the static copy up to date."""
    if not sent_any:
        return
    # Only now: feedgen and the pages cost a run that sends nothing.
    from .archive.pages import Archive
    from .archive.static import build_static

    folder = config.archive_dir
    try:
        Archive(db, config, now).freeze_all()
        if folder is not None:
            built = build_static(db, config, folder, now=now)
            if built.written or built.removed:
                report.lines.append(built.summary())
    except (DigestError, OSError) as exc:
        report.add(f"archive: FAILED: {exc}", failed=True)


def _finish_events(db: Database, report: RunReport) -> None:
    """Process webhook posts stored but not processed (the web app stopped before it could)."""
    done = process_pending(db)
    if done.posts or done.failed_posts or done.unreadable_posts:
        report.add(done.summary(), failed=bool(done.failed_posts))


def _ingest(db: Database, config: Config, lease: Lease, report: RunReport) -> None:
    """Read every newsletter's sources once; a source that changed something or failed says so."""
    sources = dict.fromkeys(s for n in config.newsletters.values() for s in n.sources)
    if not sources:
        return
    # Only now: the feed parsers cost a run that only sends about 3 MB (benchmarks/send.py).
    from .newsroom.ingest import ingest_sources

    limits = config.ingest
    for source in sources:
        # ingest_sources turns any failure of a source into its result: the run goes on to send.
        # Far-future items are judged against the later of the clock and the run's time, so
        # neither a replay of the past nor a simulated future skips what is really due.
        [result] = ingest_sources(
            db,
            [source],
            timeout=limits.timeout_seconds,
            max_bytes=limits.max_bytes,
            now=max(report.now, utcnow()),
        ).results
        lease.renew()
        if result.error is not None or result.added or result.updated or result.skipped:
            report.add(f"ingest {result.summary()}", failed=result.error is not None)
            report.lines.extend(f"  skipped: {reason}" for reason in result.skipped)


def _record_sent(db: Database, slot: Slot, now: datetime, sent: SendReport) -> str:
    """Record how a sent slot ended (sent, held, or skipped when no edition had stories)."""
    delivered = [result for result in sent.editions if not result.skipped and not result.held]
    counts: dict[str, int] = {status: sent.total(status) for status in DeliveryStatus}
    if sent.held:
        readers = sum(result.audience for result in sent.held)
        reasons = "; ".join(dict.fromkeys(result.edition.held for result in sent.held))
        note = f"{len(sent.held)} variant(s), {readers} readers, held by check errors: {reasons}"
        record_slot(
            db, slot, SlotStatus.HELD, now, editions=len(delivered), counts=counts, note=note
        )
        line = f"HELD: {note}"
        if delivered:
            line = f"{tally(counts)} in {len(delivered)} edition(s); {line}"
        return line + " (tried again while within grace)"
    if not delivered:
        reason = sent.editions[0].skip_reason if sent.editions else "no readers"
        record_slot(db, slot, SlotStatus.SKIPPED, now, note=reason)
        return f"skipped: {reason}"
    forced = sorted({r.edition.forced_by for r in delivered if r.edition.forced_by})
    note = f"forced past check errors by {', '.join(forced)}" if forced else ""
    record_slot(db, slot, SlotStatus.SENT, now, editions=len(delivered), counts=counts, note=note)
    line = f"{tally(counts)} in {len(delivered)} edition(s)" + (f" ({note})" if note else "")
    if counts[DeliveryStatus.FAILED]:
        retry = send_command(slot.newsletter, slot.timezone, slot.at, "--retry-failed")
        line += f"; retry them with `{retry}`"
    if counts[DeliveryStatus.SENDING]:
        line += f"; `{digest_command()} status` says what to do with the unknown ones"
    return line
