"""Arbitrary form fields and links sent to the readers' web app: every request is answered
with a page (a 4xx with the reason when refused), never a 500 or a traceback, and never
leaves a half-written row behind."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest.readers.subscribers import add_subscriber
from digest.store import open_db
from digest.urls import ReaderLinks
from digest.web import create_app

from helpers import add_stories, make_config, story

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Any text a browser could send (lone surrogates cannot be encoded in a request at all).
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=400)
# 308: Werkzeug merges a doubled slash (`/confirm//0`) by redirecting to the merged path.
ANSWERS = {200, 308, 400, 404, 405, 429}
SIGN_UP = {
    "email": st.one_of(TEXT, st.emails().map(str), st.sampled_from(["josé@example.com"])),
    "name": TEXT,
    "timezone": st.one_of(TEXT, st.sampled_from(["UTC", "Europe/London", "x" * 300])),
    "newsletter": st.one_of(TEXT, st.just("daily")),
    "topics": st.lists(st.one_of(TEXT, st.sampled_from(["world", "science"])), max_size=4),
}


@pytest.fixture
def site(tmp_path):
    config = make_config(tmp_path, signup={"per_client_per_hour": 10**6, "per_hour": 10**6})
    app = create_app(config)
    db = open_db(config.db_path)
    add_stories(db, story(1, category="world"), story(2, category="science"))
    ana = add_subscriber(db, "ana@example.com", "Ana")
    yield config, app.test_client(use_cookies=False), db, ana
    db.close()


def assert_answered(response) -> None:
    body = response.get_data(as_text=True)
    assert response.status_code in ANSWERS, body
    assert "Traceback" not in body
    if response.status_code == 400 and response.request.method != "HEAD":
        assert 'role="alert"' in body or "This link does not work" in body


def assert_consistent(db) -> None:
    """Every reader has a subscription, every subscription a reader, no request half done."""
    orphans = db.execute(
        """SELECT
             (SELECT COUNT(*) FROM subscribers s WHERE NOT EXISTS
                (SELECT 1 FROM subscriptions WHERE subscriber_id = s.id)),
             (SELECT COUNT(*) FROM subscriptions sub WHERE NOT EXISTS
                (SELECT 1 FROM subscribers WHERE id = sub.subscriber_id)),
             (SELECT COUNT(*) FROM signup_requests)"""
    ).fetchone()
    assert orphans == (0, 0, 0)


def row_counts(db) -> tuple[int, ...]:
    tables = ("subscribers", "subscriptions", "audit", "signup_requests", "signup_attempts")
    return tuple(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in tables)


@FUZZ
@given(st.fixed_dictionaries({}, optional=SIGN_UP))
def test_any_sign_up_form_is_answered_and_a_refused_one_writes_nothing(site, form):
    _config, client, db, _ana = site
    before = row_counts(db)
    response = client.post("/subscribe", data=form, buffered=True)
    assert_answered(response)
    if response.status_code != 200:
        assert row_counts(db) == before
    assert_consistent(db)


@FUZZ
@given(st.binary(max_size=600))
def test_any_raw_sign_up_body_is_answered(site, body):
    _config, client, db, _ana = site
    response = client.post(
        "/subscribe",
        data=body,
        content_type="application/x-www-form-urlencoded",
        buffered=True,
    )
    assert_answered(response)
    assert_consistent(db)


@FUZZ
@given(TEXT, st.sampled_from(["GET", "POST", "HEAD"]), st.sampled_from(["confirm", "u"]))
def test_any_link_is_answered_and_changes_no_one(site, token, method, route):
    _config, client, db, _ana = site
    before = row_counts(db)
    response = client.open(f"/{route}/{token}", method=method, data={"x": "y"})
    assert_answered(response)
    assert row_counts(db) == before


@FUZZ
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "timezone": SIGN_UP["timezone"],
            "topics": SIGN_UP["topics"],
            "newsletters": st.lists(st.one_of(TEXT, st.just("daily")), max_size=3),
        },
    )
)
def test_any_preferences_form_is_answered_and_keeps_the_reader_whole(site, form):
    config, client, db, ana = site
    token = ReaderLinks(config, "daily").reader_token(ana.id, ana.link_nonce)
    response = client.post(f"/u/{token}/preferences", data=form)
    assert_answered(response)
    assert_consistent(db)
    timezone = db.execute("SELECT timezone FROM subscribers WHERE id = ?", [ana.id]).fetchone()[0]
    assert len(timezone) < 100
