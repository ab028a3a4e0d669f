"""Controller: jobRetention FailedOnly with the log archive on. A Succeeded step's Job is deleted only once
its logs are written, counted as zen_flow_job_deletes_total{reason="succeeded"} once, without a
tombstone to bring it back to the next plans; the flow's record lists the logs of the Jobs deleted
before it was written."""

from __future__ import annotations

import asyncio

from test_controller_archive_logs import KEY, NS, count, record, rig

from zen_flow.controller.metrics import Metrics
from zen_flow.core.naming import job_name
from zen_flow_dev.testing.clock import FakeClock
from zen_flow_dev.testing.flows import job_step, make_flow


def deletes(metrics: Metrics, reason: str) -> float:
    found = metrics.registry.get_sample_value("zen_flow_job_deletes_total", {"reason": reason})
    return found or 0.0


async def test_a_succeeded_steps_job_goes_once_its_logs_are_written_and_the_record_lists_them() -> None:
    clock = FakeClock()
    api, ctrl, archive, store, _, metrics = rig(clock)
    writers = asyncio.create_task(archive.run())

    async def spin(rounds: int, step: float) -> None:
        for _ in range(rounds):
            if KEY in api.flows:
                await ctrl.reconcile(KEY)
            await clock.advance(0)
            api.sync()
            await clock.advance(step)

    first, second = job_name("nightly", "s0", 0), job_name("nightly", "s1", 0)
    try:
        store.logs_down = "HTTP 503 SlowDown"
        policy = {"jobRetention": "FailedOnly", "ttlSecondsAfterFinished": 86400}
        steps = [job_step("s0"), job_step("s1", "s0")]
        api.create_flow(make_flow(steps, name="nightly", namespace=NS, execution_policy=policy))
        api.sync()
        await spin(2, 0)
        api.finish_job(NS, first)
        api.sync()
        await spin(6, 2)
        assert (NS, second) in api.jobs  # s1 started, its start stored...
        assert (NS, first) in api.jobs  # ...and s0's Job waits for its logs
        store.logs_down = ""
        await spin(4, 300)
        assert (NS, first) not in api.jobs
        api.finish_job(NS, second)
        api.sync()
        await spin(6, 2)
        assert api.flows[KEY].status.phase == "Succeeded"
        assert not api.jobs
        assert [s.phase for s in api.flows[KEY].status.steps] == ["Succeeded", "Succeeded"]
        # Each deleted once: no tombstone brought them back to a later plan (informer/tombstones.py).
        assert api.disowned == [f"{NS}/{first}", f"{NS}/{second}"]
        assert deletes(metrics, "succeeded") == 2
        assert count(metrics, "skipped") == 0
        # The record lists both attempts' logs, though both Jobs were gone when it was written.
        listed = [(e["job"], e["container"]) for e in record(store)["logs"]]
        assert listed == [(job, c) for job in (first, second) for c in ("main", "sidecar")]
    finally:
        writers.cancel()
