"""Tenants (namespaces) share the controller's work queue fairly: the real Controller on the queue the
controller runs with (`flow_queue.flow_queue`), against the fake apiserver and a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from zen_flow.api import Job
from zen_flow.controller.flow_queue import flow_queue, worker_count
from zen_flow.controller.metrics import Metrics
from zen_flow.controller.reconciler import Controller
from zen_flow.kube.errors import from_status
from zen_flow.kube.request_slots import RequestSlots
from zen_flow.kube.transport import ClientOptions
from zen_flow.machinery.expectations import Expectations
from zen_flow_dev.testing.apiserver_fake import FakeApiServer
from zen_flow_dev.testing.clock import FakeClock, settle
from zen_flow_dev.testing.flows import job_step, make_flow

NOISY, QUIET = "tenant-a", "tenant-b"
FLOWS = 300
FAILING = 150


class QuotaExceeded(FakeApiServer):
    """The noisy tenant's Job creates are refused for good (its namespace's quota is used up); the quiet
    tenant's first create meets one transient error."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.quiet_failed = False

    async def create_job(self, namespace: str, body: dict[str, Any]) -> Job:
        if namespace == NOISY:
            status = {"kind": "Status", "code": 403, "reason": "Forbidden", "message": "exceeded quota: jobs"}
            raise from_status(403, status)
        if not self.quiet_failed:
            self.quiet_failed = True
            raise from_status(503, {"kind": "Status", "code": 503, "reason": "ServiceUnavailable"})
        return await super().create_job(namespace, body)


async def _controller(
    api: FakeApiServer, clock: FakeClock, workers: int, start_limit: int | None = None
) -> AsyncIterator[Controller]:
    """The controller with `--workers workers` (so `worker_count(workers)` workers run)."""
    controller = Controller(
        flows=api,
        jobs=api,
        api=api,
        queue=flow_queue(clock, start_limit=start_limit or max(workers, 1), workers=max(workers, 1)),
        expectations=Expectations(clock),
        events=api,
        clock=clock,
        metrics=Metrics(),
    )
    api.on_flow, api.on_job = controller.on_flow_event, controller.on_job_event
    tasks = [
        asyncio.create_task(controller.run_worker()) for _ in range(worker_count(workers) if workers else 0)
    ]
    try:
        yield controller
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def _until(
    clock: FakeClock, done: Callable[[], bool], limit: float, api: FakeApiServer | None = None
) -> float:
    """Fake seconds until `done()`, stepping the clock by 10 ms (fails past `limit`); `api`: its
    informers deliver what changed at every step, as watches do within milliseconds."""
    start = clock.monotonic()
    while not done():
        assert clock.monotonic() - start < limit, "not done in time"
        if api is not None:
            api.sync()
        await clock.advance(0.01)
        await settle()
    return clock.monotonic() - start


async def test_one_tenants_failing_flows_do_not_delay_anothers_retry(clock: FakeClock) -> None:
    api = QuotaExceeded(clock)
    # Captured, not rendered: every refusal is logged with its traceback.
    with capture_logs():
        await _quiet_tenant_retried_soon(api, clock)


async def _quiet_tenant_retried_soon(api: QuotaExceeded, clock: FakeClock) -> None:
    async for _ in _controller(api, clock, workers=4):
        for i in range(FAILING):
            api.create_flow(make_flow([job_step("a")], name=f"a{i}", namespace=NOISY))
        api.sync()
        await settle()  # the noisy tenant's flows have failed once: 50 over the bucket's burst of 100
        api.create_flow(make_flow([job_step("a")], name="b", namespace=QUIET))
        api.sync()

        def quiet_job() -> bool:
            return any(name.startswith("b-a-") for name in api.job_creates)

        # One bucket for all had put the retry behind the noisy tenant's failures at 10/s (5 s and more).
        # (Each refused flow's first failure is written to its status: the watches bring those writes.)
        assert await _until(clock, quiet_job, limit=30.0, api=api) < 1.0


async def test_one_tenants_finished_jobs_do_not_queue_anothers_next_step_behind_them(
    clock: FakeClock,
) -> None:
    api = FakeApiServer(clock)
    async for controller in _controller(api, clock, workers=1):
        flows = [
            make_flow([job_step("a"), job_step("b", "a")], name=f"f{i}", namespace=NOISY)
            for i in range(FLOWS)
        ]
        flows.append(make_flow([job_step("a"), job_step("b", "a")], name="quiet", namespace=QUIET))
        keys = [api.create_flow(flow).key for flow in flows]
        api.sync()
        for key in keys:
            await controller.reconcile(key)  # every flow's step a runs
        api.sync()
        await settle()
        started = len(api.job_creates)
        # Every step a finishes at once, the quiet tenant's last: all are queued before a worker runs.
        for name in api.job_creates:
            if not name.startswith("quiet-"):
                api.finish_job(NOISY, name)
        api.sync()
        api.finish_job(QUIET, next(name for name in api.job_creates if name.startswith("quiet-")))
        api.sync()
        await settle()
        next_steps = api.job_creates[started:]
        assert len(next_steps) == FLOWS + 1
        # Handed out in turns, not after the noisy tenant's 300 reconciles.
        assert [n for n, name in enumerate(next_steps) if name.startswith("quiet-b-")] == [1]


class SlowPods(FakeApiServer):
    """Every pod read takes 10 ms of the fake clock; counts how many are in flight at once."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.in_flight = self.most_in_flight = self.reads = 0

    async def termination_messages(
        self, namespace: str, job: str, *, job_uid: str, succeeded: bool
    ) -> dict[str, str] | None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self._clock.sleep(0.01)
        finally:
            self.in_flight -= 1
        self.reads += 1
        return {"main": "42"}


async def test_a_wide_flow_reads_its_finished_pods_a_few_at_a_time_not_one_after_another(
    clock: FakeClock,
) -> None:
    # 40 steps whose outputs come from termination messages finish at once: their pods are read 8 at a
    # time (the worker is held for 5 reads' time, not 40), and never more at once.
    api = SlowPods(clock)
    output = {"parameters": [{"name": "n", "valueFrom": {"terminationMessage": {}}}]}
    steps = [job_step(f"s{i}", outputs=output) for i in range(40)]
    async for controller in _controller(api, clock, workers=0):  # reconciled here only
        key = api.create_flow(make_flow(steps, name="wide", namespace=NOISY)).key
        api.sync()
        await controller.reconcile(key)
        api.sync()
        for name in list(api.job_creates):
            api.finish_job(NOISY, name)
        api.sync()
        reconcile = asyncio.create_task(controller.reconcile(key))
        took = await _until(clock, reconcile.done, limit=5.0)
        await reconcile
    assert (api.reads, api.most_in_flight) == (40, 8)
    assert took <= 0.06


async def test_a_new_flows_failed_reconcile_comes_back_behind_running_work(clock: FakeClock) -> None:
    # Its retry keeps the priority of a flow that has not started: the start limit and the namespaces'
    # turns of new flows still apply to a tenant whose new flows keep failing.
    api = QuotaExceeded(clock)
    with capture_logs():
        async for controller in _controller(api, clock, workers=0):
            key = api.create_flow(make_flow([job_step("a")], name="refused", namespace=NOISY)).key
            api.sync()
            queue = controller._queue
            await controller._work(await queue.get())  # its Job create is refused: retried with backoff
            await clock.advance(1.0)
            queue.add(f"{QUIET}/running")  # a running flow's next step, queued after the retry came back
            assert [await queue.get(), await queue.get()] == [f"{QUIET}/running", key]


class SlowWebhook(FakeApiServer):
    """Once `slow` is set, the Job creates of the noisy tenant (or of `slow_namespaces`) wait on their
    namespace's admission webhook, which does not answer (until `answer` is set: a webhook's timeout is up
    to 30 s)."""

    def __init__(self, clock: FakeClock, slow_namespaces: tuple[str, ...] = (NOISY,)) -> None:
        super().__init__(clock)
        self.slow_namespaces = slow_namespaces
        self.slow = False
        self.answer = asyncio.Event()
        self.waiting = 0

    async def create_job(self, namespace: str, body: dict[str, Any]) -> Job:
        if namespace in self.slow_namespaces and self.slow:
            self.waiting += 1
            await self.answer.wait()
        return await super().create_job(namespace, body)


def _created(api: FakeApiServer, prefix: str) -> Callable[[], bool]:
    return lambda: any(name.startswith(prefix) for name in api.job_creates)


@pytest.mark.parametrize("new", [True, False], ids=["new flows", "running flows"])
async def test_one_tenants_slow_job_creates_do_not_hold_every_worker(clock: FakeClock, new: bool) -> None:
    # 40 of the noisy tenant's flows start (or have a step finish) together, and each reconcile waits on
    # its Job create; the quiet tenant's flow, new or running, must not wait for one of them to end.
    api = SlowWebhook(clock)
    async for _ in _controller(api, clock, workers=4, start_limit=3):
        for i in range(40):
            api.create_flow(make_flow([job_step("a"), job_step("b", "a")], name=f"a{i}", namespace=NOISY))
        quiet = make_flow([job_step("a"), job_step("b", "a")], name="quiet", namespace=QUIET)
        if not new:
            api.create_flow(quiet)
        if not new:  # every flow runs its step a, which then finishes
            api.sync()
            await _until(clock, lambda: len(api.job_creates) == 41, limit=5.0)
            api.sync()
            await settle()
            for name in api.job_creates:
                if not name.startswith("quiet-"):
                    api.finish_job(NOISY, name)
        api.slow = True
        api.sync(flows=new, jobs=not new)  # the noisy tenant's flows first
        await settle()  # their reconciles have taken what workers they may, and wait on their creates
        assert api.waiting == (3 if new else 4), (
            "the noisy tenant holds no more than --start-workers / --workers"
        )
        if new:
            api.create_flow(quiet)
            api.sync()
        else:
            api.finish_job(QUIET, next(n for n in api.job_creates if n.startswith("quiet-")))
            api.sync()
        await _until(clock, _created(api, "quiet-a-" if new else "quiet-b-"), limit=1.0)
        api.answer.set()


SECOND, THIRD = "tenant-c", "tenant-d"


@pytest.mark.parametrize("new", [True, False], ids=["new flows", "running flows"])
async def test_two_tenants_slow_job_creates_do_not_hold_every_worker(clock: FakeClock, new: bool) -> None:
    # A webhook slow for two namespaces: 40 flows of each start (or have a step finish) together, each
    # reconcile waiting on its Job create. Each may hold --workers of the 2 x --workers workers, which is
    # all of them between the two; a third tenant's flow must still find a worker at once.
    api = SlowWebhook(clock, slow_namespaces=(NOISY, SECOND))
    async for _ in _controller(api, clock, workers=4):
        for i in range(40):
            for namespace in (NOISY, SECOND):
                api.create_flow(
                    make_flow([job_step("a"), job_step("b", "a")], name=f"f{i}", namespace=namespace)
                )
        quiet = make_flow([job_step("a"), job_step("b", "a")], name="quiet", namespace=QUIET)
        if not new:
            api.create_flow(quiet)
            api.sync()
            await _until(clock, lambda: len(api.job_creates) == 81, limit=5.0)
            api.sync()
            await settle()
            for namespace, name in list(api.jobs):
                if namespace != QUIET:
                    api.finish_job(namespace, name)
        api.slow = True
        api.sync(flows=new, jobs=not new)  # the slow tenants' flows first
        await settle()  # their reconciles have taken what workers they may, and wait on their creates
        # 8 workers; the two namespaces with workers in hand never take the last quarter (2) of them.
        assert api.waiting == 6
        if new:
            api.create_flow(quiet)
            api.sync()
        else:
            api.finish_job(QUIET, next(n for n in api.job_creates if n.startswith("quiet-")))
            api.sync()
        await _until(clock, _created(api, "quiet-a-" if new else "quiet-b-"), limit=1.0)
        # And a fourth tenant beside it: the reserve holds one first worker each for two namespaces.
        api.create_flow(make_flow([job_step("a")], name="other", namespace=THIRD))
        api.sync()
        await _until(clock, _created(api, "other-a-"), limit=1.0)
        api.answer.set()


class SlotsOfTheClient(SlowWebhook):
    """Every Job create holds one of the client's request slots (`RequestSlots`, as `KubeClient` sends
    them: 32 in flight) from before it is sent until it is answered, the slow namespaces' creates while
    their webhook does not answer."""

    def __init__(self, clock: FakeClock, slow_namespaces: tuple[str, ...]) -> None:
        super().__init__(clock, slow_namespaces)
        self.slots = RequestSlots(ClientOptions().max_concurrent_requests)

    async def create_job(self, namespace: str, body: dict[str, Any]) -> Job:
        slot = await self.slots.acquire(f"/apis/batch/v1/namespaces/{namespace}/jobs")
        try:
            return await super().create_job(namespace, body)
        finally:
            self.slots.release(slot)


async def test_two_tenants_slow_fan_outs_do_not_hold_every_request_slot(clock: FakeClock) -> None:
    # A webhook slow for two namespaces, each starting two 40-step fan-outs: each reconcile sends 16 creates
    # at once. One namespace may hold three quarters (24) of the 32 request slots, which left the other
    # slow namespace the last 8; a third tenant's create must still go out at once.
    api = SlotsOfTheClient(clock, slow_namespaces=(NOISY, SECOND))
    api.slow = True
    async for _ in _controller(api, clock, workers=8):
        fan_out = [job_step(f"s{i}") for i in range(40)]
        for i in range(2):
            for namespace in (NOISY, SECOND):
                api.create_flow(make_flow(fan_out, name=f"wide{i}", namespace=namespace))
        api.sync()
        await settle()  # every create the slots let out waits on the webhook
        # 32 slots; the namespaces with requests in flight never take the last quarter (8) of them but
        # for a first request each (both had theirs before).
        assert api.waiting == 32 - 8
        api.create_flow(make_flow([job_step("a")], name="quiet", namespace=QUIET))
        api.sync()
        await _until(clock, _created(api, "quiet-a-"), limit=1.0)
        api.answer.set()
        await _until(clock, lambda: len(api.job_creates) == 4 * 40 + 1, limit=5.0)
