"""`zen-flow cron backfill` against an in-memory apiserver (cron_cli_rig): the run times of a past range,
the controller's own (daylight saving nights included), each run under the name the controller gives
that run time's run, so nothing is ever run twice; the cap, the dry run, a create that fails, the
usage errors, how many runs are active at once, and what the controller then makes of the runs."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest
from cron_cli_rig import (
    NOW,
    FakeCluster,
    a_run,
    add,
    cron_manifest,
    planned,
    posted,
    zen_flow,
)
from cron_cli_rig import cluster_fixture as cluster_fixture  # the `cluster` fixture

from zen_flow.api.cronjobflow import CronJobFlow
from zen_flow.api.meta import format_time
from zen_flow.cli import build_parser, completion, cron_backfill, main
from zen_flow.kube.errors import from_status
from zen_flow.planner.cron import CreateRun, build_run, run_name
from zen_flow.planner.cron_runs import backfill_run


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def name_of(moment: datetime, cron: str = "nightly-report") -> str:
    return run_name(cron, moment)


def at(monkeypatch: pytest.MonkeyPatch, clock: datetime) -> None:
    """This machine's clock (what `now` means for the range) is `clock`."""
    monkeypatch.setattr(cron_backfill, "now", lambda: clock)


def backfill(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    return zen_flow(capsys, "cron", "backfill", "nightly-report", *argv)


def lines(out: str) -> list[str]:
    return out.splitlines()


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


# --- the cap, the dry run, failures, usage ----------------------------------------------------------------


def test_a_range_of_more_run_times_than_max_runs_is_refused_whole(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    add(cluster, cron_manifest())
    code, out, err = backfill(capsys, "--from", "2026-03-24", "--max-runs", "4")
    assert (code, out, cluster.writes) == (2, "", [])
    assert err == (
        "zen-flow cron backfill: the range holds 5 run times of '30 2 * * *', more than --max-runs 4: "
        "nothing was created (narrow the range, or raise --max-runs)\n"
    )
    assert backfill(capsys, "--from", "2026-03-24", "--max-runs", "5", "--dry-run")[0] == 0


def test_a_range_beyond_counting_says_how_far_it_was_counted(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cron_backfill, "COUNT_LIMIT", 50)
    add(cluster, cron_manifest(schedule="* * * * *"))
    code, _, err = backfill(capsys, "--from", "2020-01-01", "--max-runs", "10")
    assert code == 2
    assert "the range holds more than 50 run times of '* * * * *', more than --max-runs 10" in err
    # A cap above the limit is counted up to: a range within it is never cut short.
    code, out, _ = backfill(capsys, "--from", "2026-03-28T11:00:00Z", "--max-runs", "70", "--dry-run")
    assert (code, len(lines(out))) == (0, 61)


def test_a_dry_run_prints_the_run_times_and_names_and_sends_nothing(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    report = add(cluster, cron_manifest())
    add(cluster, a_run(report, utc(2026, 3, 27, 1, 30), {"phase": "Succeeded"}))
    code, out, err = backfill(capsys, "--from", "2026-03-26", "--dry-run")
    assert (code, cluster.writes) == (0, [])
    assert lines(out) == [
        f"jobflow default/{name_of(utc(2026, 3, 26, 1, 30))} would be created "
        "(run time 2026-03-26 02:30 CET)",
        f"jobflow default/{name_of(utc(2026, 3, 27, 1, 30))} already exists, would be skipped "
        "(run time 2026-03-27 02:30 CET)",
        f"jobflow default/{name_of(utc(2026, 3, 28, 1, 30))} would be created "
        "(run time 2026-03-28 02:30 CET)",
    ]
    assert err.splitlines()[-1] == (
        "zen-flow cron backfill: dry run: 3 run times, 2 would be created, 1 exist already"
    )


def test_a_create_that_fails_is_said_and_the_others_are_still_made(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    add(cluster, cron_manifest(concurrencyPolicy="Allow"))
    refused = name_of(utc(2026, 3, 27, 1, 30))
    cluster.refused[refused] = from_status(
        403, {"reason": "Forbidden", "message": "exceeded quota: jobflows, requested: count/jobflows=1"}
    )
    code, out, err = backfill(capsys, "--from", "2026-03-26", "--parallel", "3")
    assert code == 1
    assert [line.split()[1] for line in lines(out)] == [
        f"default/{name_of(utc(2026, 3, 26, 1, 30))}",
        f"default/{name_of(utc(2026, 3, 28, 1, 30))}",
    ]
    assert (
        f"zen-flow cron backfill: jobflow default/{refused} (run time 2026-03-27 02:30 CET) not created: "
        "the apiserver refused (403 Forbidden): exceeded quota: jobflows, requested: count/jobflows=1\n"
    ) in err
    assert err.splitlines()[-2:] == [
        "zen-flow cron backfill: cronjobflow default/nightly-report: 3 run times, 2 created, 0 already "
        "existed, 1 not created",
        "zen-flow cron backfill: to make the rest: zen-flow cron backfill nightly-report -n default --from "
        "2026-03-27T01:30:00Z --to 2026-03-27T01:30:00Z",
    ]
    # The command said, run once the quota allows, makes the night that failed and no other.
    del cluster.refused[refused]
    assert backfill(capsys, "--from", "2026-03-27T01:30:00Z", "--to", "2026-03-27T01:30:00Z")[0] == 0
    made = [b["metadata"]["name"] for b in posted(cluster)]  # the refused create was sent too
    assert (len(made), made[-1], made.count(refused)) == (4, refused, 2)


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--from", "yesterday"], "--from 'yesterday' is neither an RFC 3339 time"),
        (["--from", "2026-03-27", "--to", "2026-02-30"], "--to '2026-02-30' is neither an RFC 3339 time"),
        (
            ["--from", "2026-03-28", "--to", "2026-03-27"],
            "--from 2026-03-28 (2026-03-27T23:00:00Z) is after --to 2026-03-27 (2026-03-27T22:59:59Z)",
        ),
        (["--from", "2026-03-29T00:00:00Z"],
         "--from 2026-03-29T00:00:00Z (2026-03-29T00:00:00Z) is after now (2026-03-28T12:00:00Z)"),
        (["--from", "1969-12-31T00:00:00Z", "--to", "1970-01-02T00:00:00Z"],
         "--from 1969-12-31T00:00:00Z: a run is named by the Unix minute"),
    ],
)  # fmt: skip
def test_bad_ranges_are_refused_naming_the_option_before_anything_is_sent(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], argv: list[str], said: str
) -> None:
    add(cluster, cron_manifest())
    code, out, err = backfill(capsys, *argv)
    assert (code, out, cluster.writes) == (2, "", [])
    assert err.startswith(f"zen-flow cron backfill: {said}")


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        ([], "the following arguments are required: --from"),
        (["--from", "2026-03-27", "--parallel", "0"], "argument --parallel: 0 is less than 1"),
        (["--from", "2026-03-27", "--max-runs", "many"], "argument --max-runs: 'many' is not a whole number"),
    ],
)
def test_bad_flags_are_refused_by_name(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], argv: list[str], said: str
) -> None:
    add(cluster, cron_manifest())
    with pytest.raises(SystemExit) as done:
        main(["cron", "backfill", "nightly-report", *argv])
    assert done.value.code == 2
    assert said in capsys.readouterr().err
    assert cluster.writes == []


def test_a_missing_invalid_or_replace_cronjobflow_is_refused_before_anything_is_sent(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = zen_flow(capsys, "cron", "backfill", "ghost", "--from", "2026-03-27")
    assert code == 1  # as `trigger`, `get`, `suspend`: the apiserver's 404
    assert err.startswith("zen-flow cron backfill: not found")
    add(cluster, cron_manifest("broken", schedule="every night"))
    code, _, err = zen_flow(capsys, "cron", "backfill", "broken", "--from", "2026-03-27")
    assert code == 2
    assert err.startswith("zen-flow cron backfill: cronjobflow broken is invalid, no run was created:\n")
    for policy in ("Replace", "Forbid"):
        add(cluster, cron_manifest(concurrencyPolicy=policy))
        code, _, err = backfill(capsys, "--from", "2026-03-26", "--parallel", "2")
        assert code == 2
        assert err == (
            f"zen-flow cron backfill: --parallel 2: concurrencyPolicy {policy} runs one run of cronjobflow "
            "nightly-report at a time: backfill it with --parallel 1\n"
        )
    assert cluster.writes == []


# --- how many at once -------------------------------------------------------------------------------------


def _finish_one_every(cluster: FakeCluster, lists: int) -> list[str]:
    """Every `lists`-th LIST of the runs after the first two (the backfill's look at the runs there are,
    and its look before the first create), the oldest active run has succeeded; what happened, in
    order."""
    seen: list[str] = []
    count = -1

    def on_list() -> None:
        nonlocal count
        count += 1
        if count <= 1 or (count - 1) % lists:
            return
        going = sorted(k for k, f in cluster.flows.items() if (f.get("status") or {}).get("phase") is None
                       or f["status"]["phase"] == "Running")  # fmt: skip
        if going:
            cluster.flows[going[0]]["status"] = {"phase": "Succeeded"}
            seen.append(f"finished {going[0][1]}")

    cluster.on_list = on_list
    request = cluster.request

    async def recorded(method: str, path: str, body: Any = None, *args: Any, **kwargs: Any) -> Any:
        if method == "POST":
            seen.append(f"created {body['metadata']['name']}")
        return await request(method, path, body, *args, **kwargs)

    cluster.request = recorded  # type: ignore[method-assign]
    return seen


@pytest.mark.parametrize("parallel", [1, 2])
def test_at_most_parallel_runs_of_the_range_are_active_at_once(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, parallel: int
) -> None:
    monkeypatch.setattr(cron_backfill, "POLL_SECONDS", 0)
    add(cluster, cron_manifest(concurrencyPolicy="Allow"))
    seen = _finish_one_every(cluster, 2)
    code, _, err = backfill(capsys, "--from", "2026-03-26", "--parallel", str(parallel))
    assert code == 0, err
    a, b, c = (name_of(utc(2026, 3, day, 1, 30)) for day in (26, 27, 28))
    if parallel == 1:
        assert seen == [f"created {a}", f"finished {a}", f"created {b}", f"finished {b}", f"created {c}"]
        assert f"zen-flow cron backfill: waiting for {a} to finish (--parallel 1)\n" in err
    else:
        assert seen == [f"created {a}", f"created {b}", f"finished {a}", f"created {c}"]
    # The command returns once the last run is created, not when it ends.
    assert cluster.flows[("default", c)]["status"] == {}


def test_an_active_run_of_the_range_counts_so_an_interrupted_backfill_goes_on_as_it_was(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cron_backfill, "POLL_SECONDS", 0)
    report = add(cluster, cron_manifest())
    add(cluster, a_run(report, utc(2026, 3, 27, 1, 30), {"phase": "Running"}))
    seen = _finish_one_every(cluster, 1)
    assert backfill(capsys, "--from", "2026-03-27")[0] == 0
    running, last = name_of(utc(2026, 3, 27, 1, 30)), name_of(utc(2026, 3, 28, 1, 30))
    assert seen == [f"finished {running}", f"created {last}"]


def test_a_run_deleted_as_soon_as_it_succeeded_has_finished(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The history limits delete an old run as soon as it succeeds: gone is finished.
    monkeypatch.setattr(cron_backfill, "POLL_SECONDS", 0)
    add(cluster, cron_manifest())
    first = ("default", name_of(utc(2026, 3, 27, 1, 30)))

    def deleted() -> None:
        cluster.flows.pop(first, None)

    cluster.on_list = deleted
    assert backfill(capsys, "--from", "2026-03-27")[0] == 0
    assert [b["metadata"]["name"] for b in posted(cluster)] == [first[1], name_of(utc(2026, 3, 28, 1, 30))]


# --- what the user is told --------------------------------------------------------------------------------


def test_notes_say_what_the_controller_does_with_the_backfills_runs(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    report = add(cluster, cron_manifest(suspend=True, successfulJobsHistoryLimit=1))
    add(cluster, a_run(report, utc(2026, 3, 28, 1, 30), {"phase": "Succeeded"}))
    code, _, err = backfill(capsys, "--from", "2026-03-26", "--to", "2026-03-27", "--dry-run")
    assert code == 0
    assert err.splitlines()[:3] == [
        "zen-flow cron backfill: note: cronjobflow nightly-report is suspended: the backfill's runs start "
        "all the same",
        "zen-flow cron backfill: note: concurrencyPolicy Forbid: a run time that comes while a backfill run "
        "is active is skipped",
        "zen-flow cron backfill: warning: successfulJobsHistoryLimit 1 keeps the 1 newest such runs, and 1 "
        "newer than the backfill's exist: the controller deletes a backfill run as soon as it succeeds: "
        "running this backfill again would run those nights again",
    ]


def test_under_replace_a_newer_active_run_is_named(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    report = add(cluster, cron_manifest(concurrencyPolicy="Replace"))
    add(cluster, a_run(report, utc(2026, 3, 28, 1, 30), {"phase": "Running"}))
    code, _, err = backfill(capsys, "--from", "2026-03-26", "--to", "2026-03-27", "--dry-run")
    assert code == 0
    assert (
        "zen-flow cron backfill: note: concurrencyPolicy Replace keeps the newest active run: each backfill "
        f"run waits until no run is active ({name_of(utc(2026, 3, 28, 1, 30))} is active now: waited for), "
        "and a run time that comes while it runs stops it\n"
    ) in err


def test_cron_get_marks_the_runs_a_backfill_made(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    report = add(cluster, cron_manifest())
    made: dict[str, Any] = backfill_run(CronJobFlow.model_validate(report), utc(2026, 3, 26, 1, 30))
    made["metadata"]["uid"] = "uid-backfilled"
    add(cluster, {**made, "status": {"phase": "Succeeded"}})
    add(cluster, a_run(report, utc(2026, 3, 27, 1, 30), {"phase": "Succeeded"}))
    code, out, _ = zen_flow(capsys, "cron", "get", "nightly-report")
    assert code == 0
    rows = {line.split()[0]: line.split()[2:5] for line in out.split("\n\n")[1].splitlines()[1:]}
    assert rows[name_of(utc(2026, 3, 26, 1, 30))] == ["backfill", "2026-03-26", "02:30"]
    assert rows[name_of(utc(2026, 3, 27, 1, 30))] == ["2026-03-27", "02:30", "CET"]


def test_backfill_completes_cronjobflow_names_and_its_help_has_an_example(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def verbs(parser: Any) -> Any:
        return next(a for a in parser._subparsers._group_actions if a.choices).choices

    actions = {a.dest: a for a in verbs(verbs(build_parser())["cron"])["backfill"]._actions}
    assert actions["name"].completer is completion.cron_names  # type: ignore[attr-defined]
    with pytest.raises(SystemExit):
        main(["cron", "-h"])
    example = "zen-flow cron backfill nightly-report --from 2026-12-01 --to 2026-12-03"
    assert example in capsys.readouterr().out
