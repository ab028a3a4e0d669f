"""The Events waiting to be sent: namespaces take turns, equal Events fold, Warnings are kept when full."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from zen_flow.kube.event_backlog import EventBacklog, Pending, Target


def event(
    namespace: str, flow: str, reason: str = "StepFailed", message: str = "", type_: str = "Warning"
) -> Pending:
    target = Target(namespace, flow, f"uid-{flow}", "1")
    text = message or f"{flow}: {reason}"
    return Pending(target, type_, reason, text, (namespace, target.uid, type_, reason, text))


async def test_another_namespaces_event_is_sent_second_however_much_one_namespace_queued() -> None:
    backlog = EventBacklog(limit=2000)
    for i in range(1000):
        backlog.put(event("noisy", f"f{i}"))
    backlog.put(event("quiet", "q", message="step a failed"))
    backlog.put(event("quiet", "q", message="flow failed"))
    sent = [await backlog.get() for _ in range(4)]
    assert [(e.target.namespace, e.message) for e in sent] == [
        ("noisy", "f0: StepFailed"),
        ("quiet", "step a failed"),
        ("noisy", "f1: StepFailed"),
        ("quiet", "flow failed"),
    ]


async def test_an_event_equal_to_one_waiting_is_folded_into_it() -> None:
    backlog = EventBacklog(limit=10)
    for _ in range(5):
        assert backlog.put(event("ns", "f", "FlowSuspended", type_="Normal")) is None
    backlog.put(event("ns", "f", "FlowResumed", type_="Normal"))
    assert len(backlog) == 2
    first = await backlog.get()
    assert (first.reason, first.count) == ("FlowSuspended", 5)


async def test_when_full_a_normal_event_of_the_busiest_namespace_makes_room_for_a_warning() -> None:
    backlog = EventBacklog(limit=3)
    backlog.put(event("busy", "a", "StepStarted", type_="Normal"))
    backlog.put(event("busy", "b", "StepStarted", type_="Normal"))
    backlog.put(event("calm", "c", "StepStarted", type_="Normal"))
    dropped = backlog.put(event("other", "d", "FlowFailed"))
    assert dropped is not None
    assert (dropped.target.name, dropped.type) == ("a", "Normal")
    # A Normal Event finds no room: it is the one dropped.
    normal = event("other", "e", "StepStarted", type_="Normal")
    assert backlog.put(normal) is normal
    sent = [await backlog.get() for _ in range(3)]
    assert sorted(e.target.name for e in sent) == ["b", "c", "d"]


async def test_when_every_waiting_event_is_a_warning_the_new_one_is_dropped() -> None:
    backlog = EventBacklog(limit=2)
    backlog.put(event("ns", "a"))
    backlog.put(event("ns", "b"))
    late = event("ns2", "c")
    assert backlog.put(late) is late
    assert len(backlog) == 2


async def test_when_full_a_quiet_namespaces_normal_event_takes_the_place_of_a_floods() -> None:
    backlog = EventBacklog(limit=3)
    for flow in "abc":
        backlog.put(event("flood", flow, "StepStarted", type_="Normal"))
    dropped = backlog.put(event("quiet", "q", "FlowStarted", type_="Normal"))
    assert dropped is not None
    assert dropped.target.name == "a"
    # The flood's own next Event finds no room: it already has the most waiting.
    flood = event("flood", "d", "StepStarted", type_="Normal")
    assert backlog.put(flood) is flood


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("put"), st.sampled_from("xyz"), st.sampled_from("abcd"), st.booleans()),
            st.tuples(st.just("get")),
        ),
        max_size=60,
    ),
    st.integers(1, 5),
)
async def test_the_backlog_keeps_its_count_and_turns_whatever_is_put_and_taken(
    ops: list[tuple[Any, ...]], limit: int
) -> None:
    # Against a model: what is waiting is what was queued, minus what was dropped or taken; every
    # waiting Event comes out (no Event is lost in a namespace the turns forgot).
    backlog = EventBacklog(limit=limit)
    waiting: dict[tuple[Any, ...], int] = {}
    for op in ops:
        if op[0] == "get":
            if not waiting:
                continue
            item = await backlog.get()
            assert waiting.pop(item.key) == item.count
        else:
            _, ns, flow, warning = op
            item = event(ns, flow, type_="Warning" if warning else "Normal")
            dropped = backlog.put(item)
            folded = item.key in waiting
            if dropped is not item:
                waiting[item.key] = waiting.get(item.key, 0) + 1
            if dropped is not None and dropped is not item:
                assert waiting.pop(dropped.key) == dropped.count
            assert not (folded and dropped is not None)
        assert len(backlog) == len(waiting) <= limit
    while waiting:
        item = await backlog.get()
        assert waiting.pop(item.key) == item.count
    assert len(backlog) == 0
