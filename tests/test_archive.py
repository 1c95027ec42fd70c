"""The public archive: web copies with nothing of any reader, its pages, feeds and bad input."""

from __future__ import annotations

import email
import email.policy
import re
import shutil
from datetime import timedelta
from xml.etree import ElementTree

import feedparser
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from digest.archive.days import set_hidden
from digest.archive.pages import Archive
from digest.archive.static import build_static
from digest.clock import utcnow
from digest.config import parse_config
from digest.delivery.send import send_slot
from digest.delivery.transports.outbox import OutboxTransport
from digest.edition.build import latest_slot
from digest.readers.subscribers import add_subscriber
from digest.run import run_due
from digest.store import open_db
from digest.tokens import TokenSigner
from digest.web import create_app

from helpers import EDITION_TIME, add_stories, config_data, make_config, story, write_config

NOW = EDITION_TIME + timedelta(minutes=3)
# Names no page of the archive could contain by chance.
READERS = [
    ("zephyrine.quillfeather@example.com", "Zephyrine Quillfeather", (), "UTC"),
    ("barnabus.oxtongue@example.org", "Barnabus Oxtongue", ("science", "sport"), "UTC"),
    ("ottoline.vexworth@example.net", "Ottoline Vexworth", (), "Asia/Tokyo"),
]


def send_day(db, config, now=NOW):
    """What `digest run` does at `now`: each zone's slot, to its readers."""
    newsletter = config.newsletter("daily")
    for zone in ("UTC", "Asia/Tokyo"):
        slot = latest_slot(newsletter, now, zone)
        send_slot(db, config, newsletter, slot, timezone=zone, transport=OutboxTransport(config))


@pytest.fixture
def sent(db, config):
    """Two days of stories, three readers with distinctive names, two days sent."""
    add_stories(
        db,
        story(1, title="Tram runs all night", category="world", image_url="https://img.test/t.jpg"),
        story(2, title="Otters return <script>alert(1)</script>", category="science"),
        story(3, title="Cup final tonight", category="sport"),
        story(26, title="Harbour reopens", category="world"),
        story(27, title="Comet seen", category="science"),
    )
    readers = [add_subscriber(db, e, n, t, z) for e, n, t, z in READERS]
    send_day(db, config, NOW - timedelta(days=1))
    send_day(db, config)
    return readers


@pytest.fixture
def client(config):
    return create_app(config).test_client()


def outbox(config) -> dict[str, email.message.EmailMessage]:
    return {
        path.parent.name + "/" + path.name: email.message_from_bytes(
            path.read_bytes(), policy=email.policy.default
        )
        for path in sorted(config.outbox_dir.rglob("*.eml"))
    }


def view_link(message) -> tuple[str, str]:
    """The "View in your browser" link of the HTML part and of the text part."""
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    in_html = re.search(r'<a href="([^"]+)"[^>]*>View in your browser</a>', html)
    in_text = re.search(r"View in your browser:\r?\n(\S+)", text)
    assert in_html and in_text, "both parts carry the link"
    return in_html.group(1), in_text.group(1)


def every_archive_resource(client) -> dict[str, str]:
    """Every page and feed of the archive, fetched as a visitor would (all answer 200)."""
    archive = client.application.extensions["digest_archive"]
    with client.application.app_context():
        paths = Archive(archive.database(), archive.config()).every_path()
    found = {}
    for path in paths:
        answer = client.get(path)
        assert answer.status_code == 200, path
        found[path] = answer.get_data(as_text=True)
    return found


def test_every_email_links_to_its_own_variants_web_copy_in_both_parts(sent, config, client):
    messages = outbox(config)
    assert len(messages) == 5, sorted(messages)
    for name, message in messages.items():
        html_link, text_link = view_link(message)
        assert html_link == text_link
        assert html_link.startswith("https://news.test/archive/daily/")
        page = client.get(html_link.removeprefix("https://news.test"))
        assert page.status_code == 200, name
        body = page.get_data(as_text=True)
        # The same stories as the email, the reader's own topics.
        email_html = message.get_body(("html",)).get_content()
        titles = re.findall(r'class="story-title"[^>]*><a [^>]*>([^<]+)</a>', email_html)
        assert titles
        assert re.findall(r'class="story-title"[^>]*><a [^>]*>([^<]+)</a>', body) == titles


def test_a_tokyo_readers_link_names_their_own_local_day_and_hour(sent, config):
    message = outbox(config)[
        "daily-20261125T2200Z-all-Asia_Tokyo/ottoline.vexworth@example.net.eml"
    ]
    link, _ = view_link(message)
    assert link == "https://news.test/archive/daily/2026-11-26/0700.asia-tokyo.all/"


def test_no_page_or_feed_of_the_archive_holds_anything_of_any_reader(sent, db, config, client):
    resources = every_archive_resource(client)
    assert any("/feed.atom" in path for path in resources)
    assert any(path.endswith(".all/") for path in resources), "variant copies are included"
    signer = TokenSigner(config.secret_key)
    secrets = []
    for reader in sent:
        secrets += [reader.email, reader.name, *reader.name.split(), reader.link_nonce]
        secrets.append(signer.make(reader.id, reader.link_nonce, "daily"))
    secrets += [code for (code,) in db.execute("SELECT confirm_code FROM subscriptions") if code]
    for path, body in resources.items():
        for secret in secrets:
            assert secret not in body, f"{secret!r} in {path}"
        assert "/u/" not in body, f"a reader's link in {path}"
        assert "%%" not in body, f"a placeholder in {path}"


def test_a_web_copy_greets_nobody_and_invites_a_sign_up(sent, client):
    body = client.get("/archive/daily/2026-11-26/").get_data(as_text=True)
    assert "Hello," in body
    assert "View in your browser" not in body
    assert "Unsubscribe" not in body
    assert 'href="https://news.test/subscribe?newsletter=daily"' in body
    assert '<form method="post" action="https://news.test/subscribe">' in body
    assert '<input type="hidden" name="newsletter" value="daily">' in body


def test_the_newsletters_archive_lists_its_days_newest_first(sent, client):
    body = client.get("/archive/daily/").get_data(as_text=True)
    days = re.findall(r'<time datetime="([\d-]+)"', body)
    assert days == ["2026-11-26", "2026-11-25"]
    assert "Tram runs all night" in body
    assert "Otters return &lt;script&gt;" in body
    assert "<script>alert" not in body


def test_the_days_edition_is_frozen_when_first_built(sent, db, config, client):
    first = client.get("/archive/daily/2026-11-26/").get_data(as_text=True)
    add_stories(db, story(0.5, title="A late scoop", category="world", at=EDITION_TIME))
    db.execute("UPDATE stories SET title = 'Rewritten' WHERE title = 'Tram runs all night'")
    again = client.get("/archive/daily/2026-11-26/").get_data(as_text=True)
    assert again == first
    assert "Tram runs all night" in again and "A late scoop" not in again


def test_archive_pages_link_their_feed_canonical_url_and_cards(sent, client):
    body = client.get("/archive/daily/2026-11-26/").get_data(as_text=True)
    assert '<link rel="canonical" href="https://news.test/archive/daily/2026-11-26/">' in body
    assert (
        '<link rel="alternate" type="application/atom+xml" title="Test Daily" '
        'href="https://news.test/archive/daily/feed.atom">'
    ) in body
    assert '<meta property="og:url" content="https://news.test/archive/daily/2026-11-26/">' in body
    assert '<meta property="og:image" content="https://img.test/t.jpg">' in body
    assert '<meta name="twitter:card" content="summary_large_image">' in body
    assert 'rel="prev">Previous: Wednesday 25 November 2026</a>' in body


def test_the_feed_is_valid_atom_with_each_day_in_full(sent, client):
    answer = client.get("/archive/daily/feed.atom")
    assert answer.content_type == "application/atom+xml; charset=utf-8"
    parsed = feedparser.parse(answer.get_data())
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert [e.link for e in parsed.entries] == [
        "https://news.test/archive/daily/2026-11-26/",
        "https://news.test/archive/daily/2026-11-25/",
    ]
    assert "Tram runs all night" in parsed.entries[0].content[0].value
    assert parsed.feed.links[-1].rel == "self"


def test_a_topic_feed_carries_that_topics_stories(sent, client):
    parsed = feedparser.parse(client.get("/archive/daily/topics/science/feed.atom").get_data())
    assert not parsed.bozo
    content = parsed.entries[0].content[0].value
    assert "Otters return" in content and "Tram runs all night" not in content


def test_control_characters_and_markup_leave_the_feed_valid(db, config, client):
    add_stories(db, story(1, title="Bad \x07bell & <b>bold</b> \x1b[31m", category="world"))
    add_subscriber(db, "zz@example.com", "Zz")
    send_day(db, config)
    body = client.get("/archive/daily/feed.atom").get_data()
    ElementTree.fromstring(body)
    parsed = feedparser.parse(body)
    assert not parsed.bozo
    assert "&lt;b&gt;bold&lt;/b&gt;" in parsed.entries[0].content[0].value


def test_the_sitemap_lists_the_index_the_list_and_each_day(sent, client):
    body = client.get("/archive/sitemap.xml").get_data()
    tree = ElementTree.fromstring(body)
    locs = [e.text for e in tree.iter("{http://www.sitemaps.org/schemas/sitemap/0.9}loc")]
    assert locs == [
        "https://news.test/archive/",
        "https://news.test/archive/daily/",
        "https://news.test/archive/daily/2026-11-26/",
        "https://news.test/archive/daily/2026-11-25/",
    ]


def test_an_unchanged_page_answers_304_with_public_cache_headers(sent, client):
    first = client.get("/archive/daily/2026-11-26/")
    assert first.headers["Cache-Control"] == "public, max-age=300"
    assert first.headers["ETag"] and first.headers["Last-Modified"]
    again = client.get(
        "/archive/daily/2026-11-26/", headers={"If-None-Match": first.headers["ETag"]}
    )
    assert again.status_code == 304
    since = client.get(
        "/archive/daily/2026-11-26/", headers={"If-Modified-Since": first.headers["Last-Modified"]}
    )
    assert since.status_code == 304


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/archive/daily/2026-02-30/", 404),
        ("/archive/daily/2026-13-01/", 404),
        ("/archive/daily/yesterday/", 404),
        ("/archive/daily/2020-01-01/", 404),
        ("/archive/weekly/", 404),
        ("/archive/daily/topics/knitting/feed.atom", 404),
        ("/archive/daily/2026-11-26/0700.utc.knitting/", 404),
        ("/archive/../etc/passwd", 404),
        ("/archive/daily/..%2F..%2Fetc/", 404),
        ("/archive/daily/2026-11-26%2F..%2F/", 404),
        ("/archive/daily/?page=99999999999999999999", 400),
        ("/archive/daily/?page=-1", 400),
        ("/archive/daily/?page=abc", 400),
        ("/archive/daily/?page=999", 404),
        ("/archive/daily/page/0/", 400),
    ],
)
def test_bad_paths_get_a_page_and_never_a_500(sent, client, path, status):
    answer = client.get(path, follow_redirects=True)
    assert answer.status_code == status
    assert "<h1>" in answer.get_data(as_text=True)


def test_a_private_newsletter_has_no_archive_and_no_link(tmp_path, migrated_database):
    config = make_config(tmp_path, {"archive": False})
    shutil.copyfile(migrated_database, config.db_path)
    db = open_db(config.db_path)
    add_stories(db, story(1, title="Quiet news"))
    add_subscriber(db, "ana@example.com", "Ana")
    send_day(db, config)
    message = next(iter(outbox(config).values()))
    assert "View in your browser" not in message.get_body(("plain",)).get_content()
    client = create_app(config).test_client()
    assert client.get("/archive/daily/").status_code == 404
    assert client.get("/archive/daily/2026-11-26/").status_code == 404
    assert "Test Daily" not in client.get("/archive/").get_data(as_text=True)


def test_hiding_a_day_changes_the_validators_of_the_pages_that_showed_it(sent, db, client):
    paths = ["/archive/daily/", "/archive/daily/feed.atom", "/archive/daily/2026-11-25/"]
    before = {path: client.get(path).headers["Last-Modified"] for path in paths}
    # HTTP dates have whole seconds: hidden a second later, as any real hide is.
    set_hidden(db, "daily", EDITION_TIME.date(), True, now=utcnow() + timedelta(seconds=1))
    for path in paths:
        answer = client.get(path, headers={"If-Modified-Since": before[path]})
        assert answer.status_code == 200, path
        assert "2026-11-26" not in answer.get_data(as_text=True), path


def test_a_hidden_day_answers_410_and_leaves_lists_feeds_and_sitemap(sent, db, client):
    client.get("/archive/daily/")
    set_hidden(db, "daily", EDITION_TIME.date(), True)
    assert client.get("/archive/daily/2026-11-26/").status_code == 410
    assert client.get("/archive/daily/2026-11-26/0700.utc.all/").status_code == 410
    assert "2026-11-26" not in client.get("/archive/daily/").get_data(as_text=True)
    assert "2026-11-26" not in client.get("/archive/daily/feed.atom").get_data(as_text=True)
    assert "2026-11-26" not in client.get("/archive/sitemap.xml").get_data(as_text=True)
    set_hidden(db, "daily", EDITION_TIME.date(), False)
    assert client.get("/archive/daily/2026-11-26/").status_code == 200


def test_the_static_build_writes_what_serve_answers_at_the_same_paths(
    sent, db, config, client, tmp_path
):
    folder = tmp_path / "site"
    built = build_static(db, config, folder, now=NOW)
    assert "archive/daily/2026-11-26/index.html" in built.written
    assert "archive/daily/feed.atom" in built.written
    for relative in built.written:
        path = "/" + relative.removesuffix("index.html")
        assert (folder / relative).read_bytes() == client.get(path).get_data(), path


def test_the_static_build_again_rewrites_nothing(sent, db, config, tmp_path):
    folder = tmp_path / "site"
    first = build_static(db, config, folder, now=NOW)
    again = build_static(db, config, folder, now=NOW)
    assert again.written == [] and again.removed == []
    assert again.unchanged == len(first.written)


def test_a_hidden_day_leaves_the_static_build_and_comes_back(sent, db, config, tmp_path):
    folder = tmp_path / "site"
    build_static(db, config, folder, now=NOW)
    Archive(db, config).set_hidden("daily", EDITION_TIME.date(), True)
    hidden = build_static(db, config, folder, now=NOW)
    assert "archive/daily/2026-11-26/index.html" in hidden.removed
    assert not (folder / "archive/daily/2026-11-26").exists()
    assert "2026-11-26" not in (folder / "archive/daily/feed.atom").read_text()
    Archive(db, config).set_hidden("daily", EDITION_TIME.date(), False)
    shown = build_static(db, config, folder, now=NOW)
    assert "archive/daily/2026-11-26/index.html" in shown.written


def test_archive_commands_hide_show_and_build(sent, config, project_dir):
    from click.testing import CliRunner

    from digest.cli import cli

    base = ["--config", str(config.source_path)]
    write_config(config.source_path.parent)
    runner = CliRunner()
    hidden = runner.invoke(cli, [*base, "archive", "hide", "daily", "2026-11-26"])
    assert hidden.exit_code == 0, hidden.output
    assert "hidden" in hidden.output
    built = runner.invoke(cli, [*base, "archive", "build", "out", "--now", NOW.isoformat()])
    assert built.exit_code == 0, built.output
    assert (project_dir / "out/archive/daily/2026-11-25/index.html").exists()
    assert not (project_dir / "out/archive/daily/2026-11-26").exists()
    unknown = runner.invoke(cli, [*base, "archive", "hide", "daily", "2026-02-30"])
    assert unknown.exit_code == 2 and "YYYY-MM-DD" in unknown.output
    never = runner.invoke(cli, [*base, "archive", "show", "daily", "2019-01-01"])
    assert never.exit_code == 1 and "no archived edition on 2019-01-01" in never.output


def test_the_sign_up_page_says_what_when_and_shows_the_last_three_editions(sent, db, config):
    add_stories(db, story(1, title="Third day", at=EDITION_TIME + timedelta(days=1)))
    add_stories(db, story(1, title="Fourth day", at=EDITION_TIME + timedelta(days=2)))
    send_day(db, config, NOW + timedelta(days=1))
    send_day(db, config, NOW + timedelta(days=2))
    client = create_app(config).test_client()
    client.get("/archive/daily/")  # the days are archived once asked for (or by `digest run`)
    body = client.get("/subscribe").get_data(as_text=True)
    assert "One email every day at 07:00 in your time zone." in body
    linked = re.findall(r'<a href="https://news.test/archive/daily/([\d-]+)/">', body)
    assert linked == ["2026-11-28", "2026-11-27", "2026-11-26"]


def test_the_sign_up_page_offers_common_zones_first_and_no_deprecated_alias(client):
    body = client.get("/subscribe").get_data(as_text=True)
    common, every = body.split('<optgroup label="Every time zone, A to Z">')
    assert "<option>America/New_York</option>" in common
    assert "<option>Asia/Tokyo</option>" in common
    assert "<option>Europe/Tallinn</option>" in every
    assert "Africa/Asmera" not in body and "<option>EST</option>" not in body
    assert "Asia/Calcutta" not in body and "<option>Asia/Kolkata</option>" in common
    assert body.count("<option") < 450


def test_an_archive_sign_up_link_preselects_its_newsletter(tmp_path, migrated_database):
    data = config_data()
    data["newsletters"]["weekly"] = {"title": "Weekly"}
    config = parse_config(data, tmp_path / "digest.toml", env={})
    shutil.copyfile(migrated_database, config.db_path)
    body = create_app(config).test_client().get("/subscribe?newsletter=weekly").get_data(True)
    assert 'value="weekly" required checked' in body


def test_digest_run_archives_the_day_and_rebuilds_the_static_copy(tmp_path, migrated_database):
    config = make_config(tmp_path, archive={"static_dir": "public"})
    shutil.copyfile(migrated_database, config.db_path)
    db = open_db(config.db_path)
    add_stories(db, story(1, title="Tram runs all night"))
    add_subscriber(db, "ana@example.com", "Ana")
    report = run_due(db, config, NOW, transport=OutboxTransport(config))
    assert any(line.startswith("archive: ") for line in report.lines), report.lines
    page = tmp_path / "public/archive/daily/2026-11-26/index.html"
    assert "Tram runs all night" in page.read_text()
    again = run_due(db, config, NOW + timedelta(minutes=5), transport=OutboxTransport(config))
    assert not any(line.startswith("archive: ") for line in again.lines), "nothing sent, no build"


def test_a_static_build_of_one_newsletter_leaves_the_others_alone(tmp_path, migrated_database):
    data = config_data()
    data["newsletters"]["weekly"] = {"title": "Weekly", "schedule": "0 7 * * *"}
    config = parse_config(data, tmp_path / "digest.toml", env={})
    shutil.copyfile(migrated_database, config.db_path)
    db = open_db(config.db_path)
    add_stories(db, story(1, title="Tram runs all night"))
    add_subscriber(db, "ana@example.com", "Ana")
    add_subscriber(db, "bo@example.com", "Bo", newsletter="weekly")
    for name in ("daily", "weekly"):
        newsletter = config.newsletter(name)
        send_slot(
            db, config, newsletter, EDITION_TIME, timezone="UTC", transport=OutboxTransport(config)
        )
    built = build_static(db, config, tmp_path / "site", "weekly", now=NOW)
    assert "archive/weekly/2026-11-26/index.html" in built.written
    assert not any(path.startswith("archive/daily/") for path in built.written)
    assert "archive/index.html" in built.written


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(title=st.text(min_size=1, max_size=80))
def test_the_feed_is_valid_xml_whatever_a_title_holds(tmp_path_factory, migrated_database, title):
    folder = tmp_path_factory.mktemp("feed")
    config = make_config(folder)
    shutil.copyfile(migrated_database, config.db_path)
    db = open_db(config.db_path)
    add_stories(db, story(1, title=title.strip() or "x"), story(2, title="Plain " + title))
    add_subscriber(db, "ana@example.com", "Ana")
    send_day(db, config)
    client = create_app(config).test_client()
    for path in ("/archive/daily/feed.atom", "/archive/sitemap.xml"):
        body = client.get(path).get_data()
        ElementTree.fromstring(body)
    assert not feedparser.parse(client.get("/archive/daily/feed.atom").get_data()).bozo
    db.close()


def test_a_day_sent_only_far_east_of_home_is_archived_for_its_own_date(tmp_path, migrated_database):
    # Home London, Mondays only; the one reader is in Auckland, whose Monday 07:00 is still
    # Sunday in London.
    config = make_config(tmp_path, {"timezone": "Europe/London", "schedule": "0 7 * * MON"})
    shutil.copyfile(migrated_database, config.db_path)
    db = open_db(config.db_path)
    monday = EDITION_TIME + timedelta(days=4)  # Monday 30 November 2026, 07:00 UTC
    add_stories(db, story(20, title="Kiwi news", at=monday))
    add_subscriber(db, "kiri@example.com", "Kiri", (), "Pacific/Auckland")
    newsletter = config.newsletter("daily")
    slot = latest_slot(newsletter, monday, "Pacific/Auckland")
    send_slot(
        db, config, newsletter, slot, timezone="Pacific/Auckland", transport=OutboxTransport(config)
    )
    # Nobody at home: the day is built once the home slot's grace (6 hours) is over.
    archive = Archive(db, config, now=monday + timedelta(hours=7))
    assert "2026-11-30" in archive.newsletter_page("daily").body


def test_a_day_waits_for_its_home_zone_slot_to_go_out(db, config):
    add_stories(db, story(1, title="Tram runs all night"))
    add_subscriber(db, "kiri@example.com", "Kiri", (), "Pacific/Auckland")
    newsletter = config.newsletter("daily")
    send_slot(
        db,
        config,
        newsletter,
        latest_slot(newsletter, NOW, "Pacific/Auckland"),
        timezone="Pacific/Auckland",
        transport=OutboxTransport(config),
    )
    # 07:01 at home (UTC): the home slot is due but `digest run` has not sent it yet.
    early = Archive(db, config, now=EDITION_TIME + timedelta(minutes=1))
    assert "2026-11-26" not in early.newsletter_page("daily").body
    add_subscriber(db, "ana@example.com", "Ana")
    send_slot(
        db, config, newsletter, EDITION_TIME, timezone="UTC", transport=OutboxTransport(config)
    )
    sent = Archive(db, config, now=EDITION_TIME + timedelta(minutes=6))
    assert "2026-11-26" in sent.newsletter_page("daily").body


def test_a_held_home_edition_is_not_archived_as_if_it_had_gone_out(db, config):
    # A plain-http link is a check error: the edition is saved, held, and sent to no one.
    add_stories(db, story(1, title="Insecure link", url="http://insecure.test/story"))
    add_subscriber(db, "ana@example.com", "Ana")
    newsletter = config.newsletter("daily")
    send_slot(
        db, config, newsletter, EDITION_TIME, timezone="UTC", transport=OutboxTransport(config)
    )
    assert db.execute("SELECT COUNT(*) FROM editions").fetchone()[0] == 1
    assert not outbox(config)
    soon = Archive(db, config, now=EDITION_TIME + timedelta(minutes=10))
    assert "2026-11-26" not in soon.newsletter_page("daily").body
