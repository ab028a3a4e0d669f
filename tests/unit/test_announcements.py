"""CloudEvents of status writes in doubt (controller/announcements.py): a write that failed without a
verdict may have landed, so its CloudEvents wait for the cache. They go out only when the cached status
is exactly the one that write planned, never for a status that merely shows the same phases; nothing is
kept for a write the apiserver answered as not applied, or for a flow gone from the cache; at most
MAX_DOUBTS are kept a flow (the earliest), none once the cache shows a newer version, and none once the
flow is deleted."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from zen_flow.api import JobFlow, JobFlowStatus
from zen_flow.api.flow_status import StepStatus
from zen_flow.controller.announcements import MAX_DOUBTS, Announcements
from zen_flow.controller.metrics import Metrics
from zen_flow.kube.errors import TransportError, from_status
from zen_flow.planner.actions import EventSpec
from zen_flow.planner.cloud_events import CloudEvent
from zen_flow_dev.testing.flows import job_step, make_flow

NOW = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)  # a clock reading: microseconds
P = "dev.kube-zen.jobflow."


class Sink:
    step_events = True  # as CloudEventSink's (--cloudevents-step-events)

    def __init__(self) -> None:
        self.got: list[CloudEvent] = []

    def publish(self, event: CloudEvent) -> None:
        self.got.append(event)

    def told(self) -> list[tuple[str, str]]:
        return [(e.type.removeprefix(P), json.loads(e.data)["message"]) for e in self.got]


class NoEvents:
    def emit(self, *args: object) -> None:
        pass


def running_flow() -> JobFlow:
    flow = make_flow([job_step("a")], name="f", namespace="team")
    status = flow.status.model_copy(
        update={"phase": "Running", "start_time": NOW, "steps": (StepStatus("a", "Running"),)}
    )
    meta = flow.metadata.model_copy(update={"uid": "u1", "resource_version": "7"})
    return flow.model_copy(update={"metadata": meta, "status": status})


def failed(flow: JobFlow, why: str) -> JobFlowStatus:
    """The status of a plan that fails step a, and the flow, for `why`."""
    step = StepStatus("a", "Failed", message=why, completion_time=NOW)
    return flow.status.model_copy(
        update={"phase": "Failed", "message": why, "completion_time": NOW, "steps": (step,)}
    )


def failing(why: str) -> tuple[EventSpec, ...]:
    return (EventSpec("Warning", "StepFailed", f"step a failed: {why}", step="a"),
            EventSpec("Warning", "FlowFailed", f"step a failed: {why}"))  # fmt: skip


def showing(flow: JobFlow, status: JobFlowStatus) -> JobFlow:
    """The flow as the cache shows it once `status` is stored: decoded from the wire (times in whole
    seconds), at a new version."""
    meta = flow.metadata.model_copy(update={"resource_version": "8"})
    return flow.model_copy(
        update={"metadata": meta, "status": JobFlowStatus.model_validate(status.to_wire())}
    )


def announcements(sink: Sink, cache: dict[str, JobFlow]) -> Announcements:
    return Announcements(events=NoEvents(), metrics=Metrics(), cloud_events=sink, cached=cache.get)  # type: ignore[arg-type]


NO_ANSWER = TimeoutError("no answer")


def test_a_write_in_doubt_that_landed_is_told_once_the_cache_shows_it() -> None:
    flow, sink = running_flow(), Sink()
    told = announcements(sink, {flow.key: flow})
    planned = failed(flow, "Job failed")
    told.in_doubt(flow, planned, failing("Job failed"), NOW, NO_ANSWER)
    told.settle(flow)  # the cache does not show it yet
    assert sink.got == []
    told.settle(showing(flow, planned))  # stored to the second: still the status that write planned
    assert sink.told() == [("step.failed.v1", "step a failed: Job failed"),
                           ("failed.v1", "step a failed: Job failed")]  # fmt: skip
    assert told.kept() == 0


def test_a_status_that_merely_shows_the_same_phases_tells_nothing_of_a_write_that_did_not_land() -> None:
    # Write 1 (step a failed by its Job) is lost unapplied; write 2 (a stop request, planned from the
    # same cache) lands, and its answer is lost too. Both leave step a and the flow Failed.
    flow, sink = running_flow(), Sink()
    told = announcements(sink, {flow.key: flow})
    told.in_doubt(flow, failed(flow, "Job failed"), failing("Job failed"), NOW, NO_ANSWER)
    stopped = failed(flow, "stopped by alice")
    told.in_doubt(flow, stopped, failing("stopped by alice"), NOW + timedelta(seconds=1), NO_ANSWER)
    told.settle(showing(flow, stopped))
    # Only what happened: the same ids (the same step, attempt and reason), the stop's messages.
    assert sink.told() == [("step.failed.v1", "step a failed: stopped by alice"),
                           ("failed.v1", "step a failed: stopped by alice")]  # fmt: skip
    assert told.kept() == 0  # the older write cannot have landed as well: dropped
    told.settle(showing(flow, stopped))
    assert len(sink.got) == 2


def test_a_status_reached_by_another_path_tells_nothing_of_the_write_in_doubt() -> None:
    flow, sink = running_flow(), Sink()
    told = announcements(sink, {flow.key: flow})
    told.in_doubt(flow, failed(flow, "Job failed"), failing("Job failed"), NOW, NO_ANSWER)
    told.settle(flow)  # the cache still shows the version it was planned from: it may land yet
    assert told.kept() == 1
    told.settle(showing(flow, failed(flow, "stopped by alice")))  # the same phases, another status
    assert sink.got == []
    # A newer version without its status: it did not land (or was overwritten since). Nothing stays
    # kept of it, though no write of the flow (a finished one) may come again.
    assert told.kept() == 0


def test_nothing_is_kept_of_a_write_the_apiserver_answered_as_not_applied() -> None:
    flow = running_flow()
    for error in (
        from_status(404, {"reason": "NotFound", "message": "not found"}),  # the flow is gone
        from_status(403, {"reason": "Forbidden", "message": "forbidden"}),
        from_status(429, {"reason": "TooManyRequests", "message": "slow down"}),
    ):
        told = announcements(Sink(), {flow.key: flow})
        told.in_doubt(flow, failed(flow, "Job failed"), failing("Job failed"), NOW, error)
        assert told.kept() == 0, error
    for error in (  # no verdict: it may have landed
        NO_ANSWER,
        TransportError("connection reset"),
        from_status(503, {"reason": "ServiceUnavailable", "message": "etcd"}),
        from_status(409, {"reason": "Conflict", "message": "the object has been modified"}),
    ):
        told = announcements(Sink(), {flow.key: flow})
        told.in_doubt(flow, failed(flow, "Job failed"), failing("Job failed"), NOW, error)
        assert told.kept() == 1, error


@pytest.mark.parametrize("cached", ["gone", "another flow of that name"])
def test_nothing_is_kept_for_a_flow_deleted_while_its_write_was_in_flight(cached: str) -> None:
    # The informer's delete came first (its handler forgot the flow); the write's answer came after.
    flow = running_flow()
    cache = {}
    if cached != "gone":
        other = flow.model_copy(update={"metadata": flow.metadata.model_copy(update={"uid": "u2"})})
        cache[flow.key] = other
    told = announcements(Sink(), cache)
    told.in_doubt(flow, failed(flow, "Job failed"), failing("Job failed"), NOW, NO_ANSWER)
    assert told.kept() == 0


def test_at_most_max_doubts_are_kept_a_flow_the_earliest() -> None:
    # Retries from a lagging cache, all planned from one version: at most one lands, and a 409 to a
    # later one says an earlier one did. The newest are let go.
    flow = running_flow()
    writes = [failed(flow, f"attempt {n}") for n in range(MAX_DOUBTS + 1)]
    for landed, told_of in ((0, ["step a failed: attempt 0"] * 2), (MAX_DOUBTS, [])):
        sink = Sink()
        told = announcements(sink, {flow.key: flow})
        for n, planned in enumerate(writes):
            told.in_doubt(flow, planned, failing(f"attempt {n}"), NOW, NO_ANSWER)
        assert told.kept() == MAX_DOUBTS
        told.settle(showing(flow, writes[landed]))
        assert [m for _, m in sink.told()] == told_of
        assert told.kept() == 0


def test_a_deleted_flows_doubts_are_forgotten() -> None:
    flow, sink = running_flow(), Sink()
    told = announcements(sink, {flow.key: flow})
    planned = failed(flow, "Job failed")
    told.in_doubt(flow, planned, failing("Job failed"), NOW, NO_ANSWER)
    assert told.kept() == 1
    told.forget(flow.metadata.uid)
    assert told.kept() == 0
    told.settle(showing(flow, planned))
    assert sink.got == []
