"""Step synchronization with real plans (planner/locks.py, planner/lock_book.py): mutexes and semaphores
shared by one namespace's flows, taken all at once when a step would start, held until it ends, handed
on in a fair order, and woken (never polled) when freed. Each reconcile does what the controller's does:
claim the view before the plan, settle after it, and the book observes every change the cache sees.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from lock_rig import DB, NS, T0, at, cluster, creates, key
from lock_rig import step_lock_flow as flow

from zen_flow.api.constants import ANNOTATION_RETRY, FlowPhase, StepPhase
from zen_flow.planner import LockBook, SlotBook, SlotLimits, needs_slot, plan
from zen_flow.planner.events import LOCK_WAIT_EVENT
from zen_flow.planner.locks import NO_LOCKS
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator


def warehouse(limit: int) -> dict[str, Any]:
    return {"semaphores": [{"name": "warehouse", "limit": limit}]}


def test_a_mutex_lets_one_step_of_the_namespace_run_and_the_next_waits_saying_for_whom() -> None:
    c = cluster(flow("a", 0), flow("b", 1))
    assert creates(c.reconcile(key("a"))) == ["migrate"]
    waiting = c.reconcile(key("b"))
    assert creates(waiting) == []
    assert c.step(key("b"), "migrate") == (StepPhase.PENDING, "waiting for lock db")
    # The flow has started (its step waits as under parallelism), and says why its step waits, once: the
    # event names the holder.
    assert [(e.type, e.reason, e.message) for e in waiting.events] == [
        ("Normal", LOCK_WAIT_EVENT, "step migrate: waiting for lock db (db held by jobflow/a step migrate)"),
        ("Normal", "FlowStarted", waiting.events[1].message),
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
    assert c.step(key("c"), "migrate")[1] == "waiting for lock warehouse"
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
    assert c.step(key("wants-both"), "migrate")[1] == "waiting for locks db, cache"


def test_waiters_take_a_freed_lock_in_order_of_priority_then_age() -> None:
    c = cluster(flow("holder", 0), flow("old", 1), flow("urgent", 2, priority=10), flow("young", 3))
    c.reconcile(key("holder"))
    for n in ("old", "urgent", "young"):
        c.reconcile(key(n))
    c.take_woken()
    c.finish(key("holder"))
    c.reconcile(key("holder"))
    # Only the first in line is woken (one plan per hand-over); whatever order they plan in, only the
    # first takes it, and the others' messages stay as they were (no status write).
    assert c.take_woken() == [key("urgent")]
    for n in ("young", "old"):
        before = c[key(n)].flow.status
        assert creates(c.reconcile(key(n))) == []
        assert c[key(n)].flow.status is before
    assert creates(c.reconcile(key("urgent"))) == ["migrate"]
    c.finish(key("urgent"))
    c.reconcile(key("urgent"))
    assert c.take_woken() == [key("old")]


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
    assert c.step(key("b"), "migrate")[1] == "waiting for lock db"
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
    assert c.step(key("a"), "two")[1] == "waiting for lock db"
    c.finish(key("a"))
    assert creates(c.reconcile(key("a"))) == ["two"]


def test_each_step_heeds_its_own_limit_when_steps_declare_different_limits() -> None:
    c = cluster(
        flow("wide", 0, warehouse(3)), flow("wide-2", 1, warehouse(3)), flow("narrow", 2, warehouse(1))
    )
    assert creates(c.reconcile(key("wide"))) == ["migrate"]
    assert creates(c.reconcile(key("wide-2"))) == ["migrate"]  # 1 holder: fewer than its limit 3
    assert creates(c.reconcile(key("narrow"))) == []  # 2 holders: not fewer than its limit 1


def test_a_waiter_of_a_smaller_limit_keeps_wider_ones_behind_it_waiting_so_it_cannot_starve() -> None:
    c = cluster(*(flow(f"wide-{i}", i, warehouse(4)) for i in range(2)), flow("narrow", 2, warehouse(1)))
    for i in range(2):
        c.reconcile(key(f"wide-{i}"))
    c.reconcile(key("narrow"))  # 2 holders: it waits for its limit 1
    for i in range(2, 20):  # a stream of wide flows, each arriving while one holder ends
        c.add(flow(f"wide-{i}", i + 1, warehouse(4)))
        # 2 holders and narrow ahead: 3 < 4, but not fewer than narrow's limit 1 (the wide ones would refill
        # the places narrow waits for for ever)
        assert creates(c.reconcile(key(f"wide-{i}"))) == []
        holder = next(k for k in c.sims if c.step(k, "migrate")[0] == StepPhase.RUNNING)
        c.finish(holder)
        c.reconcile(holder)
        for k in c.take_woken():
            c.reconcile(k)
        if c.step(key("narrow"), "migrate")[0] == StepPhase.RUNNING:
            break
    assert c.step(key("narrow"), "migrate")[0] == StepPhase.RUNNING
    assert c.book.holders(NS, "warehouse") == ["jobflow/narrow step migrate"]


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
    assert c[key("b")].flow.status.message == "migrate waiting for lock db"


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


def test_a_flow_deleted_while_it_plans_leaves_no_reservation_behind() -> None:
    a, b = flow("a", 0), flow("b", 1)
    book = LockBook()
    for f in (a, b):
        book.observe(None, f)
    # a's first plan starts migrate, whose status write then fails (409): its start stays reserved.
    book.settle(a, plan(a, [], T0, locks=book.claim(a)).status)
    sb = Simulator(b, T0)  # b waits for a's reservation; the cache shows it
    sb.apply(plan(b, [], T0, locks=book.claim(b)))
    book.settle(b, sb.flow.status)
    book.observe(b, sb.flow)
    view = book.claim(a)  # a's next plan is in flight...
    book.observe(a, None)  # ...when a is deleted
    assert book.settle(a, plan(a, [], T0, locks=view).status) == [key("b")]
    assert book.claim(sb.flow) == NO_LOCKS  # db is free


def test_a_rerun_reserves_the_steps_it_will_run_again() -> None:
    c = cluster(
        flow("r", 0),
        make_flow(
            [job_step("pre"), job_step("migrate", "pre", synchronization=DB)],
            name="b",
            namespace=NS,
            created=at(1),
        ),
    )
    c.reconcile(key("r"))
    c.finish(key("r"), failed=True)
    c.reconcile(key("r"))
    assert c[key("r")].flow.status.phase == FlowPhase.FAILED
    c.reconcile(key("b"))
    c.finish(key("b"))  # b's migrate is ready
    c.change(key("r"), lambda sim: sim.annotate(ANNOTATION_RETRY, "1"))  # zen-flow retry r
    rerun, b = c[key("r")].flow, c[key("b")].flow
    r_view = c.book.claim(rerun)  # r's plan in flight...
    b_view = c.book.claim(b)  # ...and b's, on another worker
    started = creates(plan(rerun, list(c[key("r")].jobs.values()), T0, locks=r_view)) + creates(
        plan(b, list(c[key("b")].jobs.values()), T0, locks=b_view)
    )
    assert started == ["migrate"]  # one of them: never two holders of the mutex


def test_a_plan_that_starts_nothing_after_all_wakes_the_flows_its_reservation_kept_waiting() -> None:
    a, b = flow("a", 0), flow("b", 1)
    book = LockBook()
    for f in (a, b):
        book.observe(None, f)
    # a's plan starts migrate; its Job create fails (nothing written): its start stays reserved.
    woken = book.settle(a, plan(a, [], T0, locks=book.claim(a)).status)
    sb = Simulator(b, T0)  # b, planned meanwhile, waits for a's reservation; the cache shows it
    sb.apply(plan(b, [], T0, locks=book.claim(b)))
    woken += book.settle(b, sb.flow.status) + book.observe(b, sb.flow)
    assert sb.flow.status.steps[0].message == "waiting for lock db"
    sa = Simulator(a, T0)
    sa.set_suspend(True)  # the user suspends a: its next plan starts nothing
    woken += book.observe(a, sa.flow)
    woken += book.settle(sa.flow, plan(sa.flow, [], T0, locks=book.claim(sa.flow)).status)
    assert woken == [key("b")]
    assert book.claim(sb.flow) == NO_LOCKS


def test_a_suspended_flows_retrying_step_keeps_its_locks_until_it_is_resumed() -> None:
    retrying = {"retryPolicy": {"limit": 3, "backoff": {"type": "Fixed", "duration": "10s"}}}
    c = cluster(flow("a", 0, **retrying), flow("b", 1))
    c.reconcile(key("a"))
    c.finish(key("a"), failed=True)
    c.reconcile(key("a"))
    c.change(key("a"), lambda sim: sim.set_suspend(True))
    c.reconcile(key("a"))
    c.now += timedelta(days=3)
    c.reconcile(key("a"))
    assert (c[key("a")].flow.status.phase, c.step(key("a"), "migrate")[0]) == ("Suspended", "Retrying")
    assert creates(c.reconcile(key("b"))) == []  # as documented: a keeps db while it sleeps
    c.change(key("a"), lambda sim: sim.set_suspend(False))
    assert creates(c.reconcile(key("a"))) == ["migrate"]


def test_a_plan_that_took_nothing_wakes_no_flow_that_has_ended_meanwhile() -> None:
    later = flow("a", 0, when="false")  # its step is skipped: it takes nothing
    b = flow("b", 1)
    book = LockBook()
    for f in (later, b):
        book.observe(None, f)
    book.claim(later)
    book.claim(b)  # b saw a's reservation...
    book.settle(b, None)
    gone = b.model_copy(update={"status": b.status.model_copy(update={"phase": FlowPhase.FAILED})})
    book.observe(b, gone)  # ...and failed meanwhile (its deadline): nothing is left for it to take
    result = cluster(later).reconcile(key("a"))
    assert book.settle(later, result.status) == []
