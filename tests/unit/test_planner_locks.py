"""Step synchronization with real plans (planner/locks.py, planner/lock_book.py): mutexes and semaphores
shared by one namespace's flows, taken all at once when a step would start, held until it ends, handed
on in a fair order, and woken (never polled) when freed. Each reconcile does what the controller's does:
claim the view before the plan, settle after it, and the book observes every change the cache sees.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from zen_flow.api.constants import LABEL_PARENT, LABEL_PARENT_STEP, FlowPhase, StepPhase
from zen_flow.api.jobflow import JobFlow
from zen_flow.planner import CreateJob, LockBook, Plan, SlotBook, SlotLimits, needs_slot
from zen_flow.planner.events import LOCK_WAIT_EVENT
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.lock_cluster import LockCluster

T0 = datetime(2025, 1, 1, tzinfo=UTC)
NS = "team-a"
DB = {"mutexes": [{"name": "db"}]}


def warehouse(limit: int) -> dict[str, Any]:
    return {"semaphores": [{"name": "warehouse", "limit": limit}]}


def flow(
    name: str,
    created: float,
    sync: dict[str, Any] = DB,
    ns: str = NS,
    priority: int | None = None,
    **step: Any,
) -> JobFlow:
    return make_flow(
        [job_step("migrate", synchronization=sync, **step)],
        name=name,
        namespace=ns,
        created=T0 + timedelta(seconds=created),
        execution_policy=None if priority is None else {"priority": priority},
    )


def cluster(*flows: JobFlow) -> LockCluster:
    c = LockCluster(T0)
    for f in flows:
        c.add(f)
    return c


def creates(result: Plan) -> list[str]:
    return [a.step for a in result.actions if isinstance(a, CreateJob)]


def key(name: str, ns: str = NS) -> str:
    return f"{ns}/{name}"


def test_a_mutex_lets_one_step_of_the_namespace_run_and_the_next_waits_saying_for_whom() -> None:
    c = cluster(flow("a", 0), flow("b", 1))
    assert creates(c.reconcile(key("a"))) == ["migrate"]
    waiting = c.reconcile(key("b"))
    assert creates(waiting) == []
    assert c.step(key("b"), "migrate") == (
        StepPhase.PENDING,
        "waiting for lock db (held by jobflow/a step migrate)",
    )
    # The flow has started (its step waits as under parallelism), and says why its step waits, once.
    assert [(e.type, e.reason) for e in waiting.events] == [
        ("Normal", LOCK_WAIT_EVENT),
        ("Normal", "FlowStarted"),
    ]
    # Waiting costs nothing: the same plan again writes nothing, creates nothing and says nothing.
    again = c.reconcile(key("b"))
    assert again.status is c[key("b")].flow.status
    assert not again.actions
    assert not again.events


def test_a_holder_that_ends_wakes_the_waiting_flow_which_then_starts() -> None:
    c = cluster(flow("a", 0), flow("b", 1))
    c.reconcile(key("a"))
    c.reconcile(key("b"))
    c.take_woken()
    c.finish(key("a"))
    c.reconcile(key("a"))  # a's step Succeeded: the cache sees it
    assert c.take_woken() == [key("b")]
    assert creates(c.reconcile(key("b"))) == ["migrate"]
    assert c.step(key("b"), "migrate")[0] == StepPhase.RUNNING


def test_a_failed_holder_releases_too() -> None:
    c = cluster(flow("a", 0), flow("b", 1))
    c.reconcile(key("a"))
    c.reconcile(key("b"))
    c.finish(key("a"), failed=True)
    c.reconcile(key("a"))
    assert key("b") in c.take_woken()
    assert creates(c.reconcile(key("b"))) == ["migrate"]


def test_a_flow_deleted_while_it_holds_a_lock_releases_it() -> None:
    c = cluster(flow("a", 0), flow("b", 1))
    c.reconcile(key("a"))
    c.reconcile(key("b"))
    c.take_woken()
    c.delete(key("a"))
    assert c.take_woken() == [key("b")]
    assert creates(c.reconcile(key("b"))) == ["migrate"]


def test_a_semaphore_lets_limit_steps_run_at_once() -> None:
    c = cluster(*(flow(n, i, warehouse(2)) for i, n in enumerate("abc")))
    assert [creates(c.reconcile(key(n))) for n in "abc"] == [["migrate"], ["migrate"], []]
    assert c.step(key("c"), "migrate")[1] == "waiting for lock warehouse (held by jobflow/a step migrate)"
    c.finish(key("b"))
    c.reconcile(key("b"))
    assert c.take_woken()[-1:] == [key("c")]
    assert creates(c.reconcile(key("c"))) == ["migrate"]


def test_locks_of_one_name_in_two_namespaces_are_two_locks() -> None:
    c = cluster(flow("a", 0), flow("b", 1, ns="team-b"))
    assert creates(c.reconcile(key("a"))) == ["migrate"]
    assert creates(c.reconcile(key("b", "team-b"))) == ["migrate"]


def test_a_step_takes_all_its_locks_or_none() -> None:
    both = {"mutexes": [{"name": "db"}, {"name": "cache"}]}
    c = cluster(flow("holds-cache", 0, {"mutexes": [{"name": "cache"}]}), flow("wants-both", 1, both))
    c.reconcile(key("holds-cache"))
    assert creates(c.reconcile(key("wants-both"))) == []
    # db was not taken while it waits for cache: no step holds one lock while it waits for another.
    assert c.book.holders(NS, "db") == []
    assert c.step(key("wants-both"), "migrate")[1] == (
        "waiting for lock cache (held by jobflow/holds-cache step migrate)"
    )


def test_waiters_take_a_freed_lock_in_order_of_priority_then_age() -> None:
    c = cluster(flow("holder", 0), flow("old", 1), flow("urgent", 2, priority=10), flow("young", 3))
    c.reconcile(key("holder"))
    for n in ("old", "urgent", "young"):
        c.reconcile(key(n))
    c.take_woken()
    c.finish(key("holder"))
    c.reconcile(key("holder"))
    # Every waiter is woken, first in line first; whatever order they plan in, only the first takes it.
    assert c.take_woken() == [key("urgent"), key("old"), key("young")]
    assert creates(c.reconcile(key("young"))) == []
    assert c.step(key("young"), "migrate")[1] == (
        "waiting for lock db (behind jobflow/urgent step migrate, waiting ahead of it)"
    )
    assert creates(c.reconcile(key("old"))) == []
    assert creates(c.reconcile(key("urgent"))) == ["migrate"]


def test_a_waiter_ahead_that_needs_a_held_lock_keeps_the_ones_behind_waiting_so_it_cannot_starve() -> None:
    both = {"mutexes": [{"name": "db"}, {"name": "cache"}]}
    c = cluster(
        flow("holds-cache", 0, {"mutexes": [{"name": "cache"}]}), flow("first", 1, both), flow("second", 2)
    )
    c.reconcile(key("holds-cache"))
    c.reconcile(key("first"))  # waits for cache; db is free
    # db is free, but first waits for it ahead of second: second must not take it from under it.
    assert creates(c.reconcile(key("second"))) == []
    c.finish(key("holds-cache"))
    c.reconcile(key("holds-cache"))
    assert key("first") in c.take_woken()
    assert creates(c.reconcile(key("first"))) == ["migrate"]


def test_a_step_in_retry_backoff_keeps_its_locks() -> None:
    retrying = {"retryPolicy": {"limit": 2, "backoff": {"type": "Fixed", "duration": "60s"}}}
    c = cluster(flow("a", 0, **retrying), flow("b", 1))
    c.reconcile(key("a"))
    c.finish(key("a"), failed=True)
    c.reconcile(key("a"))
    assert c.step(key("a"), "migrate")[0] == StepPhase.RETRYING
    assert creates(c.reconcile(key("b"))) == []
    assert c.step(key("b"), "migrate")[1] == "waiting for lock db (held by jobflow/a step migrate)"
    c.now += timedelta(seconds=61)
    assert creates(c.reconcile(key("a"))) == ["migrate"]  # its next attempt needs no new claim


def test_two_steps_of_one_flow_take_a_mutex_in_turn() -> None:
    f = make_flow(
        [job_step("one", synchronization=DB), job_step("two", synchronization=DB)],
        name="a",
        namespace=NS,
        created=T0,
    )
    c = cluster(f)
    assert creates(c.reconcile(key("a"))) == ["one"]
    assert c.step(key("a"), "two")[1] == "waiting for lock db (held by jobflow/a step one)"
    c.finish(key("a"))
    assert creates(c.reconcile(key("a"))) == ["two"]


def test_each_step_heeds_its_own_limit_when_steps_declare_different_limits() -> None:
    c = cluster(
        flow("wide", 0, warehouse(3)), flow("narrow", 1, warehouse(1)), flow("wide-2", 2, warehouse(3))
    )
    assert creates(c.reconcile(key("wide"))) == ["migrate"]
    assert creates(c.reconcile(key("narrow"))) == []  # 1 holder: not fewer than its limit 1
    # 1 holder and narrow waiting ahead: 2 < 3.
    assert creates(c.reconcile(key("wide-2"))) == ["migrate"]


def test_a_plan_in_flight_reserves_its_locks_and_a_start_stays_reserved_until_the_cache_shows_it() -> None:
    a, b = flow("a", 0), flow("b", 1)
    book = LockBook()
    for f in (a, b):
        book.observe(None, f)
    book.claim(a)  # a's plan runs (a sandboxed `when`, a memo read)...
    assert book.claim(b).uses["db"].held == 1  # ...and b, planned meanwhile, counts a's lock as taken
    c = cluster(a, b)
    sim = c[key("a")]
    started = c.reconcile(key("a"))
    fresh = LockBook()
    for f in (sim.flow, c[key("b")].flow):
        fresh.observe(None, f)
    assert fresh.holders(NS, "db") == ["jobflow/a step migrate"]  # a restart finds it from the cache
    # Before the cache shows a's start, its reservation holds the lock.
    stale = LockBook()
    for f in (a, b):
        stale.observe(None, f)
    stale.claim(a)
    stale.settle(a, started.status)
    assert stale.claim(b).uses["db"].held == 1


def test_a_plan_that_took_nothing_wakes_the_flows_that_saw_its_reservation() -> None:
    later = flow("a", 0, when="false")  # its step is skipped: it takes nothing
    book = LockBook()
    for f in (later, flow("b", 1)):
        book.observe(None, f)
    book.claim(later)
    book.claim(flow("b", 1))
    c = cluster(later)
    result = c.reconcile(key("a"))
    assert c.step(key("a"), "migrate")[0] == StepPhase.SKIPPED
    assert book.settle(later, result.status) == [key("b")]


def test_a_suspended_flows_waiting_steps_keep_no_one_waiting() -> None:
    c = cluster(flow("holder", 0), flow("sleeper", 1), flow("late", 2))
    c.reconcile(key("holder"))
    c.reconcile(key("sleeper"))
    c.change(key("sleeper"), lambda sim: sim.set_suspend(True))
    c.finish(key("holder"))
    c.reconcile(key("holder"))
    assert creates(c.reconcile(key("late"))) == ["migrate"]


def test_the_flow_message_says_which_step_waits_for_which_lock() -> None:
    c = cluster(flow("a", 0), flow("b", 1))
    c.reconcile(key("a"))
    c.reconcile(key("b"))
    assert c[key("b")].flow.status.message == "migrate waiting for lock db (held by jobflow/a step migrate)"


def test_a_flow_whose_step_waits_for_a_lock_has_started_and_keeps_its_slot() -> None:
    # Under --namespace-max-running-flows: a flow that took a slot, then gave it back because its step
    # waits for a lock, would wake the next flow in line at every plan, and that one would wake it back.
    slots = SlotBook(SlotLimits(per_namespace=2))
    c = cluster(flow("a", 0), flow("b", 1), flow("c", 2))
    for k in (key("a"), key("b"), key("c")):
        slots.observe(None, c[k].flow)
    for k in (key("a"), key("b")):
        before = c[k].flow
        assert slots.claim(before) is None
        c.reconcile(k)
        assert slots.settle(before, begun=c[k].flow.status.start_time is not None) == []
        slots.observe(before, c[k].flow)
    waiting = c[key("b")].flow
    assert waiting.status.phase == FlowPhase.RUNNING
    assert waiting.status.start_time is not None
    assert not needs_slot(waiting, ())  # it holds its slot: its next plans claim none, wake no one


def child(name: str, created: float, parent: str, step: str) -> JobFlow:
    labels = {LABEL_PARENT: parent, LABEL_PARENT_STEP: step}
    return make_flow(
        [job_step("migrate", synchronization=DB)],
        name=name,
        namespace=NS,
        created=T0 + timedelta(seconds=created),
        labels=labels,
    )


def test_a_child_flow_runs_under_the_locks_its_parents_flow_step_holds() -> None:
    # The parent's step holds db until its child ends: a child waiting for db would wait for ever.
    parent = make_flow(
        [job_step("deploy", synchronization=DB), job_step("later", synchronization=DB)],
        name="p",
        namespace=NS,
        created=T0,
    )
    c = cluster(parent, flow("other", 1))
    c.reconcile(key("p"))  # deploy holds db; later waits for it, ahead of the others
    c.add(child("p-deploy", 2, "p", "deploy"))
    c.add(child("p-deploy-migrate", 3, "p-deploy", "migrate"))  # a grandchild
    assert creates(c.reconcile(key("p-deploy"))) == ["migrate"]
    assert creates(c.reconcile(key("p-deploy-migrate"))) == ["migrate"]
    assert creates(c.reconcile(key("other"))) == []  # no flow of the family: it waits
