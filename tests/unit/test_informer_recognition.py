"""The controller's own status write comes back as a watch event it already knows: the JobFlow informer
recognises that event from its first bytes and caches the object the write's answer described, which
must be exactly what decoding the event would have given. Anything else is decoded as before."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from test_informer_reuse import flow_raw, fresh

from zen_flow.api import JobFlow
from zen_flow.api.flow_status import JobFlowStatus
from zen_flow.core import jsonpatch
from zen_flow.informer.resources import JobFlowInformer
from zen_flow.kube import object_head as object_head_module
from zen_flow.kube.object_head import ObjectHead, event_head, object_head
from zen_flow.kube.streams import decode_event
from zen_flow_dev.testing.clock import FakeClock


def wire(value: Any) -> bytes:
    """JSON as the apiserver writes it: compact, members in key order."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def event(type_: str, raw: dict[str, Any]) -> bytes:
    """A watch event as the apiserver writes it (a struct: `type` first)."""
    return b'{"type":"%s","object":%s}' % (type_.encode(), wire(raw))


def deliver(flows: JobFlowInformer, raw: dict[str, Any], type_: str = "MODIFIED") -> JobFlow:
    decoded = decode_event(event(type_, raw), flows.decoder)
    flows._apply_event(decoded.type, decoded.object)
    cached = flows.get("ns/f")
    assert cached is not None
    return cached


def written(raw: dict[str, Any], ops: list[dict[str, Any]], version: str) -> dict[str, Any]:
    """What the apiserver stores once `ops` applied: the patch, then its new resourceVersion."""
    result = jsonpatch.apply(raw, ops)
    result["metadata"]["resourceVersion"] = version
    return result


# --- reading the front of an object ----------------------------------------------------------------


@pytest.mark.parametrize(
    "annotations",
    [
        {},
        # A key named like the member, braces and quotes in values, non-ASCII before the version.
        {"resourceVersion": "1", "note": '}{"uid":"x"} ü 🚀', "a\\b": "\\"},
    ],
)
def test_the_head_is_the_objects_own_uid_and_version(annotations: dict[str, str]) -> None:
    raw = flow_raw()
    raw["metadata"]["annotations"] = annotations
    assert object_head(wire(raw)) == ObjectHead("uid-f", "7")
    assert event_head(event("MODIFIED", raw)) == ("MODIFIED", ObjectHead("uid-f", "7"))


def managed(steps: int) -> list[dict[str, Any]]:
    """managedFields as the apiserver keeps them for a flow: one field set per manager, a key per step."""
    entry = {"f:phase": {}, "f:startTime": {}, "f:jobRef": {".": {}, "f:name": {}, "f:uid": {}}}
    status = {f'k:{{"name":"s{i}"}}': entry for i in range(steps)}
    return [
        {
            "apiVersion": "workflow.kube-zen.io/v1alpha1",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {"f:steps": {}}, "f:status": {"f:steps": status}},
            "manager": "zen-flow",
            "operation": "Update",
            "subresource": "status",
            "time": "2026-12-03T00:00:00Z",
        }
    ]


@pytest.mark.parametrize(
    "metadata",
    [
        # What a large flow's metadata is mostly made of; labels named like its last members (sorted
        # before them), and owners, which have a uid of their own.
        {
            "managedFields": managed(500),
            "labels": {"namespace": "x", "resourceVersion": "1", "uid": "not-mine"},
        },
        {"ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": "owner-uid"}]},
        {"annotations": {"a": '"namespace":"x","resourceVersion":"1","uid":"u"},"spec":'}},
    ],
)
def test_the_metadatas_end_is_found_without_parsing_it(
    metadata: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def parsed_head(raw: bytes, start: int) -> None:
        raise AssertionError("parsed")

    monkeypatch.setattr(object_head_module, "_parsed_head", parsed_head)
    raw = flow_raw()
    raw["metadata"].update(metadata)
    assert object_head(wire(raw)) == ObjectHead("uid-f", "7")
    assert event_head(event("MODIFIED", raw)) == ("MODIFIED", ObjectHead("uid-f", "7"))


def test_a_template_in_the_spec_is_never_taken_for_the_objects_metadata() -> None:
    raw = flow_raw()
    del raw["metadata"]["uid"]  # not as the apiserver writes it: parsed, and declined
    template = {"metadata": {"namespace": "ns", "resourceVersion": "1", "uid": "template"}, "spec": {}}
    raw["spec"]["steps"][0]["template"] = template
    assert object_head(wire(raw)) is None


@pytest.mark.parametrize(
    "text",
    [
        b'{"kind":"JobFlow","apiVersion":"v","metadata":{"uid":"u","resourceVersion":"7"}}',  # other order
        b'{"apiVersion": "v", "kind": "JobFlow", "metadata": {"uid": "u", "resourceVersion": "7"}}',
        b'{"apiVersion":"v","kind":"JobFlow","metadata":{"uid":"u","resourceVersion":"7"',  # cut short
        b'{"apiVersion":"v","kind":"JobFlow","metadata":{"resourceVersion":"7"}}',  # no uid
        b'{"apiVersion":"v","kind":"JobFlow","metadata":{"uid":"u","resourceVersion":7}}',  # not a string
        b'{"apiVersion":"v","kind":"JobFlow","metadata":{"uid":"u","resourceVersion":"7","x":"\xff"}}',
        b'{"apiVersion":"v","kind":"JobFlow","metadata":[]}',
    ],
)
def test_a_front_it_cannot_read_is_declined_not_guessed(text: bytes) -> None:
    assert object_head(text) is None
    assert event_head(b'{"type":"MODIFIED","object":' + text) is None


# --- the informer --------------------------------------------------------------------------------


def informer_with(raw: dict[str, Any]) -> tuple[JobFlowInformer, JobFlow]:
    flows = JobFlowInformer(None, clock=FakeClock())  # type: ignore[arg-type]
    return flows, deliver(flows, raw, "ADDED")


def test_our_own_status_write_is_recognised_and_equals_the_decoded_event() -> None:
    raw = flow_raw(phases=("Succeeded", "Running", "Pending"))
    flows, before = informer_with(raw)
    first, second, third = before.status.steps
    after_status = before.status.model_copy(
        update={"message": "two of three", "steps": (first, replace(second, phase="Succeeded"), third)}
    )
    ops = jsonpatch.status_ops(before.status, after_status, "7")
    stored = written(raw, ops, "8")

    flows.expect_status(before, "8", ops)
    after = deliver(flows, stored)

    assert flows.recognised == 1
    assert after == fresh(stored)  # what decoding the event gives
    assert after.metadata.resource_version == "8"
    assert after.spec is before.spec
    assert after.status.steps[0] is before.status.steps[0]
    assert after.status.steps[1].phase == "Succeeded"


def test_another_version_of_the_flow_is_decoded_and_drops_the_expectation() -> None:
    raw = flow_raw()
    flows, before = informer_with(raw)
    ops = jsonpatch.status_ops(before.status, before.status.model_copy(update={"message": "ours"}), "7")
    flows.expect_status(before, "8", ops)

    theirs = written(raw, [{"op": "add", "path": "/status/message", "value": "theirs"}], "9")
    assert deliver(flows, theirs).status.message == "theirs"  # the write that won, not the expected one
    # The expectation is gone: even an event claiming the expected version is decoded.
    ours = written(raw, ops, "8")
    assert deliver(flows, ours) == fresh(ours)
    assert flows.recognised == 0


def test_a_write_of_the_whole_status_is_decoded_as_usual() -> None:
    raw = flow_raw()
    flows, before = informer_with(raw)
    ops = jsonpatch.whole_status_ops(JobFlowStatus(phase="Failed", message="refused"), "7")
    flows.expect_status(before, "8", ops)
    stored = written(raw, ops, "8")
    assert deliver(flows, stored) == fresh(stored)
    assert flows.recognised == 0


def test_a_deletion_or_a_relist_drops_the_expectation() -> None:
    raw = flow_raw()
    flows, before = informer_with(raw)
    ops = jsonpatch.status_ops(before.status, before.status.model_copy(update={"message": "ours"}), "7")
    flows.expect_status(before, "8", ops)
    flows._list_applier(None)([before])  # a relist: what it brought is newer than the expectation
    stored = written(raw, ops, "8")
    assert deliver(flows, stored) == fresh(stored)
    assert flows.recognised == 0

    flows.expect_status(flows.get("ns/f"), "9", ops)  # type: ignore[arg-type]
    gone = decode_event(event("DELETED", written(raw, ops, "9")), flows.decoder)
    flows._apply_event(gone.type, gone.object)
    assert flows.get("ns/f") is None
    again = written(raw, ops, "9")
    assert deliver(flows, again, "ADDED") == fresh(again)
    assert flows.recognised == 0


def test_a_write_answered_after_its_flows_delete_event_is_not_kept() -> None:
    # A namespace deleted while its flows write their status: each answer comes after its flow's DELETED
    # event. An expectation kept then (the whole flow) waited for an event that never comes, until the
    # next relist: a red team's 1,000 such flows held 3 MiB.
    raw = flow_raw()
    flows, before = informer_with(raw)
    ops = jsonpatch.status_ops(before.status, before.status.model_copy(update={"message": "ours"}), "7")
    gone = decode_event(event("DELETED", raw), flows.decoder)
    flows._apply_event(gone.type, gone.object)
    flows.expect_status(before, "8", ops)
    assert flows._expected == {}
    # Nor for another flow made under its name since.
    again = {**raw, "metadata": {**raw["metadata"], "uid": "uid-again", "resourceVersion": "9"}}
    deliver(flows, again, "ADDED")
    flows.expect_status(before, "8", ops)
    assert flows._expected == {}
