"""Unsubscribe tokens: signed, bound to one subscriber and newsletter, and unforgeable."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from itsdangerous import Signer

from digest.tokens import SALT, BadTokenError, TokenSigner

SIGNER = TokenSigner("test-secret")


@given(st.integers(0, 10**12), st.from_regex(r"[a-z0-9_-]{1,20}", fullmatch=True))
def test_a_token_reads_back_as_the_subscriber_and_newsletter_it_names(subscriber_id, newsletter):
    assert SIGNER.read(SIGNER.make(subscriber_id, newsletter)) == (subscriber_id, newsletter)


def test_tokens_are_exactly_what_itsdangerous_signs():
    reference = Signer("test-secret", salt=SALT, digest_method=hashlib.sha256)
    assert SIGNER.make(42, "daily") == reference.sign("42.daily").decode()


@pytest.mark.parametrize(
    "token",
    [
        "",
        "42.daily",
        "43." + SIGNER.make(42, "daily").split(".", 1)[1],
        SIGNER.make(42, "daily")[:-2],
        TokenSigner("another-secret").make(42, "daily"),
        SIGNER.make(42, "daily").replace("daily", "weekly"),
    ],
    ids=["empty", "unsigned", "other-id", "cut-short", "other-key", "other-newsletter"],
)
def test_a_changed_or_foreign_token_is_refused(token):
    with pytest.raises(BadTokenError, match="not valid"):
        SIGNER.read(token)
