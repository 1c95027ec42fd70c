"""When newsletter slots fall and which are due: pure functions of schedules, time zones and now.

A schedule is a cron expression read on each reader's local wall clock, so a 07:00 digest
stays at 07:00 local time across daylight-saving changes. A local time that occurs twice
(clocks going back) is one slot, at its first occurrence; a local time that does not exist
(clocks going forward) is one slot, moved forward by the length of the gap (02:30 in a
02:00-03:00 gap falls at 03:30), and a slot that lands on another one merges with it.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from croniter import croniter

# Wider than any daylight-saving shift, so a search on the wall clock never misses a slot.
_DST_MARGIN = timedelta(hours=3)
# How far back a run records the slots an outage skipped as missed.
BACKFILL = timedelta(days=7)
# (schedule, time zone) -> (latest slot found, the slot after it): see `latest_slot_at`.
_spans: dict[tuple[str, str], tuple[datetime, datetime]] = {}


def _wall(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.astimezone(zone).replace(tzinfo=None)


def _instant(wall: datetime, zone: ZoneInfo) -> datetime:
    # fold=0: the first of a repeated time; a time inside a gap keeps the offset from before it.
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)


def _cron(schedule: str, wall: datetime) -> croniter:
    # croniter on naive times does plain wall-clock arithmetic, with no time zone to trip over.
    walls = copy.copy(_parsed(schedule))
    walls.set_current(wall, force=True)
    return walls


@functools.lru_cache(maxsize=64)
def _parsed(schedule: str) -> croniter:
    # Parsing is most of croniter's cost; `_cron` copies this and never changes it.
    return croniter(schedule)


def slot_times(schedule: str, timezone: str, after: datetime, until: datetime) -> list[datetime]:
    """The scheduled times t with after < t <= until, in UTC, oldest first, each one once."""
    zone = ZoneInfo(timezone)
    earliest = _wall(after, zone) - _DST_MARGIN
    walls = _cron(schedule, _wall(until, zone) + _DST_MARGIN)
    found = set()
    while (wall := walls.get_prev(datetime)) >= earliest:
        instant = _instant(wall, zone)
        if after < instant <= until:
            found.add(instant)
    return sorted(found)


def latest_slot_at(schedule: str, timezone: str, now: datetime) -> datetime:
    """The latest scheduled time at or before `now`, in UTC."""
    # Runs come every few minutes and slots far less often: remember the span between the
    # last answer and the slot after it, and answer from it while `now` stays inside.
    key = (schedule, timezone)
    span = _spans.get(key)
    if span is not None and span[0] <= now < span[1]:
        return span[0]
    latest = _latest_slot_at(schedule, timezone, now)
    _spans[key] = (latest, next_slot_after(schedule, timezone, latest))
    return latest


def _latest_slot_at(schedule: str, timezone: str, now: datetime) -> datetime:
    zone = ZoneInfo(timezone)
    local_now = _wall(now, zone)
    walls = _cron(schedule, local_now + _DST_MARGIN)
    latest: datetime | None = None
    while True:
        wall = walls.get_prev(datetime)
        if latest is not None and wall < local_now - _DST_MARGIN:
            return latest
        instant = _instant(wall, zone)
        if instant <= now and (latest is None or instant > latest):
            latest = instant


def next_slot_after(schedule: str, timezone: str, now: datetime) -> datetime:
    """The first scheduled time after `now`, in UTC."""
    zone = ZoneInfo(timezone)
    local_now = _wall(now, zone)
    walls = _cron(schedule, local_now - _DST_MARGIN)
    earliest: datetime | None = None
    while True:
        wall = walls.get_next(datetime)
        if earliest is not None and wall > local_now + _DST_MARGIN:
            return earliest
        instant = _instant(wall, zone)
        if instant > now and (earliest is None or instant < earliest):
            earliest = instant


@dataclass(frozen=True)
class Schedule:
    """One newsletter's timetable: its cron expression, grace, and its readers' time zones."""

    newsletter: str
    expression: str
    grace: timedelta
    timezones: tuple[str, ...]


@dataclass(frozen=True, order=True)
class Slot:
    """One newsletter's scheduled time for the readers in one time zone."""

    at: datetime
    newsletter: str
    timezone: str

    @property
    def local(self) -> datetime:
        return self.at.astimezone(ZoneInfo(self.timezone))


class SlotStatus(StrEnum):
    """How a slot ended; each value is what `slots.status` holds and what is printed."""

    SENT = "sent"
    MISSED = "missed"
    SKIPPED = "skipped"
    FAILED = "failed"
    # A check error or an editor holds it: tried again, like a failure, while within grace.
    HELD = "held"

    @property
    def retried(self) -> bool:
        """Whether a run tries the slot again while it is still within grace."""
        return self in (SlotStatus.FAILED, SlotStatus.HELD)


@dataclass(frozen=True)
class LastRecord:
    """The newest slot recorded for a newsletter and time zone, and how it ended."""

    at: datetime
    status: SlotStatus


@dataclass(frozen=True, order=True)
class Decision:
    """What a run does with a slot: `send` it, or record it as `missed` (and why)."""

    slot: Slot
    action: str
    reason: str = ""


def decide(
    schedules: Iterable[Schedule],
    now: datetime,
    last_records: Mapping[tuple[str, str], LastRecord],
) -> list[Decision]:
    """The slots a run at `now` must act on, oldest first.

    Only the latest slot at or before `now` is ever sent, and only within grace; a latest slot
    that failed or was held is tried again while still within grace. Slots between the last
    recorded one and the latest (an outage, at most BACKFILL back) are recorded as missed,
    never sent late.
    A time zone with nothing recorded yet starts at its latest slot if that is within grace,
    else at its next one: no one there was expecting the ones before.
    """
    decisions = []
    for schedule in schedules:
        for timezone in schedule.timezones:
            latest = latest_slot_at(schedule.expression, timezone, now)
            last = last_records.get((schedule.newsletter, timezone))
            in_grace = now - latest <= schedule.grace
            slot = Slot(latest, schedule.newsletter, timezone)
            if last is None:
                if in_grace:
                    decisions.append(Decision(slot, "send"))
                continue
            if last.at >= latest:
                if last.at == latest and SlotStatus(last.status).retried and in_grace:
                    decisions.append(Decision(slot, "send"))
                continue
            skipped_from = max(last.at, now - BACKFILL)
            for at in slot_times(schedule.expression, timezone, skipped_from, latest)[:-1]:
                earlier = Slot(at, schedule.newsletter, timezone)
                decisions.append(_missed(earlier, now, schedule.grace))
            if in_grace:
                decisions.append(Decision(slot, "send"))
            else:
                decisions.append(_missed(slot, now, schedule.grace))
    return sorted(decisions)


def _missed(slot: Slot, now: datetime, grace: timedelta) -> Decision:
    late = now - slot.at
    if late > grace:
        return Decision(slot, "missed", f"{_hours(late)} late, past the {_hours(grace)} grace")
    return Decision(slot, "missed", "a later slot replaced it")


def _hours(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}" if minutes else f"{hours}h"


_DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_DAY_NAMES = {name[:3].upper(): str(i) for i, name in enumerate(_DAYS)}


def _days_phrase(field: str) -> str | None:
    """The day-of-week field in words: 'every day', 'every weekday', 'every Monday and ...'."""
    if field in ("*", "?"):
        return "every day"
    if field in ("1-5", "MON-FRI"):
        return "every weekday"
    days = []
    for part in field.upper().split(","):
        day = _DAY_NAMES.get(part, part)
        if not day.isdigit() or int(day) > 7:
            return None
        days.append(_DAYS[int(day) % 7])
    if len(days) == 1:
        return f"every {days[0]}"
    return "every " + ", ".join(days[:-1]) + " and " + days[-1]


def describe_schedule(schedule: str) -> str:
    """A schedule as a reader reads it: 'every day at 07:00', 'every Monday at 08:30'.

    Schedules that words would not say simply (day-of-month or month fields, ranges of
    hours) are given as they are written ('on the schedule 0 */6 1 * *').
    """
    minute, hour, day_of_month, month, day_of_week = schedule.split()
    days = _days_phrase(day_of_week)
    hours = hour.split(",")
    if (
        day_of_month != "*"
        or month != "*"
        or days is None
        or not minute.isdigit()
        or not all(h.isdigit() for h in hours)
    ):
        return f"on the schedule {schedule}"
    times = [f"{int(h):02d}:{int(minute):02d}" for h in hours]
    spoken = times[0] if len(times) == 1 else ", ".join(times[:-1]) + " and " + times[-1]
    return f"{days} at {spoken}"
