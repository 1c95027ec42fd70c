"""One set of settings for every entry point: `.env` beside the config, the secret-key policy,
paths relative to the config file, and hints that name the command that works."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest.config import (
    PLACEHOLDER_SECRET,
    check_secret_for_sending,
    check_secret_for_serving,
    load_config,
    read_env_file,
)
from digest.delivery.transports import BatchTransport
from digest.delivery.transports.outbox import OutboxTransport
from digest.errors import ConfigError, SendRejectedError
from digest.readers.subscribers import add_subscriber
from digest.run import run_due
from digest.store import open_db
from digest.web import create_app

from helpers import make_config, write_config
from sendgrid_server import SendGridTestServer

DIGEST = Path(sys.executable).parent / "digest"
STRONG = "s" * 32
REAL_SITE = {"url": "https://news.halden-courier.no", "from_email": "digest@halden-courier.no"}
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("DIGEST_", "SENDGRID_"))}
STORIES = """url,title,summary,author,category,published_at,score,pinned
https://news.test/a,Tram runs all night,Trams all night.,Mira,world,2026-11-26T05:00:00Z,3,false
"""


def test_the_env_file_beside_the_config_fills_in_settings(tmp_path):
    write_config(tmp_path, transport={"kind": "outbox"})
    (tmp_path / ".env").write_text(
        f"# the newsroom's settings\n\nDIGEST_SECRET_KEY='{STRONG}'\nDIGEST_OUTBOX = mail\n"
    )
    config = load_config(tmp_path / "digest.toml", env={})
    assert config.secret_key == STRONG
    assert config.outbox_dir == tmp_path / "mail"


def test_the_environment_wins_over_the_env_file(tmp_path):
    write_config(tmp_path)
    (tmp_path / ".env").write_text("DIGEST_OUTBOX=from-file\n")
    config = load_config(tmp_path / "digest.toml", env={"DIGEST_OUTBOX": "from-env"})
    assert config.outbox_dir == tmp_path / "from-env"


def test_a_bad_env_line_is_named_by_number_and_its_value_never_shown(tmp_path):
    env = tmp_path / ".env"
    env.write_text("DIGEST_DB=news.db\nSENDGRID_API_KEY SG.hunter2\n")
    with pytest.raises(ConfigError, match=r"\.env, line 2: not a KEY=value line") as error:
        read_env_file(env)
    assert "hunter2" not in str(error.value)


def test_a_missing_env_file_is_no_settings(tmp_path):
    assert read_env_file(tmp_path / ".env") == {}


@pytest.mark.parametrize("secret", [PLACEHOLDER_SECRET, "x" * 31])
@pytest.mark.parametrize("kind", ["outbox", "sendgrid"])
def test_a_weak_secret_is_refused_for_mail_to_a_real_site_whatever_the_transport(
    tmp_path, secret, kind
):
    config = make_config(tmp_path, transport={"kind": kind, "secret_key": secret}, site=REAL_SITE)
    with pytest.raises(ConfigError, match="DIGEST_SECRET_KEY"):
        check_secret_for_sending(config, kind)


def test_the_outbox_transport_refuses_a_weak_secret_for_a_real_site(tmp_path):
    config = make_config(tmp_path, transport={"kind": "outbox"}, site=REAL_SITE)
    with pytest.raises(ConfigError, match="placeholder"):
        OutboxTransport(config)


def test_a_long_secret_sends_for_a_real_site(tmp_path):
    config = make_config(
        tmp_path, transport={"kind": "outbox", "secret_key": STRONG}, site=REAL_SITE
    )
    check_secret_for_sending(config, "outbox")
    check_secret_for_sending(config, "sendgrid")


def test_an_example_site_may_try_out_the_outbox_with_a_short_secret(tmp_path):
    check_secret_for_sending(make_config(tmp_path), "outbox")
    check_secret_for_sending(make_config(tmp_path, transport={"kind": "outbox"}), "outbox")


def test_sendgrid_refuses_the_placeholder_even_for_an_example_site(tmp_path):
    config = make_config(tmp_path, transport={"kind": "sendgrid"})
    with pytest.raises(ConfigError, match=r"placeholder.*SendGrid"):
        check_secret_for_sending(config, "sendgrid")


@pytest.mark.parametrize("secret", [PLACEHOLDER_SECRET, "short"])
def test_a_weak_secret_serves_only_on_loopback_for_an_example_site(tmp_path, secret):
    config = make_config(tmp_path, transport={"kind": "outbox", "secret_key": secret})
    check_secret_for_serving(config, "127.0.0.1")
    for host in ("0.0.0.0", "news.example.com", None):
        with pytest.raises(ConfigError, match="DIGEST_SECRET_KEY"):
            check_secret_for_serving(config, host)


def test_a_weak_secret_is_refused_on_loopback_behind_a_real_site(tmp_path):
    config = make_config(tmp_path, transport={"kind": "outbox"}, site=REAL_SITE)
    with pytest.raises(ConfigError, match="DIGEST_SECRET_KEY"):
        check_secret_for_serving(config, "127.0.0.1")


def test_a_long_secret_serves_anywhere(tmp_path):
    config = make_config(
        tmp_path, transport={"kind": "outbox", "secret_key": STRONG}, site=REAL_SITE
    )
    check_secret_for_serving(config, None)


def test_sources_and_a_relative_digest_db_are_relative_to_the_config_file(tmp_path):
    newsroom = tmp_path / "newsroom"
    newsroom.mkdir()
    write_config(newsroom, {"sources": ["feeds/world.xml", "https://news.test/feed.json"]})
    config = load_config(newsroom / "digest.toml", env={"DIGEST_DB": "data/news.db"})
    assert config.newsletter("daily").sources == (
        str(newsroom / "feeds" / "world.xml"),
        "https://news.test/feed.json",
    )
    assert config.db_path == newsroom / "data" / "news.db"


def stories_file(folder: Path) -> Path:
    path = folder / "stories.csv"
    path.write_text(STORIES)
    return path


@pytest.mark.slow
def test_the_cli_and_the_web_app_sign_with_the_env_files_key_and_use_its_database(tmp_path):
    """`.env` sets the secret and a relative DIGEST_DB; the CLI runs from another folder."""
    newsroom = tmp_path / "newsroom"
    newsroom.mkdir()
    write_config(newsroom, transport={"kind": "outbox"}, site=REAL_SITE)
    (newsroom / ".env").write_text(f"DIGEST_SECRET_KEY={STRONG}\nDIGEST_DB=data/news.db\n")
    config_arg = ["--config", str(newsroom / "digest.toml")]
    for args in (
        ["subscribers", "add", "ana@example.com"],
        ["ingest", str(stories_file(tmp_path))],
        ["send", "--now", "2026-11-26T07:05:00Z"],
    ):
        result = subprocess.run(
            [str(DIGEST), *config_arg, *args], cwd=tmp_path, env=CLEAN_ENV, capture_output=True
        )
        assert result.returncode == 0, result.stderr
    assert (newsroom / "data" / "news.db").exists()
    [eml] = (newsroom / "outbox").rglob("ana@example.com.eml")
    link = next(line for line in eml.read_text().splitlines() if line.startswith("List-Unsub"))
    path = link.split(REAL_SITE["url"], 1)[1].rstrip(">")

    app_config = load_config(newsroom / "digest.toml", env={})
    assert app_config.db_path == newsroom / "data" / "news.db"
    response = create_app(app_config).test_client().get(path)
    assert response.status_code == 200
    assert "ana@example.com" in response.get_data(as_text=True)


class RejectingTransport(BatchTransport):
    """A provider that refuses every batch, as SendGrid does with HTTP 400."""

    batch_size = 25

    def send_batch(self, edition, batch) -> str:
        raise SendRejectedError("The provider rejected the batch (HTTP 400): bad from address.")


@pytest.mark.slow
@pytest.mark.parametrize("config_given", [True, False], ids=["--config", "./digest.toml"])
def test_status_prints_a_retry_command_that_works_from_any_folder_without_digest_on_path(
    tmp_path, config_given
):
    newsroom = tmp_path / "newsroom"
    newsroom.mkdir()
    write_config(newsroom, {"timezone": "Europe/London"})
    db = open_db(newsroom / "digest.db")
    add_subscriber(db, "ana@example.com", timezone="Europe/London")
    ingest = subprocess.run(
        [str(DIGEST), "ingest", str(stories_file(tmp_path))],
        cwd=newsroom,
        env=CLEAN_ENV,
        capture_output=True,
    )
    assert ingest.returncode == 0, ingest.stderr
    now = datetime(2026, 11, 26, 7, 5, tzinfo=UTC)
    config = load_config(newsroom / "digest.toml", env={})
    assert run_due(db, config, now, transport=RejectingTransport()).failed
    db.close()

    # The config named by --config from the folder above, or found in the working folder.
    where = ["--config", "newsroom/digest.toml"] if config_given else []
    status = subprocess.run(
        [str(DIGEST), *where, "status", "--now", "2026-11-26T07:30Z"],
        cwd=tmp_path if config_given else newsroom,
        env=CLEAN_ENV,
        capture_output=True,
        text=True,
    )
    attention = status.stdout.splitlines()
    line = attention[attention.index("  needs attention:") + 1]
    command = line.split("`")[1]
    files = f"--config {newsroom / 'digest.toml'} --db {newsroom / 'digest.db'}"
    assert command.startswith(f"{DIGEST} {files} send ")
    no_digest_on_path = CLEAN_ENV | {"PATH": "/usr/bin:/bin"}
    retried = subprocess.run(
        command, shell=True, cwd="/", env=no_digest_on_path, capture_output=True, text=True
    )
    assert retried.returncode == 0, retried.stderr
    assert len(list((newsroom / "outbox").rglob("*.eml"))) == 1


@pytest.mark.slow
def test_the_sendgrid_key_and_host_in_the_env_file_reach_a_real_send(tmp_path):
    write_config(
        tmp_path,
        transport={"kind": "sendgrid"},
        site=REAL_SITE,
    )
    db = open_db(tmp_path / "digest.db")
    add_subscriber(db, "ana@example.com")
    db.close()
    with SendGridTestServer(api_key="SG.from-the-env-file") as server:
        (tmp_path / ".env").write_text(
            f"SENDGRID_API_KEY=SG.from-the-env-file\nSENDGRID_API_HOST={server.url}\n"
            f"DIGEST_SECRET_KEY={STRONG}\n"
        )
        for args in (
            ["ingest", str(stories_file(tmp_path))],
            ["send", "--now", "2026-11-26T07:05Z"],
        ):
            result = subprocess.run(
                [str(DIGEST), *args], cwd=tmp_path, env=CLEAN_ENV, capture_output=True, text=True
            )
            assert result.returncode == 0, result.stderr
        assert [request.status for request in server.requests] == [202]
