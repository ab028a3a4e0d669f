"""Controller: a plan's Job deletes go out concurrently, as many at once as its creates, and once one gets
no answer (or a 5xx) those not sent yet wait for the next reconcile: a wide fan-out's deletes against an
overloaded admission webhook tie a worker for about one request's timeout, not one per Job. A verdict
(403, 422) is fast: every delete is still sent."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace

from zen_flow.api import JobFlow
from zen_flow.controller.announcements import Announcements
from zen_flow.controller.executor import CREATE_CONCURRENCY, PlanExecutor
from zen_flow.controller.metrics import Metrics
from zen_flow.kube.errors import from_status
from zen_flow.machinery.expectations import Expectations
from zen_flow.planner import DeleteJob
from zen_flow_dev.testing.clock import FakeClock
from zen_flow_dev.testing.flows import job_step, make_flow

WIDTH = 3 * CREATE_CONCURRENCY
FLOW = make_flow([job_step(f"s{i}") for i in range(WIDTH)], name="wide")
STOPS = [DeleteJob(f"wide-s{i}", f"s{i}", "stopped by alice") for i in range(WIDTH)]
HUNG = 'Internal error occurred: failed calling webhook "jobs.example.com": context deadline exceeded'


class Deletes:
    """Job deletes that hang until `answer` is set, then each fail with what it makes."""

    def __init__(self, answer: Callable[[], Exception]) -> None:
        self.make = answer
        self.tried: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.crowded = asyncio.Event()  # as many in flight as the limit lets go
        self.answer = asyncio.Event()

    async def delete_job(self, namespace: str, name: str, uid: str = "") -> None:
        self.tried.append(name)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        if self.in_flight >= CREATE_CONCURRENCY:
            self.crowded.set()
        try:
            await self.answer.wait()
        finally:
            self.in_flight -= 1
        raise self.make()


@dataclass
class Told:
    """Event sink: the Job each Warning names."""

    jobs: list[str]

    def emit(self, flow: JobFlow, type_: str, reason: str, message: str) -> None:
        self.jobs.append(message.split(" ")[1])


def executor(api: Deletes, expectations: Expectations) -> PlanExecutor:
    return PlanExecutor(
        api=api,  # type: ignore[arg-type]  # deletes only
        expectations=expectations,
        metrics=Metrics(),
        clock=FakeClock(),
        waited=lambda key: None,
    )


async def test_deletes_that_get_no_answer_cost_one_wait_not_one_per_job() -> None:
    api = Deletes(lambda: from_status(504, {"code": 504, "message": HUNG}))
    expectations = Expectations(FakeClock())
    sending = asyncio.create_task(executor(api, expectations).execute(FLOW, STOPS))
    # All of a batch hang at once (one after the other, the second would wait for the first's timeout).
    await asyncio.wait_for(api.crowded.wait(), timeout=5)
    assert api.most_in_flight == CREATE_CONCURRENCY
    api.answer.set()
    executed = await asyncio.wait_for(sending, timeout=5)
    # Those not sent yet wait for the next reconcile, which the failure's backoff brings.
    assert len(api.tried) == CREATE_CONCURRENCY
    assert [r.delete.name for r in executed.undeleted] == [d.name for d in STOPS]
    assert {r.reason for r in executed.undeleted} == {"DeleteFailed"}
    sent, held = executed.undeleted[:CREATE_CONCURRENCY], executed.undeleted[CREATE_CONCURRENCY:]
    assert all(HUNG in r.message for r in sent)
    assert all("delete not sent" in r.message for r in held)
    assert not expectations.pending_deletions(FLOW.metadata.uid)  # none waited for: the next plan runs
    # Told once the failures repeat, for the deletes sent: a Warning for each Job held back would say
    # the apiserver refused it.
    told: list[str] = []
    announcements = Announcements(
        events=Told(told), metrics=Metrics(), cloud_events=None, cached=lambda key: None
    )
    announcements.undone(FLOW, replace(executed, deletes_again=True))
    assert sorted(told) == sorted(f"wide-s{i}" for i in range(CREATE_CONCURRENCY))


async def test_refused_deletes_are_all_sent_with_their_verdicts() -> None:
    denied = 'admission webhook "jobs.example.com" denied the request: no deletes during the freeze'
    api = Deletes(lambda: from_status(403, {"code": 403, "reason": "Forbidden", "message": denied}))
    api.answer.set()
    expectations = Expectations(FakeClock())
    executed = await asyncio.wait_for(executor(api, expectations).execute(FLOW, STOPS), timeout=5)
    assert sorted(api.tried) == sorted(d.name for d in STOPS)
    assert api.most_in_flight <= CREATE_CONCURRENCY
    assert [r.reason for r in executed.undeleted] == ["DeleteForbidden"] * WIDTH
    assert all(denied in r.message for r in executed.undeleted)
    assert not expectations.pending_deletions(FLOW.metadata.uid)
