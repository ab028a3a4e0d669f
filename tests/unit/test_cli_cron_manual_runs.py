"""The runs made by hand from a CronJobFlow: `trigger`'s run as the controller's planner then sees it beside
the scheduled runs (concurrency policy, history limits), and `resubmit` and `retry` of a run."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest
from cron_cli_rig import (
    EVERY_10,
    NOW,
    NS,
    FakeCluster,
    a_run,
    add,
    cron_manifest,
    every_10,
    manual,
    outcome,
    planned,
    zen_flow,
)
from cron_cli_rig import cluster_fixture as cluster_fixture  # the `cluster` fixture

from zen_flow.api.constants import LABEL_INSTANCE, RUN_TTL_SECONDS
from zen_flow.api.meta import format_time
from zen_flow.cli import cron
from zen_flow.planner.cron import CreateRun, DeleteRun, StopRun, run_name

# --- the manual run, as the controller's planner sees it --------------------------------------------------


def stopping(run: dict[str, Any]) -> dict[str, Any]:
    """`run` once the controller's stop request is on it (still running)."""
    annotations = {**run["metadata"]["annotations"], "workflow.kube-zen.io/stop": "true"}
    return {**run, "metadata": {**run["metadata"], "annotations": annotations}}


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        # A run is active: Forbid skips, as docs/API.md "Manual runs" says.
        ("Forbid", "skipped_forbid"),
        # Replace keeps the newest run, and the manual run is newer than the run time: created, the
        # run would be stopped at once, so it is not created and the manual run goes on.
        ("Replace", "skipped_replace"),
        ("Allow", "created"),
    ],
)
def test_a_run_time_due_before_an_active_manual_run(policy: str, expected: str) -> None:
    # Suspended over 00:00, triggered at 00:03, resumed at 00:05 (within the deadline): 00:00 is due,
    # and it is older than the manual run.
    report = every_10(concurrencyPolicy=policy, startingDeadlineSeconds=600)
    triggered = manual(report, EVERY_10 + timedelta(minutes=3))
    plan = planned(report, [triggered], EVERY_10 + timedelta(minutes=5))
    created = [run_name("nightly-report", EVERY_10)] if expected == "created" else []
    assert outcome(plan) == (expected, created, [])
    assert [r.name for r in plan.status.active][-1] == (created or [triggered["metadata"]["name"]])[-1]
    assert plan.status.last_skipped_time == (None if created else EVERY_10)


def test_under_replace_a_run_and_the_one_it_replaces_are_never_both_stopped() -> None:
    # The manual run was stopped by its user: the run time due is created, and the next reconcile,
    # with the new run running, keeps it (a run already stopping is never the one kept).
    report = every_10(concurrencyPolicy="Replace", startingDeadlineSeconds=600)
    triggered = stopping(manual(report, EVERY_10 + timedelta(minutes=3)))
    now = EVERY_10 + timedelta(minutes=5)
    first = planned(report, [triggered], now)
    assert outcome(first) == ("created", [run_name("nightly-report", EVERY_10)], [])
    [made] = [a for a in first.actions if isinstance(a, CreateRun)]
    running = {**made.body, "status": {"phase": "Running"}}
    running["metadata"] = {**running["metadata"], "uid": "uid-new"}  # type: ignore[dict-item]
    report["status"] = first.status.to_wire()
    assert outcome(planned(report, [running, triggered], now + timedelta(seconds=2))) == (None, [], [])


def test_an_active_manual_run_makes_forbid_skip_the_run_time() -> None:
    report = every_10()
    plan = planned(report, [manual(report, EVERY_10 - timedelta(minutes=5))], EVERY_10 + timedelta(seconds=1))
    assert [a for a in plan.actions if isinstance(a, CreateRun)] == []
    assert plan.outcome == "skipped_forbid"
    assert [r.name for r in plan.status.active] == ["nightly-report-manual-b2c4d"]


def test_under_replace_a_manual_run_replaces_the_active_scheduled_run() -> None:
    report = every_10(concurrencyPolicy="Replace")
    scheduled = a_run(report, EVERY_10 - timedelta(minutes=10), {"phase": "Running"})
    plan = planned(
        report, [scheduled, manual(report, EVERY_10 - timedelta(minutes=5))], EVERY_10 - timedelta(minutes=4)
    )
    assert plan.actions == (StopRun(scheduled["metadata"]["name"], scheduled["metadata"]["uid"]),)


def test_trigger_from_a_machine_whose_clock_is_behind_still_replaces_the_active_run(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Triggered 30 s after 00:00's run started, from a laptop a minute behind: the controller places
    # the manual run at the apiserver's creationTimestamp, so it stops 00:00's run, as the note says.
    report = add(cluster, every_10(concurrencyPolicy="Replace"))
    scheduled = add(cluster, a_run(report, EVERY_10, {"phase": "Running"}))
    report["status"] = {
        "lastScheduleTime": format_time(EVERY_10),
        "active": [{"name": scheduled["metadata"]["name"], "scheduledTime": format_time(EVERY_10)}],
    }
    cluster.clock = EVERY_10 + timedelta(seconds=30)
    monkeypatch.setattr(cron, "now", lambda: EVERY_10 - timedelta(seconds=30))
    code, _, err = zen_flow(capsys, "cron", "trigger", "nightly-report")
    assert code == 0
    assert err == (
        "zen-flow cron trigger: note: concurrencyPolicy Replace: the controller stops "
        "nightly-report-29626560, replaced by nightly-report-manual-b2c4d\n"
    )
    made = {**cluster.flows[(NS, "nightly-report-manual-b2c4d")], "status": {"phase": "Running"}}
    plan = planned(report, [scheduled, made], EVERY_10 + timedelta(seconds=31))
    assert outcome(plan) == (None, [], ["nightly-report-29626560"])


def test_triggers_note_says_when_the_controller_keeps_another_run_instead(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    # Another manual run created in the same second ranks after this one by name: it is the one kept.
    report = cron_manifest(concurrencyPolicy="Replace")
    report["status"] = {
        "active": [{"name": "nightly-report-manual-zzzzz", "scheduledTime": format_time(NOW)}]
    }
    add(cluster, report)
    assert zen_flow(capsys, "cron", "trigger", "nightly-report")[2] == (
        "zen-flow cron trigger: note: concurrencyPolicy Replace: nightly-report-manual-zzzzz is newer: "
        "the controller stops nightly-report-manual-b2c4d\n"
    )


def test_a_manual_run_is_told_by_its_name_not_by_annotations() -> None:
    # A manual run of an older zen-flow, named with digits and without its scheduled-time annotation:
    # placed at its creation, not at "minute" 1777593300 (the year 5349), so Replace stops it for the
    # newer run time instead of keeping it forever.
    report = every_10(concurrencyPolicy="Replace")
    old = manual(report, EVERY_10 - timedelta(minutes=5))
    old["metadata"] = {**old["metadata"], "name": "nightly-report-manual-1777593300", "annotations": {}}
    scheduled = a_run(report, EVERY_10, {"phase": "Running"})
    plan = planned(report, [old, scheduled], EVERY_10 + timedelta(seconds=5))
    assert outcome(plan)[2] == ["nightly-report-manual-1777593300"]
    # A scheduled run carrying a copied `instantiate: manual` is still the run of its run time.
    marked = a_run(report, EVERY_10, {"phase": "Succeeded"})
    marked["metadata"]["annotations"]["workflow.kube-zen.io/instantiate"] = "manual"
    assert planned(report, [marked], EVERY_10 + timedelta(seconds=5)).outcome is None


def test_finished_manual_runs_count_for_the_history_limits_by_when_they_were_created() -> None:
    report = every_10(successfulJobsHistoryLimit=1)
    older = a_run(report, EVERY_10 - timedelta(minutes=10), {"phase": "Succeeded"})
    plan = planned(
        report,
        [older, manual(report, EVERY_10 - timedelta(minutes=5), "Succeeded")],
        EVERY_10 - timedelta(minutes=4),
    )
    assert plan.actions == (DeleteRun(older["metadata"]["name"], older["metadata"]["uid"]),)


# --- resubmit and retry of a run ----------------------------------------------------------------------------


def test_resubmit_of_a_run_makes_a_flow_that_is_no_run_and_has_the_jobflow_default_ttl(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    report = add(cluster, cron_manifest())
    run = add(cluster, a_run(report, NOW - timedelta(days=1), {"phase": "Failed"}))
    code, out, _ = zen_flow(capsys, "resubmit", run["metadata"]["name"])
    assert (code, out) == (0, f"jobflow {NS}/{run['metadata']['name']}-x7k2p created\n")
    [(method, _, body, _)] = cluster.writes
    assert method == "POST"
    # Not listed as a run (-l workflow.kube-zen.io/cronjobflow=...), which it is not: no owner reference,
    # so no history limit deletes it; and so not the run's "never" TTL either: the JobFlow default.
    assert body["metadata"]["labels"] == {"team": "reporting"}
    assert body["metadata"]["annotations"] == {"owner": "data"}
    assert "ownerReferences" not in body["metadata"]
    assert body["spec"]["executionPolicy"] == {}
    assert body["spec"]["steps"] == run["spec"]["steps"]
    # A flow of no CronJobFlow keeps the TTL it asked for, "never" included.
    mine = copy.deepcopy(run)
    mine["metadata"] = {"name": "mine", "namespace": NS, "labels": {"team": "reporting"}}
    add(cluster, mine)
    assert zen_flow(capsys, "resubmit", "mine")[0] == 0
    assert cluster.writes[-1][2]["spec"]["executionPolicy"] == {"ttlSecondsAfterFinished": RUN_TTL_SECONDS}


def test_resubmit_leaves_out_who_suspended_and_resumed_the_old_flow(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    # The webhook's record of the old flow, not the new one's: copied, it would read as forged.
    report = add(cluster, cron_manifest())
    run = a_run(report, NOW - timedelta(days=1), {"phase": "Failed"})
    run["metadata"]["annotations"].update(
        {
            "workflow.kube-zen.io/suspend-requested-by": "bob",
            "workflow.kube-zen.io/resume-requested-by": "carol",
        }
    )
    add(cluster, run)
    assert zen_flow(capsys, "resubmit", run["metadata"]["name"])[0] == 0
    assert cluster.writes[-1][2]["metadata"]["annotations"] == {"owner": "data"}


def test_resubmit_keeps_the_flows_controller_instance(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    report = cron_manifest()
    report["metadata"]["labels"] = {LABEL_INSTANCE: "team-a"}
    add(cluster, report)
    run = add(cluster, a_run(report, NOW - timedelta(days=1), {"phase": "Failed"}))
    assert zen_flow(capsys, "resubmit", run["metadata"]["name"])[0] == 0
    assert cluster.writes[-1][2]["metadata"]["labels"] == {"team": "reporting", LABEL_INSTANCE: "team-a"}


FAILED_RUN = {"phase": "Failed", "steps": [{"name": "collect", "phase": "Failed"}]}


def test_retry_of_an_older_run_says_replace_stops_it_and_the_history_limit_deletes_its_success(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    report = add(cluster, cron_manifest(concurrencyPolicy="Replace", successfulJobsHistoryLimit=1))
    old = add(cluster, a_run(report, NOW - timedelta(days=2), FAILED_RUN))
    add(cluster, a_run(report, NOW - timedelta(days=1), {"phase": "Succeeded"}))
    add(cluster, a_run(report, NOW, {"phase": "Running"}))
    newest = run_name("nightly-report", NOW)
    code, out, err = zen_flow(capsys, "retry", old["metadata"]["name"])
    assert code == 0, err
    assert "rerun requested" in out
    assert err.splitlines() == [
        f"zen-flow retry: note: concurrencyPolicy Replace keeps the newest run: {newest} is newer and "
        f"active: the controller stops {old['metadata']['name']} at once",
        "zen-flow retry: note: successfulJobsHistoryLimit 1 keeps 1 newer successful run(s) of cronjobflow "
        f"nightly-report: the controller deletes {old['metadata']['name']} as soon as it succeeds",
    ]
    # The newest run, rerun: nothing to say; nor for a flow of no CronJobFlow.
    last = add(cluster, a_run(report, NOW + timedelta(days=1), FAILED_RUN))
    assert zen_flow(capsys, "retry", last["metadata"]["name"])[2] == ""
    plain = copy.deepcopy(old)
    plain["metadata"] = {"name": "plain", "namespace": NS}
    add(cluster, plain)
    assert zen_flow(capsys, "retry", "plain")[2] == ""
