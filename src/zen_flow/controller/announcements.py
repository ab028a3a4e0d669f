"""What a reconcile tells of its plan: Kubernetes Events, the step timeout count and CloudEvents.

A plan's events are of two kinds (planner/actions.py, `EventSpec.acted`). Those about an action the
reconcile did (a stray Job deleted) are told once the actions are done, whatever becomes of the status
write: a write refused with 409 is planned again, and that plan no longer sees the action to do. The
others describe transitions the status records, so they are told only after the status write that
records them: a write refused is planned again, and the retry tells of them.

A write may also fail with no verdict on it: a timeout or a reset connection after the apiserver applied
it, or a 409 to the client's retry of a write that was applied. The next plan then finds the transitions
recorded and plans none, so they would never be told. Their CloudEvents wait, per flow, until the
cache shows the flow again (`settle`, at its next reconcile): if its status records them, they are sent
(with the ids they would have had); a later status write that succeeds proves they never landed, and
they are forgotten (that write's plan tells what happened instead). The Kubernetes Events of such a
write are not kept: they are not meant for automation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from zen_flow.api import JobFlow, JobFlowStatus
from zen_flow.controller.cloud_event_sink import CloudEventSink
from zen_flow.controller.executor import JobNameTaken
from zen_flow.controller.first_jobs import REASON_STEPS_CHANGED, STEPS_CHANGED
from zen_flow.controller.memo_cache import EventSink
from zen_flow.controller.metrics import Metrics
from zen_flow.controller.provisioning import REASON_RESOURCE_NAME_TAKEN
from zen_flow.kube.errors import ApiError
from zen_flow.planner.actions import EventSpec
from zen_flow.planner.cloud_events import CloudEvent, cloud_events, recorded_by
from zen_flow.planner.events import NORMAL, TIMED_OUT, WARNING

# The Warning event while the apiserver refuses the flow's Job or resource creates with 403 (a quota).
CREATE_FORBIDDEN = "CreateForbidden"
# Writes in doubt kept per flow: each failed write of a flow whose cache lags is one more, until one
# lands; past this many, the oldest go (a write that keeps failing plans the same transitions anyway).
MAX_DOUBTS = 8


@dataclass(frozen=True)
class _Doubt:
    """A status write whose outcome is unknown: what it wrote and the CloudEvents of its transitions."""

    planned: JobFlowStatus
    specs: tuple[EventSpec, ...]
    events: tuple[CloudEvent, ...]


class Announcements:
    def __init__(self, *, events: EventSink, metrics: Metrics, cloud_events: CloudEventSink | None) -> None:
        """`cloud_events`: where the transitions go as CloudEvents (`--cloudevents-sink`), if anywhere."""
        self._events = events
        self._metrics = metrics
        self._cloud_events = cloud_events
        self._doubts: dict[str, list[_Doubt]] = {}  # flow uid -> its writes in doubt, oldest first

    def steps_changed(self, flow: JobFlow) -> None:
        """The flow's first Jobs were built from steps since edited: they are replaced (first_jobs.py)."""
        self._events.emit(flow, NORMAL, REASON_STEPS_CHANGED, f"{STEPS_CHANGED}: its first Jobs are replaced")

    def create_failed(self, flow: JobFlow, err: JobNameTaken | ApiError) -> None:
        """A create failed and is retried with backoff; nothing is written to the status meanwhile."""
        if isinstance(err, JobNameTaken):
            # The Event is what `kubectl describe` shows of why the flow waits (a repeat is one count more).
            self._events.emit(flow, WARNING, "JobNameTaken", err.message)
        elif err.status == 403:  # a ResourceQuota or an admission policy: the tenant's to fix, so say it
            self._events.emit(flow, WARNING, CREATE_FORBIDDEN, f"{err.message} (retried with backoff)")

    def acted(self, flow: JobFlow, specs: Iterable[EventSpec]) -> None:
        """The actions are done: tell of them, before the status write (told once, whatever the write)."""
        for event in (e for e in specs if e.acted):
            self._events.emit(flow, event.type, event.reason, event.message)

    def recorded(
        self,
        flow: JobFlow,
        status: JobFlowStatus,
        specs: Iterable[EventSpec],
        now: datetime,
        *,
        written: bool,
    ) -> None:
        """The status write that records the plan's transitions succeeded (`written`), or there was
        nothing to write: their Kubernetes Events, and their CloudEvents whatever --step-events leaves
        out of the Events."""
        specs = tuple(specs)
        if written:
            # Conditional on the version the plan read, which was therefore the stored one: had a write
            # in doubt landed, the cache would have shown it to `settle` and this plan would be another.
            self._doubts.pop(flow.metadata.uid, None)
        for event in (e for e in specs if not e.acted):
            # Counted from the event, not from our delete: the Job's own activeDeadlineSeconds (the same
            # timeout) often stops it first, and then nothing is deleted.
            if event.reason == TIMED_OUT:
                self._metrics.step_timeouts.labels(flow.metadata.namespace).inc()
            self._events.emit(flow, event.type, event.reason, event.message)
        if self._cloud_events is not None:
            for cloud_event in cloud_events(flow, status, specs, now):
                self._cloud_events.publish(cloud_event)

    def in_doubt(
        self, flow: JobFlow, status: JobFlowStatus, specs: Iterable[EventSpec], now: datetime
    ) -> None:
        """The status write failed without a verdict on it (no answer, a 5xx, a 409): it may have landed.
        Its CloudEvents wait for the cache to tell (`settle`)."""
        if self._cloud_events is None:
            return
        specs = tuple(specs)
        events = cloud_events(flow, status, specs, now)
        if events:
            doubts = self._doubts.setdefault(flow.metadata.uid, [])
            doubts.append(_Doubt(status, specs, events))
            del doubts[:-MAX_DOUBTS]

    def settle(self, flow: JobFlow) -> None:
        """Send the CloudEvents of the flow's writes in doubt that its cached status records."""
        doubts = self._doubts.get(flow.metadata.uid)
        if not doubts or self._cloud_events is None:
            return
        sent: set[str] = set()  # a write retried from the same stale cache planned the same transitions
        for doubt in [d for d in doubts if recorded_by(flow.status, d.planned, d.specs)]:
            doubts.remove(doubt)
            for event in doubt.events:
                if event.id not in sent:
                    sent.add(event.id)
                    self._cloud_events.publish(event)
        if not doubts:
            del self._doubts[flow.metadata.uid]

    def forget(self, uid: str) -> None:
        self._doubts.pop(uid, None)

    def waiting(self, flow: JobFlow, waiting: Mapping[tuple[str, str], str]) -> None:
        """As for a Job's name (JobNameTaken): the status says nothing of a resource name that is taken
        (the flow is still Pending), so the Event is what `kubectl describe` shows of why it does not
        start."""
        for message in waiting.values():
            self._events.emit(flow, WARNING, REASON_RESOURCE_NAME_TAKEN, message)
