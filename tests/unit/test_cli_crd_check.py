"""`zen-flow crd check-downgrade --crd FILE` against an in-memory apiserver: before rolling the CRDs back
to an older release's, every stored JobFlow, CronJobFlow and template holding a key the older schema
does not declare (pruned at its next write) or a value its enum lacks (every write refused, the object
held) is named with the field's path; exit 1 then, 0 when there is none."""

from __future__ import annotations

import copy
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from zen_flow.api.older_crd import lacking
from zen_flow.cli import main, session
from zen_flow.kube.streams import ListResult
from zen_flow_dev.testing.flows import flow_manifest, job_step

CRDS = Path(__file__).resolve().parents[2] / "config" / "crd"
V = "/apis/workflow.kube-zen.io/v1alpha1"


def crd(plural: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CRDS / f"{plural}.workflow.kube-zen.io.yaml").read_text())
    return loaded


def schema(doc: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return found


def older(doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` as an older release had it: no step key allowFailure, no jobRetention value LastAttempt."""
    doc = copy.deepcopy(doc)
    spec = schema(doc)["properties"]["spec"]
    if "steps" in spec["properties"]:  # a JobFlow's or a template's
        del spec["properties"]["steps"]["items"]["properties"]["allowFailure"]
        spec["properties"]["executionPolicy"]["properties"]["jobRetention"]["enum"].remove("LastAttempt")
    return doc


class FakeCluster:
    def __init__(self) -> None:
        self.objects: dict[str, list[dict[str, Any]]] = {}  # plural -> objects
        self.listed: list[str] = []

    async def list_all(self, path: str, query: Any = (), *, page_size: int = 500) -> ListResult:
        self.listed.append(path)
        plural = path.rsplit("/", 1)[1]
        namespace = path.split("/namespaces/")[1].split("/")[0] if "/namespaces/" in path else None
        items = [
            copy.deepcopy(o)
            for o in self.objects.get(plural, [])
            if namespace is None or o["metadata"].get("namespace") == namespace
        ]
        return ListResult(tuple(items), "1")


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    fake = FakeCluster()

    @asynccontextmanager
    async def open_session(args: Any, out: Any = None) -> AsyncIterator[session.Session]:
        yield session.Session(fake, args.namespace or "default", sys.stdout)  # type: ignore[arg-type]

    monkeypatch.setattr(session, "open_session", open_session)
    return fake


@pytest.fixture
def older_crds(tmp_path: Path) -> Path:
    """The older release's CRDs in one file, as `kubectl kustomize config/crd` writes them."""
    docs = [
        older(crd(p)) for p in ("jobflows", "cronjobflows", "jobflowtemplates", "clusterjobflowtemplates")
    ]
    path = tmp_path / "older.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return path


def flow(name: str, namespace: str, *, allow: bool = False, retention: str = "All") -> dict[str, Any]:
    manifest = flow_manifest(name, namespace, [job_step("a"), job_step("b", "a")])
    if allow:
        manifest["spec"]["steps"][1]["allowFailure"] = True
    manifest["spec"]["executionPolicy"] = {"jobRetention": retention}
    return manifest


def zen_flow(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["crd", "check-downgrade", *argv])
    said = capsys.readouterr()
    return code, said.out, said.err


def test_the_objects_holding_what_the_older_crd_lacks_are_named_with_the_field(
    cluster: FakeCluster, older_crds: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster.objects["jobflows"] = [
        flow("plain", "team-a"),
        flow("tolerant", "team-a", allow=True),
        flow("lean", "team-b", retention="LastAttempt"),
    ]
    cluster.objects["cronjobflows"] = [
        {
            "apiVersion": "workflow.kube-zen.io/v1alpha1",
            "kind": "CronJobFlow",
            "metadata": {"name": "nightly", "namespace": "team-b"},
            "spec": {
                "schedule": "@daily",
                "jobFlowTemplate": {"spec": flow("x", "team-b", allow=True)["spec"]},
            },
        }
    ]
    code, out, err = zen_flow(capsys, "--crd", str(older_crds))
    assert code == 1
    assert out.splitlines() == [
        "JobFlow team-a/tolerant: spec.steps[1].allowFailure: a field that CRD does not have: pruned at "
        "the object's next write",
        'JobFlow team-b/lean: spec.executionPolicy.jobRetention: "LastAttempt" is not one of that CRD\'s '
        "values (All, FailedOnly): every write refused",
    ]  # a CronJobFlow's jobFlowTemplate.spec keeps any key: the CRD prunes nothing there
    assert "2 finding(s) in 4 object(s)" in err
    assert sorted(cluster.listed) == [
        f"{V}/clusterjobflowtemplates",
        f"{V}/cronjobflows",
        f"{V}/jobflows",
        f"{V}/jobflowtemplates",
    ]


def test_one_namespace_and_nothing_found_is_exit_0(
    cluster: FakeCluster, older_crds: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster.objects["jobflows"] = [flow("plain", "team-a"), flow("tolerant", "team-b", allow=True)]
    code, out, err = zen_flow(capsys, "--crd", str(older_crds), "-n", "team-a")
    assert (code, out) == (0, "")
    assert "0 finding(s) in 1 object(s)" in err
    assert "ClusterJobFlowTemplate" not in err  # cluster-scoped: not checked with -n, not said to be
    assert f"{V}/namespaces/team-a/jobflows" in cluster.listed


def test_this_releases_own_crds_find_nothing_in_what_it_writes(
    cluster: FakeCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster.objects["jobflows"] = [flow("tolerant", "team-a", allow=True, retention="LastAttempt")]
    code, _, _ = zen_flow(capsys, "--crd", str(CRDS))  # a directory of CRDs
    assert code == 0


def test_a_file_without_a_zen_flow_crd_is_exit_2_and_nothing_is_sent(
    cluster: FakeCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.yaml"
    other.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    code, _, err = zen_flow(capsys, "--crd", str(other))
    assert code == 2
    assert "no CustomResourceDefinition of workflow.kube-zen.io" in err
    code, _, err = zen_flow(capsys, "--crd", str(tmp_path / "missing.yaml"))
    assert code == 2
    assert cluster.listed == []


def test_maps_and_subtrees_that_keep_any_key_are_not_findings() -> None:
    walked = schema(older(crd("jobflows")))
    manifest = flow("f", "ns")
    manifest["spec"]["steps"][0]["template"]["spec"]["anyKubeField"] = 1  # a Job template keeps any key
    manifest["metadata"]["labels"] = {"anything": "goes"}
    manifest["status"] = {"phase": "Running", "someFutureStatus": 1}
    assert lacking(walked, manifest) == [
        ("status.someFutureStatus", "a field that CRD does not have: pruned at the object's next write")
    ]


def test_the_keys_of_a_map_are_not_findings_and_its_values_are_walked() -> None:
    # A step's metadata.labels is a map (additionalProperties): any key is the user's, none is pruned.
    walked = schema(older(crd("jobflows")))
    manifest = flow("f", "ns")
    manifest["spec"]["steps"][0]["metadata"] = {"labels": {"team": "a", "kueue.x-k8s.io/queue-name": "q"}}
    assert lacking(walked, manifest) == []
    # A map's values are checked by its one schema: an older CRD lacking a key or a value of them says so.
    items = {"type": "object", "properties": {"mode": {"type": "string", "enum": ["Copy"]}}}
    mapped = {"properties": {"spec": {"type": "object", "properties": {"mounts": {
        "type": "object", "additionalProperties": items}}}}}  # fmt: skip
    stored = {"spec": {"mounts": {"data": {"mode": "Link"}, "logs": {"mode": "Copy", "x": 1}}}}
    found = lacking(mapped, stored)
    assert [path for path, _ in found] == ["spec.mounts.data.mode", "spec.mounts.logs.x"]
    assert '"Link" is not one of that CRD\'s values (Copy)' in found[0][1]


def test_it_takes_the_client_flags_of_every_cluster_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ended:
        main(["crd", "check-downgrade", "--help"])
    assert ended.value.code == 0
    usage = " ".join(capsys.readouterr().out.split())  # argparse wraps the help's lines
    assert "--request-timeout" in usage  # as every other command that talks to the apiserver
    assert "only this namespace's objects (default: every namespace)" in usage
