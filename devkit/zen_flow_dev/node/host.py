"""The host side of the real node: its network namespace, and leaving the host as it was.

The node (containerd, kubelet, kube-proxy, the registry) runs in a network namespace of its own,
`zf-node`, joined to the host by a veth pair on a private /30. Its pods get addresses on a bridge inside
that namespace. So every connection stays on loopback or inside namespaces we created: the apiserver
dials the kubelet and the webhook pods at addresses in `zf-node`, and pods reach the apiserver through a
relay over a Unix socket (relay.py). The node namespace has no default route: nothing in it can reach
beyond this machine, even by mistake.

What a kubelet and containerd change on the host is recorded before the start (`STATE_FILE`) and put
back at the stop; if a run crashed, the next start finds the record and cleans up first (`sweep`):
- sysctls the kubelet sets (vm.overcommit_memory, kernel.panic, kernel.panic_on_oops, kernel.keys.*);
- processes: everything in the node namespace and in the pods' cgroups, and containerd's shims;
- mounts under `BASE` and the pods' network namespaces in /run/netns;
- the v1 cgroup trees under `CGROUP_ROOT`, in every hierarchy;
- the network namespace (and with it the veth pair and its route), directories we created.
iptables rules are made inside the node namespace only (kubelet and kube-proxy run there).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

NETNS = "zf-node"
HOST_IF, NODE_IF = "zf-host", "zf-nodeif"
HOST_IP, NODE_IP = "10.254.0.1", "10.254.0.2"
LINK_PREFIX = 30
POD_CIDR = "10.253.0.0/24"
BASE = Path("/run/zen-flow-node")
STATE_FILE = BASE / "host-state.json"
CGROUP_ROOT = "zen-flow"  # kubelet cgroupRoot: every hierarchy gets /sys/fs/cgroup/<h>/zen-flow/...
CGROUP_FS = Path("/sys/fs/cgroup")
SYSCTLS = (
    "vm/overcommit_memory",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
# Created by the kubelet at fixed paths, whatever its root dir: removed if they did not exist before.
FIXED_DIRS = (
    Path("/var/lib/kubelet"),
    Path("/var/log/containers"),
    Path("/var/log/pods"),
    Path("/run/containerd"),
)


class HostError(RuntimeError):
    """The host cannot run a real node (not root, no v1 cgroups, a tool missing); the message says which."""


def run(
    argv: Sequence[str], *, check: bool = True, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise HostError(f"{' '.join(argv)}: {done.stderr.strip() or done.stdout.strip()}")
    return done


def in_node(argv: Sequence[str]) -> list[str]:
    """`argv` run inside the node's network namespace, and only that: `ip netns exec` would also give it
    a mount namespace with a fresh /sys, hiding the cgroup hierarchies the kubelet needs."""
    return ["nsenter", f"--net=/run/netns/{NETNS}", "--", *argv]


def unsupported_reason() -> str | None:
    """Why this host cannot run the node tier, or None."""
    if os.geteuid() != 0:
        return "the real-node tier needs root (network namespaces, mounts, cgroups)"
    if not (CGROUP_FS / "memory" / "cgroup.procs").exists():
        return "the real-node tier needs cgroup v1 hierarchies at /sys/fs/cgroup (the memory one is missing)"
    for tool in ("ip", "runc", "iptables"):
        if run(["sh", "-c", f"command -v {tool}"], check=False).returncode != 0:
            return f"the real-node tier needs {tool} (tools/build-node.sh installs it)"
    return None


@dataclass(frozen=True)
class HostSnapshot:
    """What a test compares before and after a node's life."""

    sysctls: dict[str, str]
    iptables: str
    mounts: frozenset[str]
    cgroups: frozenset[str]
    links: frozenset[str]
    namespaces: frozenset[str]

    @classmethod
    def take(cls) -> HostSnapshot:
        return cls(
            sysctls={name: _read_sysctl(name) for name in SYSCTLS},
            iptables=_iptables_rules(),
            mounts=frozenset(_mountpoints()),
            cgroups=frozenset(str(p) for p in _cgroup_trees()),
            links=frozenset(_links()),
            namespaces=frozenset(_netns_names()),
        )


def _read_sysctl(name: str) -> str:
    return Path("/proc/sys", name).read_text().strip()


def _write_sysctl(name: str, value: str) -> None:
    with contextlib.suppress(OSError):
        Path("/proc/sys", name).write_text(value)


def _iptables_rules() -> str:
    """The host namespace's rules (counters stripped), v4 and v6."""
    out = []
    for tool in ("iptables-save", "ip6tables-save"):
        done = run([tool], check=False)
        out += [
            line for line in done.stdout.splitlines() if not line.startswith("#") and not line.startswith(":")
        ]
        out += [line.split(" [")[0] for line in done.stdout.splitlines() if line.startswith(":")]
    return "\n".join(out)


def _mountpoints() -> Iterator[str]:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        yield line.split()[4]


def _cgroup_trees() -> Iterator[Path]:
    for hierarchy in CGROUP_FS.iterdir():
        tree = hierarchy / CGROUP_ROOT
        if tree.is_dir():
            yield tree


def _links() -> Iterator[str]:
    for line in run(["ip", "-o", "link", "show"]).stdout.splitlines():
        yield line.split(": ")[1].split("@")[0]


def _netns_names() -> list[str]:
    return [line.split()[0] for line in run(["ip", "netns", "list"], check=False).stdout.splitlines() if line]


class NodeHost:
    """Prepare the host for a node, and put it back."""

    def prepare(self) -> None:
        if (reason := unsupported_reason()) is not None:
            raise HostError(reason)
        sweep()  # a crashed run's leftovers first
        BASE.mkdir(parents=True, exist_ok=True)
        state = {
            "sysctls": {name: _read_sysctl(name) for name in SYSCTLS},
            "fixed_paths": sorted(str(p) for d in FIXED_DIRS for p in _walk(d)),
            "run_netns_mounted": "/run/netns" in set(_mountpoints()),
        }
        STATE_FILE.write_text(json.dumps(state))
        self._network()
        self._cgroups()

    def _cgroups(self) -> None:
        """The kubelet's cgroupRoot must exist in every hierarchy (cpuset needs its cpus and mems set
        before anything can join it)."""
        for hierarchy in CGROUP_FS.iterdir():
            if not (hierarchy / "cgroup.procs").exists() or hierarchy.name == "unified":
                continue
            tree = hierarchy / CGROUP_ROOT
            tree.mkdir(exist_ok=True)
            for name in ("cpuset.cpus", "cpuset.mems"):
                if (hierarchy / name).exists():
                    (tree / name).write_text((hierarchy / name).read_text())

    def _network(self) -> None:
        run(["ip", "netns", "add", NETNS])
        run(["ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", NODE_IF, "netns", NETNS])
        run(["ip", "addr", "add", f"{HOST_IP}/{LINK_PREFIX}", "dev", HOST_IF])
        run(["ip", "link", "set", HOST_IF, "up"])
        run(in_node(["ip", "addr", "add", f"{NODE_IP}/{LINK_PREFIX}", "dev", NODE_IF]))
        run(in_node(["ip", "link", "set", NODE_IF, "up"]))
        run(in_node(["ip", "link", "set", "lo", "up"]))
        # The host reaches the node's pods (the apiserver calls webhook pods by their address).
        run(["ip", "route", "add", POD_CIDR, "via", NODE_IP, "dev", HOST_IF])
        # The node routes between its bridge and the veth (a namespaced sysctl: the host's is untouched).
        run(in_node(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]))

    def teardown(self) -> None:
        sweep()


def sweep() -> bool:
    """Undo a node's changes (after a clean stop or a crash); True if there was anything to undo."""
    if (
        not STATE_FILE.exists()
        and NETNS not in _netns_names()
        and not any(_cgroup_trees())
        and HOST_IF not in set(_links())
    ):
        return False
    state = json.loads(STATE_FILE.read_text()) if STATE_FILE.exists() else {}
    _kill_node_processes()
    _unmount_under(BASE)
    for kubelet_dir in FIXED_DIRS:
        _unmount_under(kubelet_dir)
    for name in _netns_names():
        if name.startswith("cni-") or name == NETNS:
            run(["ip", "netns", "del", name], check=False)
    # The kernel tears a deleted namespace down asynchronously, so the veth's host end may outlive
    # `ip netns del` for a moment: delete it now (both ends go; "no such device" means it already went).
    if HOST_IF in set(_links()):
        run(["ip", "link", "del", HOST_IF], check=False)
    if not state.get("run_netns_mounted", True) and "/run/netns" in set(_mountpoints()):
        run(["umount", "/run/netns"], check=False)
    _remove_cgroups()
    for name, value in (state.get("sysctls") or {}).items():
        _write_sysctl(name, value)
    # What the kubelet and containerd created at their fixed paths (shim sockets, log symlinks): remove
    # what was not there before, deepest first; what was there is someone else's.
    recorded = state.get("fixed_paths")
    # Without a record (a crash before it was written) nothing at the fixed paths is touched.
    existed = set(recorded) if recorded is not None else {str(p) for d in FIXED_DIRS for p in _walk(d)}
    created = [p for d in FIXED_DIRS for p in _walk(d) if str(p) not in existed]
    for path in sorted(created, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            else:
                path.unlink()
    run(["rm", "-rf", str(BASE)], check=False)
    return True


def _walk(directory: Path) -> list[Path]:
    """`directory` and everything below it (not following symlinks); [] if it does not exist."""
    if not directory.exists():
        return []
    paths = [directory]
    for root, dirs, files in os.walk(directory):
        paths += [Path(root) / name for name in (*dirs, *files)]
    return paths


def _kill_node_processes() -> None:
    """SIGKILL everything that belongs to the node: in its namespace, in its pods' cgroups, its shims."""
    for _ in range(20):  # processes may fork while we kill; repeat until none is left
        pids = set()
        if NETNS in _netns_names():
            pids |= {int(p) for p in run(["ip", "netns", "pids", NETNS], check=False).stdout.split()}
        for tree in _cgroup_trees():
            for procs in tree.rglob("cgroup.procs"):
                with contextlib.suppress(OSError, ValueError):
                    pids |= {int(p) for p in procs.read_text().split()}
        pids |= set(_pids_mentioning(str(BASE)))
        pids.discard(os.getpid())
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)  # let the kernel reap them before looking again


def _pids_mentioning(text: str) -> Iterator[int]:
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if text.encode() in (proc / "cmdline").read_bytes():
                yield int(proc.name)


def _unmount_under(path: Path) -> None:
    """Unmount everything at or below `path`, deepest first."""
    prefix = str(path)
    for point in sorted(
        (m for m in _mountpoints() if m == prefix or m.startswith(prefix + "/")), key=len, reverse=True
    ):
        run(["umount", "-l", point], check=False)


def _remove_cgroups() -> None:
    for tree in list(_cgroup_trees()):
        for directory in sorted(
            (p for p in tree.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
        ):
            with contextlib.suppress(OSError):
                directory.rmdir()
        with contextlib.suppress(OSError):
            tree.rmdir()
