"""`zen-flow cron backfill` against an in-memory apiserver (cron_cli_rig): the cap, the dry run, a create
that fails, the usage errors, how many runs are active at once, and what the user is told of what the
controller then makes of the runs. The range and its run times: test_cli_cron_backfill.py."""

from __future__ import annotations

from typing import Any

import pytest
from backfill_rig import backfill, finish_oldest, lines, name_of, utc
from cron_cli_rig import (
    FakeCluster,
    a_run,
    add,
    cron_manifest,
    posted,
    zen_flow,
)
from cron_cli_rig import cluster_fixture as cluster_fixture  # the `cluster` fixture

from zen_flow.api.cronjobflow import CronJobFlow
from zen_flow.cli import build_parser, completion, cron_backfill, main
from zen_flow.kube.errors import from_status
from zen_flow.planner.cron_runs import backfill_run

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


@pytest.mark.parametrize("parallel", [1, 2])
def test_at_most_parallel_runs_of_the_range_are_active_at_once(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, parallel: int
) -> None:
    monkeypatch.setattr(cron_backfill, "POLL_SECONDS", 0)
    add(cluster, cron_manifest(concurrencyPolicy="Allow"))
    seen = finish_oldest(cluster, after=2, every=2)
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
    seen = finish_oldest(cluster, after=2)
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
        "zen-flow cron backfill: warning: successfulJobsHistoryLimit 1 keeps the 1 newest such runs; 1 "
        "newer than the backfill's exist and it makes 2: the controller deletes a backfill run once 1 newer "
        "one succeeded: running this backfill again would run those nights again",
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
