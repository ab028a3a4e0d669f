"""config/components/namespaced-rbac against a real kube-apiserver: a controller that watches some
namespaces may send every request of its code in those, nothing in the others, and read
ClusterJobFlowTemplates (its one cluster-wide grant, which no RoleBinding can give). The build test
(tests/tools/test_kustomize_build.py) checks the objects' shape; this one, what the apiserver's RBAC
makes of them.

The objects are the component's as kustomize builds them, renamed so that they cannot meet
config/rbac's (test_rbac.py): a suffix on the cluster-scoped names and a ServiceAccount of its own.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from zen_flow_dev.cluster import find_kubectl
from zen_flow_dev.testing.kubectl import Kubectl, kubectl_runner, kustomize_with_components
from zen_flow_dev.testing.rbac import required_permissions

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SERVICE_ACCOUNT = "zen-flow-controller"
RBAC_KINDS = {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
TEMPLATES = ("workflow.kube-zen.io", "clusterjobflowtemplates")


class Grants:
    """`kubectl auth can-i` as the component's ServiceAccount, moved to namespace `home`."""

    def __init__(self, kubectl: Kubectl, home: str, watched: str, other: str) -> None:
        self.kubectl, self.home, self.watched, self.other = kubectl, home, watched, other

    def can(self, verb: str, group: str, resource: str, namespace: str | None) -> bool:
        plural, _, sub = resource.partition("/")
        where = ["-n", namespace] if namespace else ["--all-namespaces"]
        args = ["auth", "can-i", verb, f"{plural}.{group}" if group else plural, *where]
        args.append(f"--as=system:serviceaccount:{self.home}:{SERVICE_ACCOUNT}")
        if sub:
            args.append(f"--subresource={sub}")
        answer = self.kubectl(*args, check=False).stdout.strip()
        assert answer in ("yes", "no"), args
        return answer == "yes"


def _component(tmp_path: Path) -> list[dict[str, Any]]:
    """The RBAC objects of config/default with the namespaced-rbac component, built as a user would."""
    docs = kustomize_with_components(find_kubectl(), ROOT / "config", ["namespaced-rbac"], tmp_path)
    return [d for d in docs if d["kind"] in RBAC_KINDS]


def _renamed(doc: dict[str, Any], suffix: str, home: str, watched: str) -> dict[str, Any]:
    """`doc` with its cluster-scoped names (and references to them) suffixed, its RoleBinding moved from
    the component's example namespace (team-a) to `watched`, and the controller's namespace `home`."""
    meta = doc["metadata"]
    if doc["kind"].startswith("Cluster"):
        meta["name"] += suffix
    elif meta.get("namespace") == "team-a":
        meta["namespace"] = watched
    else:
        meta["namespace"] = home  # the leader election Role and its binding
    if doc.get("roleRef", {}).get("kind") == "ClusterRole":
        doc["roleRef"]["name"] += suffix
    for subject in doc.get("subjects", []):
        subject["namespace"] = home
    return doc


@pytest.fixture(scope="module")
def grants(cluster: Any, jobflow_crd: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Grants]:
    kubectl = kubectl_runner(find_kubectl(getattr(cluster, "bin_dir", None)), cluster.kubeconfig)
    suffix = f"-{secrets.token_hex(3)}"
    home, watched, other = (f"zf-rbac{suffix}-{n}" for n in ("home", "watched", "other"))
    docs = [_renamed(d, suffix, home, watched) for d in _component(tmp_path_factory.mktemp("rbac"))]
    assert {d["kind"] for d in docs} == RBAC_KINDS
    for ns in (home, watched, other):
        kubectl("create", "namespace", ns)
    kubectl("create", "serviceaccount", SERVICE_ACCOUNT, "-n", home)
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
    yield Grants(kubectl, home, watched, other)
    cluster_scoped = [
        f"{d['kind'].lower()}/{d['metadata']['name']}" for d in docs if d["kind"].startswith("Cluster")
    ]
    kubectl("delete", *cluster_scoped, "--ignore-not-found", check=False)
    for ns in (home, watched, other):
        kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)


def test_every_request_of_the_code_is_granted_in_a_watched_namespace_and_none_elsewhere(
    grants: Grants,
) -> None:
    perms = sorted(p for p in required_permissions() if not p.leader_election)
    missing = [str(p) for p in perms if not grants.can(p.verb, p.group, p.resource, grants.watched)]
    assert missing == []
    namespaced = [p for p in perms if (p.group, p.resource) != TEMPLATES]
    assert namespaced, "the code sends namespaced requests"
    leaked = [str(p) for p in namespaced if grants.can(p.verb, p.group, p.resource, grants.other)]
    assert leaked == []
    cluster_wide = [str(p) for p in namespaced if grants.can(p.verb, p.group, p.resource, None)]
    assert cluster_wide == []


def test_cluster_templates_are_readable_by_name_only(grants: Grants) -> None:
    group, resource = TEMPLATES
    assert grants.can("get", group, resource, None)
    for verb in ("list", "watch", "create", "update", "patch", "delete"):
        assert not grants.can(verb, group, resource, None), verb


def test_leader_election_stays_in_the_controllers_namespace(grants: Grants) -> None:
    group = "coordination.k8s.io"
    assert grants.can("create", group, "leases", grants.home)
    assert not grants.can("create", group, "leases", grants.watched)
