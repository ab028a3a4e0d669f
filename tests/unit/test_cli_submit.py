"""`zen-flow submit` against an in-memory apiserver (cli_flows_rig): `--wait` at a gate, `--from-template`
and `-p`, labels, and what it refuses before creating anything."""

from __future__ import annotations

import itertools
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from cli_flows_rig import NS, FakeCluster, gate_flow, zen_flow
from cli_flows_rig import cluster_fixture as cluster_fixture  # the `cluster` fixture

from zen_flow.cli import flows
from zen_flow_dev.testing.flows import flow_manifest, job_step

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


def test_submit_wait_for_several_flows_waits_timeout_seconds_in_all_not_for_each(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticks = itertools.count()  # a clock one second further at every look
    monkeypatch.setattr(flows, "time", SimpleNamespace(monotonic=lambda: float(next(ticks))))
    monkeypatch.setattr(flows, "WAIT_POLL_SECONDS", 0)
    reads: list[str] = []
    request = cluster.request

    async def counted(method: str, path: str, **kw: Any) -> Any:
        if method == "GET":
            reads.append(path.rsplit("/", 1)[-1])
        return await request(method, path, **kw)

    monkeypatch.setattr(cluster, "request", counted)
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump_all([flow_manifest(n, NS, [job_step("a")]) for n in ("one", "two")]))
    code, out, _ = zen_flow(capsys, "submit", str(path), "--wait", "--timeout", "5")
    assert code == 1
    assert out.splitlines()[-2:] == [
        "jobflow default/one: still running after 5s",
        "jobflow default/two: still running after 5s",
    ]
    assert reads.count("two") == 1  # read once more, past the deadline: not five more seconds


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
