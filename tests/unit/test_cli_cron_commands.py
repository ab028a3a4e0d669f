"""`zen-flow cron list|get|suspend|resume` against an in-memory apiserver at a fixed instant (cron_cli_rig):
what the user reads, the exit status, what was written; and the completion and help of `zen-flow cron`."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from textwrap import dedent
from typing import Any

import pytest
from cron_cli_rig import (
    NS,
    FakeCluster,
    a_run,
    add,
    cron_manifest,
    zen_flow,
)
from cron_cli_rig import cluster_fixture as cluster_fixture  # the `cluster` fixture

from zen_flow.api.cronjobflow import CronJobFlow
from zen_flow.cli import completion, main
from zen_flow.kube.transport import MERGE_PATCH
from zen_flow.planner.cron_runs import manual_run

# --- list -------------------------------------------------------------------------------------------------


def test_list_shows_each_schedule_with_its_next_run_in_its_own_time_zone(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    report = cron_manifest()
    report["status"] = {
        "lastScheduleTime": "2026-03-28T01:30:00Z",
        "lastSuccessfulTime": "2026-03-28T01:34:00Z",
        "active": [{"name": "nightly-report-29578170"}],
    }
    add(cluster, report)
    add(cluster, cron_manifest("hourly", schedule="@hourly", timeZone=None, suspend=False))
    add(cluster, cron_manifest("paused", schedule="*/5 * * * *", suspend=True))
    code, out, err = zen_flow(capsys, "cron", "list")
    assert (code, err) == (0, "")
    # 02:30 does not exist in Berlin that night (clocks go 02:00 -> 03:00): the run is at 03:00 CEST.
    assert out == dedent("""\
        NAME             SCHEDULE      TIMEZONE        SUSPEND   ACTIVE   LAST SCHEDULE   LAST SUCCESS   NEXT RUN                         AGE
        hourly           @hourly       UTC             False     0        -               -              2026-03-28 13:00 UTC (in 1h)     3d
        nightly-report   30 2 * * *    Europe/Berlin   False     1        10h30m          10h26m         2026-03-29 03:00 CEST (in 13h)   3d
        paused           */5 * * * *   Europe/Berlin   True      0        -               -              -                                3d
        """)  # noqa: E501 - the table is as wide as it is


def test_list_all_namespaces_and_names_for_scripts(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    add(cluster, cron_manifest("a", "team-a"))
    add(cluster, cron_manifest("b", "team-b"))
    code, out, _ = zen_flow(capsys, "cron", "list", "-A")
    assert code == 0
    assert [line.split()[:2] for line in out.splitlines()] == [
        ["NAMESPACE", "NAME"],
        ["team-a", "a"],
        ["team-b", "b"],
    ]
    code, out, _ = zen_flow(capsys, "cron", "list", "-n", "team-a", "-o", "name")
    assert (code, out) == (0, "cronjobflow.workflow.kube-zen.io/a\n")


def test_list_of_an_empty_namespace_says_so(cluster: FakeCluster, capsys: pytest.CaptureFixture[str]) -> None:
    assert zen_flow(capsys, "cron", "list", "-n", "empty") == (
        0,
        "",
        "No CronJobFlows found in namespace empty.\n",
    )


# --- get --------------------------------------------------------------------------------------------------


def test_get_shows_the_status_the_next_three_run_times_and_the_runs_newest_first(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    report = cron_manifest(concurrencyPolicy="Forbid", startingDeadlineSeconds=3600, failedJobsHistoryLimit=2)
    skipped = (
        "run time 2026-03-27T01:30:00Z skipped: concurrencyPolicy Forbid and nightly-report-29574810 "
        "not finished"
    )
    report["status"] = {
        "lastScheduleTime": "2026-03-26T01:30:00Z",
        "lastSuccessfulTime": "2026-03-26T01:40:00Z",
        "lastSkippedTime": "2026-03-27T01:30:00Z",
        "active": [{"name": "nightly-report-manual-b2c4d"}],
        "conditions": [
            {"type": "Valid", "status": "True", "reason": "Valid", "message": ""},
            {"type": "Scheduled", "status": "False", "reason": "RunSkipped", "message": skipped},
        ],
    }
    add(cluster, report)
    day = datetime(2026, 3, 26, 1, 30, tzinfo=UTC)
    failed = {"phase": "Failed", "startTime": "2026-03-25T01:30:01Z",
              "completionTime": "2026-03-25T01:31:01Z", "message": "step collect failed"}  # fmt: skip
    succeeded = {"phase": "Succeeded", "startTime": "2026-03-26T01:30:01Z",
                 "completionTime": "2026-03-26T01:40:00Z", "message": "all 1 steps succeeded"}  # fmt: skip
    add(cluster, a_run(report, day - timedelta(days=1), failed))
    add(cluster, a_run(report, day, succeeded))
    manual = manual_run(CronJobFlow.model_validate(report), "b2c4d")
    manual["metadata"]["creationTimestamp"] = "2026-03-28T11:40:00Z"  # type: ignore[index]
    add(cluster, {**manual, "status": {"phase": "Running", "startTime": "2026-03-28T11:40:01Z"}})
    # Labelled alike but not controlled by it: not one of its runs (the controller would not count it).
    stray = a_run(report, day + timedelta(days=1), {"phase": "Succeeded"})
    stray["metadata"]["ownerReferences"] = []
    add(cluster, stray)

    code, out, err = zen_flow(capsys, "cron", "get", "nightly-report")
    assert (code, err) == (0, "")
    assert out == dedent(f"""\
        Name:           default/nightly-report
        Schedule:       30 2 * * * (Europe/Berlin)
        Concurrency:    Forbid
        Deadline:       3600s (startingDeadlineSeconds)
        Suspend:        False
        History:        keeps 3 succeeded, 2 failed
        Active:         nightly-report-manual-b2c4d
        Last schedule:  2026-03-26T01:30:00Z (2d10h ago)
        Last success:   2026-03-26T01:40:00Z (2d10h ago)
        Last skipped:   2026-03-27T01:30:00Z (1d10h ago): {skipped}
        Next runs:      2026-03-29 03:00 CEST (in 13h)
                        2026-03-30 02:30 CEST (in 1d12h)
                        2026-03-31 02:30 CEST (in 2d12h)
        Condition:      Valid=True Valid
        Condition:      Scheduled=False RunSkipped: {skipped}

        RUN                           PHASE       RUN TIME                      STARTED     DURATION   MESSAGE
        nightly-report-manual-b2c4d   Running     manual 2026-03-28 12:40 CET   19m ago     19m
        nightly-report-29574810       Succeeded   2026-03-26 02:30 CET          2d10h ago   9m59s      all 1 steps succeeded
        nightly-report-29573370       Failed      2026-03-25 02:30 CET          3d10h ago   1m         step collect failed
        """)  # noqa: E501 - the table is as wide as it is


def test_get_of_a_suspended_cronjobflow_without_runs_says_so(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    add(cluster, cron_manifest(suspend=True))
    code, out, _ = zen_flow(capsys, "cron", "get", "nightly-report")
    assert code == 0
    assert "Next runs:      suspended\n" in out
    assert out.endswith("\n\nNo runs.\n")


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (
            {
                "status": {
                    "conditions": [{"type": "Valid", "status": "False", "reason": "Invalid", "message": "x"}]
                }
            },
            "none: the cronjobflow is invalid (condition Valid)",
        ),
        (
            {"metadata": {"deletionTimestamp": "2026-03-28T11:00:00Z"}},
            "none: the cronjobflow is being deleted",
        ),
    ],
)
def test_no_next_run_is_shown_when_the_controller_will_create_none(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], change: dict[str, Any], why: str
) -> None:
    report = cron_manifest()
    for part, fields in change.items():
        report[part].update(fields)
    add(cluster, report)
    listed = zen_flow(capsys, "cron", "list")[1].splitlines()[1].split()
    assert listed[-2:] == ["-", "3d"]  # NEXT RUN, AGE
    assert f"Next runs:      {why}\n" in zen_flow(capsys, "cron", "get", "nightly-report")[1]


def test_get_of_a_missing_cronjobflow_is_exit_1_and_yaml_json_name_print_the_object(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = zen_flow(capsys, "cron", "get", "ghost")
    assert (code, out) == (1, "")
    assert err == 'zen-flow cron get: not found: cronjobflows "ghost" not found\n'
    add(cluster, cron_manifest())
    assert zen_flow(capsys, "cron", "get", "nightly-report", "-o", "name")[1] == (
        "cronjobflow.workflow.kube-zen.io/nightly-report\n"
    )
    assert '"schedule": "30 2 * * *"' in zen_flow(capsys, "cron", "get", "nightly-report", "-o", "json")[1]
    assert "schedule: 30 2 * * *\n" in zen_flow(capsys, "cron", "get", "nightly-report", "-o", "yaml")[1]


# --- suspend / resume -------------------------------------------------------------------------------------


def test_suspend_and_resume_merge_patch_spec_suspend(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    add(cluster, cron_manifest())
    assert zen_flow(capsys, "cron", "suspend", "nightly-report") == (
        0,
        "cronjobflow default/nightly-report suspended\n",
        "",
    )
    assert cluster.crons[(NS, "nightly-report")]["spec"]["suspend"] is True
    assert zen_flow(capsys, "cron", "resume", "nightly-report") == (
        0,
        "cronjobflow default/nightly-report resumed\n",
        "",
    )
    assert [(m, p, b, t) for m, p, b, t in cluster.writes] == [
        ("PATCH", "/apis/workflow.kube-zen.io/v1alpha1/namespaces/default/cronjobflows/nightly-report",
         {"spec": {"suspend": flag}}, MERGE_PATCH)
        for flag in (True, False)
    ]  # fmt: skip


def test_suspend_of_a_missing_cronjobflow_writes_nothing(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = zen_flow(capsys, "cron", "suspend", "ghost")
    assert code == 1
    assert "zen-flow cron suspend: not found" in err
    assert cluster.writes == []


# --- completion and help ----------------------------------------------------------------------------------


def test_tab_completes_cronjobflow_names_of_the_namespace_typed(cluster: FakeCluster) -> None:
    for name, namespace in (
        ("nightly-report", NS),
        ("nightly-eu", NS),
        ("weekly", NS),
        ("nightly-x", "other"),
    ):
        add(cluster, cron_manifest(name, namespace))
    typed = argparse.Namespace(kubeconfig=None, context=None, namespace=NS)
    assert completion.cron_names("night", typed) == ["nightly-eu", "nightly-report"]


def test_cron_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["cron", "-h"])
    out = capsys.readouterr().out
    assert done.value.code == 0
    assert "zen-flow cron trigger nightly-report" in out
    assert "trigger (run-now)" in out
