"""Compaction of cached objects: same values, shared identity, and independent copies."""

from __future__ import annotations

import copy
import json
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter

from zen_flow.api import JobFlow, Step
from zen_flow.api.job import JOB, JobStatus
from zen_flow.api.known_fields import newer_field
from zen_flow.api.meta import OwnerReference
from zen_flow.informer.compaction import Compactor
from zen_flow.informer.resources import JobFlowInformer, JobInformer
from zen_flow.kube.streams import decode_event
from zen_flow_dev.testing.clock import FakeClock


def flow_raw(name: str, uid: str) -> dict[str, Any]:
    template = {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "busybox"}]}}}}
    return {
        "apiVersion": "workflow.kube-zen.io/v1alpha1",
        "kind": "JobFlow",
        "metadata": {"name": name, "namespace": "ns", "uid": uid, "labels": {"team": "data"}},
        "spec": {"steps": [{"name": "a", "template": template}, {"name": "b", "dependencies": ["a"]}]},
        "status": {"phase": "Running", "steps": [{"name": "a", "phase": "Running"}]},
    }


def job_raw(name: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "labels": {"app.kubernetes.io/managed-by": "zen-flow", "workflow.kube-zen.io/step": name},
        },
        "status": {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1},
    }


def test_compaction_changes_no_value() -> None:
    compactor = Compactor((OwnerReference, Step, JobStatus))
    adapter: TypeAdapter[Any]
    for raw, adapter in ((flow_raw("f", "u1"), TypeAdapter(JobFlow)), (owned_job_raw("j", "u1"), JOB)):
        plain = adapter.validate_python(copy.deepcopy(raw))
        compacted = compactor.compact(adapter.validate_python(copy.deepcopy(raw)))
        assert compacted == plain
        assert adapter.dump_python(compacted, by_alias=True) == adapter.dump_python(plain, by_alias=True)


def test_flows_from_one_manifest_share_templates_and_strings() -> None:
    compactor = Compactor()
    one = compactor.compact(JobFlow.model_validate(flow_raw("one", "u1")))
    two = compactor.compact(JobFlow.model_validate(flow_raw("two", "u2")))
    assert one.spec.steps[0].template is two.spec.steps[0].template
    assert one.metadata.labels is two.metadata.labels
    assert one.status.phase is two.status.phase  # interned
    assert one.__pydantic_fields_set__ is two.__pydantic_fields_set__
    assert one.metadata.name == "one"
    assert two.metadata.name == "two"
    assert compactor.shared_containers == 2  # the template and the labels; "b" has no template


def test_copies_of_compacted_objects_do_not_share_their_fields_set() -> None:
    compactor = Compactor()
    one = compactor.compact(JobFlow.model_validate(flow_raw("one", "u1")))
    two = compactor.compact(JobFlow.model_validate(flow_raw("two", "u2")))
    status = one.status.model_copy(update={"message": "changed"})
    assert "message" in status.model_fields_set
    assert "message" not in two.status.model_fields_set


def test_the_sharing_table_is_bounded() -> None:
    compactor = Compactor(max_shared=2)
    for i in range(5):
        raw = flow_raw(f"f{i}", f"u{i}")
        raw["metadata"]["labels"] = {"team": f"t{i}"}
        del raw["spec"]["steps"][0]["template"]
        compactor.compact(JobFlow.model_validate(raw))
    assert compactor.shared_containers == 2


def test_long_strings_are_left_alone() -> None:
    long_message = "x" * 200
    raw = job_raw("j")
    raw["status"]["conditions"][0]["message"] = long_message
    job = Compactor().compact(JOB.validate_python(raw))
    assert job.status.conditions[0].message == long_message
    assert job.metadata.namespace is sys.intern("ns")


def test_the_flow_informer_caches_compacted_flows() -> None:
    informer = JobFlowInformer(source=None, clock=FakeClock())  # type: ignore[arg-type]
    for name, uid in (("one", "u1"), ("two", "u2")):
        line = json.dumps({"type": "ADDED", "object": flow_raw(name, uid)}).encode()
        informer._apply_event("ADDED", decode_event(line, informer.decoder).object)
    one, two = informer.get("ns/one"), informer.get("ns/two")
    assert one is not None
    assert two is not None
    assert one.spec.steps[0].template is two.spec.steps[0].template


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=80),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@given(labels=st.dictionaries(st.text(max_size=70), st.text(max_size=70), max_size=5), extra=json_values)
def test_any_json_survives_compaction_unchanged(labels: dict[str, str], extra: Any) -> None:
    raw = flow_raw("f", "u")
    raw["metadata"]["labels"] = labels
    raw["spec"]["steps"][0]["template"]["extra"] = extra
    expected = json.loads(json.dumps(raw))
    compacted = Compactor().compact(JobFlow.model_validate(raw))
    assert compacted == JobFlow.model_validate(expected)


def owned_job_raw(name: str, flow_uid: str) -> dict[str, Any]:
    raw = job_raw(name)
    raw["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "workflow.kube-zen.io/v1alpha1",
            "kind": "JobFlow",
            "name": "f",
            "uid": flow_uid,
            "controller": True,
        }
    ]
    return raw


def test_the_jobs_of_a_flow_share_their_owner_reference_and_equal_statuses() -> None:
    informer = JobInformer(source=None, clock=FakeClock())  # type: ignore[arg-type]
    raws = [owned_job_raw(n, "u1" if n != "c" else "u2") for n in "abc"]
    for raw in raws:
        raw["metadata"]["creationTimestamp"] = "2026-12-02T10:00:00Z"  # one reconcile created them
    a, b, c = (informer.decoder.item(raw) for raw in raws)
    assert a is not None
    assert b is not None
    assert c is not None
    assert a.metadata.owner_references[0] is b.metadata.owner_references[0]
    assert a.metadata.owner_references[0] is not c.metadata.owner_references[0]  # another flow
    assert c.metadata.owner_references[0].uid == "u2"
    assert a.metadata.owner_references is b.metadata.owner_references  # the tuple too
    assert a.metadata.creation_timestamp is b.metadata.creation_timestamp  # created in the same second
    assert a.status is b.status  # equal (same conditions at the same time)
    assert a.metadata is not b.metadata  # unique parts stay apart


def test_strings_that_identify_one_object_are_not_interned() -> None:
    # Interning a unique string only adds it to the interpreter's table, for good.
    informer = JobInformer(source=None, clock=FakeClock())  # type: ignore[arg-type]
    raw = owned_job_raw("job-" + "a" * 20, "u1")
    raw["metadata"]["resourceVersion"] = str(10**6 + 7)  # built at run time: literals are interned
    job = informer.decoder.item(raw)
    assert job is not None
    for value in (job.metadata.name, job.metadata.uid, job.metadata.resource_version):
        assert sys.intern("".join(value)) is not value
    assert sys.intern("".join("ns")) is job.metadata.namespace  # shared by many: interned


def test_flows_from_one_manifest_share_their_steps() -> None:
    informer = JobFlowInformer(source=None, clock=FakeClock())  # type: ignore[arg-type]
    raws = [flow_raw(name, f"uid-{name}") for name in ("one", "two", "three")]
    raws[2]["spec"]["steps"][0]["template"]["spec"]["backoffLimit"] = 2  # step "a" differs
    one, two, three = (informer.decoder.item(raw) for raw in raws)
    assert one is not None
    assert two is not None
    assert three is not None
    assert one.spec.steps[0] is two.spec.steps[0]
    assert one.spec.steps[1] is two.spec.steps[1] is three.spec.steps[1]
    assert three.spec.steps[0] is not one.spec.steps[0]
    assert three.spec.steps[0].template["spec"]["backoffLimit"] == 2


@pytest.mark.parametrize(("room", "shared_again"), [(6, True), (4, False)])
def test_only_the_named_classes_are_shared_and_the_table_is_bounded(room: int, shared_again: bool) -> None:
    compactor = Compactor((OwnerReference,), max_models=room)
    jobs = [compactor.compact(JOB.validate_python(owned_job_raw(f"j{i}", f"u{i % 3}"))) for i in range(6)]
    refs = [job.metadata.owner_references[0] for job in jobs]
    # Owners u0, u1, u2, u0, u1, u2, each an ownerReference and the tuple holding it: with room for six,
    # the second round reuses the first; with room for four, each owner was evicted before it came back.
    # Values are right either way.
    assert [refs[i + 3] is refs[i] for i in range(3)] == [shared_again] * 3
    assert [ref.uid for ref in refs] == ["u0", "u1", "u2", "u0", "u1", "u2"]
    assert jobs[0].status is not jobs[1].status  # JobStatus was not named here: not shared


def test_strings_inside_tuples_are_interned_too() -> None:
    def flow(name: str) -> dict[str, Any]:
        raw = flow_raw(name, f"uid-{name}")
        # Built at run time, so two flows do not share the string objects until compaction.
        raw["spec"]["steps"] = [
            {"name": "-".join(["extract", "orders"]), "type": "Manual"},
            {"name": "load", "type": "Manual", "dependencies": ["-".join(["extract", "orders"])]},
        ]
        return raw

    compactor = Compactor()
    one, two = (compactor.compact(JobFlow.model_validate(flow(n))) for n in ("one", "two"))
    assert one.spec.steps[1].dependencies == ("extract-orders",)
    assert one.spec.steps[1].dependencies[0] is two.spec.steps[1].dependencies[0]


def test_a_spec_key_this_release_does_not_know_stays_visible_and_a_known_spec_costs_no_extra_dict() -> None:
    # Spec models keep the keys they do not declare (api.meta.SpecModel), so that a flow written for a
    # newer zen-flow is recognised (api/known_fields.py); compaction drops the empty dict the others
    # hold, so a known spec costs what it did.
    compactor = Compactor((Step,))
    raw = flow_raw("newer", "u1")
    raw["spec"]["steps"][1]["allowFailureFromTheFuture"] = True
    newer = compactor.compact(JobFlow.model_validate_json(json.dumps(raw)))
    known = compactor.compact(JobFlow.model_validate_json(json.dumps(flow_raw("known", "u2"))))
    assert (
        newer_field(newer.spec)
        == "spec.steps[1].allowFailureFromTheFuture: a field this release does not know"
    )
    assert newer_field(known.spec) is None
    assert known.spec.__pydantic_extra__ is None
    assert all(step.__pydantic_extra__ is None for step in known.spec.steps)
    assert newer.spec.steps[0] is known.spec.steps[0]  # still shared: equal steps
    assert newer.spec.steps[1] is not known.spec.steps[1]
