"""A flow's watch event keeps what did not change from the cached flow: the spec while the generation
stands, and the step entries that are equal. The cached flow is what a fresh decode would give."""

from __future__ import annotations

import copy
import json
from typing import Any

from zen_flow.api import JobFlow
from zen_flow.informer.resources import JobFlowInformer
from zen_flow.kube.streams import decode_event
from zen_flow_dev.testing.clock import FakeClock


def flow_raw(
    *, generation: int = 1, uid: str = "uid-f", phases: tuple[str, ...] = ("Succeeded", "Running")
) -> dict[str, Any]:
    names = [f"s{i}" for i in range(len(phases))]
    steps = [
        {"name": n, "dependencies": names[:i][-1:], "template": {"spec": {"template": {"spec": {}}}}}
        for i, n in enumerate(names)
    ]
    return {
        "apiVersion": "workflow.kube-zen.io/v1alpha1",
        "kind": "JobFlow",
        "metadata": {
            "name": "f",
            "namespace": "ns",
            "uid": uid,
            "resourceVersion": "7",
            "generation": generation,
        },
        "spec": {"steps": steps},
        "status": {
            "phase": "Running",
            "steps": [{"name": n, "phase": p} for n, p in zip(names, phases, strict=True)],
        },
    }


def deliver(flows: JobFlowInformer, raw: dict[str, Any], type_: str = "MODIFIED") -> JobFlow:
    """One watch event through the informer: decoded from bytes, then cached."""
    event = decode_event(json.dumps({"type": type_, "object": raw}).encode(), flows.decoder)
    flows._apply_event(event.type, event.object)
    cached = flows.get("ns/f")
    assert cached is not None
    return cached


def fresh(raw: dict[str, Any]) -> JobFlow:
    return JobFlow.model_validate(raw)


def test_a_status_write_keeps_the_spec_and_the_unchanged_steps() -> None:
    flows = JobFlowInformer(None, clock=FakeClock())  # type: ignore[arg-type]
    before = deliver(flows, flow_raw(phases=("Succeeded", "Running", "Pending")), "ADDED")
    after = deliver(flows, flow_raw(phases=("Succeeded", "Succeeded", "Pending")))
    assert after == fresh(flow_raw(phases=("Succeeded", "Succeeded", "Pending")))
    assert after.spec is before.spec
    assert after.status.steps[0] is before.status.steps[0]
    assert after.status.steps[2] is before.status.steps[2]
    assert after.status.steps[1] is not before.status.steps[1]
    assert after.status.steps[1].phase == "Succeeded"


def test_a_changed_spec_is_decoded_anew() -> None:
    flows = JobFlowInformer(None, clock=FakeClock())  # type: ignore[arg-type]
    before = deliver(flows, flow_raw(), "ADDED")
    changed = flow_raw(generation=2)
    changed["spec"]["steps"][1]["continueOnFailure"] = True
    after = deliver(flows, changed)
    assert after.spec is not before.spec
    assert after.spec.steps[1].continue_on_failure is True
    assert after == fresh(changed)


def test_a_flow_recreated_under_the_same_name_keeps_nothing() -> None:
    flows = JobFlowInformer(None, clock=FakeClock())  # type: ignore[arg-type]
    before = deliver(flows, flow_raw(), "ADDED")
    other = flow_raw(uid="uid-other")
    other["spec"]["steps"][0]["name"] = "renamed"
    other["spec"]["steps"][1]["dependencies"] = ["renamed"]
    after = deliver(flows, other)
    assert after.spec is not before.spec
    assert after.spec.steps[0].name == "renamed"
    assert after.status.steps[0] is not before.status.steps[0]


def test_nothing_is_kept_from_a_placeholder() -> None:
    flows = JobFlowInformer(None, clock=FakeClock())  # type: ignore[arg-type]
    broken = flow_raw()
    broken["status"]["steps"] = "not a list"  # the status does not parse: a placeholder, empty spec
    placeholder = deliver(flows, broken, "ADDED")
    assert flows.parse_error("ns/f") is not None
    assert placeholder.spec.steps == ()
    repaired = deliver(flows, flow_raw())  # same generation: only the status was repaired
    assert repaired == fresh(flow_raw())
    assert [s.name for s in repaired.spec.steps] == ["s0", "s1"]


def test_kept_parts_are_equal_to_what_the_event_carried() -> None:
    flows = JobFlowInformer(None, clock=FakeClock())  # type: ignore[arg-type]
    deliver(flows, flow_raw(), "ADDED")
    raw = flow_raw()
    raw["status"]["steps"][1]["message"] = "retrying"
    after = deliver(flows, copy.deepcopy(raw))
    assert after.status.steps[1].message == "retrying"
    assert after == fresh(raw)


def test_while_the_generation_stands_an_events_spec_is_not_decoded() -> None:
    """The apiserver bumps the generation on every spec change, so an event of the cached generation is
    decoded without its spec (the costly part of a large flow) and takes the cached one."""
    flows = JobFlowInformer(None, clock=FakeClock())  # type: ignore[arg-type]
    before = deliver(flows, flow_raw(), "ADDED")
    unread = flow_raw(phases=("Succeeded", "Succeeded"))
    unread["spec"] = {"steps": "never read"}  # what no apiserver sends: same generation, another spec
    after = deliver(flows, unread)
    assert after.spec is before.spec
    assert after == fresh(flow_raw(phases=("Succeeded", "Succeeded")))
    assert flows.parse_error("ns/f") is None
    # a new generation is decoded whole, so the same spec now makes a placeholder that says why
    unread["metadata"]["generation"] = 2
    deliver(flows, unread)
    assert "spec.steps" in (flows.parse_error("ns/f") or "")


def test_an_added_event_is_decoded_whole_at_once() -> None:
    """A new object has no cached spec to complete its head from, so an ADDED line (the apiserver writes
    `type` first, compactly) skips the head: its spec is read even at a generation the cache holds."""
    flows = JobFlowInformer(None, clock=FakeClock())  # type: ignore[arg-type]
    deliver(flows, flow_raw(), "ADDED")
    unread = flow_raw()
    unread["spec"] = {"steps": "read"}
    line = json.dumps({"type": "ADDED", "object": unread}, separators=(",", ":")).encode()
    assert line.startswith(b'{"type":"ADDED"')
    assert decode_event(line, flows.decoder).object.spec.steps == ()  # the placeholder's: it was read
    assert "spec.steps" in (flows.parse_error("ns/f") or "")
