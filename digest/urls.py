"""The links a reader follows from an email: their own page, preferences, confirmation, archive.

Every reader-facing URL is made here, so the token scheme and the routes in `web` have one
place to agree on. Made once per recipient when sending: the signers are made once per object.
"""

from __future__ import annotations

import re
from datetime import date, datetime

from .config import Config
from .tokens import CONFIRM_SALT, TokenSigner

# The reader's own page in previews and test sends: no token, so it names and changes nobody.
PREVIEW_PATH = "/u/preview"


class ReaderLinks:
    """One newsletter's links for its readers: `<site>/u/<token>` and `<site>/confirm/<token>`."""

    def __init__(self, config: Config, newsletter: str):
        self._site = config.site.url.rstrip("/")
        self._prefix = f"{self._site}/u/"
        self._signer = TokenSigner(config.secret_key)
        self._confirm_signer = TokenSigner(config.secret_key, CONFIRM_SALT)
        self._newsletter = newsletter

    def reader_token(self, subscriber_id: int, link_nonce: str) -> str:
        """The token of the reader's own page, which unsubscribes in one click.

        `link_nonce` is the reader's (`subscribers.link_nonce`): it names them for good.
        """
        return self._signer.make(subscriber_id, link_nonce, self._newsletter)

    def unsubscribe_url(self, subscriber_id: int, link_nonce: str) -> str:
        return self._prefix + self._signer.make(subscriber_id, link_nonce, self._newsletter)

    def preferences_url(self, subscriber_id: int, link_nonce: str) -> str:
        """The reader's own page, at its preferences form."""
        return self.unsubscribe_url(subscriber_id, link_nonce) + "#preferences"

    def preview_url(self) -> str:
        """The inert stand-in for a reader's own link, in previews and test sends.

        It names no reader: the web app answers it with "this is a preview" and changes nothing.
        """
        return self._site + PREVIEW_PATH

    def confirmation_url(self, subscriber_id: int, code: str) -> str:
        """The confirmation link of one sign-up: `code` is the subscription's `confirm_code`."""
        token = self._confirm_signer.make(subscriber_id, code, self._newsletter)
        return f"{self._site}/confirm/{token}"


# The public archive's paths (served by `digest serve`, written by `digest archive build`).
ARCHIVE_PATH = "/archive"
_SLUG_UNSAFE = re.compile(r"[^a-z0-9_-]+")


def slug(text: str) -> str:
    """A name as a path part: lower-case ASCII letters, digits, `-` and `_`."""
    return _SLUG_UNSAFE.sub("-", text.lower().replace("+", "plus")).strip("-") or "-"


def variant_slug(local_time: datetime, topics: tuple[str, ...], timezone: str) -> str:
    """The last part of a variant's web copy path: its local time, zone and topics.

    `0700.europe-london.all`, `0700.asia-tokyo.science+sport`: readable, and ASCII whatever
    the topics are, so a link in the text part never needs quoting.
    """
    topic_part = "+".join(slug(t) for t in topics) or "all"
    return f"{local_time:%H%M}.{slug(timezone)}.{topic_part}"


def archive_day_path(newsletter: str, day: date) -> str:
    """The path of a newsletter's edition of one day (the editors' edition)."""
    return f"{ARCHIVE_PATH}/{newsletter}/{day:%Y-%m-%d}/"


def variant_copy_path(
    newsletter: str, local_time: datetime, topics: tuple[str, ...], timezone: str
) -> str:
    """The path of one variant's web copy, under the day it was sent on in its own zone."""
    day = archive_day_path(newsletter, local_time.date())
    return f"{day}{variant_slug(local_time, topics, timezone)}/"


def site_link(config: Config, path: str) -> str:
    """An absolute link to a path of the site (`site.url` plus the path)."""
    return config.site.url.rstrip("/") + path
