"""Read stories from RSS, Atom, JSON Feed, JSON Lines and CSV sources into the story store."""

from __future__ import annotations

import codecs
import csv
import html
import http.client
import io
import json
import math
import re
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import feedparser
import nh3
from sqlite_utils import Database

from .. import __version__
from ..clock import parse_moment, utcnow
from ..errors import DigestError, SourceError
from ..text import cut_at_word, one_line, without_controls
from .stories import upsert_stories

USER_AGENT = f"digest/{__version__}"
JSON_FEED_VERSION_PREFIX = "https://jsonfeed.org/version/"
ROW_REQUIRED_COLUMNS = ("url", "title", "published_at")
TRUE_WORDS = frozenset({"1", "true", "yes", "y", "t"})
FALSE_WORDS = frozenset({"0", "false", "no", "n", "f"})
# What one HTTP fetch may take, in all, and hold; digest.toml's [ingest] overrides both.
FETCH_TIMEOUT_SECONDS = 30.0
FETCH_MAX_BYTES = 20 * 1024 * 1024
_CHUNK_BYTES = 64 * 1024
# A publish time further ahead than this is a feed's mistake, not news: such an item would
# otherwise sit at the top of every edition until the date passes.
FUTURE_SLACK = timedelta(days=1)
EARLIEST_PUBLISHED = datetime(1970, 1, 1, tzinfo=UTC)
# Byte order marks, longest first (UTF-32's little-endian mark starts with UTF-16's).
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_XML_ENCODING = re.compile(r"""^\s*<\?xml[^>]*?\bencoding\s*=\s*["']([^"']*)["']""")

# Block-level tags separate words; stripping them bare would glue "</p><p>" neighbours together.
_BLOCK_TAG = re.compile(
    r"<(?=/?(?:p|br|div|li|ul|ol|h[1-6]|blockquote|pre|hr|tr|td|th|table|section|article|"
    r"header|footer|figure|figcaption|dd|dt)\b)",
    re.IGNORECASE,
)


class _Skip(Exception):
    """One item or row cannot become a story; the message says why."""


def teaser_from_html(html_text: str, max_chars: int = 300) -> str:
    """Plain text from an HTML fragment, cut at a word boundary to at most max_chars characters.

    Script and style content is dropped, tags removed, entities unescaped and whitespace
    collapsed; a cut text ends with "…" (counted in max_chars).
    """
    if max_chars < 1:
        raise ValueError("max_chars must be at least 1")
    text = _BLOCK_TAG.sub(" <", without_controls(html_text))
    while True:
        plain = html.unescape(nh3.clean(text, tags=set(), clean_content_tags={"script", "style"}))
        # Feeds often escape their HTML twice, so unescaping can reveal markup again: strip until
        # a pass no longer shrinks the text (which also guarantees the loop ends).
        if len(plain) >= len(text):
            text = plain
            break
        text = plain
    return cut_at_word(" ".join(text.split()), max_chars)


def read_source(
    source: str,
    *,
    timeout: float = FETCH_TIMEOUT_SECONDS,
    max_bytes: int = FETCH_MAX_BYTES,
    now: datetime | None = None,
) -> list[dict]:
    """The stories in one feed or story file (a path or an http(s) URL), ready to upsert.

    Items that cannot become stories are left out; `ingest_sources` reports them.
    Raises SourceError when the source cannot be read at all.
    """
    stories, _skipped = _read_source(source, timeout, max_bytes, now or utcnow())
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


def ingest_sources(
    db: Database,
    sources: Iterable[str],
    *,
    timeout: float = FETCH_TIMEOUT_SECONDS,
    max_bytes: int = FETCH_MAX_BYTES,
    now: datetime | None = None,
) -> IngestReport:
    """Read each source and upsert its stories; a source that fails does not stop the others.

    `timeout` bounds each HTTP fetch as a whole and `max_bytes` its body; items published
    more than a day after `now` (default: the clock) are skipped.
    """
    now = now or utcnow()
    report = IngestReport()
    for source in sources:
        try:
            stories, skipped = _read_source(source, timeout, max_bytes, now)
            counts = upsert_stories(db, stories, source)
        except SourceError as exc:
            report.results.append(SourceResult(source=source, error=str(exc)))
            continue
        except Exception as exc:
            # One source's surprise (a bug, a locked database) must not stop the others.
            report.results.append(
                SourceResult(
                    source=source,
                    error=f"{source}: unexpected {type(exc).__name__} ({exc}); nothing from "
                    "it was stored, the other sources went on: please report this",
                )
            )
            continue
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


def _read_source(
    source: str, timeout: float, max_bytes: int, now: datetime
) -> tuple[list[dict], list[str]]:
    parts = urlsplit(source)
    is_url = parts.scheme.lower() in ("http", "https")
    if is_url:
        data = _fetch(source, timeout, max_bytes)
        suffix = PurePosixPath(parts.path).suffix.lower()
    elif "://" in source:
        raise SourceError(
            f"{source}: unsupported URL scheme {parts.scheme!r}; use an http(s) URL or a path"
        )
    else:
        data = _read_file(source)
        suffix = Path(source).suffix.lower()
    text = _decode(source, data)
    if suffix == ".jsonl":
        return _collect(_jsonl_lines(text), _story_from_jsonl_line, _line_name, now)
    if suffix == ".csv":
        return _collect(_csv_rows(source, text), _story_from_row, _line_name, now)
    start = text.lstrip(" \t\r\n")[:1]
    if start == "{":
        return _parse_json_feed(source, text, now)
    if start == "<":
        return _parse_xml_feed(source, text, base_url=source if is_url else None, now=now)
    raise SourceError(
        f"{source}: not a feed (expected RSS, Atom, JSON Feed, .jsonl or .csv); "
        "check that the source points at the feed itself"
    )


def _fetch(url: str, timeout: float, max_bytes: int) -> bytes:
    """The body at url, read as a stream: all of it within `timeout` seconds, at most max_bytes.

    A socket timeout bounds each read, not the whole: a server trickling a byte at a time
    would hold the run forever. So a timer shuts the connection down when the time is up.
    """
    fetch = _Fetch()
    timer = threading.Timer(timeout, fetch.expire)
    timer.daemon = True
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    timer.start()
    try:
        with fetch.opener.open(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > max_bytes:
                raise _too_large(url, max_bytes)
            body = bytearray()
            while chunk := response.read1(_CHUNK_BYTES):
                body += chunk
                if len(body) > max_bytes:
                    raise _too_large(url, max_bytes)
    except urllib.error.HTTPError as exc:
        raise SourceError(
            f"{url}: HTTP {exc.code} {exc.reason}; check the URL and that the server is up"
        ) from None
    except (TimeoutError, http.client.HTTPException, OSError) as exc:
        if fetch.expired.is_set() or _is_timeout(exc):
            raise _timed_out(url, timeout) from None
        if isinstance(exc, urllib.error.URLError):
            raise SourceError(
                f"{url}: cannot connect ({exc.reason}); check the URL and your network"
            ) from None
        raise SourceError(f"{url}: connection failed ({exc}); try again later") from None
    finally:
        timer.cancel()
    if fetch.expired.is_set():
        # The shutdown ended the body early: what arrived is cut short.
        raise _timed_out(url, timeout)
    return bytes(body)


class _Fetch:
    """An opener that remembers its sockets, so a timer can cut them off at the deadline."""

    def __init__(self) -> None:
        self.expired = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        fetch = self

        class Connection(http.client.HTTPConnection):
            def connect(self) -> None:
                super().connect()
                fetch.track(self.sock)

        class SecureConnection(http.client.HTTPSConnection):
            def connect(self) -> None:
                super().connect()
                fetch.track(self.sock)

        class Handler(urllib.request.HTTPHandler):
            def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
                return self.do_open(Connection, req)

        class SecureHandler(urllib.request.HTTPSHandler):
            def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
                return self.do_open(SecureConnection, req)

        self.opener = urllib.request.build_opener(Handler, SecureHandler)

    def track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            if self.expired.is_set():
                _cut(sock)

    def expire(self) -> None:
        with self._lock:
            self.expired.set()
            for sock in self._sockets:
                _cut(sock)


def _cut(sock: socket.socket) -> None:
    # The plain socket's shutdown, also under TLS: it wakes a read blocked in another thread.
    with suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _is_timeout(exc: BaseException) -> bool:
    # A connect timeout arrives wrapped in URLError, a read timeout bare.
    return isinstance(exc, TimeoutError) or isinstance(getattr(exc, "reason", None), TimeoutError)


def _timed_out(url: str, timeout: float) -> SourceError:
    return SourceError(
        f"{url}: not fully read within {timeout:g}s; try again later or raise "
        "[ingest] timeout_seconds"
    )


def _too_large(url: str, max_bytes: int) -> SourceError:
    return SourceError(
        f"{url}: larger than {max_bytes / 1024 / 1024:g} MB; check that it is the feed, or raise "
        "[ingest] max_megabytes"
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
    """Every format's text: UTF-8, or UTF-16/32 with a byte order mark, or (XML only) the
    encoding its declaration names. A byte that is not valid there refuses the whole source:
    a file in another encoding is wrong throughout, not just where decoding happens to fail.
    """
    encoding = next((name for bom, name in _BOMS if data.startswith(bom)), None)
    if encoding is None:
        declared = _XML_ENCODING.match(data[:200].decode("latin-1"))
        encoding = declared.group(1) if declared else "utf-8"
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise SourceError(
                f"{source}: declares the unknown encoding {encoding!r}; save it as UTF-8"
            ) from None
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SourceError(
            f"{source}: not valid {encoding.removesuffix('-sig').upper()} text "
            f"(byte {exc.start}, line {line}); save it as UTF-8"
        ) from None


# --- RSS and Atom -----------------------------------------------------------------------------


def _parse_xml_feed(
    source: str, text: str, base_url: str | None, now: datetime
) -> tuple[list[dict], list[str]]:
    # feedparser's own sanitizer would drop markup from Atom type="html" titles, which must stay
    # literal; summaries go through nh3 here instead. A stream, because feedparser tries to open
    # bare bytes as a file name first. The content location resolves relative item links.
    # The text is already decoded (see _decode): feedparser gets it as UTF-8 and is told so,
    # rather than guessing again and falling back to Windows-1252 on a bad byte.
    data = _XML_ENCODING.sub(lambda m: m.group(0).replace(m.group(1), "utf-8"), text, count=1)
    headers = {"content-location": base_url} if base_url else {}
    parsed = feedparser.parse(
        io.BytesIO(data.encode("utf-8", "surrogatepass")),
        sanitize_html=False,
        response_headers=headers,
    )
    if not parsed.entries and not parsed.version and not parsed.bozo:
        raise SourceError(
            f"{source}: not a feed (no RSS or Atom elements; an HTML page?); "
            "point at the feed's own URL"
        )
    stories, skipped = _collect(
        enumerate(parsed.entries, start=1), _story_from_entry, _item_name, now
    )
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
        "guid": _plain(entry.get("id")),
        "title": title,
        "summary": teaser_from_html(_text(summary_html)),
        "author": _plain(author),
        "category": _plain(tags[0].get("term")) if tags else "",
        "image_url": _entry_image(entry),
        "published_at": datetime(*parsed_date[:6]).replace(tzinfo=UTC),
        "score": None,
        "pinned": None,
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


def _parse_json_feed(source: str, text: str, now: datetime) -> tuple[list[dict], list[str]]:
    try:
        feed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SourceError(f"{source}: invalid JSON ({exc}); fix the file or the feed") from None
    except RecursionError:
        raise SourceError(f"{source}: JSON nested too deeply; fix the file or the feed") from None
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
        now,
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
    title = _plain(_field(item, "title"))
    url = _require_url(_field(item, "url"), "url")
    if not title:
        raise _Skip("no title")
    published_at = _parse_date(
        item.get("date_published") or item.get("date_modified"), "date_published"
    )
    # A JSON Feed item without authors inherits the feed's.
    authors = _json_feed_authors(item) or feed_authors
    author = next(
        (a["name"] for a in authors if isinstance(a, dict) and isinstance(a.get("name"), str)), ""
    )
    tags = item.get("tags")
    if not isinstance(tags, list):
        tags = []
    category = next((tag for tag in tags if isinstance(tag, str) and tag.strip()), "")
    summary = next(
        (
            text
            for key in ("summary", "content_html", "content_text")
            if (text := _field(item, key))
        ),
        "",
    )
    return {
        "url": url,
        "guid": _plain(_field(item, "id")),
        "title": title,
        "summary": teaser_from_html(summary),
        "author": _plain(author),
        "category": _plain(category),
        "image_url": _http_url(item.get("image")) or _http_url(item.get("banner_image")),
        "published_at": published_at,
        "score": None,
        "pinned": None,
    }


# --- Story rows: .jsonl and .csv --------------------------------------------------------------


def _jsonl_lines(text: str) -> list[tuple[int, str]]:
    # Only "\n" ends a row (what JSON Lines says): str.splitlines would also split inside a
    # string at a vertical tab or U+2028, and name the wrong line.
    lines = enumerate(text.split("\n"), start=1)
    return [(number, line) for number, line in lines if line.strip()]


def _story_from_jsonl_line(line: str) -> dict:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise _Skip(f"not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise _Skip("JSON nested too deeply") from None
    return _story_from_row(row)


def _csv_rows(source: str, text: str) -> Iterable[tuple[int, Any]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        fieldnames = reader.fieldnames
    except csv.Error as exc:
        raise SourceError(f"{source}: unreadable header row ({exc}); fix the file") from None
    if fieldnames is None:
        raise SourceError(f"{source}: empty file; add a header row and story rows")
    header = [name.strip().lower() for name in fieldnames]
    missing = [name for name in ROW_REQUIRED_COLUMNS if name not in header]
    if missing:
        raise SourceError(
            f"{source}: missing column(s) {', '.join(missing)}; "
            f"the header row must name {', '.join(ROW_REQUIRED_COLUMNS)}"
        )
    reader.fieldnames = header
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # The csv module cannot go on after a broken row (a NUL byte, say): the rows
            # before it go in, the rest of the file is reported as one.
            yield reader.line_num, _Skip(f"unreadable from here on ({exc}); fix the file")
            return
        yield reader.line_num, row


def _story_from_row(row: Any) -> dict:
    if isinstance(row, _Skip):
        raise row
    if not isinstance(row, dict):
        raise _Skip("not a JSON object")
    url = _require_url(_field(row, "url"), "url")
    title = _plain(_field(row, "title"))
    if not title:
        raise _Skip("missing title")
    return {
        "url": url,
        "guid": _plain(_field(row, "guid")),
        "title": title,
        "summary": teaser_from_html(_field(row, "summary")),
        "author": _plain(_field(row, "author")),
        "category": _plain(_field(row, "category")),
        "image_url": _http_url(_field(row, "image_url")),
        "published_at": _parse_date(row.get("published_at"), "published_at"),
        "score": _parse_score(row.get("score")),
        "pinned": _parse_pinned(row.get("pinned")),
    }


def _parse_score(value: Any) -> float | None:
    """A number, or None when the row carries no score (it then keeps the stored one)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _Skip(f"score {value!r} is not a number")
    try:
        score = float(value)
    except (ValueError, OverflowError):
        raise _Skip(f"score {value!r} is not a number") from None
    if not math.isfinite(score):
        raise _Skip(f"score {value!r} is not a finite number")
    return score


def _parse_pinned(value: Any) -> bool | None:
    """True or false, or None when the row carries no pin (it then keeps the stored one)."""
    if isinstance(value, bool):
        return value
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    word = value.strip().lower() if isinstance(value, str) else repr(value)
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
    now: datetime,
) -> tuple[list[dict], list[str]]:
    """The stories built from numbered items or rows, and a reason for each one skipped.

    An item must be published between 1970 and a day after `now`, and name a guid and url
    no earlier item of the source named: the store would merge the two into one story.
    """
    stories: list[dict] = []
    skipped: list[str] = []
    seen: dict[tuple[str, str], str] = {}
    for number, raw in numbered:
        label = name(number, raw)
        try:
            story = build(raw)
            _check_published(story["published_at"], now)
            keys = [("url", story["url"])] + ([("guid", story["guid"])] if story["guid"] else [])
            for key in keys:
                if key in seen:
                    raise _Skip(f"same {key[0]} {key[1]!r} as {seen[key]}; only the first is read")
        except _Skip as exc:
            skipped.append(f"{label}: {exc}")
            continue
        except Exception as exc:
            # One item's surprise must not stop the others; its reason names what went wrong.
            skipped.append(f"{label}: cannot be read ({type(exc).__name__}: {exc})")
            continue
        seen.update(dict.fromkeys(keys, label.split(" (")[0]))
        stories.append(story)
    return stories, skipped


def _check_published(published_at: datetime, now: datetime) -> None:
    if published_at > now + FUTURE_SLACK:
        raise _Skip(
            f"published {published_at:%Y-%m-%d %H:%M} UTC, more than a day ahead; "
            "fix the date at the source"
        )
    if published_at < EARLIEST_PUBLISHED:
        raise _Skip(
            f"published {published_at.date().isoformat()}, before 1970; fix the date at the source"
        )


def _item_name(number: int, item: Any) -> str:
    title = item.get("title") if isinstance(item, Mapping) else None
    title = _plain(title) if isinstance(title, str) else ""
    return f"item {number} ({title!r})" if title else f"item {number}"


def _line_name(number: int, _row: Any) -> str:
    return f"line {number}"


def _field(row: Mapping[str, Any], key: str) -> str:
    """A text field of a JSON object or CSV row: a string, a number written out, or ""."""
    value = row.get(key)
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    kind = {bool: "true/false", list: "a list", dict: "an object"}.get(type(value), "not text")
    raise _Skip(f"{key} is {kind}, not text")


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _plain(value: Any) -> str:
    """Plain text as given, entities unescaped and whitespace collapsed; markup stays literal."""
    return one_line(html.unescape(_text(value)))


def _http_url(value: Any) -> str:
    """The URL if it is an absolute http(s) URL, else ""."""
    if not isinstance(value, str):
        return ""
    url = value.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
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
