"""Per-recipient values: the placeholders templates carry and the one pass that fills them."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping

# Different keys for the two parts: a name is escaped in HTML and raw in text, and SendGrid
# applies each substitution to every part alike. The URL is the same in both: config checks
# that the site URL needs no escaping, and tokens are URL-safe.
HTML_PLACEHOLDERS = {"greeting": "%%greeting_html%%", "unsubscribe_url": "%%unsubscribe_url%%"}
TEXT_PLACEHOLDERS = {**HTML_PLACEHOLDERS, "greeting": "%%greeting_text%%"}
_PLACEHOLDER = re.compile(r"%%[a-z_]+%%")


def greeting(name: str) -> str:
    return f"Hello {name}," if name.strip() else "Hello,"


def recipient_values(name: str, unsubscribe_url: str) -> dict[str, str]:
    """The placeholder -> value map for one reader, good for both parts of the message."""
    text = greeting(name)
    return {
        "%%greeting_html%%": html.escape(text),
        "%%greeting_text%%": text,
        "%%unsubscribe_url%%": unsubscribe_url,
    }


def personalize(content: str, values: Mapping[str, str]) -> str:
    """Fill every placeholder in one pass, so a value can never be read as a placeholder."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(0), m.group(0)), content)
