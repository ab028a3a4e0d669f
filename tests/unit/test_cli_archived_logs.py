"""`zen-flow logs` once a step's pods are gone: the flow archive's copy (`--archive-logs`), said to come
from there; `zen-flow archive logs` from the store alone; and a Flow step's logs, its child flow's steps'."""

from __future__ import annotations

import asyncio
import json

import pytest
from cli_flows_rig import NS, FakeCluster, zen_flow
from cli_flows_rig import cluster_fixture as cluster_fixture  # the `cluster` fixture

from zen_flow.core.naming import job_name
from zen_flow.planner.archive_logs import log_key
from zen_flow.planner.archive_records import record_key
from zen_flow_dev.testing.flows import flow_manifest, job_step
from zen_flow_dev.testing.s3_fake import ACCESS_KEY, SECRET_KEY, FakeS3, fake_s3

CHILD = {"apiVersion": "workflow.kube-zen.io/v1alpha1", "kind": "JobFlow", "name": "p-sub-1a2b3c4d"}


def archived(s3: FakeS3, step: str, attempt: int, container: str, text: str, uid: str = "u-1") -> None:
    s3.put(
        log_key("jobflows/", NS, "f", uid, step, attempt, f"f-{step}-pod{attempt}", container), text.encode()
    )


def filled() -> FakeS3:
    s3 = FakeS3()
    s3.put(
        record_key("jobflows/", NS, "f", "u-0", "2026-02-01T00:00:00Z"), b"{}"
    )  # an older flow of that name
    s3.put(record_key("jobflows/", NS, "f", "u-1", "2026-03-01T00:00:00Z"), b"{}")
    archived(s3, "load", 1, "main", "first try\n")
    archived(s3, "load", 2, "main", "loaded\nrows: 3\n")
    archived(s3, "report", 1, "main", "report\n")
    archived(s3, "report", 1, "sidecar", "side\n")
    archived(s3, "report", 1, "zf-artifacts-out", "uploaded\n")  # zen-flow's own: left out
    archived(s3, "load", 1, "main", "someone else's\n", uid="u-0")
    return s3


def gone_flow(cluster: FakeCluster) -> None:
    flow = flow_manifest("f", NS, [job_step("load"), job_step("report", "load")])
    flow["metadata"]["uid"] = "u-1"
    steps = [
        {"name": "load", "phase": "Succeeded", "retryCount": 1, "jobRef": {"name": "f-load-r1"}},
        {"name": "report", "phase": "Succeeded", "jobRef": {"name": "f-report"}},
    ]
    cluster.add(flow, {"phase": "Succeeded", "steps": steps})


async def run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], s3: FakeS3, *argv: str
) -> tuple[int, str, str]:
    monkeypatch.setenv("ZEN_FLOW_ARCHIVE_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("ZEN_FLOW_ARCHIVE_SECRET_ACCESS_KEY", SECRET_KEY)
    async with fake_s3(s3) as (_, endpoint):
        monkeypatch.setenv("ZEN_FLOW_ARCHIVE_S3_ENDPOINT", endpoint)
        monkeypatch.setenv("ZEN_FLOW_ARCHIVE_S3_BUCKET", s3.bucket)
        return await asyncio.to_thread(zen_flow, capsys, *argv)


async def test_logs_of_steps_whose_pods_are_gone_come_from_the_archive_and_say_so(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    gone_flow(cluster)
    code, out, err = await run(monkeypatch, capsys, filled(), "logs", "f", "load")
    assert code == 0
    assert out.splitlines() == ["loaded", "rows: 3"]  # the latest attempt, of this flow (uid u-1)
    assert "its pods are gone; these logs come from the archive s3://flows" in err
    code, out, _ = await run(monkeypatch, capsys, filled(), "logs", "f", "load", "--attempt", "1")
    assert (code, out) == (0, "first try\n")
    code, out, _ = await run(monkeypatch, capsys, filled(), "logs", "f")
    assert out.splitlines() == [
        "[load/main] loaded",
        "[load/main] rows: 3",
        "[report/main] report",
        "[report/sidecar] side",
    ]


async def test_logs_of_a_deleted_flow_come_from_its_newest_archived_run(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = await run(monkeypatch, capsys, filled(), "logs", "f", "report")
    assert code == 0
    assert out.splitlines() == ["[report/main] report", "[report/sidecar] side"]
    assert "the flow is deleted; these logs come from the archive" in err
    assert "(uid u-1)" in err


async def test_with_no_archived_logs_the_clusters_answer_stands(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    gone_flow(cluster)
    code, out, err = await run(monkeypatch, capsys, FakeS3(), "logs", "f", "load")
    assert (code, out) == (2, "")
    assert "the Job f-load-r1 of step load was deleted, and its pods with it" in err
    assert "archive" not in err


async def test_archive_logs_reads_the_store_alone(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = await run(monkeypatch, capsys, filled(), "archive", "logs", "f", "--step", "load")
    assert (code, out) == (0, "loaded\nrows: 3\n")
    assert f"logs of jobflow {NS}/f (uid u-1) from the archive s3://flows" in err
    argv = ("archive", "logs", "f", "--uid", "u-0")
    code, out, _ = await run(monkeypatch, capsys, filled(), *argv)
    assert (code, out) == (0, "someone else's\n")
    code, out, err = await run(monkeypatch, capsys, filled(), "archive", "logs", "f", "--step", "nope")
    assert (code, out) == (1, "")
    assert "no archived logs of step nope of default/f (uid u-1)" in err


async def test_an_object_whose_attempt_is_no_ascii_number_is_passed_over(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # `"\N{SUPERSCRIPT TWO}".isdigit()` is True, but int() refuses it: one such object in the bucket
    # once ended both commands in a traceback.
    s3 = filled()
    s3.put(f"jobflows/~logs/{NS}/f/u-1/load/\N{SUPERSCRIPT TWO}/f-load-pod/main.log", b"not ours\n")
    code, out, _ = await run(monkeypatch, capsys, s3, "archive", "logs", "f", "--step", "load")
    assert (code, out) == (0, "loaded\nrows: 3\n")
    code, out, _ = await run(monkeypatch, capsys, s3, "logs", "f", "load")  # the flow is deleted
    assert (code, out) == (0, "loaded\nrows: 3\n")


def test_logs_of_a_flow_step_are_its_child_flows_steps_logs(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    step = {"name": "sub", "type": "Flow", "flow": {"templateRef": {"name": "build"}}}
    cluster.add(
        flow_manifest("p", NS, [job_step("prep"), {**step, "dependencies": ["prep"]}]),
        {
            "phase": "Running",
            "steps": [
                {"name": "prep", "phase": "Succeeded", "jobRef": {"name": "p-prep"}},
                {"name": "sub", "phase": "Running", "jobRef": CHILD},
            ],
        },
    )
    child = flow_manifest("p-sub-1a2b3c4d", NS, [job_step("compile"), job_step("test", "compile")])
    cluster.add(
        child,
        {"phase": "Running", "steps": [{"name": "compile", "phase": "Succeeded", "jobRef": {"name": "c-1"}}]},
    )
    for job in ("p-prep", "c-1"):
        cluster.pods[job] = [{"metadata": {"name": f"{job}-x"}, "spec": {"containers": [{"name": "main"}]}}]
    code, out, err = zen_flow(capsys, "logs", "p", "sub")
    assert (code, err) == (0, "")
    assert out.splitlines() == ["[sub/compile] hello"]
    code, out, _ = zen_flow(capsys, "logs", "p")
    assert out.splitlines() == ["[prep] hello", "[sub/compile] hello"]


def test_logs_of_a_flow_steps_attempt_are_that_attempts_child_flows(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    step = {"name": "sub", "type": "Flow", "flow": {"templateRef": {"name": "build"}}}
    latest = {**CHILD, "name": job_name("p", "sub", 1)}
    cluster.add(
        flow_manifest("p", NS, [step]),
        {
            "phase": "Running",
            "steps": [{"name": "sub", "phase": "Running", "retryCount": 1, "jobRef": latest}],
        },
    )
    for attempt, child_step in ((0, "first"), (1, "second")):
        child = flow_manifest(job_name("p", "sub", attempt), NS, [job_step(child_step)])
        job = f"c-{attempt}"
        cluster.add(child, {"phase": "Running", "steps": [{"name": child_step, "jobRef": {"name": job}}]})
        cluster.pods[job] = [{"metadata": {"name": f"{job}-x"}, "spec": {"containers": [{"name": "main"}]}}]
    code, out, _ = zen_flow(capsys, "logs", "p", "sub", "--attempt", "1")
    assert (code, out.splitlines()) == (0, ["[sub/first] hello"])
    code, out, _ = zen_flow(capsys, "logs", "p", "sub")
    assert (code, out.splitlines()) == (0, ["[sub/second] hello"])
    code, out, err = zen_flow(capsys, "logs", "p", "sub", "--attempt", "9")  # no such attempt: no child
    assert (code, out) == (2, "")
    assert "step sub has attempts 1-2 (--attempt 9)" in err
    assert job_name("p", "sub", 8) not in err


async def test_logs_of_a_deleted_flow_are_in_the_dependency_order_of_its_archived_record(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    s3 = FakeS3()
    flow = flow_manifest("f", NS, [job_step("zeta"), job_step("alpha", "zeta")])
    flow["metadata"]["uid"] = "u-1"
    record = {"recordVersion": 1, "flow": {**flow, "status": {"phase": "Succeeded"}}, "jobs": []}
    s3.put(record_key("jobflows/", NS, "f", "u-1", "2026-03-01T00:00:00Z"), json.dumps(record).encode())
    archived(s3, "alpha", 1, "main", "second\n")
    archived(s3, "zeta", 1, "main", "first\n")
    code, out, _ = await run(monkeypatch, capsys, s3, "logs", "f")
    assert (code, out.splitlines()) == (0, ["[zeta] first", "[alpha] second"])


async def test_a_matrix_steps_name_reads_its_items_archived_logs(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    s3 = FakeS3()
    build = job_step("build", matrix={"parameters": [{"name": "shard", "values": ["a", "b"]}]})
    flow = flow_manifest("f", NS, [job_step("gen"), {**build, "dependencies": ["gen"]}])
    flow["metadata"]["uid"] = "u-1"
    record = {"recordVersion": 1, "flow": {**flow, "status": {"phase": "Succeeded"}}, "jobs": []}
    s3.put(record_key("jobflows/", NS, "f", "u-1", "2026-03-01T00:00:00Z"), json.dumps(record).encode())
    archived(s3, "gen", 1, "main", "gen\n")
    archived(s3, "build-0", 1, "main", "shard a\n")
    archived(s3, "build-1", 1, "main", "shard b\n")
    want = ["[build-0] shard a", "[build-1] shard b"]
    code, out, _ = await run(monkeypatch, capsys, s3, "archive", "logs", "f", "--step", "build")
    assert (code, out.splitlines()) == (0, want)
    code, out, err = await run(monkeypatch, capsys, s3, "logs", "f", "build")  # the flow is deleted
    assert (code, out.splitlines()) == (0, want)
    assert "the flow is deleted" in err


async def test_a_latest_attempt_its_record_says_had_no_log_is_said_not_replaced_by_an_earlier_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    s3 = FakeS3()
    flow = flow_manifest("f", NS, [job_step("load")])
    flow["metadata"]["uid"] = "u-1"
    gone = "no pod of the Job is left to read"
    logs = [
        {
            "job": "f-load",
            "step": "load",
            "attempt": 1,
            "pod": "p",
            "container": "main",
            "key": "k",
            "bytes": 9,
        },
        {"job": "f-load-r1", "step": "load", "attempt": 2, "unavailable": gone},
    ]
    record = {
        "recordVersion": 1,
        "flow": {**flow, "status": {"phase": "Succeeded"}},
        "jobs": [],
        "logs": logs,
    }
    s3.put(record_key("jobflows/", NS, "f", "u-1", "2026-03-01T00:00:00Z"), json.dumps(record).encode())
    archived(s3, "load", 1, "main", "first try\n")
    code, out, err = await run(monkeypatch, capsys, s3, "archive", "logs", "f", "--step", "load")
    assert (code, out) == (1, "")
    assert f"step load attempt 2: no log archived: {gone}" in err
    code, out, _ = await run(monkeypatch, capsys, s3, "archive", "logs", "f", "--attempt", "1")
    assert (code, out) == (0, "first try\n")
