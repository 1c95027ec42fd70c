"""The machines rule: clicks at delivery, before it, or sweeping most links in a minute; opens all
at delivery."""

from __future__ import annotations

from digest.feedback.machines import (
    AFTER_DELIVERY_SECONDS,
    machine_times,
    opened_by_person,
    sweep_size,
)

DELIVERED = 1_000_000


def test_a_click_seconds_after_delivery_is_a_machines_from_that_moment():
    assert machine_times({1: DELIVERED + 3}, DELIVERED, 10) == {1: DELIVERED + 3}


def test_a_click_before_the_delivered_event_is_a_machines_once_delivery_is_known():
    assert machine_times({1: DELIVERED - 30}, DELIVERED, 10) == {1: DELIVERED}


def test_a_click_a_minute_after_delivery_is_a_persons():
    assert machine_times({1: DELIVERED + 60}, DELIVERED, 10) == {1: None}


def test_without_a_delivered_event_a_lone_click_is_a_persons():
    assert machine_times({1: DELIVERED}, None, 10) == {1: None}


def test_most_links_within_a_minute_is_a_sweep_known_when_it_completes():
    at = DELIVERED + 3600
    clicks = {story: at + 5 * story for story in range(1, 7)}
    assert sweep_size(10) == 6
    assert machine_times(clicks, DELIVERED, 10) == dict.fromkeys(range(1, 7), at + 30) | {
        6: at + 30
    }


def test_a_few_links_read_over_minutes_are_a_persons():
    at = DELIVERED + 3600
    clicks = {1: at, 2: at + 90, 3: at + 200, 4: at + 400}
    assert set(machine_times(clicks, DELIVERED, 6).values()) == {None}


def test_two_links_of_a_two_link_email_are_not_a_sweep():
    assert sweep_size(2) == 3
    assert machine_times({1: DELIVERED + 100, 2: DELIVERED + 101}, DELIVERED, 2) == {
        1: None,
        2: None,
    }


def test_opens_all_within_seconds_of_delivery_are_a_scanners():
    assert not opened_by_person(DELIVERED + AFTER_DELIVERY_SECONDS, DELIVERED)


def test_an_open_after_the_first_seconds_is_a_persons():
    assert opened_by_person(DELIVERED + AFTER_DELIVERY_SECONDS + 1, DELIVERED)


def test_without_a_delivered_event_an_open_is_a_persons():
    assert opened_by_person(DELIVERED, None)
