"""Cron schedules: parse an interval, describe it, and compute the next run. Pure functions.

Times are epoch seconds; wall-clock schedules (``--at`` and cron expressions) are computed in
local time (or a named time zone) so "daily at 09:30" stays 09:30 across daylight saving.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

from .errors import ArgumentTypeError, ArgumentValueError

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
_UNITS = {"s": 1, "m": MINUTE, "h": HOUR, "d": DAY}
_DURATION_RE = re.compile(r"^(\d+)\s*([smhd])$")
_AT_RE = re.compile(r"^(\d{1,2}):(\d{2})$")
# Wall-clock intervals count from this Monday, so weekly --at runs on Mondays.
_ANCHOR = datetime(2024, 1, 1)

VALID_FORMS = (
    "every-minute, hourly, every-12-hours, daily, weekly, fortnightly (or Darklang's "
    '"every 1min", "every 1hr", "every 12hrs"); a duration such as 30s, 5m, 2h, 3d; or a quoted '
    'cron expression such as "0 9 * * MON-FRI"'
)


class Zone:
    """Local wall-clock time: the system's (default) or a named IANA zone."""

    def __init__(self, name: str | None = None):
        self.name = name or None
        self._zone: tzinfo | None = ZoneInfo(name) if name else None

    def wall(self, ts: float) -> datetime:
        """The naive local wall-clock time at epoch ``ts``."""
        if self._zone is None:
            return datetime.fromtimestamp(ts)
        return datetime.fromtimestamp(ts, self._zone).replace(tzinfo=None)

    def epoch(self, wall: datetime) -> float:
        """Epoch seconds of the naive local wall-clock time ``wall``."""
        if self._zone is None:
            return time.mktime((*wall.timetuple()[:8], -1)) + wall.microsecond / 1e6
        return wall.replace(tzinfo=self._zone).timestamp()

    def aware(self, ts: float) -> datetime:
        """A timezone-aware datetime for epoch ``ts``."""
        if self._zone is None:
            return datetime.fromtimestamp(ts).astimezone()
        return datetime.fromtimestamp(ts, self._zone)


@dataclass(frozen=True)
class Schedule:
    """An interval (``every_s``, optionally at a wall-clock ``at``) or a cron expression."""

    spec: str
    every_s: int | None = None
    at: tuple[int, int] | None = None
    cron: CronExpr | None = None

    @property
    def wall_clock(self) -> bool:
        return self.cron is not None or self.at is not None

    def next_after(self, ts: float, zone: Zone) -> float:
        """The first wall-clock run strictly after ``ts`` (wall-clock schedules only)."""
        if self.cron is not None:
            return zone.epoch(self.cron.next_after(zone.wall(ts)))
        hour, minute = self.at
        anchor = _ANCHOR.replace(hour=hour, minute=minute)
        step = timedelta(seconds=self.every_s)
        wall = zone.wall(ts)
        k = (wall - anchor) // step
        candidate = anchor + k * step
        while zone.epoch(candidate) <= ts:
            candidate += step
        return zone.epoch(candidate)

    def next_run(self, last_run: float | None, now: float, zone: Zone) -> float:
        """When the cron should run next, given its last run (None: never) and ``now``.

        An interval cron that never ran is due at once, then every interval after its last
        run. A wall-clock one runs at its times; if one was missed (the kernel was down) it is
        due at once, a single catch-up however many were missed.
        """
        if not self.wall_clock:
            return now if last_run is None else last_run + self.every_s
        if last_run is None:
            return self.next_after(now, zone)
        missed = self.next_after(last_run, zone)
        return missed if missed > now else now

    def describe(self) -> str:
        """The schedule in words: "every day at 09:30"."""
        if self.cron is not None:
            return f"cron {self.cron.text}"
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


def parse(spec: str, at: str | None = None) -> Schedule:
    """A Schedule from an interval spec and an optional ``HH:MM``; ArgumentValueError (a
    ValueError) otherwise."""
    text = " ".join(str(spec).strip().strip("\"'").split())
    key = ALIASES.get(text.lower(), text.lower())
    if key in DARKLANG:
        every = DARKLANG[key]
    elif match := _DURATION_RE.match(key):
        every = int(match[1]) * _UNITS[match[2]]
        if every < 1:
            raise ArgumentValueError(
                f"the interval {spec!r} is zero. Valid intervals: {VALID_FORMS}"
            )
    elif len(text.split()) == 5:
        if at is not None:
            raise ArgumentValueError(
                "--at goes with intervals; a cron expression already says when"
            )
        try:
            return Schedule(spec=text, cron=CronExpr.parse(text))
        except ValueError as exc:
            raise ArgumentValueError(f"{exc}. Valid intervals: {VALID_FORMS}") from None
    else:
        raise ArgumentValueError(f"{spec!r} is not a cron interval. Valid intervals: {VALID_FORMS}")
    if at is None:
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
    return Schedule(spec=text, every_s=every, at=(int(match[1]), int(match[2])))


_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]


def _field(text: str, low: int, high: int, names: list[str] | None, what: str) -> frozenset:
    def value(token: str) -> int:
        upper = token.upper()
        if names and upper in names:
            return names.index(upper) + (1 if what == "month" else 0)
        if not token.isdigit():
            raise ValueError(f"cron {what} {token!r} is not a number")
        return int(token)

    values: set[int] = set()
    for part in text.split(","):
        part, _, step_text = part.partition("/")
        step = int(step_text) if step_text.isdigit() and int(step_text) > 0 else None
        if step_text and step is None:
            raise ValueError(f"cron {what} step {step_text!r} is not a positive number")
        if part == "*":
            first, last = low, high
        elif "-" in part:
            a, b = part.split("-", 1)
            first, last = value(a), value(b)
        else:
            first = last = value(part)
            if step:
                last = high
        if not (low <= first <= high and low <= last <= high) or first > last:
            raise ValueError(f"cron {what} {part!r} is outside {low}-{high}")
        values.update(range(first, last + 1, step or 1))
    if what == "weekday" and 7 in values:  # 7 is Sunday too
        values = (values - {7}) | {0}
    return frozenset(values)


@dataclass(frozen=True)
class CronExpr:
    """A 5-field cron expression: minute hour day-of-month month day-of-week."""

    text: str
    minutes: frozenset
    hours: frozenset
    days: frozenset
    months: frozenset
    weekdays: frozenset  # 0 = Sunday
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, text: str) -> CronExpr:
        fields = text.split()
        if len(fields) != 5:
            raise ValueError(f"a cron expression has 5 fields, {text!r} has {len(fields)}")
        minute, hour, day, month, weekday = fields
        return cls(
            text=text,
            minutes=_field(minute, 0, 59, None, "minute"),
            hours=_field(hour, 0, 23, None, "hour"),
            days=_field(day, 1, 31, None, "day"),
            months=_field(month, 1, 12, _MONTHS, "month"),
            weekdays=_field(weekday, 0, 7, _DAYS, "weekday"),
            any_day=day == "*",
            any_weekday=weekday == "*",
        )

    def _day_matches(self, wall: datetime) -> bool:
        day_ok = wall.day in self.days
        weekday_ok = (wall.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:  # cron's rule: both restricted means either
            return day_ok and weekday_ok
        return day_ok or weekday_ok

    def next_after(self, wall: datetime) -> datetime:
        """The first matching minute strictly after the naive wall-clock time ``wall``."""
        t = wall.replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = t + timedelta(days=366 * 5)
        while t < limit:
            if t.month not in self.months:
                t = (t.replace(day=1) + timedelta(days=32)).replace(day=1, hour=0, minute=0)
            elif not self._day_matches(t):
                t = (t + timedelta(days=1)).replace(hour=0, minute=0)
            elif t.hour not in self.hours:
                t = (t + timedelta(hours=1)).replace(minute=0)
            elif t.minute not in self.minutes:
                t += timedelta(minutes=1)
            else:
                return t
        raise ValueError(f"the cron expression {self.text!r} never matches a date")
