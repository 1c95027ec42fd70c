"""Read stories from RSS, Atom, JSON Feed, JSON Lines and CSV sources into the story store."""

from __future__ import annotations

import csv
import html
import io
import json
import math
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import feedparser
import nh3
from sqlite_utils import Database

from . import __version__
from .clock import parse_moment
from .errors import DigestError, SourceError
from .stories import upsert_stories

USER_AGENT = f"digest/{__version__}"
JSON_FEED_VERSION_PREFIX = "https://jsonfeed.org/version/"
ROW_REQUIRED_COLUMNS = ("url", "title", "published_at")
TRUE_WORDS = frozenset({"1", "true", "yes", "y", "t"})
FALSE_WORDS = frozenset({"", "0", "false", "no", "n", "f"})

# Block-level tags separate words; stripping them bare would glue "</p><p>" neighbours together.
_BLOCK_TAG = re.compile(
    r"<(?=/?(?:p|br|div|li|ul|ol|h[1-6]|blockquote|pre|hr|tr|td|th|table|section|article|"
    r"header|footer|figure|figcaption|dd|dt)\b)",
    re.IGNORECASE,
)
_TRAILING_PUNCTUATION = " ,;:.-–—"


class _Skip(Exception):
    """One item or row cannot become a story; the message says why."""


def teaser_from_html(html_text: str, max_chars: int = 300) -> str:
    """Plain text from an HTML fragment, cut at a word boundary to at most max_chars characters.

    Script and style content is dropped, tags removed, entities unescaped and whitespace
    collapsed; a cut text ends with "…" (counted in max_chars).
    """
    if max_chars < 1:
        raise ValueError("max_chars must be at least 1")
    text = _BLOCK_TAG.sub(" <", html_text)
    while True:
        plain = html.unescape(nh3.clean(text, tags=set(), clean_content_tags={"script", "style"}))
        # Feeds often escape their HTML twice, so unescaping can reveal markup again: strip until
        # a pass no longer shrinks the text (which also guarantees the loop ends).
        if len(plain) >= len(text):
            text = plain
            break
        text = plain
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return text
    limit = max_chars - 1
    space = text.rfind(" ", 0, limit + 1)
    head = text[:space] if space > 0 else text[:limit]
    return head.rstrip(_TRAILING_PUNCTUATION) + "…"


def read_source(source: str, *, timeout: float = 20.0) -> list[dict]:
    """The stories in one feed or story file (a path or an http(s) URL), ready to upsert.

    Items that cannot become stories are left out; `ingest_sources` reports them.
    Raises SourceError when the source cannot be read at all.
    """
    stories, _skipped = _read_source(source, timeout)
    return stories


@dataclass
class SourceResult:
    """What ingesting one source did."""

    source: str
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: list[str] = field(default_factory=list)
    error: str | None = None

    def summary(self) -> str:
        if self.error is not None:
            return f"{self.source}: FAILED: {self.error.removeprefix(f'{self.source}: ')}"
        return (
            f"{self.source}: {self.added} added, {self.updated} updated, "
            f"{self.unchanged} unchanged, {len(self.skipped)} skipped"
        )


@dataclass
class IngestReport:
    results: list[SourceResult] = field(default_factory=list)

    @property
    def failed(self) -> list[SourceResult]:
        return [result for result in self.results if result.error is not None]


def ingest_sources(db: Database, sources: Iterable[str], *, timeout: float = 20.0) -> IngestReport:
    """Read each source and upsert its stories; a source that fails does not stop the others."""
    report = IngestReport()
    for source in sources:
        try:
            stories, skipped = _read_source(source, timeout)
        except SourceError as exc:
            report.results.append(SourceResult(source=source, error=str(exc)))
            continue
        counts = upsert_stories(db, stories, source)
        report.results.append(
            SourceResult(
                source=source,
                added=counts.added,
                updated=counts.updated,
                unchanged=counts.unchanged,
                skipped=skipped,
            )
        )
    return report


def _read_source(source: str, timeout: float) -> tuple[list[dict], list[str]]:
    parts = urlsplit(source)
    is_url = parts.scheme.lower() in ("http", "https")
    if is_url:
        data = _fetch(source, timeout)
        suffix = PurePosixPath(parts.path).suffix.lower()
    elif "://" in source:
        raise SourceError(
            f"{source}: unsupported URL scheme {parts.scheme!r}; use an http(s) URL or a path"
        )
    else:
        data = _read_file(source)
        suffix = Path(source).suffix.lower()
    if suffix == ".jsonl":
        return _collect(_jsonl_lines(source, data), _story_from_jsonl_line, _line_name)
    if suffix == ".csv":
        return _collect(_csv_rows(source, data), _story_from_row, _line_name)
    start = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if start == b"{":
        return _parse_json_feed(source, data)
    if start == b"<":
        return _parse_xml_feed(source, data, base_url=source if is_url else None)
    raise SourceError(
        f"{source}: not a feed (expected RSS, Atom, JSON Feed, .jsonl or .csv); "
        "check that the source points at the feed itself"
    )


def _fetch(url: str, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()
    except urllib.error.HTTPError as exc:
        raise SourceError(
            f"{url}: HTTP {exc.code} {exc.reason}; check the URL and that the server is up"
        ) from None
    except TimeoutError:
        raise _timed_out(url, timeout) from None
    except urllib.error.URLError as exc:
        # A connect timeout arrives wrapped in URLError, a read timeout bare.
        if isinstance(exc.reason, TimeoutError):
            raise _timed_out(url, timeout) from None
        raise SourceError(
            f"{url}: cannot connect ({exc.reason}); check the URL and your network"
        ) from None
    except OSError as exc:
        raise SourceError(f"{url}: connection failed ({exc}); try again later") from None


def _timed_out(url: str, timeout: float) -> SourceError:
    return SourceError(
        f"{url}: no answer within {timeout:g}s; try again later or raise the timeout"
    )


def _read_file(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file; check the path") from None
    except IsADirectoryError:
        raise SourceError(f"{path}: is a directory; give the feed file inside it") from None
    except PermissionError:
        raise SourceError(f"{path}: permission denied; check the file's permissions") from None
    except OSError as exc:
        raise SourceError(f"{path}: cannot read ({exc.strerror}); check the path") from None


def _decode(source: str, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"{source}: not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None


# --- RSS and Atom -----------------------------------------------------------------------------


def _parse_xml_feed(source: str, data: bytes, base_url: str | None) -> tuple[list[dict], list[str]]:
    # feedparser's own sanitizer would drop markup from Atom type="html" titles, which must stay
    # literal; summaries go through nh3 here instead. A stream, because feedparser tries to open
    # bare bytes as a file name first. The content location resolves relative item links.
    headers = {"content-location": base_url} if base_url else {}
    parsed = feedparser.parse(io.BytesIO(data), sanitize_html=False, response_headers=headers)
    if not parsed.entries and not parsed.version and not parsed.bozo:
        raise SourceError(
            f"{source}: not a feed (no RSS or Atom elements; an HTML page?); "
            "point at the feed's own URL"
        )
    stories, skipped = _collect(enumerate(parsed.entries, start=1), _story_from_entry, _item_name)
    # feedparser recovers what it can from malformed XML; when nothing usable came out, the
    # parse error is the real story (a truncated download, say), not the skipped fragments.
    if parsed.bozo and not stories:
        raise SourceError(
            f"{source}: not a readable feed ({parsed.get('bozo_exception')}); "
            "check that it is well-formed RSS or Atom XML"
        )
    return stories, skipped


def _story_from_entry(entry: Mapping[str, Any]) -> dict:
    title = _plain(entry.get("title"))
    url = _require_url(entry.get("link"), "link")
    if not title:
        raise _Skip("no title")
    raw_date = entry.get("published") or entry.get("updated")
    parsed_date = entry.get("published_parsed") or entry.get("updated_parsed")
    if parsed_date is None:
        raise _Skip(f"unreadable date {raw_date!r}" if raw_date else "no date")
    if entry.get("summary"):
        summary_html = entry["summary"]
    else:
        summary_html = next((c.get("value", "") for c in entry.get("content") or []), "")
    author = (entry.get("author_detail") or {}).get("name") or entry.get("author")
    tags = entry.get("tags") or []
    return {
        "url": url,
        "guid": str(entry.get("id") or ""),
        "title": title,
        "summary": teaser_from_html(summary_html),
        "author": _plain(author),
        "category": _plain(tags[0].get("term")) if tags else "",
        "image_url": _entry_image(entry),
        "published_at": datetime(*parsed_date[:6]).replace(tzinfo=UTC),
        "score": None,
        "pinned": False,
    }


def _entry_image(entry: Mapping[str, Any]) -> str:
    candidates = [m.get("url") for m in entry.get("media_thumbnail") or []]
    candidates += [
        m.get("url")
        for m in entry.get("media_content") or []
        if m.get("medium") == "image" or str(m.get("type", "")).startswith("image/")
    ]
    candidates += [
        e.get("href")
        for e in entry.get("enclosures") or []
        if str(e.get("type", "")).startswith("image/")
    ]
    return next((url for url in map(_http_url, candidates) if url), "")


# --- JSON Feed --------------------------------------------------------------------------------


def _parse_json_feed(source: str, data: bytes) -> tuple[list[dict], list[str]]:
    try:
        feed = json.loads(_decode(source, data))
    except json.JSONDecodeError as exc:
        raise SourceError(f"{source}: invalid JSON ({exc}); fix the file or the feed") from None
    version = feed.get("version") if isinstance(feed, dict) else None
    if not (isinstance(version, str) and version.startswith(JSON_FEED_VERSION_PREFIX)):
        raise SourceError(
            f"{source}: JSON but not a JSON Feed (no version {JSON_FEED_VERSION_PREFIX}…); "
            "story rows belong in a .jsonl file"
        )
    items = feed.get("items")
    if not isinstance(items, list):
        raise SourceError(f"{source}: JSON Feed without an items list; check the feed")
    feed_authors = _json_feed_authors(feed)
    return _collect(
        enumerate(items, start=1),
        lambda item: _story_from_json_item(item, feed_authors),
        _item_name,
    )


def _json_feed_authors(obj: Mapping[str, Any]) -> list[Any]:
    # Version 1.1 has an authors list; 1.0 had a single author object.
    authors = obj.get("authors")
    if isinstance(authors, list):
        return authors
    return [obj["author"]] if isinstance(obj.get("author"), dict) else []


def _story_from_json_item(item: Any, feed_authors: list[Any]) -> dict:
    if not isinstance(item, dict):
        raise _Skip("not a JSON object")
    title = _plain(item.get("title"))
    url = _require_url(item.get("url"), "url")
    if not title:
        raise _Skip("no title")
    published_at = _parse_date(
        item.get("date_published") or item.get("date_modified"), "date_published"
    )
    # A JSON Feed item without authors inherits the feed's.
    authors = _json_feed_authors(item) or feed_authors
    author = next((a.get("name") for a in authors if isinstance(a, dict) and a.get("name")), "")
    tags = item.get("tags") if isinstance(item.get("tags"), list) else []
    summary = item.get("summary") or item.get("content_html") or item.get("content_text") or ""
    return {
        "url": url,
        "guid": str(item.get("id") or ""),
        "title": title,
        "summary": teaser_from_html(str(summary)),
        "author": _plain(author),
        "category": _plain(tags[0]) if tags else "",
        "image_url": _http_url(item.get("image")) or _http_url(item.get("banner_image")),
        "published_at": published_at,
        "score": None,
        "pinned": False,
    }


# --- Story rows: .jsonl and .csv --------------------------------------------------------------


def _jsonl_lines(source: str, data: bytes) -> list[tuple[int, str]]:
    lines = enumerate(_decode(source, data).splitlines(), start=1)
    return [(number, line) for number, line in lines if line.strip()]


def _story_from_jsonl_line(line: str) -> dict:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise _Skip(f"not valid JSON ({exc.msg})") from None
    return _story_from_row(row)


def _csv_rows(source: str, data: bytes) -> Iterable[tuple[int, Any]]:
    reader = csv.DictReader(io.StringIO(_decode(source, data), newline=""))
    if reader.fieldnames is None:
        raise SourceError(f"{source}: empty file; add a header row and story rows")
    header = [name.strip().lower() for name in reader.fieldnames]
    missing = [name for name in ROW_REQUIRED_COLUMNS if name not in header]
    if missing:
        raise SourceError(
            f"{source}: missing column(s) {', '.join(missing)}; "
            f"the header row must name {', '.join(ROW_REQUIRED_COLUMNS)}"
        )
    reader.fieldnames = header
    for row in reader:
        yield reader.line_num, row


def _story_from_row(row: Any) -> dict:
    if not isinstance(row, dict):
        raise _Skip("not a JSON object")
    url = _require_url(row.get("url"), "url")
    title = _plain(row.get("title"))
    if not title:
        raise _Skip("missing title")
    return {
        "url": url,
        "guid": _plain(row.get("guid")),
        "title": title,
        "summary": teaser_from_html(_text(row.get("summary"))),
        "author": _plain(row.get("author")),
        "category": _plain(row.get("category")),
        "image_url": _http_url(row.get("image_url")),
        "published_at": _parse_date(row.get("published_at"), "published_at"),
        "score": _parse_score(row.get("score")),
        "pinned": _parse_pinned(row.get("pinned")),
    }


def _parse_score(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise _Skip(f"score {value!r} is not a number")
    try:
        score = float(value)
    except (TypeError, ValueError):
        raise _Skip(f"score {value!r} is not a number") from None
    if not math.isfinite(score):
        raise _Skip(f"score {value!r} is not a finite number")
    return score


def _parse_pinned(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = _text(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise _Skip(f"pinned {value!r} is not true or false")


# --- Shared helpers ---------------------------------------------------------------------------


def _collect(
    numbered: Iterable[tuple[int, Any]],
    build: Callable[[Any], dict],
    name: Callable[[int, Any], str],
) -> tuple[list[dict], list[str]]:
    """The stories built from numbered items or rows, and a reason for each one skipped."""
    stories: list[dict] = []
    skipped: list[str] = []
    for number, raw in numbered:
        try:
            stories.append(build(raw))
        except _Skip as exc:
            skipped.append(f"{name(number, raw)}: {exc}")
    return stories, skipped


def _item_name(number: int, item: Any) -> str:
    title = _plain(item.get("title")) if isinstance(item, Mapping) else ""
    return f"item {number} ({title!r})" if title else f"item {number}"


def _line_name(number: int, _row: Any) -> str:
    return f"line {number}"


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _plain(value: Any) -> str:
    """Plain text as given, entities unescaped and whitespace collapsed; markup stays literal."""
    return " ".join(html.unescape(_text(value)).split())


def _http_url(value: Any) -> str:
    """The URL if it is an absolute http(s) URL, else ""."""
    url = _text(value).strip()
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return ""
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        return ""
    return url


def _require_url(value: Any, name: str) -> str:
    url = _http_url(value)
    if url:
        return url
    if not _text(value).strip():
        raise _Skip(f"missing {name}")
    raise _Skip(f"{name} {_text(value).strip()!r} is not an http(s) URL")


def _parse_date(value: Any, name: str) -> datetime:
    """An ISO 8601 time as aware UTC; a time without offset is taken as UTC."""
    if value is None or value == "":
        raise _Skip(f"missing {name}")
    if not isinstance(value, str):
        raise _Skip(f"{name} {value!r} is not an ISO 8601 time")
    try:
        return parse_moment(value, name)
    except DigestError as exc:
        raise _Skip(str(exc)) from None
