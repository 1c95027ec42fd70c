"""Reader tokens: signed, bound to one subscriber, nonce and newsletter, and unforgeable."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from itsdangerous import Signer

from digest.tokens import SALT, BadTokenError, TokenClaim, TokenSigner, new_nonce

SIGNER = TokenSigner("test-secret")
NONCE = "0123456789abcdef"
LEGACY = Signer("test-secret", salt=SALT, digest_method=hashlib.sha256)


@given(
    st.integers(0, 10**12),
    st.from_regex(r"[0-9a-f]{16,64}", fullmatch=True),
    st.from_regex(r"[a-z0-9_-]{1,20}", fullmatch=True),
)
def test_a_token_reads_back_as_the_subscriber_nonce_and_newsletter_it_names(
    subscriber_id, nonce, newsletter
):
    token = SIGNER.make(subscriber_id, nonce, newsletter)
    assert SIGNER.read(token) == TokenClaim(subscriber_id, nonce, newsletter)


def test_tokens_are_exactly_what_itsdangerous_signs():
    reference = Signer("test-secret", salt=SALT, digest_method=hashlib.sha256)
    assert SIGNER.make(42, NONCE, "daily") == reference.sign(f"42.{NONCE}.daily").decode()


def test_a_token_of_the_old_format_reads_with_no_nonce():
    old = LEGACY.sign("42.daily").decode()
    assert SIGNER.read(old) == TokenClaim(42, None, "daily")


def test_confirmation_codes_are_random_hex_that_fits_a_token():
    code = new_nonce()
    assert code != new_nonce() and len(code) == 32
    assert SIGNER.read(SIGNER.make(1, code, "daily")).nonce == code


@pytest.mark.parametrize(
    "token",
    [
        "",
        f"42.{NONCE}.daily",
        "43." + SIGNER.make(42, NONCE, "daily").split(".", 1)[1],
        SIGNER.make(42, NONCE, "daily").replace(NONCE, "f" * 16),
        SIGNER.make(42, NONCE, "daily")[:-2],
        TokenSigner("another-secret").make(42, NONCE, "daily"),
        SIGNER.make(42, NONCE, "daily").replace("daily", "weekly"),
        LEGACY.sign(f"42.{NONCE}.daily.extra").decode(),
    ],
    ids=[
        "empty",
        "unsigned",
        "other-id",
        "other-nonce",
        "cut-short",
        "other-key",
        "other-newsletter",
        "signed-but-malformed",
    ],
)
def test_a_changed_or_foreign_token_is_refused(token):
    with pytest.raises(BadTokenError, match="not valid"):
        SIGNER.read(token)
