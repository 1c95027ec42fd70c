"""Arbitrary rows for CSV import and `add`: each is stored or answered with a reason, never a
traceback and never a half-written row; and every stored reader can be sent a message."""

from __future__ import annotations

import csv
import tempfile
from dataclasses import replace
from datetime import UTC, datetime
from email.headerregistry import Address
from pathlib import Path

from email_validator import EmailNotValidError, validate_email
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest.addresses import check_email, sendable_recipient
from digest.delivery.message import new_message
from digest.delivery.transports.outbox import EML_POLICY
from digest.errors import SubscriberError
from digest.readers.subscribers import add_subscriber, export_csv, import_csv, list_subscribers
from digest.store import open_db

from helpers import make_config

# Files are UTF-8: lone surrogates cannot be written to one.
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
EMAILS = st.one_of(
    st.emails(),
    TEXT,
    st.builds(
        "{}@{}".format,
        TEXT,
        st.sampled_from(["example.com", "bücher.de", "EXAMPLE.ORG", "xn--bcher-kva.de"]),
    ),
    st.sampled_from(["josé@example.com", "=cmd@example.com", " ana@example.com ", "a'b@x.io"]),
)
NAMES = st.one_of(
    TEXT,
    TEXT.map("={}".format),
    st.text(st.characters(blacklist_categories=("Cs",)), min_size=95, max_size=110),
)
TOPICS = st.one_of(TEXT, st.lists(st.sampled_from(["world", "Science ", "sport"])).map(";".join))
ZONES = st.one_of(
    TEXT, st.sampled_from(["", "UTC", "Europe/London", "Factory", "Mars/Base", "a" * 300])
)
ROWS = st.lists(
    st.fixed_dictionaries({"email": EMAILS, "name": NAMES, "topics": TOPICS, "timezone": ZONES}),
    max_size=6,
)
SETTINGS = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def encoded_message(config, display: str, address: str) -> bytes:
    """A message to the reader as the outbox writes it, headers and all."""
    message = new_message(
        config,
        Address(display, addr_spec=address),
        "Subject",
        datetime(2026, 11, 26, tzinfo=UTC),
        "1.1",
        {},
        "text",
        "<p>html</p>",
    )
    return message.as_bytes(policy=EML_POLICY)


def assert_every_reader_whole_and_sendable(db, config) -> None:
    """Each stored reader has its subscription and audit rows, and a message can be made for it."""
    for row in db.query("SELECT * FROM subscribers"):
        subs = db.execute("SELECT COUNT(*) FROM subscriptions WHERE subscriber_id = ?", [row["id"]])
        audit = db.execute("SELECT COUNT(*) FROM audit WHERE subscriber_id = ?", [row["id"]])
        assert subs.fetchone()[0] == 1 and audit.fetchone()[0] >= 1
        email, name = sendable_recipient(row["email"], row["name"])
        assert name == row["name"], "names are stored clean"
        assert encoded_message(config, name, email)


@SETTINGS
@given(rows=ROWS)
def test_every_imported_row_is_stored_or_answered_with_a_reason(tmp_path, rows):
    with tempfile.TemporaryDirectory(dir=tmp_path) as folder:
        config = make_config(Path(folder))
        db = open_db(config.db_path)
        path = Path(folder) / "readers.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, ["email", "name", "topics", "timezone"])
            writer.writeheader()
            writer.writerows(rows)
        report = import_csv(db, path)
        # A fresh list: every row is either added or a bad row with its reason.
        assert report.added + len(report.bad_rows) == len(rows)
        assert (report.updated, report.unchanged, report.suppressed) == (0, 0, [])
        assert all(reason for _, reason in report.bad_rows)
        assert len({line for line, _ in report.bad_rows}) == len(report.bad_rows)
        stored = {row[0] for row in db.execute("SELECT email FROM subscribers")}
        assert len(stored) == report.added
        assert stored <= {check_email(r["email"]) for r in rows if _valid(r["email"])}
        assert_every_reader_whole_and_sendable(db, config)
        # What was stored survives an export and an import into an empty list unchanged.
        export_csv(db, Path(folder) / "all.csv")
        again = open_db(Path(folder) / "again.db")
        import_csv(again, Path(folder) / "all.csv")
        # Link nonces are each list's own secrets: a new list makes new ones.
        assert {replace(s, link_nonce="") for s in list_subscribers(again)} == {
            replace(s, link_nonce="") for s in list_subscribers(db)
        }
        again.close()
        db.close()


def _valid(address: str) -> bool:
    try:
        check_email(address)
    except SubscriberError:
        return False
    return True


@SETTINGS
@given(
    email=st.one_of(EMAILS, st.text(max_size=30)),
    name=st.text(max_size=130),
    topics=st.lists(TEXT, max_size=3),
    zone=ZONES,
)
def test_add_stores_a_sendable_reader_or_says_why_not(tmp_path, email, name, topics, zone):
    with tempfile.TemporaryDirectory(dir=tmp_path) as folder:
        config = make_config(Path(folder))
        db = open_db(config.db_path)
        try:
            add_subscriber(db, email, name, topics, zone)
        except SubscriberError as exc:
            assert str(exc)
            assert db.execute("SELECT COUNT(*) FROM subscribers").fetchone()[0] == 0
            assert db.execute("SELECT COUNT(*) FROM subscriptions").fetchone()[0] == 0
        assert_every_reader_whole_and_sendable(db, config)
        db.close()


@SETTINGS
@given(content=st.binary(max_size=300))
def test_any_file_is_imported_or_refused_in_one_line(tmp_path, content):
    with tempfile.TemporaryDirectory(dir=tmp_path) as folder:
        config = make_config(Path(folder))
        db = open_db(config.db_path)
        path = Path(folder) / "readers.csv"
        path.write_bytes(b"email,name,topics,timezone\n" + content)
        try:
            import_csv(db, path)
        except SubscriberError as exc:
            assert "readers.csv" in str(exc)
        assert_every_reader_whole_and_sendable(db, config)
        db.close()


@SETTINGS
@given(email=EMAILS, name=st.text(st.characters(blacklist_categories=("Cs",)), max_size=300))
def test_a_stored_reader_is_either_refused_at_send_or_gets_a_message(tmp_path, email, name):
    """Rows stored before the entry checks: any name, and any address that was valid then."""
    try:
        stored = validate_email(email.strip(), check_deliverability=False).normalized
    except EmailNotValidError:
        return  # never stored, by any version
    try:
        address, display = sendable_recipient(stored, name)
    except SubscriberError as exc:
        assert "SMTPUTF8" in str(exc)
        return
    assert encoded_message(make_config(tmp_path), display, address).isascii()
