"""The flow archive's pure parts: SigV4 signing, record keys and contents, and when a record is written and
the TTL deletion waits for it (planner/archiving.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from zen_flow.api.constants import FlowPhase
from zen_flow.api.job import Job, JobMeta, JobStatus
from zen_flow.api.meta import Condition
from zen_flow.core.naming import job_name
from zen_flow.core.sigv4 import Credentials, signed_headers, uri_encode
from zen_flow.planner.actions import DeleteFlow, DeleteJob, Plan
from zen_flow.planner.archive_logs import LogEntry
from zen_flow.planner.archive_records import (
    ChildRun,
    RecordError,
    build_record,
    child_runs,
    children_in,
    flow_of,
    list_prefix,
    logs_in,
    parse_key,
    record_key,
    record_row,
    run_tag,
)
from zen_flow.planner.archiving import (
    ARCHIVED,
    MAX_RETRY_SECONDS,
    REASON_ARCHIVE_FAILED,
    REASON_NOT_ARCHIVED,
    ArchiveState,
    ChildRecord,
    archive_plan,
    children_hold,
    retry_delay,
)
from zen_flow.planner.children import as_job, refused_job
from zen_flow.planner.lifecycle import terminal_plan
from zen_flow_dev.testing.flows import job_step, make_flow

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAY = 86400.0


def test_sigv4_matches_the_aws_documented_example() -> None:
    # "Example: GET Object" of the S3 SigV4 documentation (header-based auth).
    headers = signed_headers(
        method="GET",
        host="examplebucket.s3.amazonaws.com",
        path="/test.txt",
        params=(),
        payload=b"",
        credentials=Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        region="us-east-1",
        now=datetime(2013, 5, 24, tzinfo=UTC),
        extra={"Range": "bytes=0-9"},
    )
    assert headers["authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )


def test_keys_are_encoded_once_and_the_secret_never_shows() -> None:
    assert uri_encode("/b/team a/ü+x.json", keep_slash=True) == "/b/team%20a/%C3%BC%2Bx.json"
    assert "secret" not in repr(Credentials("id", "secret", "token"))


def test_a_record_key_names_namespace_name_uid_and_the_runs_end_and_parses_back() -> None:
    key = record_key("jobflows/", "team-a", "nightly", "u-1", "2026-03-01T12:05:00Z")
    assert key == "jobflows/team-a/nightly/u-1/20260301T120500Z.json"
    found = parse_key("jobflows/", key)
    assert found is not None
    assert (found.namespace, found.name, found.uid, found.finished) == (
        "team-a",
        "nightly",
        "u-1",
        "2026-03-01T12:05:00Z",
    )
    # A rerun's end is another record; the same end is the same key (a restart writes it again).
    assert record_key("jobflows/", "team-a", "nightly", "u-1", "2026-03-02T00:00:00Z") != key
    # A rerun's end within the same second: its own key, naming the rerun, read back with its end.
    tag = run_tag(["r-1", "r-2"])
    assert tag == run_tag(["r-2"]) != run_tag(["r-1"])
    assert run_tag([]) == ""
    rerun = record_key("jobflows/", "team-a", "nightly", "u-1", "2026-03-01T12:05:00Z", tag)
    assert rerun == f"jobflows/team-a/nightly/u-1/20260301T120500Z-{tag}.json"
    again = parse_key("jobflows/", rerun)
    assert again is not None
    assert (again.finished, again.run) == ("2026-03-01T12:05:00Z", tag)
    assert parse_key("jobflows/", "jobflows/team-a/readme.txt") is None
    assert parse_key("jobflows/", "jobflows/team-a/nightly/u-1.json") is None
    assert parse_key("jobflows/", "jobflows/team-a/nightly/u-1/latest.json") is None
    assert parse_key("jobflows/", "other/team-a/nightly/u-1/20260301T120500Z.json") is None
    assert list_prefix("jobflows/", "team-a", "nightly") == "jobflows/team-a/nightly/"
    assert list_prefix("jobflows/", "team-a", "nightly", "u-1") == "jobflows/team-a/nightly/u-1/"
    assert list_prefix("jobflows/", None) == "jobflows/"


def _job(flow: str, step: str, attempt: int, *, done: bool) -> Job:
    conditions = (Condition(type="Complete", status="True"),) if done else ()
    return Job(
        JobMeta(name=job_name(flow, step, attempt), namespace="ns", uid=f"j-{step}-{attempt}"),
        JobStatus(
            conditions=conditions, start_time=T0, completion_time=T0 + timedelta(seconds=30) if done else None
        ),
    )


def test_a_record_holds_the_flow_without_managed_fields_and_a_line_per_job() -> None:
    raw = {
        "apiVersion": "workflow.kube-zen.io/v1alpha1",
        "kind": "JobFlow",
        "metadata": {"name": "nightly", "namespace": "ns", "uid": "u-1", "managedFields": [{"manager": "x"}]},
        "spec": {"steps": [{"name": "load"}, {"name": "report"}]},
        "status": {
            "phase": "Succeeded",
            "startTime": "2026-03-01T12:00:00Z",
            "completionTime": "2026-03-01T12:05:00Z",
        },
    }
    jobs = [_job("nightly", "report", 0, done=False), _job("nightly", "load", 1, done=True)]
    record = build_record(raw, jobs, T0, "1.2.3")
    assert "managedFields" not in record["flow"]["metadata"]
    assert record["flow"]["spec"] == raw["spec"]
    assert record["flow"]["status"] == raw["status"]
    assert (record["archivedAt"], record["controllerVersion"]) == ("2026-03-01T12:00:00Z", "1.2.3")
    assert [(j["step"], j["phase"]) for j in record["jobs"]] == [("load", "Succeeded"), ("report", "Running")]
    assert record["jobs"][0]["completionTime"] == "2026-03-01T12:00:30Z"
    row = record_row(json.loads(json.dumps(record)))
    assert (row.namespace, row.name, row.uid, row.phase) == ("ns", "nightly", "u-1", "Succeeded")
    assert (row.started, row.finished) == ("2026-03-01T12:00:00Z", "2026-03-01T12:05:00Z")


def test_a_record_names_the_child_flow_each_attempt_of_a_flow_step_ran_and_reads_it_back() -> None:
    sub = {"name": "sub", "type": "Flow", "flow": {"templateRef": {"name": "t"}}}
    parent = make_flow([job_step("prep"), sub], name="p", namespace="ns")
    children = []
    for attempt, uid in ((1, "u-c2"), (0, "u-c1")):
        child = make_flow([job_step("x")], name=job_name("p", "sub", attempt), namespace="ns")
        meta = child.metadata.model_copy(update={"uid": uid})
        children.append(as_job(child.model_copy(update={"metadata": meta})))
    jobs = [_job("p", "prep", 0, done=True), *children, refused_job("ns", job_name("p", "sub", 2), "no")]
    runs = child_runs(parent, jobs)  # the refused one is no flow: it ran nothing
    assert sorted(runs, key=lambda r: r.attempt) == [
        ChildRun("sub", 1, job_name("p", "sub", 0), "u-c1"),
        ChildRun("sub", 2, job_name("p", "sub", 1), "u-c2"),
    ]
    raw = {"metadata": {"name": "p", "namespace": "ns"}, "spec": {}, "status": {}}
    record = json.loads(json.dumps(build_record(raw, jobs, T0, "1", children=runs)))
    assert [c["attempt"] for c in record["children"]] == [1, 2]
    assert children_in(record) == sorted(runs, key=lambda r: r.attempt)
    assert "children" not in build_record(raw, jobs, T0, "1")  # none: no key (a flow without Flow steps)


def test_an_older_or_malformed_record_reads_as_having_no_children_and_no_logs() -> None:
    assert children_in({}) == []
    assert logs_in({}) is None  # its logs were not archived
    bad = {"children": [{"step": "s", "attempt": "1", "name": "c", "uid": "u"}, "x", {"step": "s"}]}
    assert children_in(bad) == []
    entries = logs_in({"logs": [{"step": "s", "attempt": 2, "unavailable": "gone"}, {"step": 3}, "x"]})
    assert entries == [LogEntry("", "s", 2, unavailable="gone")]


@pytest.mark.parametrize(
    ("bad", "said"),
    [([], "not a JSON object"), ({"recordVersion": 9}, "recordVersion 9"), ({"recordVersion": 1}, "no flow")],
)
def test_a_record_of_a_newer_format_or_none_at_all_is_refused_by_name(bad: object, said: str) -> None:
    with pytest.raises(RecordError, match=said):
        flow_of(bad)


# --- when a record is written, and what the TTL does meanwhile ----------------------------------------


def _ended(ttl: int = 60, *, conditions: tuple[Condition, ...] = ()):  # type: ignore[no-untyped-def]
    flow = make_flow(
        [job_step("s0")], name="f", namespace="ns", execution_policy={"ttlSecondsAfterFinished": ttl}
    )
    status = flow.status.model_copy(
        update={
            "phase": FlowPhase.SUCCEEDED,
            "start_time": T0,
            "completion_time": T0,
            "conditions": conditions,
        }
    )
    return flow.model_copy(update={"status": status})


def _condition(plan: Plan) -> Condition | None:
    return next((c for c in plan.status.conditions if c.type == ARCHIVED), None)


def test_an_ended_flow_asks_for_its_record_and_its_ttl_deletion_waits() -> None:
    flow = _ended(ttl=60)
    at_end = archive_plan(flow, terminal_plan(flow, T0), ArchiveState(), T0, max_delay=DAY)
    assert at_end.write
    assert _condition(at_end.plan) is None
    expired = T0 + timedelta(seconds=61)
    plan = terminal_plan(flow, expired)
    assert any(isinstance(a, DeleteFlow) for a in plan.actions)  # without the archive: deleted now
    held = archive_plan(flow, plan, ArchiveState(pending=True), expired, max_delay=DAY)
    assert not held.write
    assert not held.plan.actions
    assert held.plan.requeue_after is not None


def test_a_written_record_sets_archived_true_and_then_lets_the_ttl_delete() -> None:
    flow = _ended(ttl=60)
    done = ArchiveState(written="s3://b/jobflows/ns/f/u.json")
    verdict = archive_plan(flow, terminal_plan(flow, T0), done, T0, max_delay=DAY)
    cond = _condition(verdict.plan)
    assert cond is not None
    assert (cond.status, cond.reason, cond.message) == ("True", "Archived", done.written)
    stored = flow.model_copy(update={"status": verdict.plan.status})
    expired = T0 + timedelta(seconds=61)
    # A restarted controller knows nothing (ArchiveState()), and neither writes again nor holds the TTL.
    after_restart = archive_plan(
        stored, terminal_plan(stored, expired), ArchiveState(), expired, max_delay=DAY
    )
    assert not after_restart.write
    assert [type(a) for a in after_restart.plan.actions] == [DeleteFlow]


def test_a_failed_write_says_why_waits_for_its_backoff_then_writes_again() -> None:
    flow = _ended(ttl=60)
    expired = T0 + timedelta(seconds=61)
    failed = ArchiveState(failures=2, cause="cannot connect", retry_at=expired + timedelta(seconds=10))
    verdict = archive_plan(flow, terminal_plan(flow, expired), failed, expired, max_delay=DAY)
    cond = _condition(verdict.plan)
    assert cond is not None
    assert (cond.status, cond.reason) == ("False", REASON_ARCHIVE_FAILED)
    assert "cannot connect" in cond.message
    assert "waits for it until 2026-03-02T12:01:00Z" in cond.message
    assert not verdict.write
    assert not verdict.plan.actions
    assert verdict.plan.requeue_after == 10
    later = expired + timedelta(seconds=10)
    again = archive_plan(flow, terminal_plan(flow, later), failed, later, max_delay=DAY)
    assert again.write
    assert not again.plan.actions


def test_past_the_max_delay_the_flow_is_deleted_without_a_record_and_an_event_says_so() -> None:
    flow = _ended(ttl=60)
    overdue = T0 + timedelta(seconds=60 + DAY)
    failed = ArchiveState(
        failures=9, cause="HTTP 403 AccessDenied", retry_at=overdue + timedelta(seconds=300)
    )
    verdict = archive_plan(flow, terminal_plan(flow, overdue), failed, overdue, max_delay=DAY)
    assert verdict.unarchived_delete
    assert [type(a) for a in verdict.plan.actions] == [DeleteFlow]
    (event,) = verdict.plan.events
    assert (event.type, event.reason) == ("Warning", REASON_NOT_ARCHIVED)
    assert "AccessDenied" in event.message
    just_before = overdue - timedelta(seconds=1)
    held = archive_plan(flow, terminal_plan(flow, just_before), failed, just_before, max_delay=DAY)
    assert not held.plan.actions
    assert held.plan.requeue_after == 1


def test_a_running_flow_is_not_archived_and_a_rerun_waits_for_the_ended_runs_record() -> None:
    running = make_flow([job_step("s0")], name="f", namespace="ns")
    plan = Plan((), running.status, (), None)
    assert not archive_plan(running, plan, ArchiveState(), T0, max_delay=DAY).write
    ended = _ended()
    rerun = Plan(
        (), ended.status.model_copy(update={"phase": FlowPhase.RUNNING, "completion_time": None}), (), None
    )
    held = archive_plan(ended, rerun, ArchiveState(), T0, max_delay=DAY)
    assert held.write  # the ended run's record first: the rerun would reset what it reads
    assert held.plan.status == ended.status
    done = Condition(type="Archived", status="True", reason="Archived", message="s3://b/k")
    archived_run = _ended(conditions=(done,))
    goes = archive_plan(archived_run, rerun, ArchiveState(), T0, max_delay=DAY)
    assert not goes.write
    assert goes.plan == rerun
    # Writes failing for the max delay (none in flight): the rerun goes, saying so.
    failing = ArchiveState(
        failures=3, cause="HTTP 503", retry_at=T0, failed_since=T0 - timedelta(seconds=DAY)
    )
    late = archive_plan(ended, rerun, failing, T0, max_delay=DAY)
    assert late.unarchived_delete
    assert late.plan.status == rerun.status
    assert [e.reason for e in late.plan.events] == ["NotArchived"]


def test_retries_back_off_to_five_minutes() -> None:
    assert [retry_delay(n) for n in (1, 2, 3)] == [5.0, 10.0, 20.0]
    assert retry_delay(30) == MAX_RETRY_SECONDS


@pytest.mark.parametrize(
    ("ttl", "max_delay", "late"),
    [(0, 0.0, 0.0), (60, DAY, 60 + DAY + 1)],  # best effort with no TTL; a controller down past the bound
)
def test_an_overdue_flow_no_write_was_tried_for_is_written_before_it_may_go(
    ttl: int, max_delay: float, late: float
) -> None:
    flow = _ended(ttl=ttl)
    now = T0 + timedelta(seconds=late)
    fresh = archive_plan(flow, terminal_plan(flow, now), ArchiveState(), now, max_delay=max_delay)
    assert fresh.write
    assert not fresh.unarchived_delete
    assert not fresh.plan.actions
    assert not fresh.plan.events
    assert fresh.plan.requeue_after is not None
    assert fresh.plan.requeue_after > 0
    in_flight = archive_plan(
        flow, terminal_plan(flow, now), ArchiveState(pending=True), now, max_delay=max_delay
    )
    assert not in_flight.plan.actions
    failed = ArchiveState(failures=1, cause="HTTP 503 SlowDown", retry_at=now + timedelta(seconds=5))
    given_up = archive_plan(flow, terminal_plan(flow, now), failed, now, max_delay=max_delay)
    assert given_up.unarchived_delete
    assert [type(a) for a in given_up.plan.actions] == [DeleteFlow]


def test_a_delete_of_an_unarchived_child_flow_waits_until_its_writes_failed_for_the_max_delay() -> None:
    parent = _ended()
    delete = DeleteJob("f-sub-1", "sub", "superseded")
    plan = Plan((delete,), parent.status, (), None)
    untried = children_hold(parent, plan, {"f-sub-1": ChildRecord()}, T0, max_delay=DAY)
    assert untried.plan.actions == ()
    assert untried.plan.requeue_after is not None
    failing = {"f-sub-1": ChildRecord(failed_since=T0 - timedelta(seconds=DAY - 60), cause="HTTP 503")}
    held = children_hold(parent, plan, failing, T0, max_delay=DAY)
    assert held.plan.actions == ()
    assert held.plan.requeue_after == 60.0  # woken when it is overdue
    late = children_hold(parent, plan, failing, T0 + timedelta(seconds=60), max_delay=DAY)
    assert late.plan.actions == (delete,)
    assert late.unarchived_children == ("f-sub-1",)
    assert [e.reason for e in late.plan.events] == ["NotArchived"]
    assert "f-sub-1" in late.plan.events[0].message
    # Another child's delete, archived (not in the map): never held.
    other = Plan((DeleteJob("f-sub-2", "sub", "superseded"),), parent.status, (), None)
    assert children_hold(parent, other, failing, T0, max_delay=DAY).plan == other
