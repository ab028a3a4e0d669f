"""`zen-flow list -o json|yaml`: the flows as stored, for scripts, in the List `kubectl get -o json` prints:
filtered as the table is (`--phase`), in its order, and an empty List (still valid JSON) when none."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from cli_flows_rig import NS, FakeCluster, zen_flow
from cli_flows_rig import cluster_fixture as cluster_fixture  # the `cluster` fixture

from zen_flow.kube.streams import ListResult
from zen_flow_dev.testing.flows import flow_manifest, job_step


@pytest.fixture(name="listed")
def listed_fixture(cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """The cluster's flows answer a LIST (items without apiVersion and kind, as some servers send them)."""
    asked: list[tuple[Any, ...]] = []

    async def list_all(path: str, query: Any = (), page_size: int = 0) -> ListResult:
        asked.append((path, tuple(query)))
        items = [
            {k: v for k, v in f.items() if k not in ("apiVersion", "kind")} for f in cluster.flows.values()
        ]
        return ListResult(tuple(items), "42")

    monkeypatch.setattr(cluster, "list_all", list_all, raising=False)
    cluster.add(flow_manifest("zeta", NS, [job_step("a")]), {"phase": "Running", "message": "a: running"})
    cluster.add(flow_manifest("alpha", NS, [job_step("a")]), {"phase": "Failed", "message": "a failed"})
    return asked


def test_list_as_json_is_a_kubectl_list_of_the_flows_as_stored(
    cluster: FakeCluster, listed: list[tuple[Any, ...]], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = zen_flow(capsys, "list", "-o", "json")
    assert (code, err) == (0, "")
    data = json.loads(out)
    assert (data["apiVersion"], data["kind"]) == ("v1", "List")
    assert [i["metadata"]["name"] for i in data["items"]] == ["alpha", "zeta"]
    assert {(i["apiVersion"], i["kind"]) for i in data["items"]} == {
        ("workflow.kube-zen.io/v1alpha1", "JobFlow")
    }
    assert data["items"][0]["status"] == {"phase": "Failed", "message": "a failed"}
    assert data["items"][0]["spec"] == cluster.flows["alpha"]["spec"]


def test_list_as_yaml_keeps_the_phase_filter_and_an_empty_list_is_still_data(
    cluster: FakeCluster, listed: list[tuple[Any, ...]], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = zen_flow(capsys, "list", "--phase", "Running", "-o", "yaml")
    assert code == 0
    assert [i["metadata"]["name"] for i in yaml.safe_load(out)["items"]] == ["zeta"]
    code, out, err = zen_flow(capsys, "list", "--phase", "Succeeded", "-o", "json")
    assert (code, json.loads(out)["items"], err) == (0, [], "")
