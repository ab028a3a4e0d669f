"""A real local Kubernetes control plane for zen-flow's integration/e2e tests and `make cluster`.

Profiles: "apiserver" (etcd + kube-apiserver) and "full" (+ kube-controller-manager, kube-scheduler and
kwok driving one fake node). Binaries come from tools/build-controlplane.sh; see docs/TESTING.md.
Deliberately independent of zen_flow.kube: this is what that layer is tested against.
"""

from zen_flow_dev.cluster.binaries import MissingBinariesError, default_bin_dir, find_bin_dir, find_kubectl
from zen_flow_dev.cluster.cluster import PROFILES, ClusterStartError, LocalCluster, Profile
from zen_flow_dev.cluster.external import EXISTING_CLUSTER_ENV, ExternalCluster, existing_kubeconfig
from zen_flow_dev.cluster.pki import (
    CertificateAuthority,
    ClusterPKI,
    create_ca,
    issue_client_cert,
    issue_serving_cert,
)
from zen_flow_dev.cluster.stages import (
    EXIT_CODE_ANNOTATION,
    MESSAGE_ANNOTATION,
    NODE_NAME,
    REASON_ANNOTATION,
    RUN_SECONDS_ANNOTATION,
    START_SECONDS_ANNOTATION,
)

__all__ = [
    "EXISTING_CLUSTER_ENV",
    "EXIT_CODE_ANNOTATION",
    "MESSAGE_ANNOTATION",
    "NODE_NAME",
    "PROFILES",
    "REASON_ANNOTATION",
    "RUN_SECONDS_ANNOTATION",
    "START_SECONDS_ANNOTATION",
    "CertificateAuthority",
    "ClusterPKI",
    "ClusterStartError",
    "ExternalCluster",
    "LocalCluster",
    "MissingBinariesError",
    "Profile",
    "create_ca",
    "default_bin_dir",
    "existing_kubeconfig",
    "find_bin_dir",
    "find_kubectl",
    "issue_client_cert",
    "issue_serving_cert",
]
