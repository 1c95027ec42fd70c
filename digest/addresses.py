"""What every transport can deliver: the one check of readers' addresses and names.

Every entry point (CSV import, `subscribers add`, the sign-up form) stores only what passes
`check_email` and `check_name`; the send path passes each recipient through
`sendable_recipient`, which also covers rows stored before these checks existed.

SMTPUTF8 is refused: the outbox writes classic RFC 5322 messages (Python's `email` cannot
put a non-ASCII local part in a header), so until both transports carry such addresses,
neither is given one. A domain in Unicode (IDN) is fine: it is stored in its Unicode form,
lower case (`ana@bücher.de`), and both transports send its ASCII form (`ana@xn--bcher-kva.de`).
"""

from __future__ import annotations

import re

from email_validator import EmailNotValidError, validate_email

from .errors import SubscriberError

MAX_NAME_LENGTH = 100
# Characters that break a header or a terminal line: C0 and C1 controls (CR, LF, ESC...),
# line and paragraph separators, bidirectional overrides and isolates, lone surrogates.
CONTROL_CHARACTERS = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]+"
)
SMTPUTF8_REASON = (
    "neither SendGrid nor the outbox can deliver an address with non-ASCII characters before "
    "the @ (SMTPUTF8); ask the reader for an ASCII address"
)


def shown(text: str, limit: int = 80) -> str:
    """`text` quoted for a message: controls escaped, and cut short if long."""
    return repr(text[:limit]) + ("..." if len(text) > limit else "")


def check_email(address: str) -> str:
    """The address as stored, or SubscriberError saying why no transport could deliver it.

    Stored normalized: the domain in lower-case Unicode, the local part as typed (ASCII only).
    """
    text = address.strip()
    try:
        return validate_email(text, check_deliverability=False, allow_smtputf8=False).normalized
    except EmailNotValidError as exc:
        reason = SMTPUTF8_REASON if not text.rpartition("@")[0].isascii() else str(exc)
    raise SubscriberError(f"invalid address {shown(text)}: {reason}")


def lookup_form(address: str) -> str:
    """The stored form of an address typed to find a reader (`unsubscribe`, `forget`...).

    Lenient, so that rows stored before the SMTPUTF8 refusal can still be found and removed.
    """
    text = address.strip()
    try:
        return validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError:
        return text


def clean_name(name: str) -> str:
    """The name with each run of control characters made one space, and no outer spaces."""
    return CONTROL_CHARACTERS.sub(" ", name).strip()


def check_name(name: str) -> str:
    """The name as stored (`clean_name`), or SubscriberError if it is too long for a greeting."""
    cleaned = clean_name(name)
    if len(cleaned) > MAX_NAME_LENGTH:
        raise SubscriberError(
            f"the name is longer than {MAX_NAME_LENGTH} characters ({len(cleaned)}); shorten it"
        )
    return cleaned


def sendable_recipient(email: str, name: str) -> tuple[str, str]:
    """The address and display name as both transports send them, or SubscriberError why not.

    Called per recipient, so the usual case (an ASCII address, a printable name) costs two
    string tests. A Unicode domain goes out in its ASCII form; a name stored with control
    characters before they were refused is cleaned as at entry; a non-ASCII local part
    cannot go out at all.
    """
    if email.isascii() and name.isprintable():
        return email, name
    if not email.isascii():
        try:
            checked = validate_email(email, check_deliverability=False, allow_smtputf8=False)
        except EmailNotValidError as exc:
            reason = SMTPUTF8_REASON if not email.rpartition("@")[0].isascii() else str(exc)
            raise SubscriberError(f"not sent to {shown(email)}: {reason}") from None
        email = checked.ascii_email or email
    return email, clean_name(name)
