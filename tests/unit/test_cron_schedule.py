"""Cron schedules (core/cron.py): the run times a user expects, in their time zone, across DST."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

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


def test_latest_due_is_a_time_the_forward_walk_gives_where_a_backward_search_disagrees() -> None:
    # cronsim's backward search misses the autumn night's 02:30 (it answers the day before's) and, in
    # Lord Howe's half-hour change, answers a time the forward walk never runs: a run created at one and
    # its requeue computed from the other would disagree. These are found by a scan of DST days.
    daily = parse_schedule("30 2 * * *", "Europe/Berlin")
    assert daily.latest_due(utc(2026, 10, 24, 12), utc(2026, 10, 25, 1, 1, 13)) == utc(2026, 10, 25, 0, 30)
    half_past = parse_schedule("30 * * * *", "Australia/Lord_Howe")
    assert half_past.latest_due(utc(2026, 4, 3, 10), utc(2026, 4, 4, 15, 1, 13)) == utc(2026, 4, 4, 14, 30)
    assert half_past.next_after(utc(2026, 4, 4, 14, 30)) != utc(2026, 4, 4, 15)


@pytest.mark.parametrize(
    ("expression", "zone", "message"),
    [
        ("", None, "must not be empty"),
        ("* * * *", None, "must have 5 fields"),
        ("0 * * * * *", None, "not 6"),  # seconds: Kubernetes refuses them too
        ("61 * * * *", None, "Bad minute"),
        ("0 0 31 2 *", None, "Bad day-of-month"),
        ("@every 5m", None, "unknown descriptor"),
        ("TZ=Europe/Berlin 0 9 * * *", None, "spec.timeZone"),
        ("0 9 * * *", "Mars/Olympus", "unknown time zone"),
        ("0 9 * * *", "../../etc/passwd", "IANA"),
    ],
)
def test_bad_schedules_and_zones_say_why(expression: str, zone: str | None, message: str) -> None:
    with pytest.raises(ScheduleError, match=message.replace(".", r"\.")):
        parse_schedule(expression, zone)


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
