"""The subscriber list: adding, CSV import with bad rows, and case-insensitive addresses."""

from __future__ import annotations

import pytest

from digest.errors import SubscriberError
from digest.readers.subscribers import add_subscriber, import_csv, list_subscribers, unsubscribe

CSV = """email,name,topics,timezone
ana@example.com,Ana,World;Science,Europe/London
not-an-address,Bad,,UTC
bo@example.org,,,Mars/Olympus
cy@example.net,Cy,,Asia/Tokyo
ANA@example.com,Ana again,,UTC
"""


def write_csv(tmp_path, text=CSV):
    path = tmp_path / "list.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_import_reports_each_bad_row_by_line_and_keeps_the_good_ones(db, tmp_path):
    report = import_csv(db, write_csv(tmp_path))
    assert [s.email for s in list_subscribers(db)] == ["ana@example.com", "cy@example.net"]
    lines = dict(report.bad_rows)
    assert set(lines) == {3, 4, 6}
    assert "invalid address" in lines[3]
    assert "unknown time zone 'Mars/Olympus'" in lines[4]
    assert "duplicate of line 2" in lines[6]
    assert report.summary() == "imported: 2 added, 0 updated, 0 unchanged, 3 bad rows"


def test_imported_topics_are_normalized(db, tmp_path):
    import_csv(db, write_csv(tmp_path))
    [ana] = [s for s in list_subscribers(db) if s.name == "Ana"]
    assert ana.topics == ("science", "world")
    assert ana.timezone == "Europe/London"


def test_importing_the_same_file_again_changes_nothing(db, tmp_path):
    path = write_csv(tmp_path)
    import_csv(db, path)
    again = import_csv(db, path)
    assert (again.added, again.updated, again.unchanged) == (0, 0, 2)


def test_import_never_reactivates_an_unsubscribed_reader(db, tmp_path):
    import_csv(db, write_csv(tmp_path))
    unsubscribe(db, "ana@example.com")
    report = import_csv(db, write_csv(tmp_path))
    assert [s.status for s in list_subscribers(db) if s.email == "ana@example.com"] == [
        "unsubscribed"
    ]
    assert report.suppressed == ["line 2: ana@example.com is unsubscribed"]


def test_a_file_without_an_email_column_is_refused_whole(db, tmp_path):
    with pytest.raises(SubscriberError, match="no 'email' column"):
        import_csv(db, write_csv(tmp_path, "name,topics\nAna,world\n"))


def test_addresses_are_unique_whatever_their_letter_case(db):
    add_subscriber(db, "Ana@Example.com")
    with pytest.raises(SubscriberError, match="already on the list"):
        add_subscriber(db, "ana@example.COM")


def test_adding_a_bad_time_zone_names_it(db):
    with pytest.raises(SubscriberError, match="unknown time zone 'Europe/Londn'"):
        add_subscriber(db, "ana@example.com", timezone="Europe/Londn")


def test_a_file_that_is_not_utf8_is_a_clear_error_naming_the_fix(db, tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("email,name\nana@example.com,Ana\nbo@example.com,Bj\xf6rk\n".encode("latin-1"))
    with pytest.raises(SubscriberError, match=r"excel\.csv near line .*save the file as UTF-8"):
        import_csv(db, path)
