"""The RBAC of a namespaced install against a real kube-apiserver, as kustomize builds it
(config/components/namespaced-rbac) and as the Helm chart renders it (`watchNamespaces`): a controller
that watches some namespaces may send every request of its code in those, and in the others only what
its admission webhooks' reviews send (they review flows in every namespace: `get` on JobFlowTemplates, and
`create` on LocalSubjectAccessReviews for approvals), nothing else; it may read ClusterJobFlowTemplates
(no RoleBinding can grant a cluster-scoped read). The build and render tests (tests/tools/
test_kustomize_build.py, test_helm_values.py) check the objects' shape; this one, what the apiserver's
RBAC makes of them.

The objects are renamed so that they cannot meet config/rbac's (test_rbac.py): a suffix on the
cluster-scoped names and a ServiceAccount of its own.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from zen_flow_dev.cluster import find_kubectl
from zen_flow_dev.testing.kubectl import Kubectl, kubectl_runner, kustomize_with_components
from zen_flow_dev.testing.rbac import granted, required_permissions, webhook_permissions

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SERVICE_ACCOUNT = "zen-flow-controller"
BARE_ACCOUNT = "bound-to-nothing"  # what any ServiceAccount may do, without zen-flow's RBAC
RBAC_KINDS = {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
TEMPLATES = ("workflow.kube-zen.io", "clusterjobflowtemplates")
# The chart rendered with the names config/ uses, watching the namespace the component's example does,
# with its default webhooks, and archived step logs (so that every request of the code is granted).
CHART_VALUES = (
    "--namespace=zen-flow-system",
    "--set=watchNamespaces={team-a}",
    "--set=archive.endpoint=http://s3.example:9000,archive.bucket=flows,archive.credentialsSecret.name=s3",
    "--set=archive.logs=on",
)


class Grants:
    """`kubectl auth can-i` as the component's ServiceAccount, moved to namespace `home`."""

    def __init__(self, kubectl: Kubectl, home: str, watched: str, other: str) -> None:
        self.kubectl, self.home, self.watched, self.other = kubectl, home, watched, other

    def as_account(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """`kubectl ARGS` sent as the ServiceAccount (the apiserver's answer, refusals included)."""
        sa = f"--as=system:serviceaccount:{self.home}:{SERVICE_ACCOUNT}"
        return self.kubectl(*args, sa, input=input, check=False)

    def rules(self, account: str, namespace: str) -> set[tuple[str, str, str]]:
        """Every (group, resource, verb) `account` (a ServiceAccount of `home`) may use in `namespace`,
        as the apiserver lists them (a SelfSubjectRulesReview)."""
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectRulesReview",
            "spec": {"namespace": namespace},
        }
        done = self.kubectl(
            "create",
            "--validate=false",
            "-o",
            "json",
            "-f",
            "-",
            f"--as=system:serviceaccount:{self.home}:{account}",
            input=json.dumps(review),
        )
        status = json.loads(done.stdout)["status"]
        assert not status.get("incomplete"), status
        return granted(status["resourceRules"])

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


def _chart() -> list[dict[str, Any]]:
    """The RBAC objects the Helm chart renders with watchNamespaces (and its default webhooks)."""
    helm = os.environ.get("ZENFLOW_HELM")
    if not helm:
        built = subprocess.run(
            [str(ROOT / "tools" / "build-gotool.sh"), "helm"], capture_output=True, text=True, timeout=1200
        )
        if built.returncode != 0:
            pytest.skip(f"helm could not be built: {built.stderr.strip()[-300:]}")
        helm = built.stdout.strip().splitlines()[-1]
    done = subprocess.run(
        [helm, "template", "zen-flow", str(ROOT / "charts" / "zen-flow"), *CHART_VALUES],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [d for d in yaml.safe_load_all(done.stdout) if d and d["kind"] in RBAC_KINDS]


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


@pytest.fixture(scope="module", params=["kustomize", "helm"])
def grants(
    request: pytest.FixtureRequest, cluster: Any, jobflow_crd: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Grants]:
    kubectl = kubectl_runner(find_kubectl(getattr(cluster, "bin_dir", None)), cluster.kubeconfig)
    rendered = _component(tmp_path_factory.mktemp("rbac")) if request.param == "kustomize" else _chart()
    suffix = f"-{secrets.token_hex(3)}"
    home, watched, other = (f"zf-rbac{suffix}-{n}" for n in ("home", "watched", "other"))
    docs = [_renamed(d, suffix, home, watched) for d in rendered]
    assert {d["kind"] for d in docs} == RBAC_KINDS
    for ns in (home, watched, other):
        kubectl("create", "namespace", ns)
    kubectl("create", "serviceaccount", SERVICE_ACCOUNT, "-n", home)
    kubectl("create", "serviceaccount", BARE_ACCOUNT, "-n", home)
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
    yield Grants(kubectl, home, watched, other)
    cluster_scoped = [
        f"{d['kind'].lower()}/{d['metadata']['name']}" for d in docs if d["kind"].startswith("Cluster")
    ]
    kubectl("delete", *cluster_scoped, "--ignore-not-found", check=False)
    for ns in (home, watched, other):
        kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)


def test_every_request_of_the_code_is_granted_in_a_watched_namespace_and_elsewhere_only_the_webhooks(
    grants: Grants,
) -> None:
    perms = sorted(p for p in required_permissions() if not p.leader_election)
    missing = [str(p) for p in perms if not grants.can(p.verb, p.group, p.resource, grants.watched)]
    assert missing == []
    namespaced = [p for p in perms if (p.group, p.resource) != TEMPLATES]
    assert namespaced, "the code sends namespaced requests"
    # The one exception: what the webhooks' reviews send (they review every namespace's flows).
    webhooks = sorted(str(p) for p in webhook_permissions() if (p.group, p.resource) != TEMPLATES)
    assert webhooks == [
        "create localsubjectaccessreviews.authorization.k8s.io",
        "get jobflowtemplates.workflow.kube-zen.io",
    ]
    leaked = [str(p) for p in namespaced if grants.can(p.verb, p.group, p.resource, grants.other)]
    assert leaked == webhooks
    cluster_wide = [str(p) for p in namespaced if grants.can(p.verb, p.group, p.resource, None)]
    assert cluster_wide == webhooks


def test_the_webhooks_account_reads_templates_and_checks_approvers_where_it_does_not_watch(
    grants: Grants,
) -> None:
    # A flow in a namespace another release watches: the webhook reads its templateRef and asks whether
    # its user may approve. Refused, every such flow was refused and every approval denied.
    template = yaml.safe_load((ROOT / "examples" / "templates" / "build-and-test.yaml").read_text())
    name = template["metadata"]["name"]
    grants.kubectl("apply", "-n", grants.other, "-f", "-", input=json.dumps(template))
    read = grants.as_account("get", "jobflowtemplate", name, "-n", grants.other, "-o", "json")
    assert read.returncode == 0, read.stderr
    assert json.loads(read.stdout)["spec"]["steps"] == template["spec"]["steps"]
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "LocalSubjectAccessReview",
        "metadata": {"namespace": grants.other},
        "spec": {
            "user": "alice",
            "resourceAttributes": {
                "namespace": grants.other,
                "verb": "approve",
                "group": "workflow.kube-zen.io",
                "resource": "jobflows",
            },
        },
    }
    # --validate=false: kubectl's own schema check lists CRDs, which this account may not.
    asked = grants.as_account("create", "--validate=false", "-o", "json", "-f", "-", input=json.dumps(review))
    assert asked.returncode == 0, asked.stderr
    assert json.loads(asked.stdout)["status"]["allowed"] is False  # alice may not; the question was answered
    # Nothing else there: no list, no write of the template, nothing the controller writes.
    refused = [
        ("get", "jobflowtemplates", "-n", grants.other),
        ("label", "jobflowtemplate", name, "x=y", "-n", grants.other),
        ("delete", "jobflowtemplate", name, "-n", grants.other),
        ("create", "configmap", "c", "-n", grants.other),
        ("get", "jobflows", "-n", grants.other),
        ("get", "jobs", "-n", grants.other),
    ]
    for args in refused:
        done = grants.as_account(*args)
        assert done.returncode != 0, (args, done.stdout)
        assert "forbidden" in done.stderr.lower(), (args, done.stderr)
    # All the account may do there beyond what any ServiceAccount may, as the apiserver lists it.
    extra = grants.rules(SERVICE_ACCOUNT, grants.other) - grants.rules(BARE_ACCOUNT, grants.other)
    assert extra == {p.key for p in webhook_permissions()}


def test_cluster_templates_are_readable_by_name_only(grants: Grants) -> None:
    group, resource = TEMPLATES
    assert grants.can("get", group, resource, None)
    for verb in ("list", "watch", "create", "update", "patch", "delete"):
        assert not grants.can(verb, group, resource, None), verb


def test_leader_election_stays_in_the_controllers_namespace(grants: Grants) -> None:
    group = "coordination.k8s.io"
    assert grants.can("create", group, "leases", grants.home)
    assert not grants.can("create", group, "leases", grants.watched)
