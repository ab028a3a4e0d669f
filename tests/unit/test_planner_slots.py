"""Limits on running flows (planner/slots.py): `--namespace-max-running-flows` and `--max-running-flows`.

A flow that has not started starts only among the first N contending flows by creation, and while fewer
than N hold a slot; a waiting flow says so (Pending, condition Queued reason WaitingForSlot, one event);
a freed slot wakes the flows that may take it, and only those.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from zen_flow.api import JobFlow
from zen_flow.api.constants import LABEL_CONCURRENCY_KEY, FlowPhase
from zen_flow.planner import SlotBook, SlotLimits, needs_slot, plan
from zen_flow.planner.concurrency import Peer
from zen_flow.planner.slots import waiting_message
from zen_flow.planner.status import REASON_QUEUED, REASON_WAITING_FOR_SLOT
from zen_flow_dev.testing.flows import job_step, make_flow

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def flow(name: str, created: float = 0, namespace: str = "team-a", **kwargs: Any) -> JobFlow:
    return make_flow([job_step("s0")], name=name, namespace=namespace, created=at(created), **kwargs)


def with_status(f: JobFlow, **status: Any) -> JobFlow:
    return f.model_copy(update={"status": f.status.model_copy(update=status)})


def started(f: JobFlow) -> JobFlow:
    return with_status(f, phase=FlowPhase.RUNNING.value, start_time=T0)


def finished(f: JobFlow) -> JobFlow:
    return with_status(f, phase=FlowPhase.SUCCEEDED.value, start_time=T0)


def book_of(*flows: JobFlow, total: int = 0, per_namespace: int = 0) -> SlotBook:
    book = SlotBook(SlotLimits(total=total, per_namespace=per_namespace))
    for f in flows:
        book.observe(None, f)
    return book


# --- the two rules ------------------------------------------------------------------------------------


def test_only_the_first_n_flows_by_creation_may_start_the_rest_wait_naming_the_limit() -> None:
    a, b, c = flow("a", 0), flow("b", 1), flow("c", 2)
    book = book_of(c, a, b, per_namespace=2)  # the cache's order does not matter
    assert book.claim(a) is None
    assert book.claim(b) is None
    said = book.claim(c)
    assert said == waiting_message(2, "team-a")
    assert said == (
        "waiting for a slot: at most 2 flows run at once in namespace team-a "
        "(--namespace-max-running-flows 2)"
    )


def test_equal_creation_times_rank_by_name() -> None:
    b, a = flow("b", 0), flow("a", 0)
    book = book_of(b, a, per_namespace=1)
    assert book.claim(b) is not None
    assert book.claim(a) is None


def test_a_first_ranked_flow_waits_while_newer_flows_the_cache_showed_first_hold_every_slot() -> None:
    # Out of rank order (clock skew, equal seconds): the newer flow started before the older one was seen.
    old, new = flow("old", 0), started(flow("new", 5))
    book = book_of(new, per_namespace=1)
    book.observe(None, old)
    assert book.claim(old) is not None  # first in line, but the slot is held: the bound holds
    wake = book.observe(new, finished(new))
    assert wake == ["team-a/old"]
    assert book.claim(old) is None


def test_a_slot_claimed_by_a_plan_in_flight_counts_before_the_cache_shows_the_start() -> None:
    a, b = flow("a", 0), flow("b", 1)
    book = book_of(a, b, total=1)
    assert book.claim(a) is None
    # Another worker plans b while a's status write is in flight: a's slot is taken already.
    assert book.claim(b) == waiting_message(1, None)
    assert book.settle(a, begun=True) == []
    book.observe(a, started(a))  # the write lands
    assert book.claim(b) is not None


def test_a_claim_whose_plan_did_not_start_the_flow_frees_the_slot_and_wakes_the_next() -> None:
    a, b = flow("a", 0), flow("b", 1)
    book = book_of(a, b, per_namespace=1)
    assert book.claim(a) is None
    assert book.settle(a, begun=False) == []  # b is not among the first 1: a still is
    book.observe(a, None)  # a deleted while waiting: it held nothing, but left the line
    assert book.claim(b) is None


# --- waking -------------------------------------------------------------------------------------------


def test_a_finished_flow_wakes_only_the_flows_that_may_take_its_slot() -> None:
    flows = [flow(f"f{i:02}", i) for i in range(20)]
    book = book_of(*flows, per_namespace=3)
    running = [started(f) for f in flows[:3]]
    for old, new in zip(flows[:3], running, strict=True):
        assert book.observe(old, new) == []  # a start frees nothing
    # f00 and f02 run on: one slot freed, and the third in line is f03.
    assert book.observe(running[1], finished(running[1])) == ["team-a/f03"]
    # Changes that move no flow in line wake nobody: a waiting flow rewriting its status, a step moving.
    waiting = with_status(flows[10], message=waiting_message(3, "team-a"))
    assert book.observe(flows[10], waiting) == []
    assert book.observe(running[0], with_status(running[0], message="running: s0")) == []


def test_without_limits_the_book_keeps_nothing_and_every_flow_may_start() -> None:
    book = book_of(*[flow(f"f{i}", i) for i in range(5)])
    assert book.waiting() == []
    assert all(book.claim(flow(f"f{i}", i)) is None for i in range(5))


# --- namespaces and the global limit ------------------------------------------------------------------


def test_each_namespace_has_its_own_line() -> None:
    a1, a2 = flow("a1", 0, "team-a"), flow("a2", 1, "team-a")
    b1 = flow("b1", 2, "team-b")
    book = book_of(a1, a2, b1, per_namespace=1)
    assert book.claim(a1) is None
    assert book.claim(a2) is not None
    assert book.claim(b1) is None


def test_flows_their_namespace_holds_back_keep_no_other_namespace_out_of_a_global_slot() -> None:
    team_a = [flow(f"a{i}", i, "team-a") for i in range(50)]
    late = flow("b", 100, "team-b")
    book = book_of(*team_a, late, total=5, per_namespace=1)
    book.observe(team_a[0], started(team_a[0]))
    assert book.claim(team_a[1]) == waiting_message(1, "team-a")
    assert book.claim(late) is None  # 49 team-a flows wait, but only 1 runs of 5


def test_the_global_limit_counts_every_namespace() -> None:
    a, b, c = flow("a", 0, "ns-1"), flow("b", 1, "ns-2"), flow("c", 2, "ns-3")
    book = book_of(a, b, c, total=2)
    book.observe(a, started(a))
    book.observe(b, started(b))
    assert book.claim(c) == waiting_message(2, None)
    assert book.observe(started(b), finished(b)) == ["ns-3/c"]


# --- what takes no place in line ----------------------------------------------------------------------


def test_a_flow_its_concurrency_group_holds_back_takes_no_place_and_asks_no_slot() -> None:
    grouped = {"labels": {LABEL_CONCURRENCY_KEY: "nightly"}}
    first = started(flow("first", 0, **grouped))
    second = flow("second", 1, **grouped)
    other = flow("other", 2)
    queued = plan(second, [], at(3), peers=(Peer("first", at(0), started=True),)).status
    assert {c.type: c.reason for c in queued.conditions}["Queued"] == REASON_QUEUED
    book = book_of(first, with_status(second, **dict(queued)), other, per_namespace=2)
    assert not needs_slot(second, (Peer("first", at(0), started=True),))
    assert book.claim(other) is None  # second waits for its group, not for a slot


def test_a_suspended_flow_that_has_not_started_takes_no_place_one_that_started_keeps_its_slot() -> None:
    idle = flow("idle", 0, suspend=True)
    busy = started(flow("busy", 1, suspend=True))
    new = flow("new", 2)
    book = book_of(idle, busy, new, per_namespace=2)
    assert not needs_slot(idle, ())
    assert book.claim(new) is None
    book2 = book_of(idle, busy, new, per_namespace=1)
    assert book2.claim(new) is not None  # busy, suspended, still holds the only slot


# --- the plan -----------------------------------------------------------------------------------------


def test_a_waiting_flow_stays_pending_saying_why_with_one_event_and_starts_when_let() -> None:
    f = flow("f", 0, execution_policy={"activeDeadlineSeconds": 60})
    said = waiting_message(10, "team-a")
    waiting = plan(f, [], at(1), slot=said)
    assert waiting.actions == ()
    assert waiting.status.phase == FlowPhase.PENDING
    assert waiting.status.message == said
    assert waiting.status.start_time is None  # queue time is not run time: the deadline has not begun
    queued = {c.type: c for c in waiting.status.conditions}["Queued"]
    assert (queued.status, queued.reason, queued.message) == ("True", REASON_WAITING_FOR_SLOT, said)
    assert [e.reason for e in waiting.events] == ["FlowQueued"]
    again = plan(with_status(f, **dict(waiting.status)), [], at(500), slot=said)
    assert again.status == waiting.status
    assert again.events == ()
    go = plan(with_status(f, **dict(waiting.status)), [], at(600))
    assert go.status.phase == FlowPhase.RUNNING
    assert go.status.start_time == at(600)
    assert {c.type: c.status for c in go.status.conditions}["Queued"] == "False"


def test_a_stop_of_a_waiting_flow_ends_it_at_once() -> None:
    f = flow("f", 0, annotations={"workflow.kube-zen.io/stop": "not needed"})
    result = plan(f, [], at(1), slot=waiting_message(1, "team-a"))
    assert result.status.phase == FlowPhase.FAILED
    assert not needs_slot(f, ())


# --- cost ---------------------------------------------------------------------------------------------


def test_a_verdict_with_5000_flows_waiting_costs_a_lookup_not_a_scan() -> None:
    """Benchmark-style: prints the cost (no timing assert); run with -s to read it."""
    flows = [flow(f"f{i:05}", i) for i in range(5000)]
    book = book_of(*flows, total=50, per_namespace=10)
    for f in flows[:10]:
        book.observe(f, started(f))
    began = time.perf_counter()
    for f in flows[10:]:
        assert book.claim(f) is not None
    claim_us = (time.perf_counter() - began) / 4990 * 1e6
    began = time.perf_counter()
    for f in flows[10:1010]:
        book.observe(f, with_status(f, message="waiting"))  # no move: O(1)
    observe_us = (time.perf_counter() - began) / 1000 * 1e6
    began = time.perf_counter()
    wake = book.observe(started(flows[0]), finished(flows[0]))
    finish_us = (time.perf_counter() - began) * 1e6
    assert wake == ["team-a/f00010"]
    print(f"\n5000 waiting: claim {claim_us:.1f} us, unchanged event {observe_us:.1f} us, ", end="")
    print(f"finish {finish_us:.0f} us")


def test_a_flow_deleted_while_its_plan_is_in_flight_keeps_its_slot_until_the_plan_ends() -> None:
    a, b = flow("a", 0), flow("b", 1)
    book = book_of(a, b, total=1)
    assert book.claim(a) is None
    # a is deleted while its plan creates its Jobs: they may run all the same, until the plan ends.
    book.observe(a, None)
    assert book.claim(b) is not None
    assert book.settle(a, begun=True) == ["team-a/b"]
    assert book.claim(b) is None


def test_a_reservation_of_a_flow_out_of_line_that_ends_wakes_the_next() -> None:
    a, b = flow("a", 0), flow("b", 1)
    book = book_of(a, b, total=1)
    assert book.claim(a) is None
    assert book.settle(a, begun=True) == []
    # The cache shows a suspended (a user's edit) before its plan's start write: out of line, its
    # reservation stands; then it is deleted, and the slot it had is free.
    suspended = a.model_copy(update={"spec": a.spec.model_copy(update={"suspend": True})})
    book.observe(a, suspended)
    assert book.claim(b) is not None
    assert book.observe(suspended, None) == ["team-a/b"]
    assert book.claim(b) is None
