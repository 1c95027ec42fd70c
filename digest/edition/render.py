"""Render an edition variant once: Jinja templates to HTML and text, CSS inlined by premailer.

Per-reader values are not known here: the templates get `%%name%%` placeholders that
`personalize.py` fills for each recipient after inlining, so premailer and Jinja run
once per edition variant and never per recipient.
"""

from __future__ import annotations

import logging
import re
import textwrap
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import jinja2
import premailer

from ..config import NewsletterConfig, SiteConfig, UtmSettings
from ..errors import TemplateError
from ..models import Selection, Story
from ..text import cut_at_word, one_line
from .personalize import HTML_PLACEHOLDERS, TEXT_PLACEHOLDERS

GMAIL_CLIP_BYTES = 102 * 1024
STYLE_BLOCK_LIMIT_BYTES = 16 * 1024
CSS_MARKER = "<!-- email.css -->"
# Plain-text mail is read in 80-column terminals and quoted with "> ": 78 leaves room.
TEXT_WIDTH = 78
_BARE_URL = re.compile(r"\s*https?://\S*")
_LIST_ITEM = re.compile(r"(\s*)([-*] )?")
# A subject is one header line: well past what any inbox shows, far inside RFC 5322's 998
# characters. A preheader is the inbox's second line; past this it only fills the hidden span.
SUBJECT_MAX_CHARS = 150
PREHEADER_MAX_CHARS = 200
# The query parameter naming the story on every story link (read back from click events).
STORY_PARAMETER = "digest_story"


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


def add_story_id(url: str, story_id: int) -> str:
    """Append the story's id (`digest_story`), so a click counts for its story whatever the URL.

    Any such parameter the feed's URL already had is replaced: clicks must not be steered.
    """
    parts = urlsplit(url)
    query = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != STORY_PARAMETER
    ]
    query.append((STORY_PARAMETER, str(story_id)))
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
    """A story's link exactly as the templates get it (UTM and story id added, never a
    placeholder)."""
    return _inert_url(add_story_id(add_utm(story.url, newsletter.utm, newsletter.name), story.id))


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


def _fill(text: str, indent: str = "", hanging: str = "") -> list[str]:
    return textwrap.wrap(
        text,
        TEXT_WIDTH,
        initial_indent=indent,
        subsequent_indent=hanging,
        break_long_words=False,
        break_on_hyphens=False,
    ) or [indent]


def wrap_text(text: str) -> str:
    """Lines of at most 78 characters. No word is broken, so a URL keeps a line of its own
    and is the one thing that may run longer.

    A continuation line keeps the indentation of its line, and hangs under the text of a
    "- " list item.
    """
    lines = []
    for line in text.split("\n"):
        if len(line) <= TEXT_WIDTH or _BARE_URL.fullmatch(line):
            lines.append(line)
            continue
        # The pattern matches any line (both groups may be empty).
        lead = _LIST_ITEM.match(line)
        assert lead is not None
        indent, bullet = lead.group(1), lead.group(2) or ""
        lines += _fill(line.strip(), indent, indent + " " * len(bullet))
    return "\n".join(lines)


def underline(title: str, rule: str) -> str:
    """A plain-text heading: the title, wrapped, over a rule as long as its longest line."""
    lines = _fill(title)
    return "\n".join(lines) + "\n" + rule * min(max(map(len, lines)), TEXT_WIDTH)


def postal_line(site: SiteConfig) -> str:
    """The footer's address line: the publisher's name once, then its address."""
    if site.name.casefold() in site.postal_address.casefold():
        return site.postal_address
    return f"{site.name}, {site.postal_address}"


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


# What premailer made of each stylesheet, shared by every Renderer of the process (keyed by
# the CSS text): a studio that makes a Renderer per change, or a run per newsletter, parses
# email.css once, not once per Renderer.
_PARSED_CSS: dict[Any, Any] = {}


class _CompiledTemplates(jinja2.BytecodeCache):
    """Compiled templates shared by every Renderer of the process.

    Jinja checks each entry against a checksum of the template's source, so an edited
    template (the studio's live reload) is compiled afresh; an unchanged one is not compiled
    again for each new Renderer.
    """

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()


_COMPILED_TEMPLATES = _CompiledTemplates()


class _Inliner(premailer.Premailer):
    """premailer that keeps what it makes of a stylesheet, in `parsed`, for the next variant.

    premailer caches cssutils' parse of the CSS but still walks and re-serializes every rule,
    and every @media rule, on each transform: most of its time for our one stylesheet.
    Keyed by the CSS text, so an edited email.css is parsed afresh.
    """

    def __init__(self, html: str, parsed: dict[Any, Any], **options: Any):
        super().__init__(html, **options)
        self._parsed = parsed

    def _parse_style_rules(self, css_body: str, ruleset_index: int) -> tuple[list[Any], Any]:
        key = (css_body, ruleset_index)
        if key not in self._parsed:
            if len(self._parsed) > 16:
                # A long-lived process (the studio) whose email.css keeps changing.
                self._parsed.clear()
            self._parsed[key] = super()._parse_style_rules(css_body, ruleset_index)
        rules, leftover = self._parsed[key]
        return list(rules), leftover

    def _css_rules_to_string(self, rules: list[Any]) -> str:
        # `rules` is a leftover list kept in `_parsed`; its text never changes.
        key = ("leftover", id(rules))
        kept = self._parsed.get(key)
        if kept is None or kept[0] is not rules:
            kept = self._parsed[key] = (rules, super()._css_rules_to_string(rules))
        return kept[1]


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
            bytecode_cache=_COMPILED_TEMPLATES,
        )
        self.env.filters["ago"] = jinja2.pass_context(
            lambda ctx, moment: relative_time(moment, ctx["edition_time"])
        )
        self.env.filters["underline"] = underline
        self.env.filters["postal_line"] = postal_line
        self.env.filters["wrap"] = wrap_text
        # Compiled once per source: every variant renders the same subject line template.
        self._string_templates: dict[str, jinja2.Template] = {}

    def _css(self, name: str) -> str:
        try:
            return (self.templates_dir / name).read_text(encoding="utf-8")
        except OSError as exc:
            raise TemplateError(
                f"Cannot read {self.templates_dir / name}: {exc.strerror}; restore it."
            ) from None

    def render_template(self, name: str, context: dict[str, Any]) -> str:
        """A template rendered; a plain-text one (`.txt`) comes out wrapped at 78 columns."""
        try:
            rendered = self.env.get_template(name).render(context)
        except jinja2.TemplateError as exc:
            raise _template_error(exc, self.templates_dir) from None
        return wrap_text(rendered) if name.endswith(".txt") else rendered

    def render_string(self, source: str, context: dict[str, Any], what: str) -> str:
        try:
            template = self._string_templates.get(source)
            if template is None:
                template = self._string_templates[source] = self.env.from_string(source)
            return template.render(context).strip()
        except jinja2.TemplateError as exc:
            raise TemplateError(f"The {what} template {source!r} does not render: {exc}.") from None

    def inline_css(self, html: str) -> str:
        """premailer with no network, links untouched and @media rules kept in <style>.

        `email.css` is inlined; `email-dark.css` follows it in a <style> of its own that
        premailer leaves alone: its Outlook hooks (`[data-ogsc] ...`) match nothing until
        Outlook sets those attributes, so premailer would drop them; and a client that
        throws away a <style> it does not like still keeps the phone rules of the other.
        """
        if CSS_MARKER not in html:
            raise TemplateError(
                f"base.html has no {CSS_MARKER} marker in <head>; add it so the CSS is included."
            )
        dark = re.sub(r"\s*/\*.*?\*/", "", self._css("email-dark.css"), flags=re.S).strip()
        styles = (
            f"<style>\n{self._css('email.css')}\n</style>\n"
            f'<style data-premailer="ignore">\n{dark}\n</style>'
        )
        html = html.replace(CSS_MARKER, styles, 1)
        return _Inliner(
            html,
            _PARSED_CSS,
            allow_network=False,
            strip_important=False,
            # Validation only logs (and we silence cssutils), so it changes nothing but time.
            disable_validation=True,
            disable_link_rewrites=True,
            remove_classes=False,
            # Not `height: auto` as an attribute: the template's height reserves the image's
            # space, and the inlined `height: auto` then lets it keep its own proportions.
            disable_basic_attributes=["height"],
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
        *,
        web_url: str = "",
        subject: str = "",
        preheader: str = "",
        note: str = "",
    ) -> RenderedEdition:
        """HTML (inlined) and text of one edition variant, with per-reader placeholders.

        `web_url` is the variant's web copy ("View in your browser"); none when empty. A
        `subject` or `preheader` given (an editor's, for this edition) replaces the
        newsletter's template; `note` is the editor's note at the top of the email.
        """
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
            "web_url": _inert_url(web_url),
            "editor_note": note,
        }
        # Each on one line and cut at a word (story titles are long, the default preheader
        # joins them all), so no feed can make a subject a transport refuses.
        subject = cut_at_word(
            one_line(subject or self.render_string(newsletter.subject, context, "subject")),
            SUBJECT_MAX_CHARS,
        )
        preheader = cut_at_word(
            one_line(preheader or self.render_string(newsletter.preheader, context, "preheader")),
            PREHEADER_MAX_CHARS,
        )
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
