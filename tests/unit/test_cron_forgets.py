"""A deleted CronJobFlow leaves nothing in a long-running controller: not the timer of its next run time
(weeks away for a monthly schedule: it stayed on the event loop until then), nor the run it last reported
(test_cron_controller.py's Cluster: the CronJobFlow shell on a FakeClock)."""

from __future__ import annotations

from typing import Any

from test_cron_controller import Cluster
from test_cron_controller import running as running  # the fixture

from zen_flow.controller.metrics import Metrics
from zen_flow_dev.testing.clock import FakeClock, settle


async def test_a_deleted_cronjobflow_leaves_no_timer(running: tuple[Cluster, FakeClock, Metrics]) -> None:
    cluster, clock, _ = running
    assert cluster.controller is not None
    cluster.add_cron("monthly", schedule="@monthly")
    cluster.add_cron("daily", schedule="@daily")
    await settle()
    assert (cluster.controller.queue.delayed, clock.pending_timers) == (2, 2)  # their next run times
    cluster.controller.on_cron_deleted(cluster.crons.pop("ns/monthly"))  # as its informer tells it
    assert (cluster.controller.queue.delayed, clock.pending_timers) == (1, 1)  # the daily one's


async def test_a_cronjobflow_deleted_while_its_run_is_created_is_forgotten(
    running: tuple[Cluster, FakeClock, Metrics],
) -> None:
    cluster, clock, _ = running
    controller = cluster.controller
    assert controller is not None
    api = controller._flow_api

    async def create_then_deleted(namespace: str, body: dict[str, Any]) -> str:
        uid = await cluster.create(namespace, body)
        controller.on_cron_deleted(cluster.crons.pop("ns/gone"))  # its delete event, during the create
        return uid

    api.create = create_then_deleted  # type: ignore[method-assign]
    cluster.add_cron("gone")
    await clock.advance(30)  # 00:01: the run is created, and the CronJobFlow deleted
    assert cluster.runs("gone") == ["gone-31557601"]
    await clock.advance(1)  # its status write failed (it is gone): the retry finds nothing to do
    assert controller._reported == {}
    assert (controller.queue.delayed, clock.pending_timers) == (0, 0)
