"""The five fields of a cron expression, read as Kubernetes' CronJob reads them (robfig/cron v3's
`ParseStandard`), into the sets of values each allows.

- A field is a comma-separated list of items; an item is `*` or `?` (every value), a value, or a range
  `a-b`, each optionally with a step `/n` (`a/n` is `a-<max>/n`). Values are numbers, or names in the
  month (`JAN`-`DEC`) and day-of-week (`SUN`-`SAT`, Sunday is 0) fields, in any case.
- Day of month and day of week: when either field is `*` or `?` (a `*/1` too, but not `*/2`, which
  lists values), a day must match both; otherwise either. This is where Kubernetes differs from Vixie and
  Debian cron (whose rule looks at a leading `*`: `0 0 */2 * 1` there runs on odd Mondays only, here on
  odd days and on Mondays), and it is Kubernetes' meaning that a CronJob's schedule copied here keeps.
- What Kubernetes refuses is refused: `L`, `W`, `#`, `7` for Sunday, seconds.

Pure; no time zones here (core/cron.py walks the fields in a zone).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_WILD = ("*", "?")


class ScheduleError(ValueError):
    """A schedule or time zone that cannot be used; the message says why, for a field error."""


@dataclass(frozen=True)
class _Bounds:
    name: str
    low: int
    high: int
    names: dict[str, int]


_MINUTE = _Bounds("minute", 0, 59, {})
_HOUR = _Bounds("hour", 0, 23, {})
_DOM = _Bounds("day-of-month", 1, 31, {})
_MONTH = _Bounds("month", 1, 12, {n: i + 1 for i, n in enumerate(MONTH_NAMES)})
_DOW = _Bounds("day-of-week", 0, 6, {n: i for i, n in enumerate(DAY_NAMES)})


@dataclass(frozen=True)
class Fields:
    minutes: tuple[int, ...]  # sorted
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 is Sunday
    any_day: bool  # day-of-month is `*`/`?`: robfig's star bit
    any_weekday: bool
    # Neither minute nor hour has a `*`: a run at a particular wall-clock time, which a daylight saving
    # change moves rather than drops or repeats (Debian cron's rule; see core/cron.py).
    fixed_time: bool
    minutes_of_day: tuple[int, ...]  # sorted: hour * 60 + minute of each wall-clock run time of a day

    def matches_day(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = day.isoweekday() % 7 in self.weekdays
        if self.any_day or self.any_weekday:
            return dom and dow
        return dom or dow


def parse_fields(text: str) -> Fields:
    """The five fields of `text` (already split-checked to five), or ScheduleError naming the field."""
    minute, hour, dom, month, dow = text.split()
    minutes, _ = _field(minute, _MINUTE)
    hours, _ = _field(hour, _HOUR)
    days, any_day = _field(dom, _DOM)
    months, _ = _field(month, _MONTH)
    weekdays, any_weekday = _field(dow, _DOW)
    return Fields(
        minutes=tuple(sorted(minutes)),
        hours=tuple(sorted(hours)),
        days=frozenset(days),
        months=frozenset(months),
        weekdays=frozenset(weekdays),
        any_day=any_day,
        any_weekday=any_weekday,
        fixed_time=not any(c in minute + hour for c in "*?"),
        minutes_of_day=tuple(sorted(h * 60 + m for h in hours for m in minutes)),
    )


def _field(text: str, bounds: _Bounds) -> tuple[set[int], bool]:
    """(the values, whether the field counts as `*` for the day rule)."""
    values: set[int] = set()
    star = False
    for item in text.split(","):
        part, slash, step_text = item.partition("/")
        if part in _WILD:
            start, end, wild = bounds.low, bounds.high, True
        else:
            low, dash, high = part.partition("-")
            start = _value(low, bounds)
            end = _value(high, bounds) if dash else start
            wild = False
            if slash and not dash:
                end = bounds.high  # `a/n`: from a to the maximum
        step = 1
        if slash:
            if not step_text.isdigit() or not step_text.isascii():
                raise ScheduleError(f"{bounds.name}: {item!r}: the step must be a number")
            step = int(step_text)
            if step == 0:
                raise ScheduleError(f"{bounds.name}: {item!r}: the step must be greater than 0")
            if step > 1:
                wild = False  # `*/2` lists values (robfig clears its star bit)
        if start < bounds.low or end > bounds.high:
            raise ScheduleError(
                f"{bounds.name}: {item!r}: out of range {bounds.low}-{bounds.high}{_sunday(bounds, end)}"
            )
        if start > end:
            raise ScheduleError(f"{bounds.name}: {item!r}: the range starts after it ends")
        values.update(range(start, end + 1, step))
        star = star or wild
    return values, star


def _value(text: str, bounds: _Bounds) -> int:
    named = bounds.names.get(text.lower())
    if named is not None:
        return named
    if text.isdigit() and text.isascii():
        return int(text)
    hint = ""
    if any(c in text.upper() for c in "LW#"):
        hint = " (`L`, `W` and `#` are not Kubernetes' CronJob syntax)"
    elif bounds.names:
        hint = f" or a name such as {next(iter(bounds.names)).upper()}"
    raise ScheduleError(f"{bounds.name}: {text!r} is not a number{hint}")


def _sunday(bounds: _Bounds, end: int) -> str:
    return " (Sunday is 0 or SUN)" if bounds is _DOW and end == 7 else ""
