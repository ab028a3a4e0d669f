"""`zen-flow retry` against an in-memory apiserver (cli_flows_rig): what it reruns as the controller would,
what it refuses and why, and what was (or was not) written."""

from __future__ import annotations

from typing import Any

import pytest
from cli_flows_rig import NS, FakeCluster, annotation_writes, zen_flow
from cli_flows_rig import cluster_fixture as cluster_fixture  # the `cluster` fixture

from zen_flow_dev.testing.flows import flow_manifest, job_step, manual_step


def rejected_flow(gate: str = "rejected by bob") -> tuple[dict[str, Any], dict[str, Any]]:
    flow = flow_manifest("gate", NS, [job_step("build"), manual_step("approve", "build"), job_step("load")])
    status = {
        "phase": "Failed",
        "steps": [
            {"name": "build", "phase": "Succeeded"},
            {"name": "approve", "phase": "Failed", "message": gate},
            {"name": "load", "phase": "Succeeded"},
        ],
    }
    return flow, status


TIMED_OUT = "rejected: no decision within 60s (timeoutSeconds)"


@pytest.mark.parametrize("argv", [[], ["--step", "approve"]])
def test_retry_refuses_what_the_controller_would_ignore_a_rejected_gate(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    cluster.add(*rejected_flow())
    code, out, err = zen_flow(capsys, "retry", "gate", *argv)
    assert (code, out) == (2, "")
    assert "jobflow gate cannot rerun: step approve was rejected: a decision stays (resubmit" in err
    assert annotation_writes(cluster) == []


@pytest.mark.parametrize("argv", [[], ["--step", "approve"]])
def test_retry_reruns_a_gate_that_timed_out(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    cluster.add(*rejected_flow(TIMED_OUT))
    code, out, _ = zen_flow(capsys, "retry", "gate", *argv)
    assert code == 0
    assert out.startswith("jobflow default/gate: rerun requested (")
    annotations = cluster.flows["gate"]["metadata"]["annotations"]
    assert annotations.get("workflow.kube-zen.io/retry-steps") == (argv[1] if argv else None)


def test_retry_refuses_a_gate_decided_after_it_timed_out_saying_what_to_remove(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    flow, status = rejected_flow(TIMED_OUT)
    flow["metadata"]["annotations"] = {"approve.workflow.kube-zen.io/approve": "true"}
    cluster.add(flow, status)
    code, out, err = zen_flow(capsys, "retry", "gate")
    assert (code, out) == (2, "")
    assert (
        "jobflow gate cannot rerun: a decision given after its gate timed out would decide the rerun at "
        "once: approve.workflow.kube-zen.io/approve; remove it first "
        "(kubectl annotate jf gate -n default approve.workflow.kube-zen.io/approve-)"
    ) in err
    assert annotation_writes(cluster) == []


def test_retry_reruns_a_failed_job_step_and_names_the_ones_it_cannot(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    flow, status = rejected_flow()
    status["steps"][2]["phase"] = "Failed"
    flow["spec"]["steps"][1]["continueOnFailure"] = True  # the rejected gate does not fail the flow again
    cluster.add(flow, status)
    code, _, err = zen_flow(capsys, "retry", "gate", "--step", "load", "--step", "approve")
    assert code == 2
    assert "not failed Job steps or timed-out gates of jobflow gate: approve (rerunnable: load)" in err
    code, out, _ = zen_flow(capsys, "retry", "gate", "--step", "load")
    assert code == 0
    assert out.startswith("jobflow default/gate: rerun requested (")
    assert cluster.flows["gate"]["metadata"]["annotations"]["workflow.kube-zen.io/retry-steps"] == "load"


def test_retry_reruns_a_flow_stopped_while_paused_at_a_gate_as_the_controller_does(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    # Nothing failed: the gate the stop left undecided and the step after it are what the rerun runs.
    flow = flow_manifest("gate", NS, [job_step("build"), manual_step("approve", "build"), job_step("load")])
    flow["metadata"]["annotations"] = {"workflow.kube-zen.io/stop": "true"}
    stopped = {"type": "Failed", "status": "True", "reason": "Stopped", "message": "stopped by ops"}
    steps = [
        {"name": "build", "phase": "Succeeded"},
        {"name": "approve", "phase": "Skipped", "message": "no decision: stopped by ops"},
        {"name": "load", "phase": "Skipped", "message": "not started: stopped by ops"},
    ]
    cluster.add(flow, {"phase": "Failed", "conditions": [stopped], "steps": steps})
    code, _, err = zen_flow(capsys, "retry", "gate", "--step", "build")
    assert code == 2
    assert "cannot rerun: no failed Job step or timed-out gate to rerun among build" in err
    code, out, _ = zen_flow(capsys, "retry", "gate", "--step", "approve")
    assert (code, out.startswith("jobflow default/gate: rerun requested (")) == (0, True)
    annotations = cluster.flows["gate"]["metadata"]["annotations"]
    assert "workflow.kube-zen.io/stop" not in annotations


def test_retry_reruns_a_flow_that_failed_creating_its_resources_but_not_some_of_its_steps(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    flow = flow_manifest("etl", NS, [job_step("load")])
    failed = {"type": "Failed", "status": "True", "reason": "ResourceConflict", "message": "cannot create"}
    cluster.add(
        flow, {"phase": "Failed", "conditions": [failed], "steps": [{"name": "load", "phase": "Skipped"}]}
    )
    code, _, err = zen_flow(capsys, "retry", "etl", "--step", "load")
    assert code == 2
    assert "the flow failed creating its resources: rerun it without naming steps" in err
    assert annotation_writes(cluster) == []
    code, out, _ = zen_flow(capsys, "retry", "etl")
    assert code == 0
    assert out.startswith("jobflow default/etl: rerun requested (")
