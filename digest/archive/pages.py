"""The archive's pages, Atom feeds and sitemap, rendered as plain values for the web app and
the static export alike.

Every page is a function of the database and the config: the same bytes under `digest serve`
and in `digest archive build`. Bad input (an unknown newsletter, a date that does not exist,
a page past the last) raises `ArchivePageError` with the status and message to show.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from xml.sax.saxutils import escape as xml_escape

import jinja2
from feedgen.feed import FeedGenerator
from sqlite_utils import Database

from ..clock import from_db, utcnow
from ..config import PROJECT_TEMPLATES, Config, NewsletterConfig
from ..edition.render import Renderer
from ..urls import ARCHIVE_PATH, archive_day_path, site_link
from ..urls import slug as topic_slug
from .copies import edition_email_html, sent_variants, signup_url, web_copy
from .days import (
    ArchiveDay,
    archived_day,
    count_shown_days,
    due_days,
    freeze_day,
    is_hidden,
    last_change,
    neighbours,
    set_hidden,
    shown_days,
    shown_days_with_html,
    topic_days,
)

PER_PAGE = 50
FEED_ENTRIES = 20
ATOM = "application/atom+xml; charset=utf-8"
HTML = "text/html; charset=utf-8"
XML = "application/xml; charset=utf-8"
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
# What XML 1.0 cannot carry at all (lxml refuses it): C0 controls but tab, LF, CR; U+FFFE/F;
# lone surrogates.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
# A date before any edition: a feed with no entry still has a fixed `updated`.
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


class ArchivePageError(Exception):
    """What a request for an archive path gets instead of a page: a status and why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Page:
    """A rendered archive resource: its body, type and when what it shows last changed."""

    body: str
    content_type: str = HTML
    updated: datetime | None = None

    @property
    def etag(self) -> str:
        return hashlib.sha256(self.body.encode("utf-8")).hexdigest()[:32]


def xml_safe(text: str) -> str:
    """Text XML can carry: characters it forbids (controls, lone surrogates) removed."""
    return _NOT_XML.sub("", text)


def long_date(day: date) -> str:
    return f"{day:%A} {day.day} {day:%B %Y}"


def parse_day(text: str) -> date:
    """A `YYYY-MM-DD` path part as a date; 404 for anything else or a day that never was."""
    if not _DAY.fullmatch(text):
        raise ArchivePageError(404, f"{text[:40]!r} is not a date; archive dates are YYYY-MM-DD.")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ArchivePageError(404, f"There is no {text} in the calendar.") from None


def parse_page_number(text: str | None) -> int:
    """The `page` query parameter: 1 when absent, 400 when not a small whole number above 0."""
    if text is None or text == "":
        return 1
    if not re.fullmatch(r"[1-9][0-9]{0,5}", text):
        raise ArchivePageError(400, "page must be a whole number from 1 up.")
    return int(text)


@functools.cache
def _environment(templates_dir: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(
            [
                jinja2.FileSystemLoader(f"{templates_dir}/pages"),
                jinja2.FileSystemLoader(PROJECT_TEMPLATES / "pages"),
            ]
        ),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["long_date"] = long_date
    return env


class Archive:
    """The archive of one config over one database connection."""

    def __init__(self, db: Database, config: Config, now: datetime | None = None):
        self.db = db
        self.config = config
        self.now = now
        self.env = _environment(str(config.templates_dir))
        self._renderer: Renderer | None = None

    # -- what is archived -------------------------------------------------------------------

    def newsletters(self) -> list[NewsletterConfig]:
        """The newsletters whose archive is public."""
        return [n for n in self.config.newsletters.values() if n.archive]

    def newsletter(self, name: str) -> NewsletterConfig:
        found = self.config.newsletters.get(name)
        if found is None or not found.archive:
            raise ArchivePageError(404, "There is no public archive of that name.")
        return found

    def freeze(self, newsletter: NewsletterConfig) -> list[date]:
        """Archive the days that are due (see `days.due_days`); the days frozen now."""
        frozen = []
        for day, slot in due_days(self.db, newsletter, self.now or utcnow()):
            if self._renderer is None:
                self._renderer = Renderer(self.config.templates_dir)
            freeze_day(self.db, self.config, self._renderer, newsletter, day, slot)
            frozen.append(day)
        return frozen

    def set_hidden(self, name: str, day: date, hidden: bool) -> ArchiveDay:
        """Hide or show a day (archived first if it is due and not yet built)."""
        self.freeze(self.config.newsletter(name))
        return set_hidden(self.db, name, day, hidden)

    def freeze_all(self) -> None:
        for newsletter in self.newsletters():
            self.freeze(newsletter)

    # -- links --------------------------------------------------------------------------------

    def link(self, path: str) -> str:
        return site_link(self.config, path)

    def list_path(self, newsletter: str, page: int = 1) -> str:
        base = f"{ARCHIVE_PATH}/{newsletter}/"
        return base if page == 1 else f"{base}page/{page}/"

    def feed_path(self, newsletter: str, topic: str | None = None) -> str:
        if topic is None:
            return f"{ARCHIVE_PATH}/{newsletter}/feed.atom"
        return f"{ARCHIVE_PATH}/{newsletter}/topics/{topic_slug(topic)}/feed.atom"

    def _common(self, newsletter: NewsletterConfig | None, canonical: str) -> dict[str, Any]:
        return {
            "site": self.config.site,
            "newsletter": newsletter,
            "canonical": self.link(canonical),
            "feed_url": self.link(self.feed_path(newsletter.name)) if newsletter else None,
            "signup_action": self.link("/subscribe"),
            "signup_more": signup_url(self.config, newsletter.name) if newsletter else None,
            "archive_url": self.link(f"{ARCHIVE_PATH}/"),
        }

    def _render(self, name: str, **context: Any) -> str:
        return self.env.get_template(name).render(**context)

    # -- pages ---------------------------------------------------------------------------------

    def index(self) -> Page:
        """`/archive/`: every newsletter with a public archive and its latest edition."""
        self.freeze_all()
        entries = []
        for newsletter in self.newsletters():
            latest = shown_days(self.db, newsletter.name, 0, 1)
            entries.append((newsletter, latest[0] if latest else None))
        body = self._render(
            "archive/index.html",
            entries=entries,
            list_path=self.list_path,
            link=self.link,
            **self._common(None, f"{ARCHIVE_PATH}/"),
        )
        return Page(body, updated=last_change(self.db))

    def newsletter_page(self, name: str, page: int = 1) -> Page:
        """`/archive/<newsletter>/`: its days newest first, `PER_PAGE` a page."""
        newsletter = self.newsletter(name)
        self.freeze(newsletter)
        total = count_shown_days(self.db, name)
        pages = max(1, math.ceil(total / PER_PAGE))
        if page > pages:
            raise ArchivePageError(
                404, f"There is no page {page}: the archive of {newsletter.title} has {pages}."
            )
        days = shown_days(self.db, name, (page - 1) * PER_PAGE, PER_PAGE)
        body = self._render(
            "archive/list.html",
            days=days,
            page=page,
            pages=pages,
            total=total,
            day_path=lambda d: archive_day_path(name, d),
            previous_page=self.list_path(name, page - 1) if page > 1 else None,
            next_page=self.list_path(name, page + 1) if page < pages else None,
            topics=self.topics(name),
            feed_path=self.feed_path,
            **self._common(newsletter, self.list_path(name, page)),
        )
        return Page(body, updated=last_change(self.db, name))

    def day_page(self, name: str, day_text: str) -> Page:
        """`/archive/<newsletter>/<YYYY-MM-DD>/`: the editors' edition of that day."""
        newsletter = self.newsletter(name)
        day = parse_day(day_text)
        self.freeze(newsletter)
        found = archived_day(self.db, name, day)
        if found is None:
            raise ArchivePageError(404, f"{newsletter.title} has no edition on {long_date(day)}.")
        if found.hidden:
            raise ArchivePageError(410, "This edition has been withdrawn from the archive.")
        before, after = neighbours(self.db, name, day)
        body = self._copy_page(
            newsletter,
            found.html,
            archive_day_path(name, day),
            found.subject,
            found.preheader,
            before,
            after,
            day,
            heading=f"{newsletter.title}, {long_date(day)}",
            image=found.image,
        )
        # Its previous/next links change with any other day: the newsletter's last change.
        return Page(body, updated=last_change(self.db, name))

    def variant_page(self, name: str, day_text: str, slug: str) -> Page:
        """`/archive/<newsletter>/<YYYY-MM-DD>/<variant>/`: one sent variant's web copy."""
        newsletter = self.newsletter(name)
        day = parse_day(day_text)
        for variant in sent_variants(self.db, newsletter, day):
            if variant.slug == slug:
                break
        else:
            raise ArchivePageError(404, f"{newsletter.title} sent no such edition that day.")
        if is_hidden(self.db, name, day):
            raise ArchivePageError(410, "This edition has been withdrawn from the archive.")
        subject, email_html = edition_email_html(self.db, variant.edition_id)
        before, after = neighbours(self.db, name, day)
        body = self._copy_page(
            newsletter,
            web_copy(self.config, newsletter, email_html),
            variant.path,
            subject,
            "",
            before,
            after,
            day,
            heading=f"{newsletter.title}, {long_date(day)}: {variant.label}",
        )
        changed = last_change(self.db, name)
        return Page(body, updated=max(changed, variant.slot_at) if changed else variant.slot_at)

    def _copy_page(
        self,
        newsletter: NewsletterConfig,
        copy_html: str,
        path: str,
        subject: str,
        description: str,
        before: date | None,
        after: date | None,
        day: date,
        heading: str,
        image: str = "",
    ) -> str:
        """A web copy with the archive's head (canonical, cards, feed) and its navigation,
        the day's other variants and the sign-up form after the email."""
        common = self._common(newsletter, path)
        head = self._render(
            "archive/_copy_head.html",
            subject=subject,
            image=image,
            description=description or newsletter.description,
            **common,
        )
        variants = [v for v in sent_variants(self.db, newsletter, day) if v.path != path]
        nav = self._render(
            "archive/_copy_nav.html",
            heading=heading,
            before=(archive_day_path(newsletter.name, before), before) if before else None,
            after=(archive_day_path(newsletter.name, after), after) if after else None,
            day_path=archive_day_path(newsletter.name, day),
            is_day_page=path == archive_day_path(newsletter.name, day),
            variants=variants,
            list_path=self.list_path(newsletter.name),
            **common,
        )
        copy_html = copy_html.replace("</head>", head + "</head>", 1)
        return copy_html.replace("</body>", nav + "</body>", 1)

    def topics(self, name: str) -> list[str]:
        """The topics the newsletter's shown days carried, each with a feed."""
        found: set[str] = set()
        for (topics,) in self.db.execute(
            "SELECT DISTINCT topics FROM archive_days WHERE newsletter = ? AND hidden = 0", [name]
        ):
            found.update(t for t in topics.split(";") if t)
        return sorted(found)

    # -- feeds and sitemap ----------------------------------------------------------------------

    def feed(self, name: str, topic_part: str | None = None) -> Page:
        """The Atom feed of a newsletter (each entry a day's full web copy), or of one topic
        (each entry that day's stories of the topic)."""
        newsletter = self.newsletter(name)
        self.freeze(newsletter)
        topic = None
        if topic_part is not None:
            topic = next((t for t in self.topics(name) if topic_slug(t) == topic_part), None)
            if topic is None:
                raise ArchivePageError(404, f"{newsletter.title} has no such topic.")
            days = topic_days(self.db, name, topic, FEED_ENTRIES)
        else:
            days = shown_days_with_html(self.db, name, FEED_ENTRIES)
        feed_url = self.link(self.feed_path(name, topic))
        generator = FeedGenerator()
        generator.id(feed_url)
        title = newsletter.title + (f": {topic.capitalize()}" if topic else "")
        generator.title(xml_safe(title))
        generator.author({"name": xml_safe(self.config.site.name)})
        generator.link(href=self.link(self.list_path(name)), rel="alternate")
        generator.link(href=feed_url, rel="self")
        generator.language("en")
        if newsletter.description:
            generator.subtitle(xml_safe(newsletter.description))
        generator.updated(max((d.changed_at for d in days), default=_EPOCH))
        for day in days:
            url = self.link(archive_day_path(name, day.day))
            entry = generator.add_entry(order="append")
            entry.id(url if topic is None else f"{url}#topic-{topic_slug(topic)}")
            entry.title(xml_safe(day.subject))
            entry.link(href=url, rel="alternate")
            entry.published(day.slot_at)
            entry.updated(day.changed_at)
            if day.preheader:
                entry.summary(xml_safe(day.preheader))
            content = day.html if topic is None else self._topic_entry(day, topic)
            entry.content(xml_safe(content), type="html")
        body = generator.atom_str(pretty=True).decode("utf-8")
        # A day hidden since changes the feed but none of the entries it still has.
        return Page(body, ATOM, last_change(self.db, name))

    def _topic_entry(self, day: ArchiveDay, topic: str) -> str:
        stories = [s for s in day.stories if s.category.strip().lower() == topic]
        return self._render(
            "archive/_topic_entry.html",
            stories=stories,
            day_url=self.link(archive_day_path(day.newsletter, day.day)),
        )

    def sitemap(self) -> Page:
        """`/archive/sitemap.xml`: the index, each newsletter's list and each shown day."""
        self.freeze_all()
        entries: list[tuple[str, datetime | None]] = [
            (self.link(f"{ARCHIVE_PATH}/"), last_change(self.db))
        ]
        for newsletter in self.newsletters():
            entries.append(
                (self.link(self.list_path(newsletter.name)), last_change(self.db, newsletter.name))
            )
            for day, changed in self.db.execute(
                """SELECT day, changed_at FROM archive_days WHERE newsletter = ? AND hidden = 0
                   ORDER BY day DESC""",
                [newsletter.name],
            ):
                path = archive_day_path(newsletter.name, date.fromisoformat(day))
                entries.append((self.link(path), from_db(changed)))
        lines = ['<?xml version="1.0" encoding="UTF-8"?>']
        lines.append('<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">')
        for url, changed in entries:
            lastmod = f"<lastmod>{changed:%Y-%m-%d}</lastmod>" if changed else ""
            lines.append(f"<url><loc>{xml_escape(url)}</loc>{lastmod}</url>")
        lines.append("</urlset>")
        return Page("\n".join(lines) + "\n", XML, last_change(self.db))

    def error_page(self, error: ArchivePageError) -> str:
        return self._render(
            "archive/error.html",
            status=error.status,
            message=error.message,
            **self._common(None, f"{ARCHIVE_PATH}/"),
        )

    def every_path(self) -> list[str]:
        """Every path the archive answers with a page: what the static export writes."""
        self.freeze_all()
        paths = [f"{ARCHIVE_PATH}/", f"{ARCHIVE_PATH}/sitemap.xml"]
        for newsletter in self.newsletters():
            name = newsletter.name
            pages = max(1, math.ceil(count_shown_days(self.db, name) / PER_PAGE))
            paths += [self.list_path(name, page) for page in range(1, pages + 1)]
            paths.append(self.feed_path(name))
            paths += [self.feed_path(name, topic) for topic in self.topics(name)]
            for (day,) in self.db.execute(
                "SELECT day FROM archive_days WHERE newsletter = ? AND hidden = 0", [name]
            ):
                shown = date.fromisoformat(day)
                paths.append(archive_day_path(name, shown))
                paths += [v.path for v in sent_variants(self.db, newsletter, shown)]
        return paths

    def page_at(self, path: str) -> Page:
        """The page at an archive path (as `every_path` lists them, or as requested)."""
        parts = [p for p in path.removeprefix(ARCHIVE_PATH).split("/") if p]
        match parts:
            case []:
                return self.index()
            case ["sitemap.xml"]:
                return self.sitemap()
            case [name]:
                return self.newsletter_page(name)
            case [name, "page", number]:
                return self.newsletter_page(name, parse_page_number(number))
            case [name, "feed.atom"]:
                return self.feed(name)
            case [name, "topics", topic, "feed.atom"]:
                return self.feed(name, topic)
            case [name, day]:
                return self.day_page(name, day)
            case [name, day, slug]:
                return self.variant_page(name, day, slug)
        raise ArchivePageError(404, "There is no such page in the archive.")
