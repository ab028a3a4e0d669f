"""`zen-flow approve FLOW STEP -p NAME=VALUE`: the values a gate asks for and its approval in one patch,
checked as the webhook would before anything is sent."""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from cli_flows_rig import NS, FakeCluster, annotation_writes, zen_flow
from cli_flows_rig import cluster_fixture as cluster_fixture  # the `cluster` fixture

from zen_flow.cli import session
from zen_flow.kube.errors import from_status
from zen_flow_dev.testing.flows import flow_manifest, job_step, manual_step

VALUES = "values.workflow.kube-zen.io/gate"
APPROVE = "approve.workflow.kube-zen.io/gate"


def release(annotations: dict[str, str] | None = None) -> dict[str, Any]:
    params = [
        {"name": "env", "valueFrom": {"supplied": {"enum": ["staging", "prod"]}}},
        {"name": "version", "valueFrom": {"supplied": {"default": "latest"}}},
    ]
    steps = [job_step("build"), manual_step("gate", "build", outputs={"parameters": params})]
    return flow_manifest("rel", NS, steps, annotations=annotations)


def waiting(cluster: FakeCluster, annotations: dict[str, str] | None = None) -> None:
    cluster.add(
        release(annotations), {"phase": "Paused", "steps": [{"name": "gate", "phase": "PendingApproval"}]}
    )


def test_values_and_the_approval_are_written_in_one_patch(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    waiting(cluster)
    code, out, _ = zen_flow(capsys, "approve", "rel", "gate", "-p", "env=prod", "-p", "version=1.2")
    assert (code, out) == (0, "jobflow default/rel: step gate approved\n")
    [patch] = annotation_writes(cluster)
    annotations = patch["metadata"]["annotations"]
    assert annotations[APPROVE] == "true"
    assert json.loads(annotations[VALUES]) == {"env": "prod", "version": "1.2"}


def test_values_given_earlier_are_kept_beside_new_ones(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    waiting(cluster, {VALUES: '{"env":"staging"}'})
    code, _, _ = zen_flow(capsys, "approve", "rel", "gate", "-p", "version=2")
    assert code == 0
    written = cluster.flows["rel"]["metadata"]["annotations"][VALUES]
    assert json.loads(written) == {"env": "staging", "version": "2"}


def test_an_approval_without_a_value_the_gate_needs_is_refused_before_anything_is_sent(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    waiting(cluster)
    code, _, err = zen_flow(capsys, "approve", "rel", "gate")
    assert code != 0
    assert "step gate needs a value for parameter 'env': zen-flow approve rel gate -p env=..." in err
    assert annotation_writes(cluster) == []


def test_an_approval_whose_values_were_given_before_needs_no_p(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    waiting(cluster, {VALUES: '{"env":"prod"}'})
    code, _, _ = zen_flow(capsys, "approve", "rel", "gate")
    assert code == 0
    assert annotation_writes(cluster) == [{"metadata": {"annotations": {APPROVE: "true"}}}]


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["-p", "env=qa"], "step gate: value 'qa' of parameter 'env' is not one of: staging, prod"),
        (["-p", "region=eu"], "step gate asks for no value 'region' (it asks for: env, version)"),
        (["-p", "env"], "-p 'env': expected NAME=VALUE"),
    ],
)
def test_values_the_gate_cannot_take_are_refused_before_anything_is_sent(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], argv: list[str], said: str
) -> None:
    waiting(cluster)
    code, _, err = zen_flow(capsys, "approve", "rel", "gate", *argv)
    assert code != 0
    assert said in err
    assert annotation_writes(cluster) == []


def test_a_gate_that_asks_for_nothing_takes_no_values(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    flow = flow_manifest("plain", NS, [job_step("build"), manual_step("gate", "build")])
    cluster.add(flow, {"phase": "Paused", "steps": [{"name": "gate", "phase": "PendingApproval"}]})
    code, _, err = zen_flow(capsys, "approve", "plain", "gate", "-p", "env=prod")
    assert code != 0
    assert "step gate of jobflow plain asks for no values (-p)" in err
    assert annotation_writes(cluster) == []


def test_reject_takes_no_values(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        zen_flow(capsys, "reject", "rel", "gate", "-p", "env=prod")


def tallied(cluster: FakeCluster, annotations: dict[str, str]) -> None:
    flow = release(annotations)
    flow["spec"]["steps"][1]["approval"] = {"required": 2}
    cluster.add(flow, {"phase": "Paused", "steps": [{"name": "gate", "phase": "PendingApproval"}]})


def test_a_second_approver_giving_the_same_values_writes_only_the_approval(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    # alice approved with kubectl, spaced differently: the same values are no change to refuse
    tallied(cluster, {VALUES: '{"env": "prod"}', APPROVE: "true-1"})
    code, _, _ = zen_flow(capsys, "approve", "rel", "gate", "-p", "env=prod")
    assert code == 0
    [patch] = annotation_writes(cluster)
    assert set(patch["metadata"]["annotations"]) == {APPROVE}


def test_values_other_than_those_an_approval_stands_on_are_refused_before_anything_is_sent(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    tallied(cluster, {VALUES: '{"env":"staging"}', APPROVE: "true-1"})
    code, _, err = zen_flow(capsys, "approve", "rel", "gate", "-p", "env=prod")
    assert code != 0
    assert (
        'step gate of jobflow rel carries an approval of other values ({"env":"staging"}): take the '
        "approvals back first (kubectl annotate jobflow rel approve.workflow.kube-zen.io/gate-), then "
        "approve with the new values"
    ) in err
    assert annotation_writes(cluster) == []


class RacedCluster(FakeCluster):
    """A cluster where carol's values (given alone, no approval) land between the CLI's read and its
    patch, once: a patch conditional on the resourceVersion read gets 409, as from the apiserver."""

    def __init__(self) -> None:
        super().__init__()
        self.raced = False

    async def request(
        self, method: str, path: str, body: Any = None, query: Any = (), content_type: str | None = None
    ) -> dict[str, Any]:
        flow = self.flows["rel"]
        if method == "PATCH":
            if not self.raced:
                self.raced = True
                flow["metadata"].setdefault("annotations", {})[VALUES] = '{"version":"1.2"}'
                flow["metadata"]["resourceVersion"] = "2"
            sent = body["metadata"].get("resourceVersion")
            if sent is not None and sent != flow["metadata"]["resourceVersion"]:
                self.writes.append((method, path, copy.deepcopy(body)))
                raise from_status(409, {"reason": "Conflict", "message": "the object has been modified"})
        return await super().request(method, path, body, query, content_type)


def use(monkeypatch: pytest.MonkeyPatch, fake: FakeCluster) -> None:
    @asynccontextmanager
    async def open_session(args: Any, out: Any = None) -> AsyncIterator[session.Session]:
        yield session.Session(fake, args.namespace or NS, sys.stdout)  # type: ignore[arg-type]

    monkeypatch.setattr(session, "open_session", open_session)


def test_values_another_wrote_between_the_read_and_the_write_are_merged_not_undone(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    raced = RacedCluster()
    use(monkeypatch, raced)
    flow = release()
    flow["metadata"]["resourceVersion"] = "1"
    raced.add(flow, {"phase": "Paused", "steps": [{"name": "gate", "phase": "PendingApproval"}]})
    code, _, _ = zen_flow(capsys, "approve", "rel", "gate", "-p", "env=prod")
    assert code == 0
    written = raced.flows["rel"]["metadata"]["annotations"]
    assert json.loads(written[VALUES]) == {"version": "1.2", "env": "prod"}
    assert written[APPROVE] == "true"
    first, second = annotation_writes(raced)
    assert first["metadata"]["resourceVersion"] == "1"  # refused: carol's write came first
    assert second["metadata"]["resourceVersion"] == "2"


class LostAnswerCluster(FakeCluster):
    """The approval's first send is stored (resourceVersion 1 -> 2) but its answer is lost, and the
    controller records the gate Succeeded at once; the client's resend, still conditional on 1, gets 409."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = False

    async def request(
        self, method: str, path: str, body: Any = None, query: Any = (), content_type: str | None = None
    ) -> dict[str, Any]:
        if method == "PATCH" and not self.lost:
            self.lost = True
            await super().request(method, path, body, query, content_type)
            flow = self.flows["rel"]
            flow["metadata"]["resourceVersion"] = "2"
            flow["status"] = {"phase": "Running", "steps": [{"name": "gate", "phase": "Succeeded"}]}
            raise from_status(409, {"reason": "Conflict", "message": "the object has been modified"})
        return await super().request(method, path, body, query, content_type)


def test_an_approval_stored_under_a_lost_answer_is_reported_approved(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lost = LostAnswerCluster()
    use(monkeypatch, lost)
    flow = release()
    flow["metadata"]["resourceVersion"] = "1"
    lost.add(flow, {"phase": "Paused", "steps": [{"name": "gate", "phase": "PendingApproval"}]})
    code, out, err = zen_flow(capsys, "approve", "rel", "gate", "-p", "env=prod")
    assert (code, out, err) == (0, "jobflow default/rel: step gate approved\n", "")
    assert len(annotation_writes(lost)) == 1  # nothing sent again once the first send is seen stored
    stored = lost.flows["rel"]["metadata"]["annotations"]
    assert (stored[APPROVE], json.loads(stored[VALUES])) == ("true", {"env": "prod"})
