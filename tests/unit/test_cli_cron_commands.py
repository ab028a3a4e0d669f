"""`zen-flow cron list|get|trigger|suspend|resume` against an in-memory apiserver at a fixed instant: what
the user reads, the exit status, what was written; and the run `trigger` creates, as the controller's
planner then sees it beside its scheduled runs."""

from __future__ import annotations

import argparse
import copy
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from textwrap import dedent
from typing import Any

import pytest

from zen_flow.api.constants import LABEL_CRON, LABEL_INSTANCE, RUN_TTL_SECONDS
from zen_flow.api.cronjobflow import CronJobFlow
from zen_flow.api.jobflow import JobFlow
from zen_flow.api.meta import format_time
from zen_flow.cli import completion, cron, main, session
from zen_flow.kube.errors import from_status
from zen_flow.kube.streams import ListResult
from zen_flow.kube.transport import MERGE_PATCH
from zen_flow.planner.cron import CreateRun, DeleteRun, StopRun, build_run, plan_cron, run_name
from zen_flow.planner.cron_runs import manual_run, manual_run_name
from zen_flow.validation import validate_jobflow
from zen_flow.validation.cronjobflow import MAX_CRON_NAME
from zen_flow.validation.limits import MAX_FLOW_NAME

NS = "default"
RANDOM_TOKEN = cron.token  # the cluster fixture makes tokens predictable
# A Saturday noon (UTC) before Berlin's spring change: that night 02:30 does not exist there.
NOW = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "spec": {
        "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}}
    },
}


def cron_manifest(name: str = "nightly-report", namespace: str = NS, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "workflow.kube-zen.io/v1alpha1",
        "kind": "CronJobFlow",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{name}",
            "generation": 1,
            "creationTimestamp": format_time(NOW - timedelta(days=3)),
        },
        "spec": {
            "schedule": "30 2 * * *",
            "timeZone": "Europe/Berlin",
            "jobFlowTemplate": {
                "metadata": {"labels": {"team": "reporting"}, "annotations": {"owner": "data"}},
                "spec": {"steps": [{"name": "collect", "template": JOB}]},
            },
            **spec,
        },
        "status": {},
    }


def a_run(cron: dict[str, Any], moment: datetime, status: dict[str, Any]) -> dict[str, Any]:
    """A scheduled run of `cron`, as the controller made it."""
    made: dict[str, Any] = build_run(CronJobFlow.model_validate(cron), moment)
    made["metadata"]["uid"] = f"uid-{made['metadata']['name']}"
    return {**made, "status": status}


class FakeCluster:
    """CronJobFlows and JobFlows by namespace and name; every write the CLI sends."""

    def __init__(self) -> None:
        self.crons: dict[tuple[str, str], dict[str, Any]] = {}
        self.flows: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes: list[tuple[str, str, Any, str | None]] = []
        self.clock = NOW

    def store(self, path: str) -> tuple[dict[tuple[str, str], dict[str, Any]], str | None, str | None]:
        parts = path.strip("/").split("/")
        namespace = parts[parts.index("namespaces") + 1] if "namespaces" in parts else None
        plural = next(p for p in parts if p in ("cronjobflows", "jobflows"))
        after = parts[parts.index(plural) + 1 :]
        return (
            (self.crons if plural == "cronjobflows" else self.flows),
            namespace,
            after[0] if after else None,
        )

    async def list_all(self, path: str, query: Any = (), *, page_size: int = 500) -> ListResult:
        objects, namespace, _ = self.store(path)
        selector = dict(query).get("labelSelector")
        items = [
            copy.deepcopy(o)
            for (ns, _), o in sorted(objects.items())
            if namespace in (None, ns) and (selector is None or _labelled(o, *selector.split("=", 1)))
        ]
        return ListResult(tuple(items), "1")

    async def request(
        self, method: str, path: str, body: Any = None, query: Any = (), content_type: str | None = None
    ) -> dict[str, Any]:
        objects, namespace, name = self.store(path)
        assert namespace is not None
        if method != "GET":
            self.writes.append((method, path, copy.deepcopy(body), content_type))
        if method == "POST":
            made: dict[str, Any] = copy.deepcopy(body)
            made["metadata"].setdefault("name", made["metadata"].get("generateName", "") + "x7k2p")
            key = (namespace, made["metadata"]["name"])
            if key in objects:
                raise from_status(409, {"reason": "AlreadyExists", "message": f'"{key[1]}" already exists'})
            # The apiserver's clock, which orders a manual run (the user's machine's clock may be off).
            made["metadata"]["creationTimestamp"] = format_time(self.clock)
            objects[key] = {**made, "status": {}}
            return made
        found = objects.get((namespace, name or ""))
        if found is None:
            raise from_status(404, {"reason": "NotFound", "message": f'cronjobflows "{name}" not found'})
        if method == "PATCH":
            found["spec"].update(body.get("spec", {}))
            annotations = found["metadata"].setdefault("annotations", {})
            for key, value in body.get("metadata", {}).get("annotations", {}).items():
                annotations.pop(key, None) if value is None else annotations.update({key: value})
        return copy.deepcopy(found)


def _labelled(obj: dict[str, Any], key: str, value: str) -> bool:
    return bool((obj["metadata"].get("labels") or {}).get(key) == value)


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    fake = FakeCluster()

    @asynccontextmanager
    async def open_session(args: Any, out: Any = None) -> AsyncIterator[session.Session]:
        yield session.Session(fake, args.namespace or NS, sys.stdout)  # type: ignore[arg-type]

    monkeypatch.setattr(session, "open_session", open_session)
    monkeypatch.setattr(cron, "now", lambda: NOW)
    tokens = iter(["b2c4d", "f5g6h", "j7k8l", "m9n2p"])
    monkeypatch.setattr(cron, "token", lambda: next(tokens))
    return fake


def zen_flow(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    said = capsys.readouterr()
    return code, said.out, said.err


def add(cluster: FakeCluster, obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    (cluster.crons if obj["kind"] == "CronJobFlow" else cluster.flows)[(meta["namespace"], meta["name"])] = (
        obj
    )
    return obj


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


# --- trigger ----------------------------------------------------------------------------------------------


def posted(cluster: FakeCluster) -> list[dict[str, Any]]:
    return [body for method, _, body, _ in cluster.writes if method == "POST"]


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


# --- the manual run, as the controller's planner sees it --------------------------------------------------


def planned(report: dict[str, Any], runs: list[dict[str, Any]], now: datetime) -> Any:
    return plan_cron(CronJobFlow.model_validate(report), [JobFlow.model_validate(r) for r in runs], now)


def manual(
    report: dict[str, Any], created: datetime, phase: str = "Running", token: str = "b2c4d"
) -> dict[str, Any]:
    """`trigger`'s run as the apiserver stores it: created (its creationTimestamp) at `created`."""
    body: dict[str, Any] = manual_run(CronJobFlow.model_validate(report), token)
    meta = {**body["metadata"], "uid": f"uid-manual-{token}", "creationTimestamp": format_time(created)}
    return {**body, "metadata": meta, "status": {"phase": phase}}


EVERY_10 = datetime(2026, 5, 1, 0, 0, tzinfo=UTC)  # a */10 schedule's run time


def every_10(**spec: Any) -> dict[str, Any]:
    report = cron_manifest(schedule="*/10 * * * *", timeZone=None, **spec)
    report["metadata"]["creationTimestamp"] = format_time(EVERY_10 - timedelta(hours=1))
    report["status"] = {"lastScheduleTime": format_time(EVERY_10 - timedelta(minutes=10))}
    return report


def stopping(run: dict[str, Any]) -> dict[str, Any]:
    """`run` once the controller's stop request is on it (still running)."""
    annotations = {**run["metadata"]["annotations"], "workflow.kube-zen.io/stop": "true"}
    return {**run, "metadata": {**run["metadata"], "annotations": annotations}}


def outcome(plan: Any) -> tuple[str | None, list[str], list[str]]:
    """What became of the run time due, the runs created and the runs asked to stop."""
    return (
        plan.outcome,
        [a.name for a in plan.actions if isinstance(a, CreateRun)],
        [a.name for a in plan.actions if isinstance(a, StopRun)],
    )


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
    limited = planned(every_10(successfulJobsHistoryLimit=1), [older, done], created + timedelta(minutes=1))
    assert limited.actions == (DeleteRun(older["metadata"]["name"], older["metadata"]["uid"]),)
