"""Controller: refusals that cannot change (413, 422, etcd's "too large") end the flow Failed instead of
looping; an unobserved expectation is looked at again; a failing flow is logged once, not per retry;
a `when` that runs too long fails its step without stalling anything."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from zen_flow.api import Job, JobFlow
from zen_flow.api.constants import (
    ANNOTATION_APPROVED_BY_PREFIX,
    ANNOTATION_RETRY,
    API_VERSION,
    APPROVE_PREFIX,
)
from zen_flow.api.job import JOB
from zen_flow.api.meta import ObjectMeta
from zen_flow.controller.executor import JobNameTaken
from zen_flow.controller.expression_sandbox import ExpressionSandbox
from zen_flow.controller.metrics import Metrics
from zen_flow.controller.reconciler import Controller
from zen_flow.core import jsonpatch
from zen_flow.core.expressions import BudgetExceeded, compile_when
from zen_flow.core.naming import job_name
from zen_flow.kube.errors import AlreadyExists, ApiError, from_status
from zen_flow.machinery.expectations import EXPECTATIONS_TIMEOUT, Expectations
from zen_flow.machinery.workqueue import Priority, WorkQueue
from zen_flow_dev.testing.clock import FakeClock
from zen_flow_dev.testing.flows import job_step, make_flow, manual_step
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)

# Ten elements, nested eight deep: 10^8 iterations, about half a minute of CPU.
TEN = "[0,1,2,3,4,5,6,7,8,9]"
PATHOLOGICAL = "".join(f"{TEN}.all(v{i}, " for i in range(8)) + "true" + ")" * 8


class Fake:
    """One flow in the caches, a cluster API whose answers the test scripts, an event sink."""

    def __init__(self, flow: JobFlow, jobs: Sequence[Job] = ()) -> None:
        self.jobs = tuple(jobs)
        self.flow = flow.model_copy(
            update={"metadata": flow.metadata.model_copy(update={"resource_version": "1"})}
        )
        self.patches: list[dict[str, Any]] = []
        self.ops: list[list[dict[str, Any]]] = []  # each write as sent
        self.patch_errors: list[ApiError] = []
        self.create_errors: dict[str, ApiError] = {}
        self.delete_errors: list[ApiError] = []
        self.existing: dict[str, Job] = {}  # what a GET of a Job finds (after a create's 409)
        self.created: list[str] = []
        self.deleted: list[str] = []
        self.events: list[tuple[str, str, str]] = []

    def get(self, key: str) -> JobFlow | None:
        return self.flow if key == self.flow.key else None

    def parse_error(self, key: str) -> str | None:
        return None

    def concurrency_group(self, group: str) -> Sequence[JobFlow]:
        return ()

    def expect_status(self, flow: JobFlow, resource_version: str, ops: list[dict[str, Any]]) -> None:
        pass  # this cache takes every version from the fake apiserver

    def deleted_stray(self, key: str) -> None:
        pass

    def jobs_for(self, owner_uid: str) -> Sequence[Job]:
        return self.jobs

    async def termination_messages(
        self, namespace: str, job: str, *, job_uid: str, succeeded: bool
    ) -> dict[str, str] | None:
        return None  # the pod is gone

    async def create_job(self, namespace: str, body: dict[str, Any]) -> Job:
        step = body["metadata"]["labels"]["workflow.kube-zen.io/step"]
        if step in self.create_errors:
            raise self.create_errors[step]
        self.created.append(step)
        return JOB.validate_python({"metadata": {**body["metadata"], "uid": f"uid-{step}"}})

    async def get_job(self, namespace: str, name: str) -> Job:
        if name not in self.existing:
            raise from_status(404, {"reason": "NotFound", "message": name})
        return self.existing[name]

    async def delete_job(self, namespace: str, name: str, uid: str = "") -> None:
        if self.delete_errors:
            raise self.delete_errors.pop(0)
        self.deleted.append(name)

    async def patch_flow_status(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> str:
        self.ops.append(ops)
        # What the write touched, as {"status": {member: its new value}} (a whole list for an entry).
        document = {"metadata": {"resourceVersion": "1"}, "status": self.flow.status.to_wire()}
        written = jsonpatch.apply(document, ops)["status"]
        touched = {op["path"].split("/")[2] for op in ops if op["path"].startswith("/status/")}
        whole = any(op["path"] == "/status" for op in ops)
        self.patches.append(
            {"status": written if whole else {k: written[k] for k in touched if k in written}}
        )
        if self.patch_errors:
            raise self.patch_errors.pop(0)
        return str(len(self.patches) + 1)

    async def delete_flow(self, namespace: str, name: str, uid: str) -> None:
        pass

    async def create_resource(self, namespace: str, kind: str, body: dict[str, Any]) -> ObjectMeta:
        raise AssertionError("no resourceTemplates here")

    async def get_resource(self, namespace: str, kind: str, name: str) -> ObjectMeta:
        raise AssertionError("no resourceTemplates here")

    def emit(self, flow: JobFlow, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))


def controller(
    fake: Fake,
    clock: FakeClock,
    *,
    queue: WorkQueue[str] | None = None,
    expectations: Expectations | None = None,
    metrics: Metrics | None = None,
    **kwargs: Any,
) -> Controller:
    return Controller(
        flows=fake,
        jobs=fake,
        api=fake,
        queue=queue if queue is not None else WorkQueue(clock=clock),
        expectations=expectations if expectations is not None else Expectations(clock),
        events=fake,
        clock=clock,
        metrics=metrics if metrics is not None else Metrics(),
        **kwargs,
    )


def too_large(status: int) -> ApiError:
    message = (
        "etcdserver: request is too large" if status == 500 else "Request entity too large: limit is 3145728"
    )
    return from_status(status, {"kind": "Status", "code": status, "message": message})


@pytest.mark.parametrize("status", [413, 500])
async def test_a_status_too_large_for_etcd_fails_the_flow_with_a_minimal_write(status: int) -> None:
    fake, clock = Fake(make_flow([job_step("a"), job_step("b", "a")])), FakeClock()
    fake.patch_errors = [too_large(status)]
    requeue = await controller(fake, clock).reconcile(fake.flow.key)
    assert requeue is None  # not retried: the same write would be refused again
    first, minimal = fake.patches
    assert first["status"]["steps"]
    assert minimal["status"].get("steps", []) == []  # only phase, conditions and message change
    assert minimal["status"]["phase"] == "Failed"
    failed = next(c for c in minimal["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "StatusRejected"
    assert "too large to store" in failed["message"]
    assert ("Warning", "StatusRejected") in {(t, r) for t, r, _ in fake.events}


async def test_a_refused_status_stops_the_jobs_its_plan_created() -> None:
    # The plan's Jobs were created before its status write was refused: the flow ends Failed, and they
    # must not run on unrecorded.
    fake, clock = Fake(make_flow([job_step("a"), job_step("b")])), FakeClock()
    fake.patch_errors = [too_large(413)]
    assert await controller(fake, clock).reconcile(fake.flow.key) is None
    assert fake.patches[-1]["status"]["phase"] == "Failed"
    assert sorted(fake.created) == ["a", "b"]  # steps
    assert sorted(fake.deleted) == [job_name("flow", "a", 0), job_name("flow", "b", 0)]


async def test_a_patch_that_does_not_apply_is_sent_again_as_the_whole_status() -> None:
    # Someone edited the status by hand: the entry the cache shows is not there any more.
    names = [f"s{i}" for i in range(8)]
    sim = Simulator(make_flow([job_step(n, *names[:i][-1:]) for i, n in enumerate(names)]), T0)
    sim.reconcile()
    sim.complete(sim.running()[0])
    fake, clock = Fake(sim.flow, jobs=list(sim.jobs.values())), FakeClock()
    missing = "replace operation does not apply: doc is missing path: /status/steps/1"
    fake.patch_errors = [from_status(422, {"reason": "Invalid", "message": missing})]
    await controller(fake, clock).reconcile(fake.flow.key)
    entries, whole = fake.ops
    assert any(op["path"].startswith("/status/steps/") for op in entries)
    assert [op["path"] for op in whole] == ["/metadata/resourceVersion", "/status"]
    assert whole[0] == entries[0]  # still conditional on the same version
    assert [s["phase"] for s in whole[1]["value"]["steps"]] == ["Succeeded", "Running"] + ["Pending"] * 6
    assert "StatusRejected" not in {r for _, r, _ in fake.events}  # the flow goes on


async def test_a_refused_failure_write_gives_up_quietly_instead_of_looping() -> None:
    fake, clock = Fake(make_flow([job_step("a")])), FakeClock()
    fake.patch_errors = [too_large(413), too_large(413)]
    assert await controller(fake, clock).reconcile(fake.flow.key) is None
    assert len(fake.patches) == 2


async def test_a_transient_status_error_is_retried_not_failed() -> None:
    fake, clock = Fake(make_flow([job_step("a")])), FakeClock()
    fake.patch_errors = [from_status(500, {"message": "etcdserver: leader changed"})]
    with pytest.raises(ApiError, match="leader changed"):
        await controller(fake, clock).reconcile(fake.flow.key)
    assert len(fake.patches) == 1


async def test_a_job_the_apiserver_refuses_fails_the_flow_naming_the_step() -> None:
    fake, clock = Fake(make_flow([job_step("good"), job_step("bad")])), FakeClock()
    message = 'Job.batch "x" is invalid: spec.template.metadata.labels: Invalid value: "$(x)"'
    fake.create_errors["bad"] = from_status(422, {"reason": "Invalid", "message": message})
    assert await controller(fake, clock).reconcile(fake.flow.key) is not None  # the TTL wake-up
    (patch,) = fake.patches
    assert patch["status"]["phase"] == "Failed"
    failed = next(c for c in patch["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "JobRejected"
    assert "step bad: 422" in failed["message"]
    assert fake.created == ["good"]
    # The Job that did start is stopped with the flow, and its step says so (it once read Skipped "not
    # started" while its Job ran on).
    steps = {s["name"]: s for s in patch["status"]["steps"]}
    assert steps["good"]["phase"] == "Failed"
    assert steps["good"]["jobRef"]["uid"] == "uid-good"
    assert steps["bad"]["phase"] == "Failed"
    assert fake.deleted == [steps["good"]["jobRef"]["name"]]  # not bad's, which never existed


async def test_a_refused_job_stops_the_steps_already_running() -> None:
    sim = Simulator(make_flow([job_step("first"), job_step("bad", "first"), job_step("long")]), T0)
    sim.reconcile()
    assert sorted(sim.steps.values()) == ["first", "long"]
    sim.complete(next(name for name, step in sim.steps.items() if step == "first"))
    fake, clock = Fake(sim.flow, jobs=list(sim.jobs.values())), FakeClock(wall_start=sim.now)
    fake.create_errors["bad"] = from_status(422, {"reason": "Invalid", "message": "no"})
    await controller(fake, clock).reconcile(fake.flow.key)
    steps = {s["name"]: s for s in fake.patches[-1]["status"]["steps"]}
    assert (steps["first"]["phase"], steps["bad"]["phase"], steps["long"]["phase"]) == (
        "Succeeded",
        "Failed",
        "Failed",
    )
    assert fake.deleted == [steps["long"]["jobRef"]["name"]]


async def test_a_refused_job_in_a_rerun_stops_the_rerun_and_says_why() -> None:
    # The cached flow is Failed when a rerun plans: failing "from the cached flow" once returned the
    # terminal plan, left the rerun's other Job running untracked and wrote nothing.
    sim = Simulator(make_flow([job_step("good"), job_step("bad")]), T0)
    sim.reconcile()
    for name in sim.running():
        sim.fail(name)
    sim.reconcile()
    assert sim.phase == "Failed"
    sim.annotate(ANNOTATION_RETRY, "r1")
    fake, clock = Fake(sim.flow, jobs=list(sim.jobs.values())), FakeClock(wall_start=sim.now)
    fake.create_errors["bad"] = from_status(422, {"reason": "Invalid", "message": "no"})
    await controller(fake, clock).reconcile(fake.flow.key)
    assert fake.created == ["good"]
    status = fake.patches[-1]["status"]
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert (failed["status"], failed["reason"]) == ("True", "JobRejected")  # the phase stays Failed
    good = next(s for s in status["steps"] if s["name"] == "good")
    assert fake.deleted == [good["jobRef"]["name"]]


async def test_an_approval_decided_in_the_plan_whose_job_is_refused_stays_recorded() -> None:
    sim = Simulator(make_flow([manual_step("gate"), job_step("next", "gate")]), T0)
    sim.reconcile()
    sim.annotate(APPROVE_PREFIX + "gate", "true")
    sim.annotate(ANNOTATION_APPROVED_BY_PREFIX + "gate", "alice@example.com")
    fake, clock = Fake(sim.flow, jobs=list(sim.jobs.values())), FakeClock(wall_start=sim.now)
    fake.create_errors["next"] = from_status(422, {"reason": "Invalid", "message": "no"})
    await controller(fake, clock).reconcile(fake.flow.key)
    status = fake.patches[-1]["status"]
    assert status["phase"] == "Failed"
    assert [(a["step"], a["user"]) for a in status["audit"]["approvals"]] == [("gate", "alice@example.com")]


async def test_a_delete_that_failed_is_sent_again_on_the_retry_not_five_minutes_later() -> None:
    sim = Simulator(make_flow([job_step("a", timeoutSeconds=5), job_step("b", "a")]), T0)
    sim.reconcile()
    (job,) = sim.running()
    fake, clock = Fake(sim.flow, jobs=list(sim.jobs.values())), FakeClock(wall_start=sim.now)
    clock.jump(10)  # past step a's timeout: the plan deletes its Job
    fake.delete_errors = [from_status(503, {"message": "apiserver unavailable"})]
    ctrl = controller(fake, clock)
    with pytest.raises(ApiError, match="unavailable"):
        await ctrl.reconcile(fake.flow.key)
    assert fake.deleted == []
    await ctrl.reconcile(fake.flow.key)  # the queue's retry, after its backoff
    assert fake.deleted == [job]


def taken(fake: Fake, step: str, owner: dict[str, Any] | None) -> str:
    """The create of `step`'s Job finds its name taken by a Job of `owner` (an ownerReference)."""
    name = job_name(fake.flow.metadata.name, step, 0)
    fake.create_errors[step] = AlreadyExists(409, "AlreadyExists", f'jobs.batch "{name}" already exists')
    refs = [owner] if owner is not None else []
    meta = {"name": name, "namespace": "default", "uid": f"old-{step}", "ownerReferences": refs}
    fake.existing[name] = JOB.validate_python({"metadata": meta})
    return name


def flow_ref(name: str, uid: str) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "JobFlow", "name": name, "uid": uid, "controller": True}


async def test_a_job_of_a_deleted_flow_of_the_same_name_is_waited_for_not_adopted() -> None:
    # `kubectl delete jf f && kubectl apply -f f.yaml`: the old Job awaits the garbage collector.
    fake, clock = Fake(make_flow([job_step("a")])), FakeClock()
    taken(fake, "a", flow_ref(fake.flow.metadata.name, "the-deleted-flow"))
    expectations, metrics = Expectations(clock), Metrics()
    ctrl = controller(fake, clock, expectations=expectations, metrics=metrics)
    with pytest.raises(JobNameTaken, match="a deleted flow's of the same name"):
        await ctrl.reconcile(fake.flow.key)
    assert fake.patches == []  # no step recorded as Running on a Job that is not the flow's
    assert expectations.satisfied(fake.flow.metadata.uid)  # the retry plans again, now
    assert metrics.registry.get_sample_value("zen_flow_job_creates_total", {"result": "taken"}) == 1
    [(kind, reason, message)] = fake.events  # what `kubectl describe` shows of why the flow waits
    assert (kind, reason) == ("Warning", "JobNameTaken")
    assert "a deleted flow's of the same name awaiting the garbage collector" in message
    del fake.create_errors["a"]  # collected
    await ctrl.reconcile(fake.flow.key)
    assert fake.created == ["a"]
    assert fake.patches[-1]["status"]["steps"][0]["phase"] == "Running"


async def test_a_job_name_held_by_another_owner_fails_the_flow_saying_whose() -> None:
    # Orphaned (`kubectl delete jf --cascade=orphan`) or anyone else's: waiting would never end.
    fake, clock = Fake(make_flow([job_step("a"), job_step("b")])), FakeClock()
    name = taken(fake, "a", None)
    assert await controller(fake, clock).reconcile(fake.flow.key) is not None
    status = fake.patches[-1]["status"]
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "JobRejected"
    assert (
        f"step a: Job {name} already exists and is not this flow's (owned by no controller)"
        in failed["message"]
    )
    assert fake.created == ["b"]
    assert fake.deleted == [next(s for s in status["steps"] if s["name"] == "b")["jobRef"]["name"]]


async def test_a_job_held_by_another_groups_jobflow_of_the_flows_name_fails_the_flow_saying_whose() -> None:
    # Another project's JobFlow kind is no deleted flow of ours: waiting for its Job would never end.
    fake, clock = Fake(make_flow([job_step("a")])), FakeClock()
    owner = {**flow_ref(fake.flow.metadata.name, "theirs"), "apiVersion": "batch.example.com/v1"}
    name = taken(fake, "a", owner)
    await controller(fake, clock).reconcile(fake.flow.key)  # not raised: no JobNameTaken to retry
    status = fake.patches[-1]["status"]
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "JobRejected"
    owned = f"owned by JobFlow {fake.flow.metadata.name} (batch.example.com/v1)"
    assert f"step a: Job {name} already exists and is not this flow's ({owned})" in failed["message"]
    assert fake.created == []


async def test_our_own_job_found_under_its_name_is_adopted() -> None:
    # A create whose answer was lost: the retried POST finds the Job it made.
    fake, clock = Fake(make_flow([job_step("a")])), FakeClock()
    taken(fake, "a", flow_ref(fake.flow.metadata.name, fake.flow.metadata.uid))
    metrics = Metrics()
    await controller(fake, clock, metrics=metrics).reconcile(fake.flow.key)
    (step,) = fake.patches[-1]["status"]["steps"]
    assert (step["phase"], step["jobRef"]["uid"]) == ("Running", "old-a")
    assert metrics.registry.get_sample_value("zen_flow_job_creates_total", {"result": "adopted"}) == 1


async def test_our_own_job_being_deleted_is_waited_for_not_adopted() -> None:
    # A create whose answer was lost, and the Job deleted since (foreground, a finalizer): adopted, it
    # vanished under the step, which failed as "deleted outside zen-flow".
    fake, clock = Fake(make_flow([job_step("a")])), FakeClock()
    name = taken(fake, "a", flow_ref(fake.flow.metadata.name, fake.flow.metadata.uid))
    job = fake.existing[name]
    fake.existing[name] = replace(job, metadata=replace(job.metadata, deletion_timestamp=T0))
    expectations = Expectations(clock)
    ctrl = controller(fake, clock, expectations=expectations)
    with pytest.raises(JobNameTaken, match="is on its way out"):
        await ctrl.reconcile(fake.flow.key)
    assert fake.patches == []  # the step is not recorded as running on it
    assert expectations.satisfied(fake.flow.metadata.uid)
    del fake.create_errors["a"]  # gone: the retry creates the step's Job afresh
    await ctrl.reconcile(fake.flow.key)
    assert fake.created == ["a"]
    (step,) = fake.patches[-1]["status"]["steps"]
    assert step["phase"] == "Running"
    assert step["jobRef"]["uid"] != "old-a"


async def test_our_own_finished_job_being_deleted_is_adopted_with_its_outcome() -> None:
    # The TTL-after-finished controller deletes a Job in the foreground: it lingers marked deleted, and
    # its outcome is final. Waiting for it would run the step a second time.
    fake, clock = Fake(make_flow([job_step("a")])), FakeClock()
    name = taken(fake, "a", flow_ref(fake.flow.metadata.name, fake.flow.metadata.uid))
    owners = [flow_ref(fake.flow.metadata.name, fake.flow.metadata.uid)]
    meta = {"name": name, "uid": "old-a", "ownerReferences": owners, "deletionTimestamp": T0.isoformat()}
    finished = {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}
    fake.existing[name] = JOB.validate_python({"metadata": meta, "status": finished})
    await controller(fake, clock).reconcile(fake.flow.key)
    (step,) = fake.patches[-1]["status"]["steps"]
    assert (step["phase"], step["jobRef"]["uid"]) == ("Running", "old-a")  # its outcome is read next
    assert fake.created == []


@pytest.mark.parametrize(("age", "waits"), [(2, True), (600, True), (None, False)])
async def test_a_running_steps_job_missing_from_the_cache_is_asked_for_before_it_is_called_deleted(
    age: float | None, waits: bool
) -> None:
    # A new leader whose Job watch has not yet brought the Job the old leader created: taking it for
    # deleted failed the step (or ran it again beside it). A Job of the flow's is waited for, however old
    # (test_plan_runner_unseen_jobs.py: for how long, and what then); one the apiserver lacks too was
    # deleted: that fails as before.
    sim = Simulator(make_flow([job_step("a")]), T0)
    sim.reconcile()
    (name,) = sim.running()
    fake, clock = Fake(sim.flow, jobs=[]), FakeClock(wall_start=sim.now + timedelta(seconds=age or 0))
    if age is not None:
        meta = {"name": name, "namespace": "default", "uid": "uid-a", "creationTimestamp": T0.isoformat()}
        meta["ownerReferences"] = [flow_ref(fake.flow.metadata.name, fake.flow.metadata.uid)]
        fake.existing[name] = JOB.validate_python({"metadata": meta})
    requeue = await controller(fake, clock).reconcile(fake.flow.key)
    if waits:
        assert (requeue, fake.patches) == (1.0, [])
    else:
        (step,) = fake.patches[-1]["status"]["steps"]
        assert (step["phase"], step["message"]) == (
            "Failed",
            f"Job {name} not found (deleted outside zen-flow)",
        )


async def test_an_unobserved_expectation_is_looked_at_again_when_it_expires() -> None:
    fake, clock = Fake(make_flow([job_step("a")])), FakeClock()
    expectations = Expectations(clock)
    expectations.expect_creations(fake.flow.metadata.uid, ["never-seen"])
    clock.jump(100)
    requeue = await controller(fake, clock, expectations=expectations).reconcile(fake.flow.key)
    assert requeue == pytest.approx(EXPECTATIONS_TIMEOUT - 100)
    assert fake.patches == []


async def test_the_created_job_line_says_how_long_the_flow_queued_and_the_create_took() -> None:
    fake, clock = Fake(make_flow([job_step("a")])), FakeClock()
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    ctrl = controller(fake, clock, queue=queue)
    create = fake.create_job

    async def slow_create(namespace: str, body: dict[str, Any]) -> Job:
        clock.jump(0.25)  # the apiserver takes a quarter of a second
        return await create(namespace, body)

    fake.create_job = slow_create  # type: ignore[method-assign]
    queue.add(fake.flow.key)
    clock.jump(1.5)  # all workers busy
    key = await queue.get()
    with capture_logs() as logs:
        await ctrl._work(key)
    [line] = [e for e in logs if e["event"] == "created job"]
    assert (line["step"], line["queued_ms"], line["create_ms"]) == ("a", 1500.0, 250.0)


def failed_first_attempt() -> Simulator:
    """Step a's first Job failed at T0; its retry policy waits 1 s."""
    retry = {"limit": 2, "backoff": {"type": "Fixed", "duration": "1s"}}
    sim = Simulator(make_flow([job_step("a", retryPolicy=retry)]), T0)
    sim.reconcile()
    sim.fail(sim.running()[0])
    return sim


async def retries_counted(sim: Simulator, seen_after: float, metrics: Metrics) -> float | None:
    """The controller reconciles the simulator's state `seen_after` seconds on; the retries it counted."""
    fake, clock = Fake(sim.flow, jobs=list(sim.jobs.values())), FakeClock(wall_start=sim.now)
    clock.jump(seen_after)
    await controller(fake, clock, metrics=metrics).reconcile(fake.flow.key)
    return metrics.registry.get_sample_value("zen_flow_step_retries_total", {"namespace": "default"})


async def test_a_retry_is_counted_when_it_starts() -> None:
    sim, metrics = failed_first_attempt(), Metrics()
    assert await retries_counted(sim, 0, metrics) is None  # seen at once: Retrying, nothing started yet
    sim.reconcile()
    assert sim.flow.status.steps[0].phase == "Retrying"
    sim.advance(2)  # the 1 s backoff counts from the second after the plan that saw the failure
    assert await retries_counted(sim, 0, metrics) == 1


async def test_a_failing_flow_is_logged_once_until_its_cause_changes() -> None:
    fake, clock = Fake(make_flow([job_step("a")])), FakeClock()
    ctrl = controller(fake, clock)
    hiccup = from_status(503, {"message": "apiserver unavailable"})
    with capture_logs() as logs:
        for error in (hiccup, hiccup, hiccup, from_status(504, {"message": "timeout"})):
            ctrl._failures.failed(fake.flow.key, error)
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert [w["error"] for w in warnings] == [
        "ApiError: 503: apiserver unavailable",
        "ApiError: 504: timeout",
    ]


def test_the_sandbox_stops_a_pathological_expression_and_keeps_serving() -> None:
    sandbox = ExpressionSandbox(budget=0.5, workers=1)
    try:
        with pytest.raises(BudgetExceeded, match=r"ran past its 0.5s budget"):
            sandbox.evaluate(compile_when(PATHOLOGICAL), {"steps": {}, "flow": {}})
        assert sandbox.budget_exceeded == 1
        # The killed worker is replaced: the next expression is answered.
        cheap = compile_when("steps.exists(s, steps[s].phase == 'Failed')")
        assert sandbox.evaluate(cheap, {"steps": {"a": {"phase": "Failed"}}, "flow": {}}) is True
        assert sandbox.evaluate(cheap, {"steps": {"a": {"phase": "Succeeded"}}, "flow": {}}) is False
    finally:
        sandbox.close()


async def test_a_pathological_when_fails_its_step_while_the_event_loop_keeps_running() -> None:
    # Step a has run and its Job completed; the reconcile that sees it decides b's `when`.
    sim = Simulator(make_flow([job_step("a"), job_step("b", "a", when=PATHOLOGICAL)]), T0)
    sim.reconcile()
    sim.complete(sim.running()[0])
    fake, clock = Fake(sim.flow, jobs=list(sim.jobs.values())), FakeClock()
    sandbox = ExpressionSandbox(budget=0.5, workers=1)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    tick_task = asyncio.create_task(ticker())
    try:
        await controller(fake, clock, evaluate=sandbox.evaluate).reconcile(fake.flow.key)
    finally:
        tick_task.cancel()
        sandbox.close()
    assert ticks > 10  # the loop ran while the worker was busy (it would be ~0 if evaluated inline)
    (patch,) = fake.patches
    b = next(s for s in patch["status"]["steps"] if s["name"] == "b")
    assert b["phase"] == "Failed"
    assert "ran past its 0.5s budget" in b["message"]
    assert patch["status"]["phase"] == "Failed"


async def test_a_plan_that_finds_every_sandbox_thread_busy_frees_its_worker_and_comes_back() -> None:
    # One plan thread, held by a slow `when`: another flow's reconcile does not wait for the thread (that
    # held every reconcile worker once a tenant had enough such flows); it asks to be looked at again.
    sim = Simulator(make_flow([job_step("a"), job_step("b", "a", when="[1].all(x, true)")]), T0)
    sim.reconcile()
    sim.complete(sim.running()[0])
    fake, clock = Fake(sim.flow, jobs=list(sim.jobs.values())), FakeClock()
    started, release = threading.Event(), threading.Event()

    def slow(compiled: Any, variables: dict[str, Any]) -> Any:
        started.set()
        release.wait(10)
        return compiled.program.execute(variables)

    ctrl = controller(fake, clock, evaluate=slow, sandboxed_plans=1)
    first = asyncio.create_task(ctrl.reconcile(fake.flow.key))
    try:
        await asyncio.to_thread(started.wait, 10)
        assert await ctrl.reconcile(fake.flow.key) == 1.0  # at once: no thread for it
        assert fake.patches == []
    finally:
        release.set()
        await first
        ctrl.close()
    assert next(s for s in fake.patches[-1]["status"]["steps"] if s["name"] == "b")["phase"] == "Running"


async def test_a_new_flow_turned_away_for_a_thread_reads_nothing_and_comes_back_behind_running_ones() -> None:
    fake, clock = Fake(make_flow([job_step("a", when="[1].all(x, true)")])), FakeClock()
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    ctrl = controller(fake, clock, queue=queue, evaluate=lambda c, v: True, sandboxed_plans=1)
    ctrl._runner._busy, ctrl._runner._held["other"] = 1, 1  # another tenant's plan holds the thread

    reads: list[str] = []

    async def read(*args: Any, **_: Any) -> Any:
        reads.append(str(args))
        raise AssertionError("a flow without a thread read the API")

    fake.termination_messages = read  # type: ignore[attr-defined]
    fake.get_job = read  # type: ignore[method-assign]
    queue.add(fake.flow.key, Priority.LOW)
    await ctrl._work(await queue.get())
    assert (reads, fake.patches, fake.created) == ([], [], [])
    await clock.advance(1)
    queue.add("default/running")  # a running flow's next step, queued after it came back
    # The new flow came back at low priority, as its events queue it: behind work in progress.
    assert [await queue.get(), await queue.get()] == ["default/running", fake.flow.key]
