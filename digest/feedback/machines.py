"""Whether an open or a click was a person's or a machine's (Apple's proxy, a link scanner).

SendGrid passes on every open and click, including those made by machines: Apple Mail
Privacy Protection opens every email it receives (`sg_machine_open`), and security scanners
(Microsoft Defender Safe Links, Barracuda, Proofpoint...) fetch the links of a message
within seconds or minutes of its arrival, before any person could. The rule, from
docs/how-it-works (list health) and the research behind it: an open flagged by SendGrid as
Apple's, or an open or click within `SCANNER_SECONDS` of the send, is a machine's; anything
later is a person's. It is deliberately simple, so every part of the project (list health,
reports, ranking) judges an event the same way.
"""

from __future__ import annotations

# Scanners act within seconds to a couple of minutes of delivery (practitioners report 1.5 s
# to 5 min); a person rarely reads and clicks within two minutes of the send.
SCANNER_SECONDS = 120


def is_machine_open(machine_open: bool, opened_at: int, sent_at: int | None) -> bool:
    """An open by Apple's proxy (`sg_machine_open`), or one too soon after the send."""
    return machine_open or _too_soon(opened_at, sent_at)


def is_machine_click(clicked_at: int, sent_at: int | None) -> bool:
    """A click too soon after the send to be a person's: a scanner following every link."""
    return _too_soon(clicked_at, sent_at)


def _too_soon(at: int, sent_at: int | None) -> bool:
    # Without a send time (an event about mail we did not record) nothing is presumed; nor
    # for an event stamped before the send (one clock or the other is wrong).
    return sent_at is not None and 0 <= at - sent_at < SCANNER_SECONDS
