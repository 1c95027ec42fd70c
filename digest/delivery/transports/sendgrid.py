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
  Retries happen inside `send_batch`, so its batch stays `sending` in the ledger meanwhile.
- A timeout or dropped connection *after* the request was sent: SendGrid may have accepted
  it, so by default `DeliveryUnknownError` leaves the batch unknown rather than risk mailing
  a thousand readers twice (`retry_after_timeout = true` retries it instead).
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import random
import re
import time
from collections.abc import Callable, Mapping
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import parsedate_to_datetime, quote
from json.encoder import encode_basestring_ascii
from typing import Any
from urllib.error import URLError

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

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
from .base import BatchTransport, Single

MAX_CATEGORIES = 10
# A str as a JSON string literal: the C function json.dumps itself uses.
_json_string = encode_basestring_ascii
JSON_UTF8 = "application/json; charset=utf-8"
# SendGrid splits a recipient's unquoted name at a comma or semicolon, takes a piece for the
# address and drops the mail (sendgrid/sendgrid-python#291); a quoted name goes through whole.
_NAME_NEEDS_QUOTES = re.compile(r'[,;"\\]')
# python_http_client logs every request's headers (the API key) and body at DEBUG.
logging.getLogger("python_http_client").setLevel(logging.INFO)
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


class _BodyBytes(bytes):
    """A request body that formats as its size: python_http_client formats every body it
    sends into a DEBUG message, whatever the log level (about 2 ms per batch of 1000), and
    that text would hold readers' addresses."""

    def __format__(self, spec: str) -> str:
        return f"<{len(self)} bytes>"


class _Body:
    """A request body serialized by the caller, encoded once for every attempt.

    python_http_client sends `request_body.encode("utf-8")` as it is when the content type is
    not exactly `application/json`; only the bytes are kept, not the text beside them.
    """

    def __init__(self, text: str):
        self._bytes = _BodyBytes(text, "utf-8")

    def encode(self, encoding: str = "utf-8") -> bytes:
        return self._bytes


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


def _body_text(error: HTTPError) -> str:
    return error.body.decode("utf-8", "replace") if isinstance(error.body, bytes) else error.body


def _error_entries(error: HTTPError) -> list[dict]:
    """The `errors` list of a SendGrid error body (empty when the body is not that)."""
    try:
        entries = json.loads(_body_text(error) or "{}").get("errors") or []
    except (ValueError, AttributeError):
        return []
    return [e for e in entries if isinstance(e, dict)]


def sendgrid_error_text(error: HTTPError) -> str:
    """SendGrid's own error messages from a response body, joined into one line."""
    messages = [
        f"{e['field']}: {e.get('message')}" if e.get("field") else str(e.get("message"))
        for e in _error_entries(error)
    ]
    return "; ".join(messages) or (_body_text(error) or "").strip()[:300] or "no message"


def rejected_readers(error: HTTPError) -> tuple[int, ...]:
    """The personalizations a 400 names (`personalizations.3.to.0.email`), if it names no
    other field."""
    found = [
        re.match(r"personalizations\.(\d+)\.", e.get("field") or "") for e in _error_entries(error)
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


class SendGridTransport(BatchTransport):
    """Sends batches through `SendGridAPIClient` to the configured host."""

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
        self.concurrency = self.settings.concurrency
        self.host = env.get("SENDGRID_API_HOST") or self.settings.api_host
        self._client = SendGridAPIClient(api_key, host=self.host)
        # The library sets no timeout by default: a hung connection would hang the run.
        self._client.client.timeout = self.settings.timeout_seconds
        self._sleep = sleep

    def send_batch(self, edition: Edition, batch: Batch) -> str:
        return self._post_with_retries(
            mail_send_body(self.config, edition, batch), f"a batch of {len(batch.recipients)}"
        )

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
        body = _Body(text)
        # Only the bytes are kept while the request waits for its answer.
        del text
        for attempt in range(1, self.settings.max_attempts + 1):
            try:
                return self._post(body, what)
            except RetryableError as exc:
                if attempt == self.settings.max_attempts:
                    raise TransportError(
                        f"SendGrid did not take {what} after {attempt} attempts: {exc}"
                    ) from None
                self._sleep(self._backoff(attempt, exc.retry_after))
        raise AssertionError("unreachable: max_attempts is at least 1")

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with full jitter, or what SendGrid asked for, capped."""
        if retry_after is not None:
            return min(retry_after, self.settings.max_backoff_seconds)
        ceiling = min(
            self.settings.backoff_seconds * 2 ** (attempt - 1), self.settings.max_backoff_seconds
        )
        return random.uniform(ceiling / 2, ceiling)

    def _post(self, body: _Body, what: str) -> str:
        """POST a body serialized by the caller."""
        try:
            response = self._client.client.mail.send.post(
                request_body=body,
                request_headers={"Content-Type": JSON_UTF8},
            )
        except HTTPError as exc:
            status = exc.status_code
            message = sendgrid_error_text(exc)
            if status in (401, 403):
                raise TransportAuthError(
                    f"SendGrid refused the API key ({status}: {message}). Check SENDGRID_API_KEY "
                    "and that the key has the Mail Send permission; nothing was sent."
                ) from None
            if status == 429 or status >= 500:
                headers = dict(exc.headers.items()) if exc.headers else None
                raise RetryableError(
                    f"{status} {message}", retry_after_seconds(headers, time.time())
                ) from None
            raise SendRejectedError(
                f"SendGrid rejected {what} ({status}): {message}", rejected_readers(exc)
            ) from None
        except URLError as exc:
            # urllib wraps errors raised while connecting or sending: SendGrid got no request.
            raise RetryableError(f"could not reach {self.host}: {exc.reason}") from None
        except (TimeoutError, http.client.HTTPException, OSError) as exc:
            # Raised while waiting for the answer (a read timeout, a reset, TLS): sent already.
            detail = f"no answer from {self.host} ({type(exc).__name__}: {exc})"
            if self.settings.retry_after_timeout:
                raise RetryableError(detail) from None
            raise DeliveryUnknownError(
                f"{detail} after the request was sent: SendGrid may have accepted it"
            ) from None
        if response.status_code == 200 and self.settings.sandbox_mode:
            return SANDBOX_ID
        if response.status_code != 202:
            raise SendRejectedError(
                f"SendGrid answered {response.status_code} to {what}: {response.body!r:.300}"
            )
        return response.headers.get("X-Message-Id", "")
