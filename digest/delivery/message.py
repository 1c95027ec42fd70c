"""The headers every digest message carries, and the MIME message the outbox writes."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from urllib.parse import urlsplit

from ..config import Config
from ..edition.build import Edition
from ..edition.personalize import personalize, recipient_values
from .ledger import Recipient


def list_id(config: Config, newsletter: str) -> str:
    """RFC 2919 List-Id: `<newsletter.site-domain>` with the newsletter title as phrase."""
    domain = urlsplit(config.site.url).hostname or "localhost"
    title = config.newsletters[newsletter].title.replace('"', "'")
    return f'"{title}" <{newsletter}.{domain}>'


ONE_CLICK = "List-Unsubscribe=One-Click"


def list_headers(config: Config, newsletter: str, unsubscribe: str) -> dict[str, str]:
    """List-Id and the RFC 8058 one-click unsubscribe headers for one recipient."""
    return {
        "List-Id": list_id(config, newsletter),
        "List-Unsubscribe": f"<{unsubscribe}>",
        "List-Unsubscribe-Post": ONE_CLICK,
    }


def new_message(
    config: Config,
    to: Address,
    subject: str,
    sent_at: datetime,
    id_tag: str,
    headers: Mapping[str, str],
    text: str,
    html: str,
) -> EmailMessage:
    """A message from the site: multipart/alternative, text/plain first, text/html last, UTF-8."""
    domain = urlsplit(config.site.url).hostname or "localhost"
    message = EmailMessage()
    message["From"] = Address(config.site.from_name, addr_spec=config.site.from_email)
    message["To"] = to
    if config.site.reply_to:
        message["Reply-To"] = config.site.reply_to
    message["Subject"] = subject
    message["Date"] = format_datetime(sent_at)
    message["Message-ID"] = make_msgid(id_tag, domain)
    for name, value in headers.items():
        message[name] = value
    # Quoted-printable keeps the .eml readable in an editor, unlike base64.
    message.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    return message


def build_message(
    config: Config, edition: Edition, recipient: Recipient, unsubscribe: str, sent_at: datetime
) -> EmailMessage:
    """One reader's copy of an edition, with their placeholders filled."""
    values = recipient_values(recipient.name, unsubscribe)
    return new_message(
        config,
        Address(recipient.name, addr_spec=recipient.email),
        edition.subject,
        sent_at,
        f"{edition.id}.{recipient.subscriber_id}",
        list_headers(config, edition.newsletter, unsubscribe),
        personalize(edition.text, values),
        personalize(edition.html, values),
    )
