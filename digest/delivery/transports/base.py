"""What a transport is: it takes batches of one edition, or one message, and says what came of it.

`send.deliver_editions` records every batch before it is submitted and after its future
resolves; a transport only hands batches over. Each batch resolves to the provider's id for
it, or raises a `TransportError` (failed), `SendRejectedError` (failed; the transport does
not retry it, though `--retry-failed` may), `DeliveryUnknownError` (left unknown) or
`TransportAuthError` (the run stops). `send_single` sends one message that is not part of an
edition (a confirmation, an editor's test) and returns the provider's id for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from email.message import EmailMessage
from enum import StrEnum
from typing import Protocol

from ...edition.build import Edition
from ..ledger import Batch

Submit = Callable[[Edition, Batch], Future]


class Single(StrEnum):
    """Why one message goes alone, outside the ledger: its SendGrid category, and its outbox
    folder (the value with an s), so an editor's tests never count as readers' confirmations."""

    CONFIRMATION = "confirmation"
    WELCOME = "welcome"
    TEST = "test"
    REPORT = "report"
    # "Still want it?" to a reader who stopped reading (`feedback.sunset`).
    RECONFIRM = "reconfirm"


class Transport(Protocol):
    batch_size: int

    @property
    def concurrency(self) -> int:
        """How many batches may be under way at once; asked again before each is claimed."""
        ...

    def sender(self) -> AbstractContextManager[Submit]:
        """A context in which `submit(edition, batch)` starts sending one batch."""
        ...

    def send_single(self, message: EmailMessage, kind: Single) -> str:
        """Send one complete message; returns the provider's id for it."""
        ...

    def describe_single(self, provider_id: str) -> str:
        """Where a message `send_single` sent went, for the one who sent it (a test send)."""
        ...


class BatchTransport:
    """A transport whose `send_batch` runs in a pool of `concurrency` threads."""

    batch_size = 500
    concurrency = 1

    def send_batch(self, edition: Edition, batch: Batch) -> str:
        raise NotImplementedError

    def send_single(self, message: EmailMessage, kind: Single) -> str:
        raise NotImplementedError

    def describe_single(self, provider_id: str) -> str:
        return f"handed to the transport, id {provider_id}"

    @contextmanager
    def sender(self) -> Iterator[Submit]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            yield lambda edition, batch: pool.submit(self.send_batch, edition, batch)
