"""Cron schedules as pure functions of ``now``: no test waits for a real minute."""

from __future__ import annotations

import time
import warnings
from datetime import UTC, datetime, timedelta

import pytest
import tzlocal
from hypothesis import given, settings
from hypothesis import strategies as st

from nbworkers.schedule import DAY, HOUR, MINUTE, CronExpr, parse
from nbworkers.zone import Zone

PARIS = Zone("Europe/Paris")
NEW_YORK = Zone("America/New_York")


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
        ("1s", 1),
    ],
)
def test_intervals_parse(spec, seconds):
    assert parse(spec).every_s == seconds


@pytest.mark.parametrize("spec", ["sometimes", "0s", "5x", "@reboot", ""])
def test_bad_intervals_list_the_valid_forms(spec):
    with pytest.raises(ValueError, match="every-minute, hourly") as info:
        parse(spec)
    assert "30s" in str(info.value) and "0 9 * * MON-FRI" in str(info.value)


def test_bad_at_times_say_what_is_expected():
    for bad in ["9", "25:00", "24:00", "09:61", "00:60", "noon"]:
        with pytest.raises(ValueError, match="HH:MM"):
            parse("daily", at=bad)
    for interval in ["30s", "90s"]:
        with pytest.raises(ValueError, match="whole minutes"):
            parse(interval, at="09:00")
    # The edges are accepted
    assert parse("daily", at="23:59").at == (23, 59)
    assert parse("every-minute", at="00:00").describe() == "every minute at :00"


def test_the_spec_is_kept_as_written_without_quotes_or_extra_spaces():
    assert parse(' "0 9  *  * MON-FRI" ').spec == "0 9 * * MON-FRI"
    assert parse("@Daily").spec == "@Daily"
    assert parse("'every 1hr'").spec == "every 1hr"
    assert parse(" 5m ").spec == "5m"
    assert parse("daily", at="09:30").spec == "daily"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: CronExpr.parse("0 9 * *"),
            "a cron expression has 5 fields, '0 9 * *' has 4",
        ),
        (
            lambda: parse("61 * * * *"),
            "the minute field '61' of the cron expression '61 * * * *' is not valid: use 0-59, "
            "*, lists (1,15), ranges (1-5) and steps (*/15, 1-30/5)",
        ),
        (
            lambda: parse("0 \uff19 * * *"),  # a full-width nine
            "the hour field '\uff19' of the cron expression '0 \uff19 * * *' is not valid: use "
            "0-23, *, lists (1,15), ranges (1-5) and steps (*/15, 1-30/5)",
        ),
        (
            lambda: parse("0 0 32W * *"),
            "the day-of-month field '32W' of the cron expression '0 0 32W * *' is not valid: "
            "use 1-31, L (the last day), LW (the last weekday) or 15W (the weekday nearest the "
            "15th), *, lists (1,15), ranges (1-5) and steps (*/15, 1-30/5) (W takes one day, 1W "
            "to 31W, with * as the day-of-week)",
        ),
        (
            lambda: parse("0 0 31 2 *"),
            "the cron expression '0 0 31 2 *' never matches a date (no month it names has that "
            "day); check its day-of-month and month",
        ),
        (
            # cronsim accepts it (February 28th is in the days around the 30th), but February
            # has no 30th: found by looking 50 years ahead
            lambda: parse("0 0 30W 2 *"),
            "the cron expression '0 0 30W 2 *' never matches a date (no month it names has that "
            "day); check its day-of-month and month",
        ),
        (
            lambda: parse("0 9 * * *", at="09:00"),
            "--at goes with intervals; a cron expression already says when",
        ),
        (
            lambda: parse("hourly", tz="Europe/Paris"),
            "--tz goes with --at or a cron expression: an interval without --at counts time since "
            "its last run, whatever the zone",
        ),
        (
            lambda: parse("daily", at=930),
            "at must be a time of day as text, HH:MM, not 930",
        ),
        (
            lambda: parse("daily", at="24:00"),
            "--at '24:00' is not a time of day; use HH:MM, such as 09:30",
        ),
        (
            lambda: parse("90s", at="09:00"),
            "--at needs an interval of whole minutes (hourly, daily, 15m, ...)",
        ),
        (
            lambda: parse("daily", at="09:00", tz="Mars/Olympus"),
            "'Mars/Olympus' is not a time zone; use an IANA name such as Europe/Paris",
        ),
    ],
)
def test_each_error_says_exactly_what_is_wrong(call, message):
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    assert str(info.value) == message


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
    sunday = parse("0 0 * * 7")  # 7 is Sunday too
    assert wall(sunday.next_run(None, friday_noon, PARIS)) == datetime(2026, 11, 29, 0, 0)


def test_descriptions():
    assert parse("every-minute").describe() == "every minute"
    assert parse("30s").describe() == "every 30 seconds"
    assert parse("2h").describe() == "every 2 hours"
    assert parse("90m").describe() == "every 90 minutes"
    assert parse("3d").describe() == "every 3 days"
    assert parse("1s").describe() == "every second"
    assert parse("2s").describe() == "every 2 seconds"
    assert parse("fortnightly").describe() == "every two weeks"
    assert parse("0 9 * * MON-FRI").describe() == (
        "at 09:00 on Monday through Friday (0 9 * * MON-FRI)"
    )
    assert parse("@daily").describe() == "at 00:00 every day (@daily)"
    assert parse("0 9 15W * *").describe() == (
        "at 09:00 on the weekday nearest day 15 of every month (0 9 15W * *)"
    )
    # In one month: that month is said (cronsim says "on May 1")
    assert parse("0 9 15W 5 *").describe() == (
        "at 09:00 on the weekday nearest day 15 of May (0 9 15W 5 *)"
    )
    assert parse("*/5 9 1W jan *").describe() == (
        "every fifth minute from 09:00 through 09:59 on the weekday nearest day 1 of January "
        "(*/5 9 1W jan *)"
    )
    assert parse("daily", at="09:30", tz="Asia/Tokyo").describe() == (
        "every day at 09:30, Asia/Tokyo time"
    )


def _runs(spec: str, start: datetime, n: int, zone: Zone = PARIS) -> list[str]:
    plan, ts, out = parse(spec), zone.epoch(start), []
    for _ in range(n):
        ts = plan.next_run(None, ts, zone)
        out.append(zone.wall(ts).strftime("%a %Y-%m-%d %H:%M"))
    return out


@pytest.mark.parametrize(
    "spec, runs",
    [
        ("@hourly", ["Sun 2026-11-01 13:00", "Sun 2026-11-01 14:00"]),
        ("@daily", ["Mon 2026-11-02 00:00", "Tue 2026-11-03 00:00"]),
        ("@midnight", ["Mon 2026-11-02 00:00", "Tue 2026-11-03 00:00"]),
        ("@weekly", ["Sun 2026-11-08 00:00", "Sun 2026-11-15 00:00"]),  # Sundays, as crontab
        ("@monthly", ["Tue 2026-12-01 00:00", "Fri 2027-01-01 00:00"]),
        ("@yearly", ["Fri 2027-01-01 00:00", "Sat 2028-01-01 00:00"]),
        ("@annually", ["Fri 2027-01-01 00:00", "Sat 2028-01-01 00:00"]),
        ("0 6 L * *", ["Mon 2026-11-30 06:00", "Thu 2026-12-31 06:00", "Sun 2027-01-31 06:00"]),
        ("0 6 LW * *", ["Mon 2026-11-30 06:00", "Thu 2026-12-31 06:00", "Fri 2027-01-29 06:00"]),
        # The weekday nearest the 15th: Sunday 2026-11-15 gives Monday; Saturday 2027-05-15
        # gives Friday; the nearest to the 1st never leaves its month (2027-05-01 a Saturday)
        ("0 6 15W * *", ["Mon 2026-11-16 06:00", "Tue 2026-12-15 06:00", "Fri 2027-01-15 06:00"]),
        ("0 6 15W 5 *", ["Fri 2027-05-14 06:00", "Mon 2028-05-15 06:00"]),
        ("0 6 1W 5 *", ["Mon 2027-05-03 06:00", "Mon 2028-05-01 06:00"]),
        ("0 6 31W 1 *", ["Fri 2027-01-29 06:00", "Mon 2028-01-31 06:00"]),
        # Saturday 2027-01-02 gives Friday the 1st
        ("0 6 2W * *", ["Mon 2026-11-02 06:00", "Wed 2026-12-02 06:00", "Fri 2027-01-01 06:00"]),
        # At midnight: the days around the 15th that are not the nearest weekday are passed over
        # whole, not the one after them
        ("0 0 15W * *", ["Mon 2026-11-16 00:00", "Tue 2026-12-15 00:00"]),
        ("0 9 * * FRI#1", ["Fri 2026-11-06 09:00", "Fri 2026-12-04 09:00"]),
        ("0 9 * * 5#1", ["Fri 2026-11-06 09:00", "Fri 2026-12-04 09:00"]),
        ("0 9 * * 5L", ["Fri 2026-11-27 09:00", "Fri 2026-12-25 09:00"]),
        ("0 9 * * fri#5", ["Fri 2027-01-29 09:00", "Fri 2027-04-30 09:00"]),
        ("*/20 9-10 * jan-mar MON", ["Mon 2027-01-04 09:00", "Mon 2027-01-04 09:20"]),
    ],
)
def test_every_standard_form(spec, runs):
    assert _runs(spec, datetime(2026, 11, 1, 12, 30), len(runs)) == runs


@pytest.mark.parametrize(
    "spec, field",
    [
        ("*/ * * * *", "minute"),
        ("1-5/ * * * *", "minute"),
        ("61 * * * *", "minute"),
        ("\u0663 * * * *", "minute"),  # an Arabic-Indic digit three
        ("0 \uff19 * * *", "hour"),  # a full-width nine
        ("0 24 * * *", "hour"),
        ("0 0 0 * *", "day-of-month"),
        ("0 0 1-5/ * *", "day-of-month"),
        ("0 0 15W * MON", "day-of-month"),
        ("0 0 * 13 *", "month"),
        ("0 0 * JANUARY *", "month"),
        ("0 0 * * 8", "day-of-week"),
        ("0 0 * * FRI#6", "day-of-week"),
        ("0 0 * * \u017fun", "day-of-week"),  # a long s, which upper-cases to S
        ("0 0 * * X", "day-of-week"),
    ],
)
def test_malformed_fields_are_refused_naming_the_field(spec, field):
    with pytest.raises(ValueError, match=f"the {field} field") as info:
        parse(spec)
    assert repr(spec) in str(info.value)


@pytest.mark.parametrize("spec", ["0 0 31 2 *", "0 0 30 2 *", "0 0 30,31 2 *", "0 0 31 4,6 *"])
def test_an_expression_that_never_matches_is_refused(spec):
    with pytest.raises(ValueError, match="never matches a date"):
        parse(spec)


def test_zones():
    assert parse("0 9 * * *", tz="Asia/Tokyo").zone.name == "Asia/Tokyo"
    with pytest.raises(ValueError, match="not a time zone; use an IANA name"):
        parse("daily", at="09:00", tz="Mars/Olympus")
    with pytest.raises(ValueError, match="--tz goes with --at or a cron expression"):
        parse("hourly", tz="Europe/Paris")
    # A cron's own zone wins over the runtime's
    tokyo = parse("daily", at="09:00", tz="Asia/Tokyo")
    due = tokyo.next_run(None, at(2026, 5, 1, 12, 0), PARIS)
    assert Zone("Asia/Tokyo").wall(due) == datetime(2026, 5, 2, 9, 0)


def test_the_default_zone_is_the_kernels_resolved_as_a_named_one(monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")
    local, named = Zone(), Zone("America/New_York")
    assert local.name == "America/New_York"
    # In the repeated hour too: the second 01:45, then the next 01:50 is tomorrow's
    second_0145 = named.epoch(datetime(2026, 11, 1, 1, 45)) + HOUR
    plan = parse("50 1 * * *")
    assert plan.next_run(None, second_0145, local) == plan.next_run(None, second_0145, named)
    assert named.wall(plan.next_run(None, second_0145, local)) == datetime(2026, 11, 2, 1, 50)


def utc(*args) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


def test_a_fixed_time_runs_in_the_first_pass_of_a_repeated_hour_and_at_the_jump_over_a_gap():
    # New York falls back at 02:00 EDT on 2026-11-01 (01:00-01:59 twice) and springs forward at
    # 02:00 EST on 2026-03-08 (02:00-02:59 skipped)
    assert NEW_YORK.fixed_time(datetime(2026, 11, 1, 1, 30)) == utc(2026, 11, 1, 5, 30)
    assert NEW_YORK.fixed_time(datetime(2026, 11, 1, 1, 30, fold=1)) == utc(2026, 11, 1, 5, 30)
    assert NEW_YORK.fixed_time(datetime(2026, 3, 8, 2, 45)) == utc(2026, 3, 8, 7, 0)  # 03:00 EDT
    assert NEW_YORK.fixed_time(datetime(2026, 3, 8, 3, 0)) == utc(2026, 3, 8, 7, 0)
    daily = parse("daily", at="01:30")
    first = daily.next_run(None, utc(2026, 10, 31, 16, 0), NEW_YORK)
    assert first == utc(2026, 11, 1, 5, 30)  # 01:30 EDT, the first pass
    assert daily.next_run(first, first + 60, NEW_YORK) == utc(2026, 11, 2, 6, 30)  # 01:30 EST
    spring = parse("daily", at="02:45")
    assert spring.next_run(None, utc(2026, 3, 7, 17, 0), NEW_YORK) == utc(2026, 3, 8, 7, 0)


def test_a_frequent_at_runs_in_both_passes_of_a_repeated_hour_from_the_next_minute():
    hourly = parse("hourly", at="00:40")
    first_pass_0145 = utc(2026, 11, 1, 5, 45)  # 01:45 EDT
    assert hourly.next_after(first_pass_0145, NEW_YORK) == utc(2026, 11, 1, 6, 40)  # 01:40 EST
    # The very next minute, when it is one of its times
    assert hourly.next_after(at(2026, 5, 1, 10, 39, 30), PARIS) == at(2026, 5, 1, 10, 40)
    assert hourly.next_after(at(2026, 5, 1, 10, 40), PARIS) == at(2026, 5, 1, 11, 40)


def test_wall_clock_intervals_work_before_the_day_they_count_from():
    # --at intervals count from Monday 2024-01-01; a clock before it finds the next run too
    daily = parse("daily", at="09:30")
    assert wall(daily.next_after(at(2023, 6, 1, 10, 0), PARIS)) == datetime(2023, 6, 2, 9, 30)


def test_a_zone_without_whole_minutes_says_a_frequent_at_never_runs():
    monrovia = Zone("Africa/Monrovia")  # UTC-00:44:30 until 1972
    with pytest.raises(ValueError) as info:
        parse("hourly", at="00:40").next_after(utc(1960, 6, 1), monrovia)
    assert str(info.value) == "Africa/Monrovia shows no whole minutes: every hour at :40 never runs"


@pytest.fixture
def kolkata(monkeypatch):
    """The kernel's TZ is Asia/Kolkata (UTC+05:30, no daylight saving) while the test runs."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_an_unknown_local_zone_warns_and_falls_back_to_the_fixed_offset(kolkata, monkeypatch):
    def unknown():
        raise LookupError("no zone configured")

    monkeypatch.setattr(tzlocal, "reload_localzone", unknown)
    with pytest.warns(UserWarning) as warned:
        zone = Zone()
    assert [str(w.message) for w in warned] == [
        "nbworkers: the local time zone is unknown (no zone configured); wall-clock crons use "
        "the fixed offset IST, without daylight saving. Set %config NBWorkers.timezone = "
        '"Europe/Paris" (your zone), or a cron\'s --tz.'
    ]
    assert zone.name == "IST"
    assert zone.tz.utcoffset(None) == timedelta(hours=5, minutes=30)
    assert zone.wall(utc(2026, 5, 1, 12, 0)) == datetime(2026, 5, 1, 17, 30)
    # Parsing a cron never looks at the local zone: no warning for one with its own zone
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert parse("0 9 * * *", tz="Asia/Tokyo").zone.name == "Asia/Tokyo"
        assert parse("0 9 31 * *").cron.expr == "0 9 31 * *"


_ZONES = ["America/New_York", "Europe/Berlin", "Australia/Lord_Howe"]
_SPECS = [
    ("30 2 * * *", None),
    ("50 1 * * *", None),
    ("*/15 * * * *", None),
    ("0 * * * *", None),
    ("*/7 1-3 * * *", None),
    ("0 2 * * SUN#1", None),
    ("daily", "02:30"),
    ("daily", "01:45"),
    ("every-12-hours", "01:50"),
    ("hourly", "00:40"),
    ("7m", "00:03"),
]


@settings(max_examples=300, deadline=None)
@given(
    zone=st.sampled_from(_ZONES),
    spec=st.sampled_from(_SPECS),
    # Within two days of one of the zone's 2026 transitions, to the second
    offset=st.integers(-2 * DAY, 2 * DAY),
    spring=st.booleans(),
)
def test_a_next_run_is_always_after_the_time_it_is_computed_from(zone, spec, offset, spring):
    z = Zone(zone)
    middle = {
        ("America/New_York", True): datetime(2026, 3, 8, 2),
        ("America/New_York", False): datetime(2026, 11, 1, 1),
        ("Europe/Berlin", True): datetime(2026, 3, 29, 2),
        ("Europe/Berlin", False): datetime(2026, 10, 25, 2),
        ("Australia/Lord_Howe", True): datetime(2026, 10, 4, 2),
        ("Australia/Lord_Howe", False): datetime(2026, 4, 5, 1, 30),
    }[zone, spring]
    plan = parse(*spec)
    ts = z.epoch(middle) + offset
    assert plan.next_after(ts, z) > ts
    # A catch-up is due at once, and the run after it is later: the timer never loops
    assert plan.next_run(ts - 40 * DAY, ts, z) == ts
    assert plan.next_run(ts, ts, z) > ts


@pytest.mark.parametrize(
    ("spec", "fields"),
    [("0 9 * *", 4), ("* * * *", 4), ('"0 9 * * * *"', 6), ("0 0 9 * * *", 6), ("1 2", 2)],
)
def test_a_cron_expression_with_a_field_too_few_or_many_says_so(spec, fields):
    with pytest.raises(ValueError) as info:
        parse(spec)
    assert "a cron expression has 5 fields (minute hour day-of-month month day-of-week)" in str(
        info.value
    )
    assert f"it has {fields}" in str(info.value)
    assert str(info.value).endswith('; in %%cron, quote it: %%cron "0 9 * * MON-FRI"')


# One field, or no more numbers than words: a misspelt interval, not a cron expression
@pytest.mark.parametrize("spec", ["every day", "every 2 days", "bogus", "5", "at 9 on 5"])
def test_a_misspelt_interval_lists_the_valid_ones(spec):
    with pytest.raises(ValueError, match=r"is not a cron interval\. Valid intervals: every-minute"):
        parse(spec)
