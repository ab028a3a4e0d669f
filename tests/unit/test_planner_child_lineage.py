"""Which flows are verified children (planner/lineage.py), and what only a verified child gets: no wait
for a slot, its TTL left to its parent, a depth counted from its parents; and the cap on a family."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from zen_flow.api import JobFlow, JobFlowStatus
from zen_flow.api.constants import LABEL_ATTEMPT, LABEL_DEPTH, LABEL_PARENT_STEP, MAX_FLOW_DEPTH
from zen_flow.api.meta import OwnerReference
from zen_flow.planner import (
    MAX_DESCENDANTS,
    CreateJob,
    DeleteFlow,
    Lineage,
    SlotBook,
    SlotLimits,
    lineage,
    plan,
    verified_parent,
)
from zen_flow_dev.testing.flows import job_step, make_flow

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def flow_step(name: str, template: str = "t", **fields: Any) -> dict[str, Any]:
    return {"name": name, "type": "Flow", "flow": {"templateRef": {"name": template}}, **fields}


def started(flow: JobFlow) -> JobFlow:
    return flow.model_copy(update={"status": plan(flow, [], T0).status})


def child_body(parent: JobFlow, step: str = "sub") -> dict[str, Any]:
    fresh = parent.model_copy(update={"status": JobFlowStatus()})
    [create] = [a for a in plan(fresh, [], T0).actions if isinstance(a, CreateJob) and a.step == step]
    return create.body


def stored(
    body: dict[str, Any], *, steps: list[dict[str, Any]] | None = None, phase: str = "Running"
) -> JobFlow:
    """The child the apiserver stores from `body` (expanded to `steps`), in `phase`."""
    meta = {
        **body["metadata"],
        "uid": f"uid-{body['metadata']['name']}",
        "creationTimestamp": "2025-01-01T00:00:05Z",
    }
    spec = {"steps": steps or [job_step("inner")]}
    flow = JobFlow.model_validate({**body, "metadata": meta, "spec": spec})
    return flow.model_copy(update={"status": JobFlowStatus.model_validate({"phase": phase})})


def relabel(flow: JobFlow, **labels: str) -> JobFlow:
    return flow.model_copy(
        update={"metadata": flow.metadata.model_copy(update={"labels": {**flow.metadata.labels, **labels}})}
    )


def claiming(flow: JobFlow, parent_name: str, uid: str) -> JobFlow:
    ref = OwnerReference.model_validate(
        {
            "apiVersion": "workflow.kube-zen.io/v1alpha1",
            "kind": "JobFlow",
            "name": parent_name,
            "uid": uid,
            "controller": True,
        }
    )
    return flow.model_copy(update={"metadata": flow.metadata.model_copy(update={"owner_references": (ref,)})})


PARENT = started(make_flow([flow_step("sub"), flow_step("other")], name="parent", created=T0))
CACHE = {PARENT.key: PARENT}
CHILD = stored(child_body(PARENT))


def test_a_child_the_parent_made_is_verified() -> None:
    assert verified_parent(CHILD, CACHE.get) == PARENT
    assert verified_parent(PARENT, CACHE.get) is None


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda c: claiming(c, "parent", "no-such-uid"), id="another-uid"),
        pytest.param(
            lambda c: claiming(
                c.model_copy(update={"metadata": c.metadata.model_copy(update={"name": "victim-job"})}),
                "parent",
                PARENT.metadata.uid,
            ),
            id="not-its-name",
        ),
        pytest.param(lambda c: relabel(c, **{LABEL_PARENT_STEP: "other"}), id="another-step"),
        pytest.param(lambda c: relabel(c, **{LABEL_ATTEMPT: "7"}), id="attempt-past-the-retries"),
        # isdigit() takes both; int() refuses the first and reads the second as 0.
        pytest.param(
            lambda c: relabel(c, **{LABEL_ATTEMPT: "\N{SUPERSCRIPT TWO}"}), id="superscript-attempt"
        ),
        pytest.param(
            lambda c: relabel(c, **{LABEL_ATTEMPT: "\N{ARABIC-INDIC DIGIT ZERO}"}), id="arabic-attempt"
        ),
        pytest.param(
            lambda c: c.model_copy(
                update={"metadata": c.metadata.model_copy(update={"namespace": "elsewhere"})}
            ),
            id="another-namespace",
        ),
    ],
)
def test_a_flow_that_only_claims_a_parent_is_no_child(forge: Any) -> None:
    assert verified_parent(forge(CHILD), CACHE.get) is None


def test_a_forged_child_waits_for_a_slot_and_a_real_one_never_does() -> None:
    book = SlotBook(
        SlotLimits(total=1, per_namespace=1), child=lambda f: verified_parent(f, CACHE.get) is not None
    )
    book.observe(None, PARENT)  # holds the only slot
    book.observe(None, CHILD)
    forged = claiming(
        make_flow([job_step("a")], name="forged", created=T0 + timedelta(seconds=9)), "parent", "x"
    )
    book.observe(None, forged)
    assert book.claim(forged) is not None
    assert "forged" in " ".join(book.waiting())
    assert "default/" + CHILD.metadata.name not in book.waiting()


def test_a_child_counts_in_its_namespaces_line_only() -> None:
    is_child = lambda f: verified_parent(f, CACHE.get) is not None  # noqa: E731
    mine = make_flow([job_step("a")], name="mine", created=T0 + timedelta(seconds=9))
    theirs = make_flow([job_step("a")], name="theirs", namespace="team-b", created=T0 + timedelta(seconds=9))
    # Two slots in the namespace: the parent and its child take both, so its namespace's next flow waits.
    book = SlotBook(SlotLimits(per_namespace=2), child=is_child)
    for f in (PARENT, CHILD, mine, theirs):
        book.observe(None, f)
    assert book.claim(mine) is not None
    assert book.claim(theirs) is None
    # Two slots controller-wide: the child is no holder there, so another namespace's flow starts.
    book = SlotBook(SlotLimits(total=2, per_namespace=5), child=is_child)
    for f in (PARENT, CHILD, theirs):
        book.observe(None, f)
    assert book.claim(theirs) is None


def test_a_childs_own_ttl_waits_for_its_parent() -> None:
    done = CHILD.model_copy(
        update={
            "spec": CHILD.spec.model_copy(update={"execution_policy": None}),
            "status": JobFlowStatus.model_validate(
                {
                    "phase": "Succeeded",
                    "startTime": "2025-01-01T00:00:00Z",
                    "completionTime": "2025-01-01T00:00:00Z",
                }
            ),
        }
    )
    later = T0 + timedelta(days=30)  # long past any TTL
    assert any(isinstance(a, DeleteFlow) for a in plan(done, [], later).actions)
    assert not any(
        isinstance(a, DeleteFlow) for a in plan(done, [], later, lineage=Lineage(depth=1, child=True)).actions
    )


@pytest.mark.parametrize("label", ["0", "9999", "x", str(MAX_FLOW_DEPTH)])
def test_depth_comes_from_the_parents_not_the_label(label: str) -> None:
    looping = [flow_step("again", template="loop")]
    chain: list[JobFlow] = [started(make_flow(looping, name="top"))]
    cache = {chain[0].key: chain[0]}
    for _ in range(MAX_FLOW_DEPTH):
        child = stored(child_body(chain[-1], "again"), steps=looping)
        child = relabel(started(child), **{LABEL_DEPTH: label})
        cache[child.key] = child
        chain.append(child)
    children = lambda uid: [f for f in cache.values() if (r := f.metadata.controller_ref()) and r.uid == uid]  # noqa: E731
    deepest = lineage(chain[-1], cache.get, children)
    assert deepest.depth == MAX_FLOW_DEPTH
    assert deepest.child
    result = plan(chain[-1].model_copy(update={"status": JobFlowStatus()}), [], T0, lineage=deepest)
    assert not any(isinstance(a, CreateJob) for a in result.actions)
    assert f"nest at most {MAX_FLOW_DEPTH} deep" in (result.status.steps[0].message or "")
    assert lineage(chain[1], cache.get, children).depth == 1


def test_a_family_past_the_cap_fails_the_flow_step_naming_it() -> None:
    result = plan(PARENT.model_copy(update={"status": JobFlowStatus()}), [], T0, lineage=Lineage(room=1))
    assert [a.step for a in result.actions if isinstance(a, CreateJob)] == ["sub"]
    [other] = [s for s in result.status.steps if s.name == "other"]
    assert other.phase == "Failed"
    assert f"at most {MAX_DESCENDANTS} child flows" in (other.message or "")


def test_lineage_counts_the_live_children_under_the_root() -> None:
    children = lambda uid: [CHILD] if uid == PARENT.metadata.uid else []  # noqa: E731
    assert lineage(PARENT, CACHE.get, children).room == MAX_DESCENDANTS - 1
    finished = CHILD.model_copy(update={"status": JobFlowStatus.model_validate({"phase": "Succeeded"})})
    assert lineage(PARENT, CACHE.get, lambda uid: [finished]).room == MAX_DESCENDANTS
