"""`zen-flow cron trigger` (run-now) against an in-memory apiserver at a fixed instant (cron_cli_rig): the
run it creates under a name of its own, marked manual, what it says about the active runs, and the night
it processes (`--scheduled-time`)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from cron_cli_rig import (
    EVERY_10,
    NOW,
    RANDOM_TOKEN,
    FakeCluster,
    a_run,
    add,
    cron_manifest,
    every_10,
    manual,
    outcome,
    planned,
    posted,
    zen_flow,
)
from cron_cli_rig import cluster_fixture as cluster_fixture  # the `cluster` fixture

from zen_flow.api.constants import LABEL_CRON, LABEL_INSTANCE
from zen_flow.api.cronjobflow import CronJobFlow
from zen_flow.api.meta import format_time
from zen_flow.cli import cron
from zen_flow.planner.cron import DeleteRun, build_run, run_name
from zen_flow.planner.cron_runs import manual_run, manual_run_name
from zen_flow.validation import validate_jobflow
from zen_flow.validation.cronjobflow import MAX_CRON_NAME
from zen_flow.validation.limits import MAX_FLOW_NAME

# --- trigger ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("verb", ["trigger", "run-now"])
def test_trigger_creates_the_controllers_run_under_a_name_of_its_own_marked_manual(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], verb: str
) -> None:
    report = add(cluster, cron_manifest())
    code, out, err = zen_flow(capsys, "cron", verb, "nightly-report")
    name = "nightly-report-manual-b2c4d"
    assert (code, out, err) == (0, f"jobflow default/{name} created\n", "")
    [body] = posted(cluster)
    scheduled = build_run(CronJobFlow.model_validate(report), NOW)
    # The controller's run of that moment in all but the name and the marks: the same template, labels
    # (the cronjobflow label included), owner reference and run TTL; no run time, only the manual mark
    # (nothing from this machine's clock).
    assert body["metadata"].pop("name") == name
    assert scheduled["metadata"].pop("name") == run_name("nightly-report", NOW)  # type: ignore[attr-defined]
    assert body["metadata"].pop("annotations") == {
        "owner": "data",
        "workflow.kube-zen.io/instantiate": "manual",
    }
    scheduled["metadata"].pop("annotations")  # type: ignore[attr-defined]
    assert body == scheduled
    assert body["metadata"]["labels"] == {"team": "reporting", LABEL_CRON: "nightly-report"}
    [owner] = body["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "CronJobFlow", "nightly-report", "uid-nightly-report", True,
    )  # fmt: skip


def test_trigger_of_a_cronjobflow_of_a_controller_instance_makes_a_run_of_that_instance(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    report = cron_manifest()
    report["metadata"]["labels"] = {LABEL_INSTANCE: "team-a"}
    add(cluster, report)
    assert zen_flow(capsys, "cron", "trigger", "nightly-report")[0] == 0
    [body] = posted(cluster)
    assert body["metadata"]["labels"][LABEL_INSTANCE] == "team-a"


@pytest.mark.parametrize(
    ("name", "cut"),
    [
        ("n" * MAX_CRON_NAME, "n" * (MAX_FLOW_NAME - 13)),
        # Cut where a `.` or `-` would end the name's part: the name stays a valid one.
        ("a" * 49 + ".-b" + "c" * 2, "a" * 49),
    ],
)
def test_a_manual_run_of_the_longest_cronjobflow_name_fits_a_flows_name(name: str, cut: str) -> None:
    body: dict[str, Any] = manual_run(CronJobFlow.model_validate(cron_manifest(name)), "b2c4d")
    made = body["metadata"]["name"]
    assert made == f"{cut}-manual-b2c4d"
    assert len(made) <= MAX_FLOW_NAME
    assert [str(e) for e in validate_jobflow(body)] == []  # what the JobFlow webhook checks


def test_a_manual_run_never_takes_a_scheduled_runs_name() -> None:
    # `x-manual`'s runs are x-manual-<8 digits>; `x`'s manual runs x-manual-<token>, even all digits.
    assert manual_run_name("x", "24567") != run_name("x-manual", NOW)
    report = cron_manifest("x")
    assert planned(report, [manual(report, NOW, token="24567")], NOW).status.active[0].scheduled_time == NOW


def test_two_triggers_in_the_same_second_make_two_runs(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same second on the same clock: the random token tells them apart (one name: 409, exit 1).
    monkeypatch.setattr(cron, "token", RANDOM_TOKEN)
    add(cluster, cron_manifest(concurrencyPolicy="Allow"))
    assert zen_flow(capsys, "cron", "trigger", "nightly-report")[0] == 0
    assert zen_flow(capsys, "cron", "trigger", "nightly-report")[0] == 0
    first, second = (b["metadata"]["name"] for b in posted(cluster))
    assert first != second
    assert all(
        re.fullmatch("nightly-report-manual-[bcdfghjklmnpqrstvwxz2456789]{5}", n) for n in (first, second)
    )


def test_trigger_of_an_invalid_cronjobflow_creates_nothing(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    add(cluster, cron_manifest(schedule="every night"))
    code, out, err = zen_flow(capsys, "cron", "trigger", "nightly-report")
    assert (code, out) == (2, "")
    assert err.startswith(
        "zen-flow cron trigger: cronjobflow nightly-report is invalid, no run was created:\n"
    )
    assert "spec.schedule" in err
    assert posted(cluster) == []


@pytest.mark.parametrize(
    ("spec", "note"),
    [
        (
            {"concurrencyPolicy": "Replace"},
            "concurrencyPolicy Replace: the controller stops old-run, replaced by",
        ),
        (
            {},
            "old-run still active: nightly-report-manual-b2c4d runs beside it; concurrencyPolicy Forbid",
        ),
        (
            {"concurrencyPolicy": "Allow", "suspend": True},
            "cronjobflow nightly-report is suspended: this run starts all the same",
        ),
    ],
)
def test_trigger_says_what_the_controller_will_do_about_the_active_runs(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], spec: dict[str, Any], note: str
) -> None:
    report = cron_manifest(**spec)
    report["status"] = {"active": [{"name": "old-run"}]}
    add(cluster, report)
    code, _, err = zen_flow(capsys, "cron", "trigger", "nightly-report")
    assert code == 0
    assert f"zen-flow cron trigger: note: {note}" in err
    assert len(err.splitlines()) == 1


# --- trigger --scheduled-time: the night a manual run processes ---------------------------------------------


@pytest.mark.parametrize(
    ("given", "zone", "annotated"),
    [
        # RFC 3339, in any offset: that instant, in UTC, to the second.
        ("2026-03-27T03:30:00+01:00", "Europe/Berlin", "2026-03-27T02:30:00Z"),
        ("2026-03-27T02:30:00.250Z", None, "2026-03-27T02:30:00Z"),
        # A date: midnight in the CronJobFlow's time zone (CET, then CEST after the spring change).
        ("2026-03-27", "Europe/Berlin", "2026-03-26T23:00:00Z"),
        ("2026-03-30", "Europe/Berlin", "2026-03-29T22:00:00Z"),
        # A midnight the spring change skips is the instant of the change (the offset before it).
        ("2026-03-08", "America/Havana", "2026-03-08T05:00:00Z"),
        ("2026-03-29", "Asia/Beirut", "2026-03-28T22:00:00Z"),
        # A midnight the autumn change repeats (01:00 back to 00:00) is the first of the two: summer time.
        ("2026-10-25", "Atlantic/Azores", "2026-10-25T00:00:00Z"),
        # Years before 1000 are written with four digits, as RFC 3339 requires (and the planner reads).
        ("0500-01-01", None, "0500-01-01T00:00:00Z"),
        ("0999-06-01T12:00:00+01:00", None, "0999-06-01T11:00:00Z"),
        ("2026-07-01", "Europe/Berlin", "2026-06-30T22:00:00Z"),
        ("2026-07-01", "America/New_York", "2026-07-01T04:00:00Z"),
        ("2026-07-01", None, "2026-07-01T00:00:00Z"),
    ],
)
def test_trigger_with_a_scheduled_time_makes_a_manual_run_annotated_with_it(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], given: str, zone: str | None, annotated: str
) -> None:
    add(cluster, cron_manifest(timeZone=zone))
    code, out, err = zen_flow(capsys, "cron", "trigger", "nightly-report", "--scheduled-time", given)
    assert (code, out, err) == (0, "jobflow default/nightly-report-manual-b2c4d created\n", "")
    [body] = posted(cluster)
    # A manual run in every other respect: its name and its manual mark.
    assert body["metadata"]["annotations"] == {
        "owner": "data",
        "workflow.kube-zen.io/instantiate": "manual",
        "workflow.kube-zen.io/scheduled-time": annotated,
    }


@pytest.mark.parametrize(
    "given",
    [
        "yesterday",
        "2026-02-30",
        "2026-12-07T02:30:00",
        "2026-12-07 02:30",
        "07.12.2026",
        "1776-07-04T25:00:00Z",
    ],
)
def test_trigger_refuses_a_scheduled_time_that_is_neither_rfc3339_nor_a_date(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], given: str
) -> None:
    add(cluster, cron_manifest())
    code, out, err = zen_flow(capsys, "cron", "trigger", "nightly-report", "--scheduled-time", given)
    assert (code, out) == (2, "")
    assert err == (
        f"zen-flow cron trigger: --scheduled-time {given!r} is neither an RFC 3339 time "
        "(2026-12-07T02:30:00Z, 2026-12-07T03:30:00+01:00) nor a date YYYY-MM-DD (midnight in the "
        "CronJobFlow's time zone)\n"
    )
    assert posted(cluster) == []


def test_trigger_refuses_a_date_whose_midnight_no_utc_time_reaches(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    add(cluster, cron_manifest())  # Europe/Berlin: its midnight of 1 January 1 is in year 0 in UTC
    code, out, err = zen_flow(capsys, "cron", "trigger", "nightly-report", "--scheduled-time", "0001-01-01")
    assert (code, out) == (2, "")
    assert err == (
        "zen-flow cron trigger: --scheduled-time 0001-01-01: midnight in Europe/Berlin is out of range "
        "in UTC\n"
    )
    assert posted(cluster) == []


def test_a_manual_run_with_a_scheduled_time_is_still_placed_at_its_creation() -> None:
    # Triggered at 00:05 to process a night a day back: still the newest run, so Replace stops the
    # scheduled run of 00:00 (not the manual one), and status.active lists it at its creation.
    report = every_10(concurrencyPolicy="Replace")
    scheduled = a_run(report, EVERY_10, {"phase": "Running"})
    body = manual_run(CronJobFlow.model_validate(report), "b2c4d", EVERY_10 - timedelta(days=1))
    assert body["metadata"]["annotations"]["workflow.kube-zen.io/scheduled-time"] == "2026-04-30T00:00:00Z"  # type: ignore[index]
    created = EVERY_10 + timedelta(minutes=5)
    late = {
        **body,
        "metadata": {**body["metadata"], "uid": "uid-late", "creationTimestamp": format_time(created)},  # type: ignore[dict-item]
        "status": {"phase": "Running"},
    }
    plan = planned(report, [scheduled, late], created + timedelta(seconds=1))
    assert outcome(plan) == (None, [], [scheduled["metadata"]["name"]])
    assert [(r.name, r.scheduled_time) for r in plan.status.active] == [
        (scheduled["metadata"]["name"], EVERY_10),
        ("nightly-report-manual-b2c4d", created),
    ]
    # Finished, it counts for the history limits by its creation: the older scheduled run goes.
    done = {**late, "status": {"phase": "Succeeded"}}
    older = a_run(report, EVERY_10, {"phase": "Succeeded"})
    limits = every_10(successfulJobsHistoryLimit=1)
    limits["status"]["lastScheduleTime"] = format_time(EVERY_10)  # the older run's run time recorded
    limited = planned(limits, [older, done], created + timedelta(minutes=1))
    assert limited.actions == (DeleteRun(older["metadata"]["name"], older["metadata"]["uid"]),)
