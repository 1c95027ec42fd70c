"""The editors' studio: a local web app showing exactly what every reader gets from the next send.

A thin Flask shell over `preview` (slots, variants, each reader's email), `lineup`, `checks`,
`stories` (pins and scores) and `report` (what came of a sent edition). It reads readers'
data and can send test emails, so it listens on loopback unless told otherwise, answers only
to a loopback Host (or a host name the editor listed: no DNS rebinding), and takes POSTs from
its own pages only. Pages
follow changes to the templates, the config and the store by polling `/live` for a
fingerprint of them; everything, script included, is served by the app.
"""

from __future__ import annotations

import hashlib
import ipaddress
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from flask import (
    Flask,
    Response,
    abort,
    current_app,
    g,
    jsonify,
    redirect,
    render_template,
    request,
)
from flask.typing import ResponseReturnValue
from jinja2 import FileSystemLoader
from sqlite_utils import Database

from .clock import parse_moment, utcnow
from .config import PROJECT_TEMPLATES, Config
from .delivery.holds import hold, hold_on, release
from .delivery.transports import Transport
from .edition.checks import as_json, has_errors
from .edition.edits import current_edits, edit_trail, edition_date, record_edit
from .edition.personalize import personalize, recipient_values
from .edition.render import Renderer
from .errors import ConfigError, DigestError, NotFoundError, TemplateError
from .feedback import charts
from .feedback.document import inline_svg, report_context
from .feedback.figures import report_figures
from .feedback.report import _percent as percent
from .feedback.report import edition_report, link_clicks
from .invocation import os_user
from .lineup import lineup
from .newsroom.stories import set_story_editorial
from .preview import (
    ReaderView,
    Target,
    VariantPlan,
    reader_target,
    reader_view,
    send_test,
    slot_variants,
    variant_target,
)
from .status import desk, newsletter_strip, strip_picture
from .store import open_db
from .urls import ReaderLinks
from .zones import check_timezone

STUDIO_PAGES = PROJECT_TEMPLATES / "pages" / "studio"
# Addresses a listening socket takes every interface with: never a Host a browser sends.
ANY_ADDRESS = ("0.0.0.0", "::", "")
TEST_SENDS_PER_MINUTE = 5
PAGE_CSP = (
    "default-src 'self'; img-src 'self' https: data:; style-src 'self' 'unsafe-inline'; "
    "frame-src 'self'; frame-ancestors 'self'; form-action 'self'; base-uri 'none'"
)
# The email itself: its own inline CSS and https images, never a script.
EMAIL_CSP = (
    "default-src 'none'; img-src https: data:; style-src 'unsafe-inline'; "
    "frame-ancestors 'self'; base-uri 'none'"
)


def is_loopback(host: str) -> bool:
    """Whether `host` is `localhost` or a loopback IP address, exactly (not `127.evil.example`)."""
    if host.casefold() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_hosts(listen_on: str, names: Iterable[str] = ()) -> frozenset[str]:
    """The Host names the studio answers to beside loopback: those listed, and the address it
    listens on when that is one address (a name a stranger's DNS points here is never one)."""
    hosts = {name.strip().casefold() for name in names if name.strip()}
    if listen_on not in ANY_ADDRESS and not is_loopback(listen_on):
        hosts.add(listen_on.casefold())
    return frozenset(hosts)


class RateLimit:
    """At most `limit` events in any `window` seconds (the test send: a few a minute)."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic):
        self.limit, self.window, self.clock = limit, window, clock
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def allow(self) -> bool:
        with self._lock:
            now = self.clock()
            while self._times and now - self._times[0] >= self.window:
                self._times.popleft()
            if len(self._times) >= self.limit:
                return False
            self._times.append(now)
            return True


@dataclass
class StudioState:
    """What every request shares: how to (re)load the config, the transport, and a cache."""

    load_config: Callable[[], Config]
    transport: Transport
    # Host names answered beside loopback (`--allowed-host`); empty: loopback only.
    allowed_hosts: frozenset[str] = frozenset()
    default_newsletter: str | None = None
    default_now: datetime | None = None
    test_sends: RateLimit = field(default_factory=lambda: RateLimit(TEST_SENDS_PER_MINUTE, 60.0))
    _config: tuple[str, Config] | None = None
    _cache: OrderedDict[tuple, Any] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def config(self) -> Config:
        """The config, read again when its file changed (a broken one raises ConfigError)."""
        key = _stat_key(self._config[1].source_path) if self._config else ""
        if self._config is None or self._config[0] != key:
            config = self.load_config()
            self._config = (_stat_key(config.source_path), config)
        return self._config[1]

    def fingerprint(self) -> str:
        """Changes whenever a template, the config file or the database changes."""
        parts = []
        try:
            config = self.config()
        except ConfigError as exc:
            return "config-error:" + hashlib.sha256(str(exc).encode()).hexdigest()[:16]
        parts.append(_stat_key(config.source_path))
        templates = config.templates_dir
        if templates.is_dir():
            for path in sorted(templates.rglob("*")):
                if path.is_file() and "pages" not in path.relative_to(templates).parts:
                    parts.append(f"{path}:{_stat_key(path)}")
        for suffix in ("", "-wal"):
            parts.append(_stat_key(Path(f"{config.db_path}{suffix}")))
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]

    def cached(self, key: tuple, make: Callable[[], Any]) -> Any:
        """One computation per fingerprint and request: the page, its email and its checks."""
        full = (self.fingerprint(), *key)
        with self._lock:
            if full in self._cache:
                self._cache.move_to_end(full)
                return self._cache[full]
        value = make()
        with self._lock:
            self._cache[full] = value
            while len(self._cache) > 64:
                self._cache.popitem(last=False)
        return value


def _stat_key(path: Path | None) -> str:
    if path is None:
        return "-"
    try:
        stat = path.stat()
    except OSError:
        return "missing"
    return f"{stat.st_mtime_ns}:{stat.st_size}"


def create_studio(
    load_config: Callable[[], Config],
    transport: Transport,
    *,
    allowed_hosts: frozenset[str] = frozenset(),
    newsletter: str | None = None,
    now: datetime | None = None,
    test_sends: RateLimit | None = None,
) -> Flask:
    """The studio app; `load_config` is called again whenever the config file changes."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 16 * 1024
    state = StudioState(load_config, transport, allowed_hosts, newsletter, now)
    if test_sends is not None:
        state.test_sends = test_sends
    app.extensions["studio"] = state
    app.jinja_loader = FileSystemLoader(STUDIO_PAGES)
    app.before_request(_guard)
    app.after_request(_headers)
    app.teardown_appcontext(_close_db)
    app.add_url_rule("/", view_func=front_page)
    app.add_url_rule("/email.html", view_func=email_html)
    app.add_url_rule("/email.txt", view_func=email_text)
    app.add_url_rule("/checks.json", view_func=checks_json)
    app.add_url_rule("/report", view_func=report_page)
    app.add_url_rule("/report.json", view_func=report_json)
    app.add_url_rule("/report/email", view_func=sent_email_page)
    app.add_url_rule("/report/email.html", view_func=sent_email_html)
    app.add_url_rule("/live", view_func=live)
    app.add_url_rule("/studio.<any(js, css):kind>", view_func=asset)
    app.add_url_rule("/stories/<int:story_id>", view_func=editorial, methods=["POST"])
    app.add_url_rule("/send-test", view_func=test_send, methods=["POST"])
    app.add_url_rule("/edition", view_func=edit_edition, methods=["POST"])
    app.add_url_rule("/hold", view_func=hold_slot, methods=["POST"])
    app.add_url_rule("/release", view_func=release_slot, methods=["POST"])
    return app


def _state() -> StudioState:
    return current_app.extensions["studio"]


def _db() -> Database:
    if "db" not in g:
        g.db = open_db(_state().config().db_path)
    return g.db


def _close_db(_error: BaseException | None) -> None:
    database = g.pop("db", None)
    if database is not None:
        database.close()


def _guard() -> None:
    """A loopback Host or a listed one only; POSTs only from the studio's own pages."""
    try:
        host = urlsplit(f"//{request.host}").hostname or ""
    except ValueError:
        host = ""
    if not (is_loopback(host) or host in _state().allowed_hosts):
        abort(
            403,
            "The studio answers only to a loopback address or a host name given with "
            "--allowed-host.",
        )
    if request.method == "POST":
        origin = request.headers.get("Origin")
        site = request.headers.get("Sec-Fetch-Site")
        if (origin and origin != request.host_url.rstrip("/")) or (site and site != "same-origin"):
            abort(403, "The studio takes changes only from its own pages.")


def _headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
    response.headers["X-Content-Type-Options"] = "nosniff"
    # Not no-referrer: under it Chromium sends `Origin: null` with the studio's own forms.
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response


def asset(kind: str) -> Response:
    """The studio's own script and style sheet: nothing comes from elsewhere."""
    mimetype = "text/javascript" if kind == "js" else "text/css"
    text = (STUDIO_PAGES / f"studio.{kind}").read_text(encoding="utf-8")
    return Response(text, mimetype=mimetype)


@dataclass(frozen=True)
class Query:
    """The parameters every studio URL takes: newsletter, now, and as=EMAIL or topics+timezone."""

    newsletter: str | None
    now: datetime
    as_email: str
    topics: tuple[str, ...]
    timezone: str
    given_now: str
    from_clock: bool = False

    @property
    def picks_variant(self) -> bool:
        return bool(self.as_email or self.timezone or self.topics)

    def key(self) -> tuple:
        return (self.newsletter, self.now, self.as_email, self.topics, self.timezone)

    def params(self, **changes: str) -> str:
        values = {
            "newsletter": self.newsletter or "",
            "now": self.given_now,
            "as": self.as_email,
            "topics": ";".join(self.topics),
            "timezone": self.timezone,
        } | changes
        return urlencode({k: v for k, v in values.items() if v})


def _query(args: Any) -> Query:
    state = _state()
    given_now = args.get("now", "").strip()
    if given_now:
        now = parse_moment(given_now, "now")
    else:
        # To the minute, so pages opened within one minute share their cached build.
        now = (state.default_now or utcnow()).replace(second=0)
    return Query(
        newsletter=args.get("newsletter") or state.default_newsletter,
        now=now,
        as_email=args.get("as", "").strip(),
        topics=tuple(t for t in args.get("topics", "").split(";") if t.strip()),
        timezone=args.get("timezone", "").strip(),
        given_now=given_now,
        from_clock=not given_now and state.default_now is None,
    )


def _target(query: Query) -> Target:
    db, config = _db(), _state().config()
    if query.as_email:
        return reader_target(db, config, query.newsletter, query.now, query.as_email)
    return variant_target(
        db, config, query.newsletter, query.now, query.topics, query.timezone or None
    )


def _view(query: Query) -> ReaderView:
    config = _state().config()

    def make() -> ReaderView:
        return reader_view(_db(), config, Renderer(config.templates_dir), _target(query))

    return _state().cached(("view", *query.key()), make)


def _error_details(exc: DigestError) -> dict[str, Any]:
    """File, line, message and the lines around it, for the error overlay."""
    details: dict[str, Any] = {"message": str(exc), "file": None, "line": None, "excerpt": []}
    if isinstance(exc, TemplateError) and exc.template:
        details |= {"file": exc.template, "line": exc.line}
        path = _state().config().templates_dir / exc.template
        if exc.line and path.is_file():
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
            first = max(exc.line - 3, 0)
            details["excerpt"] = [
                (n, text, n == exc.line)
                for n, text in enumerate(lines[first : exc.line + 2], first + 1)
            ]
    return details


def _page(template: str, query: Query | None, **context: Any) -> str:
    state = _state()
    try:
        newsletters = list(state.config().newsletters.values())
    except ConfigError:
        newsletters = []
    # The page's own address: a refused form answers with the page it came from.
    here = _back() if request.method == "POST" else request.full_path.rstrip("?")
    return render_template(
        template,
        query=query,
        newsletters=newsletters,
        version=state.fingerprint(),
        here=here,
        **context,
    )


def front_page() -> ResponseReturnValue:
    """`GET /`: the desk (every zone's next slot and its variants), or one variant."""
    return _front(request.args)


def _front(args: Any, problem: str = "") -> str:
    try:
        query = _query(args)
        if query.picks_variant:
            return _variant_page(query, problem)
        config = _state().config()
        plans = _plans(query)
        newsletter = config.newsletter(query.newsletter)
        strip = _state().cached(
            ("strip", *query.key()),
            lambda: strip_picture(
                newsletter_strip(_db(), config, newsletter.name, query.now),
                newsletter.name,
                query.now,
            ),
        )
        return _page(
            "index.html",
            query,
            plans=plans,
            desk=desk(_db(), config, plans, query.newsletter, query.now),
            newsletter=newsletter,
            database=config.db_path,
            problem=problem,
            picture=strip,
            draw=inline_svg,
        )
    except DigestError as exc:
        return _page("index.html", None, error=_error_details(exc))


def _plans(query: Query) -> list[VariantPlan]:
    config = _state().config()

    def make() -> list[VariantPlan]:
        renderer = Renderer(config.templates_dir)
        return slot_variants(_db(), config, renderer, query.newsletter, query.now)

    return _state().cached(("plans", *query.key()), make)


def _variant_page(query: Query, problem: str = "") -> str:
    view = _view(query)
    rows = _state().cached(("lineup", *query.key()), lambda: lineup(_db(), view.target))
    edition = edition_date(view.target.slot_at, view.target.timezone)
    newsletter = view.target.newsletter.name
    return _page(
        "variant.html",
        query,
        view=view,
        checks=view.checks(),
        rows=rows,
        config=_state().config(),
        sent=request.args.get("sent", ""),
        sent_where=request.args.get("where", ""),
        edition=edition,
        edits=current_edits(_db(), newsletter, edition),
        trail=edit_trail(_db(), newsletter, edition),
        hold=hold_on(_db(), newsletter, view.target.timezone, query.now),
        deadline=view.target.slot_at + timedelta(hours=view.target.newsletter.grace_hours),
        problem=problem,
    )


def _raw(part: str) -> Response:
    try:
        view = _view(_query(request.args))
    except DigestError as exc:
        return Response(str(exc) + "\n", status=422, mimetype="text/plain")
    if part == "html":
        response = Response(view.html, mimetype="text/html")
        response.headers["Content-Security-Policy"] = EMAIL_CSP
        return response
    return Response(view.text, mimetype="text/plain")


def email_html() -> Response:
    """`GET /email.html`: the HTML part exactly as sent, with inert reader links."""
    return _raw("html")


def email_text() -> Response:
    """`GET /email.txt`: the text part exactly as sent, with inert reader links."""
    return _raw("text")


def checks_json() -> ResponseReturnValue:
    """`GET /checks.json`: the checks of one variant, or of every variant of the next slot."""
    try:
        query = _query(request.args)
        plans = [] if query.picks_variant else _plans(query)
        views = [plan.view for plan in plans] or [_view(query)]
    except DigestError as exc:
        return jsonify({"error": _error_details(exc)}), 422
    variants = [
        {
            "slot_at": view.target.local_time,
            "timezone": view.target.timezone,
            "topics": list(view.target.topics),
            "reader": view.target.reader.email,
            "subject": view.subject,
            "preheader": view.preheader,
            "story_ids": list(view.edition.story_ids),
            "note": view.note,
            "errors": has_errors(findings := view.checks()),
            "checks": as_json(findings),
        }
        for view in views
    ]
    return jsonify({"ok": not any(v["errors"] for v in variants), "variants": variants})


def _report(query: Query, args: Any) -> dict[str, Any]:
    """`report.edition_report` for the query's newsletter and now, and `edition` or `last`."""
    edition = args.get("edition", "").strip()
    if edition and "last" in args:
        raise DigestError("Give edition=YYYY-MM-DD or last, not both.")
    return edition_report(_db(), _state().config(), query.newsletter, edition or None, query.now)


def _report_status(exc: DigestError) -> int:
    return 404 if isinstance(exc, NotFoundError) else 422


def report_page() -> ResponseReturnValue:
    """`GET /report`: what came of an edition, the numbers `digest report` prints."""
    try:
        query = _query(request.args)
        report = _report(query, request.args)
    except DigestError as exc:
        return _page("report.html", None, error=_error_details(exc)), _report_status(exc)
    pictures = _state().cached(
        ("pictures", *query.key(), report["edition"]),
        lambda: charts.pictures(report_figures(_db(), _state().config(), report)),
    )
    return _page(
        "report.html",
        query,
        **report_context(report, pictures, inline_svg),
        clickmap_url=lambda edition_id: "/report/email?" + query.params(edition_id=str(edition_id)),
    )


def report_json() -> ResponseReturnValue:
    """`GET /report.json`: the plain data of `digest report --json`."""
    try:
        return jsonify(_report(_query(request.args), request.args))
    except DigestError as exc:
        return jsonify({"error": _error_details(exc)}), _report_status(exc)


def _sent_edition() -> dict[str, Any]:
    """The sent edition `edition_id` names: its newsletter, subject, slot and email."""
    try:
        edition_id = int(request.args.get("edition_id", ""))
    except ValueError:
        raise DigestError("Give edition_id, the number of a sent edition.") from None
    row = (
        _db()
        .execute(
            """SELECT id, newsletter, slot_at, timezone, topics, subject, html FROM editions
           WHERE id = ? AND EXISTS (SELECT 1 FROM deliveries d WHERE d.edition_id = editions.id)""",
            [edition_id],
        )
        .fetchone()
    )
    if row is None:
        raise NotFoundError(f"No sent edition {edition_id}; the report lists the sent ones.")
    keys = ("id", "newsletter", "slot_at", "timezone", "topics", "subject", "html")
    return dict(zip(keys, row, strict=True))


def sent_email_page() -> ResponseReturnValue:
    """`GET /report/email?edition_id=N`: a sent edition's email, with its click map."""
    try:
        query = _query(request.args)
        edition = _sent_edition()
    except DigestError as exc:
        return _page("sent_email.html", None, error=_error_details(exc)), _report_status(exc)
    links = link_clicks(_db(), edition["id"])
    shares = {link["url"]: link for link in links if link["url"]}
    return _page(
        "sent_email.html", query, edition=edition, links=links, shares=shares, percent=percent
    )


def sent_email_html() -> Response:
    """`GET /report/email.html?edition_id=N`: the sent email's HTML, reader links inert."""
    try:
        edition = _sent_edition()
    except DigestError as exc:
        return Response(str(exc) + "\n", status=_report_status(exc), mimetype="text/plain")
    config = _state().config()
    inert = recipient_values("", ReaderLinks(config, edition["newsletter"]).preview_url())
    response = Response(personalize(edition["html"], inert), mimetype="text/html")
    response.headers["Content-Security-Policy"] = EMAIL_CSP
    return response


def live() -> Response:
    """`GET /live`: the fingerprint of templates, config and store; pages poll it."""
    return jsonify({"version": _state().fingerprint()})


def _back(default: str = "/") -> str:
    target = request.form.get("next", "")
    # Only a path on this app: never an open redirect. Browsers drop tabs and newlines and
    # read a backslash as `/`, so `/<tab>/evil.example` is `//evil.example`: no such characters.
    if any(ch < " " or ch in "\\\x7f" for ch in target):
        return default
    return target if target.startswith("/") and not target.startswith("//") else default


def _refused(problem: str) -> ResponseReturnValue:
    """The page the form came from, again, with what was wrong: nothing was changed."""
    back = urlsplit(_back())
    return _front(dict(parse_qsl(back.query)), problem), 422


def editorial(story_id: int) -> ResponseReturnValue:
    """`POST /stories/<id>` with action=pin|unpin|score (and score=N): the editor's choice."""
    action = request.form.get("action", "")
    try:
        if action in ("pin", "unpin"):
            set_story_editorial(_db(), str(story_id), pinned=action == "pin")
        elif action == "score":
            given = request.form.get("score", "").strip()
            try:
                score = float(given)
            except ValueError:
                return _refused(f"Score {given!r} is not a number; give one such as 7 or 2.5.")
            set_story_editorial(_db(), str(story_id), score=score)
        else:
            return _refused(f"Unknown action {action!r}: pin, unpin or score.")
    except DigestError as exc:
        return _refused(str(exc))
    return redirect(_back(), code=303)


def _who() -> str:
    return f"{os_user()} (studio)"


def edit_edition() -> ResponseReturnValue:
    """`POST /edition` with newsletter, edition (YYYY-MM-DD), action and value or story."""
    form = request.form
    try:
        newsletter = _state().config().newsletter(form.get("newsletter") or None).name
        record_edit(
            _db(),
            newsletter,
            form.get("edition", ""),
            form.get("action", ""),
            _who(),
            story=form.get("story"),
            value=form.get("value", ""),
        )
    except DigestError as exc:
        return _refused(str(exc))
    return redirect(_back(), code=303)


def hold_slot() -> ResponseReturnValue:
    """`POST /hold` with newsletter, and zone and until if given: `digest hold`."""
    form = request.form
    try:
        newsletter = _state().config().newsletter(form.get("newsletter") or None).name
        zone = form.get("zone", "").strip()
        until = form.get("until", "").strip()
        hold(
            _db(),
            newsletter,
            check_timezone(zone) if zone else None,
            parse_moment(until, "until") if until else None,
            _who(),
        )
    except DigestError as exc:
        return _refused(str(exc))
    return redirect(_back(), code=303)


def release_slot() -> ResponseReturnValue:
    """`POST /release` with newsletter, and zone if given: `digest release`."""
    form = request.form
    try:
        newsletter = _state().config().newsletter(form.get("newsletter") or None).name
        zone = form.get("zone", "").strip()
        release(_db(), newsletter, check_timezone(zone) if zone else None, _who())
    except DigestError as exc:
        return _refused(str(exc))
    return redirect(_back(), code=303)


def test_send() -> ResponseReturnValue:
    """`POST /send-test` with `to` and the view's parameters: a [TEST] copy, outside the ledger."""
    state = _state()
    query = _query(request.form)
    back = "/?" + query.params()
    if not state.test_sends.allow():
        return (
            f"Too many test sends: at most {TEST_SENDS_PER_MINUTE} a minute. Wait a moment.",
            429,
        )
    try:
        where = send_test(state.config(), state.transport, _view(query), request.form.get("to", ""))
    except DigestError as exc:
        return f"The test send did not go: {exc}", 400
    to = request.form.get("to", "").strip()
    return redirect(back + "&" + urlencode({"sent": to, "where": where}), code=303)


def serve_studio(
    load_config: Callable[[], Config],
    transport: Transport,
    host: str,
    port: int,
    *,
    allowed_host_names: Iterable[str] = (),
    newsletter: str | None = None,
    now: datetime | None = None,
) -> None:
    """`digest studio`: the app on Werkzeug's threaded server."""
    app = create_studio(
        load_config,
        transport,
        allowed_hosts=allowed_hosts(host, allowed_host_names),
        newsletter=newsletter,
        now=now,
    )
    # digest reads `.env` itself: Flask's tip to install python-dotenv would say it is ignored.
    app.run(host=host, port=port, threaded=True, use_reloader=False, load_dotenv=False)
