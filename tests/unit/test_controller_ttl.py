"""Controller: a finished flow's TTL deletes it once. The delete has no finalizer to wait for, so the flow
cache shows the flow, not marked deleted, until the watch event of the delete comes; a reconcile in
between (a Job event, a timer) must not delete it again. The reconcile that deletes it writes no status:
the write would only find the flow gone."""

from __future__ import annotations

from typing import Any

from zen_flow.api import JobFlow
from zen_flow.controller.metrics import Metrics
from zen_flow.controller.reconciler import Controller
from zen_flow.machinery.expectations import Expectations
from zen_flow.machinery.workqueue import WorkQueue
from zen_flow_dev.testing.apiserver_fake import FakeApiServer
from zen_flow_dev.testing.clock import FakeClock
from zen_flow_dev.testing.flows import job_step, make_flow

NS = "team-a"
KEY = f"{NS}/short-lived"


class CountingApi(FakeApiServer):
    """The fake apiserver, counting the flow deletes sent (a second one answers 404 in a cluster) and the
    status writes."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.flow_deletes: list[str] = []
        self.status_writes: list[str] = []

    async def patch_flow_status(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> str:
        self.status_writes.append(f"{namespace}/{name}")
        return await super().patch_flow_status(namespace, name, ops)

    async def delete_flow(self, namespace: str, name: str, uid: str) -> None:
        self.flow_deletes.append(uid)
        await super().delete_flow(namespace, name, uid)


def controller(api: FakeApiServer, clock: FakeClock) -> Controller:
    made = Controller(
        flows=api,
        jobs=api,
        api=api,
        queue=WorkQueue(clock=clock),
        expectations=Expectations(clock),
        events=api,
        clock=clock,
        metrics=Metrics(),
    )
    api.on_flow, api.on_flow_deleted, api.on_job = made.on_flow_event, made.on_flow_deleted, made.on_job_event
    return made


async def succeeded(api: CountingApi, ctrl: Controller, *, ttl_seconds: int) -> JobFlow:
    """A one-step flow with that TTL, run by `ctrl` to Succeeded (its Job finished)."""
    ttl = {"ttlSecondsAfterFinished": ttl_seconds}
    flow = api.create_flow(
        make_flow([job_step("s0")], name="short-lived", namespace=NS, execution_policy=ttl)
    )
    api.sync()
    await ctrl.reconcile(KEY)
    api.sync()
    (job,) = [name for (_, name) in api.jobs]
    api.finish_job(NS, job)
    api.sync()
    await ctrl.reconcile(KEY)
    api.sync()
    assert api.flows[KEY].status.phase == "Succeeded"
    return flow


async def test_a_reconcile_before_the_cache_shows_the_ttl_delete_does_not_delete_the_flow_again() -> None:
    clock = FakeClock()
    api = CountingApi(clock)
    ctrl = controller(api, clock)
    flow = await succeeded(api, ctrl, ttl_seconds=2)
    await clock.advance(5)
    await ctrl.reconcile(KEY)  # the TTL expired: the flow is deleted
    assert KEY not in api.flows
    assert api.flow_deletes == [flow.metadata.uid]
    # The flow cache still shows it, not marked deleted, and a reconcile comes first (a Job event, a timer).
    assert api.get(KEY) is not None
    await ctrl.reconcile(KEY)
    assert api.flow_deletes == [flow.metadata.uid]
    api.sync()  # the delete event
    assert await ctrl.reconcile(KEY) is None
    assert api.flow_deletes == [flow.metadata.uid]


def ttl_shortened(flow: JobFlow) -> JobFlow:
    """A user's edit of the ended flow: its TTL down to 0 (delete it now), a new generation."""
    policy = flow.spec.execution_policy
    assert policy is not None
    spec = flow.spec.model_copy(
        update={"execution_policy": policy.model_copy(update={"ttl_seconds_after_finished": 0})}
    )
    meta = flow.metadata.model_copy(update={"generation": (flow.metadata.generation or 1) + 1})
    return flow.model_copy(update={"spec": spec, "metadata": meta})


async def test_a_flow_whose_ttl_an_edit_made_expire_is_deleted_with_no_status_write() -> None:
    # The edit raised the generation: the plan catches the status up to it beside the delete, but a
    # write after the delete would only meet a 404 and fail the reconcile (a logged error, a backoff).
    clock = FakeClock()
    api = CountingApi(clock)
    ctrl = controller(api, clock)
    flow = await succeeded(api, ctrl, ttl_seconds=3600)
    writes = len(api.status_writes)
    api.update_flow(KEY, ttl_shortened)
    api.sync()
    assert await ctrl.reconcile(KEY) is None  # no error raised
    assert KEY not in api.flows
    assert api.flow_deletes == [flow.metadata.uid]
    assert len(api.status_writes) == writes
