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
from ..delivery.message import list_id, new_message
from ..delivery.transports import Single, Transport
from ..edition.personalize import greeting
from ..edition.render import Renderer
from ..models import Subscriber
from ..urls import ReaderLinks


def build_confirmation(
    config: Config,
    renderer: Renderer,
    subscriber: Subscriber,
    newsletter: NewsletterConfig,
    *,
    already_subscribed: bool,
    code: str | None,
    sent_at: datetime,
) -> EmailMessage:
    """The confirmation (or, for a reader already subscribed, a note saying so) as MIME.

    `code` is the subscription's new `confirm_code` (None for the note). The name typed in
    the form is in neither the text nor the `To:` header: the address is not confirmed,
    so whoever typed it must not get to write in an email from the site's domain.
    """
    links = ReaderLinks(config, newsletter.name)
    context = {
        "site": config.site,
        "newsletter": newsletter,
        "reader": SimpleNamespace(greeting=greeting("")),
        "already_subscribed": already_subscribed,
        "confirm_url": links.confirmation_url(subscriber.id, code) if code else "",
        "preferences_url": links.preferences_url(subscriber.id, subscriber.link_nonce),
    }
    verb = "You are already subscribed to" if already_subscribed else "Confirm your subscription to"
    # Checked at sign-up; this gives a Unicode domain in the ASCII form both transports send.
    # The typed name is left out until the address is confirmed as the reader's own.
    address, _ = sendable_recipient(subscriber.email, "")
    return new_message(
        config,
        Address(addr_spec=address),
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
    code: str | None,
) -> str:
    """Build the confirmation and hand it to the transport; returns the transport's id for it."""
    message = build_confirmation(
        config,
        Renderer(config.templates_dir),
        subscriber,
        newsletter,
        already_subscribed=already_subscribed,
        code=code,
        sent_at=utcnow(),
    )
    return transport.send_single(message, Single.CONFIRMATION)
