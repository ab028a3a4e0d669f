"""Status JSON patches: they turn the old status into the new one, send only the step entries that
changed, and are conditional on the version they were computed from."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zen_flow.api.flow_status import JobFlowStatus, StepStatus
from zen_flow.core import jsonpatch

RV = {"op": "replace", "path": "/metadata/resourceVersion", "value": "7"}
WHEN = datetime(2026, 12, 2, 7, tzinfo=UTC)


def steps(n: int, phase: str = "Pending") -> tuple[StepStatus, ...]:
    return tuple(StepStatus(name=f"s{i}", phase=phase) for i in range(n))


def status(**fields: Any) -> JobFlowStatus:
    return JobFlowStatus(**fields)


def roundtrip(old: JobFlowStatus, new: JobFlowStatus) -> JobFlowStatus:
    ops = jsonpatch.status_ops(old, new, "7")
    document = {"metadata": {"resourceVersion": "7"}, "status": old.to_wire()}
    return JobFlowStatus.model_validate(jsonpatch.apply(document, ops)["status"])


def test_one_step_changing_in_a_long_flow_sends_one_entry() -> None:
    old = status(phase="Running", steps=steps(500))
    entry = StepStatus(name="s321", phase="Running", start_time=WHEN)
    new = old.model_copy(update={"steps": (*old.steps[:321], entry, *old.steps[322:])})
    ops = jsonpatch.status_ops(old, new, "7")
    assert ops == [RV, {"op": "replace", "path": "/status/steps/321", "value": entry.to_wire()}]
    # What a write costs no longer grows with the flow: one entry of 500, not the list.
    assert len(json.dumps(ops)) < 300 < len(json.dumps(new.to_wire()["steps"])) // 50


def test_every_patch_carries_the_version_it_was_computed_from() -> None:
    ops = jsonpatch.status_ops(status(phase="Running"), status(phase="Succeeded"), "42")
    assert ops[0] == {"op": "replace", "path": "/metadata/resourceVersion", "value": "42"}


def test_nothing_changed_is_no_patch_at_all() -> None:
    old = status(phase="Running", steps=steps(3))
    assert jsonpatch.status_ops(old, JobFlowStatus.model_validate(old.to_wire()), "7") == []


def test_a_status_never_written_is_added_whole() -> None:
    new = status(phase="Running", steps=steps(2))
    assert jsonpatch.status_ops(JobFlowStatus(), new, "7") == [
        RV,
        {"op": "add", "path": "/status", "value": new.to_wire()},
    ]


def test_members_are_added_replaced_and_removed() -> None:
    old = status(phase="Running", message="waiting", steps=steps(1))
    new = status(phase="Succeeded", completion_time=WHEN, steps=steps(1))
    assert jsonpatch.status_ops(old, new, "7") == [
        RV,
        {"op": "remove", "path": "/status/message"},
        {"op": "add", "path": "/status/phase", "value": "Succeeded"},
        {"op": "add", "path": "/status/completionTime", "value": "2026-12-02T07:00:00Z"},
    ]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (steps(4), steps(4, "Running")),  # most entries changed: the list is smaller whole
        (steps(3), steps(4)),  # a step more (a rerun with a changed spec): indexes would shift
        (steps(2), tuple(reversed(steps(2)))),  # reordered
    ],
)
def test_lists_that_do_not_line_up_entry_by_entry_are_sent_whole(
    old: tuple[StepStatus, ...], new: tuple[StepStatus, ...]
) -> None:
    ops = jsonpatch.status_ops(status(phase="Running", steps=old), status(phase="Running", steps=new), "7")
    assert ops == [RV, {"op": "add", "path": "/status/steps", "value": [s.to_wire() for s in new]}]


def test_pointers_escape_slashes_and_tildes() -> None:
    assert jsonpatch.pointer("metadata", "annotations", "a/b~c") == "/metadata/annotations/a~1b~0c"
    doc = jsonpatch.apply({"m": {}}, [{"op": "add", "path": "/m/a~1b~0c", "value": 1}])
    assert doc == {"m": {"a/b~c": 1}}


@pytest.mark.parametrize(
    "op",
    [
        {"op": "replace", "path": "/status/steps/3", "value": {}},  # no such entry
        {"op": "remove", "path": "/status/message"},  # no such member
        {"op": "add", "path": "/status/nested/x", "value": 1},  # no parent
        {"op": "replace", "path": "/status/steps/\N{SUPERSCRIPT TWO}", "value": {}},  # isdigit(), no int
        {"op": "replace", "path": "/status/steps/\N{ARABIC-INDIC DIGIT ZERO}", "value": {}},  # no index
    ],
)
def test_an_operation_that_does_not_apply_is_refused(op: dict[str, Any]) -> None:
    with pytest.raises(jsonpatch.PatchError):
        jsonpatch.apply({"status": status(steps=steps(1)).to_wire()}, [op])


def test_apply_does_not_touch_its_input() -> None:
    doc = {"status": status(steps=steps(2)).to_wire()}
    before = json.dumps(doc)
    jsonpatch.apply(doc, [{"op": "replace", "path": "/status/steps/0", "value": {"name": "s0"}}])
    assert json.dumps(doc) == before


_entry = st.builds(
    StepStatus,
    name=st.sampled_from(["a", "b", "c", "d", "e"]),
    phase=st.sampled_from(["Pending", "Running", "Succeeded"]),
    retry_count=st.integers(0, 3),
    message=st.none() | st.text(max_size=5),
)
_status = st.builds(
    JobFlowStatus,
    phase=st.none() | st.sampled_from(["Running", "Failed"]),
    message=st.none() | st.text(max_size=5),
    start_time=st.none() | st.just(WHEN),
    steps=st.lists(_entry, max_size=6).map(tuple),
)


@given(_status, _status)
def test_the_patch_turns_the_old_status_into_the_new_one(old: JobFlowStatus, new: JobFlowStatus) -> None:
    assert roundtrip(old, new) == new


@given(st.lists(_entry, min_size=1, max_size=8, unique_by=lambda e: e.name), st.data())
def test_unchanged_entries_are_never_sent(entries: list[StepStatus], data: st.DataObject) -> None:
    changed = data.draw(st.sets(st.integers(0, len(entries) - 1), max_size=1))
    new = [replace(e, phase="Done") if i in changed else e for i, e in enumerate(entries)]
    old_status, new_status = (
        status(phase="Running", steps=tuple(entries)),
        status(phase="Running", steps=tuple(new)),
    )
    ops = jsonpatch.status_ops(old_status, new_status, "7")
    sent = [op["path"] for op in ops if op["path"] != "/metadata/resourceVersion"]
    if new == entries:
        assert ops == []
    else:
        assert sent in (
            [f"/status/steps/{i}" for i in changed],
            ["/status/steps"],  # a short list: one entry is over a quarter of it
        )
