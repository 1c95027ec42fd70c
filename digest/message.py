"""The headers every digest message carries, and the MIME message the outbox writes."""

from __future__ import annotations

from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from urllib.parse import urlsplit

from .config import Config
from .edition import Edition
from .ledger import Recipient
from .personalize import personalize, recipient_values
from .tokens import TokenSigner


def unsubscribe_url(
    config: Config, signer: TokenSigner, subscriber_id: int, newsletter: str
) -> str:
    return f"{config.site.url.rstrip('/')}/u/{signer.make(subscriber_id, newsletter)}"


class UnsubscribeLinks:
    """Every reader's unsubscribe URL for one newsletter; made once per recipient when sending."""

    def __init__(self, config: Config, newsletter: str):
        self._prefix = f"{config.site.url.rstrip('/')}/u/"
        self._signer = TokenSigner(config.secret_key)
        self._newsletter = newsletter

    def url(self, subscriber_id: int) -> str:
        return self._prefix + self._signer.make(subscriber_id, self._newsletter)


def list_id(config: Config, newsletter: str) -> str:
    """RFC 2919 List-Id: `<newsletter.site-domain>` with the newsletter title as phrase."""
    domain = urlsplit(config.site.url).hostname or "localhost"
    title = config.newsletters[newsletter].title.replace('"', "'")
    return f'"{title}" <{newsletter}.{domain}>'


ONE_CLICK = "List-Unsubscribe=One-Click"


def unsubscribe_headers(unsubscribe: str) -> dict[str, str]:
    """RFC 8058 one-click unsubscribe headers for one recipient."""
    return {"List-Unsubscribe": f"<{unsubscribe}>", "List-Unsubscribe-Post": ONE_CLICK}


def list_headers(config: Config, newsletter: str, unsubscribe: str) -> dict[str, str]:
    """List-Id and the one-click unsubscribe headers for one recipient."""
    return {"List-Id": list_id(config, newsletter), **unsubscribe_headers(unsubscribe)}


def build_message(
    config: Config, edition: Edition, recipient: Recipient, unsubscribe: str, sent_at: datetime
) -> EmailMessage:
    """multipart/alternative, text/plain first and text/html last, UTF-8."""
    values = recipient_values(recipient.name, unsubscribe)
    domain = urlsplit(config.site.url).hostname or "localhost"
    message = EmailMessage()
    message["From"] = Address(config.site.from_name, addr_spec=config.site.from_email)
    message["To"] = Address(recipient.name, addr_spec=recipient.email)
    if config.site.reply_to:
        message["Reply-To"] = config.site.reply_to
    message["Subject"] = edition.subject
    message["Date"] = format_datetime(sent_at)
    message["Message-ID"] = make_msgid(f"{edition.id}.{recipient.subscriber_id}", domain)
    for name, value in list_headers(config, edition.newsletter, unsubscribe).items():
        message[name] = value
    # Quoted-printable keeps the .eml readable in an editor, unlike base64.
    message.set_content(
        personalize(edition.text, values), subtype="plain", charset="utf-8", cte="quoted-printable"
    )
    message.add_alternative(
        personalize(edition.html, values), subtype="html", charset="utf-8", cte="quoted-printable"
    )
    return message
