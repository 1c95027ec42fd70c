"""The Event Webhook receiver: signatures checked on the exact bytes, stored before answering."""

from __future__ import annotations

import itertools
import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sendgrid.helpers.eventwebhook import EventWebhook
from werkzeug.test import Client

from digest import web
from digest.clock import utcnow
from digest.delivery.transports.outbox import OutboxTransport
from digest.errors import ConfigError
from digest.feedback.events import pending_posts, process_pending, store_post
from digest.feedback.webhook import (
    KEYS_VARIABLE,
    MAX_POST_BYTES,
    SIGNATURE_HEADER,
    STORED_HEADERS,
    TIMESTAMP_HEADER,
    load_public_keys,
    verify_signature,
)
from digest.web import create_app

from sendgrid_server import event_bodies, make_webhook_key, sign_event_post

# SendGrid's published test vector, from its official library's unit test
# (sendgrid/sendgrid-python, test/unit/test_eventwebhook.py): a real key, signature,
# timestamp and body. The body is compact, sorted JSON ending in CRLF.
VECTOR_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe6"
    "2gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g=="
)
VECTOR_SIGNATURE = (
    "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15Tlu"
    "LtEZtM="
)
VECTOR_TIMESTAMP = "1600112502"
VECTOR_BODY = (
    json.dumps(
        [
            {
                "email": "hello@world.com",
                "event": "dropped",
                "reason": "Bounced Address",
                "sg_event_id": "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",
                "sg_message_id": (
                    "LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0"
                ),
                "smtp-id": "<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>",
                "timestamp": 1600112492,
            }
        ],
        sort_keys=True,
        separators=(",", ":"),
    )
    + "\r\n"
).encode()
PATH = "/webhooks/sendgrid"


@pytest.fixture
def vector_keys():
    return load_public_keys(VECTOR_KEY)


def test_sendgrids_published_test_vector_verifies(vector_keys):
    assert verify_signature(vector_keys, VECTOR_BODY, VECTOR_SIGNATURE, VECTOR_TIMESTAMP)
    # The official helper agrees on the same bytes.
    helper = EventWebhook(VECTOR_KEY)
    assert helper.verify_signature(VECTOR_BODY.decode(), VECTOR_SIGNATURE, VECTOR_TIMESTAMP)


def test_the_test_vector_fails_without_its_trailing_crlf(vector_keys):
    body = VECTOR_BODY.removesuffix(b"\r\n")
    assert not verify_signature(vector_keys, body, VECTOR_SIGNATURE, VECTOR_TIMESTAMP)


@pytest.mark.parametrize("position", [0, 40, len(VECTOR_BODY) - 3])
def test_one_changed_byte_of_the_body_fails(vector_keys, position):
    body = bytearray(VECTOR_BODY)
    body[position] ^= 0x01
    assert not verify_signature(vector_keys, bytes(body), VECTOR_SIGNATURE, VECTOR_TIMESTAMP)


def test_one_changed_digit_of_the_timestamp_fails(vector_keys):
    assert not verify_signature(vector_keys, VECTOR_BODY, VECTOR_SIGNATURE, "1600112503")


def test_a_body_reserialized_from_parsed_json_fails(vector_keys):
    reserialized = json.dumps(json.loads(VECTOR_BODY)).encode()
    assert not verify_signature(vector_keys, reserialized, VECTOR_SIGNATURE, VECTOR_TIMESTAMP)


def test_a_signature_from_another_key_fails(vector_keys):
    private, _ = make_webhook_key()
    signature = sign_event_post(private, VECTOR_TIMESTAMP, VECTOR_BODY)
    assert not verify_signature(vector_keys, VECTOR_BODY, signature, VECTOR_TIMESTAMP)


@pytest.mark.parametrize("signature", ["", "not base64!", "bm90IGEgc2lnbmF0dXJl"])
def test_a_malformed_signature_fails_without_an_error(vector_keys, signature):
    assert not verify_signature(vector_keys, VECTOR_BODY, signature, VECTOR_TIMESTAMP)


def test_during_a_rotation_either_key_verifies():
    old, old_public = make_webhook_key()
    new, new_public = make_webhook_key()
    keys = load_public_keys(f"{old_public}, {new_public}")
    for private in (old, new):
        assert verify_signature(keys, b"[]", sign_event_post(private, "1", b"[]"), "1")


@pytest.mark.parametrize(
    "value", ["not-a-key", "MFkwEwYHKoZIzj0CAQYI", "-----BEGIN PUBLIC KEY-----"]
)
def test_a_bad_key_in_the_environment_is_refused_naming_the_variable(value):
    with pytest.raises(ConfigError, match=f"{KEYS_VARIABLE} key number 1 is not an ECDSA P-256"):
        load_public_keys(value)


# The receiver, through Flask's test client


@pytest.fixture
def key_pair():
    return make_webhook_key()


@pytest.fixture
def client(config, key_pair):
    app = create_app(config, OutboxTransport(config), env={KEYS_VARIABLE: key_pair[1]})
    return app.test_client()


def signed(private, body: bytes, timestamp: str | None = None) -> dict:
    timestamp = str(int(time.time())) if timestamp is None else timestamp
    return {
        "data": body,
        "content_type": "application/json",
        "headers": {
            SIGNATURE_HEADER: sign_event_post(private, timestamp, body),
            TIMESTAMP_HEADER: timestamp,
        },
    }


def post(client, **request):
    """POST as a WSGI server does it: the response is closed once sent, which runs what the
    app left for after the answer (processing)."""
    response = client.post(PATH, **request)
    response.close()
    return response


def stored_posts(db) -> int:
    return db.execute("SELECT COUNT(*) FROM webhook_posts").fetchone()[0]


def event(**fields) -> dict:
    return {
        "email": "someone@example.com",
        "event": "delivered",
        "timestamp": 1700000000,
        "sg_event_id": "id-1",
        "sg_message_id": "msg.filter-1",
    } | fields


def test_without_a_configured_key_the_route_answers_404(config, db, key_pair):
    client = create_app(config, OutboxTransport(config), env={}).test_client()
    response = post(client, **signed(key_pair[0], b"[]"))
    assert response.status_code == 404
    assert stored_posts(db) == 0


def test_a_post_without_a_signature_answers_403_and_stores_nothing(client, db):
    response = post(client, data=b"[]", content_type="application/json")
    assert response.status_code == 403
    assert stored_posts(db) == 0


def test_a_post_signed_by_an_unknown_key_answers_403_and_stores_nothing(client, db):
    stranger, _ = make_webhook_key()
    assert post(client, **signed(stranger, b"[]")).status_code == 403
    assert stored_posts(db) == 0


def test_a_post_whose_body_changed_after_signing_answers_403(client, db, key_pair):
    request = signed(key_pair[0], json.dumps([event()]).encode())
    request["data"] = json.dumps([event(event="spamreport")]).encode()
    assert post(client, **request).status_code == 403
    assert stored_posts(db) == 0


def test_a_signed_post_is_stored_with_its_headers_and_answered_2xx(client, db, key_pair):
    body = event_bodies([event()])[0]
    response = post(client, **signed(key_pair[0], body))
    assert response.status_code == 204
    row = db.execute("SELECT headers, size, received_at FROM webhook_posts").fetchone()
    assert json.loads(row[0])[TIMESTAMP_HEADER].isdigit()
    assert row[1] == len(body)


def test_the_post_is_processed_after_the_answer_and_its_raw_body_let_go(client, db, key_pair):
    post(client, **signed(key_pair[0], json.dumps([event()]).encode()))
    assert pending_posts(db) == []
    row = db.execute("SELECT body, events, new_events FROM webhook_posts").fetchone()
    assert row == (None, 1, 1)
    assert db.execute("SELECT event FROM events").fetchall() == [("delivered",)]


def test_a_768_kb_post_is_taken_though_the_forms_limit_is_64_kb(client, db, key_pair):
    events = [event(sg_event_id=f"id-{n}", timestamp=1700000000 + n) for n in range(8000)]
    [body, *rest] = event_bodies(events)
    assert 700_000 < len(body) <= 768 * 1024 and rest
    assert post(client, **signed(key_pair[0], body)).status_code == 204
    assert db.execute("SELECT size FROM webhook_posts").fetchone()[0] == len(body)


def test_a_post_over_the_receivers_limit_answers_413_and_stores_nothing(client, db, key_pair):
    body = b"[" + b" " * MAX_POST_BYTES + b"]"
    assert post(client, **signed(key_pair[0], body)).status_code == 413
    assert stored_posts(db) == 0


def test_a_valid_batch_with_odd_events_is_taken_and_its_good_events_kept(client, db, key_pair):
    items = [
        event(sg_event_id="good-1"),
        "not an object",
        {"event": "delivered"},
        event(sg_event_id="bad-time", timestamp="yesterday"),
        event(sg_event_id="future-kind", event="a_kind_added_next_year"),
        event(sg_event_id="good-2", event="open", sg_machine_open=True),
    ]
    response = post(client, **signed(key_pair[0], json.dumps(items).encode()))
    assert response.status_code == 204
    kept = [row[0] for row in db.execute("SELECT sg_event_id FROM events ORDER BY id")]
    assert kept == ["good-1", "future-kind", "good-2"]
    note = db.execute("SELECT note FROM webhook_posts").fetchone()[0]
    assert note == "3 item(s) were not usable events"


def test_a_signed_body_that_is_not_json_is_stored_and_answered_2xx(client, db, key_pair):
    # SendGrid signed it: a 4xx would only make it retry for 24 hours.
    assert post(client, **signed(key_pair[0], b"{oops")).status_code == 204
    row = db.execute("SELECT events, note, processed_at IS NOT NULL FROM webhook_posts").fetchone()
    assert row[0] == 0 and row[1].startswith("not JSON") and row[2]


def test_a_post_that_cannot_be_stored_is_never_answered_2xx(client, db, key_pair):
    db.execute(
        """CREATE TRIGGER full_disk BEFORE INSERT ON webhook_posts
           BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"""
    )
    client.application.testing = False
    response = post(client, **signed(key_pair[0], json.dumps([event()]).encode()))
    assert response.status_code == 500
    assert stored_posts(db) == 0


def test_the_same_post_twice_is_answered_twice_stored_once_and_counted_once(client, db, key_pair):
    body = json.dumps([event(), event(event="open", sg_event_id="id-2")]).encode()
    for _ in range(2):
        assert post(client, **signed(key_pair[0], body)).status_code == 204
    assert stored_posts(db) == 1
    assert db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 2
    assert [r[0] for r in db.execute("SELECT new_events FROM webhook_posts ORDER BY id")] == [2]


@pytest.mark.parametrize(
    "moment",
    [
        lambda now: "abc",
        lambda now: "-1",
        lambda now: "1e9",
        lambda now: str(now - 5 * 86400),  # a replay re-signed five days later
        lambda now: str(now + 3600),
    ],
)
def test_a_post_whose_timestamp_is_not_recent_unix_seconds_is_refused(client, db, key_pair, moment):
    # Each properly signed over its own timestamp.
    moment = moment(int(time.time()))
    body = json.dumps([event()]).encode()
    assert post(client, **signed(key_pair[0], body, moment)).status_code == 403
    assert stored_posts(db) == 0


def test_a_post_signed_a_day_ago_is_still_taken(client, db, key_pair):
    # SendGrid retries a post for 24 hours.
    moment = str(int(time.time()) - 86400)
    assert post(client, **signed(key_pair[0], b"[]", moment)).status_code == 204


def test_only_the_needed_headers_are_stored_with_a_post(client, db, key_pair):
    request = signed(key_pair[0], b"[]")
    request["headers"] |= {"Authorization": "Bearer secret", "Cookie": "session=secret"}
    assert post(client, **request).status_code == 204
    headers = json.loads(db.execute("SELECT headers FROM webhook_posts").fetchone()[0])
    assert "secret" not in json.dumps(headers)
    assert {SIGNATURE_HEADER, TIMESTAMP_HEADER} <= set(headers) <= set(STORED_HEADERS)


def test_a_signed_body_nested_too_deep_is_given_up_at_once_not_retried(client, db, key_pair):
    assert post(client, **signed(key_pair[0], b"[" * 200_000)).status_code == 204
    assert pending_posts(db) == []
    note, failed, body = db.execute(
        "SELECT note, failed_at IS NOT NULL, body FROM webhook_posts"
    ).fetchone()
    assert note.startswith("not JSON (RecursionError") and failed and body is None
    assert process_pending(db).failed_posts == []


def test_an_unsigned_large_post_is_refused_without_being_held_in_memory(client, db):
    import tracemalloc

    body = b"[" + b" " * (MAX_POST_BYTES - 2) + b"]"
    headers = {SIGNATURE_HEADER: "bm90IGEgc2lnbmF0dXJl", TIMESTAMP_HEADER: str(int(time.time()))}
    tracemalloc.start()
    try:
        response = post(client, data=body, content_type="application/json", headers=headers)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert response.status_code == 403
    assert peak < 4 * 1024 * 1024, f"{peak} bytes held for an unsigned post"


def test_processing_is_idempotent_when_asked_again(client, db, key_pair):
    post(client, **signed(key_pair[0], json.dumps([event()]).encode()))
    assert process_pending(db).posts == 0
    assert db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 1


def test_the_wsgi_entry_serves_the_webhook_with_the_key_from_the_environment(
    tmp_path, monkeypatch, db, key_pair
):
    (tmp_path / "digest.toml").write_text(
        f'[site]\nurl = "https://news.test"\n[transport]\nsecret_key = "{"s" * 40}"\n'
        '[newsletters.daily]\ntitle = "Test Daily"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("DIGEST_CONFIG", str(tmp_path / "digest.toml"))
    monkeypatch.delenv("DIGEST_DB", raising=False)
    monkeypatch.setenv(KEYS_VARIABLE, key_pair[1])
    response = Client(web.production_app()).post(PATH, **signed(key_pair[0], b"[]"))
    response.close()
    assert response.status_code == 204
    assert stored_posts(db) == 1


# Hostile but signed: whatever the items, the post is processed and the good events kept.

SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
FIELD_VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner)
)
EVENT_FIELDS = (
    "email",
    "event",
    "timestamp",
    "sg_event_id",
    "sg_message_id",
    "type",
    "url",
    "reason",
    "status",
    "sg_machine_open",
    "digest_delivery",
    "digest_edition",
    "digest_batch",
    "digest_subscriber",
    "digest_newsletter",
)
EVENT_KEYS = st.sampled_from(EVENT_FIELDS)
EXAMPLES = itertools.count()
# Nearly an event: the fields that make one, each of them maybe hostile.
NEAR_EVENTS = st.fixed_dictionaries(
    {
        "email": st.text(max_size=20) | SCALARS,
        "event": st.sampled_from(["bounce", "open", "click", "spamreport", "dropped"]) | SCALARS,
        "timestamp": SCALARS | st.sampled_from([float("inf"), float("nan"), 10**30, -5, "17"]),
    },
    optional={key: FIELD_VALUES for key in EVENT_FIELDS[3:]},
)
ITEMS = st.lists(
    NEAR_EVENTS
    | st.dictionaries(EVENT_KEYS, FIELD_VALUES | st.sampled_from(["bounce", "1", "spamreport"]))
    | FIELD_VALUES,
    max_size=8,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(items=ITEMS)
def test_any_signed_items_are_processed_without_stopping_the_good_ones(db, items):
    good_id = f"good-{next(EXAMPLES)}"
    good = event(sg_event_id=good_id, timestamp=1700000000 + int(good_id[5:]))
    post_id = store_post(db, json.dumps([*items, good]).encode(), {}, utcnow())
    process_pending(db)
    processed_at, note = db.execute(
        "SELECT processed_at, note FROM webhook_posts WHERE id = ?", [post_id]
    ).fetchone()
    assert processed_at is not None and not note.startswith("processing failed")
    assert db.execute("SELECT 1 FROM events WHERE sg_event_id = ?", [good_id]).fetchone()


@pytest.mark.parametrize(
    "odd",
    [
        {"timestamp": float("inf")},
        {"timestamp": float("nan")},
        {"timestamp": 10**30},
        {"timestamp": -5},
        {"email": "\ud800@example.com"},
        {"event": "bounce", "type": "bounce", "reason": "550 \udfff"},
    ],
    ids=["inf", "nan", "huge", "negative", "surrogate-address", "surrogate-reason"],
)
def test_an_absurd_value_makes_only_its_own_event_unusable(db, odd):
    body = json.dumps([event(sg_event_id="odd") | odd, event(sg_event_id="fine")]).encode()
    post_id = store_post(db, body, {}, utcnow())
    process_pending(db)
    assert db.execute("SELECT note FROM webhook_posts WHERE id = ?", [post_id]).fetchone() == (
        "1 item(s) were not usable events",
    )
    assert [row[0] for row in db.execute("SELECT sg_event_id FROM events")] == ["fine"]


# The SendGrid test server's side of the webhook, which the end-to-end tests rely on


def test_the_test_server_posts_signed_crlf_bodies_of_at_most_768_kb(client, db, key_pair):
    events = [event(sg_event_id=f"id-{n}", timestamp=1700000000 + n) for n in range(8000)]
    bodies = event_bodies(events)
    assert len(bodies) == 2
    assert all(len(b) <= 768 * 1024 and b.endswith(b"]\r\n") for b in bodies)
    assert [e for b in bodies for e in json.loads(b)] == events
    keys = load_public_keys(key_pair[1])
    signature = sign_event_post(key_pair[0], "1700000000", bodies[0])
    assert verify_signature(keys, bodies[0], signature, "1700000000")


def test_the_test_server_keeps_events_whose_post_failed_for_a_retry(key_pair):
    from sendgrid_server import SendGridTestServer

    with SendGridTestServer() as server:
        server.send_events_to("http://127.0.0.1:9/webhooks/sendgrid", key_pair[0])
        assert server.post_events([event()]) == [None]
        assert server.pending_events() == [event()] and server.posted_events == []
