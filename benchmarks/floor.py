"""The floor: the least work one slot's send must do, in one tight loop in one process.

    python benchmarks/floor.py --db digest.db --url http://127.0.0.1:PORT --timezone UTC

Only the irreducible part of `digest send`, written as plainly as Python allows: the slot's
audience queued as ledger rows in one statement, then per batch of 1000 the rows read,
marked `sending`, one HMAC-signed unsubscribe token per reader, one JSON body of 1000
personalizations (the same fields `digest send` puts in each) POSTed over one kept-alive
connection, and the rows marked `sent`. No select, no render, no retries, no lease, no
worker: `benchmarks/send.py` runs it beside the real send to say how far from it that is.
Standard library only. It writes its own table, `floor_ledger`, and touches nothing else.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import html
import http.client
import json
import sys
from urllib.parse import urlsplit

BATCH = 1000
# About the size of a rendered edition: sent once per request, whatever the batch size.
CONTENT_HTML = "<p>" + "A paragraph of news about as long as a real one. " * 600 + "</p>"
CONTENT_TEXT = "A paragraph of news about as long as a real one.\n" * 300


def queue(db, timezone: str) -> None:
    db.executescript(
        """DROP TABLE IF EXISTS floor_ledger;
           CREATE TABLE floor_ledger (id INTEGER PRIMARY KEY, subscriber_id INTEGER,
               email TEXT, name TEXT, status TEXT, batch_key TEXT, provider_id TEXT,
               updated_at TEXT)"""
    )
    db.execute(
        """INSERT INTO floor_ledger (subscriber_id, email, name, status, updated_at)
               SELECT id, email, name, 'queued', datetime('now') FROM subscribers
               WHERE status = 'active' AND timezone = ? AND EXISTS (
                   SELECT 1 FROM subscriptions WHERE subscriber_id = subscribers.id
                   AND newsletter = 'daily' AND status = 'active')""",
        [timezone],
    )


def personalization(key: bytes, prefix: str, reader: tuple) -> dict:
    _, subscriber_id, email, name = reader
    payload = f"{subscriber_id}.daily"
    mac = hmac.digest(key, payload.encode("ascii"), "sha256")
    url = f"{prefix}{payload}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode('ascii')}"
    greeting = f"Hello {name}," if name else "Hello,"
    return {
        "to": [{"email": email, "name": name}],
        "substitutions": {
            "%%greeting_html%%": html.escape(greeting),
            "%%greeting_text%%": greeting,
            "%%unsubscribe_url%%": url,
        },
        "headers": {"List-Unsubscribe": f"<{url}>"},
        "custom_args": {"digest_subscriber": str(subscriber_id)},
    }


def send(db, url: str, api_key: str, secret: str) -> int:
    """Send every queued row; returns how many readers the server accepted."""
    key = hashlib.sha256(b"digest.unsubscribe" + b"signer" + secret.encode()).digest()
    prefix = "https://news.example.com/u/"
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    sent = last = batch_number = 0
    while True:
        readers = db.execute(
            """SELECT id, subscriber_id, email, name FROM floor_ledger
               WHERE id > ? AND status = 'queued' ORDER BY id LIMIT ?""",
            [last, BATCH],
        ).fetchall()
        if not readers:
            return sent
        first, last = readers[0][0], readers[-1][0]
        batch_number += 1
        db.execute(
            """UPDATE floor_ledger SET status = 'sending', batch_key = ?,
                   updated_at = datetime('now') WHERE id BETWEEN ? AND ?""",
            [str(batch_number), first, last],
        )
        body = {
            "personalizations": [personalization(key, prefix, reader) for reader in readers],
            "from": {"email": "digest@news.example.com"},
            "subject": "The floor",
            "content": [
                {"type": "text/plain", "value": CONTENT_TEXT},
                {"type": "text/html", "value": CONTENT_HTML},
            ],
            "custom_args": {"digest_batch": str(batch_number)},
        }
        connection.request("POST", "/v3/mail/send", json.dumps(body).encode(), headers)
        response = connection.getresponse()
        response.read()
        if response.status != 202:
            sys.exit(f"the server answered {response.status}")
        db.execute(
            """UPDATE floor_ledger SET status = 'sent', provider_id = ?,
                   updated_at = datetime('now') WHERE id BETWEEN ? AND ?""",
            [response.getheader("X-Message-Id"), first, last],
        )
        sent += len(readers)


def main() -> None:
    import sqlite3

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--url", required=True, help="the test server's base URL")
    parser.add_argument("--api-key", default="SG.benchmark")
    parser.add_argument("--secret", default="benchmark-secret")
    parser.add_argument("--timezone", action="append", help="the slot's zone (repeatable)")
    args = parser.parse_args()
    db = sqlite3.connect(args.db, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    total = 0
    for timezone in args.timezone:
        queue(db, timezone)
        total += send(db, args.url, args.api_key, args.secret)
    print(f"floor: {total} readers sent")


if __name__ == "__main__":
    main()
