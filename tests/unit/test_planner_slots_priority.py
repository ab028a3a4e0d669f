"""Priority of waiting flows (`spec.executionPolicy.priority`, planner/slots.py and slot_lines.py): it
orders a namespace's waiting flows, higher first, equal priorities oldest first; it never moves a flow
ahead of another namespace's; an edit moves a waiting flow in line; a running flow keeps its slot."""

from __future__ import annotations

from datetime import timedelta

import pytest
from test_planner_slots import T0, book_of, finished, started

from zen_flow.api import JobFlow
from zen_flow.planner.slots import waiting_message
from zen_flow_dev.testing.flows import job_step, make_flow


def flow(name: str, created: float = 0, namespace: str = "team-a", priority: int | None = None) -> JobFlow:
    policy = {} if priority is None else {"priority": priority}
    return make_flow(
        [job_step("s0")],
        name=name,
        namespace=namespace,
        created=T0 + timedelta(seconds=created),
        execution_policy=policy,
    )


def with_priority(f: JobFlow, priority: int) -> JobFlow:
    policy = f.spec.execution_policy.model_copy(update={"priority": priority})
    return f.model_copy(update={"spec": f.spec.model_copy(update={"execution_policy": policy})})


def may_start(flows: list[JobFlow], **limits: int) -> list[str]:
    """The flows each of which a book of `flows` lets start now (each asked of a book of its own)."""
    return [f.metadata.name for f in flows if book_of(*flows, **limits).claim(f) is None]


# --- within a namespace -------------------------------------------------------------------------------


def test_a_higher_priority_flow_created_last_goes_ahead_of_older_ones_and_says_its_priority() -> None:
    old, older = flow("old", 1), flow("older", 0)
    urgent = flow("urgent", 9, priority=500)
    book = book_of(older, old, urgent, per_namespace=1)
    assert book.waiting() == ["team-a/urgent", "team-a/older", "team-a/old"]
    assert book.claim(older) == waiting_message(1, "team-a")  # no priority: the message as before
    assert book.claim(urgent) is None
    book2 = book_of(older, urgent, per_namespace=1)
    book2.observe(older, started(older))
    assert book2.claim(urgent) == (
        "waiting for a slot: at most 1 flows run at once in namespace team-a "
        "(--namespace-max-running-flows 1); its priority 500 ranks it in its namespace's line"
    )


def test_equal_priorities_keep_creation_order_then_name_and_a_negative_priority_goes_last() -> None:
    a = flow("a", 5, priority=7)
    b = flow("b", 2, priority=7)
    c, d = flow("c", 2, priority=7), flow("d", 0, priority=-1)
    book = book_of(a, b, c, d, flow("e", 1), per_namespace=1)
    assert book.waiting() == ["team-a/b", "team-a/c", "team-a/a", "team-a/e", "team-a/d"]


def test_a_lower_priority_flow_never_takes_the_last_slot_a_higher_one_waits_for() -> None:
    # Two slots, one held: both waiting flows are among the first two, but only one slot is left, and
    # it is the higher-priority flow's, whichever of them is reconciled first.
    running = started(flow("running", 0))
    high, low = flow("high", 9, priority=10), flow("low", 1, priority=5)
    book = book_of(running, high, low, per_namespace=2)
    assert book.claim(low) == waiting_message(2, "team-a", 5)
    assert book.claim(high) is None


def test_a_running_flow_keeps_its_slot_whatever_the_priorities() -> None:
    running = started(flow("running", 0, priority=-1000))
    urgent = flow("urgent", 1, priority=1000)
    book = book_of(running, urgent, per_namespace=1)
    assert book.claim(urgent) is not None
    # Its own priority edited: it still runs, and nothing is freed.
    assert book.observe(running, with_priority(running, 1000)) == []
    assert book.claim(urgent) is not None
    assert book.observe(running, finished(running)) == ["team-a/urgent"]


# --- an edit re-ranks -----------------------------------------------------------------------------------


def test_an_edit_of_a_waiting_flows_priority_moves_it_in_line() -> None:
    running = started(flow("running", 0))
    first, second = flow("first", 1), flow("second", 2)
    book = book_of(running, first, second, per_namespace=1)
    raised = with_priority(second, 50)
    assert book.observe(second, raised) == []  # no slot free: nobody to wake
    assert book.waiting() == ["team-a/second", "team-a/first"]
    # The slot frees: it goes to the flow raised, not to the older one.
    assert book.observe(running, finished(running)) == ["team-a/second"]
    assert book.claim(first) is not None
    # Lowered again before it took the slot: the older flow is first again, and is woken.
    assert book.observe(raised, with_priority(raised, -50)) == ["team-a/first"]
    assert book.claim(with_priority(raised, -50)) is not None
    assert book.claim(first) is None


def test_an_edit_under_the_global_limit_moves_the_flow_in_its_namespaces_seats() -> None:
    a0, a1 = flow("a0", 0, "ns-a"), flow("a1", 2, "ns-a")
    b0 = flow("b0", 1, "ns-b")
    book = book_of(a0, a1, b0, total=1)
    assert book.claim(a1) is not None
    book.observe(a1, with_priority(a1, 9))
    assert book.claim(a0) is not None  # a1 sits in ns-a's first seat now
    assert book.claim(with_priority(a1, 9)) is None


# --- across namespaces ----------------------------------------------------------------------------------


@pytest.mark.parametrize("limits", [{"total": 2}, {"total": 2, "per_namespace": 2}, {"total": 3}])
def test_a_tenants_priorities_never_move_another_namespaces_flows(limits: dict[str, int]) -> None:
    def flows(priority: int | None) -> list[JobFlow]:
        team_a = [flow(f"a{i}", 2 * i, "team-a", priority if i == 4 else None) for i in range(5)]
        team_b = [flow(f"b{i}", 2 * i + 1, "team-b") for i in range(3)]
        return [*team_a, *team_b]

    plain, urgent = may_start(flows(None), **limits), may_start(flows(1000), **limits)
    # team-b's verdicts are the same; team-a's newest flow takes team-a's first place.
    assert [n for n in urgent if n.startswith("b")] == [n for n in plain if n.startswith("b")]
    assert "a4" in urgent
    assert "a4" not in plain
    assert len(urgent) == len(plain)


def test_a_high_priority_tenant_gets_the_seats_its_flows_creation_times_give_it() -> None:
    # Controller-wide 2: team-a's flows were created first, so its two seats are first: they go to its
    # priority flow and its oldest; team-b's flow waits, as it would with no priority at all.
    a0, a1 = flow("a0", 0, "team-a"), flow("a1", 1, "team-a")
    b0 = flow("b0", 2, "team-b")
    late = flow("late", 9, "team-a", priority=1000)
    assert may_start([a0, a1, b0, late], total=2) == ["a0", "late"]
    # team-b's flow created before team-a's priority flow: the priority does not put it ahead of b0.
    assert may_start([a0, b0, late], total=2) == ["b0", "late"]


# --- waking -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("limits", [{"total": 2}, {"total": 2, "per_namespace": 2}])
def test_a_priority_flows_start_wakes_the_older_flow_that_moves_up_into_its_seat(
    limits: dict[str, int],
) -> None:
    # n0's priority flow f3 sits in n0's first seat (f0's creation rank), f0 in f3's, behind n1's two.
    f0, f1 = flow("f0", 0, "n0"), flow("f1", 1, "n1")
    f2, f3 = flow("f2", 2, "n1"), flow("f3", 3, "n0", priority=1)
    book = book_of(f0, f1, f2, f3, **limits)
    assert book.claim(f0) is not None
    assert book.claim(f3) is None
    assert book.settle(f3, begun=True) == []
    # f3 runs in its own seat now: f0 moves up into the first, and a slot is free for it. It decides
    # anew at once, not at some unrelated flow's finish.
    assert "n0/f0" in book.observe(f3, started(f3))
    assert book.claim(f0) is None


def test_a_start_in_the_flows_own_seat_moves_nobody_and_wakes_nobody() -> None:
    a0, a1 = flow("a0", 0, "n0", priority=1), flow("a1", 1, "n0")
    book = book_of(a0, a1, flow("b0", 2, "n1"), total=2)
    assert book.claim(a0) is None
    book.settle(a0, begun=True)
    assert book.observe(a0, started(a0)) == []
