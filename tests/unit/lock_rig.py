"""The set-up the lock tests share (step locks, a flow's own locks, a matrix's items' locks).

The planner's: flows of one namespace in a `LockCluster`, whose every reconcile claims the view, plans,
settles and lets the book observe, as the controller's does. The controller's: a `Controller` wired to a
fake apiserver that counts the status writes, and two flows of which the older holds the mutex `db` and
the younger waits for it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from zen_flow.api.jobflow import JobFlow
from zen_flow.controller.metrics import Metrics
from zen_flow.controller.reconciler import Controller
from zen_flow.machinery.expectations import Expectations
from zen_flow.machinery.workqueue import WorkQueue
from zen_flow.planner import CreateJob, Plan
from zen_flow_dev.testing.apiserver_fake import FakeApiServer
from zen_flow_dev.testing.clock import FakeClock
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.lock_cluster import LockCluster

T0 = datetime(2025, 1, 1, tzinfo=UTC)
NS = "team-a"
DB = {"mutexes": [{"name": "db"}]}

# --- the planner's -------------------------------------------------------------------------------------


def at(created: float) -> datetime:
    """A creationTimestamp `created` seconds after T0: the flows' order in a lock's line."""
    return T0 + timedelta(seconds=created)


def step_lock_flow(
    name: str,
    created: float,
    sync: dict[str, Any] = DB,
    ns: str = NS,
    priority: int | None = None,
    **step: Any,
) -> JobFlow:
    """A flow of one step, `migrate`, taking the locks `sync` (keyword `step`: its other fields)."""
    return make_flow(
        [job_step("migrate", synchronization=sync, **step)],
        name=name,
        namespace=ns,
        created=at(created),
        execution_policy=None if priority is None else {"priority": priority},
    )


def cluster(*flows: JobFlow) -> LockCluster:
    c = LockCluster(T0)
    for f in flows:
        c.add(f)
    return c


def creates(result: Plan) -> list[str]:
    """The steps whose Jobs the plan creates."""
    return [a.step for a in result.actions if isinstance(a, CreateJob)]


def key(name: str, ns: str = NS) -> str:
    return f"{ns}/{name}"


# --- the controller's ----------------------------------------------------------------------------------


class CountingApi(FakeApiServer):
    """The fake apiserver, naming the flow of each status write (`patches`)."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.clock = clock
        self.patches: list[str] = []

    async def patch_flow_status(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> str:
        self.patches.append(name)
        return await super().patch_flow_status(namespace, name, ops)


async def queued(queue: WorkQueue[str]) -> list[str]:
    """Every key in the queue, taken (and done)."""
    out = []
    while len(queue):
        key = await queue.get()
        queue.done(key)
        out.append(key)
    return out


def controller(api: CountingApi) -> tuple[Controller, WorkQueue[str]]:
    """A controller fed by `api`'s events (a new process, after a restart, when `api` has objects: its
    informers are fed what the apiserver holds)."""
    queue: WorkQueue[str] = WorkQueue(clock=api.clock)
    ctrl = Controller(
        flows=api,
        jobs=api,
        api=api,
        queue=queue,
        expectations=Expectations(api.clock),
        events=api,
        clock=api.clock,
        metrics=Metrics(),
    )
    api.on_flow, api.on_flow_deleted, api.on_job = ctrl.on_flow_event, ctrl.on_flow_deleted, ctrl.on_job_event
    return ctrl, queue


def new_controller() -> tuple[CountingApi, Controller, WorkQueue[str]]:
    """A controller and an empty apiserver, on a clock of their own."""
    api = CountingApi(FakeClock())
    ctrl, queue = controller(api)
    return api, ctrl, queue


async def started_pair(flow: Callable[[str], JobFlow]) -> tuple[CountingApi, Controller, WorkQueue[str]]:
    """`flow("a")` holds db, `flow("b")`, created a second later, waits for it; the queue drained."""
    api, ctrl, queue = new_controller()
    api.create_flow(flow("a"))
    await api.clock.advance(1)
    api.create_flow(flow("b"))
    api.sync()
    await ctrl.reconcile(key("a"))
    api.sync()
    await ctrl.reconcile(key("b"))
    api.sync()
    await queued(queue)
    return api, ctrl, queue
