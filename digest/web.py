"""The readers' web app: sign-up, confirmation, unsubscribe, one-click, preferences, the archive.

Pages are plain HTML forms (no JavaScript, no cookies). The routes are the `readers`
blueprint, and `webhook`'s (SendGrid's Event Webhook) beside it; `create_app(config)`
registers them over one config and transport, and is what tests and `digest serve` use;
`digest.wsgi:app` is the entry for gunicorn behind a reverse proxy.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, render_template, request, url_for
from flask.typing import ResponseReturnValue
from jinja2 import ChoiceLoader, FileSystemLoader
from sqlite_utils import Database

from .archive.days import shown_days
from .archive.pages import long_date
from .archive.site import install_archive
from .config import (
    PROJECT_TEMPLATES,
    Config,
    NewsletterConfig,
    check_secret_for_serving,
    load_config,
)
from .delivery.message import ONE_CLICK
from .delivery.transports import Transport, make_transport
from .errors import ConfigError, SubscriberError
from .feedback.webhook import install_webhook
from .readers.preferences import (
    ReaderPage,
    keep_by_link,
    open_keep_link,
    open_reader_link,
    save_preferences,
    topic_choices,
    unsubscribe_by_link,
)
from .readers.signup import (
    Confirmation,
    SignUpLimitError,
    check_confirmation,
    confirm,
    process_signups,
    sign_up,
)
from .readers.welcome import send_welcome
from .schedule import describe_schedule
from .store import open_db
from .tokens import BadTokenError
from .urls import ARCHIVE_PATH, PREVIEW_PATH, ReaderLinks, archive_day_path, site_link
from .zones import offered_zones

log = logging.getLogger(__name__)
# RFC 8058's POST body, as mail providers send it: the List-Unsubscribe-Post header's value.
ONE_CLICK_FIELD, _, ONE_CLICK_VALUE = ONE_CLICK.partition("=")
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    # The page's URL carries the reader's token: never hand it to another site.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def time_zones(current: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The time zones a form offers, common ones first, with the reader's own kept even if it
    is an odd one (an alias the list leaves out)."""
    common, others = offered_zones()
    return (
        (common, others) if current in common or current in others else ((current, *common), others)
    )


def create_app(
    config: Config, transport: Transport | None = None, env: Mapping[str, str] | None = None
) -> Flask:
    """The Flask app over the config's database (opened per request; WAL lets sends run on).

    Confirmation emails go through `transport`, by default the one the config names; the
    Event Webhook's keys come from `env` (default: the process environment).
    """
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    app.extensions["digest"] = AppState(config, transport or make_transport(config))
    app.jinja_loader = ChoiceLoader(
        [
            FileSystemLoader(config.templates_dir / "pages"),
            FileSystemLoader(PROJECT_TEMPLATES / "pages"),
        ]
    )
    open_db(config.db_path).close()  # migrate once, before the first request
    app.teardown_appcontext(_close_db)
    app.after_request(_security_headers)
    app.register_blueprint(readers)
    install_archive(app, _db, _config)
    install_webhook(app, os.environ if env is None else env)
    return app


@dataclass(frozen=True)
class AppState:
    """What every request of one app shares: the config and the transport for confirmations."""

    config: Config
    transport: Transport


def _state() -> AppState:
    return current_app.extensions["digest"]


def _config() -> Config:
    return _state().config


def _db() -> Database:
    if "db" not in g:
        g.db = open_db(_config().db_path)
    return g.db


def _close_db(_error: BaseException | None) -> None:
    database = g.pop("db", None)
    if database is not None:
        database.close()


def _security_headers(response: Response) -> Response:
    # The archive sets its own cache and content policies (public pages, story pictures).
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


readers = Blueprint("readers", __name__)


@readers.app_context_processor
def _site() -> dict:
    config = _config()
    return {"site": config.site, "newsletters": list(config.newsletters.values())}


def _title(newsletter: str) -> str:
    # A newsletter since removed from the config still names itself on old links.
    known = _config().newsletters.get(newsletter)
    return known.title if known else newsletter


@dataclass(frozen=True)
class Offer:
    """What the sign-up page says of a newsletter: what it carries, when, its latest editions."""

    newsletter: NewsletterConfig
    when: str
    latest: list[tuple[str, str, str]]
    archive: str | None


def _offers() -> list[Offer]:
    db, config = _db(), _config()
    offers = []
    for newsletter in config.newsletters.values():
        latest = []
        archive = None
        if newsletter.archive:
            archive = site_link(config, f"{ARCHIVE_PATH}/{newsletter.name}/")
            latest = [
                (
                    site_link(config, archive_day_path(newsletter.name, d.day)),
                    long_date(d.day),
                    d.subject,
                )
                for d in shown_days(db, newsletter.name, 0, 3)
            ]
        when = describe_schedule(newsletter.schedule) + " in your time zone"
        offers.append(Offer(newsletter, when, latest, archive))
    return offers


def _subscribe_page(form: dict, error: str = "", status: int = 200) -> ResponseReturnValue:
    return (
        render_template(
            "subscribe.html",
            form=form,
            error=error,
            offers=_offers(),
            topics=topic_choices(_db()),
            timezones=time_zones(form["timezone"]),
        ),
        status,
    )


def _reader_page(
    token: str, page: ReaderPage, notice: str = "", error: str = ""
) -> ResponseReturnValue:
    html = render_template(
        "reader.html",
        token=token,
        page=page,
        title=_title(page.newsletter),
        notice=notice,
        error=error,
        topics=topic_choices(_db(), page.subscriber.topics),
        timezones=time_zones(page.subscriber.timezone),
    )
    return html, 400 if error else 200


@readers.app_errorhandler(BadTokenError)
def _bad_link(error: BadTokenError) -> ResponseReturnValue:
    return render_template("bad_link.html", message=str(error)), 400


@readers.errorhandler(500)
def _server_error(_error: Exception) -> ResponseReturnValue:
    # The log has the details; a reader gets no advice meant for the operator. Only the
    # readers' routes: the studio and the webhook answer their own users.
    return render_template("error.html"), 500


@readers.get("/")
@readers.get("/subscribe")
def subscribe_form() -> ResponseReturnValue:
    config = _config()
    # The archive's sign-up links name their newsletter; an unknown name falls back quietly.
    default = config.newsletters.get(request.args.get("newsletter", "")) or config.newsletter(None)
    form = {
        "email": "",
        "name": "",
        "topics": [],
        "timezone": default.timezone,
        "newsletter": default.name,
    }
    return _subscribe_page(form)


@readers.post("/subscribe")
def subscribe() -> ResponseReturnValue:
    form: dict[str, Any] = {
        "email": request.form.get("email", ""),
        "name": request.form.get("name", ""),
        "topics": request.form.getlist("topics"),
        "timezone": request.form.get("timezone", "UTC"),
        "newsletter": request.form.get("newsletter") or None,
    }
    try:
        sign_up(_db(), _config(), client=_client_address(), **form)
    except SignUpLimitError as exc:
        return _subscribe_page(form, error=str(exc), status=429)
    except SubscriberError as exc:
        return _subscribe_page(form, error=str(exc), status=400)
    # The same answer and the same work whatever the address's state, so the form tells no
    # one who is on the list; the queued request is handled once this answer has gone.
    response = current_app.make_response(
        render_template("subscribe_sent.html", email=form["email"].strip())
    )
    response.call_on_close(functools.partial(drain_signups, _state()))
    return response


def _client_address() -> str:
    """Who sent the request, for the flood limits: see `signup.proxies`."""
    proxies = _config().signup.proxies
    forwarded = request.access_route if request.headers.get("X-Forwarded-For") else []
    if proxies and len(forwarded) >= proxies:
        # Each proxy appends the address it saw; entries before those are the client's say.
        return forwarded[-proxies]
    return request.remote_addr or ""


def drain_signups(state: AppState) -> None:
    """Handle the queued sign-ups (emails go out here), on its own database connection."""
    db = open_db(state.config.db_path)
    try:
        process_signups(db, state.config, state.transport)
    except Exception:
        # After the answer has gone there is no one to show it to: log it; `digest run`
        # handles whatever is left in the queue.
        log.exception("handling queued sign-ups failed")
    finally:
        db.close()


def _confirmed_page(config: Config, found: Confirmation) -> ResponseReturnValue:
    links = ReaderLinks(config, found.newsletter)
    token = links.reader_token(found.subscriber.id, found.subscriber.link_nonce)
    return render_template(
        "confirmed.html",
        title=_title(found.newsletter),
        already=found.already,
        preferences=url_for("readers.reader", token=token, _anchor="preferences"),
    )


@readers.get("/confirm/<token>")
def confirm_page(token: str) -> ResponseReturnValue:
    # Mail scanners open links: opening one only shows the button.
    config = _config()
    found = check_confirmation(_db(), config, token)
    if found.already:
        return _confirmed_page(config, found)
    return render_template("confirm_button.html", token=token, title=_title(found.newsletter))


@readers.post("/confirm/<token>")
def confirm_link(token: str) -> ResponseReturnValue:
    config = _config()
    found = confirm(_db(), config, token)
    response = current_app.make_response(_confirmed_page(config, found))
    if not found.already:
        # Once the answer has gone, as with the confirmation email itself.
        response.call_on_close(functools.partial(welcome_reader, _state(), found))
    return response


def welcome_reader(state: AppState, found: Confirmation) -> None:
    """Send the welcome email of a confirmed reader (logged if it fails: no one to show it)."""
    try:
        send_welcome(
            state.config,
            state.transport,
            found.subscriber,
            state.config.newsletter(found.newsletter),
        )
    except Exception:
        log.exception("sending the welcome email failed")


@readers.get("/keep/<token>")
def keep_page(token: str) -> ResponseReturnValue:
    # Scanners and prefetchers open every link in an email: opening this one only shows the
    # button, so only a person pressing it keeps anyone.
    page = open_keep_link(_db(), _config(), token)
    return render_template("keep.html", token=token, page=page, title=_title(page.newsletter))


@readers.post("/keep/<token>")
def keep(token: str) -> ResponseReturnValue:
    page = keep_by_link(_db(), _config(), token, reader_link=False)
    return render_template("kept.html", page=page, title=_title(page.newsletter))


@readers.post("/u/<token>/resume")
def resume(token: str) -> ResponseReturnValue:
    page = keep_by_link(_db(), _config(), token, reader_link=True)
    notice = (
        f"{_title(page.newsletter)} will come to your inbox again from the next edition."
        if page.status == "active"
        else ""
    )
    return _reader_page(token, page, notice=notice)


@readers.route(PREVIEW_PATH, methods=["GET", "POST"])
def preview_link() -> ResponseReturnValue:
    # The unsubscribe and preferences links of a preview or test send: they change nobody.
    return render_template("preview_link.html")


@readers.get("/u/<token>")
def reader(token: str) -> ResponseReturnValue:
    return _reader_page(token, open_reader_link(_db(), _config(), token))


@readers.post("/u/<token>")
def unsubscribe(token: str) -> ResponseReturnValue:
    one_click = request.form.get(ONE_CLICK_FIELD) == ONE_CLICK_VALUE
    page = unsubscribe_by_link(_db(), _config(), token, "one-click" if one_click else "form")
    # 200 and no redirect: RFC 8058 senders such as Gmail do not follow one.
    return render_template(
        "unsubscribed.html", token=token, page=page, title=_title(page.newsletter)
    )


@readers.post("/u/<token>/preferences")
def preferences(token: str) -> ResponseReturnValue:
    db, config = _db(), _config()
    try:
        page = save_preferences(
            db,
            config,
            token,
            topics=request.form.getlist("topics"),
            timezone=request.form.get("timezone", ""),
            newsletters=request.form.getlist("newsletters"),
        )
    except SubscriberError as exc:
        return _reader_page(token, open_reader_link(db, config, token), error=str(exc))
    return _reader_page(token, page, notice="Your preferences are saved.")


# glibc's mallopt parameter for the most malloc arenas.
M_ARENA_MAX = -8


def few_malloc_arenas(arenas: int = 1) -> None:
    """Let this process's threads share `arenas` malloc arenas (glibc; elsewhere nothing).

    A threaded server starts a thread per connection, and glibc gives threads up to eight
    arenas per core, each keeping what was freed in it: the webhook's 768 KB posts and its
    processing cache, made by whichever thread took the post, grew the server by about that
    cache per arena (benchmarks/events.py: 159 MB at 400,000 events, 87 MB with one arena,
    no slower).
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    mallopt(M_ARENA_MAX, arenas)


def serve(config: Config, host: str = "127.0.0.1", port: int = 8025) -> None:
    """`digest serve`: the app on Werkzeug's threaded server, for one machine or a proxy."""
    check_secret_for_serving(config, host)
    few_malloc_arenas()
    # digest reads `.env` itself: Flask's tip to install python-dotenv would say it is ignored.
    app = create_app(config)
    app.run(host=host, port=port, threaded=True, use_reloader=False, load_dotenv=False)


def production_app(config_path: str | None = None) -> Flask:
    """The app gunicorn serves (`digest.wsgi:app`): config from DIGEST_CONFIG, secret checked."""
    config_path = config_path or os.environ.get("DIGEST_CONFIG")
    if not config_path:
        raise ConfigError(
            "DIGEST_CONFIG is not set: the web app needs the path of the digest.toml that "
            "`digest run` uses, e.g. DIGEST_CONFIG=/srv/digest/digest.toml."
        )
    config = load_config(config_path)
    check_secret_for_serving(config, None)
    return create_app(config)
