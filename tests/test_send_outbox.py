"""Sending through the local outbox: the .eml files, the ledger, idempotence and the audience."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import timedelta
from email.utils import parsedate_to_datetime

import pytest

from digest.clock import to_db, utcnow
from digest.config import parse_config
from digest.delivery.ledger import edition_counts
from digest.delivery.send import send_newsletter
from digest.delivery.transports.outbox import OutboxTransport
from digest.readers.subscribers import add_subscriber, import_csv, unsubscribe
from digest.store import open_db
from digest.tokens import TokenSigner

from helpers import EDITION_TIME, add_stories, make_config, story

NOW = EDITION_TIME + timedelta(minutes=3)


@pytest.fixture
def newsroom(db):
    """Four stories, two active readers, one unsubscribed reader."""
    add_stories(
        db,
        story(1, title="Tram runs all night", category="world"),
        story(2, title="Café prices rise", category="business"),
        story(3, title="Otters return", category="science"),
        story(5, title="Cup final tonight", category="sport"),
    )
    add_subscriber(db, "ana@example.com", "Ana Lind")
    add_subscriber(db, "bo@example.org", "", ["science", "sport"], "Asia/Tokyo")
    add_subscriber(db, "cy@example.net", "Cy")
    unsubscribe(db, "cy@example.net")
    return db


def outbox_messages(config) -> dict[str, email.message.EmailMessage]:
    return {
        path.name: email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        for path in sorted(config.outbox_dir.rglob("*.eml"))
    }


def test_each_active_reader_gets_one_eml_and_inactive_ones_none(newsroom, config):
    report = send_newsletter(newsroom, config, None, NOW, transport=OutboxTransport(config))
    assert set(outbox_messages(config)) == {"ana@example.com.eml", "bo@example.org.eml"}
    assert report.total("sent") == 2
    assert (
        report.summary() == "daily at 2026-11-26 07:00 UTC: sent 2, failed 0, skipped 0, unknown 0"
    )


def test_the_eml_is_multipart_alternative_text_first_html_last_utf8(newsroom, config):
    send_newsletter(newsroom, config, None, NOW, transport=OutboxTransport(config))
    message = outbox_messages(config)["ana@example.com.eml"]
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    assert "Café prices rise" in parts[0].get_content()
    assert "Caf\u00e9 prices rise" in parts[1].get_content()
    assert "Hello Ana Lind," in parts[0].get_content()


def test_the_eml_headers_are_complete(newsroom, config):
    before = utcnow()
    send_newsletter(newsroom, config, None, NOW, transport=OutboxTransport(config))
    message = outbox_messages(config)["ana@example.com.eml"]
    assert message["From"].addresses[0].addr_spec == "digest@news.test"
    assert message["To"].addresses[0].addr_spec == "ana@example.com"
    assert message["Subject"] == "Test Daily: Tram runs all night"
    assert parsedate_to_datetime(message["Date"]) >= before - timedelta(seconds=1)
    assert re.fullmatch(r"<[^@\s]+@news\.test>", message["Message-ID"])
    assert message["List-Id"] == '"Test Daily" <daily.news.test>'
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_the_unsubscribe_header_and_body_link_carry_the_same_signed_token(newsroom, config):
    send_newsletter(newsroom, config, None, NOW, transport=OutboxTransport(config))
    message = outbox_messages(config)["ana@example.com.eml"]
    url = re.fullmatch(r"<(https://news\.test/u/(\S+))>", message["List-Unsubscribe"])
    assert url, message["List-Unsubscribe"]
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    assert f'href="{url.group(1)}"' in html
    assert url.group(1) in text
    ana = newsroom.execute(
        "SELECT id, link_nonce FROM subscribers WHERE email = 'ana@example.com'"
    ).fetchone()
    assert TokenSigner("test-secret").read(url.group(2)) == (ana[0], ana[1], "daily")


def test_readers_with_topics_get_their_own_variant(newsroom, config):
    report = send_newsletter(newsroom, config, None, NOW, transport=OutboxTransport(config))
    assert len(report.editions) == 2
    bo = outbox_messages(config)["bo@example.org.eml"].get_body(("plain",)).get_content()
    assert "Otters return" in bo and "Cup final tonight" in bo
    assert "Tram runs all night" not in bo


def test_every_recipient_is_recorded_in_the_ledger(newsroom, config):
    report = send_newsletter(newsroom, config, None, NOW, transport=OutboxTransport(config))
    for result in report.editions:
        assert edition_counts(newsroom, result.edition.id)["sent"] == 1
    rows = newsroom.execute(
        "SELECT email, status, sent_at FROM deliveries ORDER BY email"
    ).fetchall()
    assert [(r[0], r[1]) for r in rows] == [("ana@example.com", "sent"), ("bo@example.org", "sent")]
    assert all(r[2] for r in rows)


def test_a_second_send_of_the_same_edition_sends_nothing(newsroom, config):
    send_newsletter(newsroom, config, None, NOW, transport=OutboxTransport(config))
    first = {p: p.stat().st_mtime_ns for p in config.outbox_dir.rglob("*.eml")}
    report = send_newsletter(
        newsroom, config, None, NOW + timedelta(hours=1), transport=OutboxTransport(config)
    )
    assert report.total("sent") == 2  # the same two, not two more
    assert newsroom.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0] == 2
    assert {p: p.stat().st_mtime_ns for p in config.outbox_dir.rglob("*.eml")} == first


def test_a_reader_who_joins_after_the_edition_started_waits_for_the_next(newsroom, config):
    send_newsletter(newsroom, config, None, NOW, transport=OutboxTransport(config))
    add_subscriber(newsroom, "late@example.com", "Late")
    send_newsletter(
        newsroom, config, None, NOW + timedelta(minutes=5), transport=OutboxTransport(config)
    )
    assert "late@example.com.eml" not in outbox_messages(config)


def test_dry_run_builds_and_reports_but_sends_and_records_nothing(newsroom, config):
    report = send_newsletter(newsroom, config, None, NOW, transport=None, dry_run=True)
    assert "would go to 2 readers" in report.summary()
    assert not config.outbox_dir.exists()
    for table in ("editions", "deliveries"):
        assert newsroom.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 0


def test_next_days_edition_never_repeats_a_story(newsroom, config):
    send_newsletter(newsroom, config, None, NOW, transport=OutboxTransport(config))
    add_stories(newsroom, story(1, at=EDITION_TIME + timedelta(days=1), title="New day story"))
    report = send_newsletter(
        newsroom, config, None, NOW + timedelta(days=1), transport=OutboxTransport(config)
    )
    [everyone] = [r.edition for r in report.editions if not r.edition.topics]
    assert "New day story" in everyone.text
    # "Also read" links are context, not news: they may point to a story sent before.
    news = "\n".join(line for line in everyone.text.splitlines() if "Also read:" not in line)
    for old in ("Tram runs all night", "Café prices rise", "Otters return", "Cup final tonight"):
        assert old not in news


def test_an_edition_with_no_stories_is_skipped(db, config):
    add_subscriber(db, "ana@example.com")
    report = send_newsletter(db, config, None, NOW, transport=OutboxTransport(config))
    assert [r.note for r in report.editions] == ["skipped: no new stories"]
    assert not config.outbox_dir.exists()


def test_environment_overrides_the_transport_and_outbox(tmp_path):
    config = make_config(tmp_path)
    data = {"transport": {"kind": "outbox", "outbox": "outbox"}}
    env = {"DIGEST_OUTBOX": str(tmp_path / "elsewhere"), "DIGEST_TRANSPORT": "sendgrid"}
    overridden = parse_config(data, tmp_path / "digest.toml", env)
    assert overridden.outbox_dir == tmp_path / "elsewhere"
    assert overridden.transport == "sendgrid"
    assert config.transport == "outbox"


def test_every_transport_kind_the_config_accepts_has_a_transport():
    from digest.config import TRANSPORTS
    from digest.delivery.transports import TRANSPORT_CLASSES

    assert set(TRANSPORT_CLASSES) == set(TRANSPORTS)


class LeaverAfterFirstBatch(OutboxTransport):
    """Unsubscribes a reader (as the web app would, from another connection) once the first
    batch has gone, optionally stamping the change as if made long before it committed."""

    def __init__(self, config, leaver: str, stamp: str | None = None):
        super().__init__(config, batch_size=5)
        self.leaver, self.stamp = leaver, stamp

    def send_batch(self, edition, batch):
        provider_id = super().send_batch(edition, batch)
        if self.leaver:
            other = open_db(self.config.db_path)
            unsubscribe(other, self.leaver)
            if self.stamp:
                other.execute("UPDATE subscribers SET updated_at = ?", [self.stamp])
                other.execute("UPDATE subscriptions SET updated_at = ?", [self.stamp])
            other.close()
            self.leaver = ""
        return provider_id


def bulk_import(db, tmp_path, count: int) -> list[str]:
    emails = [f"reader{n:03d}@example.com" for n in range(count)]
    path = tmp_path / "bulk.csv"
    path.write_text("email,name\n" + "".join(f"{e},Reader {n}\n" for n, e in enumerate(emails)))
    import_csv(db, path)
    return emails


def test_a_reader_who_leaves_during_a_send_after_a_bulk_import_is_skipped(db, config, tmp_path):
    add_stories(db, story(1, title="Tram runs all night"))
    emails = bulk_import(db, tmp_path, 20)
    report = send_newsletter(
        db, config, None, NOW, transport=LeaverAfterFirstBatch(config, emails[-1])
    )
    assert (report.total("sent"), report.total("skipped")) == (19, 1)
    assert f"{emails[-1]}.eml" not in outbox_messages(config)


def test_a_leaver_is_skipped_whatever_time_their_change_is_stamped_with(db, config, tmp_path):
    # A change stamped long before the freeze but committed during the send (a slow
    # transaction, a clock behind): the check reads the reader as they are, not the stamp.
    add_stories(db, story(1, title="Tram runs all night"))
    emails = bulk_import(db, tmp_path, 20)
    stamp = to_db(NOW - timedelta(days=2))
    transport = LeaverAfterFirstBatch(config, emails[-1], stamp)
    report = send_newsletter(db, config, None, NOW, transport=transport)
    assert (report.total("sent"), report.total("skipped")) == (19, 1)
    assert f"{emails[-1]}.eml" not in outbox_messages(config)


def test_a_full_disk_fails_only_the_readers_without_a_file_and_leaves_no_temp_files(
    db, config, tmp_path
):
    from digest.config import with_overrides

    from helpers import small_disk

    add_stories(db, story(1, title="Tram runs all night"), story(2, title="Otters return"))
    for n in range(60):
        add_subscriber(db, f"reader{n:02d}@example.com", f"Reader {n}")
    with small_disk(tmp_path / "small", "160k") as outbox:
        config = with_overrides(config, outbox_dir=outbox)
        report = send_newsletter(
            db, config, None, NOW, transport=OutboxTransport(config, batch_size=7)
        )
        files = {p.name for p in outbox.rglob("*") if p.is_file()}
        rows = db.execute("SELECT email, status, error FROM deliveries").fetchall()
    assert not [name for name in files if name.endswith(".tmp")]
    sent = {f"{email}.eml" for email, status, _ in rows if status == "sent"}
    failed = [error for _, status, error in rows if status == "failed"]
    # The disk filled part way: what the ledger calls sent is exactly what is on disk.
    assert sent == files and 0 < len(sent) < 60 and len(failed) == 60 - len(sent)
    assert all("No space left on device" in error for error in failed)
    assert report.total("failed") == len(failed)
