"""Which slots are due: local-time schedules across daylight saving, grace, outages, repeats.

`digest.schedule` is pure, so these run thousands of simulated cron ticks in memory.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from digest.schedule import (
    LastRecord,
    Schedule,
    Slot,
    decide,
    latest_slot_at,
    next_slot_after,
    slot_times,
)

GRACE = timedelta(hours=6)
NEW_YORK = "America/New_York"
# Zones with daylight saving at different dates and offsets (Lord Howe moves by 30 minutes,
# Chatham sits at +12:45), and some without.
ZONES = (
    "Europe/London",
    "Asia/Kolkata",
    NEW_YORK,
    "Asia/Tokyo",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "America/Santiago",
    "UTC",
)
EXPRESSIONS = ("0 7 * * *", "30 2 * * *", "30 1 * * *", "0 8 * * MON", "*/30 * * * *")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


moments = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
)


def run_ticks(
    schedules: list[Schedule],
    ticks: list[datetime],
    records: dict[tuple[str, str], LastRecord] | None = None,
) -> tuple[list[tuple[Slot, datetime]], list[Slot]]:
    """Decide at every tick, recording each decision as a run would: (sent, when), missed."""
    records = {} if records is None else records
    sent, missed = [], []
    for now in ticks:
        for decision in decide(schedules, now, records):
            slot = decision.slot
            if decision.action == "send":
                sent.append((slot, now))
            else:
                missed.append(slot)
            status = "sent" if decision.action == "send" else "missed"
            records[(slot.newsletter, slot.timezone)] = LastRecord(slot.at, status)
    return sent, missed


def ticks_every(step: timedelta, start: datetime, end: datetime) -> list[datetime]:
    """Cron ticks ending exactly at `end`, every `step` back to `start`."""
    ticks = []
    now = end
    while now >= start:
        ticks.append(now)
        now -= step
    return ticks[::-1]


def daily(*zones: str, expression: str = "0 7 * * *") -> list[Schedule]:
    return [Schedule("daily", expression, GRACE, zones)]


def running_since(schedules: list[Schedule], start: datetime) -> dict:
    """Records as if runs had been going before `start`: every latest slot already sent."""
    return {
        (s.newsletter, zone): LastRecord(latest_slot_at(s.expression, zone, start), "sent")
        for s in schedules
        for zone in s.timezones
    }


@given(zone=st.sampled_from(ZONES), start=moments)
@settings(max_examples=60, deadline=None)
def test_a_daily_0700_slot_falls_at_0700_local_once_every_local_day(zone, start):
    slots = slot_times("0 7 * * *", zone, start, start + timedelta(days=60))
    local = [at.astimezone(ZoneInfo(zone)) for at in slots]
    assert {moment.time() for moment in local} == {time(7, 0)}
    dates = [moment.date() for moment in local]
    assert all(later - earlier == timedelta(days=1) for earlier, later in pairwise(dates))


def test_new_york_keeps_0700_local_when_daylight_saving_ends_on_1_november_2026():
    assert slot_times("0 7 * * *", NEW_YORK, utc(2026, 10, 30, 12), utc(2026, 11, 2, 12)) == [
        utc(2026, 10, 31, 11),  # 07:00 EDT
        utc(2026, 11, 1, 12),  # 07:00 EST
        utc(2026, 11, 2, 12),
    ]


def test_a_local_time_that_happens_twice_is_one_slot_at_its_first_occurrence():
    # 01:30 comes twice in New York on 1 November 2026: 05:30 UTC (EDT), then 06:30 UTC (EST).
    slots = slot_times("30 1 * * *", NEW_YORK, utc(2026, 10, 31, 12), utc(2026, 11, 2, 0))
    assert slots == [utc(2026, 11, 1, 5, 30)]


def test_a_local_time_that_does_not_exist_is_one_slot_moved_forward_by_the_gap():
    # New York skips 02:00-03:00 on 8 March 2026; 02:30 becomes 03:30 EDT (07:30 UTC).
    slots = slot_times("30 2 * * *", NEW_YORK, utc(2026, 3, 7, 12), utc(2026, 3, 9, 0))
    assert slots == [utc(2026, 3, 8, 7, 30)]


def test_half_hourly_slots_through_a_gap_are_each_one_instant():
    slots = slot_times("*/30 * * * *", NEW_YORK, utc(2026, 3, 8, 6), utc(2026, 3, 8, 7, 45))
    assert slots == [utc(2026, 3, 8, 6, 30), utc(2026, 3, 8, 7), utc(2026, 3, 8, 7, 30)]
    assert [s.astimezone(ZoneInfo(NEW_YORK)).strftime("%H:%M") for s in slots] == [
        "01:30",
        "03:00",
        "03:30",
    ]


@given(zone=st.sampled_from(ZONES), expression=st.sampled_from(EXPRESSIONS), now=moments)
@settings(max_examples=60, deadline=None)
def test_latest_and_next_slot_agree_with_the_list_of_slots(zone, expression, now):
    before = slot_times(expression, zone, now - timedelta(days=9), now)
    after = slot_times(expression, zone, now, now + timedelta(days=9))
    assert before == sorted(set(before))
    assert latest_slot_at(expression, zone, now) == before[-1]
    assert next_slot_after(expression, zone, now) == after[0]


def test_a_slot_exactly_at_now_is_the_latest():
    assert latest_slot_at("0 7 * * *", "Europe/London", utc(2026, 11, 2, 7)) == utc(2026, 11, 2, 7)


@given(
    zone=st.sampled_from(ZONES),
    expression=st.sampled_from(EXPRESSIONS),
    start=moments,
    step_minutes=st.sampled_from([5, 7, 15, 60, 180, 360]),
)
@settings(max_examples=25, deadline=None)
def test_runs_at_any_cadence_within_grace_send_every_slot_once(
    zone, expression, start, step_minutes
):
    assume(expression != "*/30 * * * *" or step_minutes <= 30)
    schedules = daily(zone, expression=expression)
    end = start + timedelta(days=2)
    sent, missed = run_ticks(
        schedules,
        ticks_every(timedelta(minutes=step_minutes), start, end),
        running_since(schedules, start),
    )
    expected = slot_times(expression, zone, latest_slot_at(expression, zone, start), end)
    assert missed == []
    assert [slot.at for slot, _ in sent] == expected
    assert all(slot.at <= when <= slot.at + timedelta(minutes=step_minutes) for slot, when in sent)


@given(zone=st.sampled_from(ZONES), start=moments)
@settings(max_examples=10, deadline=None)
def test_five_minute_and_hourly_runs_send_the_same_slots(zone, start):
    schedules = daily(zone)
    end = start + timedelta(days=2)

    def sent_every(step: timedelta) -> list[datetime]:
        ticks = ticks_every(step, start, end)
        return [
            slot.at for slot, _ in run_ticks(schedules, ticks, running_since(schedules, start))[0]
        ]

    assert sent_every(timedelta(minutes=5)) == sent_every(timedelta(hours=1))


@given(
    now=moments,
    records=st.dictionaries(
        st.sampled_from([("daily", z) for z in ZONES]),
        st.builds(
            LastRecord,
            at=moments,
            status=st.sampled_from(["sent", "missed", "skipped", "failed"]),
        ),
    ),
)
@settings(max_examples=100, deadline=None)
def test_deciding_again_after_recording_the_decisions_decides_nothing(now, records):
    schedules = daily(*ZONES)
    run_ticks(schedules, [now], records)
    assert decide(schedules, now, records) == []


@given(now=moments, zone=st.sampled_from(ZONES))
@settings(max_examples=40, deadline=None)
def test_nothing_is_ever_sent_before_its_time_or_past_grace(now, zone):
    schedules = daily(zone, expression="*/30 * * * *")
    records = {("daily", zone): LastRecord(now - timedelta(days=2), "sent")}
    for decision in decide(schedules, now, records):
        assert decision.slot.at <= now
        if decision.action == "send":
            assert now - decision.slot.at <= GRACE


def test_a_three_hour_outage_sends_the_slot_at_the_first_run_after_it():
    schedules = daily("Europe/London")
    start, end = utc(2026, 11, 1, 12), utc(2026, 11, 2, 12)
    ticks = [t for t in ticks_every(timedelta(minutes=5), start, end) if not 6 <= t.hour < 9]
    sent, missed = run_ticks(schedules, ticks, running_since(schedules, start))
    assert [(slot.at, when) for slot, when in sent] == [(utc(2026, 11, 2, 7), utc(2026, 11, 2, 9))]
    assert missed == []


def test_a_ten_hour_outage_records_the_slot_missed_with_how_late():
    schedules = daily("Europe/London")
    records = {("daily", "Europe/London"): LastRecord(utc(2026, 11, 1, 7), "sent")}
    [decision] = decide(schedules, utc(2026, 11, 2, 15), records)
    assert decision.action == "missed"
    assert decision.slot.at == utc(2026, 11, 2, 7)
    assert decision.reason == "8h late, past the 6h grace"


def test_a_multi_day_outage_records_each_day_it_skipped_as_missed():
    schedules = daily("Europe/London")
    records = {("daily", "Europe/London"): LastRecord(utc(2026, 11, 1, 7), "sent")}
    decisions = decide(schedules, utc(2026, 11, 4, 9), records)
    assert [(d.slot.at, d.action) for d in decisions] == [
        (utc(2026, 11, 2, 7), "missed"),
        (utc(2026, 11, 3, 7), "missed"),
        (utc(2026, 11, 4, 7), "send"),
    ]


def test_a_slot_that_failed_is_sent_again_within_grace_and_then_left_alone():
    schedules = daily("Europe/London")
    records = {("daily", "Europe/London"): LastRecord(utc(2026, 11, 2, 7), "failed")}
    [retry] = decide(schedules, utc(2026, 11, 2, 8), records)
    assert (retry.slot.at, retry.action) == (utc(2026, 11, 2, 7), "send")
    assert decide(schedules, utc(2026, 11, 2, 13, 5), records) == []


def test_a_new_time_zone_starts_with_its_latest_slot_only_if_within_grace():
    schedules = daily("Asia/Tokyo")
    [first] = decide(schedules, utc(2026, 11, 2, 1), {})  # Tokyo's 07:00 was 22:00 UTC
    assert (first.slot.at, first.action) == (utc(2026, 11, 1, 22), "send")
    assert decide(schedules, utc(2026, 11, 2, 5), {}) == []


def test_a_weekly_schedule_sends_once_a_week_at_its_local_hour():
    schedules = daily("Europe/London", expression="0 8 * * MON")
    start = utc(2026, 10, 28)
    ticks = ticks_every(timedelta(minutes=5), start, start + timedelta(days=14))
    sent, _ = run_ticks(schedules, ticks, running_since(schedules, start))
    assert [slot.at for slot, _ in sent] == [utc(2026, 11, 2, 8), utc(2026, 11, 9, 8)]
