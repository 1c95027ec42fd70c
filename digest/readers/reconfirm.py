"""The reconfirm email ("Still want it?") of the sunset policy: rendered once, sent one by one.

It is the digest's own look (templates `reconfirm.html` and `.txt` extend `base.html`, with
`email.css` inlined and `email-dark.css` beside it), rendered once per run with placeholders
and filled per reader like an edition, so a thousand cold readers cost one render. Its keep
link leads to a page with one POST button (`web`): scanners that fetch the link keep no one.
It goes through the configured transport's `send_single` with the SendGrid category
`reconfirm` (the outbox writes it under `outbox/reconfirms/`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from types import SimpleNamespace
from typing import Any

from ..addresses import sendable_recipient
from ..config import Config, NewsletterConfig
from ..delivery.message import list_headers, new_message
from ..delivery.transports import Single, Transport
from ..edition.checks import EmailParts, Finding, run_checks
from ..edition.personalize import (
    HTML_PLACEHOLDERS,
    TEXT_PLACEHOLDERS,
    personalize,
    recipient_values,
)
from ..edition.render import Renderer
from ..models import Subscriber
from ..urls import ReaderLinks

KEEP_PLACEHOLDER = "%%keep_url%%"


@dataclass(frozen=True)
class ReconfirmEmail:
    """One newsletter's reconfirm email for one run, its per-reader values still placeholders."""

    newsletter: NewsletterConfig
    subject: str
    preheader: str
    html: str
    text: str

    def parts(self, name: str, unsubscribe_url: str, keep_url: str) -> tuple[str, str]:
        """The HTML and text as one reader gets them."""
        values = recipient_values(name, unsubscribe_url) | {KEEP_PLACEHOLDER: keep_url}
        return personalize(self.html, values), personalize(self.text, values)

    def message_for(
        self, config: Config, subscriber: Subscriber, sent_at: datetime
    ) -> EmailMessage:
        links = ReaderLinks(config, self.newsletter.name)
        unsubscribe = links.unsubscribe_url(subscriber.id, subscriber.link_nonce)
        html, text = self.parts(
            subscriber.name, unsubscribe, links.keep_url(subscriber.id, subscriber.link_nonce)
        )
        address, name = sendable_recipient(subscriber.email, subscriber.name)
        return new_message(
            config,
            Address(name, addr_spec=address),
            self.subject,
            sent_at,
            f"reconfirm.{subscriber.id}",
            list_headers(config, self.newsletter.name, unsubscribe),
            text,
            html,
        )

    def preview(self, config: Config, name: str = "") -> EmailParts:
        """What a reader gets, with inert links (the studio's preview and the checks)."""
        inert = ReaderLinks(config, self.newsletter.name).preview_url()
        html, text = self.parts(name, inert, inert)
        return EmailParts(self.subject, self.preheader, html, text)


def render_reconfirm(
    config: Config, renderer: Renderer, newsletter: NewsletterConfig, now: datetime
) -> ReconfirmEmail:
    """The newsletter's reconfirm email as sent at `now` (its lapse date is `grace_days` on)."""
    lapse = now + timedelta(days=newsletter.sunset.grace_days)
    subject = f"Still want {newsletter.title}?"
    preheader = (
        f"Press the button to keep getting {newsletter.title}; otherwise it stops "
        f"after {lapse.day} {lapse:%B}."
    )
    context: dict[str, Any] = {
        "site": config.site,
        "newsletter": newsletter,
        "subject": subject,
        "preheader": preheader,
        "edition_date": f"{now:%A} {now.day} {now:%B %Y}",
        "lapse_date": f"{lapse:%A} {lapse.day} {lapse:%B %Y}",
        "topics": [],
        # A message to one reader about their subscription has no web copy.
        "web_url": "",
    }

    def placeholders(values: dict[str, str]) -> dict[str, Any]:
        return {
            "reader": SimpleNamespace(greeting=values["greeting"]),
            "unsubscribe_url": values["unsubscribe_url"],
            "preferences_url": values["unsubscribe_url"] + "#preferences",
            "keep_url": KEEP_PLACEHOLDER,
        }

    html = renderer.inline_css(
        renderer.render_template("reconfirm.html", context | placeholders(HTML_PLACEHOLDERS))
    )
    text = renderer.render_template("reconfirm.txt", context | placeholders(TEXT_PLACEHOLDERS))
    return ReconfirmEmail(newsletter, subject, preheader, html, text)


def reconfirm_checks(config: Config, email: ReconfirmEmail) -> list[Finding]:
    """The digest's checks, run on the reconfirm email as a reader gets it."""
    return run_checks(email.preview(config))


def send_reconfirm(
    config: Config,
    transport: Transport,
    email: ReconfirmEmail,
    subscriber: Subscriber,
    sent_at: datetime,
) -> str:
    """Hand one reader's reconfirm email to the transport; returns its id for it."""
    return transport.send_single(email.message_for(config, subscriber, sent_at), Single.RECONFIRM)
