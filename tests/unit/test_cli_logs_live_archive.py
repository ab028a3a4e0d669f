"""`zen-flow logs` of a flow still in the cluster with the flow archive named: the archive is read only
for what the cluster no longer has, and what is current comes from the flow as it is. A Flow step whose
child runs with no pod yet, or a step not started, is explained by the cluster (not "its pods are gone");
a flow rerun after it was archived shows its rerun's attempts, not its earlier run's in their place."""

from __future__ import annotations

import itertools

import pytest
from cli_flows_rig import NS, FakeCluster, zen_flow
from cli_flows_rig import cluster_fixture as cluster_fixture  # the `cluster` fixture
from test_cli_archived_children import SUB, put_child, put_record
from test_cli_archived_logs import CHILD, run

from zen_flow.core.naming import job_name
from zen_flow.planner.archive_logs import log_key
from zen_flow_dev.testing.flows import flow_manifest, job_step
from zen_flow_dev.testing.s3_fake import FakeS3

FLOW_STEP = {"name": "sub", "type": "Flow", "flow": {"templateRef": {"name": "build"}}}
REF = {"apiVersion": "workflow.kube-zen.io/v1alpha1", "kind": "JobFlow"}


async def test_a_flow_step_whose_child_has_no_pod_yet_names_the_child_not_the_archive(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster.add(
        flow_manifest("p", NS, [FLOW_STEP]),
        {"phase": "Running", "steps": [{"name": "sub", "phase": "Running", "jobRef": CHILD}]},
    )
    code, out, err = await run(monkeypatch, capsys, FakeS3(), "logs", "p", "sub")
    assert (code, out) == (2, "")
    assert "step sub of jobflow p runs child flow p-sub-1a2b3c4d: see zen-flow logs p-sub-1a2b3c4d" in err
    assert "archive" not in err


async def test_a_flow_step_not_started_is_not_said_to_have_lost_its_pods(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster.add(
        flow_manifest("p", NS, [job_step("prep"), {**FLOW_STEP, "dependencies": ["prep"]}]),
        {"phase": "Running", "steps": [{"name": "prep", "phase": "Running", "jobRef": {"name": "p-prep"}}]},
    )
    code, out, err = await run(monkeypatch, capsys, FakeS3(), "logs", "p")
    assert (code, out) == (2, "")
    assert "no pod of jobflow p to show" in err
    assert "pods are gone" not in err
    code, _, err = await run(monkeypatch, capsys, FakeS3(), "logs", "p", "sub")
    assert code == 2
    assert "step sub of jobflow p is a Flow step and has made no child flow yet" in err


def archived_run(s3: FakeS3) -> None:
    """p ran prep (attempt 1, 2) and sub (its child per attempt 1, 2), failed and was archived."""
    runs = [
        {"step": "sub", "attempt": 1, "name": job_name("p", "sub", 0), "uid": "u-c1"},
        {"step": "sub", "attempt": 2, "name": job_name("p", "sub", 1), "uid": "u-c2"},
    ]
    statuses = [
        {"name": "prep", "phase": "Failed", "retryCount": 1, "jobRef": {"name": job_name("p", "prep", 1)}},
        {"name": "sub", "phase": "Failed", "retryCount": 1, "jobRef": {**REF, **runs[1]}},
    ]
    entry = {"job": job_name("p", "prep", 1), "step": "prep", "attempt": 2, "pod": "prep-pod"}
    logs = [{**entry, "container": "main", "key": "k", "bytes": 1}]
    put_record(s3, "p", "u-p", [job_step("prep"), SUB], statuses, logs=logs, children=runs)
    key = log_key("jobflows/", NS, "p", "u-p", "prep", 2, "prep-pod", "main")
    s3.put(key, b"the earlier run's prep\n")
    put_child(s3, job_name("p", "sub", 1), "u-c2", "the earlier run's")


async def test_a_rerun_flow_shows_its_rerun_not_its_earlier_archived_run(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    s3 = FakeS3()
    archived_run(s3)
    # `zen-flow retry`: attempt 3 of both steps runs, no pod yet; sub's child exists, with no pod either.
    third = job_name("p", "sub", 2)
    flow = flow_manifest("p", NS, [job_step("prep"), SUB])
    flow["metadata"]["uid"] = "u-p"
    statuses = [
        {"name": "prep", "phase": "Running", "retryCount": 2, "jobRef": {"name": job_name("p", "prep", 2)}},
        {"name": "sub", "phase": "Running", "retryCount": 2, "jobRef": {**REF, "name": third, "uid": "u-c3"}},
    ]
    cluster.add(flow, {"phase": "Running", "steps": statuses})
    cluster.add(flow_manifest(third, NS, [job_step("zeta")]), {"phase": "Running"})
    cluster.jobs.add(job_name("p", "prep", 2))
    code, out, err = await run(monkeypatch, capsys, s3, "logs", "p", "sub")
    assert (code, out) == (2, "")
    assert f"step sub of jobflow p runs child flow {third}: see zen-flow logs {third}" in err
    code, out, err = await run(monkeypatch, capsys, s3, "logs", "p", "prep")
    assert (code, out) == (2, "")
    assert "no pod of jobflow p step prep to show" in err
    code, out, _ = await run(monkeypatch, capsys, s3, "logs", "p")
    assert (code, out) == (2, "")
    # An earlier attempt, asked for, is still read back from the archive.
    code, out, err = await run(monkeypatch, capsys, s3, "logs", "p", "sub", "--attempt", "2")
    earlier = ["[sub/zeta] the earlier run's zeta", "[sub/alpha] the earlier run's alpha"]
    assert (code, out.splitlines()) == (0, earlier)
    assert "these logs come from the archive" in err


def test_the_deepest_child_flow_the_planner_makes_is_shown(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    # Child flows nest at most MAX_FLOW_DEPTH (4) deep below the flow a user made (planner/children.py).
    names = ["p", "c1", "c2", "c3", "c4"]
    for name, child in itertools.pairwise(names):
        status = {"name": "sub", "phase": "Running", "jobRef": {**REF, "name": child}}
        cluster.add(flow_manifest(name, NS, [FLOW_STEP]), {"phase": "Running", "steps": [status]})
    cluster.add(
        flow_manifest("c4", NS, [job_step("leaf")]),
        {"phase": "Running", "steps": [{"name": "leaf", "phase": "Running", "jobRef": {"name": "c4-leaf"}}]},
    )
    cluster.pods["c4-leaf"] = [
        {"metadata": {"name": "c4-leaf-x"}, "spec": {"containers": [{"name": "main"}]}}
    ]
    code, out, err = zen_flow(capsys, "logs", "p")
    assert (code, out.splitlines()) == (0, ["[sub/sub/sub/sub/leaf] hello"]), err
