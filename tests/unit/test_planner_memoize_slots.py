"""Planner: under `executionPolicy.parallelism`, a memoized step ready to start has its cache read before it
waits for a slot: a hit runs no Job and takes none; a miss waits for a slot as any Job step, its cache not
read again (nor its `when` decided again) until that slot, where it is read once more."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from test_planner_memoize import CACHE, creates, memoized, status

from zen_flow.core.naming import job_name
from zen_flow.planner.memoization import MemoEntry, data_key, encode_entry
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def stored(key: str = "build-v1", count: str = "7") -> dict[str, str]:
    entry = MemoEntry(key, {"count": count}, "default/old", "a", T0 - timedelta(minutes=1))
    return {data_key(key): encode_entry(entry)}


def held_flow(steps: list[dict[str, Any]], **fields: Any) -> Simulator:
    """`long` runs first and holds the only slot; the other steps are ready behind it."""
    flow = make_flow([job_step("long"), *steps], execution_policy={"parallelism": 1}, **fields)
    return Simulator(flow, T0)


def test_a_memoized_step_with_a_fresh_entry_is_served_while_every_slot_is_taken() -> None:
    sim = held_flow([memoized("b"), job_step("c", "b")])
    sim.memo_cache[CACHE] = stored()
    sim.reconcile()
    assert status(sim, "long").phase == "Running"
    b = status(sim, "b")
    assert (b.phase, b.message.startswith("memoized: ")) == ("Succeeded", True)
    assert not creates(sim, "b")
    sim.advance(1)
    sim.reconcile()
    # Its dependent runs a Job: it waits for the slot `long` holds.
    assert (status(sim, "c").phase, status(sim, "c").message) == (
        "Pending",
        "waiting for a slot: parallelism 1 reached",
    )


def test_a_held_miss_is_said_and_its_cache_read_again_only_at_its_slot() -> None:
    sim = held_flow([memoized("b")])
    sim.reconcile()
    assert sim.memo_reads == ["b"]
    b = status(sim, "b")
    assert (b.phase, b.message) == (
        "Pending",
        "waiting for a slot: parallelism 1 reached (no memoized result yet)",
    )
    for _ in range(3):  # held: no read, no status change
        sim.advance(1)
        sim.reconcile()
    assert sim.memo_reads == ["b"]
    assert status(sim, "b") == b
    # Another flow stores the key meanwhile: at its slot the cache is read again and serves it.
    sim.memo_cache[CACHE] = stored()
    sim.complete(job_name("flow", "long", 0))
    sim.reconcile()
    assert sim.memo_reads == ["b", "b"]
    assert status(sim, "b").phase == "Succeeded"
    assert not creates(sim, "b")


def test_a_held_miss_runs_at_its_slot() -> None:
    sim = held_flow([memoized("b")])
    sim.reconcile()
    sim.complete(job_name("flow", "long", 0))
    sim.reconcile()
    assert status(sim, "b").phase == "Running"
    assert [c.attempt for c in creates(sim, "b")] == [0]


def test_a_held_memoized_steps_when_is_decided_once_when_its_cache_is_first_read() -> None:
    # `when` reads an annotation that changes while the step waits: decided when the cache was read (true,
    # a miss), it is not decided again at its slot, as any held step's is decided once.
    sim = held_flow([memoized("b", when="flow.annotations['go'] == 'yes'")], annotations={"go": "yes"})
    sim.reconcile()
    assert sim.memo_reads == ["b"]
    sim.annotate("go", "no")
    sim.advance(1)
    sim.reconcile()
    sim.complete(job_name("flow", "long", 0))
    sim.reconcile()
    assert status(sim, "b").phase == "Running"


def test_a_held_memoized_step_whose_when_is_false_is_skipped_before_its_slot_reading_nothing() -> None:
    sim = held_flow(
        [memoized("b", when="flow.annotations['go'] == 'yes'"), job_step("c", "b")], annotations={"go": "no"}
    )
    sim.memo_cache[CACHE] = stored()
    sim.reconcile()
    assert status(sim, "b").phase == "Skipped"
    assert sim.memo_reads == []
