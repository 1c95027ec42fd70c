"""The archive as a reader and an operator meet it: `digest demo` sends, `digest serve` answers
the "View in your browser" link of an .eml, `digest archive build` writes the same bytes."""

from __future__ import annotations

import email
import email.policy
import html
import re
import urllib.request
from urllib.parse import urlsplit

import pytest

from helpers import digest_server, run_digest, sent_demo

# Every test runs `digest` as a real process.
pytestmark = pytest.mark.slow

NOW = "2026-11-26T07:05:00Z"


@pytest.fixture
def demo(tmp_path):
    return sent_demo(tmp_path, NOW)


def fetch(port: int, url: str) -> bytes:
    path = urlsplit(url).path
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}") as answer:
        assert answer.status == 200
        return answer.read()


def test_the_view_in_browser_link_of_an_eml_opens_its_copy_under_digest_serve(demo, tmp_path):
    emls = sorted((demo / "outbox").rglob("*.eml"))
    assert emls
    with digest_server("--db", str(demo / "digest.db"), "serve", cwd=tmp_path) as server:
        for eml in emls[:3]:
            message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
            emailed = message.get_body(("html",)).get_content()
            link = re.search(r'<a href="([^"]+)"[^>]*>View in your browser</a>', emailed).group(1)
            page = fetch(server.port, link).decode("utf-8")
            titles = re.findall(r'class="story-title"[^>]*><a [^>]*>([^<]+)</a>', emailed)
            assert titles
            assert re.findall(r'class="story-title"[^>]*><a [^>]*>([^<]+)</a>', page) == titles
            reader = message["To"].addresses[0]
            assert reader.addr_spec not in page
            # The demo's names are common words ("Ana" in "Analysts"): the greeting is checked.
            assert (
                f"Hello {html.escape(reader.display_name)}," in emailed or not reader.display_name
            )
            assert "Hello," in page and not re.search(r"Hello [^,<]+,", page)
            assert "/u/" not in page


def test_digest_archive_build_writes_what_digest_serve_answers(demo, tmp_path):
    built = run_digest(
        "--db", str(demo / "digest.db"), "archive", "build", "public", "--now", NOW, cwd=tmp_path
    )
    assert built.returncode == 0, built.stderr
    assert "file(s) written" in built.stdout
    files = sorted((tmp_path / "public").rglob("*"))
    pages = [f for f in files if f.is_file()]
    assert any(f.name == "feed.atom" for f in pages)
    with digest_server("--db", str(demo / "digest.db"), "serve", cwd=tmp_path) as server:
        for page in pages:
            path = "/" + page.relative_to(tmp_path / "public").as_posix().removesuffix("index.html")
            assert fetch(server.port, path) == page.read_bytes(), path
    again = run_digest(
        "--db", str(demo / "digest.db"), "archive", "build", "public", "--now", NOW, cwd=tmp_path
    )
    assert "0 file(s) written" in again.stdout
