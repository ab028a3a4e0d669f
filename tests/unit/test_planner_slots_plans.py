"""Limits on running flows with real plans (planner/slots.py with planner.plan): the slot book beside
concurrency groups, reruns, deletes while a plan runs, stale cache events, and starts whose status write
was lost. Each reconcile does what the controller's does: claim before the plan, settle after it, and the
book observes every change the cache sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from zen_flow.api import JobFlow
from zen_flow.api.constants import ANNOTATION_RETRY, ANNOTATION_RETRY_STEPS, LABEL_CONCURRENCY_KEY, FlowPhase
from zen_flow.planner import CreateJob, Plan, SlotBook, SlotLimits, needs_slot, plan
from zen_flow.planner.slots import waiting_message
from zen_flow.planner.status import REASON_WAITING_FOR_SLOT
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.group import FlowGroup
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)
NS = "team-a"
FULL = waiting_message(1, NS)
GROUPED = {"labels": {LABEL_CONCURRENCY_KEY: "nightly"}}


def flow(name: str, created: float, **kwargs: Any) -> JobFlow:
    return make_flow(
        [job_step("s0")], name=name, namespace=NS, created=T0 + timedelta(seconds=created), **kwargs
    )


@dataclass
class Cluster:
    """Flows in one namespace under `--namespace-max-running-flows 1`, the book kept from their changes
    and knowing their Jobs, as the controller's is."""

    group: FlowGroup
    book: SlotBook
    woken: tuple[str, ...] = ()  # the keys the last reconcile's writes woke

    @classmethod
    def of(cls, *flows: JobFlow) -> Cluster:
        group = FlowGroup(T0)
        cluster = cls(group, SlotBook(SlotLimits(per_namespace=1), group.jobs_for))
        for f in flows:
            cluster.add(f)
        return cluster

    def add(self, f: JobFlow) -> None:
        self.group.add(f)
        self.book.observe(None, f)

    def __getitem__(self, name: str) -> Simulator:
        return self.group[name]

    def change(self, name: str, how: Any) -> list[str]:
        """Someone changes the flow (or its Jobs change): the cache sees it."""
        old = self[name].flow
        how(self[name])
        return self.book.observe(old, self[name].flow)

    def reconcile(self, name: str, *, write: bool = True) -> Plan:
        sim = self[name]
        sim.now = self.group.now
        before = sim.flow
        peers = self.group.peers(name)
        slot = self.book.claim(before, peers) if needs_slot(before, peers) else None
        result = plan(before, list(sim.jobs.values()), sim.now, peers=peers, slot=slot)
        woken = self.book.settle(before, begun=result.status.start_time is not None)
        sim.apply(result, write_status=write)
        self.woken = (*woken, *self.book.observe(before, sim.flow))
        return result

    def running(self) -> list[str]:
        return self.group.running()


def creates(result: Plan) -> list[str]:
    return [a.step for a in result.actions if isinstance(a, CreateJob)]


def queued_reason(f: JobFlow) -> str:
    return {c.type: c.reason for c in f.status.conditions}["Queued"]


# --- deletes ------------------------------------------------------------------------------------------


def test_a_flow_deleted_while_its_plan_starts_it_keeps_no_slot() -> None:
    a, b = flow("a", 0), flow("b", 1)
    book = Cluster.of(a, b).book
    assert book.claim(a) is None  # a's plan runs (a sandboxed `when`, a memo read)...
    book.observe(a, None)  # ...while a is deleted, or relabelled to another controller instance
    # Until its plan ends, a's Jobs may still be created: its slot stays taken.
    assert book.claim(b) is not None
    # The plan, from its copy of a, says it started a: the slot is free all the same, nothing of a is
    # left to free it later, and b decides anew.
    assert book.settle(a, begun=True) == ["team-a/b"]
    assert book.claim(b) is None


def test_a_flow_created_again_under_the_name_of_one_deleted_mid_plan_gets_no_slot_of_it() -> None:
    a, b = flow("a", 0), flow("b", 1)
    book = Cluster.of(a, b).book
    assert book.claim(a) is None
    book.observe(a, None)
    again = flow("a", 5)
    again = again.model_copy(update={"metadata": again.metadata.model_copy(update={"uid": "uid-a-2"})})
    book.observe(None, again)
    book.settle(a, begun=True)
    assert book.claim(b) is None


# --- reruns -------------------------------------------------------------------------------------------


def test_a_rerun_of_a_failed_flow_waits_for_a_slot_and_keeps_its_place_by_creation() -> None:
    c = Cluster.of(flow("old", 0), flow("newer", 1))
    c.reconcile("old")
    assert c.reconcile("newer").status.message == FULL
    c.change("old", lambda s: s.fail(s.running()[0]))
    c.reconcile("old")
    assert c["old"].phase == FlowPhase.FAILED
    c.reconcile("newer")
    c.add(flow("newest", 2))
    c.reconcile("newest")
    assert c.running() == ["newer"]
    c.change("old", lambda s: s.annotate(ANNOTATION_RETRY, "r1"))
    rerun = c.reconcile("old")
    assert creates(rerun) == []  # not beside newer: the limit is 1
    assert (c["old"].phase, c["old"].flow.status.message) == (FlowPhase.PENDING, FULL)
    assert queued_reason(c["old"].flow) == REASON_WAITING_FOR_SLOT
    c.change("newer", lambda s: s.complete(s.running()[0]))
    c.reconcile("newer")
    assert c.woken == ("team-a/old",)  # first in line again: created before newest
    assert creates(c.reconcile("old")) == ["s0"]
    assert creates(c.reconcile("newest")) == []
    assert c.running() == ["old"]


# --- starts whose status write was lost --------------------------------------------------------------


def test_a_rerun_waiting_for_a_slot_skips_what_it_must_without_starting_and_takes_no_slot() -> None:
    # b fails, c (AnySucceeded on b) is skipped; a rerun of `a` alone skips c again at once while it
    # waits for the slot: that skip does not start it, nor does its next plan go past the limit.
    steps = [
        job_step("a"),
        job_step("b", continueOnFailure=True),
        job_step("c", "b", dependencyPolicy="AnySucceeded"),
    ]
    c = Cluster.of(make_flow(steps, name="old", namespace=NS, created=T0), flow("newer", 1))
    c.reconcile("old")
    c.change("old", lambda s: [s.fail(j) for j in s.running()])
    c.reconcile("old")
    c.reconcile("old")
    assert c["old"].phase == FlowPhase.FAILED
    assert creates(c.reconcile("newer")) == ["s0"]

    def rerun_a(sim: Simulator) -> None:
        sim.annotate(ANNOTATION_RETRY_STEPS, "a")
        sim.annotate(ANNOTATION_RETRY, "r1")

    c.change("old", rerun_a)
    for _ in range(2):
        assert creates(c.reconcile("old")) == []
        old = c["old"].flow.status
        assert (old.phase, old.start_time, old.message) == (FlowPhase.PENDING, None, FULL)
    assert c.running() == ["newer"]


def test_a_flow_whose_jobs_run_without_a_recorded_start_holds_its_slot_after_a_restart() -> None:
    c = Cluster.of(flow("first", 0, suspend=True), flow("lost", 5))
    c.reconcile("first")
    assert creates(c.reconcile("lost", write=False)) == ["s0"]  # its status write lost, then a crash
    c.change("first", lambda s: s.set_suspend(False))
    restarted = SlotBook(SlotLimits(per_namespace=1), c.group.jobs_for)  # rebuilt from the cache
    for name in ("first", "lost"):
        restarted.observe(None, c[name].flow)
    c.book = restarted
    assert creates(c.reconcile("first")) == []
    assert c["first"].flow.status.message == FULL
    c.reconcile("lost")
    assert c.running() == ["lost"]


def test_a_job_seen_after_its_flow_makes_the_flow_hold_its_slot() -> None:
    # The Job informer's events come after the flow's (a restart lists both): the Job event says it runs.
    c = Cluster.of(flow("first", 0, suspend=True), flow("lost", 5))
    c.reconcile("lost", write=False)
    jobs = dict(c["lost"].jobs)
    c["lost"].jobs.clear()
    c.book = SlotBook(SlotLimits(per_namespace=1), c.group.jobs_for)
    c.add(
        c["first"].flow.model_copy(
            update={"spec": c["first"].flow.spec.model_copy(update={"suspend": False})}
        )
    )
    c.book.observe(None, c["lost"].flow)
    c.change("lost", lambda s: s.jobs.update(jobs))  # observe(flow, flow): the controller on a Job event
    assert creates(c.reconcile("first")) == []


# --- Replace ------------------------------------------------------------------------------------------


def test_a_replace_flow_takes_the_slot_of_the_flow_it_replaces() -> None:
    c = Cluster.of(flow("old", 0, **GROUPED))
    c.reconcile("old")
    c.add(flow("new", 5, execution_policy={"concurrencyPolicy": "Replace"}, **GROUPED))
    assert creates(c.reconcile("new")) == ["s0"]  # not waiting behind the flow it stops
    c.reconcile("old")
    assert c["old"].phase == FlowPhase.FAILED  # replaced
    c.add(flow("other", 6))
    assert creates(c.reconcile("other")) == []  # the limit holds for everyone else
    assert c.running() == ["new"]


def test_a_replace_flow_does_not_go_ahead_of_an_older_flow_waiting_outside_its_group() -> None:
    c = Cluster.of(flow("old", 0, **GROUPED), flow("other", 1))
    c.reconcile("old")
    c.reconcile("other")
    c.add(flow("new", 5, execution_policy={"concurrencyPolicy": "Replace"}, **GROUPED))
    assert creates(c.reconcile("new")) == []
    assert c["new"].flow.status.message == FULL


# --- stale cache events -------------------------------------------------------------------------------


def test_a_change_the_cache_shows_before_the_start_write_keeps_the_slot_reserved() -> None:
    # x's group just let it go (the cache still says ConcurrencyForbid); y waits for the slot.
    c = Cluster.of(flow("g", 0, **GROUPED), flow("x", 1, **GROUPED), flow("y", 2))
    for name in ("g", "x", "y"):
        c.reconcile(name)
    c.change("g", lambda s: s.complete(s.running()[0]))
    c.reconcile("g")
    x = c["x"].flow
    assert c.book.claim(x, c.group.peers("x")) is None
    c.book.settle(x, begun=True)  # x's Job creates and status write are in flight
    c.change("x", lambda s: s.annotate("note", "hello"))  # the cache: x as before, annotated
    assert c.book.claim(c["y"].flow) == FULL


def test_a_flow_suspended_while_its_start_write_is_in_flight_keeps_the_slot_reserved() -> None:
    c = Cluster.of(flow("x", 0), flow("y", 1))
    x = c["x"].flow
    assert c.book.claim(x) is None
    c.book.settle(x, begun=True)
    c.change("x", lambda s: s.set_suspend(True))  # lands first; the start write follows
    assert c.book.claim(c["y"].flow) == FULL
