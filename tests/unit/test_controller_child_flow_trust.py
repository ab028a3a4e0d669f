"""What a flow's creator cannot forge: a child runs under its parent's slot only when the controller made
it so (planner.runs_under), and checking a claimed child costs the same whatever the step's retry limit."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from typing import Any

import pytest
from test_controller_child_flows import NS, flow_step, owned_by, rig, template

from zen_flow import planner
from zen_flow.api import JobFlow, StepStatus
from zen_flow.api.flow_status import ObjectRef
from zen_flow.controller.child_flows import ChildFlows
from zen_flow.controller.flow_slots import FlowSlots
from zen_flow.core.naming import job_name
from zen_flow.machinery.expectations import Expectations
from zen_flow.machinery.workqueue import WorkQueue
from zen_flow.planner import Lineage, SlotLimits
from zen_flow_dev.testing.clock import FakeClock
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

# The module (zen_flow.planner's `lineage` is its function).
lineage_module = importlib.import_module("zen_flow.planner.lineage")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def claiming(parent: JobFlow, step: str, attempt: int, **fields: Any) -> JobFlow:
    """A flow named, labelled and owned as `parent`'s child of `step` would be for `attempt`."""
    labels = {"workflow.kube-zen.io/parent-step": step, "workflow.kube-zen.io/attempt": str(attempt)}
    flow = make_flow(
        [job_step("work")], name=job_name(parent.metadata.name, step, attempt), labels=labels, **fields
    )
    return owned_by(flow, parent)


class NoJobs:
    def jobs_for(self, uid: str) -> tuple[()]:
        return ()

    def deleted_stray(self, key: str) -> None:
        pass


def running_with(parent: JobFlow, step: str, child: str) -> JobFlow:
    """`parent` started, its status naming `child` as `step`'s child (its jobRef)."""
    steps = (StepStatus(name=step, phase="Running", job_ref=ObjectRef(name=child, namespace=NS)),)
    status = parent.status.model_copy(update={"phase": "Running", "start_time": T0, "steps": steps})
    return parent.model_copy(update={"status": status})


@pytest.mark.parametrize("limits", [SlotLimits(total=1), SlotLimits(per_namespace=1)])
async def test_flows_claiming_a_parent_that_has_not_started_wait_for_a_slot_like_any_flow(
    limits: SlotLimits,
) -> None:
    r = rig(limits)
    busy = r.api.create_flow(make_flow([job_step("a")], name="busy"))
    r.api.sync()
    await r.spin(busy.key, rounds=2)
    # p is suspended before its start: it holds no slot, and made no child.
    p = r.api.create_flow(make_flow([flow_step("sub", retryPolicy={"limit": 50})], name="p", suspend=True))
    r.api.sync()
    forged = [r.api.create_flow(claiming(r.api.flows[p.key], "sub", n)).key for n in range(3)]
    r.api.sync()
    await r.spin(*forged, p.key, rounds=3)
    # Attempt 0 is what p's create would find: p takes it over, and suspends it as it is suspended.
    assert r.api.flows[forged[0]].spec.suspend
    for key in forged[1:]:
        assert r.api.flows[key].status.phase == "Pending"
        assert "waiting for a slot" in (r.api.flows[key].status.message or "")


async def test_a_running_parents_attempt_it_did_not_make_is_no_child_of_its_slot() -> None:
    r = rig()
    r.api.templates[(NS, "t")] = template("t", [job_step("inner")])
    p = r.api.create_flow(make_flow([flow_step("sub", retryPolicy={"limit": 50})], name="p"))
    r.api.sync()
    real = f"{NS}/{job_name('p', 'sub', 0)}"
    await r.spin(p.key, real, rounds=2)
    parent = r.api.flows[p.key]
    assert r.children.is_child(r.api.flows[real])
    # Attempt 1 is one p may be creating (its status write on its way): shown to p, but p's status does
    # not name it and p is creating nothing, so it runs under no slot of p's.
    next_one = claiming(parent, "sub", 1)
    assert planner.is_verified_child(next_one, parent)
    assert not r.children.is_child(next_one)
    # Attempt 2 is past anything p has reached: not even shown to p (its retry limit is no bound).
    assert not planner.is_verified_child(claiming(parent, "sub", 2), parent)


def test_a_huge_retry_limit_costs_a_claimed_child_and_a_pending_create_nothing_more(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    real_job_name = lineage_module.job_name

    def counted(flow: str, step: str, attempt: int) -> str:
        calls.append(attempt)
        return real_job_name(flow, step, attempt)

    monkeypatch.setattr(lineage_module, "job_name", counted)
    p = make_flow([flow_step("sub", retryPolicy={"limit": 2**31 - 1}), job_step("j")], name="p")
    planner.lineage(p, lambda key: None, lambda uid: [], pending=lambda uid: {"p-j-xxxx"})
    assert planner.is_verified_child(claiming(p, "sub", 0), p)
    assert not planner.is_verified_child(claiming(p, "sub", 999_999), p)
    assert len(calls) <= 5


def test_a_child_cached_before_its_parent_stands_as_a_child_once_the_parent_comes() -> None:
    """The informer's first list brings flows in any order: a child seen before its parent contends,
    until its parent's arrival decides it anew (FlowSlots.family_changed)."""
    flows: dict[str, JobFlow] = {}
    clock = FakeClock()
    queue: WorkQueue[str] = WorkQueue(clock=clock)

    class Cache:
        def get(self, key: str) -> JobFlow | None:
            return flows.get(key)

    def children_of(uid: str) -> list[JobFlow]:
        return [f for f in flows.values() if (ref := planner.parent_of(f)) is not None and ref.uid == uid]

    family = ChildFlows(NoJobs(), children_of, Expectations(clock), queue.add, flows.get)
    slots = FlowSlots(SlotLimits(total=2), Cache(), family, queue, family)
    p = make_flow([flow_step("sub")], name="p")
    child = claiming(p, "sub", 0)
    p = running_with(p, "sub", child.metadata.name)
    later = make_flow([job_step("a")], name="later")
    later = later.model_copy(
        update={"metadata": later.metadata.model_copy(update={"creation_timestamp": T0.replace(year=2027)})}
    )
    for flow in (child, p, later):  # the child first: its parent is not cached yet
        flows[flow.key] = flow
        slots.observe(None, flow)
        slots.family_changed(flow)
    # p holds one slot; its child runs under it, so the second is later's (a child still contending,
    # older than later, would take it).
    assert slots.claim(later, []) is None


def test_a_child_finishing_asks_for_no_wakeup_at_its_own_ttl() -> None:
    """Its own TTL does not apply (it goes with its parent): no requeue for it, as a top-level flow's."""
    sim = Simulator(make_flow([job_step("a")], execution_policy={"ttlSecondsAfterFinished": 60}), T0)
    sim.reconcile()
    (job,) = sim.running()
    sim.complete(job)
    jobs = list(sim.jobs.values())
    top = planner.plan(sim.flow, jobs, T0, lineage=planner.TOP_LEVEL)
    child = planner.plan(sim.flow, jobs, T0, lineage=Lineage(depth=1, child=True))
    assert (top.status.phase, top.requeue_after) == ("Succeeded", 60)
    assert (child.status.phase, child.requeue_after) == ("Succeeded", None)


async def test_a_parents_status_naming_its_child_lets_the_child_stand_under_its_slot() -> None:
    """A status write that records a child (a parent update, not an add) decides the child anew."""
    r = rig(SlotLimits(total=2))
    seen: dict[str, JobFlow] = {}

    def on_flow(flow: JobFlow) -> None:  # as the informer calls it: each update with the flow before it
        old, seen[flow.key] = seen.get(flow.key), flow
        r.controller.on_flow_event(flow, old)
        r.children.on_flow_event(flow)

    r.api.on_flow = on_flow
    p = r.api.create_flow(make_flow([flow_step("sub")], name="p"))
    child = r.api.create_flow(claiming(p, "sub", 0))
    r.api.sync()  # p has not started: the child contends like any flow
    r.api.update_flow(p.key, lambda f: running_with(f, "sub", child.metadata.name))
    r.api.sync()  # p runs and names it: it runs under p's slot
    later = r.api.create_flow(make_flow([job_step("a")], name="x-later"))
    r.api.sync()
    await r.spin(later.key, rounds=1)
    # p holds one of the two slots; the other is later's, not the (older) child's.
    assert "waiting for a slot" not in (r.api.flows[later.key].status.message or "")
    assert r.api.flows[later.key].status.phase == "Running"


def test_a_child_seen_before_its_parents_status_names_it_stays_under_the_parents_slot() -> None:
    """The child's arrival lowers its create's expectation before the parent's status write lands: the
    controller remembers it made it, so the child is not queued for a slot in between."""
    clock = FakeClock()
    expectations = Expectations(clock)
    flows: dict[str, JobFlow] = {}
    family = ChildFlows(NoJobs(), lambda uid: [], expectations, lambda key: None, flows.get)
    p = make_flow([flow_step("sub")], name="p")
    child = claiming(p, "sub", 0)
    p = running_with(p, "sub", "an-earlier-child")  # started; its status does not name this one yet
    flows[p.key] = p
    assert not family.is_child(child)
    expectations.expect_creations(p.metadata.uid, [child.metadata.name])
    assert family.is_child(child)
    family.on_flow_event(child)  # it arrives: the expectation is lowered
    assert expectations.pending_creations(p.metadata.uid) == frozenset()
    assert family.is_child(child)
    family.on_flow_event(p, deleted=True)
    assert not family.is_child(child)
