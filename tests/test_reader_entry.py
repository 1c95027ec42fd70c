"""What every reader entry point (import, add, sign-up) refuses or cleans; the CSV round trip."""

from __future__ import annotations

import csv
import email
import email.policy

import pytest

from digest.delivery.transports.outbox import OutboxTransport
from digest.errors import SubscriberError
from digest.readers.preferences import save_preferences
from digest.readers.signup import process_signups, sign_up
from digest.readers.subscribers import (
    add_subscriber,
    export_csv,
    find_subscriber,
    import_csv,
    list_subscribers,
    unsubscribe,
)
from digest.readers.subscriptions import set_subscription, subscriptions_of
from digest.store import open_db
from digest.urls import ReaderLinks

from helpers import make_config


def import_rows(db, tmp_path, *rows: str, header: str = "email,name,topics,timezone"):
    path = tmp_path / "readers.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return import_csv(db, path)


def emails(db) -> list[str]:
    return [s.email for s in list_subscribers(db)]


def test_add_refuses_an_address_with_a_non_ascii_local_part_saying_why(db):
    with pytest.raises(SubscriberError, match=r"'josé@example.com'.*SMTPUTF8"):
        add_subscriber(db, "josé@example.com")
    assert emails(db) == []


def test_import_refuses_a_non_ascii_local_part_as_a_bad_row_and_keeps_the_others(db, tmp_path):
    report = import_rows(db, tmp_path, "josé@example.com,José,,UTC", "ana@example.com,Ana,,UTC")
    [(line, reason)] = report.bad_rows
    assert line == 2 and "SMTPUTF8" in reason
    assert emails(db) == ["ana@example.com"]


def test_the_sign_up_form_refuses_a_non_ascii_local_part(db, config):
    with pytest.raises(SubscriberError, match="SMTPUTF8"):
        sign_up(db, config, "josé@example.com")
    assert emails(db) == []


def test_a_unicode_domain_is_one_reader_however_its_letters_are_cased(db):
    add_subscriber(db, "Ana@BÜCHER.de")
    with pytest.raises(SubscriberError, match="already on the list"):
        add_subscriber(db, "ana@bücher.DE")
    assert unsubscribe(db, "ANA@BÜCHER.DE").status == "unsubscribed"
    assert emails(db) == ["Ana@bücher.de"]


def test_addresses_differing_only_in_non_ascii_case_never_make_two_readers(db):
    # SQLite's NOCASE folds ASCII letters only: such addresses are refused, not stored twice.
    for address in ("JOSÉ@example.com", "josé@example.com"):
        with pytest.raises(SubscriberError, match="SMTPUTF8"):
            add_subscriber(db, address)
    assert emails(db) == []


def test_an_import_finds_a_unicode_domain_reader_in_another_case(db, tmp_path):
    add_subscriber(db, "ana@bücher.de", "Ana")
    report = import_rows(db, tmp_path, "ANA@BÜCHER.DE,Ana Lind,,UTC")
    assert (report.added, report.updated) == (0, 1)
    assert find_subscriber(db, "ana@bücher.de").name == "Ana Lind"


def test_add_cleans_control_characters_out_of_a_name(db):
    assert add_subscriber(db, "ana@example.com", "Ana\r\nBcc: eve@example.com").name == (
        "Ana Bcc: eve@example.com"
    )


def test_import_cleans_control_characters_out_of_a_name(db, tmp_path):
    import_rows(db, tmp_path, '"bo@example.com","Bo\x1b[2J\u202eLind\x00",,UTC')
    assert find_subscriber(db, "bo@example.com").name == "Bo [2J Lind"


def test_the_sign_up_form_refuses_control_characters_in_a_name_and_writes_nothing(db, config):
    # A file's rows are cleaned; a person typing in the form is told, so nothing is guessed.
    with pytest.raises(SubscriberError, match="control character"):
        sign_up(db, config, "cy@example.com", name="Cy\r\nX-Evil: 1")
    assert emails(db) == []
    assert db.execute("SELECT COUNT(*) FROM signup_requests").fetchone()[0] == 0


def test_a_name_longer_than_a_greeting_takes_is_refused_at_every_entry(db, tmp_path):
    with pytest.raises(SubscriberError, match="longer than 100"):
        add_subscriber(db, "ana@example.com", "N" * 101)
    report = import_rows(db, tmp_path, f"bo@example.com,{'N' * 101},,UTC")
    assert "longer than 100" in report.bad_rows[0][1]
    assert emails(db) == []


@pytest.mark.parametrize("zone", ["a" * 300, "Factory", "posixrules", "right/UTC", "UTC\x00"])
def test_a_time_zone_that_is_no_place_is_refused_with_the_reason(db, tmp_path, zone):
    with pytest.raises(SubscriberError, match="unknown time zone"):
        add_subscriber(db, "ana@example.com", timezone=zone)
    report = import_rows(db, tmp_path, f'bo@example.com,,,"{zone}"')
    assert "unknown time zone" in report.bad_rows[0][1]
    assert emails(db) == []


def test_topics_with_control_characters_are_refused(db, tmp_path):
    with pytest.raises(SubscriberError, match="control characters"):
        add_subscriber(db, "ana@example.com", topics=["world\x1b[0m"])
    report = import_rows(db, tmp_path, 'bo@example.com,,"sport;sci\rence",UTC')
    assert "control characters" in report.bad_rows[0][1]


def exported(db, tmp_path) -> list[dict[str, str]]:
    path = tmp_path / "out.csv"
    export_csv(db, path)
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_export_guards_a_formula_in_the_email_column_too(db, tmp_path):
    add_subscriber(db, "=cmd@example.com", "=1+1")
    add_subscriber(db, "+tag@example.com", "'quoted")
    rows = exported(db, tmp_path)
    assert [(r["email"], r["name"]) for r in rows] == [
        ("'=cmd@example.com", "'=1+1"),
        ("'+tag@example.com", "''quoted"),
    ]


def test_an_exported_list_imports_back_exactly_as_it_was(db, tmp_path):
    readers = {
        "=cmd@example.com": "=1+1",
        "+tag@example.com": "'quoted",
        "-dash@example.com": "@home",
        "'q@example.com": "''twice",
        "plain@example.com": "O'Neil",
    }
    for address, name in readers.items():
        add_subscriber(db, address, name, ["-minus;world"])
    path = tmp_path / "all.csv"
    export_csv(db, path)
    fresh = open_db(tmp_path / "fresh.db")
    report = import_csv(fresh, path)
    assert (report.added, report.bad_rows) == (5, [])
    assert {s.email: s.name for s in list_subscribers(fresh)} == readers
    assert {s.topics for s in list_subscribers(fresh)} == {("-minus", "world")}


def test_an_export_imported_into_an_empty_list_keeps_every_status(tmp_path):
    config = make_config(
        tmp_path,
        newsletters={"daily": {"title": "Daily"}, "weekly": {"title": "Weekly"}},
    )
    db = open_db(config.db_path)
    add_subscriber(db, "ana@example.com")
    add_subscriber(db, "bo@example.com")
    unsubscribe(db, "bo@example.com")
    add_subscriber(db, "cy@example.com", status="bounced")
    add_subscriber(db, "dee@example.com", status="pending")
    add_subscriber(db, "eve@example.com", newsletter="weekly")
    add_subscriber(db, "fay@example.com")
    set_subscription(db, find_subscriber(db, "fay@example.com").id, "weekly", "active", "cli")
    unsubscribe(db, "fay@example.com", "daily")
    export_csv(db, tmp_path / "all.csv")
    fresh = open_db(tmp_path / "fresh.db")
    report = import_csv(fresh, tmp_path / "all.csv", "daily")
    assert (report.added, report.bad_rows) == (6, [])

    def statuses(database):
        return {
            s.email: (s.status, subscriptions_of(database, s.id))
            for s in list_subscribers(database)
        }

    assert statuses(fresh) == statuses(db)
    assert statuses(fresh)["bo@example.com"] == ("unsubscribed", {"daily": "unsubscribed"})
    assert statuses(fresh)["eve@example.com"] == ("active", {"weekly": "active"})


@pytest.mark.parametrize(
    ("status", "newsletters", "reason"),
    [
        ("gone", "", "status 'gone' is not one of"),
        ("active", "daily=active", "write each as newsletter:status"),
        ("unsubscribed", "daily:active", "status unsubscribed disagrees with newsletters"),
    ],
)
def test_a_row_with_a_status_that_cannot_be_is_a_bad_row(db, tmp_path, status, newsletters, reason):
    report = import_rows(
        db,
        tmp_path,
        f"ana@example.com,{status},{newsletters}",
        header="email,status,newsletters",
    )
    assert reason in report.bad_rows[0][1]
    assert emails(db) == []


def test_the_preferences_form_refuses_a_time_zone_that_is_no_place_and_changes_nothing(db, config):
    ana = add_subscriber(db, "ana@example.com", timezone="Europe/London")
    token = ReaderLinks(config, "daily").reader_token(ana.id, ana.link_nonce)
    with pytest.raises(SubscriberError, match="unknown time zone"):
        save_preferences(db, config, token, topics=[], timezone="a" * 300, newsletters=["daily"])
    assert find_subscriber(db, "ana@example.com").timezone == "Europe/London"


def test_a_confirmation_to_a_unicode_domain_goes_to_its_ascii_form(db, config):
    sign_up(db, config, "ana@Bücher.de")
    process_signups(db, config, OutboxTransport(config))
    path = config.outbox_dir / "confirmations" / "ana@xn--bcher-kva.de.eml"
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert message["To"].addresses[0].addr_spec == "ana@xn--bcher-kva.de"
