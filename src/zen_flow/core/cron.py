"""Cron schedules of CronJobFlows: parsing, the next run time, and the latest run time that is due.

The expressions are Kubernetes CronJob's: five fields (minute hour day-of-month month day-of-week, with
names, ranges, steps and lists) or one of the descriptors `@yearly` (`@annually`), `@monthly`,
`@weekly`, `@daily` (`@midnight`) and `@hourly`. Evaluation is `cronsim`'s (a small, dependency-free,
maintained evaluator written for Healthchecks.io), which follows Debian's cron, also across daylight
saving time changes in a time zone: a run at a wall-clock time the spring change skips happens at the
first minute after the jump (`30 2 * * *` runs at 03:00 that day), and a run at a time the autumn change
repeats happens once. (Kubernetes' CronJob skips the first and may also run once; cron's users expect
a daily job to run every day.) Six-field expressions (seconds) are refused: Kubernetes refuses them.

Pure: times in, times out; `now` is always an argument.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from cronsim import CronSim, CronSimError

DEFAULT_TIME_ZONE = "UTC"
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
# An IANA name: `Area/Location[/Sub]`, letters, digits, `_+-`; never a path (`..`, a leading `/`).
_ZONE_NAME = re.compile(r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$")
# cronsim gives up after 50 years without a match; beyond that a schedule never fires.
_HORIZON_YEARS = 50
# Where the backward search for the latest run time is checked forward from (see `latest_due`): a
# daylight saving change moves a wall-clock time by at most an hour.
_DST_MARGIN = timedelta(hours=2)


class ScheduleError(ValueError):
    """A schedule or time zone that cannot be used; the message says why, for a field error."""


@dataclass(frozen=True)
class Schedule:
    expression: str  # five fields (a descriptor already replaced)
    zone: tzinfo

    def _iterate(self, start: datetime, *, reverse: bool = False) -> CronSim:
        return CronSim(self.expression, start.astimezone(self.zone), reverse=reverse)

    def next_after(self, moment: datetime) -> datetime | None:
        """The first run time strictly after `moment` (UTC), or None if there is none within 50 years."""
        try:
            return next(self._iterate(moment)).astimezone(UTC)
        except StopIteration:
            return None

    def latest_due(self, since: datetime, now: datetime) -> datetime | None:
        """The latest run time in (`since`, `now`] (UTC), or None: what a controller that was away since
        `since` starts at most (never a backlog of every run it missed).

        The candidate comes from a backward search (cheap after a long outage of a minutely schedule),
        then the run times are walked forward from shortly before it to `now`: across a daylight saving
        change cronsim's backward search can answer the day before (the autumn night) or a time its
        forward walk never gives (Lord Howe's half-hour change), and the forward walk is what
        `next_after`, and so every requeue, follows.
        """
        if now <= since:
            return None
        # The backward search excludes its start; `now` itself may be a run time (second precision).
        start = now.replace(microsecond=0) + timedelta(seconds=1)
        try:
            candidate = next(self._iterate(start, reverse=True)).astimezone(UTC)
        except StopIteration:
            candidate = None
        walk_from = since if candidate is None else max(since, candidate - _DST_MARGIN)
        latest = None
        moment = self.next_after(walk_from)
        while moment is not None and moment <= now:
            latest = moment
            moment = self.next_after(moment)
        return latest


def parse_schedule(expression: str, time_zone: str | None = None) -> Schedule:
    """The schedule `expression` in `time_zone` (an IANA name; None or "" is UTC), or ScheduleError."""
    zone = parse_time_zone(time_zone)
    text = expression.strip()
    if not text:
        raise ScheduleError("must not be empty")
    if len(text) > MAX_SCHEDULE:
        raise ScheduleError(f"must be at most {MAX_SCHEDULE} characters")
    if text.startswith("@"):
        fields = DESCRIPTORS.get(text.lower())
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
    schedule = Schedule(text, zone)
    try:
        first = schedule.next_after(datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as err:
        raise ScheduleError(str(err) or "cannot be parsed") from None
    if first is None:
        raise ScheduleError(f"matches no time within {_HORIZON_YEARS} years")
    return schedule


def parse_time_zone(name: str | None) -> tzinfo:
    """The zone of an IANA name (None or "" is UTC), or ScheduleError."""
    if not name or name in ("UTC", "Etc/UTC"):
        return UTC
    if len(name) > 64 or not _ZONE_NAME.match(name) or ".." in name:
        raise ScheduleError("must be an IANA time zone name such as Europe/Berlin")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleError("unknown time zone (an IANA name such as Europe/Berlin)") from None


def scheduled_minute(moment: datetime) -> int:
    """The Unix minute of a run time: the suffix of its JobFlow's name."""
    return int(moment.timestamp()) // 60
