"""The archive in `digest serve`: its routes, validators (ETag, Last-Modified, 304s), public
cache headers, and a page for every error (400, 404, 410), never a 500 for bad input."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flask import Blueprint, Flask, Response, current_app, request
from flask.typing import ResponseReturnValue
from sqlite_utils import Database

from ..config import Config
from .pages import HTML, Archive, ArchivePageError, Page, parse_page_number

# Archive pages are the same for everyone: shared caches may keep them a few minutes.
CACHE_CONTROL = "public, max-age=300"
# Story pictures come from the newsroom's own hosts; nothing else is loaded.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

archive = Blueprint("archive", __name__, url_prefix="/archive")


@dataclass(frozen=True)
class ArchiveState:
    """How the archive's routes reach the app's per-request database and its config."""

    database: Callable[[], Database]
    config: Callable[[], Config]


def install_archive(
    app: Flask, database: Callable[[], Database], config: Callable[[], Config]
) -> None:
    """Serve the archive from `app`, over the app's per-request database and its config."""
    app.extensions["digest_archive"] = ArchiveState(database, config)
    app.register_blueprint(archive)


def _archive() -> Archive:
    state: ArchiveState = current_app.extensions["digest_archive"]
    return Archive(state.database(), state.config())


def _answer(page: Page) -> ResponseReturnValue:
    response = Response(page.body, content_type=page.content_type)
    response.set_etag(page.etag)
    if page.updated is not None:
        response.last_modified = page.updated
    response.headers["Cache-Control"] = CACHE_CONTROL
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response.make_conditional(request)


def _serve(make: Callable[[Archive], Page]) -> ResponseReturnValue:
    found = _archive()
    try:
        return _answer(make(found))
    except ArchivePageError as error:
        response = Response(found.error_page(error), status=error.status, content_type=HTML)
        response.headers["Cache-Control"] = "no-store"
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        return response


@archive.get("/")
def index() -> ResponseReturnValue:
    return _serve(lambda a: a.index())


@archive.get("/sitemap.xml")
def sitemap() -> ResponseReturnValue:
    return _serve(lambda a: a.sitemap())


@archive.get("/<name>/")
def newsletter(name: str) -> ResponseReturnValue:
    return _serve(lambda a: a.newsletter_page(name, parse_page_number(request.args.get("page"))))


@archive.get("/<name>/page/<number>/")
def newsletter_page(name: str, number: str) -> ResponseReturnValue:
    return _serve(lambda a: a.newsletter_page(name, parse_page_number(number)))


@archive.get("/<name>/feed.atom")
def feed(name: str) -> ResponseReturnValue:
    return _serve(lambda a: a.feed(name))


@archive.get("/<name>/topics/<topic>/feed.atom")
def topic_feed(name: str, topic: str) -> ResponseReturnValue:
    return _serve(lambda a: a.feed(name, topic))


@archive.get("/<name>/<day>/")
def day(name: str, day: str) -> ResponseReturnValue:
    return _serve(lambda a: a.day_page(name, day))


@archive.get("/<name>/<day>/<slug>/")
def variant(name: str, day: str, slug: str) -> ResponseReturnValue:
    return _serve(lambda a: a.variant_page(name, day, slug))


@archive.get("/<path:anything>")
def unknown(anything: str) -> ResponseReturnValue:
    return _serve(lambda a: a.page_at("/archive/" + anything))
