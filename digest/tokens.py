"""Signed reader tokens: each names one subscriber of one newsletter and cannot be forged."""

from __future__ import annotations

import binascii
import hashlib
import hmac
import re
import secrets
from typing import NamedTuple

from itsdangerous import BadSignature, Signer

from .errors import DigestError

SALT = "digest.unsubscribe"
# Confirmation links are signed with their own salt, so an unsubscribe token confirms no one.
CONFIRM_SALT = "digest.confirm"
# And the keep button of a reconfirm email with its own: a keep link unsubscribes no one.
KEEP_SALT = "digest.keep"
_LINK_NAMES = {SALT: "unsubscribe link", CONFIRM_SALT: "confirmation link", KEEP_SALT: "keep link"}
# Standard base64 into the URL-safe alphabet that itsdangerous signs in.
_URL_SAFE = bytes.maketrans(b"+/", b"-_")
# `<id>.<nonce>.<newsletter>`; before the m005 migration, `<id>.<newsletter>` (no nonce).
_PAYLOAD = re.compile(r"(\d+)\.(?:([0-9a-f]{16,64})\.)?([a-z0-9_-]+)")


def new_nonce(length: int = 16) -> str:
    """A random value for a token's nonce slot: a confirmation code (`length` bytes, as hex).

    Readers' link nonces are made by the database (`subscribers.link_nonce`'s default).
    """
    return secrets.token_hex(length)


class BadTokenError(DigestError):
    """A token that was tampered with, signed with another key, or is not a token at all."""


class TokenClaim(NamedTuple):
    """What a token says: a subscriber, a nonce (None in a token of the old format), a newsletter.

    The signature only proves that we made it; whether the nonce still matches the reader
    (or the confirmation code the subscription) is for the reader modules to check.
    """

    subscriber_id: int
    nonce: str | None
    newsletter: str


class TokenSigner:
    """Makes and reads tokens (`<id>.<nonce>.<newsletter>.<signature>`) with the key and a salt.

    Tokens are made once per recipient on the send path, so `make` signs exactly as
    itsdangerous' Signer does but derives the key once, not per token, and keys the HMAC
    once too: copying a keyed HMAC costs a third less than `hmac.digest` keying it anew.
    """

    def __init__(self, secret_key: str, salt: str = SALT):
        self._signer = Signer(secret_key, salt=salt, digest_method=hashlib.sha256)
        # Never updated, only copied: threads may sign with it at once.
        self._keyed = hmac.new(self._signer.derive_key(), digestmod=hashlib.sha256)
        self._link_name = _LINK_NAMES.get(salt, "link")

    def make(self, subscriber_id: int, nonce: str, newsletter: str) -> str:
        payload = f"{subscriber_id}.{nonce}.{newsletter}"
        mac = self._keyed.copy()
        mac.update(payload.encode("ascii"))
        # itsdangerous' base64_encode (URL-safe, unpadded) in one call: this runs per recipient.
        signature = binascii.b2a_base64(mac.digest(), newline=False).translate(_URL_SAFE, b"=")
        return f"{payload}.{signature.decode('ascii')}"

    def read(self, token: str) -> TokenClaim:
        try:
            payload = self._signer.unsign(token).decode("ascii")
        except (BadSignature, UnicodeError):
            payload = ""
        match = _PAYLOAD.fullmatch(payload)
        if not match:
            raise BadTokenError(
                f"This {self._link_name} is not valid: it may have been cut short or changed. "
                "Use the link from the latest email."
            )
        return TokenClaim(int(match.group(1)), match.group(2), match.group(3))
