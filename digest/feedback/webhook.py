"""SendGrid's Event Webhook receiver: `POST /webhooks/sendgrid`, verified, stored, then processed.

SendGrid signs each post with ECDSA P-256 over the timestamp header followed by the raw body
bytes; the signature is checked on those exact bytes before anything is parsed (re-serialized
JSON never verifies). A verified post is committed to SQLite, then answered 204; its events are
processed after the answer has gone (`events.process_pending`), so a crash in between loses
nothing. SendGrid retries anything but a 2xx for 24 hours: a missing, bad or unknown-key
signature, or a timestamp that is not Unix seconds of the last two days, gets 403 and nothing
is stored, and a body we could not store gets a 5xx, never a 2xx. The body is hashed as it
streams in and held on disk past 1 MB, so unsigned posts never fill the memory; only a few
headers are stored with a post (never `Authorization` or `Cookie`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import load_der_public_key
from flask import Blueprint, Flask, Response, abort, current_app, request

from ..clock import utcnow
from ..errors import ConfigError
from ..store import open_db
from .events import process_pending, store_post

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
KEYS_VARIABLE = "SENDGRID_WEBHOOK_PUBLIC_KEY"
# SendGrid posts at about 768 KB; room for much more, but not for anything.
MAX_POST_BYTES = 16 * 1024 * 1024
EXTENSION = "digest_webhook"
# SendGrid retries a post for 24 hours (whether it signs retries afresh is not documented):
# older signatures, or ones from the future beyond clock skew, are replays or forgeries.
MAX_SIGNATURE_AGE = 48 * 3600
MAX_CLOCK_SKEW = 300
# What is kept of a post's headers: enough to check it again, never credentials or cookies.
STORED_HEADERS = (
    "Content-Type",
    "Content-Length",
    "User-Agent",
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
)
# A body past this size waits on disk, not in memory, until its signature is checked.
SPOOL_BYTES = 1024 * 1024
CHUNK_BYTES = 64 * 1024
log = logging.getLogger(__name__)

PublicKeys = tuple[ec.EllipticCurvePublicKey, ...]


def load_public_keys(text: str) -> PublicKeys:
    """The verification keys in `SENDGRID_WEBHOOK_PUBLIC_KEY`: base64 DER, comma-separated.

    Several keys are accepted during a rotation (or for several webhooks on one account).
    """
    keys = []
    for number, value in enumerate((v.strip() for v in text.split(",")), start=1):
        if not value:
            continue
        try:
            key = load_der_public_key(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            key = None
        if not (isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)):
            raise ConfigError(
                f"{KEYS_VARIABLE} key number {number} is not an ECDSA P-256 public key in "
                "base64 DER; copy the verification key SendGrid shows under Settings > Mail "
                "Settings > Event Webhook > Signature Verification (several: comma-separated)."
            )
        keys.append(key)
    return tuple(keys)


def verify_signature(keys: PublicKeys, body: bytes, signature: str, timestamp: str) -> bool:
    """Whether one of the keys signed `timestamp` + the exact body bytes (base64 DER signature)."""
    try:
        signed = hashlib.sha256(timestamp.encode("latin-1"))
    except UnicodeEncodeError:
        return False
    signed.update(body)
    return verify_digest(keys, signed.digest(), signature)


def verify_digest(keys: PublicKeys, digest: bytes, signature: str) -> bool:
    """`verify_signature` on the SHA-256 of timestamp + body, hashed as the body streamed in."""
    try:
        der = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return False
    for key in keys:
        try:
            key.verify(der, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        except InvalidSignature:
            continue
        return True
    return False


def fresh_timestamp(timestamp: str, now: float) -> bool:
    """Whether the timestamp header is Unix seconds from the last two days (with some skew)."""
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        return False
    return now - MAX_SIGNATURE_AGE <= int(timestamp) <= now + MAX_CLOCK_SKEW


webhook = Blueprint("webhook", __name__)


def install_webhook(app: Flask, env: Mapping[str, str]) -> None:
    """Register the receiver with the keys from `env`; without keys it answers 404."""
    app.extensions[EXTENSION] = load_public_keys(env.get(KEYS_VARIABLE, ""))
    app.register_blueprint(webhook)


def _db_path() -> Path:
    return current_app.extensions["digest"].config.db_path


@webhook.post("/webhooks/sendgrid")
def receive_events() -> Response:
    keys: PublicKeys = current_app.extensions[EXTENSION]
    if not keys:
        # Without a key nothing could be trusted: the route does not exist (README says why).
        abort(404)
    signature = request.headers.get(SIGNATURE_HEADER, "")
    timestamp = request.headers.get(TIMESTAMP_HEADER, "")
    if not signature or not timestamp:
        return Response("missing signature\n", 403, mimetype="text/plain")
    if not fresh_timestamp(timestamp, time.time()):
        return Response("stale or malformed timestamp\n", 403, mimetype="text/plain")
    request.max_content_length = MAX_POST_BYTES
    signed = hashlib.sha256(timestamp.encode("latin-1"))
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        _stream_body(spool, signed.update)
        if not verify_digest(keys, signed.digest(), signature):
            return Response("bad signature\n", 403, mimetype="text/plain")
        spool.seek(0)
        body = spool.read()
    headers = {name: request.headers[name] for name in STORED_HEADERS if name in request.headers}
    db_path = _db_path()
    db = open_db(db_path)
    try:
        # Raises (a 500, retried by SendGrid) rather than answer 2xx for what is not stored.
        post_id = store_post(db, body, headers, utcnow())
    finally:
        db.close()
    response = Response(status=204)
    response.call_on_close(lambda: _process_after_answer(db_path, post_id))
    return response


def _stream_body(spool: IO[bytes], hash_chunk: Callable[[bytes], object]) -> None:
    """Copy the request body into `spool`, hashing it on the way (413 past MAX_POST_BYTES)."""
    length = request.content_length
    if length is not None and length > MAX_POST_BYTES:
        abort(413)
    size = 0
    while chunk := request.stream.read(CHUNK_BYTES):
        size += len(chunk)
        if size > MAX_POST_BYTES:
            abort(413)
        hash_chunk(chunk)
        spool.write(chunk)


def _process_after_answer(db_path: Path, post_id: int) -> None:
    """Process what is pending once SendGrid has its answer; a failure only waits for later."""
    try:
        db = open_db(db_path)
        try:
            process_pending(db)
        finally:
            db.close()
    except Exception:
        log.exception(
            "webhook post %s is stored; processing it failed and waits for later", post_id
        )
