"""Delivery through SendGrid, against the project's SendGrid-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta

import pytest

from digest.delivery.ledger import edition_counts
from digest.delivery.send import send_newsletter
from digest.delivery.transports.sendgrid import Pace, SendGridTransport, retry_after_seconds
from digest.edition.personalize import personalize
from digest.errors import ConfigError, TransportAuthError
from digest.readers.subscribers import import_csv, unsubscribe
from digest.store import open_db
from digest.tokens import TokenSigner

from helpers import EDITION_TIME, add_stories, make_config, story
from sendgrid_server import Fault, NetworkModel, SendGridTestServer

NOW = EDITION_TIME + timedelta(minutes=2)
API_KEY = "SG.test-key"


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def server():
    with SendGridTestServer(api_key=API_KEY) as running:
        yield running


@pytest.fixture
def config(tmp_path):
    return make_config(
        tmp_path,
        newsletter={"categories": ["digest", "daily"]},
        transport={"kind": "sendgrid", "secret_key": "test-secret"},
        sendgrid={
            "batch_size": 1000,
            # Long enough for the test server to check 1000 readers' body against SendGrid's
            # schema on a loaded machine; the slow-answer faults wait longer (3 s).
            "timeout_seconds": 2.5,
            "max_attempts": 4,
        },
    )


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def transport(config, server, sleeps):
    env = {"SENDGRID_API_KEY": API_KEY, "SENDGRID_API_HOST": server.url}
    return SendGridTransport(config, env=env, sleep=sleeps.append)


def add_readers(db, tmp_path, count: int, start: int = 0) -> list[str]:
    emails = [f"reader{n:05d}@example.com" for n in range(start, start + count)]
    path = tmp_path / f"readers-{start}.csv"
    path.write_text("email,name\n" + "".join(f"{e},Reader {i}\n" for i, e in enumerate(emails)))
    import_csv(db, path)
    return emails


@pytest.fixture
def stories(db):
    add_stories(db, story(1, title="Tram runs all night"), story(2, category="science"))


def send(db, config, transport, **options):
    return send_newsletter(db, config, None, NOW, transport=transport, **options)


def test_2500_readers_go_out_in_3_requests(db, config, transport, server, stories, tmp_path):
    add_readers(db, tmp_path, 2500)
    report = send(db, config, transport)
    sizes = sorted(len(body["personalizations"]) for body in server.accepted_bodies())
    assert sizes == [500, 1000, 1000]
    assert report.total("sent") == 2500


def test_batches_under_way_at_once_reach_each_reader_once(db, server, stories, tmp_path):
    config = make_config(
        tmp_path,
        transport={"kind": "sendgrid", "secret_key": "test-secret"},
        sendgrid={"batch_size": 100, "concurrency": 4},
    )
    emails = add_readers(db, tmp_path, 450)
    transport = SendGridTransport(
        config, env={"SENDGRID_API_KEY": API_KEY, "SENDGRID_API_HOST": server.url}
    )
    report = send(db, config, transport)
    assert report.total("sent") == 450
    assert sorted(server.recipients()) == emails
    assert len(server.accepted_bodies()) == 5


def test_each_active_reader_exactly_once_and_inactive_ones_never(
    db, config, transport, server, stories, tmp_path
):
    emails = add_readers(db, tmp_path, 30)
    for gone in emails[:5]:
        unsubscribe(db, gone)
    send(db, config, transport)
    assert sorted(server.recipients()) == emails[5:]


def test_the_request_body_is_exactly_what_sendgrid_expects(
    db, config, transport, server, stories, tmp_path
):
    add_readers(db, tmp_path, 2)
    send(db, config, transport)
    [body] = server.accepted_bodies()
    signer = TokenSigner("test-secret")
    edition = db.execute("SELECT id, subject, html, text FROM editions").fetchone()
    deliveries = db.execute(
        """SELECT d.subscriber_id, d.batch_key, s.link_nonce, d.id
           FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id ORDER BY d.id"""
    ).fetchall()

    def personalization(index):
        subscriber_id = deliveries[index][0]
        url = f"https://news.test/u/{signer.make(subscriber_id, deliveries[index][2], 'daily')}"
        return {
            "to": [{"email": f"reader{index:05d}@example.com", "name": f"Reader {index}"}],
            "substitutions": {
                "%%greeting_html%%": f"Hello Reader {index},",
                "%%greeting_text%%": f"Hello Reader {index},",
                "%%unsubscribe_url%%": url,
            },
            "headers": {"List-Unsubscribe": f"<{url}>"},
            "custom_args": {"digest_delivery": str(deliveries[index][3])},
        }

    assert body == {
        "personalizations": [personalization(0), personalization(1)],
        "from": {"email": "digest@news.test", "name": "Test Courier"},
        "subject": edition[1],
        "content": [
            {"type": "text/plain", "value": edition[3]},
            {"type": "text/html", "value": edition[2]},
        ],
        "headers": {
            "List-Id": '"Test Daily" <daily.news.test>',
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        "custom_args": {
            "digest_edition": str(edition[0]),
            "digest_newsletter": "daily",
            "digest_batch": deliveries[0][1],
        },
        "categories": ["digest", "daily"],
    }


def test_a_batch_body_is_the_very_text_json_dumps_makes_of_it(
    db, config, transport, server, stories, tmp_path
):
    path = tmp_path / "names.csv"
    path.write_text(
        "email,name\nana@example.com,Ana Lima\nbo@example.com,\n"
        'rohan@example.com,"Mehta, Rohan ""Ro"""\nzoe@bücher.de,Zoë <b>Ørsted</b> 🎉\n',
        encoding="utf-8",
    )
    import_csv(db, path)
    send(db, config, transport)
    [request] = server.requests
    assert request.raw_body.decode("ascii") == json.dumps(json.loads(request.raw_body))
    names = [p["to"][0].get("name") for p in json.loads(request.raw_body)["personalizations"]]
    assert names == ["Ana Lima", None, '"Mehta, Rohan \\"Ro\\""', "Zoë <b>Ørsted</b> 🎉"]


def test_the_http_clients_debug_log_names_the_request_never_its_readers_or_key(
    db, config, transport, server, stories, tmp_path, caplog
):
    add_readers(db, tmp_path, 3)
    caplog.set_level(logging.DEBUG, logger="urllib3")
    send(db, config, transport)
    assert '"POST /v3/mail/send HTTP/1.1" 202' in caplog.text
    assert "@example.com" not in caplog.text
    assert API_KEY not in caplog.text


def test_every_request_validates_against_sendgrids_published_schema(
    db, config, transport, server, stories, tmp_path
):
    assert server.schema_checked
    add_readers(db, tmp_path, 3)
    send(db, config, transport)
    assert [r.status for r in server.requests] == [202]


def test_the_unsubscribe_url_is_in_the_header_and_the_substituted_body(
    db, config, transport, server, stories, tmp_path
):
    add_readers(db, tmp_path, 1)
    send(db, config, transport)
    [body] = server.accepted_bodies()
    [person] = body["personalizations"]
    url = person["headers"]["List-Unsubscribe"].strip("<>")
    html = personalize(body["content"][1]["value"], person["substitutions"])
    text = personalize(body["content"][0]["value"], person["substitutions"])
    assert f'href="{url}"' in html
    assert url in text
    assert "%%" not in html + text


def test_429_and_5xx_are_retried_with_backoff_until_accepted(
    db, config, transport, server, stories, tmp_path, sleeps
):
    add_readers(db, tmp_path, 3)
    server.script(429, 500, 503)
    report = send(db, config, transport)
    assert report.total("sent") == 3
    assert [r.status for r in server.requests] == [429, 500, 503, 202]
    assert len(sleeps) == 3
    assert sleeps[1] <= 2 * config.sendgrid.backoff_seconds


def test_retry_after_from_a_429_is_honoured(
    db, config, transport, server, stories, tmp_path, sleeps
):
    add_readers(db, tmp_path, 1)
    server.script(Fault(429, headers={"Retry-After": "7"}))
    send(db, config, transport)
    assert sleeps == [7.0]


def test_rate_limit_reset_header_is_read_as_an_epoch_time():
    assert retry_after_seconds({"X-RateLimit-Reset": "1000"}, now=990.0) == 10.0
    assert retry_after_seconds({}, now=0) is None


def test_a_batch_still_refused_after_the_last_attempt_is_failed_then_retried_on_request(
    db, config, transport, server, stories, tmp_path
):
    add_readers(db, tmp_path, 2)
    server.script(*[503] * config.sendgrid.max_attempts)
    first = send(db, config, transport)
    assert (first.total("sent"), first.total("failed")) == (0, 2)
    again = send(db, config, transport)
    assert again.total("failed") == 2, "a plain re-run does not resend failed readers"
    retried = send(db, config, transport, retry_failed=True)
    assert (retried.total("sent"), retried.total("failed")) == (2, 0)
    assert len(server.recipients()) == 2


def test_a_400_fails_its_batch_with_sendgrids_message_and_the_rest_go_on(
    db, server, stories, tmp_path, sleeps
):
    small = make_config(
        tmp_path,
        transport={"kind": "sendgrid", "secret_key": "test-secret"},
        sendgrid={"batch_size": 10, "max_attempts": 2},
    )
    transport = SendGridTransport(
        small,
        env={"SENDGRID_API_KEY": API_KEY, "SENDGRID_API_HOST": server.url},
        sleep=sleeps.append,
    )
    emails = add_readers(db, tmp_path, 30)
    server.fail_when(lambda body: body["personalizations"][0]["to"][0]["email"] == emails[10], 400)
    report = send(db, small, transport)
    assert (report.total("sent"), report.total("failed")) == (20, 10)
    error = db.execute("SELECT DISTINCT error FROM deliveries WHERE status = 'failed'").fetchone()
    assert "SendGrid rejected a batch of 10 (400): Bad Request" in error[0]
    assert len([r for r in server.requests if r.status == 400]) == 1, "a 400 is not retried"


def test_a_401_stops_the_run_at_once_and_marks_nobody_sent(
    db, config, transport, server, stories, tmp_path
):
    add_readers(db, tmp_path, 3)
    server.script(401)
    with pytest.raises(TransportAuthError, match="SENDGRID_API_KEY"):
        send(db, config, transport)
    statuses = {row[0] for row in db.execute("SELECT status FROM deliveries")}
    assert statuses == {"queued"}
    assert len(server.requests) == 1


def test_the_api_key_never_appears_in_an_error(db, config, server, stories, tmp_path):
    transport = SendGridTransport(
        config, env={"SENDGRID_API_KEY": "SG.wrong-secret", "SENDGRID_API_HOST": server.url}
    )
    add_readers(db, tmp_path, 1)
    with pytest.raises(TransportAuthError) as caught:
        send(db, config, transport)
    assert "SG.wrong-secret" not in str(caught.value)


def test_a_missing_api_key_is_a_clear_config_error(config):
    with pytest.raises(ConfigError, match="SENDGRID_API_KEY is not set"):
        SendGridTransport(config, env={})


@pytest.mark.slow  # waits out a real timeout
def test_a_slow_answer_leaves_its_batch_unknown_and_a_rerun_does_not_resend_it(
    db, config, transport, server, stories, tmp_path
):
    add_readers(db, tmp_path, 4)
    server.script(Fault("slow", delay=3.0))
    report = send(db, config, transport)
    assert (report.total("sent"), report.total("sending")) == (0, 4)
    [batch] = report.unknown_batches
    assert batch["recipients"] == 4
    again = send(db, config, transport)
    assert again.total("sending") == 4
    assert len(server.requests) == 1, "an unknown batch is never re-sent on its own"
    resent = send(db, config, transport, resend_unknown=True)
    assert resent.total("sent") == 4


def test_categories_are_capped_at_ten_in_the_given_order(tmp_path, db, server, stories):
    many = [f"c{n}" for n in range(12)]
    config = make_config(
        tmp_path,
        newsletter={"categories": many},
        transport={"kind": "sendgrid", "secret_key": "test-secret"},
        sendgrid={},
    )
    transport = SendGridTransport(
        config, env={"SENDGRID_API_KEY": API_KEY, "SENDGRID_API_HOST": server.url}
    )
    add_readers(db, tmp_path, 1)
    send(db, config, transport)
    assert server.accepted_bodies()[0]["categories"] == many[:10]


def test_a_reader_who_leaves_midway_is_not_mailed_if_their_batch_has_not_gone(
    db, server, stories, tmp_path
):
    config = make_config(
        tmp_path,
        transport={"kind": "sendgrid", "secret_key": "test-secret"},
        sendgrid={"batch_size": 5, "concurrency": 1},
    )
    emails = add_readers(db, tmp_path, 10)

    class ReaderLeavesAfterFirstBatch(SendGridTransport):
        def send_batch(self, edition, batch):
            provider_id = super().send_batch(edition, batch)
            # As the web app would, from another connection while the send goes on.
            other = open_db(config.db_path)
            unsubscribe(other, emails[9])
            other.close()
            return provider_id

    transport = ReaderLeavesAfterFirstBatch(
        config, env={"SENDGRID_API_KEY": API_KEY, "SENDGRID_API_HOST": server.url}
    )
    report = send(db, config, transport)
    assert (report.total("sent"), report.total("skipped")) == (9, 1)
    assert emails[9] not in server.recipients()


def test_substitutions_stay_under_sendgrids_10000_byte_limit(
    db, config, transport, server, stories, tmp_path
):
    path = tmp_path / "long.csv"
    path.write_text("email,name\nlong@example.com,N\n")
    import_csv(db, path)
    # Entry points refuse names over 100 characters; one stored before that still goes out.
    db.execute("UPDATE subscribers SET name = ?", ["N" * 300])
    send(db, config, transport)
    [person] = server.accepted_bodies()[0]["personalizations"]
    size = sum(len(k.encode()) + len(v.encode()) for k, v in person["substitutions"].items())
    custom = json.dumps(person["custom_args"]).encode()
    assert size < 10_000 and len(custom) < 10_000


def test_edition_counts_match_the_servers_view(db, config, transport, server, stories, tmp_path):
    add_readers(db, tmp_path, 12)
    report = send(db, config, transport)
    [result] = report.editions
    assert edition_counts(db, result.edition.id)["sent"] == len(server.recipients()) == 12


def test_a_sign_up_confirmation_goes_through_sendgrid_as_one_message(
    db, server, tmp_path, monkeypatch
):
    from digest.readers.signup import CONFIRMATION_SENT, process_signups, sign_up

    config = make_config(
        tmp_path,
        newsletter={"asm_group_id": 42},
        transport={"kind": "sendgrid", "secret_key": "test-secret"},
    )
    transport = SendGridTransport(
        config, env={"SENDGRID_API_KEY": API_KEY, "SENDGRID_API_HOST": server.url}
    )
    sign_up(db, config, "new@example.com", name="Nia")
    assert process_signups(db, config, transport) == [CONFIRMATION_SENT]
    [request] = server.requests
    assert request.status == 202
    body = request.body
    # The typed name is not in it: the address is not confirmed yet.
    assert body["personalizations"] == [{"to": [{"email": "new@example.com"}]}]
    assert [part["type"] for part in body["content"]] == ["text/plain", "text/html"]
    assert "/confirm/" in body["content"][0]["value"]
    assert body["categories"] == ["confirmation"]
    assert "asm" not in body, "a confirmation must reach readers who left another group"
    assert body["headers"]["List-Id"] == '"Test Daily" <daily.news.test>'


def test_real_mail_is_never_sent_with_the_placeholder_secret(tmp_path, server):
    config = make_config(tmp_path, transport={"kind": "sendgrid"})
    with pytest.raises(ConfigError, match=r"placeholder.*DIGEST_SECRET_KEY"):
        SendGridTransport(
            config, env={"SENDGRID_API_KEY": API_KEY, "SENDGRID_API_HOST": server.url}
        )


def test_a_400_naming_one_reader_fails_only_that_reader(db, server, stories, tmp_path, sleeps):
    config = make_config(
        tmp_path,
        transport={"kind": "sendgrid", "secret_key": "test-secret"},
        sendgrid={"batch_size": 10},
    )
    emails = add_readers(db, tmp_path, 10)
    refusal = {
        "errors": [
            {
                "message": "Does not contain a valid address.",
                "field": "personalizations.3.to.0.email",
                "help": None,
            }
        ]
    }
    server.fail_when(
        lambda body: (
            body["personalizations"][3]["to"][0]["email"] == emails[3]
            if len(body["personalizations"]) > 3
            else False
        ),
        Fault(400, body=refusal),
    )
    transport = SendGridTransport(
        config, env={"SENDGRID_API_KEY": API_KEY, "SENDGRID_API_HOST": server.url}
    )
    report = send(db, config, transport)
    assert (report.total("sent"), report.total("failed")) == (9, 1)
    assert sorted(server.recipients()) == emails[:3] + emails[4:]
    failed = db.execute("SELECT email, error FROM deliveries WHERE status = 'failed'").fetchall()
    assert failed[0][0] == emails[3]
    assert "personalizations.3.to.0.email: Does not contain a valid address." in failed[0][1]


def sendgrid_config(tmp_path, **sendgrid):
    return make_config(
        tmp_path, transport={"kind": "sendgrid", "secret_key": "test-secret"}, sendgrid=sendgrid
    )


def test_a_send_keeps_its_connections_alive_across_batches(db, server, stories, tmp_path):
    config = sendgrid_config(tmp_path, batch_size=10, concurrency=4)
    add_readers(db, tmp_path, 100)
    transport = SendGridTransport(
        config, env={"SENDGRID_API_KEY": API_KEY, "SENDGRID_API_HOST": server.url}
    )
    report = send(db, config, transport)
    assert report.total("sent") == 100
    assert len(server.requests) == 10
    assert server.connections <= 4, "one connection per batch under way, not per request"


def test_single_messages_reuse_the_transports_connection(db, server, tmp_path):
    from digest.readers.signup import process_signups, sign_up

    config = sendgrid_config(tmp_path)
    transport = SendGridTransport(
        config, env={"SENDGRID_API_KEY": API_KEY, "SENDGRID_API_HOST": server.url}
    )
    for address in ("one@example.com", "two@example.com", "three@example.com"):
        sign_up(db, config, address)
    process_signups(db, config, transport)
    assert [r.status for r in server.requests] == [202, 202, 202]
    assert server.connections == 1


def test_batches_under_way_grow_with_the_answers_latency_up_to_the_ceiling(db, stories, tmp_path):
    config = sendgrid_config(tmp_path, batch_size=10, concurrency=4)
    add_readers(db, tmp_path, 100)
    with SendGridTestServer(api_key=API_KEY, network=NetworkModel(0.02, 0.02)) as far:
        transport = SendGridTransport(
            config, env={"SENDGRID_API_KEY": API_KEY, "SENDGRID_API_HOST": far.url}
        )
        assert transport.concurrency == 2
        report = send(db, config, transport)
        assert report.total("sent") == 100
        assert transport.concurrency == 4
        assert far.connections <= 4


def test_a_202_that_leaves_no_request_holds_the_next_until_the_reset(
    db, server, stories, tmp_path, sleeps
):
    config = sendgrid_config(tmp_path, batch_size=2, concurrency=1)
    add_readers(db, tmp_path, 4)
    transport = SendGridTransport(
        config,
        env={"SENDGRID_API_KEY": API_KEY, "SENDGRID_API_HOST": server.url},
        sleep=sleeps.append,
    )
    reset = time.time() + 30
    limit = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": f"{reset:.0f}"}
    server.script(Fault("slow", headers=limit))
    report = send(db, config, transport)
    assert report.total("sent") == 4
    [slept] = sleeps
    assert 25 < slept <= 31


class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_pace_keeps_enough_batches_under_way_to_cover_the_latency():
    pace = Pace(ceiling=16)
    assert pace.window == 2
    pace.made(0.02)
    pace.answered(0.005)
    assert pace.window == 2, "a server next door needs no more than before"
    pace = Pace(ceiling=16)
    pace.made(0.02)
    pace.answered(0.2)
    assert pace.window == 11
    pace.answered(1.0)
    assert pace.window == 16


def test_a_refusal_halves_the_pace_and_holds_every_request_back():
    clock = FakeClock()
    pace = Pace(ceiling=16, sleep=clock.sleep, clock=clock)
    pace.made(0.02)
    pace.answered(0.3)
    assert pace.window == 16
    pace.refused(7.0)
    assert pace.window == 8
    # Another worker's next request waits out the pause; the refused one already has.
    pace.wait_turn()
    assert clock.slept == [7.0]
    pace.wait_turn(slept_until=clock.now)
    assert clock.slept == [7.0]
    pace.answered(0.3)
    assert pace.window == 9, "it grows back by one per answer"


def test_a_connection_dropped_after_the_request_leaves_its_batch_unknown(
    db, config, transport, server, stories, tmp_path
):
    add_readers(db, tmp_path, 3)
    server.script(Fault("drop"))
    report = send(db, config, transport)
    assert (report.total("sent"), report.total("sending")) == (0, 3)
    assert len(server.requests) == 1, "never re-sent blindly"


def test_a_refused_connection_is_retried_as_nothing_left(db, config, stories, tmp_path, sleeps):
    from servers import free_port

    add_readers(db, tmp_path, 2)
    nobody = f"http://127.0.0.1:{free_port()}"
    transport = SendGridTransport(
        config, env={"SENDGRID_API_KEY": API_KEY, "SENDGRID_API_HOST": nobody}, sleep=sleeps.append
    )
    report = send(db, config, transport)
    assert report.total("failed") == 2
    assert len(sleeps) == config.sendgrid.max_attempts - 1
    [error] = {row[0] for row in db.execute("SELECT error FROM deliveries")}
    assert "could not reach" in error


def test_a_request_still_waiting_opens_the_window_before_its_answer_comes():
    clock = FakeClock()
    pace = Pace(ceiling=16, clock=clock)
    pace.made(0.02)
    with pace.waiting():
        assert pace.window == 2
        clock.now += 0.21
        assert pace.window == 12
    assert pace.window == 2, "a request answered counts only through the latency it measured"


def test_a_sandbox_send_answered_200_counts_as_sent_and_is_never_sent_again(
    db, tmp_path, server, stories
):
    config = make_config(
        tmp_path,
        transport={"kind": "sendgrid", "secret_key": "test-secret"},
        sendgrid={"batch_size": 2, "sandbox_mode": True},
    )
    env = {"SENDGRID_API_KEY": API_KEY, "SENDGRID_API_HOST": server.url}
    transport = SendGridTransport(config, env=env, sleep=lambda _: None)
    add_readers(db, tmp_path, 3)
    report = send(db, config, transport)
    assert [r.status for r in server.requests] == [200, 200]
    counts = edition_counts(db, report.editions[0].edition.id)
    assert (counts["sent"], counts["failed"]) == (3, 0)
    assert {row[0] for row in db.execute("SELECT provider_id FROM deliveries")} == {"sandbox"}
    send(db, config, transport, retry_failed=True)
    assert len(server.requests) == 2


def test_429s_with_retry_after_among_batches_under_way_send_each_reader_once(
    db, config, server, stories, tmp_path, sleeps
):
    from collections import Counter
    from dataclasses import replace

    config = replace(config, sendgrid=replace(config.sendgrid, batch_size=20, concurrency=16))
    env = {"SENDGRID_API_KEY": API_KEY, "SENDGRID_API_HOST": server.url}
    transport = SendGridTransport(config, env=env, sleep=sleeps.append)
    emails = add_readers(db, tmp_path, 400)
    # Slow answers keep batches under way while others are refused and retried.
    server.script(*[Fault("slow", delay=0.1), Fault(429, headers={"Retry-After": "1"})] * 6)

    report = send(db, config, transport)

    assert [r.status for r in server.requests].count(429) == 6
    assert Counter(server.recipients()) == Counter(emails)
    assert report.total("sent") == 400
    assert not report.needs_attention
