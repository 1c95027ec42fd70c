"""The SendGrid transport: one v3 Mail Send request per batch of up to 1000 readers, retried safely.

The request body is built in one place, `mail_send_body`, as JSON text, not through the
library's `Mail` helper, which inserts personalizations and categories at index 0 and would
reverse our order. Answers map to our own errors, each carrying SendGrid's message:

- 202: accepted; the `X-Message-Id` is recorded for the batch.
- 200 with `sendgrid.sandbox_mode` on: SendGrid validated the request and delivers nothing;
  it counts as sent (provider id `sandbox`), so a sandbox run is never retried as failed.
- 400, 413: `SendRejectedError` (the batch is failed, the edition goes on; not retried).
- 401, 403: `TransportAuthError` (the run stops; the batch goes back to the queue).
- 429, 5xx and errors before the request was sent (refused connection, connect timeout):
  retried with exponential backoff and jitter, honouring `Retry-After` / `X-RateLimit-Reset`.
  Retries happen inside `send_batch`, so its batch stays `sending` in the ledger meanwhile;
  every other batch holds back too (`Pace`).
- A timeout or dropped connection *after* the request was sent: SendGrid may have accepted
  it, so by default `DeliveryUnknownError` leaves the batch unknown rather than risk mailing
  a thousand readers twice (`retry_after_timeout = true` retries it instead).

Requests go over kept-alive connections from one urllib3 pool per transport (TCP and TLS
handshakes once per connection, not per batch), as many as `concurrency`; how many batches
are under way at once follows the answers' latency (`Pace`).
"""

from __future__ import annotations

import base64
import json
import math
import os
import random
import re
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import parsedate_to_datetime, quote
from json.encoder import encode_basestring_ascii
from typing import Any
from urllib.parse import urlsplit

import urllib3
from sendgrid import SendGridAPIClient
from urllib3.exceptions import ConnectTimeoutError, ProxyError
from urllib3.exceptions import HTTPError as Urllib3Error

from ...config import Config, check_secret_for_sending
from ...edition.build import Edition
from ...edition.personalize import recipient_values
from ...errors import (
    ConfigError,
    DeliveryUnknownError,
    SendRejectedError,
    TransportAuthError,
    TransportError,
)
from ...urls import ReaderLinks
from ..ledger import Batch, Recipient
from ..message import ONE_CLICK, list_id
from .base import BatchTransport, Single, Submit

MAX_CATEGORIES = 10
# A str as a JSON string literal: the C function json.dumps itself uses.
_json_string = encode_basestring_ascii
JSON_UTF8 = "application/json; charset=utf-8"
# SendGrid splits a recipient's unquoted name at a comma or semicolon, takes a piece for the
# address and drops the mail (sendgrid/sendgrid-python#291); a quoted name goes through whole.
_NAME_NEEDS_QUOTES = re.compile(r'[,;"\\]')
MAIL_SEND_PATH = "/v3/mail/send"
# Headers SendGrid sets itself and refuses in `headers` (plus those of the MIME structure).
RESERVED_HEADERS = frozenset(
    {
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
        "content-type",
        "content-transfer-encoding",
        "to",
        "from",
        "subject",
        "reply-to",
        "cc",
        "bcc",
        "mime-version",
        "date",
        "message-id",
    }
)


# The provider id of a batch SendGrid's sandbox validated (it answers 200, delivers nothing).
SANDBOX_ID = "sandbox"


class RetryableError(TransportError):
    """SendGrid could not take the request now (429, 5xx, connection refused); try again later."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def mail_send_body(config: Config, edition: Edition, batch: Batch) -> str:
    """The v3 Mail Send body for one batch, as JSON text: content once, one personalization
    per reader.

    Each personalization has exactly one `to` (readers never see each other), the
    substitutions that fill the per-reader placeholders, its List-Unsubscribe header
    (substitutions do not reach headers) and custom_args that map webhook events back.
    """
    links = ReaderLinks(config, edition.newsletter)
    personalizations = ", ".join(
        [
            personalization_json(
                recipient, links.unsubscribe_url(recipient.subscriber_id, recipient.link_nonce)
            )
            for recipient in batch.recipients
        ]
    )
    # The rest of the message is one object; personalizations go first, as SendGrid shows them.
    message = json.dumps(message_fields(config, edition, batch))
    return f'{{"personalizations": [{personalizations}], {message[1:]}'


def personalization_json(recipient: Recipient, url: str) -> str:
    """One reader's personalization, as the very text json.dumps would make of it.

    Written directly rather than as a dict for json.dumps: it runs once per reader, and a
    thousand small dicts serialized cost about three times as much as this.
    """
    to = f'"email": {_json_string(recipient.email)}'
    if recipient.name:
        to += f', "name": {_json_string(recipient_name(recipient.name))}'
    substitutions = ", ".join(
        [
            f"{_json_string(key)}: {_json_string(value)}"
            for key, value in recipient_values(recipient.name, url).items()
        ]
    )
    return (
        f'{{"to": [{{{to}}}], "substitutions": {{{substitutions}}}, '
        # Only the URL differs per reader; List-Id and List-Unsubscribe-Post are the same
        # for everyone and go once, in the message-level headers.
        f'"headers": {{"List-Unsubscribe": {_json_string(f"<{url}>")}}}, '
        # Names the delivery for webhook events; never an address or a name, which SendGrid
        # would keep for good.
        f'"custom_args": {{"digest_delivery": "{recipient.delivery_id:d}"}}}}'
    )


def message_fields(config: Config, edition: Edition, batch: Batch) -> dict[str, Any]:
    """Everything of a batch's Mail Send body but its personalizations."""
    newsletter = config.newsletters[edition.newsletter]
    site = config.site
    sender = {"email": site.from_email}
    if site.from_name:
        sender["name"] = site.from_name
    body: dict[str, Any] = {
        "from": sender,
        "subject": edition.subject,
        "content": [
            {"type": "text/plain", "value": edition.text},
            {"type": "text/html", "value": edition.html},
        ],
        "headers": {
            "List-Id": list_id(config, edition.newsletter),
            "List-Unsubscribe-Post": ONE_CLICK,
        },
        "custom_args": {
            "digest_edition": str(edition.id),
            "digest_newsletter": edition.newsletter,
            "digest_batch": batch.key,
        },
    }
    if site.reply_to:
        body["reply_to"] = {"email": site.reply_to}
    if newsletter.categories:
        body["categories"] = list(newsletter.categories[:MAX_CATEGORIES])
    if newsletter.asm_group_id is not None:
        body["asm"] = {"group_id": newsletter.asm_group_id}
    if config.sendgrid.sandbox_mode:
        body["mail_settings"] = {"sandbox_mode": {"enable": True}}
    return body


def single_message_payload(message: EmailMessage, kind: Single) -> dict[str, Any]:
    """The Mail Send body for one complete message: its sender, reader, parts and headers."""
    sender = message["From"].addresses[0]
    reader = message["To"].addresses[0]
    headers = {
        name: str(value) for name, value in message.items() if name.lower() not in RESERVED_HEADERS
    }
    body: dict[str, Any] = {
        "personalizations": [{"to": [_address(reader, recipient_name)]}],
        "from": _address(sender),
        "subject": str(message["Subject"]),
        "content": [
            {"type": f"text/{subtype}", "value": part.get_content()}
            for subtype in ("plain", "html")
            if (part := message.get_body((subtype,))) is not None
        ],
        "categories": [str(kind)],
    }
    if message["Reply-To"]:
        body["reply_to"] = _address(message["Reply-To"].addresses[0])
    if headers:
        body["headers"] = headers
    # Images the HTML shows by Content-ID (the editors' report's charts).
    inline = [
        {
            "content": base64.b64encode(bytes(part.get_content())).decode("ascii"),
            "type": part.get_content_type(),
            "filename": part.get_filename() or "image",
            "disposition": "inline",
            "content_id": str(part["Content-ID"]).strip("<>"),
        }
        for part in message.walk()
        if part["Content-ID"] and not part.is_multipart()
    ]
    if inline:
        body["attachments"] = inline
    return body


def recipient_name(name: str) -> str:
    """A reader's name as a personalization's `to.name`: quoted if SendGrid would split it."""
    return f'"{quote(name)}"' if _NAME_NEEDS_QUOTES.search(name) else name


def _address(address: Address, name: Callable[[str], str] = str) -> dict[str, str]:
    return {
        "email": address.addr_spec,
        **({"name": name(address.display_name)} if address.display_name else {}),
    }


def _error_entries(body: bytes) -> list[dict]:
    """The `errors` list of a SendGrid error body (empty when the body is not that)."""
    try:
        entries = json.loads(body.decode("utf-8", "replace") or "{}").get("errors") or []
    except (ValueError, AttributeError):
        return []
    return [e for e in entries if isinstance(e, dict)]


def sendgrid_error_text(body: bytes) -> str:
    """SendGrid's own error messages from a response body, joined into one line."""
    messages = [
        f"{e['field']}: {e.get('message')}" if e.get("field") else str(e.get("message"))
        for e in _error_entries(body)
    ]
    return "; ".join(messages) or body.decode("utf-8", "replace").strip()[:300] or "no message"


def rejected_readers(body: bytes) -> tuple[int, ...]:
    """The personalizations a 400 names (`personalizations.3.to.0.email`), if it names no
    other field."""
    found = [
        re.match(r"personalizations\.(\d+)\.", e.get("field") or "") for e in _error_entries(body)
    ]
    if not found or not all(found):
        return ()
    return tuple(sorted({int(match.group(1)) for match in found if match}))


def retry_after_seconds(headers: Mapping[str, str] | None, now: float) -> float | None:
    """How long SendGrid asked us to wait, from Retry-After or X-RateLimit-Reset."""
    if not headers:
        return None
    value = headers.get("Retry-After")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(value).timestamp() - now)
            except (TypeError, ValueError):
                pass
    reset = headers.get("X-RateLimit-Reset")
    if reset:
        try:
            return max(0.0, float(reset) - now)
        except ValueError:
            return None
    return None


class Pace:
    """How many batches may be under way at once, and when the next request may leave.

    Enough batches are kept under way to cover the answers' latency: while one request
    waits `latency` for its answer, the process makes a body every `making` seconds, so
    `latency / making` more can be made meanwhile (smoothed over the last answers; one
    more for the batch being made). A request still waiting counts with the time it has
    waited so far: the window opens while the first answers are slow to come, not only
    once they are in. Against a server next door that stays at 2, so
    memory stays as it was; an ocean away it grows up to `ceiling`. A 429 or 5xx halves
    the window, which then grows back by one per answer, and what SendGrid asked for
    (`Retry-After`, `X-RateLimit-Reset`) holds back every request of the transport.
    """

    START = 2
    # Weight of the newest measure in the smoothed latency and making time.
    SMOOTHING = 0.2

    def __init__(
        self,
        ceiling: int,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.ceiling = ceiling
        self._sleep, self._clock = sleep, clock
        self._lock = threading.Lock()
        self._latency = 0.0
        self._making = 0.0
        # The most batches allowed since the last 429 or 5xx (grows back by one per answer).
        self._cap = ceiling
        self._not_before = 0.0
        # When each request now waiting for its answer left.
        self._waiting: dict[int, float] = {}

    @property
    def window(self) -> int:
        """How many batches to keep under way now."""
        with self._lock:
            return self._window()

    def _window(self) -> int:
        wanted = self.START
        if self._making > 0:
            now = self._clock()
            latency = max(self._latency, now - min(self._waiting.values(), default=now))
            wanted = max(wanted, math.ceil(latency / self._making) + 1)
        return max(1, min(wanted, self._cap, self.ceiling))

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Around one request, from when it leaves until its answer (or error) is in."""
        key = threading.get_ident()
        with self._lock:
            self._waiting[key] = self._clock()
        try:
            yield
        finally:
            with self._lock:
                del self._waiting[key]

    def _smooth(self, old: float, new: float) -> float:
        return new if old == 0 else old + self.SMOOTHING * (new - old)

    def made(self, seconds: float) -> None:
        """A request body took `seconds` to make."""
        with self._lock:
            self._making = self._smooth(self._making, seconds)

    def answered(self, seconds: float, hold: float | None = None) -> None:
        """An answer came `seconds` after its request left; `hold`: SendGrid said no request
        is left before its rate limit resets, in that many seconds."""
        with self._lock:
            self._latency = self._smooth(self._latency, seconds)
            self._cap = min(self.ceiling, self._cap + 1)
            if hold:
                self._not_before = max(self._not_before, self._clock() + hold)

    def refused(self, wait: float) -> float:
        """A 429 or 5xx: halve the window and hold every request back for `wait` seconds.

        Returns the moment requests may leave again (on the pace's clock).
        """
        with self._lock:
            self._cap = max(1, self._window() // 2)
            until = self._clock() + wait
            self._not_before = max(self._not_before, until)
            return until

    def wait_turn(self, slept_until: float = 0.0) -> None:
        """Sleep until requests may leave again, if SendGrid asked for a pause (beyond
        `slept_until`, which the caller has already waited out)."""
        with self._lock:
            wait = self._not_before - max(self._clock(), slept_until)
        if wait > 0:
            self._sleep(wait)


def _pool_for(url: str, size: int, timeout: float) -> urllib3.PoolManager:
    """One pool of at most `size` kept-alive connections to `url`'s host, through the proxy
    the environment names for it (as urllib did), never retrying or redirecting on its own."""
    options: dict[str, Any] = {
        "maxsize": size,
        # Callers wait for a free connection rather than open one beyond `size`.
        "block": True,
        "retries": False,
        "timeout": urllib3.Timeout(connect=timeout, read=timeout),
    }
    parts = urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        return urllib3.ProxyManager(proxy, **options)
    return urllib3.PoolManager(**options)


class SendGridTransport(BatchTransport):
    """Sends batches to the configured host's Mail Send, over a pool of kept-alive connections."""

    def __init__(
        self,
        config: Config,
        *,
        env: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        env = os.environ if env is None else env
        api_key = env.get("SENDGRID_API_KEY", "").strip()
        if not api_key:
            raise ConfigError(
                "SENDGRID_API_KEY is not set; put it in .env beside digest.toml or export it "
                "(never put it in digest.toml), "
                "or use the outbox transport (DIGEST_TRANSPORT=outbox)."
            )
        check_secret_for_sending(config, "sendgrid")
        self.config = config
        self.settings = config.sendgrid
        self.batch_size = self.settings.batch_size
        self.host = (env.get("SENDGRID_API_HOST") or self.settings.api_host).rstrip("/")
        self._url = self.host + MAIL_SEND_PATH
        # The library's own headers (the key, its User-Agent), sent over our pool.
        client = SendGridAPIClient(api_key, host=self.host).client
        self._headers = {**client.request_headers, "Content-Type": JSON_UTF8}
        self.pace = Pace(self.settings.concurrency, sleep)
        self._pool = _pool_for(self._url, self.settings.concurrency, self.settings.timeout_seconds)
        self._sleep = sleep

    @property
    def concurrency(self) -> int:  # type: ignore[override]
        """Batches to keep under way now: `deliver_editions` asks before each claim."""
        return self.pace.window

    @contextmanager
    def sender(self) -> Iterator[Submit]:
        # Threads for the most batches the pace may ever allow; idle ones cost nothing.
        with ThreadPoolExecutor(max_workers=self.pace.ceiling) as pool:
            yield lambda edition, batch: pool.submit(self.send_batch, edition, batch)

    def send_batch(self, edition: Edition, batch: Batch) -> str:
        started = time.perf_counter()
        text = mail_send_body(self.config, edition, batch)
        self.pace.made(time.perf_counter() - started)
        return self._post_with_retries(text, f"a batch of {len(batch.recipients)}")

    def send_single(self, message: EmailMessage, kind: Single) -> str:
        """One complete message (a confirmation, a test), never under an unsubscribe group."""
        return self._post_with_retries(
            json.dumps(single_message_payload(message, kind)), f"a single message ({kind})"
        )

    def describe_single(self, provider_id: str) -> str:
        return (
            f"accepted by SendGrid: POST {self.host}/v3/mail/send answered 202, "
            f"X-Message-Id {provider_id or 'not given'}"
        )

    def _post_with_retries(self, text: str, what: str) -> str:
        body = text.encode("utf-8")
        # Only the bytes are kept while the request waits for its answer.
        del text
        slept_until = 0.0
        for attempt in range(1, self.settings.max_attempts + 1):
            self.pace.wait_turn(slept_until)
            try:
                return self._post(body, what)
            except RetryableError as exc:
                wait = self._backoff(attempt, exc.retry_after)
                slept_until = self.pace.refused(wait)
                if attempt == self.settings.max_attempts:
                    raise TransportError(
                        f"SendGrid did not take {what} after {attempt} attempts: {exc}"
                    ) from None
                self._sleep(wait)
        raise AssertionError("unreachable: max_attempts is at least 1")

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with full jitter, or what SendGrid asked for, capped."""
        if retry_after is not None:
            return min(retry_after, self.settings.max_backoff_seconds)
        ceiling = min(
            self.settings.backoff_seconds * 2 ** (attempt - 1), self.settings.max_backoff_seconds
        )
        return random.uniform(ceiling / 2, ceiling)

    def _post(self, body: bytes, what: str) -> str:
        """POST a body serialized by the caller; its answer mapped to our errors."""
        sent = time.perf_counter()
        try:
            with self.pace.waiting():
                response = self._pool.request(
                    "POST", self._url, body=body, headers=self._headers, redirect=False
                )
        except (ConnectTimeoutError, ProxyError) as exc:
            # Raised while connecting (refused, unresolved, timed out): SendGrid got no request.
            raise RetryableError(f"could not reach {self.host}: {exc}") from None
        except Urllib3Error as exc:
            if isinstance(exc.__context__, ssl.SSLCertVerificationError):
                raise RetryableError(f"could not reach {self.host}: {exc}") from None
            # Raised once the request was under way (a read timeout, a reset): sent already.
            detail = f"no answer from {self.host} ({type(exc).__name__}: {exc})"
            if self.settings.retry_after_timeout:
                raise RetryableError(detail) from None
            raise DeliveryUnknownError(
                f"{detail} after the request was sent: SendGrid may have accepted it"
            ) from None
        status, headers = response.status, response.headers
        if status in (401, 403):
            raise TransportAuthError(
                f"SendGrid refused the API key ({status}: {sendgrid_error_text(response.data)}). "
                "Check SENDGRID_API_KEY and that the key has the Mail Send permission; "
                "nothing was sent."
            )
        if status == 429 or status >= 500:
            raise RetryableError(
                f"{status} {sendgrid_error_text(response.data)}",
                retry_after_seconds(headers, time.time()),
            )
        if 400 <= status < 500:
            raise SendRejectedError(
                f"SendGrid rejected {what} ({status}): {sendgrid_error_text(response.data)}",
                rejected_readers(response.data),
            )
        if status == 200 and self.settings.sandbox_mode:
            self.pace.answered(time.perf_counter() - sent)
            return SANDBOX_ID
        if status != 202:
            raise SendRejectedError(f"SendGrid answered {status} to {what}: {response.data!r:.300}")
        # The last request SendGrid takes before its limit resets: wait for the reset.
        hold = None
        if headers.get("X-RateLimit-Remaining") == "0":
            hold = retry_after_seconds(
                {"X-RateLimit-Reset": headers.get("X-RateLimit-Reset", "")}, time.time()
            )
        self.pace.answered(time.perf_counter() - sent, hold)
        return headers.get("X-Message-Id", "")
