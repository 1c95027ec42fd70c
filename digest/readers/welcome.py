"""The welcome email, sent once a reader confirms: when their first edition comes, and where
the past ones are."""

from __future__ import annotations

from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from types import SimpleNamespace
from zoneinfo import ZoneInfo

from ..addresses import sendable_recipient
from ..clock import utcnow
from ..config import Config, NewsletterConfig
from ..delivery.message import list_id, new_message
from ..delivery.transports import Single, Transport
from ..edition.build import upcoming_slot
from ..edition.personalize import greeting
from ..edition.render import Renderer
from ..models import Subscriber
from ..schedule import describe_schedule
from ..urls import ARCHIVE_PATH, ReaderLinks, site_link


def first_edition_time(newsletter: NewsletterConfig, timezone: str, now: datetime) -> str:
    """When a reader confirmed at `now` gets their first edition, in their own words and zone:
    'Friday 27 November at 07:00 (Europe/London)'."""
    local = upcoming_slot(newsletter, now, timezone).astimezone(ZoneInfo(timezone))
    return f"{local:%A} {local.day} {local:%B} at {local:%H:%M} ({timezone})"


def build_welcome(
    config: Config,
    renderer: Renderer,
    subscriber: Subscriber,
    newsletter: NewsletterConfig,
    sent_at: datetime,
) -> EmailMessage:
    """The welcome email as MIME: the address is confirmed, so the reader's name may greet."""
    links = ReaderLinks(config, newsletter.name)
    context = {
        "site": config.site,
        "newsletter": newsletter,
        "reader": SimpleNamespace(greeting=greeting(subscriber.name)),
        "when": describe_schedule(newsletter.schedule) + " in your time zone",
        "first_edition": first_edition_time(newsletter, subscriber.timezone, sent_at),
        "archive_url": (
            site_link(config, f"{ARCHIVE_PATH}/{newsletter.name}/") if newsletter.archive else ""
        ),
        "preferences_url": links.preferences_url(subscriber.id, subscriber.link_nonce),
    }
    address, name = sendable_recipient(subscriber.email, subscriber.name)
    return new_message(
        config,
        Address(name, addr_spec=address),
        f"Welcome to {newsletter.title}",
        sent_at,
        f"welcome.{subscriber.id}",
        {"List-Id": list_id(config, newsletter.name)},
        renderer.render_template("welcome.txt", context),
        renderer.render_template("welcome.html", context),
    )


def send_welcome(
    config: Config, transport: Transport, subscriber: Subscriber, newsletter: NewsletterConfig
) -> str:
    """Build the welcome email and hand it to the transport; returns the transport's id."""
    message = build_welcome(
        config, Renderer(config.templates_dir), subscriber, newsletter, utcnow()
    )
    return transport.send_single(message, Single.WELCOME)
