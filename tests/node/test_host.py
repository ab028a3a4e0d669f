"""A real node changes the host (sysctls, mounts, cgroups, network namespaces, links); all of it is put
back when the node stops, and after a crash the next start cleans up first."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from conftest import node_skip_reason
from zen_flow_dev.cluster import LocalCluster
from zen_flow_dev.node import host
from zen_flow_dev.node.host import HostSnapshot


@pytest.fixture(autouse=True)
def _needs_a_node() -> None:
    if (reason := node_skip_reason()) is not None:
        pytest.skip(reason)


def _assert_same(before: HostSnapshot, after: HostSnapshot) -> None:
    assert after.sysctls == before.sysctls
    assert after.iptables == before.iptables
    assert after.mounts == before.mounts
    assert after.cgroups == before.cgroups
    assert after.links == before.links
    assert after.namespaces == before.namespaces


def test_a_stopped_node_leaves_the_host_as_it_was() -> None:
    before = HostSnapshot.take()
    cluster = LocalCluster("node")  # with its smoke Job: a real pod ran
    cluster.start()
    try:
        during = HostSnapshot.take()
        assert during.namespaces > before.namespaces  # zf-node and the pods' namespaces
        assert during.cgroups != before.cgroups  # the kubelet's cgroup root
    finally:
        cluster.stop()
    _assert_same(before, HostSnapshot.take())
    assert not host.BASE.exists()


def test_after_a_crash_the_next_start_sweeps_the_leftovers() -> None:
    before = HostSnapshot.take()
    # A test run that dies hard: the node and a pod are up, then the process exits without any clean-up
    # (its components die with it; containerd's shims and the pod's processes do not).
    crash = textwrap.dedent(
        """
        import os
        from zen_flow_dev.cluster import LocalCluster
        LocalCluster("node").start()
        os._exit(9)
        """
    )
    done = subprocess.run([sys.executable, "-c", crash], capture_output=True, text=True, timeout=180)
    assert done.returncode == 9, done.stderr[-2000:]
    left = HostSnapshot.take()
    assert host.NETNS in left.namespaces
    assert left.cgroups  # the crashed node's cgroups are still there
    assert host.sweep() is True  # what the next start does first
    _assert_same(before, HostSnapshot.take())
