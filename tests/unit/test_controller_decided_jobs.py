"""Controller: a step ended from its Job's `SuccessCriteriaMet` (its timeout passed, its pods never
terminated: planner/job_verdicts.py) has its outputs read from the Job's succeeded pod, as a completed
Job's are."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from zen_flow.api.meta import Condition
from zen_flow.controller.metrics import Metrics
from zen_flow.controller.reconciler import Controller
from zen_flow.machinery.expectations import Expectations
from zen_flow.machinery.workqueue import WorkQueue
from zen_flow.planner.job_verdicts import DEFAULT_POD_GRACE_SECONDS, ENDING_MARGIN_SECONDS
from zen_flow_dev.testing.apiserver_fake import FakeApiServer
from zen_flow_dev.testing.clock import FakeClock
from zen_flow_dev.testing.flows import job_step, make_flow

OUTPUT = {"name": "model", "valueFrom": {"terminationMessage": {"container": "main"}}}


async def test_a_step_ended_from_its_success_criteria_reads_the_succeeded_pods_messages() -> None:
    clock = FakeClock()
    api = FakeApiServer(clock)
    flow = api.create_flow(
        make_flow([job_step("train", timeoutSeconds=60, outputs={"parameters": [OUTPUT]})])
    )
    api.sync()
    reads: list[tuple[str, bool]] = []

    async def messages(namespace: str, job: str, *, job_uid: str, succeeded: bool) -> dict[str, str]:
        reads.append((job, succeeded))
        return {"main": "s3://models/7"}

    api.termination_messages = messages  # type: ignore[method-assign]
    ctrl = Controller(
        flows=api, jobs=api, api=api, queue=WorkQueue(clock=clock), expectations=Expectations(clock),
        events=api, clock=clock, metrics=Metrics(),
    )  # fmt: skip
    api.on_job = ctrl.on_job_event  # as the Job informer's handler: the controller sees its create
    await ctrl.reconcile(flow.key)
    api.sync()
    ((namespace, job),) = api.jobs
    await clock.advance(30)
    # The Job controller decided (SuccessCriteriaMet); its other pods never terminate.
    decided = api.jobs[(namespace, job)]
    met = Condition(
        type="SuccessCriteriaMet",
        status="True",
        reason="CompletionsReached",
        last_transition_time=clock.now(),
    )
    status = replace(decided.status, conditions=(met,), succeeded=1)
    api.jobs[(namespace, job)] = replace(decided, status=status)
    api.sync()
    await clock.advance(30 + DEFAULT_POD_GRACE_SECONDS + ENDING_MARGIN_SECONDS + 1)
    await ctrl.reconcile(flow.key)
    api.sync()
    assert reads == [(job, True)]
    step: Any = api.flows[flow.key].status.step("train")
    assert step.phase == "Succeeded"
    assert [(p.name, p.value) for p in step.outputs.parameters] == [("model", "s3://models/7")]
