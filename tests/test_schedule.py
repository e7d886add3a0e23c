"""Cron schedules as pure functions of ``now``: no test waits for a real minute."""

from __future__ import annotations

from datetime import datetime

import pytest

from nbworkers.schedule import DAY, HOUR, MINUTE, Zone, parse

PARIS = Zone("Europe/Paris")


def at(*args) -> float:
    return PARIS.epoch(datetime(*args))


def wall(ts: float) -> datetime:
    return PARIS.wall(ts)


@pytest.mark.parametrize(
    "spec, seconds",
    [
        ("every-minute", MINUTE),
        ("hourly", HOUR),
        ("every-12-hours", 12 * HOUR),
        ("daily", DAY),
        ("weekly", 7 * DAY),
        ("fortnightly", 14 * DAY),
        ("every 1min", MINUTE),
        ('"every 1hr"', HOUR),
        ("Every 12hrs", 12 * HOUR),
        ("30s", 30),
        ("5m", 5 * MINUTE),
        ("2h", 2 * HOUR),
        ("3d", 3 * DAY),
    ],
)
def test_intervals_parse(spec, seconds):
    assert parse(spec).every_s == seconds


@pytest.mark.parametrize("spec", ["sometimes", "0s", "5x", "* * * *", "61 * * * *", ""])
def test_bad_intervals_list_the_valid_forms(spec):
    with pytest.raises(ValueError, match="every-minute, hourly") as info:
        parse(spec)
    assert "30s" in str(info.value) and "0 9 * * MON-FRI" in str(info.value)


def test_bad_at_times_say_what_is_expected():
    for bad in ["9", "25:00", "09:61", "noon"]:
        with pytest.raises(ValueError, match="HH:MM"):
            parse("daily", at=bad)
    with pytest.raises(ValueError, match="whole minutes"):
        parse("30s", at="09:00")


def test_an_interval_cron_runs_at_once_then_every_interval_after_its_last_run():
    hourly = parse("hourly")
    now = at(2026, 5, 1, 10, 17)
    assert hourly.next_run(None, now, PARIS) == now
    assert hourly.next_run(now, now + 5, PARIS) == now + HOUR
    # Missed runs while the kernel was down give a single catch-up: due at once
    assert hourly.next_run(now, now + 10 * HOUR, PARIS) == now + HOUR


def test_at_runs_at_the_same_wall_clock_time_across_daylight_saving():
    daily = parse("daily", at="09:30")
    assert daily.describe() == "every day at 09:30"
    before = at(2026, 3, 28, 10, 0)  # Paris springs forward on 2026-03-29
    first = daily.next_run(None, before, PARIS)
    assert wall(first) == datetime(2026, 3, 29, 9, 30)
    second = daily.next_run(first, first + 60, PARIS)
    assert wall(second) == datetime(2026, 3, 30, 9, 30)
    assert second - first == 24 * HOUR
    assert first - before == 23.5 * HOUR - HOUR  # the night was an hour short


def test_a_missed_wall_clock_run_is_caught_up_once():
    daily = parse("daily", at="09:30")
    last = at(2026, 5, 1, 9, 30)
    now = at(2026, 5, 4, 12, 0)  # three runs missed
    assert daily.next_run(last, now, PARIS) == now
    assert wall(daily.next_run(now, now + 1, PARIS)) == datetime(2026, 5, 5, 9, 30)


def test_at_with_other_intervals():
    hourly = parse("hourly", at="00:15")
    assert hourly.describe() == "every hour at :15"
    assert wall(hourly.next_run(None, at(2026, 5, 1, 10, 20), PARIS)) == datetime(
        2026, 5, 1, 11, 15
    )
    twice = parse("every-12-hours", at="06:00")
    assert wall(twice.next_run(None, at(2026, 5, 1, 10, 0), PARIS)) == datetime(2026, 5, 1, 18, 0)
    weekly = parse("weekly", at="08:00")
    assert weekly.describe() == "every week on Monday at 08:00"
    assert wall(weekly.next_run(None, at(2026, 11, 25, 9, 0), PARIS)) == datetime(
        2026, 11, 30, 8, 0
    )


def test_cron_expressions():
    weekdays = parse('"0 9 * * MON-FRI"')
    friday_noon = at(2026, 11, 27, 12, 0)
    assert wall(weekdays.next_run(None, friday_noon, PARIS)) == datetime(2026, 11, 30, 9, 0)
    every_15 = parse("*/15 * * * *")
    assert wall(every_15.next_run(None, at(2026, 1, 1, 0, 7), PARIS)) == datetime(2026, 1, 1, 0, 15)
    first_of_month = parse("30 6 1 * *")
    assert wall(first_of_month.next_run(None, at(2026, 1, 31, 8, 0), PARIS)) == datetime(
        2026, 2, 1, 6, 30
    )
    # Day of month and weekday both restricted: either matches (cron's rule)
    either = parse("0 0 13 * FRI")
    assert wall(either.next_run(None, at(2026, 11, 23, 1, 0), PARIS)) == datetime(
        2026, 11, 27, 0, 0
    )
    assert parse("0 0 * * 7").cron.weekdays == frozenset({0})
    with pytest.raises(ValueError, match="never matches"):
        parse("0 0 31 2 *").next_run(None, friday_noon, PARIS)


def test_descriptions():
    assert parse("every-minute").describe() == "every minute"
    assert parse("30s").describe() == "every 30 seconds"
    assert parse("2h").describe() == "every 2 hours"
    assert parse("fortnightly").describe() == "every two weeks"
    assert parse("0 9 * * MON-FRI").describe() == "cron 0 9 * * MON-FRI"
