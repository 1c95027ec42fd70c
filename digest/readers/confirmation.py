"""The confirmation email of a sign-up (double opt-in): built from templates, sent on its own.

Editions go out in batches; a confirmation is one message to one address, handed to the
configured transport's `send_single(message) -> provider id` (the outbox writes it under
`outbox/confirmations/`).
"""

from __future__ import annotations

from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from types import SimpleNamespace

from ..addresses import sendable_recipient
from ..clock import utcnow
from ..config import Config, NewsletterConfig
from ..message import list_id, new_message
from ..models import Subscriber
from ..personalize import greeting
from ..render import Renderer
from ..transports import Transport
from ..urls import ReaderLinks


def build_confirmation(
    config: Config,
    renderer: Renderer,
    subscriber: Subscriber,
    newsletter: NewsletterConfig,
    *,
    already_subscribed: bool,
    sent_at: datetime,
) -> EmailMessage:
    """The confirmation (or, for a reader already subscribed, a note saying so) as MIME."""
    links = ReaderLinks(config, newsletter.name)
    context = {
        "site": config.site,
        "newsletter": newsletter,
        "reader": SimpleNamespace(greeting=greeting(subscriber.name)),
        "already_subscribed": already_subscribed,
        "confirm_url": links.confirmation_url(subscriber.id),
        "preferences_url": links.preferences_url(subscriber.id),
    }
    verb = "You are already subscribed to" if already_subscribed else "Confirm your subscription to"
    # Checked at sign-up; this gives a Unicode domain in the ASCII form both transports send.
    address, name = sendable_recipient(subscriber.email, subscriber.name)
    return new_message(
        config,
        Address(name, addr_spec=address),
        f"{verb} {newsletter.title}",
        sent_at,
        f"confirm.{subscriber.id}",
        {"List-Id": list_id(config, newsletter.name)},
        renderer.render_template("confirm.txt", context),
        renderer.render_template("confirm.html", context),
    )


def send_confirmation(
    config: Config,
    transport: Transport,
    subscriber: Subscriber,
    newsletter: NewsletterConfig,
    *,
    already_subscribed: bool,
) -> str:
    """Build the confirmation and hand it to the transport; returns the transport's id for it."""
    message = build_confirmation(
        config,
        Renderer(config.templates_dir),
        subscriber,
        newsletter,
        already_subscribed=already_subscribed,
        sent_at=utcnow(),
    )
    return transport.send_single(message)
