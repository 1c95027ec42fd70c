"""The studio over HTTP (Flask's test client), and `digest check` and `digest studio`."""

from __future__ import annotations

import html
import shutil
import sys
import urllib.request
from email import message_from_bytes, policy

import pytest
from click.testing import CliRunner

from digest.cli import cli
from digest.config import PROJECT_TEMPLATES, with_overrides
from digest.delivery.transports.outbox import OutboxTransport
from digest.readers.subscribers import add_subscriber
from digest.studio import RateLimit, create_studio

from helpers import add_stories, make_config, story, write_config
from servers import digest_server

NOW = "2026-11-26T06:00:00Z"


@pytest.fixture
def studio(config, db):
    add_stories(
        db,
        story(8, title="Tram runs all night"),
        story(9, category="science", title="Otters return"),
    )
    add_subscriber(db, "ana@example.com", "Ana")
    add_subscriber(db, "raj@example.com", "Raj", ["science"], "Asia/Kolkata")
    add_subscriber(db, "rui@example.com", "Rui", ["science"], "Asia/Kolkata")
    app = create_studio(lambda: config, OutboxTransport(config))
    return app.test_client()


def test_the_front_page_lists_each_variant_of_the_next_slot_with_its_readers(studio):
    page = studio.get("/", query_string={"now": NOW}).get_data(as_text=True)
    assert "2 variants checked: 0 errors," in page and "across 3 readers" in page
    # One block per zone, in the order they go out: Kolkata's 07:00 is 01:30 UTC, due still.
    assert page.index('data-timezone="Asia/Kolkata"') < page.index('data-timezone="UTC"')
    assert "2026-11-26 07:00 local, 01:30 UTC" in page
    assert "late by 4 h 30 m; missed at 2026-11-26 07:30 UTC, in 1 h 30 m" in page
    assert "2026-11-26 07:00 local, 07:00 UTC" in page and "in 1 h 0 m" in page
    assert page.count('<strong class="state">would send</strong>') == 2
    assert "Test Daily: Tram runs all night" in page
    assert "Test Daily: Otters return" in page
    assert page.count('<td class="checks-summary">no errors') == 2


def test_a_variant_whose_slot_has_too_few_stories_says_it_would_be_skipped(studio):
    page = studio.get("/", query_string={"now": "2026-11-26T14:00:00Z"}).get_data(as_text=True)
    assert "would be skipped: 0 new stories &lt; min_stories 1" in page


def test_the_raw_parts_are_the_email_with_inert_links(studio):
    query = {"now": NOW, "as": "ana@example.com"}
    html = studio.get("/email.html", query_string=query)
    assert html.mimetype == "text/html"
    assert "script-src" not in html.headers["Content-Security-Policy"]
    assert "Hello Ana," in html.get_data(as_text=True)
    assert 'href="https://news.test/u/preview"' in html.get_data(as_text=True)
    text = studio.get("/email.txt", query_string=query).get_data(as_text=True)
    assert "https://news.test/u/preview#preferences" in text


def test_a_variant_is_picked_by_topics_and_timezone(studio):
    query = {"now": NOW, "topics": "science", "timezone": "Asia/Kolkata"}
    body = studio.get("/checks.json", query_string=query).get_json()
    [variant] = body["variants"]
    assert variant["timezone"] == "Asia/Kolkata" and variant["topics"] == ["science"]
    assert variant["subject"] == "Test Daily: Otters return"


def test_checks_json_covers_every_variant_and_says_ok(studio):
    body = studio.get("/checks.json", query_string={"now": NOW}).get_json()
    assert body["ok"] is True
    assert len(body["variants"]) == 2
    assert {c["check"] for c in body["variants"][0]["checks"]} >= {"links", "images", "text"}


def test_an_unknown_reader_is_a_clear_answer_not_a_crash(studio):
    answer = studio.get("/email.html", query_string={"as": "nobody@example.com"})
    assert answer.status_code == 422
    assert "No subscriber 'nobody@example.com'" in answer.get_data(as_text=True)


def test_a_pin_from_another_origin_is_refused(studio, db):
    answer = studio.post(
        "/stories/1", data={"action": "pin"}, headers={"Origin": "https://evil.example"}
    )
    assert answer.status_code == 403
    assert db.execute("SELECT pinned FROM stories WHERE id = 1").fetchone()[0] == 0


def test_a_pin_from_the_studio_pins_and_goes_back(studio, db):
    answer = studio.post(
        "/stories/1",
        data={"action": "pin", "next": "/?as=ana@example.com"},
        headers={"Origin": "http://localhost"},
    )
    assert answer.status_code == 303 and answer.location == "/?as=ana@example.com"
    assert db.execute("SELECT pinned FROM stories WHERE id = 1").fetchone()[0] == 1


def test_the_studio_refuses_a_host_that_is_not_loopback(studio):
    assert studio.get("/", headers={"Host": "studio.evil.example"}).status_code == 403


def test_a_test_send_goes_to_the_outbox_marked_and_outside_the_ledger(studio, config, db):
    answer = studio.post(
        "/send-test", data={"to": "editor@example.com", "as": "ana@example.com", "now": NOW}
    )
    assert answer.status_code == 303
    [path] = config.outbox_dir.rglob("editor@example.com.eml")
    assert path.parent == config.outbox_dir / "tests"
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert message["Subject"] == "[TEST] Test Daily: Tram runs all night"
    assert message["List-Unsubscribe"] == "<https://news.test/u/preview>"
    assert "https://news.test/u/preview" in message.get_body(("html",)).get_content()
    assert db.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0] == 0
    assert db.execute("SELECT COUNT(*) FROM editions").fetchone()[0] == 0


def test_test_sends_are_limited_to_a_few_a_minute(config, db):
    clock = [0.0]
    app = create_studio(
        lambda: config, OutboxTransport(config), test_sends=RateLimit(2, 60, lambda: clock[0])
    )
    client = app.test_client()
    send = {"to": "editor@example.com", "now": NOW}
    assert [client.post("/send-test", data=send).status_code for _ in range(3)] == [303, 303, 429]
    clock[0] = 61.0
    assert client.post("/send-test", data=send).status_code == 303


def test_a_bad_test_address_is_refused_with_the_reason(studio):
    answer = studio.post("/send-test", data={"to": "not-an-address", "now": NOW})
    assert answer.status_code == 400
    assert "invalid address 'not-an-address'" in answer.get_data(as_text=True)


def test_a_broken_template_shows_its_file_and_line(config, db, tmp_path):
    templates = tmp_path / "templates"
    shutil.copytree(PROJECT_TEMPLATES, templates)
    (templates / "digest.html").write_text(
        "{% extends 'base.html' %}\n{% block content %}\n{{ x }\n"
    )
    broken = with_overrides(config, templates_dir=templates)
    client = create_studio(lambda: broken, OutboxTransport(broken)).test_client()
    page = client.get("/", query_string={"now": NOW, "timezone": "UTC"}).get_data(as_text=True)
    assert 'role="alert"' in page
    assert '<span class="file">digest.html</span>:<span class="line">3</span>' in page


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_digest_check_prints_each_variant_and_passes_on_good_templates(project_dir):
    write_config(project_dir)
    run("subscribers", "add", "ana@example.com")
    (project_dir / "stories.jsonl").write_text(
        '{"url": "https://news.test/tram", "title": "Tram runs all night", '
        '"published_at": "2026-11-26T05:00:00Z", "category": "world"}\n'
    )
    run("ingest", "stories.jsonl")
    result = run("check", "--now", NOW, "--verbose")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("1 variant checked: 0 errors, ")
    assert "2026-11-26 07:00 UTC *:" in result.output
    assert "ok: links:" in result.output and result.output.endswith("no errors\n")


def test_digest_check_opens_with_a_summary_naming_the_story(project_dir):
    write_config(project_dir)
    run("subscribers", "add", "ana@example.com")
    run("subscribers", "add", "raj@example.com", "--topics", "world", "--timezone", "Asia/Kolkata")
    (project_dir / "stories.jsonl").write_text(
        '{"url": "https://news.test/tram", "title": "Tram runs all night", '
        '"image_url": "http://img.test/t.jpg", '
        '"published_at": "2026-11-26T01:00:00Z", "category": "world"}\n'
    )
    run("ingest", "stories.jsonl")
    result = CliRunner().invoke(cli, ["check", "--now", "2026-11-25T20:00:00Z"])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].startswith("2 variants checked: 1 error, ")
    assert lines[1].startswith(
        "  error: images (story 'Tram runs all night'): Image http://img.test/t.jpg is not on"
    )
    assert lines[1].endswith("[2 of 2 variants]")
    assert "ok:" not in result.output


def test_digest_check_exits_non_zero_on_an_error(project_dir):
    write_config(project_dir)
    (project_dir / "stories.jsonl").write_text(
        '{"url": "http://news.test/plain", "title": "Plain http story", '
        '"published_at": "2026-11-26T05:00:00Z", "category": "world"}\n'
    )
    run("ingest", "stories.jsonl")
    result = CliRunner().invoke(cli, ["check", "--now", NOW])
    assert result.exit_code == 1
    assert (
        "error: links (story 'Plain http story'): 1 link(s) are not absolute https: "
        "http://news.test/plain"
    ) in result.output
    assert "errors found" in result.output


def test_digest_studio_refuses_a_public_host_without_the_flag(project_dir):
    write_config(project_dir)
    result = CliRunner().invoke(cli, ["studio", "--host", "0.0.0.0"])
    assert result.exit_code == 1
    assert "shows readers' addresses" in result.output and "--allow-remote" in result.output


def test_the_live_fingerprint_holds_still_while_nothing_changes(studio):
    before = studio.get("/live").get_json()["version"]
    studio.get("/", query_string={"now": NOW, "as": "ana@example.com"})
    studio.get("/checks.json", query_string={"now": NOW})
    assert studio.get("/live").get_json()["version"] == before


def test_the_live_fingerprint_moves_with_the_store(studio, db):
    before = studio.get("/live").get_json()["version"]
    add_stories(db, story(1, title="Late news"))
    assert studio.get("/live").get_json()["version"] != before


def test_an_edited_config_is_read_again(project_dir):
    from digest.config import load_config

    path = write_config(project_dir)
    config = load_config(path, env={})
    client = create_studio(lambda: load_config(path, env={}), OutboxTransport(config)).test_client()
    assert "Test Daily: the next send" in client.get("/").get_data(as_text=True)
    before = client.get("/live").get_json()["version"]
    path.write_text(path.read_text().replace('"Test Daily"', '"Evening Post"'))
    assert client.get("/live").get_json()["version"] != before
    assert "Evening Post: the next send" in client.get("/").get_data(as_text=True)


def test_a_broken_config_is_shown_not_crashed_on(project_dir):
    from digest.config import load_config

    path = write_config(project_dir)
    config = load_config(path, env={})
    client = create_studio(lambda: load_config(path, env={}), OutboxTransport(config)).test_client()
    path.write_text("[newsletters.daily]\ntop_storys = 3\n")
    page = client.get("/").get_data(as_text=True)
    assert 'role="alert"' in page and "top_storys" in page


def test_a_test_send_goes_through_sendgrid_when_that_is_the_transport(db, tmp_path, monkeypatch):
    from digest.delivery.transports.sendgrid import SendGridTransport

    from sendgrid_server import SendGridTestServer

    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    config = make_config(tmp_path, transport={"kind": "sendgrid", "secret_key": "test-secret"})
    add_stories(db, story(8, title="Tram runs all night"))
    add_subscriber(db, "ana@example.com", "Ana")
    with SendGridTestServer(api_key="SG.test-key") as server:
        env = {"SENDGRID_API_KEY": "SG.test-key", "SENDGRID_API_HOST": server.url}
        client = create_studio(lambda: config, SendGridTransport(config, env=env)).test_client()
        answer = client.post(
            "/send-test", data={"to": "editor@example.com", "as": "ana@example.com", "now": NOW}
        )
        assert answer.status_code == 303
        [request] = server.requests
        shown = html.unescape(client.get(answer.location).get_data(as_text=True))
        # The page says where it went: the request and SendGrid's answer.
        assert f"accepted by SendGrid: POST {server.url}/v3/mail/send answered 202" in shown
    assert request.status == 202
    assert request.body["subject"] == "[TEST] Test Daily: Tram runs all night"
    # SendGrid's statistics by category keep an editor's tests apart from readers' mail.
    assert request.body["categories"] == ["test"]
    body = request.body["content"][1]["value"]
    assert "Hello Ana," in body and "https://news.test/u/preview" in body
    assert db.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0] == 0


def test_a_score_from_the_lineup_is_set_and_a_bad_one_refused(studio, db):
    assert studio.post("/stories/2", data={"action": "score", "score": "7.5"}).status_code == 303
    assert db.execute("SELECT score FROM stories WHERE id = 2").fetchone()[0] == 7.5
    for given, message in [
        ("lots", "Score &#39;lots&#39; is not a number"),
        ("nan", "Score nan is not a number"),
        ("-5", "Score -5 is below 0"),
    ]:
        answer = studio.post("/stories/2", data={"action": "score", "score": given, "next": "/"})
        # The page again, saying what was wrong: never a bare 400.
        assert answer.status_code == 422
        page = answer.get_data(as_text=True)
        assert '<p class="note problem" role="alert">Not done: ' in page and message in page
    assert db.execute("SELECT score FROM stories WHERE id = 2").fetchone()[0] == 7.5


def test_the_way_back_after_a_pin_never_leaves_the_studio(studio):
    answer = studio.post("/stories/1", data={"action": "pin", "next": "//evil.example/x"})
    assert answer.location == "/"


@pytest.mark.slow
def test_digest_studio_as_a_real_process_serves_and_its_hints_name_its_files(tmp_path):
    write_config(tmp_path)
    # Found as ./digest.toml; pages are built in the server's threads, outside the command.
    with digest_server("studio", cwd=tmp_path) as studio:
        no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with no_proxy.open(f"http://127.0.0.1:{studio.port}/?as=nobody@example.com") as page:
            assert page.status == 200
            shown = html.unescape(page.read().decode())
    assert "No subscriber 'nobody@example.com'" in shown
    files = f"--config {tmp_path / 'digest.toml'} --db {tmp_path / 'digest.db'}"
    assert f"`{sys.executable} -m digest {files} subscribers list`" in shown


@pytest.mark.parametrize(
    "host",
    [
        "127.evil.example",
        "127.0.0.1.nip.io",
        "127.0.0.1.evil.example:8026",
        "localhost.evil.example",
    ],
)
def test_a_host_that_only_starts_like_loopback_is_refused(studio, host):
    answer = studio.get("/", headers={"Host": host}, query_string={"as": "ana@example.com"})
    assert answer.status_code == 403


@pytest.mark.parametrize("host", ["127.0.0.1:8026", "localhost", "LOCALHOST:1", "[::1]:8026"])
def test_the_loopback_addresses_and_localhost_are_answered(studio, host):
    assert studio.get("/live", headers={"Host": host}).status_code == 200


def test_a_rebound_test_send_is_refused_and_writes_nothing(studio, config):
    answer = studio.post(
        "/send-test",
        headers={"Host": "127.evil.example"},
        data={"to": "attacker@evil.example", "as": "ana@example.com", "now": NOW},
    )
    assert answer.status_code == 403
    assert not (config.outbox_dir / "tests").exists()


def test_a_remote_studio_answers_only_the_names_it_was_given(config):
    from digest.studio import allowed_hosts

    hosts = allowed_hosts("0.0.0.0", ["Studio.Newsroom.lan"])
    client = create_studio(lambda: config, OutboxTransport(config), allowed_hosts=hosts)
    client = client.test_client()
    assert client.get("/live", headers={"Host": "studio.newsroom.lan:8026"}).status_code == 200
    assert client.get("/live", headers={"Host": "evil.example"}).status_code == 403
    assert client.get("/live", headers={"Host": "127.0.0.1"}).status_code == 200


def test_a_remote_studio_on_every_address_needs_its_names(project_dir, monkeypatch):
    write_config(project_dir)
    served = []
    monkeypatch.setattr("digest.studio.serve_studio", lambda *a, **k: served.append(a))
    result = CliRunner().invoke(cli, ["studio", "--host", "0.0.0.0", "--allow-remote"])
    assert result.exit_code == 1
    assert "--allowed-host NAME" in result.output and not served


@pytest.mark.parametrize("next_", ["/\t/evil.example/x", "/\n/evil.example", "/\\evil.example"])
def test_a_way_back_with_a_tab_or_backslash_stays_in_the_studio(studio, next_):
    answer = studio.post("/stories/1", data={"action": "pin", "next": next_})
    assert answer.location == "/"


def _get(port: int, host: str, path: str = "/live") -> int:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest("GET", path, skip_host=True)
        connection.putheader("Host", host)
        connection.endheaders()
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.mark.slow
def test_a_real_studio_refuses_forged_hosts_and_answers_loopback(tmp_path):
    write_config(tmp_path)
    with digest_server("studio", cwd=tmp_path) as studio:
        port = studio.port
        forged = [f"127.evil.example:{port}", f"127.0.0.1.nip.io:{port}", "evil.example"]
        assert [_get(port, host, "/?as=ana@example.com") for host in forged] == [403] * 3
        assert _get(port, f"127.0.0.1:{port}") == 200
        assert _get(port, f"localhost:{port}") == 200


@pytest.mark.slow
def test_a_real_remote_studio_answers_only_its_allowed_host(tmp_path):
    write_config(tmp_path)
    args = ["studio", "--allow-remote", "--allowed-host", "studio.newsroom.lan"]
    with digest_server(*args, cwd=tmp_path) as studio:
        port = studio.port
        assert _get(port, f"studio.newsroom.lan:{port}") == 200
        assert _get(port, f"127.0.0.1.nip.io:{port}") == 403


@pytest.mark.parametrize("path", ["/hold", "/release", "/edition"])
def test_holds_and_edits_are_taken_only_from_the_studios_own_pages(studio, db, path):
    answer = studio.post(
        path,
        data={"newsletter": "daily", "edition": "2026-11-26", "action": "note", "value": "Hi"},
        headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert answer.status_code == 403
    assert db.execute("SELECT COUNT(*) FROM holds").fetchone()[0] == 0
    assert db.execute("SELECT COUNT(*) FROM edition_edits").fetchone()[0] == 0


def test_a_held_slot_shows_on_the_desk_with_who_and_its_deadline(studio, db):
    from digest.delivery.holds import hold

    hold(db, "daily", "UTC", None, "editor")
    page = studio.get("/", query_string={"now": NOW}).get_data(as_text=True)
    assert 'class="zone state-held"' in page
    assert "daily in UTC held by editor" in page
    assert "grace ends 13:00 UTC" in page
    variant = studio.get("/", query_string={"now": NOW, "as": "ana@example.com"})
    shown = html.unescape(variant.get_data(as_text=True))
    assert "Held by hand: daily in UTC held by editor" in shown
    assert "not released by 2026-11-26 13:00 UTC (the end of grace), this slot is missed" in shown
