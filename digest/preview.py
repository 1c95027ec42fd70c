"""Exactly what a reader would get from the next send, with inert links; sends nothing.

The studio, `digest preview` and `digest check` all come here, and here only the functions
`digest run` itself uses pick the slot (`schedule.decide`), the variants (`send.plan_slot`)
and the edition (`edition.build_edition`, or the one already frozen for the slot), so a
preview is the real send by construction. Only the reader's own links differ: a preview
carries `ReaderLinks.preview_url`, which changes nobody, never a real unsubscribe token.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from email.headerregistry import Address
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlite_utils import Database

from .clock import utcnow
from .config import Config, NewsletterConfig
from .delivery.ledger import Recipient, in_audience
from .delivery.message import list_headers, new_message
from .delivery.send import plan_slot
from .delivery.slots import last_records
from .delivery.transports import Single, Transport
from .edition.build import (
    Edition,
    build_edition,
    edition_lifts,
    edition_stories,
    latest_slot,
    slot_editions,
    too_few_stories,
    upcoming_slot,
)
from .edition.checks import EmailParts, Finding, run_checks
from .edition.edits import edition_date
from .edition.personalize import personalize, recipient_values
from .edition.render import Renderer, story_link
from .edition.select import normalize_topics, select_digest, variant_key
from .models import Selection, Subscriber
from .newsroom.stories import find_story
from .readers.subscribers import check_email, get_subscriber
from .run import reader_timezones
from .schedule import Schedule, decide
from .urls import ReaderLinks
from .zones import check_timezone

SAMPLE_READER = Recipient(
    delivery_id=0,
    subscriber_id=0,
    email="reader@example.com",
    name="Sample Reader",
    link_nonce="0" * 16,
)


def next_send_slot(
    db: Database, newsletter: NewsletterConfig, timezone: str, now: datetime
) -> datetime:
    """The slot `digest run` sends next in this zone: the latest if still due, else the next."""
    schedule = Schedule(
        newsletter.name,
        newsletter.schedule,
        timedelta(hours=newsletter.grace_hours),
        (timezone,),
    )
    for decision in decide([schedule], now, last_records(db)):
        if decision.action == "send":
            return decision.slot.at
    return upcoming_slot(newsletter, now, timezone)


def next_edition_date(db: Database, newsletter: NewsletterConfig, now: datetime) -> str:
    """The edition (local date in the newsletter's zone) of the slot `digest run` sends next."""
    zone = newsletter.timezone
    return edition_date(next_send_slot(db, newsletter, zone, now), zone)


@dataclass(frozen=True)
class Target:
    """Which edition variant a preview shows, and as whom."""

    newsletter: NewsletterConfig
    slot_at: datetime
    topics: tuple[str, ...]
    timezone: str
    reader: Recipient = SAMPLE_READER
    subscriber: Subscriber | None = None

    @property
    def variant(self) -> str:
        return variant_key(self.topics, self.timezone)

    @property
    def local_time(self) -> str:
        return f"{self.slot_at.astimezone(ZoneInfo(self.timezone)):%Y-%m-%d %H:%M} {self.timezone}"


def _slot(
    db: Database, newsletter: NewsletterConfig, timezone: str, now: datetime, last: bool
) -> datetime:
    if last:
        return latest_slot(newsletter, now, timezone)
    return next_send_slot(db, newsletter, timezone, now)


def reader_target(
    db: Database,
    config: Config,
    newsletter_name: str | None,
    now: datetime,
    email: str,
    *,
    last: bool = False,
) -> Target:
    """A real reader's own slot (in their time zone) and variant (their topics)."""
    newsletter = config.newsletter(newsletter_name)
    subscriber = get_subscriber(db, email)
    return Target(
        newsletter,
        _slot(db, newsletter, subscriber.timezone, now, last),
        normalize_topics(subscriber.topics),
        subscriber.timezone,
        Recipient(0, subscriber.id, subscriber.email, subscriber.name, subscriber.link_nonce),
        subscriber,
    )


def variant_target(
    db: Database,
    config: Config,
    newsletter_name: str | None,
    now: datetime,
    topics: tuple[str, ...] = (),
    timezone: str | None = None,
    *,
    last: bool = False,
) -> Target:
    """One variant (topics in a time zone; default every topic, the newsletter's zone)."""
    newsletter = config.newsletter(newsletter_name)
    zone = check_timezone(timezone) if timezone else newsletter.timezone
    slot_at = _slot(db, newsletter, zone, now, last)
    return Target(newsletter, slot_at, normalize_topics(topics), zone)


def variant_selection(db: Database, target: Target) -> Selection:
    """The selection `build_edition` makes for the target's variant, from the store as it is."""
    stories, carried = edition_stories(db, target.newsletter, target.slot_at, target.variant)
    lifts = edition_lifts(db, target.newsletter, target.slot_at)
    return select_digest(stories, target.slot_at, target.newsletter, target.topics, carried, lifts)


@dataclass(frozen=True)
class ReaderView:
    """One reader's email as `digest run` would send it, their own links made inert."""

    target: Target
    edition: Edition
    story_count: int
    # Set when the slot's editions were already frozen: the view shows the stored one.
    frozen: bool
    # Why nothing would go out to this reader at that slot ("" when it would).
    note: str
    html: str
    text: str
    story_links: tuple[str, ...]

    @property
    def subject(self) -> str:
        return self.edition.subject

    @property
    def preheader(self) -> str:
        return self.edition.preheader

    def checks(self) -> list[Finding]:
        return run_checks(
            EmailParts(self.subject, self.preheader, self.html, self.text, self.story_links)
        )


def story_links(
    db: Database, newsletter: NewsletterConfig, story_ids: tuple[int, ...]
) -> tuple[str, ...]:
    """The links of an edition's stories exactly as its templates got them."""
    return tuple(story_link(find_story(db, str(i)), newsletter) for i in story_ids)


def reader_view(db: Database, config: Config, renderer: Renderer, target: Target) -> ReaderView:
    """The target's email: the slot's frozen edition of the variant if it started, else built."""
    newsletter = target.newsletter
    selection_count = len(variant_selection(db, target))
    note = ""
    started = slot_editions(db, newsletter.name, target.slot_at, target.timezone)
    frozen = [e for e in started if e.variant == target.variant]
    if frozen:
        edition = as_it_would_go(db, config, renderer, newsletter, frozen[0])
    else:
        edition, selection_count = build_edition(
            db, config, renderer, newsletter, target.slot_at, target.topics, target.timezone
        )
        if started:
            note = (
                "This slot already started without this variant: its readers wait for the "
                "next slot."
            )
        elif too_few_stories(newsletter, selection_count):
            note = skip_note(newsletter, selection_count)
    if target.subscriber and not in_audience(db, newsletter.name, target.subscriber.id):
        note = f"{target.subscriber.email} is not an active reader of {newsletter.name}: " + (
            "they would get nothing."
        )
    return personalized_view(db, config, target, edition, selection_count, bool(frozen), note)


def as_it_would_go(
    db: Database, config: Config, renderer: Renderer, newsletter: NewsletterConfig, edition: Edition
) -> Edition:
    """A held edition as the next run would send it: built again (after a fix, an edit), still
    marked held; any other edition as it is."""
    if not edition.held:
        return edition
    rebuilt, _ = build_edition(
        db, config, renderer, newsletter, edition.slot_at, edition.topics, edition.timezone
    )
    return replace(rebuilt, id=edition.id, created_at=edition.created_at, held=edition.held)


def personalized_view(
    db: Database,
    config: Config,
    target: Target,
    edition: Edition,
    story_count: int,
    frozen: bool,
    note: str,
) -> ReaderView:
    """The edition as the target's reader gets it, their own links made inert."""
    newsletter = target.newsletter
    values = recipient_values(
        target.reader.name, ReaderLinks(config, newsletter.name).preview_url()
    )
    return ReaderView(
        target=target,
        edition=edition,
        story_count=story_count,
        frozen=frozen,
        note=note,
        html=personalize(edition.html, values),
        text=personalize(edition.text, values),
        story_links=story_links(db, newsletter, edition.story_ids),
    )


def skip_note(newsletter: NewsletterConfig, story_count: int) -> str:
    return (
        f"would be skipped: {story_count} new stories < min_stories "
        f"{max(newsletter.min_stories, 1)}"
    )


@dataclass(frozen=True)
class VariantPlan:
    """One edition variant of a zone's next slot, as the studio's front page lists it."""

    readers: int
    # The variant's email for a sample reader, and its checks.
    view: ReaderView
    findings: tuple[Finding, ...]

    @property
    def target(self) -> Target:
        return self.view.target

    @property
    def edition(self) -> Edition:
        return self.view.edition

    @property
    def errors(self) -> int:
        return sum(f.level == "error" for f in self.findings)

    @property
    def warnings(self) -> int:
        return sum(f.level == "warning" for f in self.findings)


def slot_variants(
    db: Database, config: Config, renderer: Renderer, newsletter_name: str | None, now: datetime
) -> list[VariantPlan]:
    """Every variant of the next slot in every time zone the newsletter's readers are in.

    Exactly `digest run`'s plan for each zone (`send.plan_slot`): a slot already started
    shows its frozen editions and their audiences.
    """
    newsletter = config.newsletter(newsletter_name)
    plans = []
    for zone in reader_timezones(db, newsletter.name):
        slot_at = next_send_slot(db, newsletter, zone, now)
        # As a dry run plans it: each new variant with its readers counted.
        started, new = plan_slot(db, config, renderer, newsletter, slot_at, zone, dry_run=True)
        for result in started + [result for _, result in new]:
            edition = as_it_would_go(db, config, renderer, newsletter, result.edition)
            target = Target(newsletter, slot_at, edition.topics, zone)
            count = len(variant_selection(db, target))
            note = skip_note(newsletter, count) if result.skipped else ""
            view = personalized_view(
                db, config, target, edition, count, edition.id is not None, note
            )
            # A variant that would be skipped sends nothing: its checks would only be noise.
            findings = () if result.skipped else tuple(view.checks())
            plans.append(VariantPlan(result.audience, view, findings))
    return sorted(plans, key=lambda p: (p.target.slot_at, p.target.timezone, p.target.topics))


@dataclass(frozen=True)
class Preview:
    html_path: Path
    text_path: Path
    subject: str
    reader: str
    story_count: int
    warnings: tuple[str, ...]
    slot: str
    note: str


def write_preview(
    db: Database,
    config: Config,
    newsletter_name: str | None,
    now: datetime,
    out_dir: Path,
    as_email: str | None = None,
    *,
    last: bool = False,
) -> Preview:
    """Write what the next send (or with `last`, the latest slot) would give one reader.

    Without `as_email`: a sample reader with every topic in the newsletter's time zone.
    """
    if as_email:
        target = reader_target(db, config, newsletter_name, now, as_email, last=last)
    else:
        target = variant_target(db, config, newsletter_name, now, last=last)
    view = reader_view(db, config, Renderer(config.templates_dir), target)
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path = out_dir / f"{target.newsletter.name}.html"
    text_path = out_dir / f"{target.newsletter.name}.txt"
    html_path.write_text(view.html, encoding="utf-8")
    text_path.write_text(view.text, encoding="utf-8")
    note = view.note or ("the edition is empty" if not view.story_count else "")
    return Preview(
        html_path,
        text_path,
        view.subject,
        target.reader.email,
        view.story_count,
        view.edition.warnings,
        target.local_time,
        note,
    )


TEST_PREFIX = "[TEST] "


def send_test(config: Config, transport: Transport, view: ReaderView, to: str) -> str:
    """Send the viewed email to one address as a test: `[TEST]` subject, inert links.

    It goes through `transport.send_single`, outside the ledger: no delivery is recorded and
    no reader is counted. Returns where it went: the outbox file, or SendGrid's answer.
    """
    address = check_email(to)
    newsletter = view.target.newsletter.name
    inert = ReaderLinks(config, newsletter).preview_url()
    message = new_message(
        config,
        Address(addr_spec=address),
        TEST_PREFIX + view.subject,
        utcnow(),
        f"test.{view.edition.id or 0}",
        list_headers(config, newsletter, inert),
        view.text,
        view.html,
    )
    return transport.describe_single(transport.send_single(message, Single.TEST))


def check_next_send(
    db: Database, config: Config, newsletter_name: str | None, now: datetime
) -> list[tuple[ReaderView, list[Finding]]]:
    """`digest check`: each variant of the next send with its findings.

    With no readers yet, the variant a reader with every topic in the newsletter's zone
    would get, so the templates are checked all the same.
    """
    renderer = Renderer(config.templates_dir)
    plans = slot_variants(db, config, renderer, newsletter_name, now)
    if plans:
        return [(plan.view, list(plan.findings)) for plan in plans]
    view = reader_view(db, config, renderer, variant_target(db, config, newsletter_name, now))
    return [(view, view.checks())]
