"""A reader's links name that reader for good: ids are never reused and every token carries
the reader's nonce; links of the old format keep working for the readers they were sent to."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from itsdangerous import Signer
from sqlite_utils import Database

from digest.clock import to_db, utcnow
from digest.delivery.transports.outbox import OutboxTransport
from digest.readers.privacy import forget
from digest.readers.signup import process_signups, sign_up
from digest.readers.subscribers import add_subscriber, find_subscriber
from digest.readers.subscriptions import subscriptions_of
from digest.store import migrations, open_db
from digest.tokens import CONFIRM_SALT, SALT
from digest.urls import ReaderLinks
from digest.web import create_app

from helpers import make_config

ONE_CLICK = {"data": "List-Unsubscribe=One-Click"}
BEFORE_NONCES = ["m007_reader_links", "m007_signup_queue"]


def legacy_token(secret: str, subscriber_id: int, salt: str = SALT) -> str:
    """A link token as sent before the m005 migration: `<id>.<newsletter>.<signature>`."""
    return (
        Signer(secret, salt=salt, digest_method=hashlib.sha256)
        .sign(f"{subscriber_id}.daily")
        .decode()
    )


def page_of(client, token: str):
    return client.get(f"/u/{token}")


@pytest.fixture
def client(config):
    return create_app(config).test_client(use_cookies=False)


def test_an_id_is_never_given_again_after_its_reader_is_forgotten(db):
    add_subscriber(db, "ana@example.com")
    last = add_subscriber(db, "bo@example.com")
    forget(db, "bo@example.com")
    stranger = add_subscriber(db, "cy@example.com")
    assert stranger.id > last.id


def test_a_forgotten_readers_old_links_never_reach_the_next_reader(client, db, config):
    bo = add_subscriber(db, "bo@example.com", "Bo")
    kept = ReaderLinks(config, "daily").reader_token(bo.id, bo.link_nonce)
    forget(db, "bo@example.com")
    # Even a stranger who got the same id (a database restored from an old backup, say)
    # has another nonce: the old link names no one.
    db.execute("DELETE FROM sqlite_sequence WHERE name = 'subscribers'")
    stranger = add_subscriber(db, "cy@example.com", "Cy")
    db.execute("UPDATE subscribers SET id = ? WHERE id = ?", [bo.id, stranger.id])
    db.execute("UPDATE subscriptions SET subscriber_id = ?", [bo.id])
    for response in (page_of(client, kept), client.post(f"/u/{kept}", **ONE_CLICK)):
        assert response.status_code == 400
        assert "cy@example.com" not in response.get_data(as_text=True)
    assert subscriptions_of(db, bo.id) == {"daily": "active"}


def test_a_forgotten_pending_readers_confirmation_link_confirms_no_stranger(client, db, config):
    sign_up(db, config, "bo@example.com")
    process_signups(db, config, OutboxTransport(config))
    text = (config.outbox_dir / "confirmations" / "bo@example.com.eml").read_text()
    path = text.split("https://news.test", 2)[1].split()[0]
    assert path.startswith("/confirm/")
    forget(db, "bo@example.com")
    sign_up(db, config, "cy@example.com")
    process_signups(db, config, OutboxTransport(config))
    assert client.post(path).status_code == 400
    assert find_subscriber(db, "cy@example.com").status == "pending"


@pytest.fixture
def old_database(tmp_path):
    """A database of before m005: Ana, Bo (pending, emailed yesterday), a forgotten id 7."""
    path = tmp_path / "digest.db"
    old = Database(path)
    migrations.apply(old, stop_before=BEFORE_NONCES)
    now = to_db(utcnow())
    for row_id, address, state in (
        (1, "ana@example.com", "active"),
        (2, "bo@example.com", "pending"),
    ):
        old.execute(
            """INSERT INTO subscribers (id, email, name, status, created_at, updated_at)
               VALUES (?, ?, '', ?, ?, ?)""",
            [row_id, address, state, now, now],
        )
        old.execute(
            """INSERT INTO subscriptions (subscriber_id, newsletter, status, confirmation_sent_at,
               created_at, updated_at) VALUES (?, 'daily', ?, ?, ?, ?)""",
            [row_id, state, to_db(utcnow() - timedelta(days=1)), now, now],
        )
    # A delivery row names id 7, whose reader is gone: no new reader may ever get it.
    old.execute(
        """INSERT INTO editions (id, newsletter, slot_at, variant, subject, html, text, story_ids,
           created_at) VALUES (1, 'daily', ?, '', 's', 'h', 't', '[]', ?)""",
        [now, now],
    )
    old.execute(
        """INSERT INTO deliveries (edition_id, subscriber_id, email, status, created_at,
           updated_at) VALUES (1, 7, 'gone@example.com', 'sent', ?, ?)""",
        [now, now],
    )
    old.close()
    return path


def test_the_migration_keeps_every_reader_and_gives_each_a_nonce(old_database):
    db = open_db(old_database)
    rows = db.execute("SELECT id, email, link_nonce, legacy_links FROM subscribers").fetchall()
    assert [(r[0], r[1], r[3]) for r in rows] == [
        (1, "ana@example.com", 1),
        (2, "bo@example.com", 1),
    ]
    assert len({r[2] for r in rows}) == 2 and all(len(r[2]) == 16 for r in rows)
    assert add_subscriber(db, "new@example.com").id == 8
    db.close()


def test_old_links_in_sent_mail_still_work_for_their_own_reader(old_database, tmp_path):
    config = make_config(tmp_path)
    client = create_app(config).test_client(use_cookies=False)
    token = legacy_token(config.secret_key, 1)
    assert "ana@example.com" in page_of(client, token).get_data(as_text=True)
    assert client.post(f"/u/{token}", **ONE_CLICK).status_code == 200
    db = open_db(old_database)
    assert subscriptions_of(db, 1) == {"daily": "unsubscribed"}
    db.close()


def test_an_old_link_never_names_a_reader_added_after_the_migration(old_database, tmp_path):
    config = make_config(tmp_path)
    client = create_app(config).test_client(use_cookies=False)
    db = open_db(old_database)
    new = add_subscriber(db, "new@example.com")
    assert page_of(client, legacy_token(config.secret_key, new.id)).status_code == 400
    db.close()


def test_an_old_confirmation_link_works_until_a_newer_one_is_sent(old_database, tmp_path):
    config = make_config(tmp_path)
    client = create_app(config).test_client(use_cookies=False)
    path = f"/confirm/{legacy_token(config.secret_key, 2, CONFIRM_SALT)}"
    assert client.get(path).status_code == 200
    db = open_db(old_database)
    db.execute(
        """UPDATE subscriptions SET confirmation_sent_at = ?, confirm_code = ?
           WHERE subscriber_id = 2""",
        [to_db(utcnow()), "0" * 32],
    )
    assert client.post(path).status_code == 400
    db.execute("UPDATE subscriptions SET confirm_code = NULL WHERE subscriber_id = 2")
    assert client.post(path).status_code == 200
    assert subscriptions_of(db, 2) == {"daily": "active"}
    db.close()
