"""Step locks on a matrix step (planner/locks.py, planner/lock_book.py): each item holds a place of its own,
as Argo applies a template's synchronization to each pod it runs; with the matrix's maxParallel and the
flow's parallelism, an item starts only when every limit leaves room. Each reconcile claims the view of
the effective flow (the items) and the book observes the stored flow, as the controller does.
"""

from __future__ import annotations

from typing import Any

from lock_rig import DB, NS, T0, at, cluster, creates, key
from lock_rig import step_lock_flow as plain_flow

from zen_flow.api.constants import StepPhase
from zen_flow.api.jobflow import JobFlow
from zen_flow.core.matrix import effective_flow
from zen_flow.planner import LockBook, plan
from zen_flow.planner.events import LOCK_WAIT_EVENT
from zen_flow_dev.testing.flows import job_step, make_flow

POOL2 = {"semaphores": [{"name": "pool", "limit": 2}]}


def matrix_flow(
    name: str,
    created: float,
    sync: dict[str, Any],
    items: int = 5,
    max_parallel: int | None = None,
    parallelism: int | None = None,
) -> JobFlow:
    matrix: dict[str, Any] = {"parameters": [{"name": "shard", "values": [str(i) for i in range(items)]}]}
    if max_parallel is not None:
        matrix["maxParallel"] = max_parallel
    return make_flow(
        [job_step("load", matrix=matrix, synchronization=sync)],
        name=name,
        namespace=NS,
        created=at(created),
        execution_policy=None if parallelism is None else {"parallelism": parallelism},
    )


def test_a_semaphore_of_2_runs_2_items_of_a_matrix_of_5_and_the_others_wait_like_steps() -> None:
    c = cluster(matrix_flow("a", 0, POOL2))
    first = c.reconcile(key("a"))
    assert creates(first) == ["load-0", "load-1"]
    for item in ("load-2", "load-3", "load-4"):
        assert c.step(key("a"), item) == (StepPhase.PENDING, "waiting for lock pool")
    waits = [e.message for e in first.events if e.reason == LOCK_WAIT_EVENT]
    assert waits == [
        f"step {item}: waiting for lock pool (pool held by jobflow/a step load-0 and 1 more)"
        for item in ("load-2", "load-3", "load-4")
    ]
    assert c.book.holders(NS, "pool") == ["jobflow/a step load-0", "jobflow/a step load-1"]
    # An item that ends hands its place to the next item, one at a time.
    c.finish_step(key("a"), "load-0")
    assert creates(c.reconcile(key("a"))) == ["load-2"]
    assert c.holding(key("a")) == ["load-1", "load-2"]


def test_a_mutex_runs_one_item_at_a_time() -> None:
    c = cluster(matrix_flow("a", 0, DB, items=3))
    started = [creates(c.reconcile(key("a")))]
    for item in ("load-0", "load-1", "load-2"):
        c.finish_step(key("a"), item)
        started.append(creates(c.reconcile(key("a"))))
    assert started == [["load-0"], ["load-1"], ["load-2"], []]
    assert c[key("a")].flow.status.phase == "Succeeded"


def test_items_share_the_namespace_lock_with_other_flows_steps_in_one_line() -> None:
    c = cluster(matrix_flow("a", 0, POOL2, items=3), plain_flow("b", 1, POOL2))
    assert creates(c.reconcile(key("a"))) == ["load-0", "load-1"]
    # b's step waits behind a's waiting item (a is older): the line is one per namespace.
    assert creates(c.reconcile(key("b"))) == []
    assert c.step(key("b"), "migrate") == (StepPhase.PENDING, "waiting for lock pool")
    c.take_woken()
    c.finish_step(key("a"), "load-0")
    c.reconcile(key("a"))  # load-2, first in line, takes the freed place
    assert c.holding(key("a")) == ["load-1", "load-2"]
    assert key("b") not in c.take_woken()
    c.finish_step(key("a"), "load-1")
    c.reconcile(key("a"))
    assert c.take_woken() == [key("b")]
    assert creates(c.reconcile(key("b"))) == ["migrate"]


def test_an_item_waits_for_the_tighter_of_maxparallel_and_the_lock_saying_which() -> None:
    # maxParallel 1 under a semaphore of 2: one item at a time, the others held by maxParallel, which
    # keeps them out of the lock's line (another flow's step takes the second place meanwhile).
    c = cluster(matrix_flow("a", 0, POOL2, items=3, max_parallel=1), plain_flow("b", 1, POOL2))
    assert creates(c.reconcile(key("a"))) == ["load-0"]
    assert c.step(key("a"), "load-1") == (
        StepPhase.PENDING,
        "waiting for a slot: matrix load maxParallel 1 reached",
    )
    assert creates(c.reconcile(key("b"))) == ["migrate"]
    # maxParallel 3 under a mutex: the mutex decides, one item at a time.
    d = cluster(matrix_flow("a", 0, DB, items=3, max_parallel=3))
    assert creates(d.reconcile(key("a"))) == ["load-0"]
    assert d.step(key("a"), "load-1") == (StepPhase.PENDING, "waiting for lock db")


def test_the_flows_parallelism_and_the_lock_each_bound_the_items() -> None:
    wide = {"semaphores": [{"name": "pool", "limit": 5}]}
    c = cluster(matrix_flow("a", 0, wide, items=4, parallelism=2))
    assert creates(c.reconcile(key("a"))) == ["load-0", "load-1"]
    assert c.step(key("a"), "load-2")[1] == "waiting for a slot: parallelism 2 reached"
    d = cluster(matrix_flow("a", 0, POOL2, items=4, parallelism=3))
    assert creates(d.reconcile(key("a"))) == ["load-0", "load-1"]
    assert d.step(key("a"), "load-2")[1] == "waiting for lock pool"


def test_an_items_running_job_whose_start_the_status_lost_holds_its_place() -> None:
    c = cluster(matrix_flow("a", 0, DB, items=2), plain_flow("b", 1, DB))
    sim = c[key("a")]
    lost = plan(effective_flow(sim.flow), [], T0)  # the old leader's plan: its status write was lost
    sim.apply(lost, write_status=False)
    assert creates(lost) == ["load-0"]
    # A new leader: the book rebuilt from the cache finds the item's Job running.
    c.book = LockBook(
        lambda uid: [j for s in c.sims.values() if s.flow.metadata.uid == uid for j in s.jobs.values()]
    )
    for s in c.sims.values():
        c.book.observe(None, s.flow)
    assert c.book.holders(NS, "db") == ["jobflow/a step load-0"]
    assert creates(c.reconcile(key("b"))) == []
