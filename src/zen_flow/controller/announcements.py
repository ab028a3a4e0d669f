"""What a reconcile tells of its plan: Kubernetes Events, the step timeout count and CloudEvents.

A plan's events are of two kinds (planner/actions.py, `EventSpec.acted`). Those about an action the
reconcile did (a stray Job deleted) are told once the actions are done, whatever becomes of the status
write: a write refused with 409 is planned again, and that plan no longer sees the action to do. The
others describe transitions the status records, so they are told only after the status write that
records them: a write that failed is planned again, and the retry tells of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from zen_flow.api import JobFlow, JobFlowStatus
from zen_flow.controller.cloud_event_sink import CloudEventSink
from zen_flow.controller.executor import JobNameTaken
from zen_flow.controller.memo_cache import EventSink
from zen_flow.controller.metrics import Metrics
from zen_flow.controller.provisioning import REASON_RESOURCE_NAME_TAKEN
from zen_flow.kube.errors import ApiError
from zen_flow.planner.actions import EventSpec
from zen_flow.planner.cloud_events import cloud_events
from zen_flow.planner.events import TIMED_OUT, WARNING

# The Warning event while the apiserver refuses the flow's Job or resource creates with 403 (a quota).
CREATE_FORBIDDEN = "CreateForbidden"


class Announcements:
    def __init__(self, *, events: EventSink, metrics: Metrics, cloud_events: CloudEventSink | None) -> None:
        """`cloud_events`: where the transitions go as CloudEvents (`--cloudevents-sink`), if anywhere."""
        self._events = events
        self._metrics = metrics
        self._cloud_events = cloud_events

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
        self, flow: JobFlow, status: JobFlowStatus, specs: Iterable[EventSpec], now: datetime
    ) -> None:
        """The status write that records the plan's transitions succeeded (or there was nothing to write):
        their Kubernetes Events, and their CloudEvents whatever --step-events leaves out of the Events."""
        specs = tuple(specs)
        for event in (e for e in specs if not e.acted):
            # Counted from the event, not from our delete: the Job's own activeDeadlineSeconds (the same
            # timeout) often stops it first, and then nothing is deleted.
            if event.reason == TIMED_OUT:
                self._metrics.step_timeouts.labels(flow.metadata.namespace).inc()
            self._events.emit(flow, event.type, event.reason, event.message)
        if self._cloud_events is not None:
            for cloud_event in cloud_events(flow, status, specs, now):
                self._cloud_events.publish(cloud_event)

    def waiting(self, flow: JobFlow, waiting: Mapping[tuple[str, str], str]) -> None:
        """As for a Job's name (JobNameTaken): the status says nothing of a resource name that is taken
        (the flow is still Pending), so the Event is what `kubectl describe` shows of why it does not
        start."""
        for message in waiting.values():
            self._events.emit(flow, WARNING, REASON_RESOURCE_NAME_TAKEN, message)
