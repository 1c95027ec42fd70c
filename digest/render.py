"""Render an edition variant once: Jinja templates to HTML and text, CSS inlined by premailer.

Per-reader values are not known here: the templates get `%%name%%` placeholders that
`personalize.py` fills for each recipient after inlining, so premailer and Jinja run
once per edition variant and never per recipient.
"""

from __future__ import annotations

import logging
import re
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import jinja2
import premailer

from .config import NewsletterConfig, SiteConfig, UtmSettings
from .errors import TemplateError
from .models import Selection, Story
from .personalize import HTML_PLACEHOLDERS, TEXT_PLACEHOLDERS

GMAIL_CLIP_BYTES = 102 * 1024
STYLE_BLOCK_LIMIT_BYTES = 16 * 1024
CSS_MARKER = "<!-- email.css -->"


@dataclass(frozen=True)
class RenderedEdition:
    subject: str
    preheader: str
    html: str
    text: str
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StoryView:
    """A story as the templates see it: the link already carries its UTM parameters."""

    title: str
    url: str
    summary: str
    author: str
    category: str
    image_url: str
    published_at: datetime
    also_read: StoryView | None = None


def relative_time(moment: datetime, reference: datetime) -> str:
    """'just now', '5 minutes ago', '3 hours ago', 'yesterday', '4 days ago'."""
    seconds = int((reference - moment).total_seconds())
    if seconds < 60:
        return "just now"
    for unit, size in (("minute", 60), ("hour", 3600), ("day", 86400)):
        if unit == "day" or seconds < size * (60 if unit == "minute" else 24):
            count = seconds // size
            if unit == "day" and count == 1:
                return "yesterday"
            return f"{count} {unit}{'' if count == 1 else 's'} ago"
    raise AssertionError("unreachable")


def add_utm(url: str, utm: UtmSettings, newsletter: str) -> str:
    """Append UTM parameters, keeping any the link already has."""
    if not utm.enabled:
        return url
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    present = {key for key, _ in query}
    wanted = {
        "utm_source": utm.source,
        "utm_medium": utm.medium,
        "utm_campaign": utm.campaign.format(newsletter=newsletter),
    }
    query += [(k, v) for k, v in wanted.items() if k not in present and v]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _inert(text: str) -> str:
    """Feed text that can never spell a per-reader placeholder (`%%name%%`).

    Otherwise a feed could write `%%unsubscribe_url%%` into a link and collect every
    reader's token. A word joiner between the signs is invisible to readers.
    """
    return text.replace("%%", "%\u2060%")


def _inert_url(url: str) -> str:
    # A literal "%%" is not valid in a URL anyway; percent-encode it.
    return url.replace("%%", "%25%25")


def story_link(story: Story, newsletter: NewsletterConfig) -> str:
    """A story's link exactly as the templates get it (UTM added, never a placeholder)."""
    return _inert_url(add_utm(story.url, newsletter.utm, newsletter.name))


def _story_view(story: Story, newsletter: NewsletterConfig, also: Story | None = None) -> StoryView:
    return StoryView(
        title=_inert(story.title),
        url=story_link(story, newsletter),
        summary=_inert(story.summary),
        author=_inert(story.author),
        category=_inert(story.category),
        image_url=_inert_url(story.image_url),
        published_at=story.published_at,
        also_read=_story_view(also, newsletter) if also else None,
    )


def _template_error(exc: Exception, templates_dir: Path) -> TemplateError:
    """Name the template file and line of a Jinja error, and what to do about it."""
    if isinstance(exc, jinja2.TemplateNotFound):
        return TemplateError(
            f"Template {exc.name!r} not found in {templates_dir}; restore it or point "
            "[templates] path in the config at the right folder."
        )
    if isinstance(exc, jinja2.TemplateSyntaxError):
        name = exc.name or exc.filename or "template"
        return TemplateError(
            f"Template syntax error in {name} line {exc.lineno}: {exc.message}. Fix that line.",
            name,
            exc.lineno,
        )
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.startswith(str(templates_dir)) or frame.filename == "<template>":
            name = Path(frame.filename).name
            return TemplateError(
                f"Template error in {name} line {frame.lineno}: {exc}. Fix the template.",
                name,
                frame.lineno,
            )
    return TemplateError(f"Template error in a template: {exc}. Fix the template.")


class Renderer:
    """A Jinja environment over one templates folder and the CSS inliner."""

    def __init__(self, templates_dir: Path):
        self.templates_dir = Path(templates_dir)
        if not self.templates_dir.is_dir():
            raise TemplateError(
                f"Templates folder {self.templates_dir} does not exist; set [templates] path "
                "in the config."
            )
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(self.templates_dir),
            autoescape=jinja2.select_autoescape(["html"], default_for_string=False),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self.env.filters["ago"] = jinja2.pass_context(
            lambda ctx, moment: relative_time(moment, ctx["edition_time"])
        )

    def _css(self) -> str:
        try:
            return (self.templates_dir / "email.css").read_text(encoding="utf-8")
        except OSError as exc:
            raise TemplateError(
                f"Cannot read {self.templates_dir / 'email.css'}: {exc.strerror}; restore it."
            ) from None

    def render_template(self, name: str, context: dict[str, Any]) -> str:
        try:
            return self.env.get_template(name).render(context)
        except jinja2.TemplateError as exc:
            raise _template_error(exc, self.templates_dir) from None

    def render_string(self, source: str, context: dict[str, Any], what: str) -> str:
        try:
            return self.env.from_string(source).render(context).strip()
        except jinja2.TemplateError as exc:
            raise TemplateError(f"The {what} template {source!r} does not render: {exc}.") from None

    def inline_css(self, html: str) -> str:
        """premailer with no network, links untouched and @media rules kept in <style>."""
        if CSS_MARKER not in html:
            raise TemplateError(
                f"base.html has no {CSS_MARKER} marker in <head>; add it so the CSS is included."
            )
        html = html.replace(CSS_MARKER, f"<style>\n{self._css()}\n</style>", 1)
        return premailer.Premailer(
            html,
            allow_network=False,
            strip_important=False,
            disable_link_rewrites=True,
            remove_classes=False,
            cssutils_logging_level=logging.CRITICAL,
            cssutils_logging_handler=logging.NullHandler(),
        ).transform()

    def render_edition(
        self,
        newsletter: NewsletterConfig,
        site: SiteConfig,
        selection: Selection,
        edition_time: datetime,
        topics: tuple[str, ...] = (),
    ) -> RenderedEdition:
        """HTML (inlined) and text of one edition variant, with per-reader placeholders."""
        context: dict[str, Any] = {
            "newsletter": newsletter,
            "site": site,
            "edition_time": edition_time,
            "edition_date": f"{edition_time:%A} {edition_time.day} {edition_time:%B %Y}",
            "top_stories": [
                _story_view(t.story, newsletter, t.also_read) for t in selection.top_stories
            ],
            "recent_posts": [_story_view(s, newsletter) for s in selection.recent_posts],
            "topics": list(topics),
        }
        subject = self.render_string(newsletter.subject, context, "subject")
        preheader = self.render_string(newsletter.preheader, context, "preheader")
        context |= {"subject": subject, "preheader": preheader}
        html = self.inline_css(
            self.render_template("digest.html", context | _placeholders(HTML_PLACEHOLDERS))
        )
        text = self.render_template("digest.txt", context | _placeholders(TEXT_PLACEHOLDERS))
        return RenderedEdition(subject, preheader, html, text, size_warnings(html))


def _placeholders(values: dict[str, str]) -> dict[str, Any]:
    """The per-reader template variables, as placeholders filled after inlining."""
    return {
        "reader": SimpleNamespace(greeting=values["greeting"]),
        "unsubscribe_url": values["unsubscribe_url"],
        # The preferences form is on the unsubscribe page: no second per-reader value needed.
        "preferences_url": values["unsubscribe_url"] + "#preferences",
    }


def size_warnings(html: str) -> list[str]:
    """Warnings for an HTML body that Gmail would clip or whose <style> block is too big."""
    warnings = []
    size = len(html.encode("utf-8"))
    if size > GMAIL_CLIP_BYTES:
        warnings.append(
            f"The HTML is {size / 1024:.0f} KB, over Gmail's 102 KB clip: readers will see "
            "'[Message clipped]'. Lower top_stories/recent_posts or trim the templates."
        )
    style = sum(
        len(block.encode("utf-8"))
        for block in re.findall(r"<style[^>]*>(.*?)</style>", html, flags=re.S | re.I)
    )
    if style > STYLE_BLOCK_LIMIT_BYTES:
        warnings.append(
            f"The <style> block is {style / 1024:.0f} KB, over the 16 KB that Gmail keeps: "
            "the @media rules may be dropped. Trim templates/email.css."
        )
    return warnings
