"""The transports, by the name `transport.kind` gives them; the shells pick one and pass it down."""

from __future__ import annotations

from ...config import Config
from .base import BatchTransport, Single, Submit, Transport
from .outbox import OutboxTransport
from .sendgrid import SendGridTransport

TRANSPORT_CLASSES: dict[str, type[OutboxTransport] | type[SendGridTransport]] = {
    "outbox": OutboxTransport,
    "sendgrid": SendGridTransport,
}

__all__ = [
    "TRANSPORT_CLASSES",
    "BatchTransport",
    "Single",
    "Submit",
    "Transport",
    "make_transport",
]


def make_transport(config: Config) -> Transport:
    """The transport named in the config (or DIGEST_TRANSPORT)."""
    return TRANSPORT_CLASSES[config.transport](config)
