"""The cluster a benchmark run uses, and what it installs there (the CRD, its namespaces).

Our own LocalCluster by default: the full profile (apiserver, controller-manager, scheduler, kwok), an
audit log of exactly the controller's requests (`apicost.AUDIT_POLICY`) and a client certificate that
gives the controller that identity. With `--kubeconfig`, any cluster: the controller then runs with that
kubeconfig's identity, and its API cost comes from its own counter (plus the apiserver's cluster-wide one).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from zen_flow.api.constants import CRD_NAME
from zen_flow.kube import Conflict, KubeClient, NotFound
from zen_flow_dev.bench.apicost import AUDIT_POLICY, AUDIT_USER, AuditLog
from zen_flow_dev.cluster import LocalCluster, find_kubectl, issue_client_cert
from zen_flow_dev.cluster.kubeconfig import write_kubeconfig
from zen_flow_dev.testing.crd import ADMISSION_POLICIES_PATH, JOBFLOW_CRD_PATH, is_established
from zen_flow_dev.testing.driver import wait_until

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
# Where each kind of config/crd/admission-policies.yaml is created.
_ADMISSION = "/apis/admissionregistration.k8s.io/v1"
_COLLECTIONS = {
    "ValidatingAdmissionPolicy": f"{_ADMISSION}/validatingadmissionpolicies",
    "ValidatingAdmissionPolicyBinding": f"{_ADMISSION}/validatingadmissionpolicybindings",
}
NAMESPACES = "/api/v1/namespaces"
RUN_LABEL = "zenflow.bench/run"


@dataclass
class Environment:
    kubeconfig: Path
    """The harness's identity (the admin on our cluster)."""
    controller_kubeconfig: Path
    kubectl: Path | None
    audit: AuditLog | None
    cluster: LocalCluster | None
    startup_seconds: float = 0.0
    etcd_url: str | None = None
    """Our LocalCluster's etcd, for its /metrics (the store's size); None on an existing cluster."""

    @classmethod
    def local(cls, workdir: Path, apiserver_args: Sequence[str] = ()) -> Environment:
        policy, audit_log = workdir / "audit-policy.yaml", workdir / "audit.log"
        policy.write_text(AUDIT_POLICY)
        args = [f"--audit-policy-file={policy}", f"--audit-log-path={audit_log}", *apiserver_args]
        cluster = LocalCluster("full", smoke_job=False, extra_apiserver_args=args).start()
        try:
            cert, key = issue_client_cert(
                cluster.pki.ca, workdir / "identity", AUDIT_USER, groups=("system:masters",)
            )
            controller_kubeconfig = write_kubeconfig(
                workdir / "controller.kubeconfig", cluster.server, cluster.ca_cert, cert, key
            )
            kubectl: Path | None = find_kubectl(cluster.bin_dir)
        except BaseException:
            cluster.stop()
            raise
        return cls(
            kubeconfig=cluster.kubeconfig,
            controller_kubeconfig=controller_kubeconfig,
            kubectl=kubectl,
            audit=AuditLog(audit_log),
            cluster=cluster,
            startup_seconds=cluster.startup_seconds.get("total", 0.0),
            etcd_url=cluster.ports.etcd_url,
        )

    @classmethod
    def existing(cls, kubeconfig: Path) -> Environment:
        try:
            kubectl: Path | None = find_kubectl()
        except Exception:  # only the cluster-wide request counts need it
            kubectl = None
        return cls(kubeconfig, kubeconfig, kubectl, None, None)

    def component_pids(self) -> dict[str, int]:
        return self.cluster.pids() if self.cluster is not None else {}

    def save_logs(self, dest: Path) -> None:
        """Copy the control plane's component logs (apiserver, controller-manager, scheduler, kwok,
        etcd) to `dest` before the cluster's work directory goes: they explain what the figures cannot
        (an apiserver that closed a watch, a slow Job controller)."""
        if self.cluster is not None and self.cluster.log_dir.is_dir():
            shutil.copytree(self.cluster.log_dir, dest, dirs_exist_ok=True)

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "local (LocalCluster full profile, kwok)" if self.cluster else "existing (--kubeconfig)",
            "audit_log": self.audit is not None,
        }
        if self.cluster is not None:
            out["server"] = self.cluster.server
            out["binaries"] = self.cluster.bin_dir.name
            out["startup_seconds"] = self.startup_seconds
        if self.kubectl is not None:
            done = subprocess.run(
                [str(self.kubectl), f"--kubeconfig={self.kubeconfig}", "version", "-o", "json"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            if done.returncode == 0:
                out["server_version"] = json.loads(done.stdout).get("serverVersion", {}).get("gitVersion")
        return out


def load_crd(path: Path = JOBFLOW_CRD_PATH) -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load(path.read_text())
    return crd


def machine() -> dict[str, Any]:
    """nproc, memory, CPU model, kernel: what the figures were measured on."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    except (OSError, StopIteration, ValueError):
        mem_kb = 0
    return {
        "nproc": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


async def install_crd(kube: KubeClient, crd: dict[str, Any]) -> None:
    """Create or replace the JobFlow CRD (`load_crd()`) and its admission policy (what users install
    from config/crd/), then wait until the CRD is Established."""
    path = await _create_or_replace(kube, CRDS, crd)
    for policy in yaml.safe_load_all(ADMISSION_POLICIES_PATH.read_text()):
        await _create_or_replace(kube, _COLLECTIONS[policy["kind"]], policy)

    async def established() -> bool:
        return is_established(await kube.request("GET", path))

    await wait_until(established, 60, what=f"CRD {CRD_NAME} Established")


async def _create_or_replace(kube: KubeClient, collection: str, body: dict[str, Any]) -> str:
    """Create the cluster-scoped `body`, or replace the one of its name; returns its path."""
    path = f"{collection}/{body['metadata']['name']}"
    try:
        current = await kube.request("GET", path)
    except NotFound:
        await kube.request("POST", collection, body=body)
    else:
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        await kube.request("PUT", path, body=body)
    return path


async def create_namespace(kube: KubeClient, name: str, run_id: str) -> None:
    body = {"metadata": {"name": name, "labels": {RUN_LABEL: run_id}}}
    await kube.request("POST", NAMESPACES, body=body)


async def delete_namespace(kube: KubeClient, name: str, *, wait: float = 0.0) -> bool:
    """Delete (its Jobs and pods go with it); with `wait`, until it is gone. False if still there."""
    try:
        await kube.request("DELETE", f"{NAMESPACES}/{name}", body={"propagationPolicy": "Background"})
    except NotFound:
        return True
    except Conflict:
        pass  # already terminating
    if wait <= 0:
        return False

    async def gone() -> bool:
        try:
            await kube.request("GET", f"{NAMESPACES}/{name}")
        except NotFound:
            return True
        return False

    try:
        await wait_until(gone, wait, interval=0.5, what=f"namespace {name} deleted")
    except TimeoutError:
        return False
    return True
