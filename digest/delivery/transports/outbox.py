"""The local outbox transport: one `.eml` file per recipient under `outbox/<edition>/`."""

from __future__ import annotations

import contextlib
import hashlib
import os
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from urllib.parse import quote

from ...clock import utcnow
from ...config import Config, check_secret_for_sending
from ...edition.build import Edition
from ...errors import TransportError
from ...urls import ReaderLinks
from ..ledger import Batch
from ..message import build_message
from .base import BatchTransport, Single

# CRLF as on the wire; long header lines unfolded so that the List-Unsubscribe URL stays whole.
EML_POLICY = SMTP.clone(max_line_length=998)
# Most file systems allow 255 bytes in a name.
MAX_NAME_BYTES = 240


def file_safe(text: str) -> str:
    """`text` as one file name, different for every different text.

    Letters, digits and `@._+-~` stay as they are and every other character is %-escaped,
    so two texts never share a name; a name too long for the file system is cut and ends
    with a hash of the whole text after `#` (which no escaped name contains).
    """
    name = quote(text, safe="@+")
    if len(name) <= MAX_NAME_BYTES:
        return name
    return f"{name[:200]}#{hashlib.sha256(text.encode()).hexdigest()[:32]}"


def eml_file_name(email: str) -> str:
    """The outbox file for one reader: their address as sent, made a file name (`file_safe`)."""
    return file_safe(email) + ".eml"


class OutboxTransport(BatchTransport):
    """Writes each message as its own `.eml`, atomically, so a crash leaves no half file."""

    def __init__(self, config: Config, batch_size: int = 500):
        check_secret_for_sending(config, "outbox")
        self.config = config
        self.directory = Path(config.outbox_dir)
        self.batch_size = batch_size

    def edition_dir(self, edition: Edition) -> Path:
        return self.directory / file_safe(edition.slug)

    def send_batch(self, edition: Edition, batch: Batch) -> str:
        """All of the batch's files, or none: the ledger fails a batch whole (a full disk)."""
        folder = self.edition_dir(edition)
        links = ReaderLinks(self.config, edition.newsletter)
        sent_at = utcnow()
        written: list[Path] = []
        try:
            for recipient in batch.recipients:
                message = build_message(
                    self.config,
                    edition,
                    recipient,
                    links.unsubscribe_url(recipient.subscriber_id, recipient.link_nonce),
                    sent_at,
                )
                written.append(write_eml(folder, recipient.email, message))
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise
        return f"outbox:{edition.slug}"

    def send_single(self, message: EmailMessage, kind: Single) -> str:
        """One message on its own, under `outbox/confirmations/` or `outbox/tests/`."""
        folder = f"{kind}s"
        path = write_eml(self.directory / folder, message["To"].addresses[0].addr_spec, message)
        return f"outbox:{path}"

    def describe_single(self, provider_id: str) -> str:
        path = provider_id.removeprefix("outbox:")
        return f"written to {path} (the outbox transport: nothing left this machine)"


def write_eml(folder: Path, email: str, message: EmailMessage) -> Path:
    """Write `<folder>/<address>.eml` atomically (temp file, then rename); a re-send replaces it."""
    path = folder / eml_file_name(email)
    partial = path.with_name(f".{path.name}.tmp")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        partial.write_bytes(message.as_bytes(policy=EML_POLICY))
        os.replace(partial, path)
        return path
    except OSError as exc:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise TransportError(
            f"Cannot write to the outbox {folder}: {exc.strerror}. Check the folder "
            "(transport.outbox or DIGEST_OUTBOX) is writable."
        ) from None
    return path
