"""What a reconcile tells of its plan: Kubernetes Events, the step timeout count and CloudEvents.

A plan's events are of two kinds (planner/actions.py, `EventSpec.acted`). Those about an action the
reconcile did (a stray Job deleted) are told once the actions are done, whatever becomes of the status
write: a write refused with 409 is planned again, and that plan no longer sees the action to do. The
others describe transitions the status records, so they are told only after the status write that
records them: a write refused is planned again, and the retry tells of them.

A write may also fail with no verdict on it: a timeout or a reset connection after the apiserver applied
it, a 5xx, or a 409 to the client's retry of a write that was applied. The next plan then finds the
transitions recorded and plans none, so they would never be told. Their Kubernetes Events (with the
step timeouts they count) and their CloudEvents wait together, per flow, with the resourceVersion the
write's plan read (every status write is conditional on it, so of the writes planned from one version
at most one lands), until the cache shows the flow again (`settle`, at its next reconcile). If its status
is exactly the one a write planned, that write's are told (the CloudEvents with the ids they would have
had) and the others dropped. A write whose status the cache does not show, once the cached version is no
longer the one it read, did not land, or was overwritten since: dropped, with a debug line. A status that
merely shows the same phases proves nothing: another write (a stop request, a later plan) may have
reached them by another path, and its plan told of that. A later status write that succeeds proves they
never landed, and they are dropped the same way (that write's plan tells what happened instead). While
the cache lags, each retry from it earns a 409 and is one more write in doubt: past MAX_DOUBTS a flow,
the new one is not kept (a debug line), since a 409 to a write planned from the version the kept ones
read says one of those landed. An answer that says the write was not applied (404: the flow is gone;
403) keeps nothing, and neither does a flow the cache no longer holds (deleted, or relabelled to another
instance, while its write was in flight: its `forget` ran already).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from zen_flow.api import JobFlow, JobFlowStatus
from zen_flow.controller.cloud_event_sink import CloudEventSink
from zen_flow.controller.create_failures import Executed, answer
from zen_flow.controller.executor import JobNameTaken
from zen_flow.controller.first_jobs import REASON_STEPS_CHANGED, STEPS_CHANGED
from zen_flow.controller.flow_memory import holds
from zen_flow.controller.memo_cache import EventSink
from zen_flow.controller.metrics import Metrics
from zen_flow.controller.provisioning import REASON_RESOURCE_NAME_TAKEN
from zen_flow.controller.transition_metrics import record_transitions
from zen_flow.kube.errors import ApiError, Conflict
from zen_flow.logging import get_logger
from zen_flow.planner.actions import EventSpec
from zen_flow.planner.cloud_events import CloudEvent, cloud_events
from zen_flow.planner.create_refusals import REASON_CREATE_FAILED, REASON_CREATE_FORBIDDEN, RETRIED
from zen_flow.planner.events import NORMAL, TIMED_OUT, WARNING

log = get_logger(__name__)

# The Warning events while the apiserver refuses the flow's Job or resource creates: with 403 (a quota,
# a policy), and with a 5xx or no answer, twice in a row (planner.create_refusals, the condition's reasons).
CREATE_FORBIDDEN = REASON_CREATE_FORBIDDEN
CREATE_FAILED = REASON_CREATE_FAILED
# Writes in doubt kept per flow: each retry of a flow whose cache lags is one more (a 409), until the
# cache shows the flow again. Past this many, the new one is not kept: the earliest are the ones that
# may have landed (all were planned from one version, and a later 409 says an earlier write landed).
MAX_DOUBTS = 8


@dataclass(frozen=True)
class _Telling:
    """What a status write's plan tells of the transitions it records (their Kubernetes Events and
    CloudEvents), the status it wrote and the resourceVersion it read (the write's precondition): kept
    while the write's outcome is in doubt."""

    planned: JobFlowStatus
    read: str
    told: tuple[EventSpec, ...]  # not `acted`: those were told before the write
    events: tuple[CloudEvent, ...]
    # The flow the write was planned from: its metrics are the transitions from its status to `planned`.
    source: JobFlow


class Announcements:
    def __init__(
        self,
        *,
        events: EventSink,
        metrics: Metrics,
        cloud_events: CloudEventSink | None,
        cached: Callable[[str], JobFlow | None],
    ) -> None:
        """`cloud_events`: where the transitions go as CloudEvents (`--cloudevents-sink`), if anywhere.
        `cached`: the flow cache's lookup by key (a write in doubt is kept only for a flow it holds)."""
        self._cached = cached
        self._events = events
        self._metrics = metrics
        self._cloud_events = cloud_events
        # flow uid -> its writes in doubt, oldest first; all planned from the version the cache shows
        # (`settle` drops the others before each plan).
        self._doubts: dict[str, list[_Telling]] = {}

    def steps_changed(self, flow: JobFlow) -> None:
        """The flow's first Jobs were built from steps since edited: they are replaced (first_jobs.py)."""
        self._events.emit(flow, NORMAL, REASON_STEPS_CHANGED, f"{STEPS_CHANGED}: its first Jobs are replaced")

    def create_failed(self, flow: JobFlow, err: Exception, *, repeated: bool = False) -> None:
        """A create failed and is retried with backoff. The Event is what `kubectl describe` shows of why
        the flow (or a step) waits; the recorder makes a repeat one count more (kube/events.py), not one
        Event per retry. `repeated`: the flow's creates failed the time before as well."""
        if isinstance(err, JobNameTaken):
            self._events.emit(flow, WARNING, "JobNameTaken", err.message)
        elif isinstance(err, ApiError) and err.status == 403:
            # A ResourceQuota, an admission policy, RBAC: the tenant's or the admin's to fix, so say it.
            self._events.emit(flow, WARNING, CREATE_FORBIDDEN, f"{err.message} (retried with backoff)")
        elif repeated:
            # A webhook that fails (5xx), no answer: once is a blip its retry gets past; again, say it.
            self._events.emit(flow, WARNING, CREATE_FAILED, f"{answer(err)} (retried with backoff)")

    def creates_held(self, flow: JobFlow, executed: Executed) -> None:
        """A plan's creates held back (`Executed.held`): the first refused one told (`create_failed`),
        and the first name held by a Job on its way out (`JobNameTaken`)."""
        for err in (*executed.errors[:1], *executed.taken_errors[:1]):
            self.create_failed(flow, err, repeated=executed.again)

    def undone(self, flow: JobFlow, executed: Executed) -> None:
        """Deletes, child flow patches or the flow's TTL deletion failed; the next plans (or the retry,
        for the TTL's) send them again, with backoff. A Warning per Job, naming it and the answer:
        `DeleteForbidden` for a 4xx verdict (a webhook's or RBAC's 403, a ValidatingAdmissionPolicy's
        422), `DeleteFailed` for a 5xx or no answer, the second time in a row (a first is a blip its retry
        gets past); none for a delete held back after one got no answer (never sent). The recorder counts
        a repeat on the Event it sent (kube/events.py). A child flow's patch or the TTL deletion says why
        as controller/flow_requests.py decided (`ChildUpdateForbidden`, `ChildUpdateFailed`; the TTL's
        `DeleteForbidden` or `DeleteFailed` once); never as a refused create."""
        if not executed.deletes_quiet:
            for refused in (r for r in executed.undeleted if r.sent):
                self._events.emit(flow, WARNING, refused.reason, f"{refused.message} ({RETRIED})")
        undeleted = (executed.flow_undeleted,) if executed.flow_undeleted is not None else ()
        for failed in (f for f in (*executed.unpatched, *undeleted) if f.told):
            self._events.emit(flow, WARNING, failed.reason, f"{failed.message} ({RETRIED})")

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
            self._drop(flow, len(self._doubts.pop(flow.metadata.uid, ())))
        self._tell(flow, self._telling(flow, status, specs, now))

    def _tell(self, flow: JobFlow, recorded: _Telling) -> None:
        """Tell of the transitions a status write recorded: their Events and CloudEvents."""
        for event in recorded.told:
            # Counted from the event, not from our delete: the Job's own activeDeadlineSeconds (the same
            # timeout) often stops it first, and then nothing is deleted.
            if event.reason == TIMED_OUT:
                self._metrics.step_timeouts.labels(flow.metadata.namespace).inc()
            self._events.emit(flow, event.type, event.reason, event.message)
        if self._cloud_events is not None:
            for cloud_event in recorded.events:
                self._cloud_events.publish(cloud_event)

    def _drop(self, flow: JobFlow, writes: int) -> None:
        """`writes` kept in doubt did not land: the plan that replaced them tells what happened instead."""
        if writes:
            log.debug("status write in doubt did not land; not told", flow=flow.key, writes=writes)

    def in_doubt(
        self,
        flow: JobFlow,
        status: JobFlowStatus,
        specs: Iterable[EventSpec],
        now: datetime,
        error: BaseException,
    ) -> None:
        """The status write `status` failed with `error`. Without a verdict on it (no answer, a 5xx, a
        409) it may have landed: its Events and CloudEvents wait for the cache to tell (`settle`)."""
        if not _maybe_applied(error):
            return
        uid = flow.metadata.uid
        if not holds(self._cached, flow):
            # Deleted (or relabelled away) while the write was in flight: `forget` ran before this, and
            # no reconcile of this uid will come to settle it.
            return
        doubt = self._telling(flow, status, specs, now)
        doubts = self._doubts.setdefault(uid, [])
        if len(doubts) >= MAX_DOUBTS:
            # Planned from the version the kept ones read (`settle` ran before this plan): at most one of
            # them all lands, and a 409 to this one says the flow changed since: an earlier one landed (or
            # another writer came first, and none did).
            log.debug("status write in doubt not kept; too many of the flow's are", flow=flow.key)
            return
        doubts.append(doubt)

    def _telling(
        self, flow: JobFlow, status: JobFlowStatus, specs: Iterable[EventSpec], now: datetime
    ) -> _Telling:
        """What the status write `status`, planned from `flow` at `now`, tells; its CloudEvents are those
        the sink takes (`--cloudevents-step-events`), none without a sink."""
        specs = tuple(specs)
        events: tuple[CloudEvent, ...] = ()
        if self._cloud_events is not None:
            events = cloud_events(flow, status, specs, now, steps=self._cloud_events.step_events)
        return _Telling(status, flow.metadata.resource_version, _transitions(specs), events, flow)

    def settle(self, flow: JobFlow) -> None:
        """Tell of the write in doubt whose status the cache shows, exactly; drop those that did not land
        (the cache moved past the version they read without showing them)."""
        uid = flow.metadata.uid
        doubts = self._doubts.get(uid)
        if not doubts:
            return
        landed = next((doubt for doubt in doubts if _is(flow.status, doubt.planned)), None)
        if landed is not None:
            # The others did not land: all were planned from the version `landed` read, and each write is
            # conditional on it. Two writes retried from the same stale cache may have planned the same
            # status (the same ids): one is told. Its metrics are counted here, as an answered write's
            # are when the answer comes (status_writer.py): this one's never came.
            self._tell(flow, landed)
            record_transitions(self._metrics, landed.source, landed.planned)
            kept: list[_Telling] = []
        else:
            # Planned from the version the cache shows: their outcome is still unknown.
            kept = [doubt for doubt in doubts if doubt.read == flow.metadata.resource_version]
        self._drop(flow, len(doubts) - len(kept) - (landed is not None))
        if kept:
            self._doubts[uid] = kept
        else:
            del self._doubts[uid]

    def forget(self, uid: str) -> None:
        self._doubts.pop(uid, None)

    def uids(self) -> list[str]:
        return list(self._doubts)

    def kept(self) -> int:
        """Writes in doubt held, over every flow: at most MAX_DOUBTS a flow, none of a deleted flow."""
        return sum(len(doubts) for doubts in self._doubts.values())

    def waiting(self, flow: JobFlow, waiting: Mapping[tuple[str, str], str]) -> None:
        """As for a Job's name (JobNameTaken): the status says nothing of a resource name that is taken
        (the flow is still Pending), so the Event is what `kubectl describe` shows of why it does not
        start."""
        for message in waiting.values():
            self._events.emit(flow, WARNING, REASON_RESOURCE_NAME_TAKEN, message)


def _transitions(specs: tuple[EventSpec, ...]) -> tuple[EventSpec, ...]:
    """The Events of the transitions a status write records (`acted` ones are told before it)."""
    return tuple(e for e in specs if not e.acted)


def _maybe_applied(error: BaseException) -> bool:
    """Whether a status write that failed with `error` may have been applied all the same: no answer
    (a timeout, a reset connection, a cancelled await), a 5xx, or a 409 (a stale version, or the
    client's retry of a write that was applied). Any other answer says it was not (404: the flow is
    gone; 403; 429: not let in)."""
    if not isinstance(error, ApiError):
        return True
    return isinstance(error, Conflict) or error.status >= 500


def _is(stored: JobFlowStatus, planned: JobFlowStatus) -> bool:
    """Whether the cached status is the one a write planned, as stored: compared on the wire, where a
    time has whole seconds (the plan's clock reading has microseconds)."""
    return stored == planned or stored.to_wire() == planned.to_wire()
