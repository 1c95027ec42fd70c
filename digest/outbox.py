"""The local outbox transport: one `.eml` file per recipient under `outbox/<edition>/`."""

from __future__ import annotations

import os
import re
from email.policy import SMTP
from pathlib import Path

from .clock import utcnow
from .config import Config
from .edition import Edition
from .errors import TransportError
from .ledger import Batch
from .message import build_message

# CRLF as on the wire; long header lines unfolded so that the List-Unsubscribe URL stays whole.
EML_POLICY = SMTP.clone(max_line_length=998)


class OutboxTransport:
    """Writes each message atomically (temp file, then rename), so a crash leaves no half file."""

    name = "outbox"

    def __init__(self, config: Config, batch_size: int = 500):
        self.config = config
        self.directory = Path(config.outbox_dir)
        self.batch_size = batch_size
        self.concurrency = 1

    def edition_dir(self, edition: Edition) -> Path:
        return self.directory / edition.slug

    def send_batch(self, edition: Edition, batch: Batch, unsubscribe_urls: dict[int, str]) -> str:
        folder = self.edition_dir(edition)
        sent_at = utcnow()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for recipient in batch.recipients:
                message = build_message(
                    self.config,
                    edition,
                    recipient,
                    unsubscribe_urls[recipient.delivery_id],
                    sent_at,
                )
                name = re.sub(r"[^A-Za-z0-9@._+-]", "_", recipient.email) + ".eml"
                partial = folder / f".{name}.tmp"
                partial.write_bytes(message.as_bytes(policy=EML_POLICY))
                os.replace(partial, folder / name)
        except OSError as exc:
            raise TransportError(
                f"Cannot write to the outbox {folder}: {exc.strerror}. Check the folder "
                "(transport.outbox or DIGEST_OUTBOX) is writable."
            ) from None
        return f"outbox:{edition.slug}"
