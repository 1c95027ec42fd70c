"""Loopback stand-in for SendGrid's v3 Mail Send API that records requests and scripts faults.

After a 202 it also behaves as SendGrid's Event Webhook does, when told where to post
(`send_events_to`): each accepted reader gets events (by default `processed` and
`delivered`; `script_events` gives an address others: bounces, blocks, opens, clicks, spam
reports...), which `post_events` posts signed, in bodies of at most 768 KB, in any order,
with duplicates under new ids, and keeps for a retry when the receiver does not answer 2xx.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import functools
import http
import json
import random
import re
import secrets
import socket
import socketserver
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from html import unescape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import jsonschema
    from cryptography.hazmat.primitives.asymmetric import ec

# SendGrid's OpenAPI document, vendored with its licence (tests/vendor/sendgrid/README.md).
DEFAULT_SCHEMA_PATH = Path(__file__).resolve().parent / "vendor" / "sendgrid" / "tsg_mail_v3.json"
MAIL_SEND_PATH = "/v3/mail/send"
DEFAULT_MAX_BODY_BYTES = 20 * 1024 * 1024

MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
MAX_SUBSTITUTION_BYTES = 10_000
MAX_CUSTOM_ARG_BYTES = 10_000
MAX_CATEGORIES = 10
MAX_CATEGORY_CHARS = 255
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
    }
)

# TCP's initial congestion window (10 segments of 1460 bytes): a new connection's first
# request sends this much in its first round trip, then twice as much in each next one.
INITIAL_WINDOW_BYTES = 14_600

_HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"
AUTH_ERROR = "The provided authorization grant is invalid, expired, or revoked"
_FAULT_MESSAGES = {
    400: "Bad Request",
    401: AUTH_ERROR,
    403: "access forbidden",
    413: "Payload Too Large",
    429: "too many requests",
    500: "internal error",
    503: "service unavailable",
}
# Content blocks must run text/plain, then text/html, then anything else.
_CONTENT_RANK = {"text/plain": 0, "text/html": 1}

Body = Any
Error = dict[str, Any]


@dataclass(frozen=True)
class Fault:
    """One scripted answer: an error status, "slow" (normal answer after `delay`) or "drop".

    `delay` also works with an error status or "drop", to fail only after a wait.
    """

    kind: int | Literal["slow", "drop"]
    delay: float = 0.0
    headers: Mapping[str, str] = field(default_factory=dict)
    # Replaces the default SendGrid-shaped error body; ignored by "slow" and "drop".
    body: Body = None

    def __post_init__(self) -> None:
        if isinstance(self.kind, bool) or not (
            self.kind in ("slow", "drop") or (isinstance(self.kind, int) and 400 <= self.kind < 600)
        ):
            raise ValueError(
                f"Fault kind must be a 4xx/5xx status, 'slow' or 'drop': {self.kind!r}"
            )
        if self.delay < 0:
            raise ValueError("Fault delay must not be negative")


@dataclass(frozen=True)
class NetworkModel:
    """What a far SendGrid costs, in seconds added to each Mail Send answer.

    A new connection: 2 round trips (TCP, then TLS). Its first request: one more round trip
    per doubling of a 14.6 KB window until the body fits (TCP slow start). Every request:
    one round trip and the server's own time.
    """

    rtt: float = 0.0
    server: float = 0.0

    def cost(self, body_bytes: int, first_on_connection: bool) -> float:
        trips = 1
        if first_on_connection:
            trips += 2
            window = INITIAL_WINDOW_BYTES
            while window < body_bytes:
                window *= 2
                trips += 1
        return trips * self.rtt + self.server


@dataclass(frozen=True)
class RecordedRequest:
    """What one request carried and how it was answered."""

    method: str
    path: str
    # Lower-cased names, because HTTP header names are case-insensitive.
    headers: dict[str, str]
    raw_body: bytes
    # Parsed JSON, or None when the body was not JSON (or too large to keep).
    body: Body
    # None when the connection was dropped without an answer.
    status: int | None
    message_id: str | None
    errors: list[Error]
    fault: Fault | None


@dataclass(frozen=True)
class _Answer:
    status: int | None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0
    message_id: str | None = None
    errors: list[Error] = field(default_factory=list)


def _error(message: str, field_name: str | None = None, help_anchor: str | None = None) -> Error:
    return {
        "message": message,
        "field": field_name,
        "help": f"{_HELP}#{help_anchor}" if help_anchor else None,
    }


def _error_answer(
    status: int, errors: list[Error], headers: Mapping[str, str] | None = None, delay: float = 0.0
) -> _Answer:
    return _Answer(
        status,
        {"Content-Type": "application/json", **(headers or {})},
        json.dumps({"errors": errors}).encode(),
        delay,
        errors=errors,
    )


def _byte_size(mapping: Any) -> int:
    """Size of keys plus values as SendGrid counts it: UTF-8 bytes, non-strings as JSON."""
    if isinstance(mapping, str):
        return len(mapping.encode())
    if not isinstance(mapping, dict):
        return 0
    total = 0
    for key, value in mapping.items():
        text = value if isinstance(value, str) else json.dumps(value)
        total += len(str(key).encode()) + len(text.encode())
    return total


def _resolve_refs(node: Any, document: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    """Inline local `$ref`s so the extracted schema stands alone."""
    if isinstance(node, list):
        return [_resolve_refs(item, document, seen) for item in node]
    if not isinstance(node, dict):
        return node
    resolved = {k: _resolve_refs(v, document, seen) for k, v in node.items() if k != "$ref"}
    ref = node.get("$ref")
    if ref is None:
        return resolved
    if not ref.startswith("#/") or ref in seen:
        raise ValueError(f"cannot inline $ref {ref!r}")
    target: Any = document
    for part in ref[2:].split("/"):
        target = target[part.replace("~1", "/").replace("~0", "~")]
    target = _resolve_refs(target, document, (*seen, ref))
    if not resolved:
        return target
    # OpenAPI 3.1 lets keywords sit beside $ref and applies both, which allOf expresses.
    return {**resolved, "allOf": [target]}


def load_mail_send_schema(path: Path) -> dict[str, Any]:
    """The request body schema of POST /v3/mail/send from SendGrid's OpenAPI document."""
    document = json.loads(path.read_text(encoding="utf-8"))
    request_body = _resolve_refs(document["paths"][MAIL_SEND_PATH]["post"]["requestBody"], document)
    schema = request_body["content"]["application/json"]["schema"]
    # The published schema types message-level custom_args as a string, yet the API and the
    # official library's Mail helper use an object; rejecting that would fail correct code.
    custom_args = schema["properties"].get("custom_args")
    if isinstance(custom_args, dict) and custom_args.get("type") == "string":
        custom_args["type"] = ["object", "string"]
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


@functools.cache
def _validator_for(path: Path, mtime_ns: int) -> jsonschema.Draft202012Validator:
    # Loading and checking the schema costs ~0.1 s; tests start a server each, so share it.
    # Validators are read-only, so sharing across threads and servers is safe.
    # Imported here: the benchmark's server checks no schema and its memory is measured.
    import jsonschema

    return jsonschema.Draft202012Validator(
        load_mail_send_schema(path),
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )


def _json_path(parts: Iterable[Any]) -> str:
    return ".".join(str(part) for part in parts)


def _schema_errors(validator: jsonschema.Draft202012Validator, body: Body) -> list[Error]:
    errors = []
    for err in sorted(validator.iter_errors(body), key=lambda e: list(map(str, e.absolute_path))):
        parts = list(err.absolute_path)
        if err.validator == "required" and isinstance(err.instance, dict):
            # Name the missing property itself, as SendGrid does, not its parent.
            missing = [p for p in err.validator_value if p not in err.instance]
            parts += missing[:1]
        errors.append(_error(err.message, _json_path(parts) or None))
    return errors


def _emails(recipients: Any) -> list[str]:
    if not isinstance(recipients, list):
        return []
    return [
        r["email"] for r in recipients if isinstance(r, dict) and isinstance(r.get("email"), str)
    ]


def _header_errors(headers: Any, where: str) -> list[Error]:
    if headers is None:
        return []
    if not isinstance(headers, dict):
        return [_error("The headers parameter must be an object.", where, "message.headers")]
    errors = []
    reserved = sorted(name for name in headers if str(name).lower() in RESERVED_HEADERS)
    if reserved:
        errors.append(
            _error(
                "You may not overwrite the following reserved headers: x-sg-id, x-sg-eid, "
                "received, dkim-signature, Content-Type, Content-Transfer-Encoding, To, From, "
                f"Subject, Reply-To, CC, BCC (found: {', '.join(reserved)})",
                where,
                "message.headers",
            )
        )
    for name, value in headers.items():
        if not isinstance(value, str):
            errors.append(
                _error("Header values must be strings.", f"{where}.{name}", "message.headers")
            )
    return errors


def check_mail_send_limits(body: Body) -> list[Error]:
    """SendGrid's documented Mail Send rules, as SendGrid-shaped error entries (empty if ok)."""
    if not isinstance(body, dict):
        return [_error("The request body must be a JSON object.")]
    errors: list[Error] = []
    sender = body.get("from")
    if not (isinstance(sender, dict) and isinstance(sender.get("email"), str) and sender["email"]):
        errors.append(
            _error(
                "The from object must be provided for every email send. It is an object that "
                "requires the email parameter, but may also contain a name parameter.",
                "from.email",
                "message.from",
            )
        )

    personalizations = body.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        errors.append(
            _error(
                "The personalizations field is required and must have at least one "
                "personalization.",
                "personalizations",
                "message.personalizations",
            )
        )
        personalizations = []
    elif len(personalizations) > MAX_PERSONALIZATIONS:
        errors.append(
            _error(
                f"You may not include more than {MAX_PERSONALIZATIONS} personalizations per "
                f"request (got {len(personalizations)}).",
                "personalizations",
                "message.personalizations",
            )
        )

    message_args = body.get("custom_args")
    message_args_size = _byte_size(message_args)
    if message_args_size > MAX_CUSTOM_ARG_BYTES:
        errors.append(
            _error(
                f"The total size of custom arguments may not exceed {MAX_CUSTOM_ARG_BYTES} "
                f"bytes (got {message_args_size}).",
                "custom_args",
                "message.custom_args",
            )
        )

    total_recipients = 0
    every_personalization_has_subject = bool(personalizations)
    for index, personalization in enumerate(personalizations):
        where = f"personalizations.{index}"
        if not isinstance(personalization, dict):
            errors.append(_error("Each personalization must be an object.", where))
            every_personalization_has_subject = False
            continue
        subject = personalization.get("subject")
        if not (isinstance(subject, str) and subject):
            every_personalization_has_subject = False
        to = _emails(personalization.get("to"))
        if not to:
            errors.append(
                _error(
                    "The to array is required for all personalization objects, and must have "
                    "at least one email object with a valid email address.",
                    f"{where}.to",
                    "message.personalizations.to",
                )
            )
        seen: set[str] = set()
        for kind in ("to", "cc", "bcc"):
            addresses = _emails(personalization.get(kind))
            total_recipients += len(addresses)
            for address in addresses:
                if address.lower() in seen:
                    errors.append(
                        _error(
                            "Each email address in the personalization block should be unique "
                            "between to, cc, and bcc. We found the first duplicate instance of "
                            f"[{address}] in the {where}.{kind} field.",
                            f"{where}.{kind}",
                            "message.recipient-errors",
                        )
                    )
                    break
                seen.add(address.lower())
        substitutions_size = _byte_size(personalization.get("substitutions"))
        if substitutions_size > MAX_SUBSTITUTION_BYTES:
            errors.append(
                _error(
                    f"The total size of substitutions may not exceed {MAX_SUBSTITUTION_BYTES} "
                    f"bytes per personalization (got {substitutions_size}).",
                    f"{where}.substitutions",
                    "message.personalizations.substitutions",
                )
            )
        # SendGrid merges message-level custom_args into every personalization, so the
        # limit applies to the sum.
        args_size = _byte_size(personalization.get("custom_args"))
        if args_size and message_args_size + args_size > MAX_CUSTOM_ARG_BYTES:
            errors.append(
                _error(
                    f"The total size of custom arguments may not exceed {MAX_CUSTOM_ARG_BYTES} "
                    f"bytes (got {message_args_size + args_size} with the message-level ones).",
                    f"{where}.custom_args",
                    "message.custom_args",
                )
            )
        errors += _header_errors(personalization.get("headers"), f"{where}.headers")

    if total_recipients > MAX_RECIPIENTS:
        errors.append(
            _error(
                f"The total number of recipients must be no more than {MAX_RECIPIENTS}. This "
                "includes all recipients defined within the to, cc, and bcc parameters, across "
                f"each object in the personalizations array (got {total_recipients}).",
                "personalizations",
                "message.personalizations",
            )
        )

    # A stored template may carry its own subject and content.
    uses_template = isinstance(body.get("template_id"), str) and bool(body["template_id"])
    subject = body.get("subject")
    if not (
        (isinstance(subject, str) and subject) or every_personalization_has_subject or uses_template
    ):
        errors.append(
            _error(
                "The subject is required. You can get around this requirement if you use a "
                "template with a subject defined or if every personalization has a subject "
                "defined.",
                "subject",
                "message.subject",
            )
        )

    content = body.get("content")
    if not uses_template and not (isinstance(content, list) and content):
        errors.append(
            _error(
                "Unless a valid template_id is provided, the content parameter is required. "
                "There must be at least one defined content block.",
                "content",
                "message.content",
            )
        )
    elif isinstance(content, list):
        ranks = [
            _CONTENT_RANK.get(str(block.get("type", "")).lower(), 2)
            for block in content
            if isinstance(block, dict)
        ]
        if ranks != sorted(ranks):
            errors.append(
                _error(
                    "If present, text/plain must be first, followed by text/html, followed by "
                    "any other content.",
                    "content",
                    "message.content",
                )
            )

    categories = body.get("categories")
    if isinstance(categories, list):
        if len(categories) > MAX_CATEGORIES:
            errors.append(
                _error(
                    f"You cannot have more than {MAX_CATEGORIES} categories per request "
                    f"(got {len(categories)}).",
                    "categories",
                    "message.categories",
                )
            )
        for index, category in enumerate(categories):
            if isinstance(category, str) and len(category) > MAX_CATEGORY_CHARS:
                errors.append(
                    _error(
                        f"A category cannot have more than {MAX_CATEGORY_CHARS} characters.",
                        f"categories.{index}",
                        "message.categories",
                    )
                )

    errors += _header_errors(body.get("headers"), "headers")
    return errors


# -- the Event Webhook side --------------------------------------------------------------------

EVENT_POST_BYTES = 768 * 1024
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
DEFAULT_EVENTS = ("processed", "delivered")
# Seconds after the 202 at which each kind of event happens.
_EVENT_DELAY = {
    "processed": 0,
    "dropped": 0,
    "delivered": 2,
    "bounce": 3,
    "late_bounce": 7200,
    "blocked": 3,
    "deferred": 30,
    "machine_open": 5,
    "open": 60,
    "click": 90,
    "unsubscribe": 120,
    "group_unsubscribe": 120,
    "spamreport": 600,
}
_HREF = re.compile(r'href="([^"]+)"')


def make_webhook_key() -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A signing key pair as SendGrid makes one: the private key, and the public key as SendGrid
    shows it (base64 DER SubjectPublicKeyInfo, no PEM armour)."""
    # Imported here: a server that posts no events (the benchmarks) never loads cryptography.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, base64.b64encode(der).decode("ascii")


def sign_event_post(private_key: ec.EllipticCurvePrivateKey, timestamp: str, body: bytes) -> str:
    """The signature header: base64 DER ECDSA P-256 / SHA-256 over the timestamp + the body."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    signature = private_key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(signature).decode("ascii")


def event_bodies(events: list[dict], max_bytes: int = EVENT_POST_BYTES) -> list[bytes]:
    """Events as SendGrid posts them: compact JSON arrays ending in CRLF, each under max_bytes."""
    bodies: list[bytes] = []
    chunk: list[bytes] = []
    size = 4
    for event in events:
        encoded = json.dumps(event, separators=(",", ":")).encode()
        if chunk and size + len(encoded) + 1 > max_bytes:
            bodies.append(b"[" + b",".join(chunk) + b"]\r\n")
            chunk, size = [], 4
        chunk.append(encoded)
        size += len(encoded) + 1
    if chunk:
        bodies.append(b"[" + b",".join(chunk) + b"]\r\n")
    return bodies


def post_event_body(url: str, key: ec.EllipticCurvePrivateKey, body: bytes) -> int | None:
    """POST one signed event body as SendGrid does; the status, or None when none came."""
    timestamp = str(int(time.time()))
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "SendGrid Event API",
            SIGNATURE_HEADER: sign_event_post(key, timestamp, body),
            TIMESTAMP_HEADER: timestamp,
        },
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=120) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def story_links(html: str) -> list[str]:
    """The story links of an email's HTML (those carrying a story id), in order."""
    return [unescape(url) for url in _HREF.findall(html) if "digest_story=" in url]


def new_event_id() -> str:
    return secrets.token_urlsafe(16)


def reader_events(
    body: dict[str, Any], message_id: str, index: int, kinds: Iterable[str], at: float
) -> list[dict[str, Any]]:
    """The events SendGrid would post about one personalization of an accepted request.

    Custom args come back flattened, the personalization's over the message's, and SendGrid's
    own keys over both. Kinds: processed, delivered, deferred, bounce, late_bounce (an
    asynchronous bounce: no sg_message_id), blocked, dropped:<reason>, open, machine_open,
    click or click:N (the Nth story link, from 1), spamreport, unsubscribe, group_unsubscribe.
    """
    personalization = body["personalizations"][index]
    args = {**(body.get("custom_args") or {}), **(personalization.get("custom_args") or {})}
    html = next(
        (c.get("value", "") for c in body.get("content", []) if c.get("type") == "text/html"), ""
    )
    common: dict[str, Any] = {
        "email": personalization["to"][0]["email"],
        "sg_message_id": f"{message_id}.filterdrecv-5bd4c8f-{index}-0",
        "smtp-id": f"<{message_id}@ismtpd0001p1.test>",
    }
    if body.get("categories"):
        common["category"] = body["categories"]
    if body.get("asm"):
        common["asm_group_id"] = body["asm"]["group_id"]
    events = []
    for position, kind in enumerate(kinds):
        name, _, argument = kind.partition(":")
        fields: dict[str, Any] = {"event": name}
        if name == "delivered":
            fields |= {"response": "250 2.0.0 OK", "ip": "168.245.1.1", "tls": 1}
        elif name == "deferred":
            fields |= {"response": "421 4.7.0 Try again later", "attempt": "1"}
        elif name in ("bounce", "late_bounce"):
            fields |= {
                "event": "bounce",
                "type": "bounce",
                "status": "5.1.1",
                "reason": "550 5.1.1 The email account that you tried to reach does not exist",
                "bounce_classification": "Invalid Address",
            }
        elif name == "blocked":
            fields |= {
                "event": "bounce",
                "type": "blocked",
                "status": "5.7.1",
                "reason": "554 5.7.1 Service unavailable; client host blocked",
                "bounce_classification": "Reputation",
            }
        elif name == "dropped":
            fields["reason"] = argument or "Bounced Address"
        elif name in ("open", "machine_open"):
            machine = name == "machine_open"
            fields |= {
                "event": "open",
                "sg_machine_open": machine,
                "useragent": "Mozilla/5.0",
                "ip": "17.58.0.1" if machine else "203.0.113.7",
            }
        elif name == "click":
            number = int(argument or 1)
            fields |= {
                "url": story_links(html)[number - 1],
                "url_offset": {"index": number - 1, "type": "html"},
                "useragent": "Mozilla/5.0",
                "ip": "203.0.113.7",
            }
        event = {**args, **common, **fields}
        # A second apart at least: the same kind twice (two clicks) is two events.
        event["timestamp"] = int(at) + _EVENT_DELAY[name] + position
        event["sg_event_id"] = new_event_id()
        if name == "late_bounce":
            del event["sg_message_id"]
        events.append(event)
    return events


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    # HTTP/1.1 so keep-alive clients behave as against SendGrid; every answer sets Content-Length.
    protocol_version = "HTTP/1.1"
    # Mail Send requests answered on this connection so far.
    requests_on_connection = 0

    def log_message(self, format: str, *args: Any) -> None:
        # Tests want a quiet stderr; the recorded requests are the log.
        pass

    def _dispatch(self) -> None:
        self.server.owner._handle(self)

    do_POST = do_GET = do_PUT = do_PATCH = do_DELETE = _dispatch


class _HTTPServer(ThreadingHTTPServer):
    # Several processes may send at once; the default backlog of 5 makes connects stall.
    request_queue_size = 128

    def __init__(self, owner: SendGridTestServer, port: int = 0) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup for server_name, which can stall
        # in sandboxes and is of no use on loopback.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up is normal here (timeouts, drops); anything else is a bug to show.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class SendGridTestServer:
    """A SendGrid v3 Mail Send look-alike on 127.0.0.1; use as a context manager.

    >>> with SendGridTestServer(api_key="SG.test") as server:
    ...     client = sendgrid.SendGridAPIClient("SG.test", host=server.url)
    """

    def __init__(
        self,
        api_key: str = "SG.test",
        *,
        schema_path: Path | None = DEFAULT_SCHEMA_PATH,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        keep_bodies: bool = True,
        check_limits: bool = True,
        port: int = 0,
        network: NetworkModel | None = None,
    ) -> None:
        self.api_key = api_key
        # Latency and slow start as a far server has them (None: answers at once).
        self.network = network
        # Connections that carried at least one request (not counting /_stats).
        self.connections = 0
        # The benchmark sends a million readers: it keeps counts, not a gigabyte of bodies.
        self.keep_bodies = keep_bodies
        self.check_limits = check_limits
        self.port = port
        self.accepted_recipients = 0
        self.max_body_bytes = max_body_bytes
        self._validator: jsonschema.Draft202012Validator | None = None
        if schema_path is not None:
            # A missing schema is an error, never a check silently skipped.
            self._validator = _validator_for(schema_path.resolve(), schema_path.stat().st_mtime_ns)
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._script: deque[Fault] = deque()
        self._rules: list[tuple[Callable[[Body], bool], Fault]] = []
        self._stopping = threading.Event()
        # The Event Webhook side: where to post, with which key, and what is still to post.
        self._webhook_url: str | None = None
        self._webhook_key: ec.EllipticCurvePrivateKey | None = None
        self._clock: Callable[[], float] = time.time
        self._event_scripts: dict[str, tuple[str, ...]] = {}
        self._pending_events: list[dict[str, Any]] = []
        self.posted_events: list[dict[str, Any]] = []
        self.event_posts: list[tuple[bytes, int | None]] = []
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def schema_checked(self) -> bool:
        """Whether bodies are also validated against SendGrid's published OpenAPI schema."""
        return self._validator is not None

    @property
    def url(self) -> str:
        """Base URL to pass as `host=` to sendgrid.SendGridAPIClient."""
        if self._httpd is None:
            raise RuntimeError("SendGridTestServer is not running")
        return f"http://127.0.0.1:{self._httpd.server_port}"

    def start(self) -> Self:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _HTTPServer(self, self.port)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="sendgrid-test-server",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        # Wake slow answers so teardown does not wait out their delays.
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()
        self._httpd = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- scripting -------------------------------------------------------------------------

    def script(self, *responses: int | Fault) -> None:
        """Queue answers for the next Mail Send requests, one each, ahead of normal handling."""
        faults = [r if isinstance(r, Fault) else Fault(r) for r in responses]
        with self._lock:
            self._script.extend(faults)

    def fail_when(self, predicate: Callable[[Body], bool], status: int | Fault) -> None:
        """Answer `status` to every otherwise valid request whose parsed body matches."""
        fault = status if isinstance(status, Fault) else Fault(status)
        with self._lock:
            self._rules.append((predicate, fault))

    def pending_script(self) -> list[Fault]:
        with self._lock:
            return list(self._script)

    def clear(self) -> None:
        """Forget recorded requests, queued faults and fail_when rules."""
        with self._lock:
            self._requests.clear()
            self._script.clear()
            self._rules.clear()

    # -- inspection ------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    def accepted_bodies(self) -> list[Body]:
        """Bodies answered 202, including slow ones whose client gave up waiting."""
        return [r.body for r in self.requests if r.status == 202]

    def recipients(self) -> list[str]:
        """Every `to` address across accepted requests, in order."""
        return [
            address
            for body in self.accepted_bodies()
            for personalization in body.get("personalizations", [])
            if isinstance(personalization, dict)
            for address in _emails(personalization.get("to"))
        ]

    # -- the Event Webhook ------------------------------------------------------------------

    def send_events_to(
        self,
        url: str,
        private_key: ec.EllipticCurvePrivateKey,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """From now on, each accepted reader gets events, posted to `url` by `post_events`."""
        with self._lock:
            self._webhook_url, self._webhook_key, self._clock = url, private_key, clock

    def script_events(self, address: str, *kinds: str) -> None:
        """The events the next accepted mail to `address` makes (see `reader_events`)."""
        with self._lock:
            self._event_scripts[address.lower()] = kinds

    def pending_events(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._pending_events)

    def post_events(
        self,
        events: list[dict[str, Any]] | None = None,
        *,
        order: Literal["as made", "reversed", "shuffled"] = "as made",
        hold: Callable[[dict[str, Any]], bool] | None = None,
        new_ids: bool = False,
        max_bytes: int = EVENT_POST_BYTES,
    ) -> list[int | None]:
        """Post events, signed, as SendGrid does; returns each post's status (None: no answer).

        By default the pending ones, except those `hold` keeps for later (late arrivals);
        `events` posts those instead (e.g. `posted_events` again, as a re-delivery, with
        `new_ids` as SendGrid sometimes does). A post not answered 2xx goes back to pending:
        SendGrid retries it.
        """
        with self._lock:
            assert self._webhook_url and self._webhook_key, "call send_events_to first"
            if events is None:
                events = [e for e in self._pending_events if not (hold and hold(e))]
                self._pending_events = [e for e in self._pending_events if hold and hold(e)]
            url, key = self._webhook_url, self._webhook_key
        events = [dict(e, sg_event_id=new_event_id()) if new_ids else e for e in events]
        if order == "reversed":
            events.reverse()
        elif order == "shuffled":
            random.Random(len(events)).shuffle(events)
        statuses = []
        for body in event_bodies(events, max_bytes):
            status = post_event_body(url, key, body)
            statuses.append(status)
            batch = json.loads(body)
            with self._lock:
                self.event_posts.append((body, status))
                if status is not None and 200 <= status < 300:
                    self.posted_events += batch
                else:
                    self._pending_events += batch
        return statuses

    def _queue_events(self, body: Body, message_id: str) -> None:
        """What SendGrid would say about each reader of an accepted request, to post later."""
        with self._lock:
            if self._webhook_url is None or not isinstance(body, dict):
                return
            at = self._clock()
            for index, personalization in enumerate(body.get("personalizations", [])):
                address = _emails(personalization.get("to"))[0].lower()
                kinds = self._event_scripts.get(address, DEFAULT_EVENTS)
                self._pending_events += reader_events(body, message_id, index, kinds, at)

    # -- request handling ------------------------------------------------------------------

    def _handle(self, handler: _Handler) -> None:
        path = urlsplit(handler.path).path
        method = handler.command
        if method == "GET" and path == "/_stats":
            # Not part of SendGrid's API and not recorded: the benchmark's view of the counts.
            self._send(handler, self._stats_answer())
            return
        headers = {name.lower(): value for name, value in handler.headers.items()}
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            length = -1
        first_on_connection = handler.requests_on_connection == 0
        handler.requests_on_connection += 1
        if first_on_connection:
            with self._lock:
                self.connections += 1
        far = self.network.cost(max(length, 0), first_on_connection) if self.network else 0.0
        if length < 0:
            handler.close_connection = True
            raw = b""
        elif length > self.max_body_bytes:
            self._drain(handler, length)
            raw = b""
        else:
            raw = handler.rfile.read(length)

        counting_only = not (self.check_limits or self.keep_bodies)
        try:
            # The benchmark's mode: SendGrid's parsing is not ours to pay for on this machine.
            body: Body = json.loads(raw) if raw and not counting_only else None
            parsed = bool(raw)
        except ValueError:
            body, parsed = None, False

        fault: Fault | None = None
        if method == "POST" and path == MAIL_SEND_PATH:
            with self._lock:
                fault = self._script.popleft() if self._script else None
        try:
            if fault is not None:
                answer = self._fault_answer(fault, method, path, headers, length, body, parsed)
            else:
                answer = self._normal_answer(method, path, headers, length, body, parsed)
        except Exception as exc:
            # Answer instead of crashing, so a test sees the problem in the response.
            answer = _error_answer(500, [_error(f"sendgrid test server failure: {exc!r}")])

        if answer.status == 202:
            if isinstance(body, dict):
                count = sum(len(_emails(p.get("to"))) for p in body.get("personalizations", []))
            else:
                # Unparsed: one reader per personalization, each written `{"to": [` first.
                count = raw.count(b'{"to": [')
            with self._lock:
                self.accepted_recipients += count
        record = RecordedRequest(
            method=method,
            path=path,
            headers=headers,
            raw_body=raw if self.keep_bodies else b"",
            body=body if self.keep_bodies else None,
            status=answer.status,
            message_id=answer.message_id,
            errors=answer.errors,
            fault=fault,
        )
        # Recorded before any delay: SendGrid has the message even if the client stops waiting.
        with self._lock:
            self._requests.append(record)
        if answer.status == 202 and answer.message_id:
            self._queue_events(body, answer.message_id)
        if answer.delay or far:
            self._stopping.wait(answer.delay + far)
        self._send(handler, answer)

    def _stats_answer(self) -> _Answer:
        with self._lock:
            stats = {
                "requests": len(self._requests),
                "connections": self.connections,
                "accepted": sum(1 for r in self._requests if r.status == 202),
                "recipients": self.accepted_recipients,
            }
        return _Answer(200, {"Content-Type": "application/json"}, json.dumps(stats).encode())

    def _fault_answer(
        self,
        fault: Fault,
        method: str,
        path: str,
        headers: dict[str, str],
        length: int,
        body: Body,
        parsed: bool,
    ) -> _Answer:
        if fault.kind == "drop":
            return _Answer(None, delay=fault.delay)
        if fault.kind == "slow":
            # Without the fail_when rules: a rule answering "slow" would otherwise match again.
            normal = self._normal_answer(
                method, path, headers, length, body, parsed, apply_rules=False
            )
            return replace(normal, headers={**normal.headers, **fault.headers}, delay=fault.delay)
        assert isinstance(fault.kind, int)
        if fault.body is not None:
            payload = fault.body
            if not isinstance(payload, bytes):
                payload = json.dumps(payload).encode()
            return _Answer(
                fault.kind,
                {"Content-Type": "application/json", **fault.headers},
                payload,
                fault.delay,
            )
        message = _FAULT_MESSAGES.get(fault.kind) or http.HTTPStatus(fault.kind).phrase
        return _error_answer(fault.kind, [_error(message)], fault.headers, fault.delay)

    def _normal_answer(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        length: int,
        body: Body,
        parsed: bool,
        apply_rules: bool = True,
    ) -> _Answer:
        if path != MAIL_SEND_PATH:
            return _error_answer(404, [_error("resource not found")])
        if method != "POST":
            return _error_answer(405, [_error("method not allowed")], {"Allow": "POST"})
        # SendGrid checks the key before looking at the body.
        if headers.get("authorization") != f"Bearer {self.api_key}":
            return _error_answer(401, [_error(AUTH_ERROR)])
        if length > self.max_body_bytes:
            return _error_answer(
                413,
                [_error(f"Payload Too Large: the body may not exceed {self.max_body_bytes} bytes")],
            )
        if not parsed:
            return _error_answer(400, [_error("Bad Request")])
        errors = check_mail_send_limits(body) if self.check_limits else []
        if not errors and self._validator is not None:
            errors = _schema_errors(self._validator, body)
        if errors:
            return _error_answer(400, errors)
        with self._lock:
            rules = list(self._rules) if apply_rules else []
        for predicate, fault in rules:
            if predicate(copy.deepcopy(body)):
                return self._fault_answer(fault, method, path, headers, length, body, parsed)
        settings = body.get("mail_settings") if isinstance(body, dict) else None
        if (
            isinstance(settings, dict)
            and (settings.get("sandbox_mode") or {}).get("enable") is True
        ):
            # Sandbox mode: validated, delivered to no one, answered 200 with no body or id.
            return _Answer(200, {})
        # SendGrid's ids are 22 URL-safe characters; uniqueness is what tests rely on.
        message_id = secrets.token_urlsafe(16)
        return _Answer(202, {"X-Message-Id": message_id}, message_id=message_id)

    @staticmethod
    def _drain(handler: _Handler, length: int) -> None:
        # Read the oversized body anyway: answering early would leave the client writing into
        # a closed socket and seeing a reset instead of the 413.
        remaining = length
        while remaining > 0:
            chunk = handler.rfile.read(min(remaining, 1 << 16))
            if not chunk:
                break
            remaining -= len(chunk)

    @staticmethod
    def _send(handler: _Handler, answer: _Answer) -> None:
        if answer.status is None:
            handler.close_connection = True
            with contextlib.suppress(OSError):
                handler.connection.shutdown(socket.SHUT_RDWR)
            return
        try:
            handler.send_response(answer.status)
            for name, value in answer.headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(answer.body)))
            if handler.close_connection:
                handler.send_header("Connection", "close")
            handler.end_headers()
            if answer.body:
                handler.wfile.write(answer.body)
        except OSError:
            # The client already gave up (a timeout, usually); the request stays recorded.
            handler.close_connection = True


def main() -> None:
    """Serve on a port until killed, for the benchmark: prints the URL on its first line."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default="SG.test")
    parser.add_argument("--no-schema", action="store_true", help="skip the OpenAPI check")
    parser.add_argument("--no-bodies", action="store_true", help="keep counts, not bodies")
    parser.add_argument(
        "--no-checks",
        action="store_true",
        help="skip the limit checks; with --no-bodies, count readers without parsing JSON",
    )
    parser.add_argument("--rtt-ms", type=float, default=0.0, help="round trip (NetworkModel)")
    parser.add_argument("--server-ms", type=float, default=0.0, help="server time per request")
    args = parser.parse_args()
    server = SendGridTestServer(
        args.api_key,
        schema_path=None if args.no_schema else DEFAULT_SCHEMA_PATH,
        keep_bodies=not args.no_bodies,
        check_limits=not args.no_checks,
        port=args.port,
        network=NetworkModel(args.rtt_ms / 1000, args.server_ms / 1000)
        if args.rtt_ms or args.server_ms
        else None,
    )
    with server:
        print(server.url, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
