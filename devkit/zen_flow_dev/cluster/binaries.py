"""Locating the control-plane binaries built by tools/build-controlplane.sh."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

K8S_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.16"
KWOK_VERSION = "v0.8.0"
CACHE_KEY = f"k8s-{K8S_VERSION}_etcd-{ETCD_VERSION}_kwok-{KWOK_VERSION}"
"""Must match KEY in tools/build-controlplane.sh: the cache directory is named after it."""

BIN_DIR_ENV_VARS = ("ZENFLOW_CONTROLPLANE_BIN", "KUBEBUILDER_ASSETS")

APISERVER_BINARIES = ("etcd", "kube-apiserver")
FULL_BINARIES = (*APISERVER_BINARIES, "kube-controller-manager", "kube-scheduler", "kwok")


class MissingBinariesError(RuntimeError):
    """The control-plane binaries are not where we looked; the message says how to get them."""


def default_bin_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The cache directory tools/build-controlplane.sh fills (ZENFLOW_CACHE / XDG_CACHE_HOME honoured)."""
    env = os.environ if environ is None else environ
    cache_root = env.get("ZENFLOW_CACHE")
    if not cache_root:
        xdg = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME", str(Path.home()))) / ".cache")
        cache_root = str(Path(xdg) / "zen-flow")
    return Path(cache_root) / "controlplane" / CACHE_KEY / "bin"


def find_bin_dir(required: tuple[str, ...] = FULL_BINARIES, environ: Mapping[str, str] | None = None) -> Path:
    """The directory holding `required`: $ZENFLOW_CONTROLPLANE_BIN, else $KUBEBUILDER_ASSETS, else the cache.

    Raises MissingBinariesError naming what is missing and how to build it.
    """
    env = os.environ if environ is None else environ
    for var in BIN_DIR_ENV_VARS:
        value = env.get(var)
        if value:
            return check_bin_dir(Path(value), required, source=f"${var}")
    return check_bin_dir(default_bin_dir(env), required, source="the default cache directory")


def check_bin_dir(bin_dir: Path, required: tuple[str, ...], source: str = "bin_dir") -> Path:
    missing = [name for name in required if not os.access(bin_dir / name, os.X_OK)]
    if missing:
        raise MissingBinariesError(
            f"control-plane binaries missing from {bin_dir} ({source}): {', '.join(missing)}. "
            "Run `make controlplane` (tools/build-controlplane.sh; needs Go >= 1.26 and the Go module "
            "proxy; the first build takes 15-30 min) or point ZENFLOW_CONTROLPLANE_BIN at a directory "
            "holding them."
        )
    return bin_dir


NODE_VERSIONS = {"k8s": K8S_VERSION, "containerd": "v2.4.2", "registry": "v3.1.2", "crane": "v0.22.1"}
NODE_CACHE_KEY = "_".join(f"{name}-{version}" for name, version in NODE_VERSIONS.items())
"""Must match KEY in tools/build-node.sh."""
NODE_BINARIES = (
    "kubelet",
    "kube-proxy",
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
    "registry",
    "crane",
    "pause",
)


def find_node_bin_dir(environ: Mapping[str, str] | None = None) -> Path:
    """tools/build-node.sh's output: $ZENFLOW_NODE_BIN, else its cache directory."""
    env = os.environ if environ is None else environ
    if value := env.get("ZENFLOW_NODE_BIN"):
        bin_dir, source = Path(value), "$ZENFLOW_NODE_BIN"
    else:
        bin_dir, source = (
            default_bin_dir(env).parents[2] / "node" / NODE_CACHE_KEY / "bin",
            "the default cache",
        )
    missing = [name for name in NODE_BINARIES if not os.access(bin_dir / name, os.X_OK)]
    if missing:
        raise MissingBinariesError(
            f"real-node binaries missing from {bin_dir} ({source}): {', '.join(missing)}. Run "
            "tools/build-node.sh (builds kubelet, kube-proxy, containerd, the registry and crane from their "
            "Go modules, installs runc and the CNI plugins; minutes the first time)."
        )
    return bin_dir


def find_kubectl(bin_dir: Path | None = None) -> Path:
    """kubectl from the control-plane bin dir (same version as the apiserver), else from PATH."""
    candidates: list[Path] = []
    if bin_dir is not None:
        candidates.append(bin_dir / "kubectl")
    else:
        with contextlib.suppress(MissingBinariesError):
            candidates.append(find_bin_dir(required=("kubectl",)) / "kubectl")
    on_path = shutil.which("kubectl")
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if os.access(candidate, os.X_OK):
            return candidate
    raise MissingBinariesError(
        "kubectl not found in the control-plane bin dir nor on PATH; run `make controlplane`"
    )
