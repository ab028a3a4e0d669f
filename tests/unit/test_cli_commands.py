"""`zen-flow approve|reject|stop` against an in-memory apiserver (cli_flows_rig), and a matrix step named
where one step is expected: what the user is told, the exit status, and what was (or was not) written."""

from __future__ import annotations

from typing import Any

import pytest
from cli_flows_rig import NS, FakeCluster, annotation_writes, gate_flow, zen_flow
from cli_flows_rig import cluster_fixture as cluster_fixture  # the `cluster` fixture

from zen_flow_dev.testing.flows import flow_manifest, job_step, manual_step

# --- approve / reject ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flow_phase", "step_phase", "said"),
    [
        ("Running", "Succeeded", "step approve of jobflow gate is Succeeded: it can no longer be decided"),
        ("Running", "Skipped", "step approve of jobflow gate is Skipped: it can no longer be decided"),
        ("Failed", "Failed", "jobflow gate has ended (Failed): step approve can no longer be decided"),
        (
            "Succeeded",
            "Succeeded",
            "jobflow gate has ended (Succeeded): step approve can no longer be decided",
        ),
    ],
)
@pytest.mark.parametrize("verb", ["approve", "reject"])
def test_a_decision_that_comes_too_late_is_refused_and_nothing_is_written(
    cluster: FakeCluster,
    capsys: pytest.CaptureFixture[str],
    verb: str,
    flow_phase: str,
    step_phase: str,
    said: str,
) -> None:
    cluster.add(gate_flow(), {"phase": flow_phase, "steps": [{"name": "approve", "phase": step_phase}]})
    code, out, err = zen_flow(capsys, verb, "gate", "approve")
    assert (code, out) == (2, "")
    assert said in err
    assert annotation_writes(cluster) == []


def test_a_step_decided_one_way_cannot_be_decided_the_other(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    flow = gate_flow()
    flow["metadata"]["annotations"] = {
        "approve.workflow.kube-zen.io/approve": "true",
        "approved-by.workflow.kube-zen.io/approve": "alice",
    }
    cluster.add(flow, {"phase": "Running", "steps": [{"name": "approve", "phase": "Pending"}]})
    code, _, err = zen_flow(capsys, "reject", "gate", "approve")
    assert code == 2
    assert "step approve of jobflow gate is already approved by alice" in err
    assert annotation_writes(cluster) == []


@pytest.mark.parametrize("step_phase", ["Pending", "PendingApproval", None])
def test_a_gate_waiting_or_not_reached_yet_is_decided(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], step_phase: str | None
) -> None:
    steps = [{"name": "approve", "phase": step_phase}] if step_phase else []
    cluster.add(gate_flow(), {"phase": "Running", "steps": steps})
    code, out, _ = zen_flow(capsys, "approve", "gate", "approve", "-m", "ok")
    assert (code, out) == (0, "jobflow default/gate: step approve approved\n")
    assert cluster.flows["gate"]["metadata"]["annotations"]["approve.workflow.kube-zen.io/approve"] == "true"


def tallied_gate_flow(annotations: dict[str, str] | None = None) -> dict[str, Any]:
    gate = manual_step("approve", "build", approval={"required": 2})
    return flow_manifest("gate", NS, [job_step("build"), gate], annotations=annotations)


def test_each_approval_of_a_gate_needing_several_writes_a_fresh_value(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    # The webhook counts a user when the approve annotation changes: "true" written again would be
    # no change, and the second approver would not be counted.
    cluster.add(
        tallied_gate_flow(), {"phase": "Paused", "steps": [{"name": "approve", "phase": "PendingApproval"}]}
    )
    values = []
    for _ in range(2):
        code, out, _ = zen_flow(capsys, "approve", "gate", "approve")
        assert (code, out) == (
            0,
            "jobflow default/gate: step approve approved (it needs 2 distinct approvals)\n",
        )
        values.append(
            cluster.flows["gate"]["metadata"]["annotations"]["approve.workflow.kube-zen.io/approve"]
        )
    assert all(v.startswith("true-") for v in values)
    assert values[0] != values[1]


def test_a_gate_still_counting_approvals_can_be_rejected(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    flow = tallied_gate_flow(
        {
            "approve.workflow.kube-zen.io/approve": "true-1",
            "approved-by.workflow.kube-zen.io/approve": "alice",
        }
    )
    cluster.add(flow, {"phase": "Paused", "steps": [{"name": "approve", "phase": "PendingApproval"}]})
    code, out, _ = zen_flow(capsys, "reject", "gate", "approve")
    assert (code, out) == (0, "jobflow default/gate: step approve rejected\n")
    assert cluster.flows["gate"]["metadata"]["annotations"]["reject.workflow.kube-zen.io/approve"] == "true"


# --- stop ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "value", "said"),
    [
        ([], "true", "stop requested"),
        (["--run-finally"], "RunFinally", "stop requested: its finally steps run first"),
    ],
)
def test_stop_asks_for_a_stop_now_or_one_that_runs_the_finally_steps_first(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], argv: list[str], value: str, said: str
) -> None:
    cluster.add(flow_manifest("nightly", NS, [job_step("load"), job_step("cleanup", **{"finally": True})]))
    code, out, _ = zen_flow(capsys, "stop", *argv, "nightly")
    assert (code, out) == (0, f"jobflow default/nightly: {said}\n")
    assert annotation_writes(cluster) == [{"metadata": {"annotations": {"workflow.kube-zen.io/stop": value}}}]


def test_stop_run_finally_says_a_flow_without_finally_steps_stops_now(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster.add(flow_manifest("nightly", NS, [job_step("load")]), {"phase": "Running"})
    code, out, _ = zen_flow(capsys, "stop", "--run-finally", "nightly")
    assert (code, out) == (
        0,
        "jobflow default/nightly: stop requested (it has no finally step: it stops now)\n",
    )


def test_stop_refuses_a_flow_that_has_ended(cluster: FakeCluster, capsys: pytest.CaptureFixture[str]) -> None:
    cluster.add(flow_manifest("nightly", NS, [job_step("load")]), {"phase": "Failed"})
    code, out, err = zen_flow(capsys, "stop", "--run-finally", "nightly")
    assert (code, out) == (2, "")
    assert "jobflow nightly has ended (Failed): nothing to stop" in err
    assert annotation_writes(cluster) == []


# --- a matrix step named where a step is expected --------------------------------------------------------


def matrix_flow(items: int) -> dict[str, Any]:
    values = [f"v{i}" for i in range(items)]
    build = job_step("build", matrix={"parameters": [{"name": "shard", "values": values}]})
    return flow_manifest("m", NS, [build, job_step("pub", "build")])


def test_logs_of_a_matrix_step_shows_each_of_its_items(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    steps = [
        {"name": f"build-{i}", "phase": "Succeeded", "jobRef": {"name": f"m-build-{i}"}} for i in range(3)
    ]
    cluster.add(matrix_flow(3), {"phase": "Running", "steps": steps})
    for i in range(3):
        pod = {"metadata": {"name": f"m-build-{i}-p"}, "spec": {"containers": [{"name": "main"}]}}
        cluster.pods[f"m-build-{i}"] = [pod]
    code, out, err = zen_flow(capsys, "logs", "m", "build")
    assert (code, err) == (0, "")
    assert out.splitlines() == ["[build-0] hello", "[build-1] hello", "[build-2] hello"]


@pytest.mark.parametrize("verb", ["approve", "reject"])
def test_deciding_a_matrix_step_says_it_is_one_and_nothing_is_written(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], verb: str
) -> None:
    cluster.add(matrix_flow(3), {"phase": "Running"})
    code, out, err = zen_flow(capsys, verb, "m", "build")
    assert (code, out) == (2, "")
    assert "step 'build' of jobflow m is a matrix step (its items run Jobs), not a Manual step" in err
    assert cluster.writes == []


def test_an_unknown_step_of_a_wide_matrix_flow_lists_a_few_names_and_the_count(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster.add(matrix_flow(256), {"phase": "Running"})
    for argv in (["logs", "m", "biuld"], ["approve", "m", "biuld"]):
        code, _, err = zen_flow(capsys, *argv)
        assert code == 2
        assert "build-0, build-1" in err
        assert "and 249 more)" in err  # 257 steps: 8 named
        assert "build-200" not in err
