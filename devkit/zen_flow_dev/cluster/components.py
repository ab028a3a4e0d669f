"""Command lines of the control-plane components (see docs/TESTING.md and controlplane.md section 4)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from zen_flow_dev.cluster.pki import ClusterPKI
from zen_flow_dev.cluster.stages import NODE_ANNOTATION, NODE_ANNOTATION_VALUE

SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"

KCM_CONTROLLERS = (
    "job-controller",
    # Cascading deletion: deleting a Job (or a JobFlow owning Jobs) removes what it owns.
    "garbage-collector-controller",
    # Without it a deleted test namespace stays Terminating forever.
    "namespace-controller",
    "ttl-after-finished-controller",
    # Deletes pods orphaned from a deleted node and terminating pods of unreachable nodes; cheap.
    "pod-garbage-collector-controller",
    # Binds a flow's PersistentVolumeClaim (spec.resourceTemplates) to a PersistentVolume a test made.
    "persistentvolume-binder-controller",
    # Fills the built-in view/edit/admin roles from the ClusterRoles labelled for aggregation
    # (config/user-roles, tests/integration/test_user_roles.py); cheap, it watches ClusterRoles alone.
    "clusterrole-aggregation-controller",
)
"""Deliberately absent: node-lifecycle-controller (would taint the fake node unreachable and evict its pods
when heartbeats pause) and serviceaccount-controller (the ServiceAccount admission plugin is off)."""

DISABLED_ADMISSION_PLUGINS = ("ServiceAccount", "TaintNodesByCondition")
"""Everything else of the default admission set stays on, notably MutatingAdmissionWebhook,
ValidatingAdmissionWebhook, ValidatingAdmissionPolicy, NamespaceLifecycle, LimitRanger, ResourceQuota.

* ServiceAccount rejects pods in a namespace until its `default` ServiceAccount exists, which needs the
  serviceaccount-controller: a fresh per-test namespace would race it and the Job controller would back
  off. No kubelet mounts tokens here, so the plugin buys nothing.
* TaintNodesByCondition taints every new Node `node.kubernetes.io/not-ready:NoSchedule`; only the
  node-lifecycle-controller (deliberately off, see KCM_CONTROLLERS) removes it, so no pod would ever be
  scheduled on the fake node.
"""


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int

    @property
    def etcd_url(self) -> str:
        """etcd's client URL (plain HTTP on loopback): its /metrics say how big the store is."""
        return f"http://127.0.0.1:{self.etcd_client}"


def etcd_argv(bin_dir: Path, data_dir: Path, ports: Ports) -> list[str]:
    client = ports.etcd_url
    peer = f"http://127.0.0.1:{ports.etcd_peer}"
    return [
        str(bin_dir / "etcd"),
        "--name=zenflow",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=zenflow={peer}",
        # Test data is disposable; fsync per write would make every API call wait on the disk.
        "--unsafe-no-fsync=true",
        # A single member elects itself after one election timeout: 100 ms instead of the default 1 s
        # (measured: /health after 0.09 s instead of 0.95 s). With no peers, short timeouts risk nothing.
        "--election-timeout=100",
        "--heartbeat-interval=20",
        "--log-level=warn",
    ]


# The `node` profile: a real kubelet (node/node.py) needs more of a real cluster.
NODE_KCM_CONTROLLERS = (
    *KCM_CONTROLLERS,
    # The controller runs as a Deployment under its ServiceAccount; its webhook Service has endpoints.
    "deployment-controller",
    "replicaset-controller",
    "serviceaccount-controller",
    "root-ca-certificate-publisher-controller",
    "endpoints-controller",
    "endpointslice-controller",
    "endpointslice-mirroring-controller",
    "disruption-controller",
)


def node_apiserver_args(pki: ClusterPKI, node_ip: str) -> list[str]:
    """What the apiserver needs for a real node: reach its kubelet (logs, exec) with a client
    certificate, advertise the node-side relay as the `kubernetes` Service's endpoint, call webhooks at
    their endpoints (no kube-proxy on the host), and mount ServiceAccount tokens into pods."""
    return [
        f"--advertise-address={node_ip}",
        "--endpoint-reconciler-type=lease",
        "--enable-aggregator-routing=true",
        f"--kubelet-client-certificate={pki.admin_cert}",
        f"--kubelet-client-key={pki.admin_key}",
        f"--kubelet-certificate-authority={pki.ca.cert_path}",
        "--kubelet-preferred-address-types=InternalIP",
    ]


# With a real kubelet the ServiceAccount admission plugin is needed (it mounts the pods' tokens).
NODE_DISABLED_ADMISSION_PLUGINS = ("TaintNodesByCondition",)


def apiserver_argv(
    bin_dir: Path,
    pki: ClusterPKI,
    cert_dir: Path,
    ports: Ports,
    disabled_admission: Sequence[str] = DISABLED_ADMISSION_PLUGINS,
) -> list[str]:
    server = f"https://127.0.0.1:{ports.apiserver}"
    return [
        str(bin_dir / "kube-apiserver"),
        f"--etcd-servers={ports.etcd_url}",
        "--bind-address=127.0.0.1",
        # Without it the apiserver looks for a default route and dies on hosts without one.
        "--advertise-address=127.0.0.1",
        f"--secure-port={ports.apiserver}",
        f"--tls-cert-file={pki.apiserver_cert}",
        f"--tls-private-key-file={pki.apiserver_key}",
        f"--client-ca-file={pki.ca.cert_path}",
        f"--cert-dir={cert_dir}",
        "--authorization-mode=RBAC",
        f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
        f"--service-account-issuer={server}",
        f"--service-account-key-file={pki.service_account_public_key}",
        f"--service-account-signing-key-file={pki.service_account_private_key}",
        f"--disable-admission-plugins={','.join(disabled_admission)}",
        # Loopback addresses are invalid in Endpoints; the default reconciler would log errors forever.
        "--endpoint-reconciler-type=none",
        "--allow-privileged=true",
        "--profiling=false",
    ]


def controller_manager_argv(
    bin_dir: Path,
    kubeconfig: Path,
    cert_dir: Path,
    ports: Ports,
    controllers: Sequence[str] = KCM_CONTROLLERS,
    root_ca: Path | None = None,
) -> list[str]:
    extra = [f"--root-ca-file={root_ca}"] if root_ca is not None else []
    return [
        str(bin_dir / "kube-controller-manager"),
        f"--kubeconfig={kubeconfig}",
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports.controller_manager}",
        f"--cert-dir={cert_dir}",
        f"--controllers={','.join(controllers)}",
        *extra,
        # Tests create bursts of Jobs; the default 20 QPS would make the controllers the bottleneck.
        "--kube-api-qps=100",
        "--kube-api-burst=200",
        "--profiling=false",
    ]


def scheduler_argv(bin_dir: Path, kubeconfig: Path, cert_dir: Path, ports: Ports) -> list[str]:
    return [
        str(bin_dir / "kube-scheduler"),
        f"--kubeconfig={kubeconfig}",
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports.scheduler}",
        f"--cert-dir={cert_dir}",
        "--kube-api-qps=100",
        "--kube-api-burst=200",
        "--profiling=false",
    ]


def kwok_argv(bin_dir: Path, kubeconfig: Path, stages: Path, ports: Ports) -> list[str]:
    return [
        str(bin_dir / "kwok"),
        f"--kubeconfig={kubeconfig}",
        f"--config={stages}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={NODE_ANNOTATION}={NODE_ANNOTATION_VALUE}",
        f"--server-address=127.0.0.1:{ports.kwok}",
    ]
