"""Cron schedules: parse one, describe it, and compute its next run. Pure functions.

Times are epoch seconds. Wall-clock schedules (``--at`` and cron expressions) are computed in a
time zone (the cron's own ``--tz``, ``NBWorkers.timezone``, or the kernel's local zone), so
"daily at 09:30" stays 09:30 across daylight saving. Cron expressions are parsed and evaluated by
cronsim, with Debian cron's rules; ``--at`` intervals follow the same rules:

- a job at a fixed time (a cron expression with its minute and hour given, such as
  ``30 2 * * *``, or an ``--at`` interval longer than an hour) runs once on a day the clock jumps
  over its time, at the jump (02:30 runs at 03:00 in New York), and once on a day the clock
  repeats it, in its first pass;
- a frequent job (``*`` in the minute or hour, such as ``*/15 * * * *`` and ``@hourly``, or an
  ``--at`` interval of an hour or less) runs whenever the wall clock shows one of its times:
  through both passes of a repeated hour, and not in a skipped one.

A next run is always strictly after the time it is computed from.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from cronsim import CronSim, CronSimError

from .errors import ArgumentTypeError, ArgumentValueError
from .zone import Zone

MINUTE = 60
HOUR = 3600
DAY = 86400

DARKLANG = {
    "every-minute": MINUTE,
    "hourly": HOUR,
    "every-12-hours": 12 * HOUR,
    "daily": DAY,
    "weekly": 7 * DAY,
    "fortnightly": 14 * DAY,
}
# Darklang's own spellings.
ALIASES = {
    "every 1min": "every-minute",
    "every 1hr": "hourly",
    "every 12hrs": "every-12-hours",
    "every 1day": "daily",
    "every 1week": "weekly",
    "every 2weeks": "fortnightly",
}
# Crontab's nicknames (Debian cron's: a weekly job runs on Sundays).
NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_UNITS = {"s": 1, "m": MINUTE, "h": HOUR, "d": DAY}
_DURATION_RE = re.compile(r"^(\d+)\s*([smhd])$", re.ASCII)
_AT_RE = re.compile(r"^(\d{1,2}):(\d{2})$", re.ASCII)
# Wall-clock intervals count from this Monday, so weekly --at runs on Mondays.
_ANCHOR = datetime(2024, 1, 1)

VALID_FORMS = (
    "every-minute, hourly, every-12-hours, daily, weekly, fortnightly (or Darklang's "
    '"every 1min", "every 1hr", "every 12hrs"); a duration such as 30s, 5m, 2h, 3d; a quoted '
    'cron expression such as "0 9 * * MON-FRI"; or @hourly, @daily, @weekly, @monthly, @yearly'
)


# ----- cron expressions ---------------------------------------------------------------------

_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
_FIELD_FORMS = {
    "minute": "0-59",
    "hour": "0-23",
    "day-of-month": "1-31, L (the last day), LW (the last weekday) or 15W (the weekday nearest "
    "the 15th)",
    "month": "1-12 or JAN-DEC",
    "day-of-week": "0-7 or SUN-SAT (0 and 7 are Sunday), FRI#1 (the first Friday) or 5L (the "
    "last Friday)",
}
_NEAREST_RE = re.compile(r"^([0-9]{1,2})W$")
# cronsim's words for a day-of-month 1 in one month: "At 09:00 on May 1"
_ONE_MONTH_RE = re.compile(r"(.*) on ([A-Z][a-z]+) 1")
# Never-matching expressions are found by searching from here (cronsim looks 50 years ahead).
_REFERENCE_S = 946684800.0  # 2000-01-01 UTC


@dataclass(frozen=True)
class CronExpr:
    """A 5-field cron expression (or a crontab nickname), evaluated by cronsim."""

    text: str  # as written: "0 9 * * MON-FRI", "@daily"
    expr: str  # what cronsim evaluates
    nearest_weekday: int | None = None  # the day of a "15W" day-of-month

    @classmethod
    def parse(cls, text: str) -> CronExpr:
        """The expression ``text``; ValueError naming the field that is wrong."""
        expr = NICKNAMES.get(text.lower(), text)
        fields = expr.split()
        if len(fields) != 5:
            raise ArgumentValueError(f"a cron expression has 5 fields, {text!r} has {len(fields)}")
        for what, field in zip(_FIELDS, fields, strict=True):
            if not field.isascii():
                raise ArgumentValueError(_bad_field(text, what, field))
        nearest = None
        if match := _NEAREST_RE.match(fields[2].upper()):
            nearest = int(match[1])
            if not 1 <= nearest <= 31 or fields[4] != "*":
                raise ArgumentValueError(
                    f"{_bad_field(text, 'day-of-month', fields[2])} (W takes one day, 1W to "
                    "31W, with * as the day-of-week)"
                )
            # cronsim knows LW only: it gives the days around, _nearest_ok keeps the one
            fields[2] = f"{max(1, nearest - 2)}-{min(31, nearest + 2)}"
        cron = cls(text=text, expr=" ".join(fields), nearest_weekday=nearest)
        try:
            CronSim(cron.expr, datetime(2000, 1, 1))
        except CronSimError as exc:
            what = str(exc).removeprefix("Bad ")
            if what not in _FIELDS:
                raise ArgumentValueError(f"{text!r} is not a cron expression: {exc}") from None
            if what == "day-of-month" and _parses(" ".join([*fields[:3], "*", fields[4]])):
                raise ArgumentValueError(cron.never_matches()) from None  # "31 2": no February 31st
            raise ArgumentValueError(_bad_field(text, what, fields[_FIELDS.index(what)])) from None
        cron.next_after(_REFERENCE_S, Zone("UTC"))  # ValueError if it never matches
        return cron

    def never_matches(self) -> str:
        return (
            f"the cron expression {self.text!r} never matches a date (no month it names has "
            "that day); check its day-of-month and month"
        )

    def next_after(self, ts: float, zone: Zone) -> float:
        """The first run strictly after ``ts``."""
        start = zone.aware(ts)
        runs = CronSim(self.expr, start)
        while True:
            try:
                t = next(runs)
            except StopIteration:
                raise ValueError(self.never_matches()) from None
            if t.year > start.year + 50:
                raise ValueError(self.never_matches())
            if t.timestamp() <= ts:
                continue  # the first pass of a repeated hour, already gone: once is enough
            if not self._nearest_ok(t.date()):
                # Go on from the end of that day: a day matches whole or not at all
                day_end = datetime.combine(t.date() + timedelta(days=1), datetime.min.time())
                runs = CronSim(self.expr, zone.aware(zone.epoch(day_end) - 1))
                continue
            return t.timestamp()

    def _nearest_ok(self, day: date) -> bool:
        if self.nearest_weekday is None:
            return True
        return day.day == _nearest_weekday(day.year, day.month, self.nearest_weekday)

    def describe(self) -> str:
        """In words, with the expression: "at 09:00 on Monday through Friday (0 9 * * MON-FRI)"."""
        expr, nearest = self.expr, self.nearest_weekday
        if nearest is not None:  # explained as the 1st, then said as it is
            expr = " ".join([*expr.split()[:2], "1", *expr.split()[3:]])
        words = CronSim(expr, datetime(2000, 1, 1)).explain()
        if nearest is not None:
            nearest_words = f"the weekday nearest day {nearest}"
            if "the first day" in words:
                words = words.replace("the first day", nearest_words)
            else:  # "At 09:00 on May 1": one month, said by name
                head, month = _ONE_MONTH_RE.fullmatch(words).groups()
                words = f"{head} on {nearest_words} of {month}"
        return f"{words[:1].lower()}{words[1:]} ({self.text})"


def _parses(expr: str) -> bool:
    try:
        CronSim(expr, datetime(2000, 1, 1))
    except CronSimError:
        return False
    return True


def _bad_field(text: str, what: str, field: str) -> str:
    return (
        f"the {what} field {field!r} of the cron expression {text!r} is not valid: use "
        f"{_FIELD_FORMS[what]}, *, lists (1,15), ranges (1-5) and steps (*/15, 1-30/5)"
    )


def _nearest_weekday(year: int, month: int, day: int) -> int | None:
    """The weekday (Monday to Friday) of the month nearest its ``day``; None if it has none."""
    last = calendar.monthrange(year, month)[1]
    if day > last:
        return None
    weekday = date(year, month, day).weekday()
    if weekday == 5:  # Saturday: the Friday before, unless that is last month
        return day - 1 if day > 1 else day + 2
    if weekday == 6:  # Sunday: the Monday after, unless that is next month
        return day + 1 if day < last else day - 2
    return day


# ----- schedules ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """An interval (``every_s``, optionally at a wall-clock ``at``) or a cron expression, with
    its own time zone or None (the runtime's)."""

    spec: str
    every_s: int | None = None
    at: tuple[int, int] | None = None
    cron: CronExpr | None = None
    zone: Zone | None = None

    @property
    def wall_clock(self) -> bool:
        return self.cron is not None or self.at is not None

    def next_after(self, ts: float, zone: Zone) -> float:
        """The first wall-clock run strictly after ``ts`` (wall-clock schedules only)."""
        if self.cron is not None:
            return self.cron.next_after(ts, zone)
        hour, minute = self.at
        anchor = _ANCHOR.replace(hour=hour, minute=minute)
        step = timedelta(seconds=self.every_s)
        if self.every_s <= HOUR:
            # Frequent, as a wildcard cron: whenever the wall clock shows one of its times.
            # Zones shift by whole quarter hours, so within step + 3 h of minutes one does.
            t = (ts // MINUTE + 1) * MINUTE
            for _ in range((self.every_s + 3 * HOUR) // MINUTE):
                if not (zone.wall(t) - anchor) % step:
                    return t
                t += MINUTE
            raise ValueError(f"{zone.name} shows no whole minutes: {self.describe()} never runs")
        candidate = anchor + (zone.wall(ts) - anchor) // step * step
        while (t := zone.fixed_time(candidate)) <= ts:
            candidate += step
        return t

    def next_run(self, last_run: float | None, now: float, zone: Zone) -> float:
        """When the cron should run next, given its last run (None: never) and ``now``.

        ``zone`` is the runtime's: a schedule with a zone of its own uses its own. An interval
        cron that never ran is due at once, then every interval after its last run. A
        wall-clock one runs at its times; if one was missed (the kernel was down) it is due at
        once, a single catch-up however many were missed.
        """
        if not self.wall_clock:
            return now if last_run is None else last_run + self.every_s
        zone = self.zone or zone
        if last_run is None:
            return self.next_after(now, zone)
        missed = self.next_after(last_run, zone)
        return missed if missed > now else now

    def describe(self) -> str:
        """The schedule in words: "every day at 09:30"."""
        words = self._words()
        return f"{words}, {self.zone.name} time" if self.zone is not None else words

    def _words(self) -> str:
        if self.cron is not None:
            return self.cron.describe()
        words = _every_words(self.every_s)
        if self.at is None:
            return words
        hour, minute = self.at
        if self.every_s <= HOUR:
            return f"{words} at :{minute:02d}"
        if self.every_s % (7 * DAY) == 0:
            return f"{words} on Monday at {hour:02d}:{minute:02d}"
        return f"{words} at {hour:02d}:{minute:02d}"


def _every_words(seconds: int) -> str:
    named = {
        MINUTE: "every minute",
        HOUR: "every hour",
        DAY: "every day",
        7 * DAY: "every week",
        14 * DAY: "every two weeks",
    }
    if seconds in named:
        return named[seconds]
    for unit, size in (("day", DAY), ("hour", HOUR), ("minute", MINUTE)):
        if seconds % size == 0:
            return f"every {seconds // size} {unit}s"
    return f"every {seconds} seconds" if seconds != 1 else "every second"


def _cron_like(text: str) -> bool:
    """Several fields, most of them numbers, ranges, steps or ``*``: a cron expression with a
    field too few or too many (not a misspelt interval such as "every 2 days")."""
    fields = text.split()
    numeric = [f for f in fields if re.fullmatch(r"[\d*/,\-]+", f)]
    return len(fields) > 1 and 2 * len(numeric) > len(fields)


def parse_keywords(spec, at: str | None = None, tz: str | None = None) -> Schedule:
    """``parse`` for ``@nw.cron``: its errors name the keywords ``at=`` and ``tz=``, not the
    flags of ``%%cron``."""
    flag = re.search(r"--(at|tz)\b", str(spec))
    if flag:
        raise ArgumentValueError(
            f"@nw.cron takes {flag[1]}= as a keyword, not {flag[0]} in the interval: "
            "@nw.cron('daily', at='09:30', tz='Europe/Paris')"
        )
    try:
        return parse(spec, at, tz)
    except ArgumentValueError as exc:
        # the flags of the messages' own words, not of the user's quoted values
        parts = re.split(r"('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")", str(exc))
        words = [p if i % 2 else re.sub(r"--(at|tz)\b", r"\1=", p) for i, p in enumerate(parts)]
        raise ArgumentValueError("".join(words)) from None


def parse(spec: str, at: str | None = None, tz: str | None = None) -> Schedule:
    """A Schedule from an interval or cron expression, an optional ``HH:MM`` and an optional
    IANA time zone; ValueError saying what is wrong otherwise."""
    text = " ".join(str(spec).strip().strip("\"'").split())
    zone = Zone(tz) if tz else None
    key = ALIASES.get(text.lower(), text.lower())
    if key in DARKLANG:
        every = DARKLANG[key]
    elif match := _DURATION_RE.match(key):
        every = int(match[1]) * _UNITS[match[2]]
        if every < 1:
            raise ArgumentValueError(
                f"the interval {spec!r} is zero. Valid intervals: {VALID_FORMS}"
            )
    elif len(text.split()) == 5 or key in NICKNAMES:
        if at is not None:
            raise ArgumentValueError(
                "--at goes with intervals; a cron expression already says when"
            )
        return Schedule(spec=text, cron=CronExpr.parse(text), zone=zone)
    elif _cron_like(text):
        fields = len(text.split())
        raise ArgumentValueError(
            f"{text!r} looks like a cron expression, but a cron expression has 5 fields "
            f"(minute hour day-of-month month day-of-week) and it has {fields}; in %%cron, "
            'quote it: %%cron "0 9 * * MON-FRI"'
        )
    else:
        raise ArgumentValueError(f"{spec!r} is not a cron interval. Valid intervals: {VALID_FORMS}")
    if at is None:
        if zone is not None:
            raise ArgumentValueError(
                "--tz goes with --at or a cron expression: an interval without --at counts "
                "time since its last run, whatever the zone"
            )
        return Schedule(spec=text, every_s=every)
    if not isinstance(at, str):
        raise ArgumentTypeError(f"at must be a time of day as text, HH:MM, not {at!r}")
    match = _AT_RE.match(at.strip())
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        raise ArgumentValueError(f"--at {at!r} is not a time of day; use HH:MM, such as 09:30")
    if every < MINUTE or every % MINUTE:
        raise ArgumentValueError(
            "--at needs an interval of whole minutes (hourly, daily, 15m, ...)"
        )
    return Schedule(spec=text, every_s=every, at=(int(match[1]), int(match[2])), zone=zone)
