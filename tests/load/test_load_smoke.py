"""Many concurrent flows through one controller: every flow Succeeds, every step gets exactly one Job.

The benchmark's workload builders and observer (zen_flow_dev.bench) on a small size; correctness only, no
timing assertion. 20 flows of 5 steps with a fan-out and a join (s0 -> s1, s2, s3 -> s4), created at once.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from zen_flow.api.constants import LABEL_FLOW, LABEL_STEP
from zen_flow_dev.bench.observer import Observer
from zen_flow_dev.bench.workloads import Workload, diamond, flow_manifest_for
from zen_flow_dev.testing.controller import ControllerProcess
from zen_flow_dev.testing.driver import FlowDriver

pytestmark = pytest.mark.e2e

FLOWS = 20
WORKLOAD = Workload("smoke", "20 x diamond 1 -> 3 -> 1", "flows", diamond(3), FLOWS)


async def test_concurrent_flows_all_succeed_with_one_job_per_step(
    kubeconfig: Path, namespace: str, jobflow_crd: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    controller = ControllerProcess(kubeconfig, tmp_path / "controller.log", namespaces=[namespace]).start()
    driver = await FlowDriver.connect(kubeconfig)
    try:
        await asyncio.to_thread(controller.wait_ready)
        async with Observer(driver.kube, namespace, watch_flows=True) as seen:
            manifests = [flow_manifest_for(WORKLOAD, name, namespace) for name in WORKLOAD.flow_names()]
            await asyncio.gather(*(driver.create(m) for m in manifests))
            await seen.wait_for(lambda: len(seen.flow_done) == FLOWS, timeout=240, what="every flow finished")
        flows = (await driver.flows.list(namespace)).items
        jobs = await driver.jobs(namespace)
        created = controller.metric("zen_flow_job_creates_total", result="created")
    finally:
        await driver.close()
        controller.stop()
        request.node.add_report_section("teardown", "controller log", controller.log_tail(60))

    phases = Counter((f.get("status") or {}).get("phase") for f in flows)
    assert phases == {"Succeeded": FLOWS}
    per_step = Counter(
        (j["metadata"]["labels"][LABEL_FLOW], j["metadata"]["labels"][LABEL_STEP]) for j in jobs
    )
    expected = {(flow, step) for flow in WORKLOAD.flow_names() for step, _ in WORKLOAD.dag.steps}
    assert set(per_step) == expected
    assert [key for key, n in per_step.items() if n > 1] == []
    assert seen.duplicates() == {}  # not even a Job created and deleted again while we watched
    assert created == WORKLOAD.steps
