"""A Flow step's archived logs once its flow and its child flow are gone: `zen-flow archive logs PARENT
--step STEP` and `zen-flow logs`' archive fallback show the child flow's step logs as the live path does
(`[step/child-step] ...`, the child's dependency order, `--attempt N` that attempt's child), found
through the parent's record; a child not in the archive, or whose logs were not, is said so, naming it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cli_flows_rig import NS, FakeCluster
from cli_flows_rig import cluster_fixture as cluster_fixture  # the `cluster` fixture
from test_cli_archived_logs import run

from zen_flow.core.naming import job_name
from zen_flow.planner.archive_logs import log_key
from zen_flow.planner.archive_records import record_key
from zen_flow_dev.testing.flows import flow_manifest, job_step
from zen_flow_dev.testing.s3_fake import FakeS3

SUB = {"name": "sub", "type": "Flow", "flow": {"templateRef": {"name": "build"}}, "dependencies": ["prep"]}
FIRST, LATEST = job_name("p", "sub", 0), job_name("p", "sub", 1)


def put_record(
    s3: FakeS3,
    name: str,
    uid: str,
    steps: list[dict[str, Any]],
    statuses: list[dict[str, Any]],
    *,
    logs: list[dict[str, Any]] | None = None,
    children: list[dict[str, Any]] | None = None,
    parent: str = "",
) -> None:
    flow = flow_manifest(name, NS, steps)
    flow["metadata"]["uid"] = uid
    if parent:
        owner = {"apiVersion": "workflow.kube-zen.io/v1alpha1", "kind": "JobFlow", "name": "p", "uid": parent}
        flow["metadata"]["ownerReferences"] = [{**owner, "controller": True}]
    record: dict[str, Any] = {
        "recordVersion": 1,
        "flow": {**flow, "status": {"phase": "Succeeded", "steps": statuses}},
        "jobs": [],
    }
    if logs is not None:
        record["logs"] = logs
    if children is not None:
        record["children"] = children
    s3.put(record_key("jobflows/", NS, name, uid, "2026-03-01T00:00:00Z"), json.dumps(record).encode())


def put_log(s3: FakeS3, flow: str, uid: str, step: str, text: str, container: str = "main") -> None:
    s3.put(log_key("jobflows/", NS, flow, uid, step, 1, f"{step}-pod", container), text.encode())


def logged(step: str, key: bool = True) -> dict[str, Any]:
    entry: dict[str, Any] = {"job": f"j-{step}", "step": step, "attempt": 1, "pod": f"{step}-pod"}
    return {**entry, "container": "main", **({"key": "k", "bytes": 1} if key else {})}


def put_child(s3: FakeS3, name: str, uid: str, said: str, parent: str = "u-p") -> None:
    """A child flow's record and logs: steps zeta then alpha (dependency order is not name order)."""
    statuses = [{"name": s, "phase": "Succeeded", "jobRef": {"name": f"j-{s}"}} for s in ("zeta", "alpha")]
    logs = [logged("zeta"), logged("alpha")]
    steps = [job_step("zeta"), job_step("alpha", "zeta")]
    put_record(s3, name, uid, steps, statuses, logs=logs, parent=parent)
    put_log(s3, name, uid, "zeta", f"{said} zeta\n")
    put_log(s3, name, uid, "alpha", f"{said} alpha\n")


def put_parent(s3: FakeS3, *, children: bool = True, latest_uid: str = "u-c2") -> None:
    """Parent p: prep, then the Flow step sub, retried once (its child per attempt)."""
    ref = {"apiVersion": "workflow.kube-zen.io/v1alpha1", "kind": "JobFlow", "name": LATEST}
    statuses = [
        {"name": "prep", "phase": "Succeeded", "jobRef": {"name": "p-prep"}},
        {"name": "sub", "phase": "Succeeded", "retryCount": 1, "jobRef": {**ref, "uid": latest_uid}},
    ]
    runs = [
        {"step": "sub", "attempt": 1, "name": FIRST, "uid": "u-c1"},
        {"step": "sub", "attempt": 2, "name": LATEST, "uid": "u-c2"},
    ]
    put_record(
        s3,
        "p",
        "u-p",
        [job_step("prep"), SUB],
        statuses,
        logs=[logged("prep")],
        children=runs if children else None,
    )
    put_log(s3, "p", "u-p", "prep", "prepared\n")


def family() -> FakeS3:
    s3 = FakeS3()
    put_parent(s3)
    put_child(s3, FIRST, "u-c1", "first")
    put_child(s3, LATEST, "u-c2", "second")
    return s3


async def test_archive_logs_of_a_flow_step_are_its_latest_childs_steps_in_its_dependency_order(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = await run(monkeypatch, capsys, family(), "archive", "logs", "p", "--step", "sub")
    assert (code, out.splitlines()) == (0, ["[sub/zeta] second zeta", "[sub/alpha] second alpha"]), err
    code, out, _ = await run(
        monkeypatch, capsys, family(), "archive", "logs", "p", "--step", "sub", "--attempt", "1"
    )
    assert (code, out.splitlines()) == (0, ["[sub/zeta] first zeta", "[sub/alpha] first alpha"])
    code, out, _ = await run(monkeypatch, capsys, family(), "archive", "logs", "p")
    assert out.splitlines() == ["[prep] prepared", "[sub/zeta] second zeta", "[sub/alpha] second alpha"]


async def test_logs_of_a_deleted_parents_flow_step_come_from_its_childs_archived_logs(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = await run(monkeypatch, capsys, family(), "logs", "p", "sub")
    assert (code, out.splitlines()) == (0, ["[sub/zeta] second zeta", "[sub/alpha] second alpha"])
    assert "the flow is deleted; these logs come from the archive" in err


async def test_a_record_without_its_children_names_the_latest_child_and_the_owner_finds_an_earlier_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    s3 = FakeS3()
    put_parent(s3, children=False)  # a record written before `children`: jobRef names the latest
    put_child(s3, FIRST, "u-c0", "another parent's", parent="u-other")  # the same name, not ours
    put_child(s3, FIRST, "u-c1", "first")
    put_child(s3, LATEST, "u-c2", "second")
    code, out, _ = await run(monkeypatch, capsys, s3, "archive", "logs", "p", "--step", "sub")
    assert (code, out.splitlines()) == (0, ["[sub/zeta] second zeta", "[sub/alpha] second alpha"])
    code, out, _ = await run(
        monkeypatch, capsys, s3, "archive", "logs", "p", "--step", "sub", "--attempt", "1"
    )
    assert (code, out.splitlines()) == (0, ["[sub/zeta] first zeta", "[sub/alpha] first alpha"])
    code, out, err = await run(
        monkeypatch, capsys, s3, "archive", "logs", "p", "--step", "sub", "--attempt", "3"
    )
    assert (code, out) == (1, "")
    assert "step sub has attempts 1-2 (--attempt 3)" in err


async def test_a_child_missing_from_the_archive_is_named_with_why(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    s3 = FakeS3()
    put_parent(s3)  # no child's record, no child's log
    code, out, err = await run(monkeypatch, capsys, s3, "archive", "logs", "p", "--step", "sub")
    assert (code, out) == (1, "")
    assert f"step sub attempt 2 ran child flow {LATEST} (uid u-c2): its record is not in the archive" in err
    assert "not archived yet" in err
    code, out, err = await run(monkeypatch, capsys, s3, "logs", "p", "sub")
    assert (code, out) == (1, "")  # as `archive logs` for the same answer
    assert f"ran child flow {LATEST} (uid u-c2): its record is not in the archive" in err


async def test_a_child_whose_logs_were_not_archived_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    s3 = FakeS3()
    put_parent(s3)
    put_record(s3, LATEST, "u-c2", [job_step("zeta")], [], parent="u-p")  # a record with no `logs`
    code, out, err = await run(monkeypatch, capsys, s3, "archive", "logs", "p", "--step", "sub")
    assert (code, out) == (1, "")
    assert f"ran child flow {LATEST} (uid u-c2): its step logs were not archived (--archive-logs" in err


async def test_a_childs_logs_its_record_says_were_unavailable_are_said_with_why(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    s3 = FakeS3()
    put_parent(s3)
    statuses = [{"name": s, "phase": "Succeeded"} for s in ("zeta", "alpha")]
    logs = [
        {"job": "j-zeta", "step": "zeta", "attempt": 1, "unavailable": "no pod of the Job is left to read"},
        logged("alpha"),
    ]
    put_record(
        s3, LATEST, "u-c2", [job_step("zeta"), job_step("alpha", "zeta")], statuses, logs=logs, parent="u-p"
    )
    put_log(s3, LATEST, "u-c2", "alpha", "alpha ran\n")
    code, out, err = await run(monkeypatch, capsys, s3, "archive", "logs", "p", "--step", "sub")
    assert (code, out.splitlines()) == (0, ["[sub/alpha] alpha ran"])
    assert "step sub/zeta attempt 1: no log archived: no pod of the Job is left to read" in err


async def test_nested_flow_steps_are_followed_down(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    s3 = FakeS3()
    put_parent(s3)
    inner = job_name(LATEST, "deep", 0)
    deep = {"name": "deep", "type": "Flow", "flow": {"templateRef": {"name": "t"}}}
    ref = {"kind": "JobFlow", "name": inner, "uid": "u-g"}
    put_record(s3, LATEST, "u-c2", [deep], [{"name": "deep", "phase": "Succeeded", "jobRef": ref}], logs=[],
               parent="u-p")  # fmt: skip
    put_record(s3, inner, "u-g", [job_step("leaf")], [], logs=[logged("leaf")], parent="u-c2")
    put_log(s3, inner, "u-g", "leaf", "deep down\n")
    put_log(s3, inner, "u-g", "leaf", "beside\n", container="sidecar")
    code, out, _ = await run(monkeypatch, capsys, s3, "archive", "logs", "p", "--step", "sub")
    assert (code, out.splitlines()) == (
        0,
        ["[sub/deep/leaf/main] deep down", "[sub/deep/leaf/sidecar] beside"],
    )


async def test_the_deepest_child_flow_the_planner_makes_is_shown_and_a_deeper_one_is_said(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Child flows nest at most MAX_FLOW_DEPTH (4) deep below the flow a user made (planner/children.py).
    s3 = FakeS3()
    names = ["p", "c1", "c2", "c3", "c4", "c5"]
    for level in range(5):
        runs = [{"step": "sub", "attempt": 1, "name": names[level + 1], "uid": f"u-{level + 1}"}]
        steps = [{**SUB, "dependencies": []}, job_step("leaf")]
        put_record(s3, names[level], f"u-{level}", steps, [], logs=[logged("leaf")], children=runs)
        put_log(s3, names[level], f"u-{level}", "leaf", f"level {level}\n")
    put_record(s3, "c5", "u-5", [job_step("leaf")], [], logs=[logged("leaf")])
    put_log(s3, "c5", "u-5", "leaf", "too deep\n")
    code, out, err = await run(monkeypatch, capsys, s3, "archive", "logs", "p")
    assert code == 0
    assert out.splitlines() == [
        "[sub/sub/sub/sub/leaf] level 4",
        "[sub/sub/sub/leaf] level 3",
        "[sub/sub/leaf] level 2",
        "[sub/leaf] level 1",
        "[leaf] level 0",
    ]
    assert "step sub/sub/sub/sub/sub: child flows nest at most 4 deep: its child is not shown" in err


async def test_a_latest_attempt_that_made_no_child_does_not_show_an_earlier_attempts(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    s3 = FakeS3()
    runs = [{"step": "sub", "attempt": 1, "name": FIRST, "uid": "u-c1"}]
    refused = {"name": "sub", "phase": "Failed", "retryCount": 1, "message": "the child was refused"}
    put_record(s3, "p", "u-p", [job_step("prep"), SUB], [refused], logs=[], children=runs)
    put_child(s3, FIRST, "u-c1", "first")
    code, out, err = await run(monkeypatch, capsys, s3, "archive", "logs", "p", "--step", "sub")
    assert (code, out) == (1, "")
    said = "step sub attempt 2 of jobflow p names no child flow: the child was refused"
    said += "; an earlier attempt's: --attempt 1"
    assert said in err
    code, out, _ = await run(
        monkeypatch, capsys, s3, "archive", "logs", "p", "--step", "sub", "--attempt", "1"
    )
    assert (code, out.splitlines()) == (0, ["[sub/zeta] first zeta", "[sub/alpha] first alpha"])
    code, out, err = await run(monkeypatch, capsys, s3, "logs", "p", "sub")  # the flow is deleted
    assert (code, out) == (1, "")
    assert said in err


async def test_a_record_naming_itself_as_a_child_is_walked_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Not a record the controller writes (a child is a flow of its own): its Flow steps would each walk
    # the record again, down to the nesting limit, multiplying its logs.
    s3 = FakeS3()
    steps = [job_step("prep"), SUB, {**SUB, "name": "again"}]
    runs = [
        {"step": "sub", "attempt": 1, "name": "p", "uid": "u-p"},
        {"step": "again", "attempt": 1, "name": "p", "uid": "u-p"},
    ]
    put_record(s3, "p", "u-p", steps, [], logs=[logged("prep")], children=runs)
    put_log(s3, "p", "u-p", "prep", "prepared\n")
    code, out, err = await run(monkeypatch, capsys, s3, "archive", "logs", "p")
    assert (code, out) == (0, "prepared\n")
    assert (
        "step sub attempt 1 ran child flow p (uid u-p): a flow this walk already shows: not followed again"
        in err
    )
    assert (
        "step again attempt 1 ran child flow p (uid u-p): a flow this walk already shows: not followed again"
        in err
    )


async def test_logs_of_a_deleted_flow_the_archive_has_no_log_of_exit_1_as_archive_logs(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    s3 = FakeS3()
    put_parent(s3)  # its record, no child's: something to say, no log to show
    code, out, err = await run(monkeypatch, capsys, s3, "logs", "p", "sub")
    assert (code, out) == (1, "")
    assert "jobflow p: the flow is deleted, and the archive s3://flows" in err
    code, out, _ = await run(monkeypatch, capsys, s3, "archive", "logs", "p", "--step", "sub")
    assert (code, out) == (1, "")
    code, out, err = await run(monkeypatch, capsys, FakeS3(), "logs", "p", "sub")  # nothing archived
    assert (code, out) == (1, "")
    assert "not found" in err
