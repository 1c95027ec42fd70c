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


# The zones most readers live in, offered first (roughly by population of the zone).
COMMON_ZONES = (
    "UTC",
    "Europe/London",
    "Europe/Dublin",
    "Europe/Lisbon",
    "Europe/Paris",
    "Europe/Berlin",
    "Europe/Madrid",
    "Europe/Rome",
    "Europe/Warsaw",
    "Europe/Athens",
    "Europe/Kyiv",
    "Europe/Istanbul",
    "Europe/Moscow",
    "Africa/Lagos",
    "Africa/Cairo",
    "Africa/Nairobi",
    "Africa/Johannesburg",
    "Asia/Dubai",
    "Asia/Karachi",
    "Asia/Kolkata",
    "Asia/Dhaka",
    "Asia/Bangkok",
    "Asia/Jakarta",
    "Asia/Singapore",
    "Asia/Shanghai",
    "Asia/Hong_Kong",
    "Asia/Manila",
    "Asia/Seoul",
    "Asia/Tokyo",
    "Australia/Perth",
    "Australia/Sydney",
    "Pacific/Auckland",
    "America/St_Johns",
    "America/Halifax",
    "America/New_York",
    "America/Toronto",
    "America/Chicago",
    "America/Mexico_City",
    "America/Denver",
    "America/Phoenix",
    "America/Los_Angeles",
    "America/Anchorage",
    "Pacific/Honolulu",
    "America/Bogota",
    "America/Lima",
    "America/Santiago",
    "America/Sao_Paulo",
    "America/Argentina/Buenos_Aires",
)


@functools.cache
def place_zones() -> tuple[str, ...]:
    """Every place's current zone name (the tz database's zone.tab) and UTC, sorted.

    Not the backward-compatible aliases (`Africa/Asmera`, `Asia/Calcutta`, `EST`, `GB`): a
    reader picks from names the database keeps.
    """
    from importlib.resources import files

    table = (files("tzdata.zoneinfo") / "zone.tab").read_text(encoding="utf-8")
    names = {
        line.split("\t")[2]
        for line in table.splitlines()
        if line and not line.startswith("#") and line.count("\t") >= 2
    }
    return tuple(sorted((names | {"UTC"}) & _reader_zones()))


def offered_zones(first: tuple[str, ...] = ()) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A form's zones: the common ones (after any given `first`), then every other place."""
    common = tuple(dict.fromkeys(z for z in (*first, *COMMON_ZONES) if z in _reader_zones()))
    taken = set(common)
    return common, tuple(z for z in place_zones() if z not in taken)
