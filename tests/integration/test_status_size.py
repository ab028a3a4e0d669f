"""A status the apiserver refuses for its size ends the flow Failed, it does not loop.

Admission bounds what a flow's status can grow to (validation/size.py) against etcd's default 1.5 MiB
limit. To meet the limit for real with a flow that passed that check, this module runs its own etcd with
a 200 kB request limit: the flow below grows a status of about 250 kB, so the controller's writes are
refused by the real apiserver and etcd, and we check what a user sees.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from zen_flow.validation import validate_jobflow
from zen_flow_dev.cluster import LocalCluster, find_kubectl
from zen_flow_dev.testing.controller import ControllerProcess
from zen_flow_dev.testing.crd import install_crd
from zen_flow_dev.testing.driver import FlowDriver, wait_until
from zen_flow_dev.testing.flows import flow_manifest, job_step
from zen_flow_dev.testing.jobstatus import complete_job

pytestmark = pytest.mark.integration

ETCD_LIMIT = 200_000
STEPS, OUTPUTS = 10, 24
VALUE = "v" * 1000  # each output parameter reads the Job's condition message: 1 kB per value


@pytest.fixture(scope="module")
def small_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(
        "apiserver",
        workdir=tmp_path_factory.mktemp("small-etcd"),
        extra_etcd_args=[f"--max-request-bytes={ETCD_LIMIT}"],
    )
    cluster.start()
    install_crd(find_kubectl(cluster.bin_dir), cluster.kubeconfig)
    yield cluster
    cluster.stop()


def _flow(namespace: str) -> dict[str, Any]:
    outputs = {
        "parameters": [
            {"name": f"p{i}", "valueFrom": {"jsonPath": "$.conditions[-1].message"}} for i in range(OUTPUTS)
        ]
    }
    steps = [job_step(f"s{i}", outputs=outputs) for i in range(STEPS)]
    return flow_manifest("grows", namespace, steps)


async def test_a_status_etcd_refuses_fails_the_flow_once_with_a_condition(
    small_etcd: LocalCluster, tmp_path: Path
) -> None:
    namespace = "default"
    manifest = _flow(namespace)
    assert validate_jobflow(manifest) == []  # admitted: within etcd's real 1.5 MiB
    controller = ControllerProcess(small_etcd.kubeconfig, tmp_path / "controller.log", namespaces=[namespace])
    controller.start().wait_ready()
    driver = await FlowDriver.connect(small_etcd.kubeconfig)
    try:
        await driver.create(manifest)

        async def all_jobs() -> list[dict[str, Any]] | None:
            jobs = await driver.jobs(namespace)
            return jobs if len(jobs) == STEPS else None

        for job in await wait_until(all_jobs, 30, what="a Job per step"):
            await complete_job(driver.kube, namespace, job["metadata"]["name"], message=VALUE)
        flow = await driver.wait_phase(namespace, "grows", {"Failed"}, timeout=30)
        refused = controller.metric("zen_flow_status_patches_total", result="refused")
        retried = controller.metric("zen_flow_reconciles_total", result="error")
    finally:
        await driver.close()
        controller.stop()
    failed = next(c for c in flow["status"]["conditions"] if c["type"] == "Failed")
    assert failed["status"] == "True"
    assert failed["reason"] == "StatusRejected"
    assert failed["message"].startswith("the flow's status is too large to store: the apiserver answered")
    assert flow["status"]["message"] == failed["message"][: len(flow["status"]["message"])]
    # Refused once (or twice, if two reconciles raced to the same write), then Failed: never a loop of
    # retries with backoff.
    assert refused >= 1
    assert retried == 0
