"""`zen-flow approve|reject|stop|retry|submit --wait|logs` against an in-memory apiserver: what the user is
told, the exit status, and what was (or was not) written."""

from __future__ import annotations

import copy
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from zen_flow.cli import flows, main, session
from zen_flow.kube.errors import from_status
from zen_flow_dev.testing.flows import flow_manifest, job_step, manual_step

NS = "default"


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict):
            _merge(target.setdefault(key, {}), value)
        else:
            target[key] = value


class FakeCluster:
    """The JobFlows, pods and logs the CLI reads; every write it sends."""

    def __init__(self) -> None:
        self.flows: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, list[dict[str, Any]]] = {}  # by Job name
        self.jobs: set[str] = set()
        self.writes: list[tuple[str, str, Any]] = []
        self.reads_until_done: dict[str, list[dict[str, Any]]] = {}  # successive statuses of a flow

    def add(self, flow: dict[str, Any], status: dict[str, Any] | None = None) -> None:
        flow = copy.deepcopy(flow)
        flow["status"] = status or {}
        self.flows[flow["metadata"]["name"]] = flow

    async def request(
        self, method: str, path: str, body: Any = None, query: Any = (), content_type: str | None = None
    ) -> dict[str, Any]:
        parts = path.strip("/").split("/")
        if method != "GET":
            self.writes.append((method, path, copy.deepcopy(body)))
        if parts[-1] == "pods":
            job = dict(query)["labelSelector"].split("=", 1)[1]
            return {"items": self.pods.get(job, [])}
        if parts[-2:-1] == ["jobs"]:
            if parts[-1] not in self.jobs:
                raise from_status(
                    404, {"reason": "NotFound", "message": f'jobs.batch "{parts[-1]}" not found'}
                )
            return {}
        if method == "POST":
            made = copy.deepcopy(body)
            made["metadata"].setdefault("name", made["metadata"].get("generateName", "") + "x7k2p")
            made["status"] = {}
            self.flows[made["metadata"]["name"]] = made
            return made
        flow = self.flows.get(parts[-1])
        if flow is None:
            raise from_status(404, {"reason": "NotFound", "message": f"{parts[-1]} not found"})
        if method == "PATCH":
            _merge(flow, body)
        if method == "GET" and self.reads_until_done.get(parts[-1]):
            flow["status"] = self.reads_until_done[parts[-1]].pop(0)
        return copy.deepcopy(flow)

    async def request_raw(self, method: str, path: str, query: Any = ()) -> bytes:
        return b"hello\n"


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    fake = FakeCluster()

    @asynccontextmanager
    async def open_session(args: Any, out: Any = None) -> AsyncIterator[session.Session]:
        yield session.Session(fake, args.namespace or NS, sys.stdout)  # type: ignore[arg-type]

    monkeypatch.setattr(session, "open_session", open_session)
    return fake


def zen_flow(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    said = capsys.readouterr()
    return code, said.out, said.err


def annotation_writes(cluster: FakeCluster) -> list[Any]:
    return [body for method, _, body in cluster.writes if method == "PATCH"]


# --- approve / reject ------------------------------------------------------------------------------------


def gate_flow() -> dict[str, Any]:
    return flow_manifest(
        "gate", NS, [job_step("build"), manual_step("approve", "build"), job_step("ship", "approve")]
    )


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


# --- retry -----------------------------------------------------------------------------------------------


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


# --- logs, and the apiserver's refusals ------------------------------------------------------------------


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


# --- submit --wait -----------------------------------------------------------------------------------------


def paused(gate_phase: str = "PendingApproval") -> dict[str, Any]:
    steps = [{"name": "build", "phase": "Succeeded"}, {"name": "approve", "phase": gate_phase}]
    return {"phase": "Paused", "steps": [*steps, {"name": "ship", "phase": "Pending"}]}


def submitted(tmp_path: Path) -> str:
    path = tmp_path / "gate.yaml"
    path.write_text(yaml.safe_dump(gate_flow()))
    return str(path)


def test_submit_wait_says_once_that_the_flow_waits_for_an_approval(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flows, "WAIT_POLL_SECONDS", 0)
    done = {"phase": "Succeeded", "message": "all steps succeeded"}
    cluster.reads_until_done["gate"] = [{"phase": "Running"}, paused(), paused(), done]
    code, out, _ = zen_flow(capsys, "submit", submitted(tmp_path), "--wait")
    assert (code, out.splitlines()) == (
        0,
        [
            "jobflow default/gate created",
            "jobflow default/gate: waiting for approval of approve "
            "(zen-flow approve gate approve -n default)",
            "jobflow default/gate Succeeded: all steps succeeded",
        ],
    )


def test_submit_wait_that_times_out_at_a_gate_says_so(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flows, "WAIT_POLL_SECONDS", 0)
    cluster.reads_until_done["gate"] = [paused()]
    code, out, _ = zen_flow(capsys, "submit", submitted(tmp_path), "--wait", "--timeout", "0")
    assert code == 1
    assert out.splitlines()[-1] == "jobflow default/gate: waiting for approval of approve after 0s"


# --- submit --from-template --------------------------------------------------------------------------------


def test_submit_from_template_creates_a_flow_naming_it_with_the_argument_values(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = zen_flow(capsys, "submit", "--from-template", "build", "-p", "env=prod", "-p", "ref=v2")
    assert (code, out) == (0, "jobflow default/build-x7k2p created\n")
    [(method, path, body)] = cluster.writes
    assert (method, path) == ("POST", "/apis/workflow.kube-zen.io/v1alpha1/namespaces/default/jobflows")
    assert body["metadata"] == {"generateName": "build-", "namespace": "default"}
    assert body["spec"] == {
        "templateRef": {"name": "build"},
        "arguments": {"parameters": [{"name": "env", "value": "prod"}, {"name": "ref", "value": "v2"}]},
    }


def test_submit_from_template_cluster_names_a_cluster_template(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = zen_flow(capsys, "submit", "--from-template", "build", "--cluster", "-p", "env=prod")
    assert (code, out) == (0, "jobflow default/build-x7k2p created\n")
    [(_, _, body)] = cluster.writes
    assert body["spec"] == {
        "templateRef": {"name": "build", "clusterScope": True},
        "arguments": {"parameters": [{"name": "env", "value": "prod"}]},
    }


def test_submit_labels_each_flow_for_example_for_a_controller_instance(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # With every controller given an instance id, a flow without the label would be run by none.
    instance = "workflow.kube-zen.io/controller-instance=team-a"
    code, _, _ = zen_flow(capsys, "submit", "--from-template", "build", "--cluster", "-l", instance)
    assert code == 0
    code, _, _ = zen_flow(capsys, "submit", submitted(tmp_path), "-l", instance, "-l", "team=data")
    assert code == 0
    [(_, _, from_template), (_, _, from_file)] = cluster.writes
    assert from_template["metadata"]["labels"] == {"workflow.kube-zen.io/controller-instance": "team-a"}
    assert from_file["metadata"]["labels"]["workflow.kube-zen.io/controller-instance"] == "team-a"
    assert from_file["metadata"]["labels"]["team"] == "data"


@pytest.mark.parametrize(
    "bad", ["team", "=a", "team=a b", "Bad Key=a", "k=" + "v" * 64, "team=data\n", "team\n=data"]
)
def test_submit_refuses_a_bad_label_before_creating_anything(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], bad: str
) -> None:
    code, _, err = zen_flow(capsys, "submit", "--from-template", "build", "-l", bad)
    assert code == 2
    assert f"-l {bad!r}: expected KEY=VALUE" in err
    assert cluster.writes == []


def test_submit_cluster_needs_from_template(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = zen_flow(capsys, "submit", submitted(tmp_path), "--cluster")
    assert code == 2
    assert "--cluster names a ClusterJobFlowTemplate: use it with --from-template TEMPLATE" in err
    assert cluster.writes == []


def test_submit_takes_files_or_a_template_not_both(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = zen_flow(capsys, "submit", submitted(tmp_path), "--from-template", "build")
    assert code == 2
    assert "give FILE arguments or --from-template TEMPLATE (one of them)" in err
    code, _, err = zen_flow(capsys, "submit", "--from-template", "Not_A_Name")
    assert code == 2
    assert "--from-template: spec.templateRef.name: Invalid value" in err
    assert cluster.writes == []


def test_p_sets_the_values_of_a_flow_file_naming_a_template(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Its arguments are the template's, which only the cluster has: the webhook checks the names.
    path = tmp_path / "flow.yaml"
    spec = {"templateRef": {"name": "build"}, "arguments": {"parameters": [{"name": "env", "value": "dev"}]}}
    path.write_text(yaml.safe_dump({**flow_manifest("nightly", NS, []), "spec": spec}))
    code, _, _ = zen_flow(capsys, "submit", str(path), "-p", "env=prod", "-p", "ref=v2")
    assert code == 0
    [(_, _, body)] = cluster.writes
    assert body["spec"]["arguments"]["parameters"] == [
        {"name": "env", "value": "prod"},
        {"name": "ref", "value": "v2"},
    ]


def test_submit_leaves_the_gates_a_templates_flow_names_to_the_webhook_and_says_so(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # The gate is the template's, which only the cluster has: an advance approval with its values is no
    # "step of that name" error; the webhook checks both once it has expanded the flow.
    path = tmp_path / "flow.yaml"
    annotations = {
        "approve.workflow.kube-zen.io/gate": "true",
        "values.workflow.kube-zen.io/gate": '{"env":"prod"}',
    }
    manifest = flow_manifest("release", NS, [])
    manifest["metadata"]["annotations"] = annotations
    path.write_text(yaml.safe_dump({**manifest, "spec": {"templateRef": {"name": "release"}}}))
    code, out, err = zen_flow(capsys, "submit", str(path))
    assert (code, out) == (0, "jobflow default/release created\n")
    assert (
        f"{path}: note: the steps its approval and values annotations name are its JobFlowTemplate's" in err
    )
    [(_, _, body)] = cluster.writes
    assert body["metadata"]["annotations"] == annotations


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
