"""The controller and Flow steps' child flows over the fake apiserver (controller/child_flows.py and the
executor's child paths), wired as app.py wires them: only a verified child (planner/lineage.py) is shown
to its parent, and nothing a forged one claims reaches another flow."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import Any

from zen_flow import planner
from zen_flow.api import JobFlow
from zen_flow.api.meta import OwnerReference
from zen_flow.controller.child_flows import ChildFlows
from zen_flow.controller.executor import PlanExecutor
from zen_flow.controller.metrics import Metrics
from zen_flow.controller.reconciler import Controller
from zen_flow.core.naming import job_name
from zen_flow.kube.errors import ApiError, from_status
from zen_flow.machinery.expectations import Expectations
from zen_flow.machinery.workqueue import WorkQueue
from zen_flow.planner import SlotLimits
from zen_flow_dev.testing.apiserver_fake import FakeApiServer
from zen_flow_dev.testing.clock import FakeClock
from zen_flow_dev.testing.flows import job_step, make_flow

NS = "default"


def template(name: str, steps: list[dict[str, Any]], **policy: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"steps": steps}
    if policy:
        spec["executionPolicy"] = policy
    return {
        "apiVersion": "workflow.kube-zen.io/v1alpha1",
        "kind": "JobFlowTemplate",
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    }


def flow_step(name: str, template_name: str = "t", **fields: Any) -> dict[str, Any]:
    return {"name": name, "type": "Flow", "flow": {"templateRef": {"name": template_name}}, **fields}


def owned_by(flow: JobFlow, owner: JobFlow) -> JobFlow:
    ref = OwnerReference.model_validate(
        {
            "apiVersion": "workflow.kube-zen.io/v1alpha1",
            "kind": "JobFlow",
            "name": owner.metadata.name,
            "uid": owner.metadata.uid,
            "controller": True,
        }
    )
    return flow.model_copy(update={"metadata": flow.metadata.model_copy(update={"owner_references": (ref,)})})


@dataclass
class Rig:
    api: FakeApiServer
    controller: Controller
    children: ChildFlows
    clock: FakeClock

    async def spin(self, *keys: str, rounds: int = 4, lag: bool = False) -> None:
        """Reconcile these flows (all when none is named) in turn, the caches catching up after each
        (`lag`: only after each round, as informers lag behind a burst of writes)."""
        for _ in range(rounds):
            for key in keys or sorted(self.api.flows):
                if key in self.api.flows:
                    await self.controller.reconcile(key)
                if not lag:
                    self.api.sync()
            self.api.sync()

    def steps(self, key: str) -> dict[str, tuple[str, str | None]]:
        return {s.name: (s.phase, s.message) for s in self.api.flows[key].status.steps}


def rig(slots: SlotLimits | None = None) -> Rig:
    clock = FakeClock()
    api = FakeApiServer(clock)
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    expectations = Expectations(clock)
    children = ChildFlows(api, api.children_of, expectations, queue.add, api.get)
    controller = Controller(
        flows=api,
        jobs=children,
        api=api,
        queue=queue,
        expectations=expectations,
        events=api,
        clock=clock,
        metrics=Metrics(),
        slots=slots,
    )

    def on_flow(flow: JobFlow) -> None:
        controller.on_flow_event(flow)
        children.on_flow_event(flow)

    def on_flow_deleted(flow: JobFlow) -> None:
        controller.on_flow_deleted(flow)
        children.on_flow_event(flow, deleted=True)

    api.on_flow = on_flow
    api.on_flow_deleted = on_flow_deleted
    api.on_job = controller.on_job_event
    api.on_job_deleted = lambda job: controller.on_job_event(job, deleted=True)
    return Rig(api, controller, children, clock)


def replace_uid(flow: JobFlow, uid: str) -> JobFlow:
    return flow.model_copy(update={"metadata": flow.metadata.model_copy(update={"uid": uid})})


def finish_jobs_of(r: Rig, flow_name: str) -> None:
    for ns, name in list(r.api.jobs):
        if name.startswith(flow_name) and not r.api.jobs[(ns, name)].finished:
            r.api.finish_job(ns, name)
    r.api.sync()


async def test_a_forged_child_of_an_ended_flow_gets_no_other_flows_job_deleted() -> None:
    r = rig()
    p = r.api.create_flow(make_flow([job_step("a")], name="p"))
    r.api.sync()
    await r.spin(p.key)
    finish_jobs_of(r, "p-")
    await r.spin(p.key)
    assert r.api.flows[p.key].status.phase == "Succeeded"
    victim = r.api.create_flow(make_flow([job_step("build")], name="victim"))
    r.api.sync()
    await r.spin(victim.key, rounds=1)
    [victim_job] = [n for n in r.api.job_creates if n.startswith("victim-")]
    # Another tenant's flow named as the victim's Job, claiming the ended flow p as its parent.
    forged = r.api.create_flow(make_flow([job_step("x")], name=victim_job, suspend=True))
    r.api.update_flow(forged.key, lambda f: owned_by(f, r.api.flows[p.key]))
    r.api.sync()
    await r.spin(p.key)
    assert (NS, victim_job) in r.api.jobs  # p took the forged flow for no stray of its own
    assert forged.key in r.api.flows  # nor for a child of its own to delete
    assert r.children.jobs_for(p.metadata.uid) == r.api.jobs_for(p.metadata.uid)
    await r.spin(victim.key, rounds=1)
    assert r.steps(victim.key)["build"][0] == "Running"


async def test_a_childs_own_ttl_does_not_delete_it_before_its_parent_reads_it() -> None:
    r = rig()
    r.api.templates[(NS, "t")] = template("t", [job_step("inner")], ttlSecondsAfterFinished=0)
    p = r.api.create_flow(make_flow([flow_step("sub"), job_step("next", "sub")], name="p"))
    r.api.sync()
    child_key = f"{NS}/{job_name('p', 'sub', 0)}"
    await r.spin(p.key, child_key, rounds=3)
    finish_jobs_of(r, job_name("p", "sub", 0))
    await r.spin(child_key, rounds=3)  # the child's own reconciles come first
    assert r.api.flows[child_key].status.phase == "Succeeded"
    await r.spin(p.key, rounds=3)
    assert r.steps(p.key)["sub"][0] == "Succeeded"


async def test_a_squatting_jobflow_fails_only_the_step_naming_it() -> None:
    r = rig()
    r.api.templates[(NS, "t")] = template("t", [job_step("inner")])
    squatter = job_name("p", "sub", 0)
    r.api.create_flow(make_flow([job_step("z")], name=squatter))
    r.api.sync()
    p = r.api.create_flow(make_flow([flow_step("sub"), job_step("other")], name="p"))
    r.api.sync()
    await r.spin(p.key)
    steps = r.steps(p.key)
    assert steps["sub"][0] == "Failed"
    assert f"JobFlow {squatter} already exists and is not this flow's child" in (steps["sub"][1] or "")
    assert steps["other"][0] == "Running"  # the flow goes on
    assert f"{NS}/{squatter}" in r.api.flows  # and the squatter is left alone


async def test_a_child_flow_is_created_runs_and_its_parent_follows_it() -> None:
    r = rig()
    r.api.templates[(NS, "t")] = template("t", [job_step("inner")])
    p = r.api.create_flow(make_flow([flow_step("sub")], name="p"))
    r.api.sync()
    child_key = f"{NS}/{job_name('p', 'sub', 0)}"
    await r.spin(p.key, child_key)
    assert r.children.is_child(r.api.flows[child_key])
    assert r.steps(p.key)["sub"][0] == "Running"
    finish_jobs_of(r, job_name("p", "sub", 0))
    await r.spin(child_key, p.key)
    assert r.api.flows[p.key].status.phase == "Succeeded"


async def test_a_stopped_parent_deletes_its_child_flow_by_its_uid() -> None:
    r = rig()
    r.api.templates[(NS, "t")] = template("t", [job_step("inner")])
    p = r.api.create_flow(make_flow([flow_step("sub", timeoutSeconds=5)], name="p"))
    r.api.sync()
    child_key = f"{NS}/{job_name('p', 'sub', 0)}"
    await r.spin(p.key, child_key)
    r.api.update_flow(
        p.key,
        lambda f: f.model_copy(
            update={
                "metadata": f.metadata.model_copy(
                    update={"annotations": {"workflow.kube-zen.io/stop": "true"}}
                )
            }
        ),
    )
    r.api.sync()
    # Between the cache and the delete, the name came to hold another flow: the delete's UID
    # precondition leaves it alone (a delete by name would remove it).
    r.api.flows[child_key] = replace_uid(r.api.flows[child_key], "another-uid")
    await r.spin(p.key, rounds=1, lag=True)
    assert r.api.flows[child_key].metadata.uid == "another-uid"
    r.api.sync()
    await r.spin(p.key)
    assert child_key not in r.api.flows
    assert r.api.flows[p.key].status.phase == "Failed"


async def test_a_parent_suspends_and_resumes_its_child() -> None:
    r = rig()
    r.api.templates[(NS, "t")] = template("t", [job_step("inner")])
    p = r.api.create_flow(make_flow([flow_step("sub")], name="p"))
    r.api.sync()
    child_key = f"{NS}/{job_name('p', 'sub', 0)}"
    await r.spin(p.key, child_key)

    def suspend(value: bool) -> None:
        r.api.update_flow(
            p.key, lambda f: f.model_copy(update={"spec": f.spec.model_copy(update={"suspend": value})})
        )
        r.api.sync()

    # The patch names the child's UID: a flow made since under its name is not suspended.
    real = r.api.flows[child_key]
    suspend(True)
    r.api.flows[child_key] = replace_uid(real, "another-uid")
    await r.spin(p.key, rounds=1, lag=True)
    assert r.api.suspends == [(real.metadata.name, True, real.metadata.uid)]
    assert not r.api.flows[child_key].spec.suspend
    r.api.flows[child_key] = real
    r.api.sync()
    await r.spin(p.key, child_key)
    assert r.api.flows[child_key].spec.suspend
    suspend(False)
    await r.spin(p.key, child_key)
    assert not r.api.flows[child_key].spec.suspend


def graced_parent(r: Rig) -> tuple[Any, str, str]:
    """Parent `p` (deadline 100 s, grace 30 s; a finally `cleanup`) whose Flow step `sub` runs template
    `t` (`inner`, then a finally `tidy`): the parent, its child's name and key."""
    r.api.templates[(NS, "t")] = template("t", [job_step("inner"), job_step("tidy", **{"finally": True})])
    policy = {"activeDeadlineSeconds": 100, "finallyGraceSeconds": 30}
    p = r.api.create_flow(
        make_flow(
            [flow_step("sub"), job_step("cleanup", **{"finally": True})], name="p", execution_policy=policy
        )
    )
    r.api.sync()
    child_name = job_name("p", "sub", 0)
    return p, child_name, f"{NS}/{child_name}"


async def test_at_its_parents_finally_grace_a_child_is_stopped_to_run_its_own_finally_steps() -> None:
    # Not deleted: the parent's grace point patches the child's stop annotation to RunFinally (under its
    # UID); the child ends its own steps and runs its finally one, then the parent's step ends for the
    # grace and the parent's finally step runs; the parent ends DeadlineExceeded.
    r = rig()
    p, child_name, child_key = graced_parent(r)
    await r.spin(p.key, child_key)
    assert r.steps(child_key)["inner"][0] == "Running"
    await r.clock.advance(70)
    await r.spin(p.key, child_key)
    uid = r.api.flows[child_key].metadata.uid
    assert r.api.stops == [(child_name, uid, "parent flow p")]
    assert r.api.flows[child_key].metadata.annotations["workflow.kube-zen.io/stop"] == "RunFinally"
    assert r.steps(child_key)["inner"][0] == "Failed"
    assert r.steps(child_key)["tidy"][0] == "Running"
    assert r.steps(p.key)["sub"][0] == "Running"
    finish_jobs_of(r, child_name)
    await r.spin(p.key, child_key)
    assert r.api.flows[child_key].status.phase == "Failed"
    assert r.steps(child_key)["tidy"][0] == "Succeeded"
    sub, said = r.steps(p.key)["sub"]
    assert sub == "Failed"
    assert (said or "").startswith("flow deadline: the last 30s of activeDeadlineSeconds (100s)")
    assert r.steps(p.key)["cleanup"][0] == "Running"
    finish_jobs_of(r, "p-cleanup")
    await r.spin(p.key)
    failed = next(c for c in r.api.flows[p.key].status.conditions if c.type == "Failed")
    assert (r.api.flows[p.key].status.phase, failed.reason) == ("Failed", "DeadlineExceeded")
    assert child_key in r.api.flows  # never deleted: it ran its cleanup
    assert len(r.api.stops) == 1


async def test_a_parents_graceful_stop_stops_its_child_to_run_its_own_finally_steps() -> None:
    # `zen-flow stop --run-finally p` before the grace point: the child is not deleted but patched
    # RunFinally, its stopped-by naming the parent and its stopper; the parent's step runs on until the
    # child has tidied up, then fails for the stop; the parent's cleanup runs, and it ends Stopped.
    r = rig()
    p, child_name, child_key = graced_parent(r)
    await r.spin(p.key, child_key)
    stop = {"workflow.kube-zen.io/stop": "RunFinally", "workflow.kube-zen.io/stopped-by": "alice"}
    r.api.update_flow(
        p.key,
        lambda f: f.model_copy(
            update={
                "metadata": f.metadata.model_copy(update={"annotations": {**f.metadata.annotations, **stop}})
            }
        ),
    )
    r.api.sync()
    await r.spin(p.key, child_key)
    uid = r.api.flows[child_key].metadata.uid
    assert r.api.stops == [(child_name, uid, "parent flow p (stopped by alice)")]
    assert r.steps(child_key)["tidy"][0] == "Running"
    assert r.steps(p.key)["sub"][0] == "Running"
    finish_jobs_of(r, child_name)
    await r.spin(p.key, child_key)
    sub, said = r.steps(p.key)["sub"]
    assert sub == "Failed"
    assert (said or "").startswith(f"stopped by alice; child flow {child_name} was stopped by parent flow p")
    assert r.steps(p.key)["cleanup"][0] == "Running"
    finish_jobs_of(r, "p-cleanup")
    await r.spin(p.key)
    failed = next(c for c in r.api.flows[p.key].status.conditions if c.type == "Failed")
    assert (r.api.flows[p.key].status.phase, failed.reason, failed.message) == (
        "Failed",
        "Stopped",
        "stopped by alice",
    )
    assert child_key in r.api.flows  # never deleted: it ran its cleanup


async def test_the_graces_stop_never_overwrites_a_stop_a_user_set_since_the_parent_read_the_child() -> None:
    # The user stops the child now (`true`) after the parent's cache read it: the parent's RunFinally
    # patch carries the resourceVersion it saw and is refused (409), the user's stop stays as written,
    # and the next plan, seeing it, sends none.
    r = rig()
    p, _, child_key = graced_parent(r)
    await r.spin(p.key, child_key)
    await r.clock.advance(70)
    user_stop = {"workflow.kube-zen.io/stop": "true", "workflow.kube-zen.io/stopped-by": "alice"}
    r.api.update_flow(
        child_key,
        lambda f: f.model_copy(
            update={
                "metadata": f.metadata.model_copy(
                    update={"annotations": {**f.metadata.annotations, **user_stop}}
                )
            }
        ),
    )
    await r.controller.reconcile(p.key)  # its cache still shows the child without a stop
    assert len(r.api.stops) == 1
    assert "409 Conflict" in r.api.refused
    annotations = r.api.flows[child_key].metadata.annotations
    assert {k: annotations.get(k) for k in user_stop} == user_stop
    await r.spin(p.key, child_key)
    assert len(r.api.stops) == 1  # the next plans see the user's stop: no patch
    annotations = r.api.flows[child_key].metadata.annotations
    assert {k: annotations.get(k) for k in user_stop} == user_stop


async def test_templates_that_run_each_other_stop_at_the_family_cap_and_cost_only_their_namespace() -> None:
    """a -> b -> a, five Flow steps each, under limits of one running flow: the family grows to the cap
    (its members' creates counted before the cache shows them), the namespace's other flow waits behind
    it, and another namespace's flow runs."""
    r = rig(SlotLimits(total=2, per_namespace=1))

    def fan(name: str, other: str) -> dict[str, Any]:
        return template(name, [job_step("work"), *(flow_step(f"c{i}", other) for i in range(5))])

    r.api.templates[(NS, "a")] = fan("a", "b")
    r.api.templates[(NS, "b")] = fan("b", "a")
    top = r.api.create_flow(make_flow([flow_step("root", "a")], name="top"))
    r.api.sync()
    mine = r.api.create_flow(make_flow([job_step("x")], name="zz-mine"))
    theirs = r.api.create_flow(make_flow([job_step("x")], name="zz-theirs", namespace="team-b"))
    r.api.sync()
    await r.spin(rounds=12, lag=True)
    children = [f for f in r.api.flows.values() if f.metadata.controller_ref() is not None]
    assert len(children) == planner.MAX_DESCENDANTS
    capped = [
        s.message
        for f in children
        for s in f.status.steps
        if s.phase == "Failed"
        and s.message
        and "child flows run at once under one top-level flow" in s.message
    ]
    assert len(capped) > 0
    assert r.api.flows[mine.key].status.phase == "Pending"
    assert "waiting for a slot" in (r.api.flows[mine.key].status.message or "")
    assert r.api.flows[theirs.key].status.phase == "Running"
    assert r.api.flows[top.key].status.phase == "Running"


def set_suspend(r: Rig, key: str, value: bool) -> None:
    r.api.update_flow(
        key, lambda f: f.model_copy(update={"spec": f.spec.model_copy(update={"suspend": value})})
    )
    r.api.sync()


async def test_a_child_a_user_suspended_stays_suspended_and_its_step_says_so() -> None:
    r = rig()
    r.api.templates[(NS, "t")] = template("t", [job_step("inner")])
    p = r.api.create_flow(make_flow([flow_step("sub")], name="p"))
    r.api.sync()
    child_key = f"{NS}/{job_name('p', 'sub', 0)}"
    await r.spin(p.key, child_key)
    set_suspend(r, child_key, True)  # by hand, on the child
    await r.spin(p.key, child_key)
    assert r.api.flows[child_key].spec.suspend
    message = r.steps(p.key)["sub"][1] or ""
    assert message.startswith("child flow suspended")
    assert "Kueue" not in message
    # The parent's own suspend and resume leave the user's suspension alone.
    set_suspend(r, p.key, True)
    await r.spin(p.key, child_key)
    set_suspend(r, p.key, False)
    await r.spin(p.key, child_key)
    assert r.api.flows[child_key].spec.suspend


async def test_a_child_a_user_stopped_fails_its_step_without_a_retry() -> None:
    r = rig()
    r.api.templates[(NS, "t")] = template("t", [job_step("inner")])
    p = r.api.create_flow(make_flow([flow_step("sub", retryPolicy={"limit": 2})], name="p"))
    r.api.sync()
    child_key = f"{NS}/{job_name('p', 'sub', 0)}"
    await r.spin(p.key, child_key)
    stop = {"workflow.kube-zen.io/stop": "true", "workflow.kube-zen.io/stopped-by": "alice"}
    r.api.update_flow(
        child_key,
        lambda f: f.model_copy(update={"metadata": f.metadata.model_copy(update={"annotations": stop})}),
    )
    r.api.sync()
    await r.spin(child_key, p.key)
    phase, message = r.steps(p.key)["sub"]
    assert phase == "Failed"
    assert "was stopped by alice" in (message or "")
    assert f"{NS}/{job_name('p', 'sub', 1)}" not in r.api.flows  # no second attempt


async def test_a_child_whose_create_answer_was_lost_is_adopted_not_made_twice() -> None:
    r = rig()
    r.api.templates[(NS, "t")] = template("t", [job_step("inner")])
    p = r.api.create_flow(make_flow([flow_step("sub")], name="p"))
    r.api.sync()
    [create] = planner.plan(p, [], r.api.flows[p.key].metadata.creation_timestamp).actions
    assert isinstance(create, planner.CreateJob)
    await r.api.create_child_flow(NS, create.body)  # made, but the cache has not shown it yet
    await r.controller.reconcile(p.key)
    assert "409 AlreadyExists" in r.api.refused
    r.api.sync()
    child_key = f"{NS}/{job_name('p', 'sub', 0)}"
    assert r.steps(p.key)["sub"][0] == "Running"
    assert [k for k in r.api.flows if k != p.key] == [child_key]


async def test_a_child_the_apiserver_refuses_fails_only_its_step_with_the_apiservers_words() -> None:
    r = rig()

    async def refuse(namespace: str, body: dict[str, Any]) -> str:
        raise from_status(
            422,
            {
                "kind": "Status",
                "code": 422,
                "reason": "Invalid",
                "message": 'spec.templateRef.name: Not found: "t"',
            },
        )

    r.api.create_child_flow = refuse  # type: ignore[method-assign]
    p = r.api.create_flow(make_flow([flow_step("sub"), job_step("other")], name="p"))
    r.api.sync()
    await r.spin(p.key)
    phase, message = r.steps(p.key)["sub"]
    assert phase == "Failed"
    assert "the apiserver refused child flow" in (message or "")
    assert 'spec.templateRef.name: Not found: "t"' in (message or "")
    assert r.steps(p.key)["other"][0] == "Running"


async def test_a_delete_removes_only_the_object_the_plan_saw() -> None:
    """Between the plan and its delete, the name came to hold another Job: the delete's UID precondition
    leaves that one alone."""
    r = rig()
    p = r.api.create_flow(make_flow([job_step("a")], name="p"))
    r.api.sync()
    await r.spin(p.key, rounds=1)
    [name] = r.api.job_creates
    seen = r.api.jobs[(NS, name)]
    executor = PlanExecutor(
        api=r.api,
        expectations=Expectations(FakeClock()),
        metrics=Metrics(),
        clock=FakeClock(),
        waited=lambda key: None,
        owned=lambda uid: [seen],
    )
    r.api.jobs[(NS, name)] = replace(seen, metadata=replace(seen.metadata, uid="another-uid"))
    await executor.execute(r.api.flows[p.key], [planner.DeleteJob(name, "a", "test")])
    assert r.api.jobs[(NS, name)].metadata.uid == "another-uid"
    await executor.execute(
        r.api.flows[p.key], [planner.DeleteJob(name, "a", "test")], made={name: "another-uid"}
    )
    assert (NS, name) not in r.api.jobs


async def test_a_grace_whose_write_fails_and_is_then_taken_back_stops_no_child() -> None:
    # The grace point's stop of the child waits for the write that records the grace: that write
    # failing, nothing is stopped, and once the grace is edited away the child runs on untouched.
    r = rig()
    p, _, child_key = graced_parent(r)
    await r.spin(p.key, child_key)
    await r.clock.advance(70)
    r.api.status_errors.append(from_status(503, {"message": "etcdserver: leader changed"}))
    with contextlib.suppress(ApiError):
        await r.controller.reconcile(p.key)
    assert r.api.stops == []

    def ungraced(f: JobFlow) -> JobFlow:
        policy = f.spec.execution_policy
        assert policy is not None
        ungraced = policy.model_copy(update={"finally_grace_seconds": None})
        return f.model_copy(update={"spec": f.spec.model_copy(update={"execution_policy": ungraced})})

    r.api.update_flow(p.key, ungraced)
    r.api.sync()
    await r.spin(p.key, child_key)
    assert r.api.stops == []
    assert "workflow.kube-zen.io/stop" not in r.api.flows[child_key].metadata.annotations
    assert r.steps(child_key)["inner"][0] == "Running"
