"""The paths of a refused Job delete beside a plan's own (test_controller_delete_refusals.py): a graceful
stop's delete held for its status write, the stops of a flow failed by a Job the apiserver rejected or by
a status it refused, a 429, a Job that ends on its own while its delete is refused, and an answer whose
words change from one try to the next. Each is told (a Warning naming the Job), raised for the queue's
backoff, and a 5xx repeated by the next reconcile is told as a repeat, not taken for a first blip."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import pytest
from controller_rig import Rig
from test_controller_create_refusals import turns
from test_controller_delete_refusals import ANSWERS, condition, events, live, refuse_deletes
from test_controller_graceful_stop import stopped

from zen_flow.controller.metrics import Metrics
from zen_flow.controller.reconciler import Controller
from zen_flow.kube.errors import ApiError, from_status
from zen_flow.machinery.expectations import Expectations
from zen_flow.machinery.workqueue import WorkQueue
from zen_flow_dev.testing.apiserver_fake import FakeApiServer
from zen_flow_dev.testing.clock import FakeClock
from zen_flow_dev.testing.flows import job_step, make_flow

TIDY = make_flow([job_step("a"), job_step("cleanup", **{"finally": True})], name="tidy", namespace="team")
ONCE = make_flow([job_step("a", timeoutSeconds=60), job_step("b")], name="once", namespace="team")
# a times out (its delete refused) while c runs; b starts once c is done.
LATER = make_flow(
    [job_step("a", timeoutSeconds=60, continueOnFailure=True), job_step("c"), job_step("b", "c")],
    name="later",
    namespace="team",
)
PAIR = make_flow(
    [job_step("a", timeoutSeconds=60, continueOnFailure=True), job_step("c")], name="pair", namespace="team"
)
REJECTED = "Job.batch is invalid: spec.template.spec.containers[0].image: Required value"
THROTTLED = "the server has received too many requests and has asked us to try again later"


@pytest.mark.parametrize("rig", [TIDY], indirect=True)
async def test_a_graceful_stops_refused_delete_after_its_write_is_told_and_raised(rig: Rig) -> None:
    await turns(rig, 1)
    a = rig.job("a")
    tried, lift = refuse_deletes(rig, ANSWERS["403"])
    errors = rig.count("zen_flow_reconcile_total", "error")
    rig.api.update_flow(rig.key, stopped)
    rig.api.sync()
    await rig.settle(0)  # the one reconcile that writes the stop, then sends its held delete
    assert rig.step("a") == "Failed"
    assert tried == [a]
    assert [m for m in events(rig, "DeleteForbidden") if a in m]
    assert rig.count("zen_flow_reconcile_total", "error") == errors + 1  # raised for the backoff
    lift()
    await turns(rig, 1)
    assert a not in live(rig)
    assert rig.step("cleanup") == "Running"


@pytest.mark.parametrize("rig", [ONCE], indirect=True)
async def test_a_429_is_the_apiservers_trouble_not_a_verdict(rig: Rig) -> None:
    """Said only once repeated (DeleteFailed), never as a refusal (DeleteForbidden)."""
    await turns(rig, 1)
    first = rig.job("a")
    throttled = {"code": 429, "reason": "TooManyRequests", "message": THROTTLED}
    refuse_deletes(rig, lambda: from_status(429, throttled))
    await turns(rig, 60, 1)
    await turns(rig, 1)
    assert not events(rig, "DeleteForbidden")
    assert [m for m in events(rig, "DeleteFailed") if first in m and THROTTLED in m]
    assert condition(rig)[:2] == ("True", "DeleteFailed")  # type: ignore[index]


@pytest.mark.parametrize("rig", [ONCE], indirect=True)
async def test_a_job_that_ends_while_its_delete_is_refused_clears_the_condition_as_nothing_refused(
    rig: Rig,
) -> None:
    await turns(rig, 1)
    first = rig.job("a")
    tried, _ = refuse_deletes(rig, ANSWERS["403"])
    await turns(rig, 60, 1)
    assert condition(rig)[:2] == ("True", "DeleteForbidden")  # type: ignore[index]
    rig.api.finish_job("team", first, succeeded=False)
    await turns(rig, 1)
    sent = len(tried)
    await turns(rig, 10)
    assert len(tried) == sent  # nothing left to delete: not sent again
    assert condition(rig)[:2] == ("False", "NoDeletesRefused")  # type: ignore[index]


@pytest.mark.parametrize("rig", [ONCE], indirect=True)
async def test_an_answer_in_other_words_each_time_writes_no_status(rig: Rig) -> None:
    """A webhook's message carries a request id: the same refusal of the same Job is not written again
    (each write would bring the flow back at once, past the backoff, sending every delete again)."""
    await turns(rig, 1)
    first = rig.job("a")
    ids = iter(range(1_000_000))

    def denied() -> ApiError:
        message = f'admission webhook "jobs.example.com" denied the request (request {next(ids)})'
        return from_status(403, {"code": 403, "reason": "Forbidden", "message": message})

    tried, _ = refuse_deletes(rig, denied)
    await turns(rig, 60, 1)
    await turns(rig, 1)
    assert condition(rig)[:2] == ("True", "DeleteForbidden")  # type: ignore[index]
    version, sent = rig.flow.metadata.resource_version, tried.count(first)
    await turns(rig, 30)
    assert tried.count(first) > sent  # sent again with backoff...
    assert rig.flow.metadata.resource_version == version  # ...and nothing written of it


@dataclass
class Direct:
    """The controller over FakeApiServer, each reconcile run by the test (no worker, no queue backoff)."""

    api: FakeApiServer
    clock: FakeClock
    controller: Controller
    key: str
    failed_deletes: dict[str, int]  # Job name -> how many of its deletes failed (a 5xx)
    rejected: set[str]  # the steps whose Job creates the apiserver rejects (422)
    forbidden: set[str]  # the Jobs whose deletes a policy refuses (403)

    async def reconcile(self) -> None:
        # Raised for the queue's backoff: the test runs the next reconcile itself.
        with contextlib.suppress(ApiError):
            await self.controller.reconcile(self.key)
        self.api.sync()

    def step(self, name: str) -> str:
        found = self.api.flows[self.key].status.step(name)
        return found.phase if found is not None else ""

    def job(self, step: str) -> str:
        found = self.api.flows[self.key].status.step(step)
        assert found is not None
        assert found.job_ref is not None
        return found.job_ref.name

    def told(self, reason: str) -> int:
        return [r for _, r, _ in self.api.events].count(reason)


def direct(flow: Any) -> Direct:
    clock = FakeClock()
    api = FakeApiServer(clock)
    created = api.create_flow(flow)
    controller = Controller(
        flows=api, jobs=api, api=api, queue=WorkQueue(clock=clock), expectations=Expectations(clock),
        events=api, clock=clock, metrics=Metrics(),
    )  # fmt: skip
    api.on_flow = controller.on_flow_event
    api.on_job = controller.on_job_event
    api.on_job_deleted = lambda job: controller.on_job_event(job, deleted=True)
    rig = Direct(api, clock, controller, created.key, {}, set(), set())
    real_create, real_delete = api.create_job, api.delete_job

    async def create(namespace: str, body: dict[str, Any]) -> Any:
        if body["metadata"]["labels"]["workflow.kube-zen.io/step"] in rig.rejected:
            raise from_status(422, {"code": 422, "reason": "Invalid", "message": REJECTED})
        return await real_create(namespace, body)

    async def delete(namespace: str, name: str, uid: str = "") -> None:
        if name in rig.forbidden:
            denied = "admission webhook denied the request: no deletes during the freeze"
            raise from_status(403, {"code": 403, "reason": "Forbidden", "message": denied})
        if name in rig.failed_deletes:
            rig.failed_deletes[name] += 1
            raise from_status(500, {"code": 500, "message": "etcdserver: request timed out"})
        await real_delete(namespace, name, uid)

    api.create_job = create  # type: ignore[method-assign]
    api.delete_job = delete  # type: ignore[method-assign]
    api.sync()
    return rig


async def timed_out(rig: Direct) -> str:
    """a's Job timed out, its delete failing with a 5xx twice in a row (told once): its name."""
    await rig.reconcile()
    await rig.reconcile()
    first = rig.job("a")
    rig.failed_deletes[first] = 0
    await rig.clock.advance(61)
    await rig.reconcile()  # a first 5xx: a blip, nothing said
    assert rig.step("a") == "Failed"
    assert rig.told("DeleteFailed") == 0
    await rig.reconcile()  # again: said
    assert rig.told("DeleteFailed") == 1
    return first


async def test_a_rejected_creates_stops_are_told_and_keep_the_deletes_failing() -> None:
    """b's Job is rejected for good (422): the flow fails, sending its stops (none here); those judge
    nothing, so a's 5xx repeated by the ended flow's next plan is told as a repeat, not a first blip."""
    rig = direct(LATER)
    first = await timed_out(rig)
    rig.rejected.add("b")
    rig.api.finish_job("team", rig.job("c"))
    rig.api.sync()
    await rig.reconcile()
    assert rig.api.flows[rig.key].status.phase == "Failed"
    assert rig.told("DeleteFailed") == 2  # a's, again
    assert rig.failed_deletes[first] == 3
    await rig.reconcile()  # the ended flow's plan sends a's delete again: a repeat, told
    assert rig.failed_deletes[first] == 4
    assert rig.told("DeleteFailed") == 3


async def test_a_rejected_creates_refused_stop_is_told_and_written_at_once() -> None:
    flow = make_flow([job_step("a"), job_step("c"), job_step("b", "c")], name="stops", namespace="team")
    rig = direct(flow)
    await rig.reconcile()
    await rig.reconcile()
    a, c = rig.job("a"), rig.job("c")
    rig.forbidden.add(a)
    rig.rejected.add("b")
    rig.api.finish_job("team", c)
    rig.api.sync()
    with pytest.raises(ApiError, match="no deletes during the freeze"):
        await rig.controller.reconcile(rig.key)  # b rejected: the flow fails and stops a, refused
    rig.api.sync()
    status = rig.api.flows[rig.key].status
    assert status.phase == "Failed"
    failing = next(c for c in status.conditions if c.type == "JobDeleteFailing")
    assert (failing.status, failing.reason) == ("True", "DeleteForbidden")
    assert a in (failing.message or "")
    assert [m for _, r, m in rig.api.events if r == "DeleteForbidden" and a in m]


async def test_a_refused_status_writes_stops_keep_the_deletes_failing() -> None:
    """The status write is refused for good (413): the flow is failed by a smaller write, sending its
    stops (none here); those judge nothing, so a's 5xx repeated by the next plan is told as a repeat."""
    rig = direct(PAIR)
    first = await timed_out(rig)
    rig.api.status_errors.append(from_status(413, {"message": "request entity too large"}))
    rig.api.finish_job("team", rig.job("c"))
    rig.api.sync()
    await rig.reconcile()
    assert rig.api.flows[rig.key].status.phase == "Failed"
    assert rig.told("DeleteFailed") == 2
    await rig.reconcile()
    assert rig.failed_deletes[first] == 4
    assert rig.told("DeleteFailed") == 3
