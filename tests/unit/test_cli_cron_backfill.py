"""`zen-flow cron backfill` against an in-memory apiserver (cron_cli_rig): the run times of a past range,
the controller's own (daylight saving nights included), and each run under the name the controller gives
that run time's run, so nothing is ever run twice. The cap, the dry run, failures, usage, how many runs
are active at once and what the user is told: test_cli_cron_backfill_usage.py."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

import pytest
from backfill_rig import at, backfill, lines, name_of, utc
from cron_cli_rig import (
    NOW,
    FakeCluster,
    a_run,
    add,
    cron_manifest,
    planned,
    posted,
)
from cron_cli_rig import cluster_fixture as cluster_fixture  # the `cluster` fixture

from zen_flow.api.cronjobflow import CronJobFlow
from zen_flow.api.meta import format_time
from zen_flow.planner.cron import CreateRun, build_run

# Berlin, 2026: the spring change on 29 March skips 02:00-03:00 (02:30 runs at 03:00 CEST, 01:00Z).
SPRING = [utc(2026, 3, 27, 1, 30), utc(2026, 3, 28, 1, 30), utc(2026, 3, 29, 1, 0), utc(2026, 3, 30, 0, 30)]
SPRING_SHOWN = [
    "2026-03-27 02:30 CET", "2026-03-28 02:30 CET", "2026-03-29 03:00 CEST", "2026-03-30 02:30 CEST",
]  # fmt: skip


def test_backfill_creates_the_controllers_run_of_each_run_time_of_the_range_oldest_first(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    at(monkeypatch, utc(2026, 4, 1, 12))
    report = add(cluster, cron_manifest(concurrencyPolicy="Allow"))
    code, out, err = backfill(capsys, "--from", "2026-03-27", "--to", "2026-03-30", "--parallel", "4")
    assert code == 0, err
    assert lines(out) == [
        f"jobflow default/{name_of(t)} created (run time {shown})"
        for t, shown in zip(SPRING, SPRING_SHOWN, strict=True)
    ]
    assert err.splitlines()[-1] == (
        "zen-flow cron backfill: cronjobflow default/nightly-report: 4 run times, 4 created, "
        "0 already existed, 0 not created"
    )
    cron = CronJobFlow.model_validate(report)
    bodies = posted(cluster)
    for body, moment in zip(bodies, SPRING, strict=True):
        # The controller's run of that run time in all but one mark: made by hand, by a backfill.
        made: dict[str, Any] = build_run(cron, moment)
        made["metadata"]["annotations"]["workflow.kube-zen.io/instantiate"] = "backfill"
        assert body == made
        assert body["metadata"]["annotations"]["workflow.kube-zen.io/scheduled-time"] == format_time(moment)
    # The controller's own walk over those nights: from each run time its requeue reaches the next, and
    # at the next it creates the very run the backfill made.
    for before, moment in itertools.pairwise(SPRING):
        report["status"] = {"lastScheduleTime": format_time(before)}
        assert planned(report, [], before).requeue_after == (moment - before).total_seconds()
        [create] = [a for a in planned(report, [], moment).actions if isinstance(a, CreateRun)]
        assert create.name == name_of(moment)


@pytest.mark.parametrize(
    ("schedule", "shown"),
    [
        # A schedule at a fixed time runs the repeated 02:30 once, the first time.
        ("30 2 * * *", ["2026-10-25 02:30 CEST"]),
        # One with `*` in its hour field follows the clock: 02:30 twice, an hour apart, two runs.
        ("30 * * * *", ["2026-10-25 01:30 CEST", "2026-10-25 02:30 CEST", "2026-10-25 02:30 CET",
                        "2026-10-25 03:30 CET"]),
    ],
)  # fmt: skip
def test_backfill_over_the_autumn_change_runs_the_repeated_hour_as_the_controller_does(
    cluster: FakeCluster,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    schedule: str,
    shown: list[str],
) -> None:
    at(monkeypatch, utc(2026, 11, 1))
    add(cluster, cron_manifest(concurrencyPolicy="Allow", schedule=schedule))
    bounds = ["--from", "2026-10-25T01:00:00+02:00", "--to", "2026-10-25T03:59:00+01:00"]
    code, out, err = backfill(capsys, *bounds, "--parallel", "4")
    assert code == 0, err
    assert [line.split("(run time ")[1].rstrip(")") for line in lines(out)] == shown
    names = [b["metadata"]["name"] for b in posted(cluster)]
    assert len(set(names)) == len(shown)  # two 02:30s, two Unix minutes: two runs


@pytest.mark.parametrize(
    ("bounds", "expected"),
    [
        # Both ends are in the range.
        (["--from", "2026-03-27T01:30:00Z", "--to", "2026-03-28T01:30:00Z"],
         [utc(2026, 3, 27, 1, 30), utc(2026, 3, 28, 1, 30)]),
        (["--from", "2026-03-27T02:30:00+01:00", "--to", "2026-03-28T02:29:59+01:00"],
         [utc(2026, 3, 27, 1, 30)]),
        (["--from", "2026-03-27T01:30:01Z"], [utc(2026, 3, 28, 1, 30)]),  # --to: now
        # Dates are whole days in the CronJobFlow's time zone: --to's night is in.
        (["--from", "2026-03-26", "--to", "2026-03-27"], [utc(2026, 3, 26, 1, 30), utc(2026, 3, 27, 1, 30)]),
        (["--from", "2026-03-28"], [utc(2026, 3, 28, 1, 30)]),
    ],
)  # fmt: skip
def test_the_range_holds_both_its_ends(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], bounds: list[str], expected: list[datetime]
) -> None:
    add(cluster, cron_manifest(concurrencyPolicy="Allow"))
    code, _, err = backfill(capsys, *bounds, "--parallel", "2")
    assert code == 0, err
    assert [b["metadata"]["name"] for b in posted(cluster)] == [name_of(t) for t in expected]


def test_run_times_after_now_are_left_to_the_controller(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    add(cluster, cron_manifest())
    code, _, err = backfill(capsys, "--from", "2026-03-28", "--to", "2026-03-31")
    assert code == 0
    assert [b["metadata"]["name"] for b in posted(cluster)] == [name_of(utc(2026, 3, 28, 1, 30))]
    assert (
        "zen-flow cron backfill: note: the run times after now (2026-03-28T12:00:00Z) are the controller's "
        "to run: left out\n"
    ) in err


def test_a_range_without_a_run_time_creates_nothing_and_says_so(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    add(cluster, cron_manifest())
    code, out, err = backfill(capsys, "--from", "2026-03-27T02:00:00Z", "--to", "2026-03-28T01:00:00Z")
    assert (code, out, cluster.writes) == (0, "", [])
    assert err == (
        "zen-flow cron backfill: no run time of '30 2 * * *' (Europe/Berlin) from 2026-03-27T02:00:00Z to "
        "2026-03-28T01:00:00Z: nothing to do\n"
    )


# --- nothing twice ----------------------------------------------------------------------------------------


def test_a_second_backfill_of_the_same_range_creates_nothing(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    add(cluster, cron_manifest(concurrencyPolicy="Allow"))
    assert backfill(capsys, "--from", "2026-03-26", "--parallel", "3")[0] == 0
    first = posted(cluster)
    assert len(first) == 3
    code, out, err = backfill(capsys, "--from", "2026-03-26", "--parallel", "3")
    assert code == 0, err
    assert posted(cluster) == first  # no create sent
    assert all(line.split()[2:5] == ["already", "exists,", "skipped"] for line in lines(out))
    assert len(lines(out)) == 3
    assert err.splitlines()[-1].endswith("3 run times, 0 created, 3 already existed, 0 not created")


def test_a_run_time_the_controller_ran_is_skipped(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    report = add(cluster, cron_manifest(concurrencyPolicy="Allow"))
    add(cluster, a_run(report, utc(2026, 3, 27, 1, 30), {"phase": "Succeeded"}))
    code, out, _ = backfill(capsys, "--from", "2026-03-26", "--parallel", "3")
    assert code == 0
    assert lines(out) == [
        f"jobflow default/{name_of(utc(2026, 3, 26, 1, 30))} created (run time 2026-03-26 02:30 CET)",
        f"jobflow default/{name_of(utc(2026, 3, 27, 1, 30))} already exists, skipped "
        "(run time 2026-03-27 02:30 CET)",
        f"jobflow default/{name_of(utc(2026, 3, 28, 1, 30))} created (run time 2026-03-28 02:30 CET)",
    ]


def test_the_controller_does_not_run_again_a_run_time_a_backfill_ran(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    # Suspended since the 26th's run: resumed at noon, the controller would start the 28th's 02:30,
    # the latest run time missed. Backfilled first, it is not started again.
    report = add(cluster, cron_manifest(concurrencyPolicy="Allow", suspend=True))
    report["status"] = {"lastScheduleTime": "2026-03-26T01:30:00Z"}
    assert backfill(capsys, "--from", "2026-03-27", "--parallel", "2")[0] == 0
    report["spec"]["suspend"] = False
    runs = [{**b, "metadata": {**b["metadata"], "uid": f"uid-{i}"}} for i, b in enumerate(posted(cluster))]
    creates = [a for a in planned(report, runs, NOW).actions if isinstance(a, CreateRun)]
    assert creates == []
    # Without the backfill, it would have.
    assert [a.name for a in planned(report, [], NOW).actions if isinstance(a, CreateRun)] == [
        name_of(utc(2026, 3, 28, 1, 30))
    ]


def test_a_flow_that_has_the_name_but_is_no_run_is_not_taken_for_one(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    add(cluster, cron_manifest(concurrencyPolicy="Allow"))
    taken = name_of(utc(2026, 3, 28, 1, 30))
    add(cluster, {"apiVersion": "workflow.kube-zen.io/v1alpha1", "kind": "JobFlow",
                  "metadata": {"name": taken, "namespace": "default"}, "spec": {"steps": []}})  # fmt: skip
    code, out, err = backfill(capsys, "--from", "2026-03-27", "--parallel", "2")
    assert code == 1
    assert len(lines(out)) == 1  # the 27th's
    assert (
        f"zen-flow cron backfill: jobflow default/{taken} (run time 2026-03-28 02:30 CET): not created: a "
        "flow of that name exists, and is no run of cronjobflow nightly-report\n"
    ) in err
