"""Controller: refusals that cannot change (413, 422, etcd's "too large") end the flow Failed instead of
looping; a failed delete is sent again on the retry; what a reconcile logs and counts (a created Job's
timings, a retry when it starts, a failing flow once, not per retry)."""

from __future__ import annotations

from typing import Any

import pytest
from scripted_controller_rig import T0, Fake, controller
from structlog.testing import capture_logs

from zen_flow.api import Job, JobFlowStatus
from zen_flow.api.constants import ANNOTATION_APPROVED_BY_PREFIX, ANNOTATION_RETRY, APPROVE_PREFIX
from zen_flow.controller.metrics import Metrics
from zen_flow.core import jsonpatch
from zen_flow.core.naming import job_name
from zen_flow.kube.errors import ApiError, from_status
from zen_flow.machinery.workqueue import WorkQueue
from zen_flow_dev.testing.clock import FakeClock
from zen_flow_dev.testing.flows import job_step, make_flow, manual_step
from zen_flow_dev.testing.simulator import Simulator


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


async def test_a_refused_failure_write_holds_the_flow_instead_of_looping() -> None:
    # The object itself is refused: its Jobs are left as they are, and the flow is looked at again
    # slowly (test_controller_status_held.py), not at once.
    fake, clock = Fake(make_flow([job_step("a")])), FakeClock()
    fake.patch_errors = [too_large(413), too_large(413)]
    assert await controller(fake, clock).reconcile(fake.flow.key) == 10.0
    assert len(fake.patches) == 2
    assert fake.created == ["a"]
    assert fake.deleted == []


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


async def test_an_approval_stays_recorded_when_the_next_steps_job_is_refused() -> None:
    sim = Simulator(make_flow([manual_step("gate"), job_step("next", "gate")]), T0)
    sim.reconcile()
    sim.annotate(APPROVE_PREFIX + "gate", "true")
    sim.annotate(ANNOTATION_APPROVED_BY_PREFIX + "gate", "alice@example.com")
    sim.reconcile()  # the approval is written first: next starts in the reconcile after it
    fake, clock = Fake(sim.flow, jobs=list(sim.jobs.values())), FakeClock(wall_start=sim.now)
    fake.create_errors["next"] = from_status(422, {"reason": "Invalid", "message": "no"})
    await controller(fake, clock).reconcile(fake.flow.key)
    status = fake.patches[-1]["status"]
    assert status["phase"] == "Failed"
    audit = fake.flow.status.audit
    assert audit is not None
    assert [(a.step, a.user) for a in audit.approvals] == [("gate", "alice@example.com")]
    assert "audit" not in status  # the write of the refusal leaves the recorded approval as it is


async def test_a_delete_that_failed_is_sent_again_on_the_retry_not_five_minutes_later() -> None:
    # b runs on beside a: the flow has not ended, and nothing but a's timeout deletes a's Job.
    sim = Simulator(make_flow([job_step("a", timeoutSeconds=5), job_step("b")]), T0)
    sim.reconcile()
    job = job_name("flow", "a", 0)
    assert job in sim.running()
    fake, clock = Fake(sim.flow, jobs=list(sim.jobs.values())), FakeClock(wall_start=sim.now)
    clock.jump(10)  # past step a's timeout: the plan deletes its Job
    fake.delete_errors = [from_status(503, {"message": "apiserver unavailable"})]
    ctrl = controller(fake, clock)
    with pytest.raises(ApiError, match="unavailable"):
        await ctrl.reconcile(fake.flow.key)
    assert fake.deleted == []
    # The status recording the timeout was written all the same; its watch event brings it to the cache.
    document = {"metadata": {"resourceVersion": "1"}, "status": fake.flow.status.to_wire()}
    stored = JobFlowStatus.model_validate(jsonpatch.apply(document, fake.ops[-1])["status"])
    assert stored.step("a") is not None
    assert "timed out after 5s" in (stored.step("a").message or "")
    meta = fake.flow.metadata.model_copy(update={"resource_version": str(len(fake.patches) + 1)})
    fake.flow = fake.flow.model_copy(update={"metadata": meta, "status": stored})
    ctrl.on_flow_event(fake.flow)
    await ctrl.reconcile(fake.flow.key)  # the queue's retry, after its backoff: the Job still runs
    assert fake.deleted == [job]


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
