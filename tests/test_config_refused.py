"""Specs for the config values refused when digest.toml loads: one clear line, never later."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from digest.config import load_config, parse_config
from digest.errors import ConfigError

from helpers import config_data


def refusal(tmp_path: Path, newsletter: dict | None = None, **sections) -> str:
    data = config_data(newsletter)
    for section, values in sections.items():
        data[section] = data.get(section, {}) | values
    with pytest.raises(ConfigError) as caught:
        parse_config(data, tmp_path / "digest.toml", env={})
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("newsletter", "subject", "Today\r\nBcc: everyone@example.com"),
        ("newsletter", "title", "Daily\nDigest"),
        ("site", "from_name", "Courier\r\nX-Injected: 1"),
        ("site", "reply_to", "desk@news.test\nBcc: x@example.com"),
        ("site", "from_name", "Courier\x00"),
        ("newsletter", "subject", "Line\u2028separator"),
    ],
)
def test_a_header_string_with_a_line_break_or_control_character_is_refused(
    tmp_path, section, key, value
):
    if section == "newsletter":
        message = refusal(tmp_path, {key: value})
        where = f"newsletters.daily.{key}"
    else:
        message = refusal(tmp_path, site={key: value})
        where = f"site.{key}"

    assert message.startswith(f"{where} in {tmp_path / 'digest.toml'} holds a line break")
    assert message.endswith("so write it on one line.")


@pytest.mark.parametrize(
    ("key", "address"),
    [
        ("from_email", "not an address"),
        ("from_email", "digest@"),
        ("from_email", ""),
        ("from_email", "josé@news.test"),
        ("reply_to", "desk at news.test"),
    ],
)
def test_a_sender_address_that_no_transport_can_use_is_refused(tmp_path, key, address):
    message = refusal(tmp_path, site={key: address})

    assert message.startswith(f"site.{key} {address!r} in {tmp_path / 'digest.toml'} is not an")


def test_a_plain_reply_to_and_a_test_domain_sender_are_accepted(tmp_path):
    data = config_data()
    data["site"] |= {"reply_to": "desk@news.test"}

    config = parse_config(data, tmp_path / "digest.toml", env={})

    assert (config.site.from_email, config.site.reply_to) == ("digest@news.test", "desk@news.test")


def test_an_empty_subject_is_refused(tmp_path):
    assert "must not be empty" in refusal(tmp_path, {"subject": "  "})


@pytest.mark.parametrize("schedule", ["0 7 31 2 *", "0 7 30 2 *"])
def test_a_cron_that_never_fires_is_refused(tmp_path, schedule):
    assert refusal(tmp_path, {"schedule": schedule}) == (
        f"newsletters.daily.schedule {schedule!r} in {tmp_path / 'digest.toml'} never fires "
        "(a day that month does not have?); fix the day or the month."
    )


@pytest.mark.parametrize("schedule", ["0 0 7 * * *", "0 7 * * * 2026", "0 7 * *"])
def test_a_cron_without_exactly_five_fields_is_refused(tmp_path, schedule):
    assert "is not a five-field cron expression" in refusal(tmp_path, {"schedule": schedule})


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("key", ["grace_hours", "window_hours", "half_life_hours"])
def test_a_number_that_is_not_finite_is_refused(tmp_path, key, value):
    message = refusal(tmp_path, {key: value})

    assert message.startswith(f"newsletters.daily.{key} in ")
    assert "must be" in message


@pytest.mark.parametrize(
    ("section", "key", "value", "limit"),
    [
        ("newsletter", "grace_hours", 1e300, 8760),
        ("newsletter", "also_read_days", 10**9, 365),
        ("newsletter", "top_stories", 10**12, 100),
        ("sendgrid", "timeout_seconds", 1e20, 3600),
        ("newsletter", "asm_group_id", 2**63, 2**31 - 1),
        ("ingest", "max_megabytes", 10**6, 1024),
    ],
)
def test_a_huge_number_is_refused_with_its_limit(tmp_path, section, key, value, limit):
    if section == "newsletter":
        message = refusal(tmp_path, {key: value})
        where = f"newsletters.daily.{key}"
    else:
        message = refusal(tmp_path, **{section: {key: value}})
        where = f"{section}.{key}"

    assert message == f"{where} in {tmp_path / 'digest.toml'} must be at most {limit}."


@pytest.mark.parametrize(
    "zone", ["Factory", "posixrules", "localtime", "right/UTC", "posix/Europe/London", "x" * 300]
)
def test_a_time_zone_that_is_not_a_place_is_refused(tmp_path, zone):
    message = refusal(tmp_path, {"timezone": zone})

    assert "is not an IANA time zone; use a name such as 'Europe/London'" in message
    assert len(message) < 300


@pytest.mark.parametrize("zone", ["Europe/London", "UTC", "America/Argentina/Buenos_Aires"])
def test_a_place_time_zone_is_accepted(tmp_path, zone):
    data = config_data({"timezone": zone})

    assert parse_config(data, tmp_path / "digest.toml", env={}).newsletter(None).timezone == zone


def test_nan_written_in_toml_is_refused_at_load(tmp_path):
    path = tmp_path / "digest.toml"
    path.write_text("[newsletters.daily]\ngrace_hours = nan\n")

    with pytest.raises(ConfigError, match=r"grace_hours in .* must be a finite number\."):
        load_config(path, env={})


def test_the_ingest_limits_are_read_from_the_config(tmp_path):
    data = config_data(ingest={"timeout_seconds": 5, "max_megabytes": 0.5})

    config = parse_config(data, tmp_path / "digest.toml", env={})

    assert (config.ingest.timeout_seconds, config.ingest.max_bytes) == (5, 512 * 1024)


def test_a_zero_ingest_limit_is_refused(tmp_path):
    assert "must be above 0" in refusal(tmp_path, ingest={"timeout_seconds": 0})


@pytest.mark.parametrize(
    ("engagement", "says"),
    [
        ({"weight": -1}, "newsletters.daily.engagement.weight in"),
        ({"weight": 11}, "engagement.weight in"),
        ({"exploration": 1.5}, "engagement.exploration in"),
        ({"min_impressions": 2.5}, "must be a whole number"),
        ({"history_days": 0}, "engagement.history_days in"),
        ({"wieght": 1}, "Unknown key 'wieght' in [newsletters.daily.engagement]"),
    ],
)
def test_bad_engagement_settings_are_refused_by_name(tmp_path, engagement, says):
    assert says in refusal(tmp_path, {"engagement": engagement})


def test_engagement_is_on_by_default_and_zero_turns_it_off(tmp_path):
    default = parse_config(config_data(), tmp_path / "digest.toml", env={})
    assert default.newsletter("daily").engagement.weight == 1.0
    off = parse_config(config_data({"engagement": {"weight": 0}}), tmp_path / "d.toml", env={})
    assert off.newsletter("daily").engagement.weight == 0
