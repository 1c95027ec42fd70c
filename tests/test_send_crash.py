"""Real `digest send` processes against the SendGrid test server: kill -9, and two at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from digest.readers.subscribers import import_csv
from digest.store import open_db

from helpers import add_stories, story, write_config
from sendgrid_server import Fault, SendGridTestServer

# The quick tier leaves this module out: every test kills real `digest send` processes.
pytestmark = pytest.mark.slow

API_KEY = "SG.crash-test"
NOW = "2026-11-26T07:02:00Z"


@pytest.fixture
def server():
    with SendGridTestServer(api_key=API_KEY) as running:
        yield running


def make_project(tmp_path: Path, readers: int, batch_size: int, concurrency: int = 4) -> list[str]:
    write_config(
        tmp_path,
        transport={"kind": "sendgrid", "secret_key": "test-secret"},
        sendgrid={
            "batch_size": batch_size,
            "concurrency": concurrency,
            "timeout_seconds": 30,
            "max_attempts": 2,
            "backoff_seconds": 0.01,
        },
    )
    db = open_db(tmp_path / "digest.db")
    add_stories(db, story(1), story(2, category="science"))
    emails = [f"reader{n:05d}@example.com" for n in range(readers)]
    (tmp_path / "readers.csv").write_text("email\n" + "\n".join(emails) + "\n")
    import_csv(db, tmp_path / "readers.csv")
    db.close()
    return emails


def digest_send(tmp_path: Path, server: SendGridTestServer, *args: str) -> subprocess.Popen:
    env = os.environ | {
        "SENDGRID_API_KEY": API_KEY,
        "SENDGRID_API_HOST": server.url,
        "DIGEST_CONFIG": str(tmp_path / "digest.toml"),
        "no_proxy": "127.0.0.1,localhost",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "digest", "send", "--now", NOW, *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Its own process group, so that a kill takes down everything it started.
        start_new_session=True,
    )


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the condition")
        time.sleep(0.05)


def wait_until_quiet(server: SendGridTestServer, quiet: float = 0.3) -> None:
    """Until no new request has been recorded for `quiet` seconds: one the killed process
    finished sending may still be in the server's hands."""
    seen = -1
    while seen != len(server.requests):
        seen = len(server.requests)
        time.sleep(quiet)


def ledger(tmp_path: Path) -> Counter:
    db = open_db(tmp_path / "digest.db")
    try:
        return Counter(row[0] for row in db.execute("SELECT status FROM deliveries"))
    finally:
        db.close()


@pytest.mark.parametrize("concurrency", [1, 4, 16])
def test_kill_9_mid_edition_then_a_rerun_duplicates_no_one_and_loses_no_one(
    tmp_path, server, concurrency
):
    emails = make_project(tmp_path, readers=1000, batch_size=100, concurrency=concurrency)
    hung = set(emails[300:400])

    def carries_the_fourth_batch(body):
        return body["personalizations"][0]["to"][0]["email"] == emails[300]

    # SendGrid takes the fourth batch but never answers; the process is killed meanwhile.
    server.fail_when(carries_the_fourth_batch, Fault("slow", delay=60))
    process = digest_send(tmp_path, server)
    wait_for(lambda: hung <= set(server.recipients()) and ledger(tmp_path)["sent"] >= 300)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    wait_until_quiet(server)

    before_rerun = ledger(tmp_path)
    accepted_before = set(server.recipients())
    if concurrency == 1:
        assert before_rerun == Counter(sent=300, sending=100, queued=600)

    rerun = digest_send(tmp_path, server)
    out, err = rerun.communicate(timeout=60)
    assert rerun.returncode == 1, err  # unknown readers need a hand: cron hears of it
    unknown_count = before_rerun["sending"]
    assert f"sent {1000 - unknown_count}, failed 0, skipped 0, unknown {unknown_count}" in out
    assert "--resend-unknown" in err

    delivered = Counter(server.recipients())
    assert max(delivered.values()) == 1, "nobody is sent twice"
    db = open_db(tmp_path / "digest.db")
    unknown = {r[0] for r in db.execute("SELECT email FROM deliveries WHERE status = 'sending'")}
    # The batches under way at the kill stay unknown, whether or not their request had left
    # (the hung one had); everyone else got exactly one digest.
    assert hung <= unknown
    assert set(delivered) | unknown == set(emails)
    assert not unknown & (set(delivered) - accepted_before), "unknown batches are not re-sent"


def test_two_sends_started_together_deliver_each_reader_once(tmp_path, server):
    emails = make_project(tmp_path, readers=500, batch_size=50)
    server.fail_when(lambda body: True, Fault("slow", delay=0.2))
    first, second = digest_send(tmp_path, server), digest_send(tmp_path, server)
    results = [(*p.communicate(timeout=120), p.returncode) for p in (first, second)]

    assert Counter(server.recipients()) == Counter(emails)
    assert ledger(tmp_path) == Counter(sent=500)
    codes = sorted(code for _, _, code in results)
    assert codes[0] == 0
    if codes[1] != 0:
        assert any("Another process" in err for _, err, _ in results)
