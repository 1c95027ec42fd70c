"""Send a newsletter slot: build each edition variant once, freeze its audience, deliver in batches.

Every recipient is recorded before their batch leaves (`sending`) and after (`sent` or
`failed`), so a re-run sends only what is still queued and never sends anyone twice.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlite_utils import Database

from .clock import to_db
from .config import Config, NewsletterConfig
from .edition import Edition, build_edition, find_edition, latest_slot, save_edition
from .errors import DeliveryUnknownError, SendRejectedError, TransportAuthError, TransportError
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
    unknown_batches,
)
from .message import unsubscribe_url
from .render import Renderer
from .select import variant_key
from .store import write_transaction
from .tokens import TokenSigner


class Transport(Protocol):
    name: str
    batch_size: int

    def send_batch(self, edition: Edition, batch: Batch, unsubscribe_urls: dict[int, str]) -> str:
        """Hand one batch over; returns the provider's id for it. Raises TransportError."""
        ...


def make_transport(config: Config) -> Transport:
    """The transport named in the config (or DIGEST_TRANSPORT)."""
    if config.transport == "sendgrid":
        from .sendgrid_transport import SendGridTransport

        return SendGridTransport(config)
    from .outbox import OutboxTransport

    return OutboxTransport(config)


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
    """Send every queued recipient of an edition, one batch at a time.

    A batch the provider rejects is marked failed and the rest goes on; an authentication
    failure puts its batch back in the queue and stops everything.
    """
    assert edition.id is not None
    signer = TokenSigner(config.secret_key)
    while batch := claim_batch(db, edition.id, edition.newsletter, transport.batch_size):
        urls = {
            r.delivery_id: unsubscribe_url(config, signer, r.subscriber_id, edition.newsletter)
            for r in batch.recipients
        }
        try:
            provider_id = transport.send_batch(edition, batch, urls)
        except TransportAuthError:
            requeue_batch(db, batch)
            raise
        except DeliveryUnknownError as exc:
            # Left `sending`: neither re-sent by a plain re-run nor forgotten (see ledger).
            note_batch_unknown(db, batch.key, str(exc))
        except (SendRejectedError, TransportError) as exc:
            mark_batch_failed(db, batch.key, str(exc))
        else:
            mark_batch_sent(db, batch.key, provider_id)
        if progress:
            progress(len(batch.recipients))
        if lease:
            lease.renew()


def requeue_batch(db: Database, batch: Batch) -> None:
    db.execute(
        "UPDATE deliveries SET status = 'queued' WHERE batch_key = ? AND status = 'sending'",
        [batch.key],
    )


def prepare_edition(
    db: Database,
    config: Config,
    renderer: Renderer,
    newsletter: NewsletterConfig,
    slot_at: datetime,
    topics: str,
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
    readers = dict(audience_variants(db, newsletter.name, timezone)).get(topics, 0)
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
) -> list[str]:
    """The topic sets to send for a slot: today's audience, plus editions already started.

    An edition that started before its last readers left still has its queue finished.
    """
    topics = {t for t, _ in audience_variants(db, newsletter, timezone)}
    topics.update(
        row["topics"]
        for row in db.query(
            "SELECT topics FROM editions WHERE newsletter = ? AND slot_at = ? AND timezone IS ?",
            [newsletter, to_db(slot_at), timezone],
        )
    )
    return sorted(topics)


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
        for topics in slot_variants(db, newsletter.name, slot_at, timezone):
            report.editions.append(
                prepare_edition(db, config, renderer, newsletter, slot_at, topics, timezone, True)
            )
        return report
    transport = transport or make_transport(config)
    with Lease(db, f"send:{newsletter.name}") as lease:
        for topics in slot_variants(db, newsletter.name, slot_at, timezone):
            result = prepare_edition(
                db, config, renderer, newsletter, slot_at, topics, timezone, False
            )
            report.editions.append(result)
            if result.note:
                continue
            if retry_failed:
                requeue(db, result.edition.id, "failed")
            if resend_unknown:
                requeue(db, result.edition.id, "sending")
            result.counts = edition_counts(db, result.edition.id)
            result.audience = sum(result.counts.values())
            on_batch = functools.partial(progress, result) if progress else None
            deliver_edition(db, config, transport, result.edition, lease, on_batch)
            result.counts = edition_counts(db, result.edition.id)
            report.unknown_batches += list(unknown_batches(db, result.edition.id))
    return report


def send_newsletter(
    db: Database, config: Config, newsletter_name: str | None, now: datetime, **options
) -> SendReport:
    """`digest send`: the newsletter's latest slot at or before `now`, to every active reader."""
    newsletter = config.newsletter(newsletter_name)
    slot_at = latest_slot(newsletter, now, options.get("timezone"))
    return send_slot(db, config, newsletter, slot_at, **options)
