"""RealNode: containerd, a kubelet and kube-proxy in the node namespace, with a local image registry.

Started by the `node` profile of LocalCluster once its control plane runs. The pieces, in order:
1. the host side (host.py): the node namespace, its veth pair and pod route, the host state record;
2. relays to the apiserver (relay.py), so the kubelet, kube-proxy and pods reach it from the node
   namespace at `NODE_IP:<apiserver port>`; the apiserver advertises that address, so the `kubernetes`
   Service works through kube-proxy as in any cluster;
3. the registry on the node namespace's loopback, with busybox (`busybox:latest`, `busybox:1.36`) and
   the pause image pushed; containerd pulls docker.io, ghcr.io and registry.k8s.io from it and from
   nowhere else (its hosts.toml name the local registry as the server itself, not a mirror with a
   fallback), and the node namespace has no route out anyway;
4. containerd (CRI, runc, the CNI bridge), the kubelet (registers Node `zf-node`), kube-proxy (iptables,
   inside the node namespace).
All state lives under host.BASE; logs go to the cluster's log directory.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from zen_flow_dev.cluster.adminclient import WaitTimeout, wait_until
from zen_flow_dev.cluster.pki import ClusterPKI, issue_serving_cert
from zen_flow_dev.cluster.process import ComponentProcess, stop_all
from zen_flow_dev.node import images
from zen_flow_dev.node.host import (
    BASE,
    CGROUP_ROOT,
    NETNS,
    NODE_IP,
    POD_CIDR,
    HostError,
    NodeHost,
    in_node,
    run,
)

NODE_NAME = "zf-node"
REGISTRY = "127.0.0.1:5000"  # on the node namespace's loopback
MIRRORED = ("docker.io", "ghcr.io", "registry.k8s.io")
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
CNI_BIN_DIR = Path("/usr/lib/cni")
RUNC = Path("/usr/sbin/runc")


@dataclass(frozen=True)
class NodeInputs:
    """What the node needs from the control plane."""

    bin_dir: Path  # tools/build-node.sh's output
    pki: ClusterPKI
    apiserver_port: int
    log_dir: Path


class RealNode:
    def __init__(self, inputs: NodeInputs) -> None:
        self.inputs = inputs
        self.host = NodeHost()
        self.processes: list[ComponentProcess] = []

    # -- start ---------------------------------------------------------------------------------------

    def start(self, wait: Callable[[Callable[[], bool], float, str], None]) -> None:
        """Bring the node up; `wait(probe, timeout, what)` polls a readiness probe."""
        self.host.prepare()
        for directory in ("containerd", "kubelet", "registry", "cni/net.d", "certs.d", "pki"):
            (BASE / directory).mkdir(parents=True, exist_ok=True)
        self._relays()
        self._registry(wait)
        self._push_base_images()
        self._containerd(wait)
        self._kubelet()
        self._kube_proxy()

    def _spawn(self, name: str, argv: list[str], *, in_namespace: bool = True) -> ComponentProcess:
        process = ComponentProcess(
            name, in_node(argv) if in_namespace else argv, self.inputs.log_dir / f"{name}.log"
        )
        self.processes.append(process)
        process.start()
        return process

    def _relays(self) -> None:
        socket_path = str(BASE / "apiserver.sock")
        port = str(self.inputs.apiserver_port)
        relay = [sys.executable, "-m", "zen_flow_dev.node.relay"]
        self._spawn("relay-host", [*relay, "unix-to-tcp", socket_path, "127.0.0.1", port], in_namespace=False)
        self._spawn("relay-node", [*relay, "tcp-to-unix", NODE_IP, port, socket_path])

    def _registry(self, wait: Callable[[Callable[[], bool], float, str], None]) -> None:
        config = {
            "version": 0.1,
            "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": str(BASE / "registry")}, "delete": {"enabled": True}},
            "http": {"addr": REGISTRY},
        }
        path = BASE / "registry.yaml"
        path.write_text(yaml.safe_dump(config))
        self._spawn("registry", [str(self.inputs.bin_dir / "registry"), "serve", str(path)])
        wait(self._registry_ready, 30.0, "the local registry")

    def _registry_ready(self) -> bool:
        return (
            run(
                in_node([str(self.inputs.bin_dir / "crane"), "catalog", REGISTRY, "--insecure"]), check=False
            ).returncode
            == 0
        )

    def push(self, tarball: Path, reference: str) -> None:
        """Push a docker-archive tarball as `reference` (e.g. `docker.io/library/busybox:latest`)."""
        registry_ref = f"{REGISTRY}/{_repository(reference)}"
        run(
            in_node([str(self.inputs.bin_dir / "crane"), "push", "--insecure", str(tarball), registry_ref]),
            timeout=300,
        )

    def _push_base_images(self) -> None:
        out = BASE / "images"
        busybox = images.busybox_image(out / "busybox.tar")
        for tag in ("latest", "1.36"):
            self.push(busybox, f"docker.io/library/busybox:{tag}")
        self.push(images.pause_image(out / "pause.tar", self.inputs.bin_dir / "pause"), PAUSE_IMAGE)

    def _containerd(self, wait: Callable[[Callable[[], bool], float, str], None]) -> None:
        for host in MIRRORED:
            hosts_dir = BASE / "certs.d" / host
            hosts_dir.mkdir(parents=True, exist_ok=True)
            # `server` is the local registry itself: no upstream to fall back to.
            (hosts_dir / "hosts.toml").write_text(
                f'server = "http://{REGISTRY}"\n\n'
                f'[host."http://{REGISTRY}"]\n  capabilities = ["pull", "resolve"]\n'
            )
        (BASE / "cni/net.d/10-zen-flow.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": "zen-flow",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": "zf-cni0",
                            "isGateway": True,
                            "ipMasq": False,
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "ranges": [[{"subnet": POD_CIDR}]],
                                "routes": [{"dst": "0.0.0.0/0"}],
                            },
                        },
                        {"type": "portmap", "capabilities": {"portMappings": True}},
                    ],
                }
            )
        )
        config = BASE / "containerd.toml"
        config.write_text(_containerd_config())
        self._spawn("containerd", [str(self.inputs.bin_dir / "containerd"), "--config", str(config)])
        wait(lambda: (BASE / "containerd/containerd.sock").exists(), 30.0, "containerd")

    def _kubelet(self) -> None:
        pki = BASE / "pki"
        serving_cert, serving_key = issue_serving_cert(
            self.inputs.pki.ca, pki, [NODE_IP, NODE_NAME], name="kubelet"
        )
        kubeconfig = _kubeconfig(pki / "kubelet.kubeconfig", self.inputs, "kubelet")
        resolv = BASE / "kubelet/resolv.conf"
        resolv.write_text("# no nameserver: nothing on the node resolves names outside this machine\n")
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": NODE_IP,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": str(self.inputs.pki.ca.cert_path)},
            },
            "authorization": {"mode": "AlwaysAllow"},
            "tlsCertFile": str(serving_cert),
            "tlsPrivateKeyFile": str(serving_key),
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": f"/{CGROUP_ROOT}",
            "failCgroupV1": False,
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{BASE}/containerd/containerd.sock",
            "podLogsDir": str(BASE / "kubelet/pods-logs"),
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
            "resolvConf": str(resolv),
            "serializeImagePulls": False,
            "protectKernelDefaults": False,
            "registerNode": True,
            "rotateCertificates": False,
            "maxPods": 110,
        }
        config_path = BASE / "kubelet/config.yaml"
        config_path.write_text(yaml.safe_dump(config))
        self._spawn(
            "kubelet",
            [
                str(self.inputs.bin_dir / "kubelet"),
                f"--config={config_path}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={BASE / 'kubelet/root'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_IP}",
                "--v=1",
            ],
        )

    def _kube_proxy(self) -> None:
        kubeconfig = _kubeconfig(BASE / "pki/kube-proxy.kubeconfig", self.inputs, "kube-proxy")
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "iptables",
            "clientConnection": {"kubeconfig": str(kubeconfig)},
            "clusterCIDR": POD_CIDR,
            "hostnameOverride": NODE_NAME,
            "bindAddress": NODE_IP,
            "healthzBindAddress": "127.0.0.1:10256",
            "metricsBindAddress": "127.0.0.1:10249",
            # 0: leave the conntrack sysctls alone (they would be the host's, not the namespace's).
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
        }
        path = BASE / "kube-proxy.yaml"
        path.write_text(yaml.safe_dump(config))
        self._spawn("kube-proxy", [str(self.inputs.bin_dir / "kube-proxy"), f"--config={path}"])

    # -- stop ----------------------------------------------------------------------------------------

    def stop(self) -> None:
        stop_all(self.processes, grace=5.0)
        self.processes.clear()
        self.host.teardown()

    def failed(self) -> str | None:
        """The first node component that exited, with its log tail."""
        for process in self.processes:
            if not process.is_running():
                return f"{process.name} exited ({process.exit_code()}):\n{process.tail(30)}"
        return None


def _repository(reference: str) -> str:
    """`docker.io/library/busybox:latest` -> `library/busybox:latest` (the path in the local registry)."""
    first, _, rest = reference.partition("/")
    if "." in first or ":" in first:  # a registry host
        return rest
    return reference if "/" in reference else f"library/{reference}"


def _kubeconfig(path: Path, inputs: NodeInputs, user: str) -> Path:
    """A kubeconfig reaching the apiserver through the node-side relay, as the cluster admin."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {
                    "server": f"https://{NODE_IP}:{inputs.apiserver_port}",
                    "certificate-authority": str(inputs.pki.ca.cert_path),
                },
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate": str(inputs.pki.admin_cert),
                    "client-key": str(inputs.pki.admin_key),
                },
            }
        ],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
        "current-context": "local",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def _containerd_config() -> str:
    return f"""version = 3
root = "{BASE}/containerd/root"
state = "{BASE}/containerd/state"

[grpc]
  address = "{BASE}/containerd/containerd.sock"

[ttrpc]
  address = "{BASE}/containerd/containerd.sock.ttrpc"

[plugins.'io.containerd.cri.v1.runtime']
  # No CAP_SYS_RESOURCE here: runc must not try to lower oom_score_adj below ours.
  restrict_oom_score_adj = true

  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["{CNI_BIN_DIR}"]
    conf_dir = "{BASE}/cni/net.d"

  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"

    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      BinaryName = "{RUNC}"
      SystemdCgroup = false

[plugins.'io.containerd.cri.v1.images']
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{PAUSE_IMAGE}"

  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "{BASE}/certs.d"
"""


def wait_for(probe: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `probe` until true (the devkit's one synchronous wait), or raise HostError naming `what`."""
    try:
        wait_until(probe, timeout, f"{what} to be ready")
    except WaitTimeout as err:
        raise HostError(str(err)) from None


__all__ = ["NETNS", "NODE_IP", "NODE_NAME", "NodeInputs", "RealNode", "wait_for"]
