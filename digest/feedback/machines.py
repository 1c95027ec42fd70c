"""Which clicks and opens are a machine's (a link scanner's), not a reader's: the one rule,
used everywhere.

SendGrid "does not filter out clicks or opens that are produced by recipient bots or security
software", and names the symptoms: many clicks "at approximately the same time that a message
is delivered" (support.sendgrid.com, article 4416801410459). Microsoft Defender's Safe Links
scans URLs "prior to message delivery" and detonates unknown ones in the background
(MicrosoftDocs/defender-docs, safe-links-about.md); practitioners see it open every link of
an email in a full browser as soon as it arrives (blog.healthchecks.io, 2019); Barracuda says
checking links "requires those links to be 'clicked'". Published rules: a click less than
1.5 s to 30 s after the send, or three or more links in a couple of seconds, or every link of
the email, is a bot's (jusso-dev/Collie#50, jdavidbakr/mail-tracker#228, autoemails.com,
support.customerminds.com). The rule here, per reader and email:

1. A click at most `AFTER_DELIVERY_SECONDS` after the email was delivered is a machine's, and
   so is one before the `delivered` event: no reader clicks a link they do not have yet.
2. A reader clicking most of the email's story links (more than half, at least `BURST_MIN`)
   within `BURST_SECONDS` is a scanner sweeping the email: all those clicks are a machine's.

A click is kept either way (raw events are never dropped), only counted apart. It becomes a
machine's at the moment the evidence exists (`machine_at`: the later of the click and the
delivery, or the click that completed the sweep); before that moment it counts as a person's,
so a count at any moment depends only on events at or before it. A reader's stories are
judged by their first click on each: a reader behind a scanner whose first click on a story
was the scanner's counts as a machine for that story.

Opens: an open SendGrid marks `sg_machine_open` is Apple's Mail Privacy Protection proxy's,
never a person's. Scanners that fetch an email's links fetch its images too, so the other
opens of an email are a person's unless every one of them came at most
`AFTER_DELIVERY_SECONDS` after the email was delivered (`opened_by_person`); with no
`delivered` event yet, nothing says they were a scanner's, and they count as a person's.
"""

from __future__ import annotations

from collections.abc import Mapping

AFTER_DELIVERY_SECONDS = 10
BURST_SECONDS = 60
BURST_MIN = 3


def sweep_size(links: int) -> int:
    """How many of an email's story links, clicked within `BURST_SECONDS`, make a sweep."""
    return max(BURST_MIN, links // 2 + 1)


def machine_times(
    first_clicks: Mapping[int, int], delivered_at: int | None, links: int
) -> dict[int, int | None]:
    """For each story one reader clicked (the Unix time of their first click on it), the moment
    that click became known to be a machine's, or None for a person's."""
    result: dict[int, int | None] = {}
    for story, at in first_clicks.items():
        scanned = delivered_at is not None and at <= delivered_at + AFTER_DELIVERY_SECONDS
        result[story] = max(at, delivered_at) if scanned and delivered_at is not None else None
    need = sweep_size(links)
    clicks = sorted((at, story) for story, at in first_clicks.items())
    for start in range(len(clicks) - need + 1):
        window = [c for c in clicks[start:] if c[0] <= clicks[start][0] + BURST_SECONDS]
        if len(window) < need:
            continue
        # Known once the click that completes the sweep comes; a later one, when it comes.
        known = window[need - 1][0]
        for at, story in window:
            moment = max(at, known)
            earlier = result[story]
            result[story] = moment if earlier is None else min(earlier, moment)
    return result


def opened_by_person(latest_open: int, delivered_at: int | None) -> bool:
    """Whether an email's opens not by Apple's proxy, the latest at `latest_open` (Unix time),
    are a person's: not all within `AFTER_DELIVERY_SECONDS` of its delivery."""
    return delivered_at is None or latest_open > delivered_at + AFTER_DELIVERY_SECONDS
