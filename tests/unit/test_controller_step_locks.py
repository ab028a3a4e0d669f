"""Controller: step locks as the reconciler keeps them (planner/lock_book.py wired to the flow informer's
events and to each plan): a waiting flow costs no API request, and a holder that ends or is deleted
queues the waiting flow at once (no polling)."""

from __future__ import annotations

from lock_rig import DB, NS, new_controller, queued, started_pair

from zen_flow.api import JobFlow
from zen_flow.controller.metric_collectors import FlowCollector
from zen_flow.planner import CreateJob, plan
from zen_flow_dev.testing.flows import job_step, make_flow

WAITING = "waiting for lock db"


def flow(name: str) -> JobFlow:
    return make_flow([job_step("s0", synchronization=DB)], name=name, namespace=NS)


async def test_a_waiting_flow_says_for_whom_and_costs_no_request_while_it_waits() -> None:
    api, ctrl, _ = await started_pair(flow)
    assert api.flows[f"{NS}/b"].status.steps[0].message == WAITING
    told = [("Normal", "StepWaitingForLock", f"step s0: {WAITING} (db held by jobflow/a step s0)")]
    assert [e for e in api.events if e[1] == "StepWaitingForLock"] == told
    patches, creates, events = list(api.patches), list(api.job_creates), list(api.events)
    await ctrl.reconcile(f"{NS}/b")
    assert api.patches == patches
    assert api.job_creates == creates
    assert api.events == events


async def test_a_holder_that_ends_queues_the_waiting_flow_which_then_starts() -> None:
    api, ctrl, queue = await started_pair(flow)
    (job,) = [name for (ns, name) in api.jobs if ns == NS]
    api.finish_job(NS, job)
    api.sync()
    assert await queued(queue) == [f"{NS}/a"]  # a's Job event; b waits on
    await ctrl.reconcile(f"{NS}/a")  # a's step Succeeded
    api.sync()
    assert f"{NS}/b" in await queued(queue)
    await ctrl.reconcile(f"{NS}/b")
    assert api.flows[f"{NS}/b"].status.steps[0].phase == "Running"


async def test_after_a_failover_a_running_job_whose_start_the_status_lost_still_holds_the_lock() -> None:
    api, ctrl, _ = new_controller()
    a = api.create_flow(flow("a"))
    create = next(x for x in plan(a, [], api.clock.now()).actions if isinstance(x, CreateJob))
    await api.create_job(NS, create.body)  # the old leader's create; its status write was lost
    api.create_flow(flow("b"))
    api.sync()
    await ctrl.reconcile(f"{NS}/b")  # the new leader plans b first: a's step holds db
    api.sync()
    assert api.flows[f"{NS}/b"].status.steps[0].message == WAITING
    await ctrl.reconcile(f"{NS}/a")  # a takes its Job over
    assert api.flows[f"{NS}/a"].status.steps[0].phase == "Running"


async def test_a_holder_deleted_queues_the_waiting_flow() -> None:
    api, ctrl, queue = await started_pair(flow)
    api.remove_flow(f"{NS}/a")
    api.sync()
    assert f"{NS}/b" in await queued(queue)
    await ctrl.reconcile(f"{NS}/b")
    assert api.flows[f"{NS}/b"].status.steps[0].phase == "Running"


async def test_the_waiting_steps_are_counted_by_namespace() -> None:
    api, _, _ = await started_pair(flow)
    families = {m.name: m for m in FlowCollector(lambda: api.flows.values()).collect()}
    samples = families["zen_flow_lock_waiting_steps"].samples
    assert [(s.labels, s.value) for s in samples] == [({"namespace": NS}, 1)]


async def test_a_stored_flow_whose_flow_step_takes_a_lock_fails_naming_the_field() -> None:
    # Stored before admission refused it (or past a webhook down): planned, it could deadlock its family.
    api, ctrl, _ = new_controller()
    child = {
        "name": "sub",
        "type": "Flow",
        "flow": {"templateRef": {"name": "build"}},
        "synchronization": DB,
    }
    api.create_flow(make_flow([child], name="p", namespace=NS))
    api.sync()
    await ctrl.reconcile(f"{NS}/p")
    status = api.flows[f"{NS}/p"].status
    valid = next(c for c in status.conditions if c.type == "Valid")
    assert (status.phase, valid.reason) == ("Failed", "InvalidSpec")
    assert "spec.steps[0].synchronization" in (valid.message or "")
    assert "a Flow step cannot take locks" in (valid.message or "")
    assert not api.job_creates


async def test_a_matrix_steps_items_each_hold_a_place_and_a_freed_one_queues_the_waiter() -> None:
    # The book reads the matrix flow's remembered expansion: its items hold the mutex one at a time.
    api, ctrl, queue = new_controller()
    matrix = {"parameters": [{"name": "shard", "values": ["0", "1"]}]}
    steps = [job_step("load", matrix=matrix, synchronization=DB)]
    api.create_flow(make_flow(steps, name="a", namespace=NS))
    await api.clock.advance(1)
    api.create_flow(flow("b"))
    api.sync()
    await ctrl.reconcile(f"{NS}/a")
    api.sync()
    phases = [(s.name, s.phase, s.message) for s in api.flows[f"{NS}/a"].status.steps]
    assert phases == [("load-0", "Running", None), ("load-1", "Pending", WAITING)]
    await ctrl.reconcile(f"{NS}/b")
    api.sync()
    told = [e for e in api.events if e[1] == "StepWaitingForLock" and "s0" in e[2]]
    assert told == [
        ("Normal", "StepWaitingForLock", f"step s0: {WAITING} (db held by jobflow/a step load-0)")
    ]
    await queued(queue)
    (job,) = [name for (ns, name) in api.jobs if ns == NS]
    api.finish_job(NS, job)
    api.sync()
    assert await queued(queue) == [f"{NS}/a"]
    await ctrl.reconcile(f"{NS}/a")  # load-0 Succeeded; load-1, ahead of b, takes db
    api.sync()
    assert [s.phase for s in api.flows[f"{NS}/a"].status.steps] == ["Succeeded", "Running"]
    assert f"{NS}/b" not in await queued(queue)
