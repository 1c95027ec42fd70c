"""Send a newsletter slot: build each edition variant once, freeze its audience, deliver in batches.

Every recipient is recorded before their batch leaves (`sending`) and after (`sent` or
`failed`), so a re-run sends only what is still queued and never sends anyone twice.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from datetime import datetime

from sqlite_utils import Database

from .clock import to_db
from .config import Config, NewsletterConfig
from .edition import Edition, build_edition, find_edition, latest_slot, save_edition
from .errors import (
    DeliveryUnknownError,
    DigestError,
    LeaseHeldError,
    TransportAuthError,
    TransportError,
)
from .lease import Lease
from .ledger import (
    Batch,
    audience_filter,
    claim_batch,
    edition_counts,
    mark_batch_failed,
    mark_batch_sent,
    note_batch_unknown,
    queue_audience,
    requeue,
    requeue_batch,
    unknown_batches,
)
from .render import Renderer
from .select import variant_key
from .store import write_transaction
from .transport import Transport, make_transport


@dataclass
class EditionResult:
    edition: Edition
    audience: int
    counts: dict[str, int] = field(default_factory=dict)
    note: str = ""

    def line(self) -> str:
        c = self.counts
        tally = (
            f"sent {c.get('sent', 0)}, failed {c.get('failed', 0)}, "
            f"skipped {c.get('skipped', 0)}, unknown {c.get('sending', 0)}"
        )
        return f"{self.edition.slug}: {self.note or tally}"


@dataclass
class SendReport:
    newsletter: str
    slot_at: datetime
    dry_run: bool = False
    editions: list[EditionResult] = field(default_factory=list)
    unknown_batches: list[dict] = field(default_factory=list)

    def total(self, status: str) -> int:
        return sum(r.counts.get(status, 0) for r in self.editions)

    @property
    def warnings(self) -> list[str]:
        return sorted({w for r in self.editions for w in r.edition.warnings})

    def summary(self) -> str:
        if self.dry_run:
            readers = sum(r.audience for r in self.editions)
            return (
                f"dry run: {self.newsletter} at {self.slot_at:%Y-%m-%d %H:%M} UTC would go to "
                f"{readers} readers in {len(self.editions)} edition(s); nothing sent"
            )
        return (
            f"{self.newsletter} at {self.slot_at:%Y-%m-%d %H:%M} UTC: sent {self.total('sent')}, "
            f"failed {self.total('failed')}, skipped {self.total('skipped')}, "
            f"unknown {self.total('sending')}"
        )


def audience_variants(
    db: Database, newsletter: str, timezone: str | None = None
) -> list[tuple[str, int]]:
    """Each distinct topic set among the newsletter's readers, with how many have it."""
    where, params = audience_filter(newsletter, timezone)
    rows = db.query(
        f"""SELECT topics, COUNT(*) AS readers FROM subscribers
            WHERE {where} GROUP BY topics ORDER BY topics""",
        params,
    )
    return [(row["topics"], row["readers"]) for row in rows]


def deliver_edition(
    db: Database,
    config: Config,
    transport: Transport,
    edition: Edition,
    lease: Lease | None = None,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Send every queued recipient of an edition, up to `transport.concurrency` batches at once.

    Each batch is marked `sending` before it is handed over and its outcome is recorded as
    soon as it returns. A batch the provider rejects is failed and the rest goes on; an
    authentication failure puts its batch back in the queue and stops everything, once the
    batches already under way are recorded.
    """
    assert edition.id is not None and edition.created_at is not None
    in_flight: dict[Future, Batch] = {}
    stop: DigestError | None = None
    exhausted = False
    with transport.sender() as submit:
        while True:
            if not (stop or exhausted) and len(in_flight) < transport.concurrency:
                batch = claim_batch(
                    db, edition.id, edition.newsletter, transport.batch_size, edition.created_at
                )
                if batch is None:
                    exhausted = True
                    continue
                in_flight[submit(edition, batch)] = batch
                continue
            if not in_flight:
                break
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                batch = in_flight.pop(future)
                try:
                    record_outcome(db, batch, future)
                except TransportAuthError as exc:
                    stop = stop or exc
                if progress:
                    progress(len(batch.recipients))
            if lease and not stop:
                try:
                    lease.renew()
                except LeaseHeldError as exc:
                    stop = exc
    if stop:
        raise stop


def record_outcome(db: Database, batch: Batch, future: Future) -> None:
    """Write what became of one batch; re-raises an authentication failure after requeueing."""
    try:
        provider_id = future.result()
    except TransportAuthError:
        requeue_batch(db, batch)
        raise
    except DeliveryUnknownError as exc:
        # Left `sending`: neither re-sent by a plain re-run nor forgotten (see ledger).
        note_batch_unknown(db, batch, str(exc))
    except TransportError as exc:
        mark_batch_failed(db, batch, str(exc))
    else:
        mark_batch_sent(db, batch, provider_id)


def prepare_edition(
    db: Database,
    config: Config,
    renderer: Renderer,
    newsletter: NewsletterConfig,
    slot_at: datetime,
    topics: str,
    readers: int,
    timezone: str | None,
    dry_run: bool,
) -> EditionResult:
    """Find the slot's edition for this variant, or build it and freeze its audience."""
    topic_tuple = tuple(t for t in topics.split(";") if t)
    existing = find_edition(db, newsletter.name, slot_at, variant_key(topic_tuple, timezone))
    if existing is not None:
        return EditionResult(existing, audience=sum(edition_counts(db, existing.id).values()))
    edition, story_count = build_edition(
        db, config, renderer, newsletter, slot_at, topic_tuple, timezone
    )
    if story_count < max(newsletter.min_stories, 1):
        return EditionResult(edition, readers, note="skipped: no new stories")
    if dry_run:
        return EditionResult(edition, readers, note=f"would send to {readers} readers")
    with write_transaction(db):
        edition = save_edition(db, edition)
        queued = queue_audience(db, edition.id, newsletter.name, topics, timezone)
    return EditionResult(edition, audience=queued)


def slot_variants(
    db: Database, newsletter: str, slot_at: datetime, timezone: str | None
) -> list[tuple[str, int]]:
    """The topic sets to send for a slot, with their readers now: today's audience, plus
    the editions already started (an edition whose readers all left still finishes its queue).
    """
    variants = dict(audience_variants(db, newsletter, timezone))
    for row in db.query(
        "SELECT topics FROM editions WHERE newsletter = ? AND slot_at = ? AND timezone IS ?",
        [newsletter, to_db(slot_at), timezone],
    ):
        variants.setdefault(row["topics"], 0)
    return sorted(variants.items())


def send_slot(
    db: Database,
    config: Config,
    newsletter: NewsletterConfig,
    slot_at: datetime,
    *,
    timezone: str | None = None,
    transport: Transport | None = None,
    renderer: Renderer | None = None,
    dry_run: bool = False,
    retry_failed: bool = False,
    resend_unknown: bool = False,
    progress: Callable[[EditionResult, int], None] | None = None,
) -> SendReport:
    """Build and send every variant of one newsletter slot, under the newsletter's lease.

    `progress(result, recipients)` is called after each batch.
    """
    renderer = renderer or Renderer(config.templates_dir)
    report = SendReport(newsletter.name, slot_at, dry_run=dry_run)
    if dry_run:
        for topics, readers in slot_variants(db, newsletter.name, slot_at, timezone):
            report.editions.append(
                prepare_edition(
                    db, config, renderer, newsletter, slot_at, topics, readers, timezone, True
                )
            )
        return report
    transport = transport or make_transport(config)
    with Lease(db, f"send:{newsletter.name}") as lease:
        for topics, readers in slot_variants(db, newsletter.name, slot_at, timezone):
            result = prepare_edition(
                db, config, renderer, newsletter, slot_at, topics, readers, timezone, False
            )
            report.editions.append(result)
            if result.note:
                continue
            if retry_failed:
                requeue(db, result.edition.id, "failed")
            if resend_unknown:
                requeue(db, result.edition.id, "sending")
            on_batch = functools.partial(progress, result) if progress else None
            deliver_edition(db, config, transport, result.edition, lease, on_batch)
            result.counts = edition_counts(db, result.edition.id)
            if result.counts["sending"]:
                report.unknown_batches += list(unknown_batches(db, result.edition.id))
    return report


def send_newsletter(
    db: Database, config: Config, newsletter_name: str | None, now: datetime, **options
) -> SendReport:
    """`digest send`: the newsletter's latest slot at or before `now`, to every active reader."""
    newsletter = config.newsletter(newsletter_name)
    slot_at = latest_slot(newsletter, now, options.get("timezone"))
    return send_slot(db, config, newsletter, slot_at, **options)
