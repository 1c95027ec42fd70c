"""The readers' web app: sign-up, confirmation, the unsubscribe page, one-click and preferences.

Pages are plain HTML forms (no JavaScript, no cookies). The routes are the `readers`
blueprint; `create_app(config)` registers it over one config and transport, and is what tests
and `digest serve` use; `wsgi_app` is the entry for gunicorn behind a reverse proxy.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from zoneinfo import available_timezones

from flask import Blueprint, Flask, Response, current_app, g, render_template, request, url_for
from jinja2 import ChoiceLoader, FileSystemLoader
from sqlite_utils import Database

from .config import (
    PLACEHOLDER_SECRET,
    PROJECT_TEMPLATES,
    Config,
    is_placeholder_site,
    load_config,
)
from .errors import ConfigError, SubscriberError
from .message import ONE_CLICK
from .readers.preferences import (
    ReaderPage,
    open_reader_link,
    save_preferences,
    topic_choices,
    unsubscribe_by_link,
)
from .readers.signup import confirm, sign_up
from .store import open_db
from .tokens import BadTokenError
from .transports import Transport, make_transport
from .urls import PREVIEW_PATH, ReaderLinks

LOCAL_HOSTS = ("127.0.0.1", "localhost")
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


@functools.cache
def _zone_names() -> tuple[str, ...]:
    # Region/City names and UTC; the rest (GMT+0, localtime...) only clutter the list.
    return tuple(sorted(z for z in available_timezones() if "/" in z or z == "UTC"))


def time_zones(current: str) -> tuple[str, ...]:
    """The time zones a form offers, with the reader's own kept even if it is an odd one."""
    zones = _zone_names()
    return zones if current in zones else (current, *zones)


def check_secret_for_host(config: Config, host: str | None) -> None:
    """Refuse the shipped placeholder secret except for a try-out on this machine.

    `host` None means the app faces the world (gunicorn), where the placeholder never goes.
    Loopback alone is not enough: production sits on 127.0.0.1 behind a proxy, so the site
    must also still be a placeholder one (see `config.is_placeholder_site`).
    """
    if config.secret_key == PLACEHOLDER_SECRET and (
        host not in LOCAL_HOSTS or not is_placeholder_site(config)
    ):
        raise ConfigError(
            "The secret key is still the shipped placeholder, so anyone could forge "
            "unsubscribe links; set DIGEST_SECRET_KEY to a long random value before serving "
            f"on {host or 'a public address'} for {config.site.url} (only a try-out on "
            "127.0.0.1 with an example or localhost site.url may use the placeholder)."
        )


def create_app(config: Config, transport: Transport | None = None) -> Flask:
    """The Flask app over the config's database (opened per request; WAL lets sends run on).

    Confirmation emails go through `transport`, by default the one the config names.
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
    response.headers.update(SECURITY_HEADERS)
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


def _subscribe_page(form: dict, error: str = "", status: int = 200):
    return (
        render_template(
            "subscribe.html",
            form=form,
            error=error,
            topics=topic_choices(_db()),
            timezones=time_zones(form["timezone"]),
        ),
        status,
    )


def _reader_page(token: str, page: ReaderPage, notice: str = "", error: str = ""):
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
def _bad_link(error: BadTokenError):
    return render_template("bad_link.html", message=str(error)), 400


@readers.get("/")
@readers.get("/subscribe")
def subscribe_form():
    default = _config().newsletter(None)
    form = {
        "email": "",
        "name": "",
        "topics": [],
        "timezone": default.timezone,
        "newsletter": default.name,
    }
    return _subscribe_page(form)


@readers.post("/subscribe")
def subscribe():
    form = {
        "email": request.form.get("email", ""),
        "name": request.form.get("name", ""),
        "topics": request.form.getlist("topics"),
        "timezone": request.form.get("timezone", "UTC"),
        "newsletter": request.form.get("newsletter") or None,
    }
    try:
        sign_up(_db(), _config(), transport=_state().transport, **form)
    except (SubscriberError, ConfigError) as exc:
        return _subscribe_page(form, error=str(exc), status=400)
    # The same answer whatever sign_up did, so the form tells no one who is on the list.
    return render_template("subscribe_sent.html", email=form["email"].strip())


@readers.get("/confirm/<token>")
def confirm_link(token: str):
    config = _config()
    subscriber_id, newsletter, already = confirm(_db(), config, token)
    links = ReaderLinks(config, newsletter)
    return render_template(
        "confirmed.html",
        title=_title(newsletter),
        already=already,
        preferences=url_for(
            "readers.reader", token=links.reader_token(subscriber_id), _anchor="preferences"
        ),
    )


@readers.route(PREVIEW_PATH, methods=["GET", "POST"])
def preview_link():
    # The unsubscribe and preferences links of a preview or test send: they change nobody.
    return render_template("preview_link.html")


@readers.get("/u/<token>")
def reader(token: str):
    return _reader_page(token, open_reader_link(_db(), _config(), token))


@readers.post("/u/<token>")
def unsubscribe(token: str):
    one_click = request.form.get(ONE_CLICK_FIELD) == ONE_CLICK_VALUE
    page = unsubscribe_by_link(_db(), _config(), token, "one-click" if one_click else "form")
    # 200 and no redirect: RFC 8058 senders such as Gmail do not follow one.
    return render_template(
        "unsubscribed.html", token=token, page=page, title=_title(page.newsletter)
    )


@readers.post("/u/<token>/preferences")
def preferences(token: str):
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


def serve(config: Config, host: str = "127.0.0.1", port: int = 8025) -> None:
    """`digest serve`: the app on Werkzeug's threaded server, for one machine or a proxy."""
    check_secret_for_host(config, host)
    create_app(config).run(host=host, port=port, threaded=True, use_reloader=False)


@functools.cache
def _production_app() -> Flask:
    config = load_config(os.environ.get("DIGEST_CONFIG"))
    check_secret_for_host(config, None)
    return create_app(config)


def wsgi_app(environ, start_response):
    """WSGI entry for gunicorn: `gunicorn digest.web:wsgi_app`, config from DIGEST_CONFIG."""
    return _production_app()(environ, start_response)
