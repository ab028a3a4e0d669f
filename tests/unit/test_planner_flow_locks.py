"""A flow's own locks (`spec.synchronization`, Argo's workflow-level synchronization; planner/locks.py,
planner/lock_holders.py): taken all at once before its first step starts, held until it ends (its
finally steps included), in the same namespace lines and limits as the steps' locks; a waiting flow stays
Pending as one waiting for a running-flow slot does, costs nothing while it waits, and is woken when the
lock is freed. Each reconcile claims, plans, settles and lets the book observe, as the controller does.
"""

from __future__ import annotations

from typing import Any

from lock_rig import DB, NS, T0, at, cluster, creates, key

from zen_flow.api.constants import (
    ANNOTATION_RETRY,
    ANNOTATION_RETRY_STEPS,
    ANNOTATION_STOP,
    LABEL_CONCURRENCY_KEY,
    FlowPhase,
    StepPhase,
)
from zen_flow.api.jobflow import JobFlow
from zen_flow.planner import LockBook, plan
from zen_flow.planner.locks import FLOW_LOCK_EVENT, REASON_WAITING_FOR_LOCK
from zen_flow.planner.slot_standing import Standing, standing
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.lock_cluster import LockCluster
from zen_flow_dev.testing.simulator import Simulator


def locked_flow(
    name: str,
    created: float,
    own: dict[str, Any] | None = DB,
    step_sync: dict[str, Any] | None = None,
    *,
    final: bool = False,
    priority: int | None = None,
) -> JobFlow:
    """Steps `work` (taking `step_sync`) and, when `final`, a finally step `cleanup`; the flow takes `own`."""
    steps = [job_step("work", **({"synchronization": step_sync} if step_sync else {}))]
    if final:
        steps.append(job_step("cleanup", **{"finally": True}))
    return make_flow(
        steps,
        name=name,
        namespace=NS,
        created=at(created),
        synchronization=own,
        execution_policy=None if priority is None else {"priority": priority},
    )


def queued(c: LockCluster, name: str) -> tuple[str, str] | None:
    cond = next((x for x in c[key(name)].flow.status.conditions if x.type == "Queued"), None)
    return (cond.status, cond.reason or "") if cond is not None else None


def test_a_flow_takes_its_lock_before_its_first_step_and_a_second_waits_pending_saying_so_once() -> None:
    c = cluster(locked_flow("a", 0), locked_flow("b", 1))
    assert creates(c.reconcile(key("a"))) == ["work"]
    a = c[key("a")].flow.status
    assert (a.phase, a.held_locks) == (FlowPhase.RUNNING, ("db",))
    waiting = c.reconcile(key("b"))
    assert creates(waiting) == []
    b = c[key("b")].flow.status
    # As a flow waiting for a running-flow slot: Pending, not started, condition Queued.
    assert (b.phase, b.start_time, b.message, b.held_locks) == (
        FlowPhase.PENDING,
        None,
        "waiting for lock db",
        None,
    )
    assert queued(c, "b") == ("True", REASON_WAITING_FOR_LOCK)
    assert c.step(key("b"), "work") == (StepPhase.PENDING, None)
    assert [(e.type, e.reason, e.message) for e in waiting.events] == [
        ("Normal", FLOW_LOCK_EVENT, "waiting for lock db (db held by jobflow/a)")
    ]
    # Waiting costs nothing: no write, no create, no event.
    again = c.reconcile(key("b"))
    assert again.status is c[key("b")].flow.status
    assert not again.actions
    assert not again.events


def test_the_lock_is_held_through_the_finally_steps_until_the_flow_ends_then_the_waiter_is_woken() -> None:
    c = cluster(locked_flow("a", 0, final=True), locked_flow("b", 1))
    c.reconcile(key("a"))
    c.reconcile(key("b"))
    c.take_woken()
    c.finish(key("a"))
    assert creates(c.reconcile(key("a"))) == []  # work Succeeded; cleanup starts after that write
    assert creates(c.reconcile(key("a"))) == ["cleanup"]
    assert c[key("a")].flow.status.held_locks == ("db",)
    assert key("b") not in c.take_woken()
    c.finish(key("a"))
    c.reconcile(key("a"))
    assert (c[key("a")].flow.status.phase, c[key("a")].flow.status.held_locks) == (FlowPhase.SUCCEEDED, None)
    assert c.take_woken() == [key("b")]
    started = c.reconcile(key("b"))
    assert creates(started) == ["work"]
    assert c[key("b")].flow.status.held_locks == ("db",)
    assert queued(c, "b") == ("False", "NotQueued")


def test_flow_and_step_holders_of_one_name_count_against_one_limit_in_one_line() -> None:
    pool = {"semaphores": [{"name": "pool", "limit": 2}]}
    # a holds a place of pool for its whole run, b's step the other; c's step waits for either.
    c = cluster(locked_flow("a", 0, pool), locked_flow("b", 1, None, pool), locked_flow("c", 2, None, pool))
    assert [creates(c.reconcile(key(n))) for n in "abc"] == [["work"], ["work"], []]
    assert c.step(key("c"), "work") == (StepPhase.PENDING, "waiting for lock pool")
    assert c.book.holders(NS, "pool") == ["jobflow/a", "jobflow/b step work"]
    # A step's mutex and a flow's: the step waits, naming the flow as the holder.
    d = cluster(locked_flow("x", 0), locked_flow("y", 1, None, DB))
    d.reconcile(key("x"))
    told = d.reconcile(key("y"))
    assert [e.message for e in told.events if e.reason == "StepWaitingForLock"] == [
        "step work: waiting for lock db (db held by jobflow/x)"
    ]


def test_a_flow_waiting_ahead_keeps_a_younger_step_waiting_and_takes_the_lock_first() -> None:
    c = cluster(locked_flow("a", 0), locked_flow("b", 1), locked_flow("c", 2, None, DB))
    for n in "abc":
        c.reconcile(key(n))
    c.take_woken()
    c.finish(key("a"))
    c.reconcile(key("a"))
    assert c.take_woken() == [key("b")]  # first in line: the flow, not the younger flow's step
    assert creates(c.reconcile(key("b"))) == ["work"]
    assert creates(c.reconcile(key("c"))) == []


def test_a_higher_priority_flow_goes_first() -> None:
    c = cluster(locked_flow("a", 0), locked_flow("b", 1), locked_flow("urgent", 2, priority=10))
    for n in ("a", "b", "urgent"):
        c.reconcile(key(n))
    c.take_woken()
    c.finish(key("a"))
    c.reconcile(key("a"))
    assert c.take_woken() == [key("urgent")]


def test_a_stopped_holder_frees_its_lock_and_a_stopped_waiter_leaves_the_line() -> None:
    c = cluster(locked_flow("a", 0), locked_flow("b", 1), locked_flow("c", 2))
    for n in "abc":
        c.reconcile(key(n))
    c.take_woken()
    c.change(key("b"), lambda sim: sim.annotate(ANNOTATION_STOP, "true"))  # the waiter first
    c.reconcile(key("b"))
    assert c[key("b")].flow.status.phase == FlowPhase.FAILED
    assert c.take_woken() == []  # a still holds db
    c.change(key("a"), lambda sim: sim.annotate(ANNOTATION_STOP, "true"))
    c.reconcile(key("a"))  # its Job deleted, the flow Failed (Stopped)
    assert c[key("a")].flow.status.phase == FlowPhase.FAILED
    assert c.take_woken() == [key("c")]
    assert creates(c.reconcile(key("c"))) == ["work"]


def test_a_waiter_deleted_or_suspended_leaves_the_line_and_a_suspended_holder_keeps_its_lock() -> None:
    c = cluster(locked_flow("a", 0), locked_flow("b", 1), locked_flow("c", 2))
    for n in "abc":
        c.reconcile(key(n))
    c.change(key("a"), lambda sim: sim.set_suspend(True))
    c.reconcile(key("a"))
    assert (c[key("a")].flow.status.phase, c[key("a")].flow.status.held_locks) == (
        FlowPhase.SUSPENDED,
        ("db",),
    )
    c.change(key("b"), lambda sim: sim.set_suspend(True))  # b sleeps: it keeps no one waiting
    c.take_woken()
    c.delete(key("a"))
    assert c.take_woken() == [key("c")]
    assert creates(c.reconcile(key("c"))) == ["work"]
    c.change(key("b"), lambda sim: sim.set_suspend(False))
    assert creates(c.reconcile(key("b"))) == []
    assert c[key("b")].flow.status.message == "waiting for lock db"


def test_a_rerun_takes_the_lock_again_and_waits_for_it_when_it_is_held() -> None:
    c = cluster(locked_flow("a", 0), locked_flow("b", 1))
    c.reconcile(key("a"))
    c.reconcile(key("b"))
    c.finish(key("a"), failed=True)
    c.reconcile(key("a"))
    assert (c[key("a")].flow.status.phase, c[key("a")].flow.status.held_locks) == (FlowPhase.FAILED, None)
    assert creates(c.reconcile(key("b"))) == ["work"]
    c.change(key("a"), lambda sim: sim.annotate(ANNOTATION_RETRY, "r1"))
    assert creates(c.reconcile(key("a"))) == []
    assert c[key("a")].flow.status.message == "waiting for lock db"
    c.finish(key("b"))
    c.reconcile(key("b"))
    assert key("a") in c.take_woken()
    assert creates(c.reconcile(key("a"))) == ["work"]
    assert c[key("a")].flow.status.held_locks == ("db",)


def test_after_a_restart_the_holder_is_found_from_its_status_or_its_running_jobs() -> None:
    c = cluster(locked_flow("a", 0), locked_flow("b", 1))
    c.reconcile(key("a"))
    book = LockBook()  # a new leader's: what the cache lists
    for sim in c.sims.values():
        book.observe(None, sim.flow)
    assert book.holders(NS, "db") == ["jobflow/a"]
    # The start's status write lost: a's Job runs, its status says nothing; the Jobs say it holds db.
    d = cluster(locked_flow("a", 0), locked_flow("b", 1))
    sim = d[key("a")]
    sim.apply(plan(sim.flow, [], T0), write_status=False)
    book = LockBook(
        lambda uid: [j for s in d.sims.values() if s.flow.metadata.uid == uid for j in s.jobs.values()]
    )
    for s in d.sims.values():
        book.observe(None, s.flow)
    assert book.holders(NS, "db") == ["jobflow/a"]
    d.book = book
    assert creates(d.reconcile(key("b"))) == []
    # a's next plan takes its Job over, and its locks with it, whatever the view says.
    d.reconcile(key("a"))
    assert d[key("a")].flow.status.held_locks == ("db",)


def test_a_flow_waiting_for_its_lock_takes_no_place_in_the_line_for_running_flow_slots() -> None:
    c = cluster(locked_flow("a", 0), locked_flow("b", 1))
    c.reconcile(key("a"))
    c.reconcile(key("b"))
    assert standing(c[key("a")].flow) == Standing.HOLDING
    assert standing(c[key("b")].flow) == Standing.OUT


def test_a_rerun_of_one_step_waiting_for_the_lock_skips_what_it_must_but_takes_no_lock_held_by_another() -> (
    None
):
    # b fails, c (AnySucceeded on b) is skipped; a rerun of `a` alone skips c again at once (its
    # dependency failed before), while it waits for db: that skip does not start the flow, and its next
    # plan does not take it for a lost write's start and take db over from b.
    steps = [
        job_step("a"),
        job_step("b", continueOnFailure=True),
        job_step("c", "b", dependencyPolicy="AnySucceeded"),
    ]
    c = cluster(
        make_flow(steps, name="a", namespace=NS, created=T0, synchronization=DB),
        locked_flow("b", 1),
    )
    c.reconcile(key("a"))
    c.finish(key("a"), failed=True)
    c.reconcile(key("a"))
    c.reconcile(key("a"))
    assert c[key("a")].flow.status.phase == FlowPhase.FAILED
    assert creates(c.reconcile(key("b"))) == ["work"]

    def rerun_a(sim: Simulator) -> None:
        sim.annotate(ANNOTATION_RETRY_STEPS, "a")
        sim.annotate(ANNOTATION_RETRY, "r1")

    c.change(key("a"), rerun_a)
    first = c.reconcile(key("a"))
    assert [e.reason for e in first.events] == ["FlowRetried", "StepSkipped", FLOW_LOCK_EVENT]
    for _ in range(2):
        assert creates(c.reconcile(key("a"))) == []
        a = c[key("a")].flow.status
        assert (a.phase, a.start_time, a.held_locks, a.message) == (
            FlowPhase.PENDING,
            None,
            None,
            "waiting for lock db",
        )
    assert c.book.holders(NS, "db") == ["jobflow/b"]
    c.finish(key("b"))
    c.reconcile(key("b"))
    assert creates(c.reconcile(key("a"))) == ["a"]
    assert c[key("a")].flow.status.held_locks == ("db",)


def test_a_start_time_without_held_locks_or_a_running_job_takes_no_lock_over() -> None:
    # Only a running Job of the run says a lost write took the locks (the book counts it holding); a
    # start time alone (a status written by a plan that skipped a step while it waited) does not.
    c = cluster(locked_flow("b", 0), locked_flow("a", 1))
    c.reconcile(key("b"))
    c.change(
        key("a"),
        lambda sim: setattr(
            sim,
            "flow",
            sim.flow.model_copy(update={"status": sim.flow.status.model_copy(update={"start_time": T0})}),
        ),
    )
    assert creates(c.reconcile(key("a"))) == []
    assert c[key("a")].flow.status.held_locks is None
    assert queued(c, "a") == ("True", REASON_WAITING_FOR_LOCK)
    assert c.book.holders(NS, "db") == ["jobflow/b"]


def grouped(name: str, created: float, policy: str) -> JobFlow:
    """A flow of concurrency group `g` taking mutex db, as flows made from one template do."""
    return make_flow(
        [job_step("work")],
        name=name,
        namespace=NS,
        created=at(created),
        synchronization=DB,
        execution_policy={"concurrencyPolicy": policy},
        labels={LABEL_CONCURRENCY_KEY: "g"},
    )


def test_a_newer_replace_flow_waiting_for_the_lock_an_older_flow_of_its_group_holds_replaces_it() -> None:
    c = cluster(grouped("a", 0, "Replace"), grouped("b", 1, "Replace"))
    assert creates(c.reconcile(key("a"))) == ["work"]
    waiting = c.reconcile(key("b"))
    assert creates(waiting) == []
    assert [e.reason for e in waiting.events] == ["ReplacingFlows", FLOW_LOCK_EVENT]
    assert c[key("b")].flow.status.message == "waiting for lock db"
    assert c.book.holders(NS, "db") == ["jobflow/a"]  # never two holders: b waits for a to stop
    c.take_woken()
    stopped = c.reconcile(key("a"))  # b's wait woke its group
    a = c[key("a")].flow.status
    assert (a.phase, a.message, a.held_locks) == (
        FlowPhase.FAILED,
        "replaced by newer flow b (concurrency group g)",
        None,
    )
    assert c[key("a")].running() == []
    assert "FlowReplaced" in [e.reason for e in stopped.events]
    assert c.take_woken() == [key("b")]
    assert creates(c.reconcile(key("b"))) == ["work"]
    assert c.book.holders(NS, "db") == ["jobflow/b"]


def test_only_a_replace_flow_waiting_for_its_locks_awake_replaces_an_older_flow() -> None:
    for policy, suspend, replaced in (
        ("Replace", False, True),
        ("Forbid", False, False),
        ("Replace", True, False),
    ):
        c = cluster(grouped("a", 0, "Allow"), grouped("b", 1, policy))
        c.reconcile(key("a"))
        c.reconcile(key("b"))
        if suspend:
            c.change(key("b"), lambda sim: sim.set_suspend(True))
        c.reconcile(key("a"))
        assert (c[key("a")].phase == FlowPhase.FAILED) is replaced, (policy, suspend)
