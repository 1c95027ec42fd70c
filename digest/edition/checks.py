"""Checks of one rendered email before anyone sends it: size, links, images, text part, CSS.

Each check is a pure function of what a reader gets (subject, preheader, the personalized
HTML and text) and the links of the stories it carries, so the studio, `/checks.json` and
`digest check` report the same findings. An `error` stops `digest check`; a `warning` is
worth a look; `ok` says a check ran and passed.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from .render import GMAIL_CLIP_BYTES, STYLE_BLOCK_LIMIT_BYTES

CSS_TABLE = Path(__file__).resolve().parent.parent / "data" / "email_css.toml"
# What phones and desktop clients show before cutting off (Litmus, Mailchimp guidance).
SUBJECT_MAX = 78
SUBJECT_PHONE = 41
PREHEADER_MIN = 40
PREHEADER_MAX = 140
LEFTOVER = re.compile(r"%%[A-Za-z_]+%%")
# Schemes that are not web links and need no https.
NON_WEB = ("mailto:", "tel:")


@dataclass(frozen=True)
class Finding:
    level: str  # "error", "warning" or "ok"
    check: str
    message: str
    # The headline of the story the finding is about, when it is about one.
    story: str = ""

    def line(self) -> str:
        about = f" (story {self.story!r})" if self.story else ""
        return f"{self.level}: {self.check}{about}: {self.message}"


@dataclass(frozen=True)
class CheckSummary:
    """The findings of many variants, each distinct one once with how many variants have it."""

    variants: int
    items: tuple[tuple[Finding, int], ...]

    @property
    def errors(self) -> int:
        return sum(finding.level == "error" for finding, _ in self.items)

    @property
    def warnings(self) -> int:
        return sum(finding.level == "warning" for finding, _ in self.items)

    def headline(self) -> str:
        def plural(n: int, word: str) -> str:
            return f"{n} {word}{'s' if n != 1 else ''}"

        return (
            f"{plural(self.variants, 'variant')} checked: {plural(self.errors, 'error')}, "
            f"{plural(self.warnings, 'warning')}"
        )

    def lines(self) -> list[str]:
        return [
            f"{finding.line()} [{count} of {self.variants} variants]"
            for finding, count in self.items
        ]


def summarize(findings: Sequence[Sequence[Finding]]) -> CheckSummary:
    """Errors then warnings across variants, each distinct finding once (ok ones left out)."""
    counts: dict[Finding, int] = {}
    for variant in findings:
        for finding in dict.fromkeys(variant):
            if finding.level != "ok":
                counts[finding] = counts.get(finding, 0) + 1
    order = {"error": 0, "warning": 1}
    items = sorted(counts.items(), key=lambda item: order[item[0].level])
    return CheckSummary(len(findings), tuple(items))


@dataclass(frozen=True)
class EmailParts:
    """What one reader gets, and the links of the stories it carries."""

    subject: str
    preheader: str
    html: str
    text: str
    story_links: Sequence[str] = field(default_factory=tuple)
    # Content-IDs of the images the message itself carries (the editors' report's charts).
    inline_images: Sequence[str] = field(default_factory=tuple)


@dataclass(frozen=True)
class CssRule:
    pattern: re.Pattern[str]
    what: str
    clients: tuple[str, ...]
    fallback: str
    # Ignored where unsupported with no harm (the email reads well without it): not a warning.
    enhancement: bool = False


@functools.cache
def css_rules(path: Path = CSS_TABLE) -> tuple[CssRule, ...]:
    """The curated table of CSS that major clients ignore (digest/data/email_css.toml)."""
    with path.open("rb") as fh:
        table = tomllib.load(fh)
    return tuple(
        CssRule(
            re.compile(rule["pattern"], re.I),
            rule["what"],
            tuple(rule["clients"]),
            rule["fallback"],
            rule.get("enhancement", False),
        )
        for rule in table["rule"]
    )


class _EmailScan(HTMLParser):
    """Collects links, images (with the headline before them) and CSS from an HTML email."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        # Each link's text when it is a headline's link: which story a bad link belongs to.
        self.headline_links: dict[str, str] = {}
        self._anchor: tuple[str, list[str]] | None = None
        self.images: list[tuple[str | None, str | None, str]] = []
        self.styles: list[str] = []
        self.css: list[str] = []
        self._heading: list[str] | None = None
        self.last_heading = ""
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("style"):
            self.css.append(values["style"] or "")
        if tag == "a" and values.get("href") is not None:
            self.links.append(values["href"] or "")
            if self._heading is not None:
                self._anchor = (values["href"] or "", [])
        elif tag == "img":
            self.images.append((values.get("src"), values.get("alt"), self.last_heading))
        elif tag in ("h1", "h2", "h3", "h4"):
            self._heading = []
        elif tag == "style":
            self._in_style = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._anchor is not None:
            href, text = self._anchor
            self.headline_links.setdefault(href, " ".join("".join(text).split()))
            self._anchor = None
        if tag in ("h1", "h2", "h3", "h4") and self._heading is not None:
            self.last_heading = " ".join("".join(self._heading).split())
            self._heading = None
        elif tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._anchor is not None:
            self._anchor[1].append(data)
        if self._heading is not None:
            self._heading.append(data)
        if self._in_style:
            self.styles.append(data)
            self.css.append(data)


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def _short(items: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def run_checks(parts: EmailParts) -> list[Finding]:
    """Every check of one email, errors first."""
    scan = _EmailScan()
    scan.feed(parts.html)
    scan.close()
    findings = (
        _size(parts.html, scan)
        + _links(scan)
        + _leftovers(parts)
        + _images(scan, parts.inline_images)
        + _subject(parts)
        + _text_part(parts)
        + _css(scan)
    )
    order = {"error": 0, "warning": 1, "ok": 2}
    return sorted(findings, key=lambda f: order[f.level])


def _size(html: str, scan: _EmailScan) -> list[Finding]:
    size = len(html.encode("utf-8"))
    style = sum(len(block.encode("utf-8")) for block in scan.styles)
    found = []
    if size > GMAIL_CLIP_BYTES:
        found.append(
            Finding(
                "error",
                "size",
                f"The HTML is {size / 1024:.0f} KB, over Gmail's 102 KB clip: readers see "
                "'[Message clipped]' and lose the footer with the unsubscribe link. Lower "
                "top_stories/recent_posts or trim the templates.",
            )
        )
    else:
        found.append(Finding("ok", "size", f"HTML {size / 1024:.1f} KB of Gmail's 102 KB"))
    if style > STYLE_BLOCK_LIMIT_BYTES:
        found.append(
            Finding(
                "error",
                "style",
                f"The <style> block is {style / 1024:.0f} KB, over the 16 KB Gmail keeps: it "
                "drops the whole block, @media rules included. Trim templates/email.css.",
            )
        )
    else:
        found.append(Finding("ok", "style", f"<style> {style / 1024:.1f} KB of 16 KB"))
    return found


def _links(scan: _EmailScan) -> list[Finding]:
    bad = [
        href
        for href in scan.links
        if not href.startswith("https://") and not href.lower().startswith(NON_WEB)
    ]
    if bad:
        stories = [scan.headline_links[href] for href in bad if href in scan.headline_links]
        return [
            Finding(
                "error",
                "links",
                f"{len(bad)} link(s) are not absolute https: {_short(bad)}. A mail client has "
                "no page to resolve a relative link against, and http links get warnings; "
                "fix the story's url or the template.",
                _short(list(dict.fromkeys(stories))),
            )
        ]
    return [Finding("ok", "links", f"{len(scan.links)} links, all absolute https")]


def _leftovers(parts: EmailParts) -> list[Finding]:
    left = sorted(set(LEFTOVER.findall(parts.subject + parts.html + parts.text)))
    if left:
        return [
            Finding(
                "error",
                "placeholders",
                f"Placeholders left unfilled: {', '.join(left)}; readers would see them as "
                "they are. Use only the template variables (reader.greeting, unsubscribe_url).",
            )
        ]
    return [Finding("ok", "placeholders", "no %%placeholder%% left")]


def _images(scan: _EmailScan, inline: Sequence[str] = ()) -> list[Finding]:
    found = []
    carried = {f"cid:{cid}" for cid in inline}
    for src, alt, heading in scan.images:
        where = src or "an image without src"
        if src not in carried and not (src or "").startswith("https://"):
            found.append(
                Finding(
                    "error",
                    "images",
                    f"Image {where} is not on https: clients block or warn about it; "
                    "serve it over https.",
                    heading,
                )
            )
        if alt is None:
            found.append(
                Finding(
                    "error",
                    "images",
                    f"Image {where} has no alt: with images off (the default in many "
                    "clients) readers see nothing, and screen readers read the file name. "
                    'Add alt text, or alt="" if it is decoration.',
                    heading,
                )
            )
        elif alt.strip() and heading and _words(alt) == _words(heading):
            found.append(
                Finding(
                    "warning",
                    "images",
                    f"Image {where} has alt {alt!r}, the same as the headline next to it: "
                    'screen readers read it twice. Describe the picture, or use alt="".',
                    heading,
                )
            )
    if not found:
        found.append(Finding("ok", "images", f"{len(scan.images)} images, https, with alt"))
    return found


def _subject(parts: EmailParts) -> list[Finding]:
    found = []
    subject, preheader = parts.subject.strip(), parts.preheader.strip()
    if not subject:
        found.append(Finding("error", "subject", "The subject is empty."))
    elif len(subject) > SUBJECT_MAX:
        found.append(
            Finding(
                "warning",
                "subject",
                f"The subject is {len(subject)} characters; clients cut it at about "
                f"{SUBJECT_MAX} (phones at about {SUBJECT_PHONE}). Put what matters first.",
            )
        )
    else:
        found.append(Finding("ok", "subject", f"subject {len(subject)} characters"))
    if not preheader:
        found.append(
            Finding(
                "warning",
                "preheader",
                "The preheader is empty: inboxes show the first words of the body instead.",
            )
        )
    elif not PREHEADER_MIN <= len(preheader) <= PREHEADER_MAX:
        found.append(
            Finding(
                "warning",
                "preheader",
                f"The preheader is {len(preheader)} characters; inboxes show "
                f"{PREHEADER_MIN}-{PREHEADER_MAX}, then cut it or fill in from the body.",
            )
        )
    else:
        found.append(Finding("ok", "preheader", f"preheader {len(preheader)} characters"))
    return found


def _text_part(parts: EmailParts) -> list[Finding]:
    if not parts.text.strip():
        return [
            Finding(
                "error",
                "text",
                "The plain-text part is empty: text-only clients and spam filters see nothing. "
                "Restore templates/digest.txt.",
            )
        ]
    missing = [url for url in parts.story_links if url not in parts.text]
    if missing:
        return [
            Finding(
                "error",
                "text",
                f"The plain-text part lacks {len(missing)} story link(s): {_short(missing)}. "
                "Every story in the HTML must be reachable from the text too.",
            )
        ]
    return [Finding("ok", "text", f"text part carries all {len(parts.story_links)} story links")]


def _css(scan: _EmailScan) -> list[Finding]:
    css = "\n".join(scan.css)
    found = []
    for rule in css_rules():
        uses = len(rule.pattern.findall(css))
        if not uses:
            continue
        what = f"{rule.what} ({uses} use{'s' if uses > 1 else ''}) is ignored by "
        if rule.enhancement:
            message = f"{what}{', '.join(rule.clients)}, which show the email without it: fine"
        else:
            message = f"{what}{', '.join(rule.clients)}; {rule.fallback}."
        found.append(Finding("ok" if rule.enhancement else "warning", "css", message))
    if not found:
        found.append(Finding("ok", "css", "no CSS that major clients ignore"))
    return found


def has_errors(findings: Sequence[Finding]) -> bool:
    return any(f.level == "error" for f in findings)


def as_json(findings: Sequence[Finding]) -> list[dict[str, str]]:
    return [asdict(f) for f in findings]
