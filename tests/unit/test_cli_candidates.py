"""`zen-flow get` leaves unread the listed flows that stand in no line (cli/candidates.py), by the rule the
controller's books decide with first (planner/bystanders.py). Whatever flow it drops, the books place
nowhere: no slot held nor waited for, no lock held nor waited for, no child hosted. Should either side
change alone (as the CLI once dropped a flow whose own `spec.synchronization` held a lock its steps did
not declare), a flow shown here would be placed by the books and dropped by the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from zen_flow.api import JobFlow
from zen_flow.api.constants import ANNOTATION_RETRY, FlowPhase
from zen_flow.cli.candidates import Candidates
from zen_flow.core.matrix import effective_flow
from zen_flow.planner.lineage import hosted
from zen_flow.planner.lock_holders import expanded, flow_locks
from zen_flow.planner.locks import LOCK_WAIT, flow_needs, needs_of
from zen_flow.planner.slot_standing import Standing, as_planned, standing
from zen_flow_dev.testing.flows import job_step, make_flow

MUTEX = {"mutexes": [{"name": "db"}]}
MATRIX = {"parameters": [{"name": "shard", "values": ["a", "b"]}]}
STARTED = "2025-01-01T00:00:00Z"

PHASES = st.sampled_from([None, "Pending", "Running", "Paused", "Suspended", "Succeeded", "Failed"])
RETRIES = st.sampled_from([None, "", " ", "r1"])
# Where the flow declares its lock: nowhere, on itself, on a step, on a matrix step (its items take it).
LOCKS = st.sampled_from(["none", "own", "step", "matrix"])
STEP_PHASES = st.sampled_from(["Pending", "waiting", "Running", "Retrying", "Succeeded", "Failed"])


def a_flow(
    phase: str | None,
    deleting: bool,
    retry: str | None,
    honoured: bool,
    locks: str,
    step_phase: str,
    queued: bool,
    child_step: bool,
) -> JobFlow:
    step: dict[str, Any] = job_step("work", **({"synchronization": MUTEX} if locks == "step" else {}))
    if locks == "matrix":
        step = job_step("work", matrix=MATRIX, synchronization=MUTEX)
    steps = [step]
    if child_step:  # a parent of a child flow
        steps.append({"name": "sub", "type": "Flow", "flow": {"templateRef": {"name": "t"}}})
    made = make_flow(steps, name="f", **({"synchronization": MUTEX} if locks == "own" else {}))
    raw = made.model_dump(by_alias=True, exclude_none=True, mode="json")
    names = ["work-0", "work-1"] if locks == "matrix" else ["work"]
    waiting = step_phase == "waiting"
    status: dict[str, Any] = {
        "steps": [
            {
                "name": n,
                "phase": "Pending" if waiting else step_phase,
                **({"message": f"{LOCK_WAIT} db"} if waiting else {}),
            }
            for n in names
        ]
    }
    if phase is not None:
        status["phase"] = phase
    if phase in ("Running", "Paused", "Succeeded", "Failed"):
        status["startTime"] = STARTED
    if locks == "own" and step_phase in ("Running", "Retrying"):
        status["heldLocks"] = ["db"]
    if queued:
        said = f"{LOCK_WAIT} db"
        status["conditions"] = [
            {"type": "Queued", "status": "True", "reason": "WaitingForLock", "message": said}
        ]
    if honoured and retry:
        status["audit"] = {"retries": [{"id": retry.strip() or "x"}]}
    raw["status"] = status
    if retry is not None:
        raw["metadata"]["annotations"] = {ANNOTATION_RETRY: retry}
    if deleting:
        raw["metadata"]["deletionTimestamp"] = datetime(2025, 1, 2, tzinfo=UTC).isoformat()
    return JobFlow.model_validate(raw)


def kept(flow: JobFlow, *, slot: bool) -> bool:
    """Does `zen-flow get` read `flow` when it lists the namespace for a slot's line (`slot`), or for a
    lock's only, as the LIST's bytes hold it?"""
    item = flow.model_dump(by_alias=True, exclude_none=True, mode="json")
    page = Candidates(slot=slot).page(json.dumps({"metadata": {}, "items": [item]}).encode())
    assert page is not None
    return bool(page.items)


FLOWS = st.builds(
    a_flow, PHASES, st.booleans(), RETRIES, st.booleans(), LOCKS, STEP_PHASES, st.booleans(), st.booleans()
)


# The books ask `out_of_line` first (slot_standing's `ended`, lock_holders' `declared`), so asking them
# alone would check that rule against itself: these say, without it, why a flow stands in no line.
def finished(flow: JobFlow) -> bool:
    """Being deleted, or Succeeded or Failed as its next plan sees it (a rerun it honours resets it)."""
    phase = as_planned(flow)[0].status.phase
    return flow.metadata.deletion_timestamp is not None or phase in {p.value for p in FlowPhase if p.terminal}


def lockless(flow: JobFlow) -> bool:
    """Neither the flow nor any step of it (a matrix step's items, as the planner runs them) needs a lock."""
    planned = expanded(flow, effective_flow)
    return not flow_needs(planned) and not any(needs_of(s) for s in planned.spec.steps)


# The cases a mutation of the rule would misplace, lest the draw miss them: a Paused or Suspended flow
# stands in line; a Failed flow asked to rerun (not yet honoured) may.
@example(a_flow("Paused", False, None, False, "none", "Running", False, False))
@example(a_flow("Suspended", False, None, False, "own", "Pending", False, False))
@example(a_flow("Failed", False, "r1", False, "step", "Failed", False, False))
@given(FLOWS)
def test_a_flow_get_leaves_unread_is_one_the_controllers_books_place_nowhere(flow: JobFlow) -> None:
    in_lock_lines = flow_locks(expanded(flow, effective_flow)) is not None
    if not kept(flow, slot=True):
        assert finished(flow)
        assert standing(flow) == Standing.OUT
        assert not in_lock_lines
        assert not hosted(flow)[0]
    if not kept(flow, slot=False):
        assert finished(flow) or lockless(flow)
        assert not in_lock_lines


def test_the_examples_cover_both_ways() -> None:
    # Dropped and kept, for each line: the property above is not vacuous.
    ended = a_flow("Succeeded", False, None, False, "step", "Succeeded", False, False)
    holder = a_flow("Running", False, None, False, "own", "Running", False, False)
    unlocked = a_flow("Running", False, None, False, "none", "Running", False, False)
    rerun = a_flow("Failed", False, "r1", False, "matrix", "Failed", False, False)
    assert [kept(f, slot=True) for f in (ended, holder, unlocked, rerun)] == [False, True, True, True]
    assert [kept(f, slot=False) for f in (ended, holder, unlocked, rerun)] == [False, True, False, True]
    assert flow_locks(holder) is not None
