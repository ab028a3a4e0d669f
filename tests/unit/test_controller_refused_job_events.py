"""Controller: a plan whose next Job the apiserver refuses (422) fails the flow flow-wide, and still
tells what that plan saw: a step with allowFailure whose Job failed in it gets its StepFailed and
StepFailureAllowed events and its `step.failed.v1` CloudEvent with `allowed: true` (API.md "Tolerated
failures"); the step whose Job was refused never started, so no StepStarted names it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from scripted_controller_rig import Fake, controller
from test_announcements import Sink

from zen_flow.kube.errors import from_status
from zen_flow_dev.testing.clock import FakeClock
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)


async def test_a_tolerated_failure_in_the_plan_whose_next_job_is_refused_is_still_told() -> None:
    sim = Simulator(make_flow([job_step("lint", allowFailure=True), job_step("c", "lint")]), T0)
    sim.reconcile()
    (lint_job,) = sim.running()
    sim.advance(5)
    sim.fail(lint_job)  # the plan that records it starts c, whose Job the apiserver refuses
    fake, clock = Fake(sim.flow, jobs=list(sim.jobs.values())), FakeClock(wall_start=sim.now)
    fake.create_errors["c"] = from_status(422, {"reason": "Invalid", "message": "no"})
    sink = Sink()
    await controller(fake, clock, cloud_events=sink).reconcile(fake.flow.key)
    status = fake.patches[-1]["status"]
    assert status["phase"] == "Failed"
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "JobRejected"
    reasons = [(reason, message) for _, reason, message in fake.events]
    assert any(r == "StepFailed" and "lint" in m for r, m in reasons)
    assert any(r == "StepFailureAllowed" and "lint" in m for r, m in reasons)
    assert not any(r == "StepStarted" for r, _ in reasons)  # c's Job was never created
    assert [r for r, _ in reasons if r == "FlowFailed"] == ["FlowFailed"]
    told = {(e.type.rsplit(".", 2)[-2], e.subject): json.loads(e.data) for e in sink.got}
    assert told["failed", "lint"]["allowed"] is True
    assert ("started", "c") not in told
    assert any(kind == "failed" and subject == fake.flow.metadata.name for kind, subject in told)
