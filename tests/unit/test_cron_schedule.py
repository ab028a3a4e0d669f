"""Cron schedules (core/cron.py): the run times a user expects, in their time zone, across DST."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zen_flow.core import cron as cron_module
from zen_flow.core.cron import Schedule, ScheduleError, parse_schedule, parse_time_zone, scheduled_minute


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_next_run_of_a_five_field_schedule_in_utc() -> None:
    every_15 = parse_schedule("*/15 * * * *")
    assert every_15.next_after(utc(2026, 5, 1, 10, 7)) == utc(2026, 5, 1, 10, 15)
    # Strictly after: a run time is not its own next.
    assert every_15.next_after(utc(2026, 5, 1, 10, 15)) == utc(2026, 5, 1, 10, 30)


@pytest.mark.parametrize(
    ("descriptor", "after", "expected"),
    [
        ("@hourly", utc(2026, 5, 1, 10, 7), utc(2026, 5, 1, 11)),
        ("@daily", utc(2026, 5, 1, 10, 7), utc(2026, 5, 2)),
        ("@midnight", utc(2026, 5, 1, 10, 7), utc(2026, 5, 2)),
        ("@weekly", utc(2026, 5, 1, 10, 7), utc(2026, 5, 3)),  # a Sunday
        ("@monthly", utc(2026, 5, 1, 10, 7), utc(2026, 6, 1)),
        ("@yearly", utc(2026, 5, 1, 10, 7), utc(2027, 1, 1)),
        ("@annually", utc(2026, 5, 1, 10, 7), utc(2027, 1, 1)),
    ],
)
def test_descriptors_mean_what_cronjob_means(descriptor: str, after: datetime, expected: datetime) -> None:
    assert parse_schedule(descriptor).next_after(after) == expected


def test_a_schedule_in_a_time_zone_runs_at_local_wall_clock_time() -> None:
    nine = parse_schedule("0 9 * * *", "America/New_York")
    assert nine.next_after(utc(2026, 1, 15)) == utc(2026, 1, 15, 14)  # EST: UTC-5
    assert nine.next_after(utc(2026, 7, 15)) == utc(2026, 7, 15, 13)  # EDT: UTC-4


def test_spring_forward_a_skipped_wall_clock_time_runs_right_after_the_jump() -> None:
    # Europe/Berlin skips 02:00-03:00 on 2026-03-29: the 02:30 run happens at 03:00 CEST (01:00 UTC),
    # and the day before and after run at 02:30 as usual: one run a day, every day.
    daily = parse_schedule("30 2 * * *", "Europe/Berlin")
    runs = _walk(daily, utc(2026, 3, 27, 12), 3)
    assert runs == [utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)]


def test_fall_back_a_repeated_wall_clock_time_runs_once() -> None:
    # 02:00-03:00 happens twice on 2026-10-25 in Berlin: the daily 02:30 run still happens once.
    daily = parse_schedule("30 2 * * *", "Europe/Berlin")
    runs = _walk(daily, utc(2026, 10, 23, 12), 3)
    assert runs == [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]


def test_latest_due_is_the_last_run_time_in_the_window_never_a_backlog() -> None:
    minutely = parse_schedule("* * * * *")
    # Away for three days: only the latest run time is due.
    assert minutely.latest_due(utc(2026, 5, 1), utc(2026, 5, 4, 8, 30, 41)) == utc(2026, 5, 4, 8, 30)
    # A run time exactly at now is due; the window excludes `since` itself.
    assert minutely.latest_due(utc(2026, 5, 1, 8, 29), utc(2026, 5, 1, 8, 30)) == utc(2026, 5, 1, 8, 30)
    assert minutely.latest_due(utc(2026, 5, 1, 8, 30), utc(2026, 5, 1, 8, 30, 59)) is None


def test_latest_due_of_a_rare_schedule_after_a_long_outage() -> None:
    monthly = parse_schedule("0 0 1 * *")
    assert monthly.latest_due(utc(2026, 1, 15), utc(2026, 5, 20)) == utc(2026, 5, 1)
    assert monthly.latest_due(utc(2026, 5, 2), utc(2026, 5, 20)) is None


def test_latest_due_agrees_with_the_forward_walk_across_dst() -> None:
    daily = parse_schedule("30 2 * * *", "Europe/Berlin")
    # Just after the DST-day run (03:00 CEST = 01:00 UTC): that run is due, not the day before's.
    assert daily.latest_due(utc(2026, 3, 28, 12), utc(2026, 3, 29, 1, 5)) == utc(2026, 3, 29, 1)
    half_hourly = parse_schedule("*/30 * * * *", "Europe/Berlin")
    # In the repeated hour (the second 02:30, UTC+1), real time still has a run every 30 minutes.
    assert half_hourly.latest_due(utc(2026, 10, 25, 1), utc(2026, 10, 25, 1, 40)) == utc(2026, 10, 25, 1, 30)


def test_a_repeated_hour_runs_a_fixed_time_once_and_a_wildcard_hour_twice() -> None:
    # New York repeats 01:00-02:00 on 2026-11-01 (01:30 EDT is 05:30Z, 01:30 EST 06:30Z).
    fixed = parse_schedule("30 1 * * *", "America/New_York")
    assert _walk(fixed, utc(2026, 10, 31, 12), 2) == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]
    hourly = parse_schedule("30 * * * *", "America/New_York")
    assert _walk(hourly, utc(2026, 11, 1, 5), 3) == [
        utc(2026, 11, 1, 5, 30),
        utc(2026, 11, 1, 6, 30),  # 01:30 again: the clock as it is
        utc(2026, 11, 1, 7, 30),
    ]


def test_in_the_second_pass_of_a_repeated_hour_the_next_run_is_tomorrow_never_the_past() -> None:
    # The second 01:10 (EST, 06:10Z): the day's 01:30 ran at 05:30Z. cronsim answered 05:30Z here, a
    # requeue of 0 s, and the controller's event loop spun on it for the rest of the hour.
    nightly = parse_schedule("30 1 * * *", "America/New_York")
    for minute in range(0, 60, 5):
        now = utc(2026, 11, 1, 6, minute)
        assert nightly.next_after(now) == utc(2026, 11, 2, 6, 30)
    # A CronJobFlow created then has nothing due: 01:30 EDT was before it existed.
    assert nightly.latest_due(utc(2026, 11, 1, 6, 10), utc(2026, 11, 1, 6, 12)) is None


def test_lord_howe_half_hour_change_the_latest_due_run_is_one_the_forward_walk_makes() -> None:
    # Australia/Lord_Howe goes back from 02:00 (+11) to 01:30 (+10:30) on 2026-04-05. A backward search
    # found 15:35Z while the forward walk skipped it, so a run missed during an outage was lost.
    two_hourly = parse_schedule("5 */2 * * *", "Australia/Lord_Howe")
    since, now = utc(2026, 4, 4, 10, 56, 53), utc(2026, 4, 4, 16, 45, 25)
    walk = _walk(two_hourly, since, 4)
    assert walk == [
        utc(2026, 4, 4, 11, 5),
        utc(2026, 4, 4, 13, 5),
        utc(2026, 4, 4, 15, 35),
        utc(2026, 4, 4, 17, 35),
    ]
    assert two_hourly.latest_due(since, now) == utc(2026, 4, 4, 15, 35)


_DST_ZONES = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Australia/Sydney",
    "Europe/London",
    "America/Santiago",  # changes at midnight
    "Asia/Beirut",  # goes back from 00:00 to 23:00: the day before repeats its last hour
]
_EXPRESSIONS = [
    "30 2 * * *",
    "30 1 * * *",
    "45 0-3 * * *",
    "*/7 * * * *",
    "15,45 * * * *",
    "0 1-3 * * *",
    "5 */2 * * *",
    "30 1 * * 0",
    "0-59 0-23 * * *",
    "*/30 * * * *",
]
# The changes of 2026 in those zones (UTC days), where the wall clock skips or repeats.
_CHANGES = [
    utc(2026, 3, 8),
    utc(2026, 3, 29),
    utc(2026, 4, 5),
    utc(2026, 10, 4),
    utc(2026, 10, 25),
    utc(2026, 11, 1),
]


@settings(max_examples=600, deadline=None)
@given(
    zone=st.sampled_from(_DST_ZONES),
    expression=st.sampled_from(_EXPRESSIONS),
    change=st.sampled_from(_CHANGES),
    offset=st.integers(-30 * 3600, 30 * 3600),
    window=st.integers(1, 8 * 3600),
)
def test_around_dst_changes_next_is_later_and_latest_due_is_in_the_window_and_both_agree(
    zone: str, expression: str, change: datetime, offset: int, window: int
) -> None:
    schedule = parse_schedule(expression, zone)
    now = change + timedelta(seconds=offset)
    since = now - timedelta(seconds=window)
    upcoming = schedule.next_after(now)
    assert upcoming is not None
    assert upcoming > now
    due = schedule.latest_due(since, now)
    # The forward walk from `since` is what the controller's requeues follow: the latest due run time
    # must be one of its steps, the last one not after now.
    walked, moment = None, schedule.next_after(since)
    while moment is not None and moment <= now:
        walked, moment = moment, schedule.next_after(moment)
    assert due == walked
    if due is not None:
        assert since < due <= now
        assert schedule.next_after(due) == moment


@settings(max_examples=200, deadline=None)
@given(
    zone=st.sampled_from(_DST_ZONES),
    expression=st.sampled_from(_EXPRESSIONS),
    change=st.sampled_from(_CHANGES),
    offset=st.integers(-30 * 3600, 30 * 3600),
    window=st.integers(0, 3 * 3600),
)
def test_the_run_times_of_a_range_are_every_minute_the_controller_finds_due_both_ends_included(
    zone: str, expression: str, change: datetime, offset: int, window: int
) -> None:
    # `zen-flow cron backfill`'s run times, against a brute-force oracle: every minute of [first, last]
    # (run times are whole minutes) that the controller's latest_due finds due at that very minute.
    schedule = parse_schedule(expression, zone)
    first = change + timedelta(seconds=offset, microseconds=offset % 7)  # not always on a second
    last = first + timedelta(seconds=window)
    minute = first.replace(second=0, microsecond=0)
    minute += timedelta(minutes=1) if minute < first else timedelta(0)
    tick = timedelta(microseconds=1)
    due = []
    while minute <= last:
        if schedule.latest_due(minute - tick, minute) == minute:
            due.append(minute)
        minute += timedelta(minutes=1)
    assert list(schedule.between(first, last)) == due
    # A range that is exactly a run time holds it.
    for t in due:
        assert list(schedule.between(t, t)) == [t]


@pytest.mark.parametrize(
    ("expression", "zone", "message"),
    [
        ("", None, "must not be empty"),
        ("* * * *", None, "must have 5 fields"),
        ("0 * * * * *", None, "not 6"),  # seconds: Kubernetes refuses them too
        ("61 * * * *", None, "minute: '61': out of range 0-59"),
        ("0 0 31 2 *", None, "matches no time within 50 years"),
        ("@every 5m", None, "@every is not supported"),
        ("@DAILY", None, "unknown descriptor"),
        ("0 0 L * *", None, "not Kubernetes' CronJob syntax"),
        ("0 0 LW * *", None, "not Kubernetes' CronJob syntax"),
        ("0 0 * * MON#2", None, "not Kubernetes' CronJob syntax"),
        ("0 0 * * 7", None, "Sunday is 0 or SUN"),
        ("*/0 * * * *", None, "greater than 0"),
        ("5-1 * * * *", None, "starts after it ends"),
        ("1,,2 * * * *", None, "is not a number"),
        ("TZ=Europe/Berlin 0 9 * * *", None, "spec.timeZone"),
        ("0 9 * * *", "Mars/Olympus", "unknown time zone"),
        ("0 9 * * *", "../../etc/passwd", "IANA"),
        # Files of the image's zoneinfo directory that are not zones of the tzdata package.
        ("0 9 * * *", "localtime", "unknown time zone"),
        ("0 9 * * *", "posixrules", "unknown time zone"),
        ("0 9 * * *", "right/UTC", "unknown time zone"),
        ("0 9 * * *", "posix/Europe/Berlin", "unknown time zone"),
        ("0 9 * * *", "Factory", "unknown time zone"),
    ],
)
def test_bad_schedules_and_zones_say_why(expression: str, zone: str | None, message: str) -> None:
    with pytest.raises(ScheduleError, match=message.replace(".", r"\.")):
        parse_schedule(expression, zone)


def test_day_of_month_and_day_of_week_combine_as_in_kubernetes() -> None:
    def days(expression: str) -> list[str]:
        return [f"{d:%a %d}" for d in _walk(parse_schedule(expression), utc(2026, 5, 31, 12), 6) if d]

    # Both restricted (a step lists values, as robfig/cron reads `*/2`): either matches.
    assert days("0 0 */2 * 1") == ["Mon 01", "Wed 03", "Fri 05", "Sun 07", "Mon 08", "Tue 09"]
    assert days("0 0 1,15 * MON") == ["Mon 01", "Mon 08", "Mon 15", "Mon 22", "Mon 29", "Wed 01"]
    # One of them `*` or `?` (or `*/1`): both must match.
    assert days("0 0 * * MON") == days("0 0 ? * mon") == days("0 0 */1 * 1")
    assert days("0 0 13 * ?") == ["Sat 13", "Mon 13", "Thu 13", "Sun 13", "Tue 13", "Fri 13"]


def test_steps_ranges_and_names_read_as_kubernetes_reads_them() -> None:
    assert _walk(parse_schedule("50/5 * * * *"), utc(2026, 5, 1, 10, 0), 3) == [
        utc(2026, 5, 1, 10, 50),
        utc(2026, 5, 1, 10, 55),
        utc(2026, 5, 1, 11, 50),
    ]
    assert parse_schedule("0 9-17/4 * jan-mar,Dec SUN").next_after(utc(2026, 5, 1)) == utc(2026, 12, 6, 9)


def test_zones_are_read_from_the_tzdata_package_whatever_the_image_has() -> None:
    berlin = parse_time_zone("Europe/Berlin")
    assert isinstance(berlin, zoneinfo.ZoneInfo)
    assert str(berlin) == "Europe/Berlin"
    assert parse_time_zone("Europe/Berlin") is berlin  # loaded once
    original = zoneinfo.TZPATH
    try:
        zoneinfo.reset_tzpath(to=())  # an image without /usr/share/zoneinfo
        cron_module._load_zone.cache_clear()  # a zone loaded earlier must not hide it
        assert parse_schedule("0 9 * * *", "Asia/Kolkata").next_after(utc(2026, 1, 1)) == utc(
            2026, 1, 1, 3, 30
        )
    finally:
        zoneinfo.reset_tzpath(to=original)


def test_time_zone_defaults_to_utc() -> None:
    assert parse_time_zone(None) is UTC
    assert parse_time_zone("") is UTC
    assert parse_schedule("0 9 * * *", None).next_after(utc(2026, 1, 1)) == utc(2026, 1, 1, 9)


def test_scheduled_minute_names_a_run_time_by_its_unix_minute() -> None:
    assert scheduled_minute(utc(1970, 1, 1, 0, 2)) == 2
    assert scheduled_minute(utc(2026, 5, 1, 8, 30)) == scheduled_minute(utc(2026, 5, 1, 8, 30, 59))


def _walk(schedule: Schedule, start: datetime, count: int) -> list[datetime | None]:
    out: list[datetime | None] = []
    moment: datetime | None = start
    for _ in range(count):
        moment = schedule.next_after(moment) if moment is not None else None
        out.append(moment)
    return out
