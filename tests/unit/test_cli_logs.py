"""`zen-flow logs` against an in-memory apiserver (cli_flows_rig): why a step has no pod to show, and the
apiserver's refusals as the user reads them."""

from __future__ import annotations

from typing import Any

import pytest
from cli_flows_rig import NS, FakeCluster, zen_flow
from cli_flows_rig import cluster_fixture as cluster_fixture  # the `cluster` fixture

from zen_flow.kube.errors import from_status
from zen_flow_dev.testing.flows import flow_manifest, job_step, manual_step


def broken_flow(cluster: FakeCluster, **policy: Any) -> None:
    flow = flow_manifest("f", NS, [job_step("broken"), manual_step("gate", "broken")], executionPolicy=policy)
    job = {"name": "f-broken-2", "namespace": NS}
    status = {
        "phase": "Failed",
        "steps": [{"name": "broken", "phase": "Failed", "retryCount": 2, "jobRef": job}],
    }
    cluster.add(flow, status)


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["broken", "--attempt", "0"], "step broken has attempts 1-3 (--attempt 0)"),
        (["broken", "--attempt", "9"], "step broken has attempts 1-3 (--attempt 9)"),
        (["gate"], "step gate of jobflow f is a Manual step: it runs no pod"),
        (["broken"], "the Job f-broken-2 of step broken was deleted, and its pods with it"),
    ],
)
def test_logs_says_why_a_step_has_no_pod_to_show(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], argv: list[str], said: str
) -> None:
    broken_flow(cluster)
    code, out, err = zen_flow(capsys, "logs", "f", *argv)
    assert (code, out) == (2, "")
    assert said in err


def test_logs_of_a_flow_step_points_at_its_child_flow_and_get_names_it(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    step = {"name": "sub", "type": "Flow", "flow": {"templateRef": {"name": "build"}}}
    child = {"apiVersion": "workflow.kube-zen.io/v1alpha1", "kind": "JobFlow", "name": "p-sub-1a2b3c4d"}
    cluster.add(
        flow_manifest("p", NS, [step]),
        {"phase": "Running", "steps": [{"name": "sub", "phase": "Running", "jobRef": child}]},
    )
    code, out, err = zen_flow(capsys, "logs", "p", "sub")
    assert (code, out) == (2, "")
    assert "step sub of jobflow p runs child flow p-sub-1a2b3c4d: see zen-flow logs p-sub-1a2b3c4d" in err
    code, out, _ = zen_flow(capsys, "get", "p")
    assert code == 0
    assert "jobflow/p-sub-1a2b3c4d" in out


def test_logs_of_a_step_that_ended_before_any_job_shows_its_message(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    # A matrix over an output that cannot be used fails its stand-in before any Job: "has not started"
    # was wrong, and hid why.
    why = "spec.steps[1].matrix.parameters[0].valueFrom.jsonPath: step gen's output list must be a JSON array"
    outputs = {"parameters": [{"name": "list", "valueFrom": {"terminationMessage": {"container": "main"}}}]}
    matrix = {"parameters": [{"name": "x", "valueFrom": {"jsonPath": "gen:$.outputs.parameters.list"}}]}
    steps = [
        {"name": "gen", "phase": "Succeeded", "outputs": {"parameters": [{"name": "list", "value": "oops"}]}},
        {"name": "build", "phase": "Failed", "message": why},
        {"name": "after", "phase": "Skipped", "message": "dependency build failed"},
    ]
    manifest = flow_manifest(
        "f",
        NS,
        [
            job_step("gen", outputs=outputs),
            job_step("build", "gen", matrix=matrix),
            job_step("after", "build"),
        ],
    )
    cluster.add(manifest, {"phase": "Failed", "steps": steps})
    code, out, err = zen_flow(capsys, "logs", "f", "build")
    assert (code, out) == (2, "")
    assert f"step build of jobflow f ran no pod: it is Failed: {why}" in err
    code, _, err = zen_flow(capsys, "logs", "f", "after")
    assert "step after of jobflow f ran no pod: it is Skipped: dependency build failed" in err


def test_logs_of_a_memoized_step_says_it_ran_no_pod_and_whose_result_it_has(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    memoize = {"key": "k", "cache": {"configMap": {"name": "c"}}}
    message = "memoized: the result flow default/first (step build) stored at 2025-01-01T00:00:00Z, key k"
    steps = [{"name": "build", "phase": "Succeeded", "message": message}]
    cluster.add(
        flow_manifest("f", NS, [job_step("build", memoize=memoize)]), {"phase": "Succeeded", "steps": steps}
    )
    code, out, err = zen_flow(capsys, "logs", "f", "build")
    assert (code, out) == (2, "")
    assert f"step build of jobflow f ran no pod: {message}" in err


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        ([], "step build of jobflow f ran no pod: memoized (attempt 2): the result flow default/first"),
        (["--attempt", "2"], "step build of jobflow f ran no pod: memoized (attempt 2)"),
        # The attempt before it ran a pod: its Job was deleted when the served retry superseded it.
        (["--attempt", "1"], "jobRetention: LastAttempt keeps only the last attempt's Job"),
        (["--attempt", "3"], "step build has attempts 1-2 (--attempt 3)"),
    ],
)
def test_logs_of_a_retry_served_from_the_cache_says_which_attempt_ran_a_pod(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], argv: list[str], said: str
) -> None:
    memoize = {"key": "k", "cache": {"configMap": {"name": "c"}}}
    message = (
        "memoized (attempt 2): the result flow default/first (step build) stored at 2025-01-01T00:00:00Z"
    )
    steps = [{"name": "build", "phase": "Succeeded", "retryCount": 1, "message": message}]
    flow = flow_manifest(
        "f", NS, [job_step("build", memoize=memoize)], executionPolicy={"jobRetention": "LastAttempt"}
    )
    cluster.add(flow, {"phase": "Succeeded", "steps": steps})
    code, out, err = zen_flow(capsys, "logs", "f", "build", *argv)
    assert (code, out) == (2, "")
    assert said in err


@pytest.mark.parametrize(
    ("attempt", "hint"),
    [("1", True), ("3", False)],  # an earlier attempt's Job was deleted by the policy; the last one was not
)
def test_logs_of_an_attempt_jobretention_deleted_says_why(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], attempt: str, hint: bool
) -> None:
    broken_flow(cluster, jobRetention="LastAttempt")
    code, _, err = zen_flow(capsys, "logs", "f", "broken", "--attempt", attempt)
    assert code == 2
    assert "was deleted, and its pods with it" in err
    assert ("jobRetention: LastAttempt keeps only the last attempt's Job" in err) is hint


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["done"], "the Job f-done-1 of step done was deleted, and its pods with it (executionPolicy."),
        ([], "no pod of jobflow f to show (executionPolicy.jobRetention: FailedOnly"),
        (["broken", "--attempt", "1"], "jobRetention: FailedOnly keeps only the last attempt's Job"),
    ],
)
def test_logs_of_a_succeeded_step_whose_job_failedonly_deleted_says_why(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], argv: list[str], said: str
) -> None:
    flow = flow_manifest(
        "f", NS, [job_step("done"), job_step("broken")], executionPolicy={"jobRetention": "FailedOnly"}
    )
    steps = [
        {"name": "done", "phase": "Succeeded", "jobRef": {"name": "f-done-1", "namespace": NS}},
        {"name": "broken", "phase": "Failed", "retryCount": 1, "jobRef": {"name": "f-broken-2"}},
    ]
    cluster.add(flow, {"phase": "Failed", "steps": steps})
    code, out, err = zen_flow(capsys, "logs", "f", *argv)
    assert (code, out) == (2, "")
    assert said in err
    if argv[:1] != ["broken"]:
        assert "FailedOnly deletes a Succeeded step's Job once nothing needs it" in err
        assert "--archive-logs" in err  # where its logs are, when archived


def test_an_apiserver_error_without_a_reason_prints_no_empty_parentheses(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(*_: Any, **__: Any) -> Any:
        raise from_status(500, {"message": "etcdserver: leader changed"})

    monkeypatch.setattr(cluster, "request", refuse)
    code, _, err = zen_flow(capsys, "get", "f")
    assert code == 1
    assert err == "zen-flow get: the apiserver refused (500): etcdserver: leader changed\n"
