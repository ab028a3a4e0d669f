"""Decoding straight from the apiserver's bytes: same models as the slow path, and the slow path when
the fast one cannot (a broken object, an ERROR event)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from zen_flow.informer.resources import JobFlowInformer, JobInformer
from zen_flow.kube import Expired
from zen_flow.kube.streams import decode_event, decode_page
from zen_flow_dev.testing.clock import FakeClock


def job_raw(name: str, rv: str = "5") -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "resourceVersion": rv,
            "labels": {"app.kubernetes.io/managed-by": "zen-flow"},
            "managedFields": [{"manager": "kube-controller-manager", "fieldsV1": {"f:status": {}}}],
            "ownerReferences": [
                {"apiVersion": "workflow.kube-zen.io/v1alpha1", "kind": "JobFlow", "name": "f", "uid": "u"}
            ],
        },
        "spec": {"template": {"spec": {"containers": [{"name": "main", "image": "busybox"}]}}},
        "status": {
            "conditions": [
                {"type": "Complete", "status": "True", "lastTransitionTime": "2026-11-26T05:00:00Z"}
            ],
            "succeeded": 1,
            "startTime": "2026-11-26T04:59:59Z",
        },
    }


def flow_raw(name: str, steps: Any = None) -> dict[str, Any]:
    return {
        "apiVersion": "workflow.kube-zen.io/v1alpha1",
        "kind": "JobFlow",
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "resourceVersion": "7"},
        "spec": {"steps": steps if steps is not None else [{"name": "gate", "type": "Manual"}]},
        "status": {"phase": "Running"},
    }


def page_bytes(*items: dict[str, Any], rv: str = "100", token: str = "") -> bytes:
    meta = {"resourceVersion": rv, **({"continue": token} if token else {})}
    return json.dumps({"kind": "List", "metadata": meta, "items": list(items)}).encode()


def test_the_fast_path_builds_what_the_slow_path_builds() -> None:
    jobs = JobInformer(None, clock=FakeClock())  # type: ignore[arg-type]
    fast = jobs.decoder.page(page_bytes(job_raw("a"), job_raw("b"), token="t"))
    assert fast is not None
    assert (fast.resource_version, fast.continue_token) == ("100", "t")
    assert fast.items == [jobs.decoder.item(job_raw("a")), jobs.decoder.item(job_raw("b"))]
    assert fast.items[0].status.succeeded == 1
    assert fast.items[0].metadata.controller_ref() is None  # no `controller: true` in this ref


def test_a_page_with_a_broken_flow_keeps_the_others_and_a_placeholder() -> None:
    flows = JobFlowInformer(None, clock=FakeClock())  # type: ignore[arg-type]
    broken = flow_raw("broken", steps="not a list")
    page = decode_page(page_bytes(flow_raw("good"), broken), flows.decoder)
    good, placeholder = page.items
    assert good.spec.steps[0].name == "gate"
    assert placeholder.metadata.name == "broken"
    assert placeholder.status.phase == "Running"  # the parts that parse are kept
    assert "spec.steps" in (flows.parse_error("ns/broken") or "")
    assert flows.parse_error("ns/good") is None


def test_a_repaired_object_loses_its_parse_error() -> None:
    flows = JobFlowInformer(None, clock=FakeClock())  # type: ignore[arg-type]
    decode_page(page_bytes(flow_raw("f", steps="nope")), flows.decoder)
    assert flows.parse_error("ns/f") is not None
    line = json.dumps({"type": "MODIFIED", "object": flow_raw("f")}).encode()
    event = decode_event(line, flows.decoder)
    assert event.object.spec.steps[0].name == "gate"
    assert flows.parse_error("ns/f") is None


def test_watch_lines_decode_to_models_with_their_resource_version() -> None:
    jobs = JobInformer(None, clock=FakeClock())  # type: ignore[arg-type]
    event = decode_event(
        json.dumps({"type": "MODIFIED", "object": job_raw("a", rv="42")}).encode(), jobs.decoder
    )
    assert (event.type, event.resource_version, event.object.metadata.name) == ("MODIFIED", "42", "a")
    bookmark = {"type": "BOOKMARK", "object": {"kind": "Job", "metadata": {"resourceVersion": "77"}}}
    assert decode_event(json.dumps(bookmark).encode(), jobs.decoder).resource_version == "77"


@pytest.mark.parametrize("informer_type", [JobInformer, JobFlowInformer])
def test_an_error_event_still_raises(informer_type: Any) -> None:
    informer = informer_type(None, clock=FakeClock())
    status = {"kind": "Status", "metadata": {}, "status": "Failure", "reason": "Expired", "code": 410}
    with pytest.raises(Expired):
        decode_event(json.dumps({"type": "ERROR", "object": status}).encode(), informer.decoder)


def test_every_list_gives_the_freed_heap_back(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr("zen_flow.informer.informer.release_freed_memory", lambda: calls.append(1))
    jobs = JobInformer(None, clock=FakeClock())  # type: ignore[arg-type]
    page = decode_page(page_bytes(job_raw("a")), jobs.decoder)
    jobs._list_applier(None)(page.items)
    assert calls == [1]
    assert jobs.get("ns/a") is not None


def test_without_a_c_library_releasing_memory_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    from zen_flow.informer import decoding

    decoding._malloc_trim.cache_clear()
    monkeypatch.setattr(decoding.ctypes.util, "find_library", lambda _: None)
    try:
        assert decoding._malloc_trim() is None
        decoding.release_freed_memory()  # no libc: nothing to call, nothing raised
    finally:
        decoding._malloc_trim.cache_clear()


def deep_flow_bytes(name: str, levels: int) -> bytes:
    """A flow whose template nests `levels` deep, as the apiserver stores it (10,000 levels): built as
    text, since Python's own encoder recurses."""
    flow = flow_raw(name, steps=[{"name": "a", "template": {"kind": "Job", "z": "DEEP"}}])
    return json.dumps(flow).replace('"DEEP"', "[" * levels + "]" * levels).encode()


@pytest.mark.parametrize("levels", [300, 5_000])
def test_a_flow_nested_too_deep_is_a_placeholder_that_says_where(levels: int) -> None:
    # 300: past pydantic's parser (200) and serializer (255); 5,000: past json.loads (~1,000). Either
    # once ended the informer, and the controller with it, on every start.
    flows = JobFlowInformer(None, clock=FakeClock())  # type: ignore[arg-type]
    good = json.dumps(flow_raw("good")).encode()
    page = (
        b'{"metadata": {"resourceVersion": "9"}, "items": [' + good + b", " + deep_flow_bytes("deep", levels)
    )
    decoded = decode_page(page + b"]}", flows.decoder)
    assert [flow.metadata.name for flow in decoded.items] == ["good", "deep"]
    assert decoded.items[0].spec.steps[0].name == "gate"
    expected = "nested more than 128 levels deep (at spec.steps[0].template.z[0]...)"
    assert flows.parse_error("ns/deep") == expected
    assert flows.parse_error("ns/good") is None

    event = decode_event(
        b'{"type": "MODIFIED", "object": ' + deep_flow_bytes("other", levels) + b"}", flows.decoder
    )
    assert event.object.metadata.name == "other"
    assert flows.parse_error("ns/other") == expected
