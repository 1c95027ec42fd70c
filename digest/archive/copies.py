"""Recipient-free web copies of frozen editions: no name, no token, no nonce, no tracking."""

from __future__ import annotations

import html as html_lib
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from sqlite_utils import Database

from ..clock import from_db, to_db
from ..config import Config, NewsletterConfig
from ..edition.personalize import personalize, recipient_values
from ..urls import site_link, variant_copy_path, variant_slug

# What the templates mark as meant for the reader alone: the "View in your browser" link and
# the footer's unsubscribe and preferences links (templates/base.html, _footer.html).
_READER_ONLY = re.compile(r"<!--reader-only-->.*?<!--/reader-only-->", re.S)


def signup_url(config: Config, newsletter: str) -> str:
    """The sign-up form with the newsletter chosen: what a web copy offers instead of links."""
    return site_link(config, "/subscribe?" + urlencode({"newsletter": newsletter}))


def web_copy(config: Config, newsletter: NewsletterConfig, email_html: str) -> str:
    """An edition's HTML as anyone may read it: a neutral greeting, a sign-up call to action.

    The reader-only parts go; every per-reader placeholder is filled with what names nobody,
    so even a template that put one elsewhere leaks nothing.
    """
    signup = signup_url(config, newsletter.name)
    # Styled inline as premailer styled the footer it replaces (templates/email.css).
    invitation = (
        '<p class="footer-unsubscribe" style="margin:0 0 10px 0; font-size:15px; '
        'line-height:32px; font-weight:bold">'
        f'<a href="{html_lib.escape(signup)}" class="subscribe" style="display:inline-block; '
        f'color:#121212; text-decoration:underline">'
        f"Subscribe to {html_lib.escape(newsletter.title)}</a></p>"
        '<p class="footer-text" style="margin:0 0 8px 0; font-size:12px; line-height:18px; '
        'color:#6b6b6b">A copy of the email, for reading on the web.</p>'
    )

    def replace(match: re.Match[str]) -> str:
        return invitation if "footer-unsubscribe" in match.group(0) else ""

    page = _READER_ONLY.sub(replace, email_html)
    return personalize(page, recipient_values("", signup))


@dataclass(frozen=True)
class VariantCopy:
    """One sent variant of a newsletter slot, as its web copy's path names it."""

    edition_id: int
    newsletter: str
    slot_at: datetime
    local_time: datetime
    topics: tuple[str, ...]
    timezone: str

    @property
    def slug(self) -> str:
        return variant_slug(self.local_time, self.topics, self.timezone)

    @property
    def path(self) -> str:
        return variant_copy_path(self.newsletter, self.local_time, self.topics, self.timezone)

    @property
    def label(self) -> str:
        topics = ", ".join(t.capitalize() for t in self.topics) or "All topics"
        return f"{topics} · {self.local_time:%H:%M} {self.timezone}"


def sent_variants(db: Database, newsletter: NewsletterConfig, day: date) -> list[VariantCopy]:
    """The variants sent on `day` (in each one's own time zone), in time then name order.

    Only editions with at least one delivery sent: a variant nobody got has no copy.
    """
    start = datetime.combine(day, time(), UTC) - timedelta(days=1)
    rows = db.execute(
        """SELECT id, slot_at, topics, timezone FROM editions e
           WHERE newsletter = ? AND slot_at >= ? AND slot_at < ?
           AND EXISTS (SELECT 1 FROM deliveries d WHERE d.edition_id = e.id
                       AND d.status = 'sent')
           ORDER BY slot_at, id""",
        [newsletter.name, to_db(start), to_db(start + timedelta(days=3))],
    )
    found = []
    for edition_id, slot_at, topics, timezone in rows:
        zone = timezone or newsletter.timezone
        slot = from_db(slot_at)
        local = slot.astimezone(ZoneInfo(zone))
        if local.date() == day:
            found.append(
                VariantCopy(
                    edition_id,
                    newsletter.name,
                    slot,
                    local,
                    tuple(t for t in topics.split(";") if t),
                    zone,
                )
            )
    return sorted(found, key=lambda v: (v.local_time.strftime("%H%M"), v.slug))


def edition_email_html(db: Database, edition_id: int) -> tuple[str, str]:
    """A frozen edition's subject and HTML (with its placeholders)."""
    subject, page = db.execute(
        "SELECT subject, html FROM editions WHERE id = ?", [edition_id]
    ).fetchone()
    return subject, page
