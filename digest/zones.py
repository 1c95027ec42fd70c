"""The time zones a reader may live in: the one check of a zone name, for every entry point.

Its own module so that `digest send --timezone` checks the zone without loading the readers'
modules.
"""

from __future__ import annotations

import functools
import zoneinfo

from .addresses import shown
from .errors import SubscriberError

# In the tz database, but not a place's time: `Factory` shows "-00", the others are aliases
# of whatever the machine is set to.
_NOT_READER_ZONES = frozenset({"Factory", "localtime", "posixrules"})


@functools.cache
def _reader_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) - _NOT_READER_ZONES


def check_timezone(name: str) -> str:
    """The IANA zone name, or SubscriberError; empty means UTC."""
    name = name.strip() or "UTC"
    if name not in _reader_zones():
        raise SubscriberError(
            f"unknown time zone {shown(name)}: use an IANA name such as Europe/London"
        )
    return name
