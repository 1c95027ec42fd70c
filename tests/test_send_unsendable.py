"""A reader stored before the entry checks never stops a send: failed alone, the rest goes out.

Real sends through the outbox and through the SendGrid test server on 127.0.0.1.
"""

from __future__ import annotations

import email
import email.policy
from datetime import timedelta

import pytest

from digest.delivery.send import send_newsletter
from digest.delivery.transports.outbox import OutboxTransport
from digest.delivery.transports.sendgrid import SendGridTransport
from digest.readers.privacy import forget
from digest.readers.subscribers import add_subscriber

from helpers import EDITION_TIME, add_stories, make_config, story
from sendgrid_server import SendGridTestServer

NOW = EDITION_TIME + timedelta(minutes=2)
API_KEY = "SG.test-key"
READERS = [f"reader{n}@example.com" for n in range(6)]


def stored_before_the_checks(db, address: str, **columns: str) -> None:
    """Turn reader `address` into a row as older versions stored it, bypassing the checks."""
    assignments = ", ".join(f"{column} = ?" for column in columns)
    db.execute(
        f"UPDATE subscribers SET {assignments} WHERE email = ?", [*columns.values(), address]
    )


@pytest.fixture
def newsroom(db):
    add_stories(db, story(1, title="Tram runs all night"))
    for address in READERS:
        add_subscriber(db, address, "Reader")
    return db


def deliveries(db) -> dict[str, tuple[str, str | None]]:
    rows = db.execute("SELECT email, status, error FROM deliveries ORDER BY id").fetchall()
    return {row[0]: (row[1], row[2]) for row in rows}


def outbox(config) -> dict[str, email.message.EmailMessage]:
    return {
        path.name: email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        for path in config.outbox_dir.rglob("*.eml")
    }


def test_a_stored_non_ascii_local_part_fails_alone_and_the_batch_goes(newsroom, config):
    stored_before_the_checks(newsroom, READERS[2], email="josé@example.com")
    report = send_newsletter(newsroom, config, None, NOW, transport=OutboxTransport(config))
    assert (report.total("sent"), report.total("failed"), report.total("sending")) == (5, 1, 0)
    status, error = deliveries(newsroom)["josé@example.com"]
    assert status == "failed" and "SMTPUTF8" in error
    assert len(outbox(config)) == 5
    assert report.unknown_batches == []


def test_retrying_failed_readers_fails_the_unsendable_one_again_and_stops_nothing(newsroom, config):
    stored_before_the_checks(newsroom, READERS[0], email="josé@example.com")
    send_newsletter(newsroom, config, None, NOW, transport=OutboxTransport(config))
    again = send_newsletter(
        newsroom, config, None, NOW, transport=OutboxTransport(config), retry_failed=True
    )
    assert (again.total("sent"), again.total("failed"), again.total("sending")) == (5, 1, 0)


def test_a_stored_name_with_cr_lf_goes_out_cleaned(newsroom, config):
    stored_before_the_checks(newsroom, READERS[1], name="Eve\r\nBcc: all@example.com")
    report = send_newsletter(newsroom, config, None, NOW, transport=OutboxTransport(config))
    assert report.total("sent") == 6
    message = outbox(config)[f"{READERS[1]}.eml"]
    assert message["To"].addresses[0].display_name == "Eve Bcc: all@example.com"
    assert message["Bcc"] is None
    assert "Hello Eve Bcc: all@example.com," in message.get_body(("plain",)).get_content()


def test_the_outbox_writes_a_unicode_domain_in_its_ascii_form(newsroom, config):
    stored_before_the_checks(newsroom, READERS[3], email="ana@bücher.de")
    send_newsletter(newsroom, config, None, NOW, transport=OutboxTransport(config))
    message = outbox(config)["ana@xn--bcher-kva.de.eml"]
    assert message["To"].addresses[0].addr_spec == "ana@xn--bcher-kva.de"


def test_forget_deletes_the_outbox_file_of_a_unicode_domain_reader(newsroom, config):
    stored_before_the_checks(newsroom, READERS[3], email="ana@bücher.de")
    send_newsletter(newsroom, config, None, NOW, transport=OutboxTransport(config))
    assert forget(newsroom, "ana@bücher.de", config.outbox_dir).outbox_files == 1
    assert "ana@xn--bcher-kva.de.eml" not in outbox(config)


def test_addresses_that_shared_an_outbox_file_each_get_their_own(newsroom, config):
    add_subscriber(newsroom, "a'b@example.com")
    add_subscriber(newsroom, "a_b@example.com")
    report = send_newsletter(newsroom, config, None, NOW, transport=OutboxTransport(config))
    assert report.total("sent") == 8
    files = outbox(config)
    assert files["a%27b@example.com.eml"]["To"].addresses[0].addr_spec == "a'b@example.com"
    assert files["a_b@example.com.eml"]["To"].addresses[0].addr_spec == "a_b@example.com"
    forget(newsroom, "a_b@example.com", config.outbox_dir)
    assert "a%27b@example.com.eml" in outbox(config)


def test_a_topic_with_a_slash_keeps_its_edition_inside_the_outbox(db, config):
    add_stories(db, story(1, title="New play", category="arts/theatre"))
    add_subscriber(db, "ana@example.com", topics=["arts/theatre"])
    send_newsletter(db, config, None, NOW, transport=OutboxTransport(config))
    [path] = config.outbox_dir.rglob("*.eml")
    assert path.parent.parent == config.outbox_dir
    assert path.parent.name == "daily-20261126T0700Z-arts%2Ftheatre"


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with SendGridTestServer(api_key=API_KEY) as running:
        yield running


@pytest.fixture
def sendgrid(tmp_path, server):
    config = make_config(
        tmp_path,
        transport={"kind": "sendgrid", "secret_key": "test-secret"},
        sendgrid={"batch_size": 1000, "timeout_seconds": 1.0},
    )
    env = {"SENDGRID_API_KEY": API_KEY, "SENDGRID_API_HOST": server.url}
    return config, SendGridTransport(config, env=env)


def test_sendgrid_fails_a_stored_non_ascii_local_part_alone(newsroom, sendgrid, server):
    config, transport = sendgrid
    stored_before_the_checks(newsroom, READERS[4], email="josé@example.com")
    stored_before_the_checks(newsroom, READERS[5], email="ana@bücher.de")
    report = send_newsletter(newsroom, config, None, NOW, transport=transport)
    assert (report.total("sent"), report.total("failed"), report.total("sending")) == (5, 1, 0)
    assert sorted(server.recipients()) == sorted([*READERS[:4], "ana@xn--bcher-kva.de"])
    assert "SMTPUTF8" in deliveries(newsroom)["josé@example.com"][1]


def test_sendgrid_gets_a_name_with_a_comma_quoted_and_the_greeting_as_typed(
    newsroom, sendgrid, server
):
    config, transport = sendgrid
    add_subscriber(newsroom, "rohan@example.com", 'Mehta, Rohan "Ro"')
    send_newsletter(newsroom, config, None, NOW, transport=transport)
    [rohan] = [
        p
        for p in server.accepted_bodies()[0]["personalizations"]
        if p["to"][0]["email"] == "rohan@example.com"
    ]
    assert rohan["to"] == [{"email": "rohan@example.com", "name": '"Mehta, Rohan \\"Ro\\""'}]
    assert rohan["substitutions"]["%%greeting_text%%"] == 'Hello Mehta, Rohan "Ro",'


def test_a_reader_stored_with_a_non_ascii_local_part_can_be_forgotten(newsroom, config):
    stored_before_the_checks(newsroom, READERS[2], email="josé@example.com")
    send_newsletter(newsroom, config, None, NOW, transport=OutboxTransport(config))
    report = forget(newsroom, "josé@example.com", config.outbox_dir)
    assert report.removed["deliveries"] == 1
    assert "josé" not in str(list(newsroom.query("SELECT email FROM deliveries")))
