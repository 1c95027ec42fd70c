"""The SendGrid transport: one v3 Mail Send request per batch of up to 1000 readers, retried safely.

The request body is built in one place, `mail_send_payload`, as a plain dict: the library's
`Mail` helper inserts personalizations and categories at index 0 and would reverse our
order. Answers map to our own errors, each carrying SendGrid's message:

- 202: accepted; the `X-Message-Id` is recorded for the batch.
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
from typing import Any
from urllib.error import URLError

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from ..config import Config, check_secret_for_sending
from ..edition import Edition
from ..errors import (
    ConfigError,
    DeliveryUnknownError,
    SendRejectedError,
    TransportAuthError,
    TransportError,
)
from ..ledger import Batch
from ..message import ONE_CLICK, list_id
from ..personalize import recipient_values
from ..urls import ReaderLinks
from .base import BatchTransport, Single

MAX_CATEGORIES = 10
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


class RetryableError(TransportError):
    """SendGrid could not take the request now (429, 5xx, connection refused); try again later."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def mail_send_payload(config: Config, edition: Edition, batch: Batch) -> dict[str, Any]:
    """The v3 Mail Send body for one batch: content once, one personalization per reader.

    Each personalization has exactly one `to` (readers never see each other), the
    substitutions that fill the per-reader placeholders, its List-Unsubscribe header
    (substitutions do not reach headers) and custom_args that map webhook events back.
    """
    newsletter = config.newsletters[edition.newsletter]
    site = config.site
    links = ReaderLinks(config, edition.newsletter)
    personalizations = []
    for recipient in batch.recipients:
        url = links.unsubscribe_url(recipient.subscriber_id, recipient.link_nonce)
        to = {"email": recipient.email}
        if recipient.name:
            to["name"] = recipient_name(recipient.name)
        personalizations.append(
            {
                "to": [to],
                "substitutions": recipient_values(recipient.name, url),
                # Only the URL differs per reader; List-Id and List-Unsubscribe-Post are the
                # same for everyone and go once, in the message-level headers.
                "headers": {"List-Unsubscribe": f"<{url}>"},
                # Names the delivery for webhook events; never an address or a name, which
                # SendGrid would keep for good.
                "custom_args": {"digest_delivery": str(recipient.delivery_id)},
            }
        )
    sender = {"email": site.from_email}
    if site.from_name:
        sender["name"] = site.from_name
    body: dict[str, Any] = {
        "personalizations": personalizations,
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
            {"type": f"text/{kind}", "value": part.get_content()}
            for kind in ("plain", "html")
            if (part := message.get_body((kind,))) is not None
        ],
        "categories": [str(kind)],
    }
    if message["Reply-To"]:
        body["reply_to"] = _address(message["Reply-To"].addresses[0])
    if headers:
        body["headers"] = headers
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
        body = json.dumps(mail_send_payload(self.config, edition, batch))
        return self._post_with_retries(body, f"a batch of {len(batch.recipients)}")

    def send_single(self, message: EmailMessage, kind: Single) -> str:
        """One complete message (a confirmation, a test), never under an unsubscribe group."""
        return self._post_with_retries(
            json.dumps(single_message_payload(message, kind)), f"a single message ({kind})"
        )

    def _post_with_retries(self, body: str, what: str) -> str:
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

    def _post(self, body: str, what: str) -> str:
        """POST a body serialized by the caller: the dict of a thousand personalizations is
        gone before the request waits for its answer, and every retry sends the same text."""
        try:
            response = self._client.client.mail.send.post(
                # Not exactly "application/json", so the library sends the text as it is.
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
        if response.status_code != 202:
            raise SendRejectedError(
                f"SendGrid answered {response.status_code} to {what}: {response.body!r:.300}"
            )
        return response.headers.get("X-Message-Id", "")
