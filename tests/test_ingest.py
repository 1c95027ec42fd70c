"""Specs for reading feeds and story files into the store."""

from __future__ import annotations

import json
import re
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from digest.errors import SourceError
from digest.newsroom.ingest import SourceResult, ingest_sources, read_source, teaser_from_html
from digest.newsroom.stories import find_story, list_stories, set_story_editorial
from digest.store import open_db

FEEDS = Path(__file__).parent / "fixtures" / "feeds"
STORY_KEYS = {
    "url",
    "guid",
    "title",
    "summary",
    "author",
    "category",
    "image_url",
    "published_at",
    "score",
    "pinned",
}


def feed(name: str) -> str:
    return str(FEEDS / name)


def by_url(stories: list[dict]) -> dict[str, dict]:
    return {story["url"]: story for story in stories}


@pytest.fixture
def db(tmp_path: Path):
    database = open_db(tmp_path / "digest.db")
    yield database
    database.close()


@contextmanager
def serving(handler: Callable[..., BaseHTTPRequestHandler], done: threading.Event) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 for the block; `done` is set to free waiting handlers."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        done.set()
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def feed_server() -> Iterator[SimpleNamespace]:
    """The fixture feeds over real HTTP; /broken.xml answers 500 and /slow.xml never answers."""
    user_agents: list[str | None] = []
    release = threading.Event()

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            user_agents.append(self.headers.get("User-Agent"))
            if self.path == "/broken.xml":
                self.send_error(500, "Internal Server Error")
            elif self.path == "/slow.xml":
                release.wait(timeout=10)
            else:
                super().do_GET()

        def log_message(self, format: str, *args: object) -> None:
            pass

    with serving(partial(Handler, directory=str(FEEDS)), release) as base:
        yield SimpleNamespace(base=base, user_agents=user_agents)


# --- Formats --------------------------------------------------------------------------------


def test_every_story_has_exactly_the_documented_fields():
    for name in ("world.rss.xml", "science.atom.xml", "culture.json", "business.jsonl"):
        for story in read_source(feed(name)):
            assert set(story) == STORY_KEYS, name


def test_rss_items_become_stories_with_every_field():
    stories = by_url(read_source(feed("world.rss.xml")))

    assert len(stories) == 3
    talks = stories["https://ledger.example.com/world/2026/11/24/ceasefire-talks-geneva"]
    assert talks["guid"] == "ledger-world-48213"
    assert talks["title"] == "Ceasefire talks resume in Geneva as envoys arrive"
    assert talks["summary"] == (
        "Envoys from six countries met on Tuesday for a third round of talks. "
        "Officials said a draft text could be ready “within days”."
    )
    assert talks["author"] == "Amira Haddad"
    assert talks["category"] == "World"
    assert talks["image_url"] == "https://cdn.ledger.example.com/img/geneva-talks.jpg"
    assert talks["published_at"] == datetime(2026, 11, 24, 7, 30, tzinfo=UTC)
    assert talks["score"] is None
    assert talks["pinned"] is None


def test_rss_entities_in_titles_are_unescaped_and_image_enclosures_used():
    floods = by_url(read_source(feed("world.rss.xml")))[
        "https://ledger.example.com/world/2026/11/24/monsoon-floods"
    ]

    assert floods["title"] == "Monsoon floods displace thousands in Bangladesh & eastern India"
    assert floods["image_url"] == "https://cdn.ledger.example.com/img/floods.jpg"


def test_atom_entries_become_stories_with_every_field():
    stories = by_url(read_source(feed("science.atom.xml")))

    ice = stories["https://ledger.example.com/science/2026/11/24/lunar-ice"]
    assert ice["guid"] == "tag:ledger.example.com,2026:science/7731"
    assert ice["title"] == "Probe finds water ice in shadowed lunar craters"
    assert ice["summary"] == (
        "Radar readings suggest millions of tonnes of ice lie in craters near the south pole."
    )
    assert ice["author"] == "Dr. Helen Okafor"
    assert ice["category"] == "science"
    assert ice["image_url"] == "https://cdn.ledger.example.com/img/lunar-crater.png"
    assert ice["published_at"] == datetime(2026, 11, 24, 5, 15, tzinfo=UTC)


def test_atom_entry_without_published_or_summary_uses_updated_and_content():
    antibiotic = by_url(read_source(feed("science.atom.xml")))[
        "https://ledger.example.com/science/2026/11/23/antibiotic-class"
    ]

    assert antibiotic["published_at"] == datetime(2026, 11, 23, 16, 40, tzinfo=UTC)
    assert antibiotic["summary"] == "Early trials found the compound cleared infections in mice."


def test_json_feed_items_become_stories_with_every_field():
    stories = by_url(read_source(feed("culture.json")))

    booker = stories["https://ledger.example.com/culture/2026/11/24/booker-shortlist"]
    assert booker == {
        "url": "https://ledger.example.com/culture/2026/11/24/booker-shortlist",
        "guid": "culture-9120",
        "title": "Booker shortlist favours debut novelists",
        "summary": "Four of the six books on this year's list are first novels.",
        "author": "Priya Raman",
        "category": "culture",
        "image_url": "https://cdn.ledger.example.com/img/booker.jpg",
        "published_at": datetime(2026, 11, 24, 15, 0, tzinfo=UTC),
        "score": None,
        "pinned": None,
    }


def test_json_feed_item_inherits_feed_authors_and_a_time_without_offset_is_utc():
    opera = by_url(read_source(feed("culture.json")))[
        "https://ledger.example.com/culture/2026/11/23/opera-house-reopens"
    ]

    assert opera["author"] == "Ledger Culture Desk"
    assert opera["summary"] == "The curtain rose on Tosca to a full house."
    assert opera["published_at"] == datetime(2026, 11, 23, 19, 30, tzinfo=UTC)


def test_jsonl_rows_become_stories_with_score_and_pin():
    stories = by_url(read_source(feed("business.jsonl")))

    assert len(stories) == 3
    bank = stories["https://ledger.example.com/business/2026/11/24/central-bank-holds"]
    assert bank == {
        "url": "https://ledger.example.com/business/2026/11/24/central-bank-holds",
        "guid": "biz-3301",
        "title": "Central bank holds rates, signals cut in spring",
        "summary": "The committee voted 7-2 to keep the main rate at 4.25%.",
        "author": "Grace Whitfield",
        "category": "business",
        "image_url": "https://cdn.ledger.example.com/img/central-bank.jpg",
        "published_at": datetime(2026, 11, 24, 12, 0, tzinfo=UTC),
        "score": 8.5,
        "pinned": True,
    }
    strike = stories["https://ledger.example.com/business/2026/11/23/port-strike"]
    assert strike["score"] is None
    assert strike["published_at"] == datetime(2026, 11, 23, 18, 20, tzinfo=UTC)


def test_csv_rows_become_stories_with_score_and_pin():
    stories = by_url(read_source(feed("sport.csv")))

    assert len(stories) == 3
    cup = stories["https://ledger.example.com/sport/2026/11/24/cup-upset"]
    assert cup["title"] == "Third-tier side knock holders out of the Cup"
    assert cup["summary"] == "A stoppage-time header sealed a famous 2-1 win."
    assert cup["author"] == "Owen Price"
    assert cup["category"] == "sport"
    assert cup["published_at"] == datetime(2026, 11, 24, 21, 50, tzinfo=UTC)
    assert cup["score"] == 7.5
    assert cup["pinned"] is True
    marathon = stories["https://ledger.example.com/sport/2026/11/24/marathon-record"]
    assert marathon["published_at"] == datetime(2026, 11, 24, 8, 10, tzinfo=UTC)
    assert marathon["score"] is None
    assert marathon["pinned"] is False


def test_ingesting_stores_the_stories_with_their_source(db):
    report = ingest_sources(db, [feed("world.rss.xml")])

    assert report.results[0].summary() == (
        f"{feed('world.rss.xml')}: 3 added, 0 updated, 0 unchanged, 0 skipped"
    )
    stored = find_story(db, "https://ledger.example.com/world/2026/11/23/chile-runoff")
    assert stored.title == "Polls open in Chile's presidential run-off"
    assert stored.author == "Lucía Ortega"
    assert stored.published_at == datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
    assert stored.source == feed("world.rss.xml")


# --- Re-ingesting ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["world.rss.xml", "science.atom.xml", "culture.json", "business.jsonl", "sport.csv"]
)
def test_reingesting_the_same_source_adds_nothing(db, name):
    first = ingest_sources(db, [feed(name)]).results[0]
    second = ingest_sources(db, [feed(name)]).results[0]

    assert first.added > 0
    assert (second.added, second.updated, second.unchanged) == (0, 0, first.added)
    assert len(list_stories(db)) == first.added


def test_a_changed_story_is_updated_not_duplicated(db, tmp_path):
    source = tmp_path / "world.rss.xml"
    shutil.copy(FEEDS / "world.rss.xml", source)
    ingest_sources(db, [str(source)])
    source.write_text(
        source.read_text().replace(
            "Ceasefire talks resume in Geneva as envoys arrive",
            "Ceasefire talks in Geneva end without agreement",
        )
    )

    result = ingest_sources(db, [str(source)]).results[0]

    assert (result.added, result.updated, result.unchanged) == (0, 1, 2)
    assert len(list_stories(db)) == 3
    story = find_story(db, "https://ledger.example.com/world/2026/11/24/ceasefire-talks-geneva")
    assert story.title == "Ceasefire talks in Geneva end without agreement"


def test_an_editors_score_and_pin_survive_reingest(db):
    ingest_sources(db, [feed("world.rss.xml")])
    story = find_story(db, "https://ledger.example.com/world/2026/11/24/monsoon-floods")
    set_story_editorial(db, str(story.id), pinned=True, score=9)

    result = ingest_sources(db, [feed("world.rss.xml")]).results[0]

    after = find_story(db, str(story.id))
    assert (after.pinned, after.score) == (True, 9.0)
    assert result.unchanged == 3


# --- Hostile content ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["hostile.rss.xml", "hostile.atom.xml"])
def test_scripts_handlers_and_javascript_links_leave_no_trace_in_the_summary(db, name):
    ingest_sources(db, [feed(name)])

    summary = find_story(db, "https://ledger.example.com/community/2026/11/24/cycle-lanes").summary
    assert summary.startswith("The council voted for twelve new lanes.")
    for trace in ("<", ">", "script", "alert", "onerror", "javascript", "color: red"):
        assert trace not in summary


def test_summary_markup_becomes_readable_plain_text():
    story = read_source(feed("hostile.rss.xml"))[0]

    assert story["summary"] == (
        "The council voted for twelve new lanes. Read the full plan & the budget."
    )


@pytest.mark.parametrize("name", ["hostile.rss.xml", "hostile.atom.xml"])
def test_a_title_with_script_is_stored_literally(db, name):
    ingest_sources(db, [feed(name)])

    story = find_story(db, "https://ledger.example.com/community/2026/11/24/cycle-lanes")
    assert story.title == "Council approves <script>alert(1)</script> new cycle lanes"


def test_an_item_with_a_javascript_link_is_skipped_with_a_reason(db):
    result = ingest_sources(db, [feed("hostile.rss.xml")]).results[0]

    assert result.error is None
    assert [s.title for s in list_stories(db)] == [
        "Council approves <script>alert(1)</script> new cycle lanes"
    ]
    assert result.skipped[0] == (
        "item 2 ('You have won a prize'): "
        "link 'javascript:alert(document.cookie)' is not an http(s) URL"
    )


def test_an_item_without_a_date_is_skipped_with_a_reason():
    stories = read_source(feed("hostile.rss.xml"))

    assert "https://ledger.example.com/community/2026/11/24/bake-sale" not in by_url(stories)


def test_the_skip_reasons_name_each_item(db):
    result = ingest_sources(db, [feed("hostile.rss.xml")]).results[0]

    assert result.skipped[1] == "item 3 ('Bake sale raises record sum for the library'): no date"
    assert result.summary().endswith("1 added, 0 updated, 0 unchanged, 2 skipped")


def test_a_non_http_image_url_is_dropped():
    story = read_source(feed("hostile.rss.xml"))[0]

    assert story["image_url"] == ""


# --- Bad rows -------------------------------------------------------------------------------


def test_csv_bad_rows_are_reported_by_line_and_the_good_rows_go_in(db):
    result = ingest_sources(db, [feed("sport_with_bad_rows.csv")]).results[0]

    assert result.error is None
    assert result.added == 2
    assert {s.url for s in list_stories(db)} == {
        "https://ledger.example.com/sport/2026/11/24/cup-upset",
        "https://ledger.example.com/sport/2026/11/23/test-series",
    }
    assert result.skipped == [
        "line 3: missing url",
        "line 4: missing title",
        "line 5: published_at 'yesterday evening' is not an ISO 8601 time; "
        "write it like 2026-11-26T07:00:00Z.",
        "line 6: score 'very high' is not a number",
    ]


def test_jsonl_bad_lines_are_reported_by_line_and_the_good_rows_go_in(db, tmp_path):
    source = tmp_path / "business.jsonl"
    good = (FEEDS / "business.jsonl").read_text().splitlines()[0]
    source.write_text(
        good + "\n"
        '{"url": "https://ledger.example.com/business/x", "title": "Half a line\n'
        '{"url": "https://ledger.example.com/business/y", "title": "No date"}\n'
    )

    stories = read_source(str(source))

    assert [s["guid"] for s in stories] == ["biz-3301"]
    result = ingest_sources(db, [str(source)]).results[0]
    assert result.skipped[0].startswith("line 2: not valid JSON")
    assert result.skipped[1] == "line 3: missing published_at"


def test_a_csv_without_the_required_columns_is_refused(tmp_path):
    source = tmp_path / "sport.csv"
    source.write_text("link,headline\nhttps://ledger.example.com/sport/a,Derby day\n")

    with pytest.raises(SourceError, match=r"missing column\(s\) url, title, published_at;"):
        read_source(str(source))


# --- HTTP sources ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["world.rss.xml", "science.atom.xml", "culture.json", "sport.csv"])
def test_a_source_served_over_http_is_read(feed_server, name):
    stories = read_source(f"{feed_server.base}/{name}")

    assert stories == read_source(feed(name))


def test_http_requests_name_digest_as_the_user_agent(feed_server):
    read_source(f"{feed_server.base}/world.rss.xml")

    assert feed_server.user_agents[0].startswith("digest/")


def test_relative_links_in_a_served_feed_resolve_against_its_url(feed_server):
    stories = read_source(f"{feed_server.base}/relative_links.rss.xml")

    assert stories[0]["url"] == f"{feed_server.base}/briefing/2026/11/25/morning"


def test_relative_links_in_a_feed_file_are_skipped():
    assert read_source(feed("relative_links.rss.xml")) == []


@pytest.mark.parametrize(("path", "status"), [("/gone.xml", "404"), ("/broken.xml", "500")])
def test_an_http_error_status_names_the_url_and_status(feed_server, path, status):
    url = f"{feed_server.base}{path}"

    with pytest.raises(SourceError) as caught:
        read_source(url)

    assert str(caught.value).startswith(f"{url}: HTTP {status} ")


def test_a_server_that_does_not_answer_in_time_gives_a_timeout_error(feed_server):
    url = f"{feed_server.base}/slow.xml"

    with pytest.raises(SourceError, match=r"not fully read within 0\.2s"):
        read_source(url, timeout=0.2)


def test_a_refused_connection_gives_a_clear_error():
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    url = f"http://127.0.0.1:{port}/world.rss.xml"

    with pytest.raises(SourceError) as caught:
        read_source(url, timeout=2)

    assert str(caught.value).startswith(f"{url}: cannot connect (")


@pytest.fixture
def hostile_server() -> Iterator[SimpleNamespace]:
    """A server that answers slowly or at length: /trickle-body and /trickle-headers send a
    byte every quarter second (for at most 8 s), /huge streams up to 2 GiB with no length
    given, /huge-declared announces 2 GiB. `sent` counts the body bytes /huge got out."""
    stop = threading.Event()
    sent = [0]
    feed_bytes = (FEEDS / "world.rss.xml").read_bytes()

    def trickle(wfile, data: bytes) -> None:
        for byte in data:
            if stop.wait(0.25):
                return
            wfile.write(bytes([byte]))
            wfile.flush()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self) -> None:
            with suppress(OSError):  # the client hung up, as it should
                self.answer()

        def answer(self) -> None:
            if self.path == "/trickle-headers":
                self.wfile.write(b"HTTP/1.0 200 OK\r\n")
                trickle(self.wfile, b"X-Slow: " + b"z" * 32 + b"\r\n\r\n")
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            if self.path == "/huge-declared":
                self.send_header("Content-Length", str(2**31))
            self.end_headers()
            if self.path == "/trickle-body":
                trickle(self.wfile, feed_bytes[:32])
            elif self.path == "/huge":
                self.wfile.write(b"<rss>")
                chunk = b" " * 65536
                while sent[0] < 2**31 and not stop.is_set():
                    self.wfile.write(chunk)
                    sent[0] += len(chunk)
            elif self.path == "/huge-declared":
                self.wfile.write(feed_bytes)
                stop.wait(10)

        def log_message(self, format: str, *args: object) -> None:
            pass

    with serving(Handler, stop) as base:
        yield SimpleNamespace(base=base, sent=sent)


@pytest.mark.slow  # waits out a real timeout
@pytest.mark.parametrize("path", ["/trickle-body", "/trickle-headers"])
def test_a_server_trickling_bytes_is_cut_off_at_the_fetch_deadline(hostile_server, path):
    url = f"{hostile_server.base}{path}"

    # Each byte comes well within the deadline: only a deadline on the whole fetch stops it.
    with pytest.raises(SourceError) as caught:
        read_source(url, timeout=1)

    assert str(caught.value) == (
        f"{url}: not fully read within 1s; try again later or raise [ingest] timeout_seconds"
    )


def test_a_huge_body_is_refused_as_it_streams_in(hostile_server):
    url = f"{hostile_server.base}/huge"

    with pytest.raises(SourceError) as caught:
        read_source(url, max_bytes=1024 * 1024)

    assert str(caught.value) == (
        f"{url}: larger than 1 MB; check that it is the feed, or raise [ingest] max_megabytes"
    )
    # Refused early, not read whole: the server got out little beyond the cap.
    assert hostile_server.sent[0] < 64 * 1024 * 1024


def test_a_body_declared_larger_than_the_cap_is_refused_before_reading(hostile_server):
    url = f"{hostile_server.base}/huge-declared"

    with pytest.raises(SourceError, match=r"larger than 20 MB; check that it is the feed"):
        read_source(url, timeout=5)


# --- Unreadable sources ---------------------------------------------------------------------


def test_a_missing_file_names_the_path_and_the_fix():
    with pytest.raises(SourceError) as caught:
        read_source("feeds/missing.xml")

    assert str(caught.value) == "feeds/missing.xml: no such file; check the path"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("not_a_feed.html", "not a feed (no RSS or Atom elements; an HTML page?)"),
        ("notes.txt", "not a feed (expected RSS, Atom, JSON Feed, .jsonl or .csv)"),
    ],
)
def test_a_file_that_is_not_a_feed_is_refused(name, reason):
    with pytest.raises(SourceError) as caught:
        read_source(feed(name))

    assert str(caught.value).startswith(f"{feed(name)}: {reason}; ")


def test_broken_xml_with_no_items_is_refused(tmp_path):
    source = tmp_path / "world.xml"
    source.write_text("<rss version='2.0'><channel><title>World</title><item><title>Cut")

    with pytest.raises(SourceError, match="not a readable feed"):
        read_source(str(source))


def test_invalid_json_is_refused(tmp_path):
    source = tmp_path / "culture.json"
    source.write_text('{"version": "https://jsonfeed.org/version/1.1", "items": [')

    with pytest.raises(SourceError, match=r"culture\.json: invalid JSON"):
        read_source(str(source))


def test_json_that_is_not_a_json_feed_is_refused(tmp_path):
    source = tmp_path / "stories.json"
    source.write_text('{"stories": []}')

    with pytest.raises(SourceError, match="JSON but not a JSON Feed"):
        read_source(str(source))


# --- Several sources ------------------------------------------------------------------------


def test_a_failing_source_is_reported_and_the_others_still_go_in(db):
    report = ingest_sources(db, ["feeds/missing.xml", feed("culture.json")])

    assert [r.source for r in report.failed] == ["feeds/missing.xml"]
    assert report.failed[0].error == "feeds/missing.xml: no such file; check the path"
    assert report.failed[0].summary() == "feeds/missing.xml: FAILED: no such file; check the path"
    assert report.results[1].added == 2
    assert len(list_stories(db)) == 2


def test_a_source_result_summarises_its_counts_in_one_line():
    result = SourceResult("feeds/world.xml", added=12, updated=0, unchanged=3, skipped=["x"])

    assert result.summary() == "feeds/world.xml: 12 added, 0 updated, 3 unchanged, 1 skipped"


# --- Teasers --------------------------------------------------------------------------------


def test_a_long_teaser_is_cut_at_a_word_boundary_with_an_ellipsis():
    text = "<p>" + "Markets rallied after the announcement. " * 20 + "</p>"

    teaser = teaser_from_html(text, max_chars=60)

    assert teaser == "Markets rallied after the announcement. Markets rallied…"
    assert len(teaser) <= 60


def test_a_short_teaser_is_left_whole():
    assert teaser_from_html("<p>Short and sweet.</p>") == "Short and sweet."


def test_block_tags_keep_words_apart():
    assert teaser_from_html("<p>First.</p><p>Second.</p><ul><li>a</li><li>b</li></ul>") == (
        "First. Second. a b"
    )


def test_double_escaped_markup_is_stripped_too():
    assert teaser_from_html("&lt;p&gt;Hello &lt;script&gt;alert(1)&lt;/script&gt;&lt;/p&gt;") == (
        "Hello"
    )


def test_text_that_only_looks_like_markup_survives():
    assert teaser_from_html("I &lt;3 digests &amp; 2 &lt; 3") == "I <3 digests & 2 < 3"


# Arbitrary text, salted with the pieces tags and entities are made of.
MARKUP_ISH = st.lists(
    st.one_of(
        st.sampled_from([*"<>/&;#=\"' \n", "script", "lt", "gt", "amp", "b", "p"]),
        st.text(max_size=3),
    )
).map("".join)


@given(html_text=MARKUP_ISH, max_chars=st.integers(min_value=1, max_value=400))
def test_a_teaser_never_holds_a_tag_and_never_runs_long(html_text, max_chars):
    teaser = teaser_from_html(html_text, max_chars)

    assert re.search(r"<[A-Za-z!?]|</[A-Za-z]", teaser) is None
    assert len(teaser) <= max_chars


# --- Items that cannot be read --------------------------------------------------------------

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def json_feed(tmp_path: Path, *items: dict) -> str:
    path = tmp_path / "feed.json"
    path.write_text(json.dumps({"version": "https://jsonfeed.org/version/1.1", "items": items}))
    return str(path)


def json_item(n: int, **fields) -> dict:
    return {
        "id": f"item-{n}",
        "url": f"https://news.test/{n}",
        "title": f"Story {n}",
        "date_published": "2026-11-24T10:00:00Z",
    } | fields


def test_an_item_dated_past_the_last_moment_python_knows_is_skipped_and_the_rest_go_in(
    db, tmp_path
):
    source = json_feed(
        tmp_path, json_item(1, date_published="9999-12-31T23:59:59-14:00"), json_item(2)
    )

    [result] = ingest_sources(db, [source, feed("culture.json")], now=NOW).results[:1]

    assert result.skipped == [
        "item 1 ('Story 1'): date_published '9999-12-31T23:59:59-14:00' is out of range; "
        "give a time between 1970 and 9999."
    ]
    assert [s.url for s in list_stories(db)].count("https://news.test/2") == 1
    assert len(list_stories(db)) == 3


def test_an_item_dated_more_than_a_day_ahead_is_skipped_with_a_reason(db, tmp_path):
    source = json_feed(
        tmp_path,
        json_item(1, date_published="2026-11-26T11:59:00Z"),
        json_item(2, date_published="2026-11-26T12:01:00Z"),
    )

    [result] = ingest_sources(db, [source], now=NOW).results

    assert result.added == 1
    assert result.skipped == [
        "item 2 ('Story 2'): published 2026-11-26 12:01 UTC, more than a day ahead; "
        "fix the date at the source"
    ]


def test_an_item_dated_before_1970_is_skipped_with_a_reason(db, tmp_path):
    source = json_feed(tmp_path, json_item(1, date_published="0001-01-01T00:00:00Z"))

    [result] = ingest_sources(db, [source], now=NOW).results

    assert result.skipped == [
        "item 1 ('Story 1'): published 0001-01-01, before 1970; fix the date at the source"
    ]


def test_a_source_the_database_refuses_is_reported_whole_and_the_others_go_in(db, tmp_path):
    db.execute(
        """CREATE TRIGGER refuse BEFORE INSERT ON stories WHEN NEW.title = 'Story 2'
           BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"""
    )
    source = json_feed(tmp_path, json_item(1), json_item(2))

    report = ingest_sources(db, [source, feed("culture.json")], now=NOW)

    assert report.failed[0].error.startswith(f"{source}: unexpected IntegrityError (")
    # Nothing half-written: story 1 went in the same transaction as story 2.
    assert {s.source for s in list_stories(db)} == {feed("culture.json")}


def test_control_characters_in_text_become_spaces(tmp_path):
    source = json_feed(tmp_path, json_item(1, title="Bell\x07and\x1b[31mred\x00", summary="a\x0cb"))

    [story] = read_source(source, now=NOW)

    assert (story["title"], story["summary"]) == ("Bell and [31mred", "a b")


# --- Encodings ------------------------------------------------------------------------------


def test_a_utf16_feed_with_a_byte_order_mark_is_read(tmp_path):
    source = tmp_path / "world.rss.xml"
    text = (FEEDS / "world.rss.xml").read_text(encoding="utf-8")
    source.write_bytes(text.replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16"))

    assert read_source(str(source), now=NOW) == read_source(feed("world.rss.xml"), now=NOW)


@pytest.mark.parametrize("name", ["business.jsonl", "sport.csv", "culture.json"])
def test_utf16_row_files_and_json_feeds_with_a_byte_order_mark_are_read(tmp_path, name):
    source = tmp_path / name
    source.write_bytes((FEEDS / name).read_text(encoding="utf-8").encode("utf-16"))

    assert read_source(str(source), now=NOW) == read_source(feed(name), now=NOW)


def test_an_xml_feed_in_the_encoding_it_declares_is_read(tmp_path):
    source = tmp_path / "latin.rss.xml"
    source.write_bytes(
        b'<?xml version="1.0" encoding="ISO-8859-1"?><rss version="2.0"><channel><title>t'
        b"</title><item><title>Caf\xe9 reopens</title><link>https://news.test/cafe</link>"
        b"<pubDate>Tue, 24 Nov 2026 10:00:00 GMT</pubDate></item></channel></rss>"
    )

    [story] = read_source(str(source), now=NOW)

    assert story["title"] == "Café reopens"


@pytest.mark.parametrize(
    ("name", "text"),
    [
        (
            "world.rss.xml",
            '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel><title>W'
            "</title><item><title>Caf\udce9</title><link>https://news.test/1</link>"
            "<pubDate>Tue, 24 Nov 2026 10:00:00 GMT</pubDate></item></channel></rss>",
        ),
        (
            "stories.jsonl",
            '{"url": "https://news.test/0", "title": "Fine", "published_at": "2026-11-24"}\n'
            '{"url": "https://news.test/1", "title": "Caf\udce9", "published_at": "2026-11-24"}',
        ),
        (
            "stories.csv",
            "url,title,published_at\nhttps://news.test/1,Caf\udce9,2026-11-24\n",
        ),
    ],
)
def test_invalid_utf8_refuses_the_source_the_same_way_in_every_format(tmp_path, name, text):
    source = tmp_path / name
    # \udce9 stands for the lone byte 0xE9: Latin-1 "é" in a file said to be UTF-8.
    source.write_bytes(text.encode("utf-8", "surrogateescape"))

    with pytest.raises(SourceError) as caught:
        read_source(str(source), now=NOW)

    assert re.fullmatch(
        rf"{re.escape(str(source))}: not valid UTF-8 text \(byte \d+, line 2\); save it as UTF-8",
        str(caught.value),
    )


# --- Rows that would overwrite each other or store a repr -----------------------------------


def test_a_guid_given_twice_in_one_file_is_reported_and_the_first_row_kept(db, tmp_path):
    source = tmp_path / "stories.jsonl"
    rows = [
        {
            "guid": "g1",
            "url": "https://news.test/1",
            "title": "First",
            "published_at": "2026-11-24",
        },
        {
            "guid": "g1",
            "url": "https://news.test/2",
            "title": "Again",
            "published_at": "2026-11-24",
        },
    ]
    source.write_text("\n".join(json.dumps(row) for row in rows))

    [result] = ingest_sources(db, [str(source)], now=NOW).results

    assert result.skipped == ["line 2: same guid 'g1' as line 1; only the first is read"]
    assert [(s.url, s.title) for s in list_stories(db)] == [("https://news.test/1", "First")]


def test_a_url_given_twice_in_one_file_is_reported_and_the_first_row_kept(db, tmp_path):
    source = tmp_path / "stories.csv"
    source.write_text(
        "url,title,published_at\n"
        "https://news.test/1,First,2026-11-24\n"
        "https://news.test/1,Again,2026-11-24\n"
    )

    [result] = ingest_sources(db, [str(source)], now=NOW).results

    assert result.skipped == [
        "line 3: same url 'https://news.test/1' as line 2; only the first is read"
    ]
    assert [s.title for s in list_stories(db)] == ["First"]


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("title", ["Breaking", "news"], "title is a list, not text"),
        ("title", {"text": "Breaking"}, "title is an object, not text"),
        ("author", ["A", "B"], "author is a list, not text"),
        ("summary", True, "summary is true/false, not text"),
    ],
)
def test_a_text_field_that_is_not_text_is_reported_not_stored_as_its_repr(
    db, tmp_path, field, value, reason
):
    source = tmp_path / "stories.jsonl"
    row = {"url": "https://news.test/1", "title": "Story", "published_at": "2026-11-24"}
    source.write_text(json.dumps(row | {field: value}))

    [result] = ingest_sources(db, [str(source)], now=NOW).results

    assert result.skipped == [f"line 1: {reason}"]
    assert list_stories(db) == []


def test_a_json_feed_title_that_is_a_list_is_reported(db, tmp_path):
    source = json_feed(tmp_path, json_item(1, title=["Breaking", "news"]), json_item(2))

    [result] = ingest_sources(db, [source], now=NOW).results

    assert result.skipped == ["item 1: title is a list, not text"]
    assert [s.title for s in list_stories(db)] == ["Story 2"]


# --- Two sources, one story -----------------------------------------------------------------


def write_two_sources(tmp_path: Path) -> tuple[str, str]:
    """The newsroom's feed (text, author, image) and the analytics desk's scores file."""
    feed_file = tmp_path / "world.jsonl"
    feed_file.write_text(
        json.dumps(
            {
                "guid": "w-1",
                "url": "https://news.test/1",
                "title": "Floods",
                "summary": "Rivers rose.",
                "author": "Amira Haddad",
                "category": "world",
                "image_url": "https://cdn.news.test/floods.jpg",
                "published_at": "2026-11-24T08:00:00Z",
            }
        )
    )
    scores = tmp_path / "scores.csv"
    scores.write_text(
        "url,title,published_at,score,pinned,author,category,image_url,summary\n"
        "https://news.test/1,Floods,2026-11-24T08:00:00Z,9.5,true,,,,\n"
    )
    return str(feed_file), str(scores)


@pytest.mark.parametrize("feed_first", [True, False], ids=["feed-first", "scores-first"])
def test_a_field_a_source_does_not_carry_keeps_what_another_source_set(db, tmp_path, feed_first):
    world, scores = write_two_sources(tmp_path)
    order = [world, scores] if feed_first else [scores, world]

    rounds = [ingest_sources(db, order, now=NOW) for _ in range(3)]

    [story] = list_stories(db)
    assert (story.score, story.pinned) == (9.5, True)
    assert (story.summary, story.author, story.category, story.image_url) == (
        "Rivers rose.",
        "Amira Haddad",
        "world",
        "https://cdn.news.test/floods.jpg",
    )
    assert story.guid == "w-1"
    # Once both are in, reading them again changes nothing: no value flips back and forth.
    for report in rounds[1:]:
        assert [(r.added, r.updated, r.unchanged) for r in report.results] == [(0, 0, 1)] * 2


def test_a_source_that_carries_a_value_changes_it(db, tmp_path):
    world, scores = write_two_sources(tmp_path)
    ingest_sources(db, [world, scores], now=NOW)
    Path(scores).write_text(
        "url,title,published_at,score,pinned\n"
        "https://news.test/1,Floods,2026-11-24T08:00:00Z,0,false\n"
    )

    ingest_sources(db, [scores, world], now=NOW)

    [story] = list_stories(db)
    assert (story.score, story.pinned, story.author) == (0.0, False, "Amira Haddad")


def test_an_editors_score_and_pin_survive_another_source(db, tmp_path):
    world, scores = write_two_sources(tmp_path)
    ingest_sources(db, [world], now=NOW)
    set_story_editorial(db, "https://news.test/1", pinned=False, score=2)

    ingest_sources(db, [scores, world], now=NOW)

    [story] = list_stories(db)
    assert (story.score, story.pinned) == (2.0, False)
