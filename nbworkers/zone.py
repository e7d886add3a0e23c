"""Time zones for wall-clock schedules: a named IANA zone (``--tz``, ``NBWorkers.timezone``)
or the kernel's local zone, and the conversions between epoch seconds and wall-clock times that
crons need (a repeated time, a skipped time). Pure functions."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import tzlocal

from .errors import ArgumentValueError


class Zone:
    """A time zone for wall-clock schedules: a named IANA zone, or (no name) the kernel's
    local zone, resolved to its IANA zone too so both follow the same rules."""

    def __init__(self, name: str | None = None):
        if name:
            try:
                self.tz: tzinfo = ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                raise ArgumentValueError(
                    f"{name!r} is not a time zone; use an IANA name such as Europe/Paris"
                ) from None
            self.name = name
        else:
            self.tz, self.name = _local_zone()

    def wall(self, ts: float) -> datetime:
        """The naive wall-clock time at epoch ``ts``."""
        return datetime.fromtimestamp(ts, self.tz).replace(tzinfo=None)

    def aware(self, ts: float) -> datetime:
        """A timezone-aware datetime for epoch ``ts``."""
        return datetime.fromtimestamp(ts, self.tz)

    def epoch(self, wall: datetime) -> float:
        """Epoch seconds of the naive wall-clock time ``wall`` (a repeated time: its first)."""
        return wall.replace(tzinfo=self.tz).timestamp()

    def fixed_time(self, wall: datetime) -> float:
        """When a job at the fixed wall-clock time ``wall`` runs, as Debian cron runs it: a
        repeated time in its first pass, a skipped time at the jump."""
        t = wall.replace(tzinfo=self.tz, fold=0)
        while _skipped(t):
            t += timedelta(minutes=1)  # wall-clock arithmetic: same tzinfo
        return t.timestamp()


def _skipped(t: datetime) -> bool:
    """Whether the aware ``t`` is a wall-clock time its zone skips (a spring jump)."""
    # Aware datetimes with one tzinfo compare by their wall-clock fields.
    return t != t.astimezone(UTC).astimezone(t.tzinfo)


def _local_zone() -> tuple[tzinfo, str]:
    """The kernel's zone now (TZ, else the system's), and its name."""
    try:
        zone = tzlocal.reload_localzone()  # not a zone cached before the kernel's TZ changed
        return zone, str(zone)
    except Exception as exc:  # noqa: BLE001 - warned: crons fall back to a fixed offset
        offset = datetime.now().astimezone().tzinfo
        warnings.warn(
            f"nbworkers: the local time zone is unknown ({exc}); wall-clock crons use the "
            f"fixed offset {offset}, without daylight saving. Set "
            '%config NBWorkers.timezone = "Europe/Paris" (your zone), or a cron\'s --tz.',
            stacklevel=2,
        )
        return offset, str(offset)
