"""Cron schedules of CronJobFlows: parsing, the next run time, the latest run time that is due, and the
run times of a range.

The expressions are Kubernetes CronJob's (core/cron_fields.py): five fields or one of the descriptors
`@yearly` (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`) and `@hourly`.

A schedule is a set of instants, the run times: for every day the fields match (in the time zone's
calendar), each wall-clock time of its minute and hour fields, mapped to UTC. The questions asked of it,
`next_after`, `latest_due` and `between`, look that one set up in UTC, so they always agree, the next run
time is always strictly later than the moment asked about, and the latest due one always in the window
asked about: whatever a daylight saving change does to the wall clock.

Daylight saving changes follow Debian's cron:
- A schedule at particular times (no `*` in the minute or hour field, `30 2 * * *`): a time the spring
  change skips runs at the first instant after the jump (03:00); a time the autumn change repeats runs
  once, the first time.
- A schedule with `*` in the minute or hour field (`*/30 * * * *`, `@hourly`) follows the clock as it
  is: skipped times do not run, repeated ones run twice; `*/30 * * * *` runs every 30 minutes of real
  time through both changes.
Kubernetes' CronJob skips the spring run of the first kind.

Pure: times in, times out; `now` is always an argument.
"""

from __future__ import annotations

import functools
import importlib.resources
import math
import zoneinfo
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo

from zen_flow.core.cron_fields import Fields, ScheduleError, parse_fields

__all__ = ["Schedule", "ScheduleError", "parse_schedule", "parse_time_zone"]

DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MAX_SCHEDULE = 256  # what a schedule may hold (the CRD's maxLength); real ones are far shorter
# A schedule that matches nothing for this long never fires (`0 0 30 2 *`): refused.
_HORIZON = timedelta(days=366 * 50)
_DAY = timedelta(days=1)
_TICK = timedelta(microseconds=1)  # the instant just before another: datetime's resolution
# Zones of the tzdata package that are not places: refused although the package ships them.
_NOT_PLACES = frozenset({"Factory"})


@dataclass(frozen=True)
class Schedule:
    zone: tzinfo
    fields: Fields

    def next_after(self, moment: datetime) -> datetime | None:
        """The first run time strictly after `moment` (UTC), or None if there is none within 50 years."""
        moment = moment.astimezone(UTC)
        # The day before too: its repeated-hour run times may lie after `moment`'s wall-clock day began.
        day = moment.astimezone(self.zone).date() - _DAY
        last = day + _HORIZON
        while day <= last:
            if day.month not in self.fields.months:
                day = _next_month(day)
                continue
            run = self._first_after(day, moment)
            if run is not None:
                return run  # days never interleave: a later day's run times are all later
            day += _DAY
        return None

    def latest_due(self, since: datetime, now: datetime) -> datetime | None:
        """The latest run time in (`since`, `now`] (UTC), or None: what a controller that was away since
        `since` starts at most (never a backlog of every run it missed)."""
        since, now = since.astimezone(UTC), now.astimezone(UTC)
        if now <= since:
            return None
        day = now.astimezone(self.zone).date() + _DAY
        first = max(since.astimezone(self.zone).date() - _DAY, day - _HORIZON)
        while day >= first:
            if day.month not in self.fields.months:
                day = _end_of_previous_month(day)
                continue
            run = self._last_until(day, now)
            if run is not None:
                return run if run > since else None
            day -= _DAY
        return None

    def between(self, first: datetime, last: datetime) -> Iterator[datetime]:
        """The run times in [`first`, `last`] (UTC), oldest first: the forward walk of next_after, so the
        very instants the controller would have run (`zen-flow cron backfill`)."""
        moment = self.next_after(first - _TICK)  # `first` itself is in the range
        while moment is not None and moment <= last:
            yield moment
            moment = self.next_after(moment)

    def _first_after(self, day: date, moment: datetime) -> datetime | None:
        """The first run time of local calendar day `day` strictly after `moment`, or None."""
        if not self.fields.matches_day(day):
            return None
        minutes = self.fields.minutes_of_day
        midnight = self._midnight(day)
        if midnight is not None:  # all but the days a zone changes its offset: arithmetic
            i = bisect_right(minutes, math.floor((moment - midnight).total_seconds() / 60))
            return midnight + timedelta(minutes=minutes[i]) if i < len(minutes) else None
        runs = self._runs_of_changing_day(day)
        i = bisect_right(runs, moment)
        return runs[i] if i < len(runs) else None

    def _last_until(self, day: date, now: datetime) -> datetime | None:
        """The last run time of local calendar day `day` at or before `now`, or None."""
        if not self.fields.matches_day(day):
            return None
        minutes = self.fields.minutes_of_day
        midnight = self._midnight(day)
        if midnight is not None:
            i = bisect_right(minutes, math.floor((now - midnight).total_seconds() / 60))
            return midnight + timedelta(minutes=minutes[i - 1]) if i > 0 else None
        runs = self._runs_of_changing_day(day)
        i = bisect_right(runs, now)
        return runs[i - 1] if i > 0 else None

    def _midnight(self, day: date) -> datetime | None:
        """The UTC instant of `day`'s 00:00 when the zone keeps one offset all day, else None."""
        offset = _uniform_offset(self.zone, day)
        return None if offset is None else datetime.combine(day, time(), UTC) - offset

    def _runs_of_changing_day(self, day: date) -> list[datetime]:
        """The run times of a day whose offset changes, in UTC, sorted, each once."""
        runs: set[datetime] = set()
        for m in self.fields.minutes_of_day:
            runs.update(self._instants(datetime.combine(day, time(m // 60, m % 60))))
        return sorted(runs)

    def _instants(self, wall: datetime) -> list[datetime]:
        """The instants of a naive wall-clock time in the zone, by the daylight saving rule above."""
        first = wall.replace(tzinfo=self.zone, fold=0).astimezone(UTC)
        second = wall.replace(tzinfo=self.zone, fold=1).astimezone(UTC)
        if first == second:
            return [first]
        if first < second:  # repeated (autumn): fold 0 is the first pass
            return [first] if self.fields.fixed_time else [first, second]
        # Skipped (spring): fold 0 reads it with the offset before the change, fold 1 after, so the
        # change itself lies between `second` and `first`.
        return [_change_between(self.zone, second, first)] if self.fields.fixed_time else []


def _uniform_offset(zone: tzinfo, day: date) -> timedelta | None:
    """The zone's one UTC offset for all of `day`, or None when the offset changes during it."""
    if isinstance(zone, timezone):
        return zone.utcoffset(None)
    start = datetime.combine(day, time(), zone)
    end = datetime.combine(day + _DAY, time(), zone)
    offset = start.utcoffset()
    if offset is None or end.utcoffset() != offset:
        return None
    # Midnight itself may be skipped or repeated (a change at 00:00): then the offsets agree with the
    # day before's, not with the day; the round trip through UTC tells.
    if start.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != start.replace(tzinfo=None):
        return None
    # Either midnight repeated (Beirut goes back from 00:00 to 23:00): fold 1 reads its second pass.
    if start.replace(fold=1).utcoffset() != offset or end.replace(fold=1).utcoffset() != offset:
        return None
    return offset


def _change_between(zone: tzinfo, before: datetime, after: datetime) -> datetime:
    """The first instant in (`before`, `after`] at the offset `after` has (a binary search in seconds:
    a change is on a whole second, and there is one in a skipped time's window)."""
    target = after.astimezone(zone).utcoffset()
    low, high = int(before.timestamp()), int(after.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == target:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def _next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def _end_of_previous_month(day: date) -> date:
    return day.replace(day=1) - _DAY


def parse_schedule(expression: str, time_zone: str | None = None) -> Schedule:
    """The schedule `expression` in `time_zone` (an IANA name; None or "" is UTC), or ScheduleError."""
    zone = parse_time_zone(time_zone)
    text = expression.strip()
    if not text:
        raise ScheduleError("must not be empty")
    if len(text) > MAX_SCHEDULE:
        raise ScheduleError(f"must be at most {MAX_SCHEDULE} characters")
    if text.startswith("@every"):
        raise ScheduleError(
            "@every is not supported (a run is named by its minute and its times must not depend on "
            "when the CronJobFlow was created): write the interval as fields, such as */30 * * * * "
            "or 0 */2 * * *"
        )
    if text.startswith("@"):
        fields = DESCRIPTORS.get(text)
        if fields is None:
            raise ScheduleError(f"unknown descriptor; one of {', '.join(DESCRIPTORS)}")
        text = fields
    if text.upper().startswith(("TZ=", "CRON_TZ=")):
        raise ScheduleError("a time zone is set with spec.timeZone, not in the schedule")
    count = len(text.split())
    if count != 5:
        raise ScheduleError(
            f"must have 5 fields (minute hour day-of-month month day-of-week), not {count}, "
            "or be a descriptor such as @daily"
        )
    schedule = Schedule(zone, parse_fields(text))
    if schedule.next_after(datetime(2000, 1, 1, tzinfo=UTC)) is None:
        raise ScheduleError("matches no time within 50 years")
    return schedule


def parse_time_zone(name: str | None) -> tzinfo:
    """The zone of an IANA name (None or "" is UTC), or ScheduleError. Only the zones the `tzdata`
    package lists, read from that package: never the image's own files (`localtime`, `posix/...`)."""
    if not name or name in ("UTC", "Etc/UTC"):
        return UTC
    if name not in _zone_names() or name in _NOT_PLACES:
        raise ScheduleError("unknown time zone (an IANA name such as Europe/Berlin)")
    return _load_zone(name)


@functools.cache
def _zone_names() -> frozenset[str]:
    listing = importlib.resources.files("tzdata").joinpath("zones").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in listing.splitlines() if line.strip())


@functools.cache
def _load_zone(name: str) -> tzinfo:
    # Of the ~600 names each is read once (cached), from the package, whatever the process's TZPATH.
    resource = importlib.resources.files("tzdata.zoneinfo").joinpath(*name.split("/"))
    with resource.open("rb") as data:
        return zoneinfo.ZoneInfo.from_file(data, key=name)


def scheduled_minute(moment: datetime) -> int:
    """The Unix minute of a run time: the suffix of its JobFlow's name."""
    return int(moment.timestamp()) // 60
