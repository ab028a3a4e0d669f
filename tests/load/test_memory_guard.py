"""Memory as a guarded property, not a benchmark: a controller that starts on a namespace holding many of
its Jobs caches them all and stays under a generous RSS bound. docs/BENCHMARKS.md measured 92 MB (fresh) for
20,000 cached Jobs; a regression that keeps whole Job objects (pod templates, managedFields) in the cache
would pass 2 KB a Job and fail here."""

from __future__ import annotations

import asyncio
from typing import Any

from zen_flow.api.constants import LABEL_FLOW, LABEL_MANAGED_BY, LABEL_STEP, MANAGED_BY
from zen_flow.kube.jobs import JOBS
from zen_flow_dev.bench.procstats import sample
from zen_flow_dev.testing.controller import StartController
from zen_flow_dev.testing.driver import FlowDriver
from zen_flow_dev.testing.flows import job_template

JOBS_CACHED = 2000
RSS_BOUND_MB = 200.0  # an idle controller is ~62 MB; 20,000 cached Jobs measured 121 MB


def _job(namespace: str, n: int) -> dict[str, Any]:
    body = job_template()
    body["spec"]["suspend"] = True  # no pods: only the objects matter here
    labels = {LABEL_MANAGED_BY: MANAGED_BY, LABEL_FLOW: f"flow-{n // 20}", LABEL_STEP: f"s{n % 20}"}
    body["metadata"] = {"name": f"cached-{n}", "namespace": namespace, "labels": labels}
    return body


async def test_a_controller_caching_thousands_of_jobs_stays_small(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    gate = asyncio.Semaphore(32)

    async def create(n: int) -> None:
        async with gate:
            await driver.kube.request("POST", JOBS.path(namespace), body=_job(namespace, n))

    await asyncio.gather(*(create(n) for n in range(JOBS_CACHED)))
    controller = start_controller()  # ready = caches synced: every Job is in memory now
    assert controller.metric("zen_flow_informer_cached_objects", resource="jobs") == JOBS_CACHED
    used = sample(controller.pid)
    assert used is not None
    assert used.rss_mb < RSS_BOUND_MB, f"RSS {used.rss_mb:.0f} MB with {JOBS_CACHED} cached Jobs"
