"""Controller: a flow's own locks (`spec.synchronization`) as the reconciler keeps them, with the fake
apiserver: a waiting flow stays Pending saying so, with one event naming the holder and no API request
while it waits; the holder's end queues it; a restarted controller finds the holder in its status; the
waiting flows are counted by namespace."""

from __future__ import annotations

from lock_rig import DB, NS, controller, queued, started_pair

from zen_flow.api import JobFlow
from zen_flow.controller.metric_collectors import FlowCollector
from zen_flow_dev.testing.flows import job_step, make_flow


def flow(name: str) -> JobFlow:
    return make_flow([job_step("s0")], name=name, namespace=NS, synchronization=DB)


async def test_a_waiting_flow_stays_pending_says_for_whom_once_and_costs_no_request() -> None:
    api, ctrl, _ = await started_pair(flow)
    a, b = api.flows[f"{NS}/a"].status, api.flows[f"{NS}/b"].status
    assert (a.phase, a.held_locks) == ("Running", ("db",))
    assert (b.phase, b.message, b.held_locks, b.steps[0].phase) == (
        "Pending",
        "waiting for lock db",
        None,
        "Pending",
    )
    assert [e for e in api.events if e[1] == "FlowWaitingForLock"] == [
        ("Normal", "FlowWaitingForLock", "waiting for lock db (db held by jobflow/a)")
    ]
    assert not [e for e in api.events if e[1] == "FlowQueued"]
    patches, creates, events = list(api.patches), list(api.job_creates), list(api.events)
    await ctrl.reconcile(f"{NS}/b")
    assert (api.patches, api.job_creates, api.events) == (patches, creates, events)


async def test_the_holders_end_queues_the_waiting_flow_which_then_starts() -> None:
    api, ctrl, queue = await started_pair(flow)
    (job,) = [name for (ns, name) in api.jobs if ns == NS]
    api.finish_job(NS, job)
    api.sync()
    assert await queued(queue) == [f"{NS}/a"]  # a's Job event; b waits on while a runs
    await ctrl.reconcile(f"{NS}/a")  # a Succeeded: its lock is free
    api.sync()
    assert api.flows[f"{NS}/a"].status.held_locks is None
    assert f"{NS}/b" in await queued(queue)
    await ctrl.reconcile(f"{NS}/b")
    api.sync()
    b = api.flows[f"{NS}/b"].status
    assert (b.phase, b.held_locks, b.steps[0].phase) == ("Running", ("db",), "Running")


async def test_a_restarted_controller_finds_the_holder_in_its_status() -> None:
    api, _, _ = await started_pair(flow)
    ctrl, _ = controller(api)  # a new process: its informers list the Jobs and both flows
    for job in api.jobs.values():
        ctrl.on_job_event(job)
    for cached in api.flows.values():
        ctrl.on_flow_event(cached)
    await ctrl.reconcile(f"{NS}/b")  # planned first: a's status says it holds db
    assert api.flows[f"{NS}/b"].status.phase == "Pending"
    assert len(api.job_creates) == 1


async def test_the_flows_waiting_for_their_locks_are_counted_by_namespace() -> None:
    api, _, _ = await started_pair(flow)
    families = {m.name: m for m in FlowCollector(lambda: api.flows.values()).collect()}
    samples = families["zen_flow_jobflows_waiting_for_lock"].samples
    assert [(s.labels, s.value) for s in samples] == [({"namespace": NS}, 1)]
    slot = families["zen_flow_jobflows_waiting_for_slot"].samples
    assert [s.value for s in slot] == [0]
