"""Planner: a `type: Flow` step runs a JobFlowTemplate as a child flow and ends as the child does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from zen_flow.api import JobFlow, JobFlowStatus
from zen_flow.api.constants import (
    ANNOTATION_ARCHIVE_LOGS,
    ANNOTATION_STOP,
    ANNOTATION_STOPPED_BY,
    ANNOTATION_SUSPENDED_BY_PARENT,
    LABEL_DEPTH,
    LABEL_PARENT,
    LABEL_PARENT_STEP,
    MAX_FLOW_DEPTH,
)
from zen_flow.api.job import Job
from zen_flow.planner import (
    CreateJob,
    DeleteJob,
    Lineage,
    Plan,
    SlotBook,
    SlotLimits,
    StopChild,
    SuspendChild,
    as_job,
    needs_slot,
    plan,
    refused_job,
    verified_parent,
)
from zen_flow_dev.testing.flows import job_step, make_flow

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def flow_step(name: str, *deps: str, template: str = "build", **fields: Any) -> dict[str, Any]:
    step: dict[str, Any] = {"name": name, "type": "Flow", "flow": {"templateRef": {"name": template}}}
    if deps:
        step["dependencies"] = list(deps)
    step.update(fields)
    return step


def apply(flow: JobFlow, result: Plan) -> JobFlow:
    return flow.model_copy(update={"status": result.status})


def creates(result: Plan) -> list[CreateJob]:
    return [a for a in result.actions if isinstance(a, CreateJob)]


def stops(result: Plan) -> list[StopChild]:
    return [a for a in result.actions if isinstance(a, StopChild)]


def deletes(result: Plan) -> list[DeleteJob]:
    return [a for a in result.actions if isinstance(a, DeleteJob)]


def reasons(result: Plan) -> list[str]:
    return [e.reason for e in result.events]


def stopped(child: JobFlow, who: str = "parent flow flow", value: str = "RunFinally") -> JobFlow:
    """The child as the StopChild patch leaves it (the grace's and a graceful stop's)."""
    annotations = {**child.metadata.annotations, ANNOTATION_STOP: value, ANNOTATION_STOPPED_BY: who}
    return child.model_copy(
        update={"metadata": child.metadata.model_copy(update={"annotations": annotations})}
    )


def child_of(
    body: dict[str, Any], *, phase: str = "Running", message: str | None = None, **status: Any
) -> JobFlow:
    """The child the apiserver stores from `body`, in `phase`."""
    doc = {
        **body,
        "metadata": {
            **body["metadata"],
            "uid": f"uid-{body['metadata']['name']}",
            "creationTimestamp": "2025-01-01T00:00:00Z",
        },
    }
    child = JobFlow.model_validate(doc)
    return child.model_copy(
        update={"status": JobFlowStatus.model_validate({"phase": phase, "message": message, **status})}
    )


def phase_of(flow: JobFlow, step: str) -> str:
    return next(s.phase for s in flow.status.steps if s.name == step)


def message_of(flow: JobFlow, step: str) -> str | None:
    return next(s.message for s in flow.status.steps if s.name == step)


def test_flow_step_creates_one_owned_labelled_child_naming_its_template_with_resolved_arguments() -> None:
    parent = make_flow(
        [
            flow_step(
                "sub",
                inputs={"parameters": [{"name": "env", "valueFrom": {"argument": "env"}}]},
                flow={
                    "templateRef": {"name": "build", "clusterScope": True},
                    "arguments": {
                        "parameters": [{"name": "target", "value": "{{inputs.parameters.env}}-eu"}]
                    },
                },
            )
        ],
        name="parent",
        arguments={"env": "prod"},
    )
    result = plan(parent, [], T0)
    [create] = creates(result)
    body = create.body
    assert body["kind"] == "JobFlow"
    assert body["metadata"]["name"].startswith("parent-sub-")
    assert body["metadata"]["labels"][LABEL_PARENT] == "parent"
    assert body["metadata"]["labels"][LABEL_PARENT_STEP] == "sub"
    assert body["metadata"]["labels"][LABEL_DEPTH] == "1"
    [owner] = body["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["controller"], owner["blockOwnerDeletion"]) == (
        "JobFlow", "parent", True, True,
    )  # fmt: skip
    assert body["spec"] == {
        "templateRef": {"name": "build", "clusterScope": True},
        "arguments": {"parameters": [{"name": "target", "value": "prod-eu"}]},
    }
    ref = result.status.steps[0].job_ref
    assert ref is not None
    assert (ref.kind, ref.name) == ("JobFlow", body["metadata"]["name"])
    assert phase_of(apply(parent, result), "sub") == "Running"
    # Planned again with the child in the cache: nothing more is created (idempotent).
    again = plan(apply(parent, result), [as_job(child_of(body))], T0 + timedelta(seconds=1))
    assert creates(again) == []


def test_step_mirrors_its_child_and_the_next_step_reads_the_childs_output() -> None:
    parent = make_flow(
        [
            flow_step(
                "sub",
                outputs={
                    "parameters": [
                        {
                            "name": "version",
                            "valueFrom": {"jsonPath": "$.steps[0].outputs.parameters[0].value"},
                        }
                    ]
                },
            ),
            job_step(
                "deploy",
                "sub",
                inputs={
                    "parameters": [
                        {"name": "v", "valueFrom": {"jsonPath": "sub:$.outputs.parameters.version"}}
                    ]
                },
            ),
        ]
    )
    first = plan(parent, [], T0)
    parent = apply(parent, first)
    body = creates(first)[0].body
    running = plan(parent, [as_job(child_of(body))], T0 + timedelta(seconds=5))
    assert phase_of(apply(parent, running), "sub") == "Running"
    done = child_of(
        body,
        phase="Succeeded",
        steps=[
            {"name": "b", "phase": "Succeeded", "outputs": {"parameters": [{"name": "v", "value": "1.2.3"}]}}
        ],
    )
    finished = plan(parent, [as_job(done)], T0 + timedelta(seconds=9))
    parent = apply(parent, finished)
    assert phase_of(parent, "sub") == "Succeeded"
    [output] = next(s for s in parent.status.steps if s.name == "sub").outputs.parameters  # type: ignore[union-attr]
    assert (output.name, output.value) == ("version", "1.2.3")
    nxt = plan(parent, [as_job(done)], T0 + timedelta(seconds=10))
    [deploy] = creates(nxt)
    env = deploy.body["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "ZF_PARAM_V", "value": "1.2.3"} in env


def test_failed_child_fails_the_step_naming_the_childs_failed_step() -> None:
    parent = make_flow([flow_step("sub")])
    first = plan(parent, [], T0)
    parent = apply(parent, first)
    body = creates(first)[0].body
    failed = child_of(body, phase="Failed", message="step load failed: Job failed: BackoffLimitExceeded")
    result = plan(parent, [as_job(failed)], T0 + timedelta(seconds=3))
    parent = apply(parent, result)
    assert phase_of(parent, "sub") == "Failed"
    assert message_of(parent, "sub") == (
        f"child flow {body['metadata']['name']} failed: step load failed: Job failed: BackoffLimitExceeded"
    )
    assert parent.status.phase == "Failed"


def test_retry_deletes_nothing_and_creates_the_next_attempt_as_a_new_child() -> None:
    parent = make_flow([flow_step("sub", retryPolicy={"limit": 1, "backoff": {"duration": "10s"}})])
    first = plan(parent, [], T0)
    parent = apply(parent, first)
    body = creates(first)[0].body
    failed = as_job(child_of(body, phase="Failed", message="step x failed"))
    retrying = plan(parent, [failed], T0 + timedelta(seconds=1))
    parent = apply(parent, retrying)
    assert phase_of(parent, "sub") == "Retrying"
    due = plan(parent, [failed], T0 + timedelta(seconds=30))
    [second] = creates(due)
    assert second.body["kind"] == "JobFlow"
    assert second.body["metadata"]["name"] == body["metadata"]["name"] + "-r1"
    assert second.body["metadata"]["labels"]["workflow.kube-zen.io/attempt"] == "1"


def test_timeout_deletes_the_child_and_fails_the_step() -> None:
    parent = make_flow([flow_step("sub", timeoutSeconds=60)])
    first = plan(parent, [], T0)
    parent = apply(parent, first)
    child = as_job(child_of(creates(first)[0].body))
    result = plan(parent, [child], T0 + timedelta(seconds=120))
    assert DeleteJob(child.metadata.name, "sub", "timed out after 60s") in result.actions
    assert phase_of(apply(parent, result), "sub") == "Failed"


def test_stop_deletes_the_running_child() -> None:
    parent = make_flow([flow_step("sub")])
    first = plan(parent, [], T0)
    parent = apply(parent, first)
    child = as_job(child_of(creates(first)[0].body))
    stopped = parent.model_copy(
        update={
            "metadata": parent.metadata.model_copy(
                update={"annotations": {"workflow.kube-zen.io/stop": "true"}}
            )
        }
    )
    result = plan(stopped, [child], T0 + timedelta(seconds=5))
    assert [a.name for a in result.actions if isinstance(a, DeleteJob)] == [child.metadata.name]
    assert result.status.phase == "Failed"


def test_suspending_the_parent_suspends_the_running_child_and_resuming_resumes_it() -> None:
    parent = make_flow([flow_step("sub")])
    first = plan(parent, [], T0)
    parent = apply(parent, first)
    body = creates(first)[0].body
    suspended = parent.model_copy(update={"spec": parent.spec.model_copy(update={"suspend": True})})
    kid = child_of(body)
    result = plan(suspended, [as_job(kid)], T0 + timedelta(seconds=5))
    # The child's UID goes with the patch: its precondition (a flow made since under the name is not it).
    assert SuspendChild(body["metadata"]["name"], "sub", True, kid.metadata.uid) in result.actions
    held = kid
    held = held.model_copy(update={"spec": held.spec.model_copy(update={"suspend": True})})
    # Suspended by its parent (the mark SuspendChild writes): the parent's resume resumes it.
    marked = {**held.metadata.annotations, ANNOTATION_SUSPENDED_BY_PARENT: "true"}
    held = held.model_copy(update={"metadata": held.metadata.model_copy(update={"annotations": marked})})
    assert not any(isinstance(a, SuspendChild) for a in plan(suspended, [as_job(held)], T0).actions)
    resumed = plan(parent, [as_job(held)], T0 + timedelta(seconds=9))
    assert SuspendChild(body["metadata"]["name"], "sub", False, held.metadata.uid) in resumed.actions


def test_a_child_nested_past_the_depth_limit_fails_its_step_naming_why() -> None:
    deep = make_flow([flow_step("again", template="loop")])
    result = plan(deep, [], T0, lineage=Lineage(depth=MAX_FLOW_DEPTH, child=True))
    assert creates(result) == []
    deep = apply(deep, result)
    assert phase_of(deep, "again") == "Failed"
    message = message_of(deep, "again") or ""
    assert f"nest at most {MAX_FLOW_DEPTH} deep" in message
    assert "template loop" in message
    assert deep.status.phase == "Failed"
    ok = make_flow([flow_step("again", template="loop")])
    made = creates(plan(ok, [], T0, lineage=Lineage(depth=MAX_FLOW_DEPTH - 1, child=True)))
    assert made[0].body["metadata"]["labels"][LABEL_DEPTH] == str(MAX_FLOW_DEPTH)


def test_a_refused_child_fails_only_its_step_with_the_apiservers_words() -> None:
    parent = make_flow([flow_step("sub"), job_step("other")])
    first = plan(parent, [], T0)
    parent = apply(parent, first)
    name = creates(first)[0].body["metadata"]["name"]
    why = f'the apiserver refused child flow {name}: spec.templateRef.name: Not found: "build"'
    result = plan(parent, [refused_job("default", name, why)], T0 + timedelta(seconds=1))
    parent = apply(parent, result)
    assert phase_of(parent, "sub") == "Failed"
    assert message_of(parent, "sub") == why


def test_children_take_no_slot_so_a_parent_holding_the_last_slot_cannot_deadlock() -> None:
    cache: dict[str, JobFlow] = {}
    book = SlotBook(
        SlotLimits(total=1, per_namespace=1), child=lambda f: verified_parent(f, cache.get) is not None
    )
    parent = make_flow([flow_step("sub")], name="parent", created=T0)
    parent = apply(parent, plan(parent, [], T0))
    assert parent.status.start_time is not None
    cache[parent.key] = parent
    book.observe(None, parent)
    body = creates(plan(make_flow([flow_step("sub")], name="parent"), [], T0))[0].body
    child = child_of(body, phase="Pending")
    assert verified_parent(child, cache.get) == parent
    assert verified_parent(parent, cache.get) is None
    book.observe(None, child)
    # The child would start now: nothing holds it back, and it takes no slot (none is asked for).
    assert not needs_slot(child, (), child=True)
    other = make_flow([job_step("a")], name="other", created=T0 + timedelta(seconds=1))
    book.observe(None, other)
    assert book.claim(other) is not None  # the parent still holds the only slot: the others wait


def test_a_child_job_record_mirrors_phases() -> None:
    body = creates(plan(make_flow([flow_step("sub")]), [], T0))[0].body
    job: Job = as_job(child_of(body))
    assert not job.finished
    assert job.status.active == 1
    assert as_job(child_of(body, phase="Succeeded")).complete
    failed = as_job(child_of(body, phase="Failed", message="step a failed: x"))
    assert failed.failed


def test_a_child_flow_asks_for_its_logs_in_the_archive_as_its_parent_does() -> None:
    for value in ("true", "false", None):
        annotations = {ANNOTATION_ARCHIVE_LOGS: value} if value is not None else None
        parent = make_flow([flow_step("sub")], name="parent", annotations=annotations)
        [create] = creates(plan(parent, [], T0))
        assert (create.body["metadata"].get("annotations") or {}).get(ANNOTATION_ARCHIVE_LOGS) == value
