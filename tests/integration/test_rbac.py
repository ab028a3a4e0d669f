"""config/rbac against a real kube-apiserver: the controller's ServiceAccount may do what the code does,
and not touch Secrets, Pods or other namespaces' Leases.

Two levels:
- `kubectl auth can-i --as=<the ServiceAccount>` for every request the code sends (read from the code by
  `zen_flow_dev.testing.rbac`) and for what it must never do;
- the real controller process, authenticated as the ServiceAccount (a client certificate with its user
  name, signed by the local cluster's CA), runs flows through create, status patch, timeout delete, TTL
  delete, events and leader election, and gets no 403.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from zen_flow.kube.events import COMPONENT, EVENTS
from zen_flow.kube.leases import LEASES
from zen_flow_dev.cluster import find_kubectl
from zen_flow_dev.cluster.kubeconfig import write_kubeconfig
from zen_flow_dev.cluster.pki import issue_client_cert
from zen_flow_dev.testing.controller import ControllerProcess
from zen_flow_dev.testing.driver import FlowDriver, step_phases, wait_until
from zen_flow_dev.testing.flows import flow_manifest, job_step
from zen_flow_dev.testing.jobstatus import complete_job
from zen_flow_dev.testing.kubectl import kubectl_runner
from zen_flow_dev.testing.rbac import Permission, required_permissions

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_NS = "zen-flow-system"
SERVICE_ACCOUNT = "zen-flow-controller"
SA_USER = f"system:serviceaccount:{SYSTEM_NS}:{SERVICE_ACCOUNT}"
LEASE = "zen-flow-controller"
WAIT = 45.0


def _resource_arg(group: str, resource: str) -> tuple[str, str | None]:
    """kubectl auth can-i's RESOURCE[.GROUP] and --subresource."""
    plural, _, sub = resource.partition("/")
    return (f"{plural}.{group}" if group else plural), (sub or None)


class Access:
    """`kubectl auth can-i` as the controller's ServiceAccount (impersonated by the admin)."""

    def __init__(self, kubectl: Path, kubeconfig: Path) -> None:
        self.kubectl = kubectl_runner(kubectl, kubeconfig)

    def can(self, verb: str, group: str, resource: str, namespace: str, name: str = "") -> bool:
        target, sub = _resource_arg(group, resource)
        args = [
            "auth",
            "can-i",
            verb,
            f"{target}/{name}" if name else target,
            "-n",
            namespace,
            f"--as={SA_USER}",
        ]
        if sub:
            args.append(f"--subresource={sub}")
        done = self.kubectl(*args, check=False)
        answer = done.stdout.strip()
        assert answer in ("yes", "no"), f"kubectl {' '.join(args)}: {done.stdout}{done.stderr}"
        return answer == "yes"


@pytest.fixture(scope="module")
def access(cluster: Any, jobflow_crd: Any) -> Iterator[Access]:
    """config/rbac applied (with the namespace it needs, and the CRD so that kubectl knows jobflows);
    removed afterwards unless it was there before."""
    acc = Access(find_kubectl(getattr(cluster, "bin_dir", None)), cluster.kubeconfig)
    existed = acc.kubectl("get", "clusterrole", SERVICE_ACCOUNT, check=False).returncode == 0
    ns_existed = acc.kubectl("get", "namespace", SYSTEM_NS, check=False).returncode == 0
    acc.kubectl("apply", "-f", str(ROOT / "config" / "manager" / "namespace.yaml"))
    acc.kubectl("apply", "-k", str(ROOT / "config" / "rbac"))
    yield acc
    if not existed:
        acc.kubectl("delete", "-k", str(ROOT / "config" / "rbac"), "--ignore-not-found", check=False)
    if not ns_existed:
        acc.kubectl("delete", "namespace", SYSTEM_NS, "--wait=false", "--ignore-not-found", check=False)


def _needed() -> list[Permission]:
    return sorted(required_permissions())


@pytest.mark.parametrize("perm", _needed(), ids=str)
def test_service_account_may_send_every_request_of_the_code(
    access: Access, namespace: str, perm: Permission
) -> None:
    if perm.leader_election:
        where, name = SYSTEM_NS, ("" if perm.verb == "create" else LEASE)
    else:
        where, name = namespace, ""
    assert access.can(perm.verb, perm.group, perm.resource, where, name), f"{perm} (used at {perm.why})"


@pytest.mark.parametrize(
    ("verb", "group", "resource"),
    [
        ("get", "", "secrets"),
        ("list", "", "secrets"),
        ("watch", "", "secrets"),
        ("get", "", "pods"),
        ("watch", "", "pods"),
        ("delete", "", "pods"),
        ("list", "", "configmaps"),
        ("watch", "", "configmaps"),
        ("update", "", "configmaps"),
        ("delete", "", "persistentvolumeclaims"),
        # patch of Jobs is granted to put back a removed managed-by label (controller/unseen_jobs.py).
        ("update", "batch", "jobs"),
        # create and patch of JobFlows are granted for CronJobFlows' runs (a run, its stop annotation).
        ("update", "workflow.kube-zen.io", "jobflows"),
        # A CronJobFlow belongs to its user: only its status is the controller's.
        ("create", "workflow.kube-zen.io", "cronjobflows"),
        ("update", "workflow.kube-zen.io", "cronjobflows"),
        ("patch", "workflow.kube-zen.io", "cronjobflows"),
        ("delete", "workflow.kube-zen.io", "cronjobflows"),
    ],
)
def test_service_account_may_not(
    access: Access, namespace: str, verb: str, group: str, resource: str
) -> None:
    for where in (namespace, SYSTEM_NS):
        assert not access.can(verb, group, resource, where), f"{verb} {resource} in {where}"


def test_leases_only_in_its_namespace_and_only_its_own(access: Access, namespace: str) -> None:
    group = "coordination.k8s.io"
    assert access.can("patch", group, "leases", SYSTEM_NS, LEASE)
    assert not access.can("patch", group, "leases", SYSTEM_NS, "kube-scheduler")
    assert not access.can("get", group, "leases", namespace, LEASE)
    assert not access.can("create", group, "leases", namespace)
    # Deleting is granted in its own namespace only: replicas of --shards delete the member Leases of
    # replicas gone (a LIST and a DELETE cannot be limited to names there).
    assert access.can("delete", group, "leases", SYSTEM_NS, "zen-flow-controller-member-0123456789")
    assert not access.can("delete", group, "leases", namespace, LEASE)


# --- the real controller under exactly this RBAC ----------------------------------------------------


@pytest.fixture
async def admin(kubeconfig: Path) -> AsyncIterator[FlowDriver]:
    driver = await FlowDriver.connect(kubeconfig)
    yield driver
    await driver.close()


@pytest.fixture
def controller_as_service_account(
    cluster: Any,
    access: Access,
    namespace: str,
    jobflow_crd: Any,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[ControllerProcess]:
    pki = getattr(cluster, "pki", None)
    if pki is None:
        pytest.skip("needs the local cluster's CA to sign a client certificate for the ServiceAccount")
    groups = ("system:serviceaccounts", f"system:serviceaccounts:{SYSTEM_NS}")
    cert, key = issue_client_cert(pki.ca, tmp_path / "pki", SA_USER, groups, name="controller")
    kubeconfig = write_kubeconfig(
        tmp_path / "controller.kubeconfig", cluster.server, cluster.ca_cert, cert, key
    )
    proc = ControllerProcess(
        kubeconfig,
        tmp_path / "controller.log",
        namespaces=[namespace],
        leader_elect=True,
        lease_namespace=SYSTEM_NS,
    ).start()
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()
        request.node.add_report_section("teardown", "controller log", proc.log_tail(80))


async def test_controller_runs_flows_with_only_its_rbac(
    controller_as_service_account: ControllerProcess, admin: FlowDriver, namespace: str
) -> None:
    proc = controller_as_service_account
    # Flow "done": a Job is created, finishes, the flow Succeeds and its 1 s TTL deletes it.
    await admin.create(
        flow_manifest("done", namespace, [job_step("a")], executionPolicy={"ttlSecondsAfterFinished": 1})
    )
    # Flow "late": its step times out after 1 s, so the controller deletes the Job.
    await admin.create(flow_manifest("late", namespace, [job_step("slow", timeoutSeconds=1)]))

    async def running_job() -> dict[str, Any] | None:
        flow = await admin.get(namespace, "done")
        if flow is None or step_phases(flow).get("a") != "Running":
            return None
        return next(
            (j for j in await admin.jobs(namespace) if j["metadata"]["name"].startswith("done-")), None
        )

    job = await wait_until(running_job, WAIT, what="flow done: step a Running with its Job")
    await complete_job(admin.kube, namespace, job["metadata"]["name"])
    await admin.wait_gone(namespace, "done", timeout=WAIT)  # Succeeded, then deleted by its TTL

    async def timed_out() -> dict[str, Any] | None:
        flow = await admin.get(namespace, "late")
        jobs = [j for j in await admin.jobs(namespace) if j["metadata"]["name"].startswith("late-")]
        undeleted = [j for j in jobs if not j["metadata"].get("deletionTimestamp")]
        done = flow is not None and step_phases(flow).get("slow") == "Failed" and not undeleted
        return flow if done else None

    await wait_until(timed_out, WAIT, what="flow late: step timed out and its Job deleted")

    lease = await admin.kube.request("GET", LEASES.path(SYSTEM_NS, LEASE))
    assert lease["spec"].get("holderIdentity"), "the controller never acquired the Lease"

    async def events_recorded() -> list[dict[str, Any]] | None:
        events = (await admin.kube.request("GET", EVENTS.path(namespace)))["items"]
        ours = [e for e in events if (e.get("source") or {}).get("component") == COMPONENT]
        return ours or None

    await wait_until(events_recorded, WAIT, what="events from zen-flow")
    assert proc.metric("zen_flow_api_requests_total", code="403") == 0
    forbidden = [line for line in proc.log_lines() if "forbidden" in line.lower() or " 403" in line]
    assert not forbidden, "\n".join(forbidden[:5])
