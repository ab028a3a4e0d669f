"""Kubernetes Events on JobFlows (`kubectl describe jobflow` shows them). Best effort by design.

Reconcile calls `emit()`, which only queues: an event must never slow a reconcile down, let alone fail
it. `run()` (one long-lived task) sends them; a failed send is logged and dropped. What waits is shared
fairly between namespaces and bounded (event_backlog.py: turns by namespace, equal Events folded, Normal
Events dropped before Warnings when full; an apiserver outage must not grow memory without bound).

Each event is a core/v1 Event named `<flow>.<random hex>`, like client-go's recorder names them. A repeat
(same flow, type, reason and message) within AGGREGATE_SECONDS is folded into the Event already sent, as
client-go's correlator does: one PATCH raising its `count` and `lastTimestamp`, so `kubectl describe` shows
"x3 over 2m" instead of three lines (and the apiserver stores one object). And as client-go's
aggregator does, from a flow's SIMILAR_EVENTS-th different message of one type and reason within
AGGREGATE_SECONDS, the messages are one Event, `(combined from similar events): <the latest>`, whose
count goes up: a 500-step fan-out failing at once is ten StepFailed Events, the last combined, not 500.
`skip` leaves out reasons the operator chose not to record (`--step-events`): they are dropped at `emit`,
before they cost anything.

Events have a request budget of their own (`--event-qps`/`--event-burst`), not the controller's: they
were half of its requests, and in one bucket with Job creates an Event could delay the next step's Job
(docs/BENCHMARKS.md). kube-scheduler and kube-controller-manager separate them the same way (a second
client for events). When the budget cannot keep up, the queue absorbs bursts and then drops.
"""

from __future__ import annotations

import secrets
import socket
from collections import OrderedDict
from dataclasses import dataclass

from zen_flow.api import JobFlow
from zen_flow.api.constants import API_VERSION
from zen_flow.api.cronjobflow import CronJobFlow
from zen_flow.api.meta import format_time
from zen_flow.kube.client import KubeClient
from zen_flow.kube.errors import KubeError, NotFound
from zen_flow.kube.event_backlog import EventBacklog, Key, Pending, Target
from zen_flow.kube.resource import Resource
from zen_flow.kube.transport import MERGE_PATCH
from zen_flow.logging import get_logger
from zen_flow.machinery.clock import Clock
from zen_flow.machinery.ratelimit import TokenBucket

EVENTS = Resource("", "v1", "events")
COMPONENT = "zen-flow"
_MAX_MESSAGE = 1024  # what the apiserver accepts for a core/v1 Event message
_MAX_NAME = 253
# client-go's correlator: repeats within 10 minutes aggregate, remembered in an LRU of 4,096 events; from
# the 10th different message of one object, type and reason within them, one combined Event.
AGGREGATE_SECONDS = 600.0
SIMILAR_EVENTS = 10
COMBINED = "(combined from similar events): "
_REMEMBERED = 4096

log = get_logger(__name__)


def _target(flow: JobFlow | CronJobFlow) -> Target:
    meta = flow.metadata
    return Target(meta.namespace, meta.name, meta.uid, meta.resource_version, flow.kind)


@dataclass
class _Sent:
    """An Event already in the apiserver, to fold its repeats into."""

    name: str
    count: int
    at: float  # monotonic time of the last send


@dataclass
class _Similar:
    """The different messages (their hashes: 4,096 flows' ten 1 KiB messages would be 40 MB) one flow
    had for one type and reason since `since`."""

    messages: set[int]
    since: float


class EventRecorder:
    def __init__(
        self,
        client: KubeClient,
        *,
        clock: Clock,
        instance: str | None = None,
        max_pending: int = 1000,
        qps: float = 50.0,
        burst: int = 100,
        skip: frozenset[str] = frozenset(),
    ) -> None:
        self._client = client
        self._limiter = TokenBucket(qps, burst, clock=clock)
        self._clock = clock
        self._instance = instance or socket.gethostname()
        self._pending = EventBacklog(max_pending)
        self._skip = skip
        self._sent: OrderedDict[Key, _Sent] = OrderedDict()
        self._similar: OrderedDict[tuple[str, str, str, str], _Similar] = OrderedDict()
        # Events never recorded (exported as zen_flow_events_dropped_total, `lost`): dropped from a full
        # backlog, and sends that failed (not retried: an Event is best effort).
        self.dropped = 0
        self.failed = 0

    def emit(self, flow: JobFlow | CronJobFlow, type_: str, reason: str, message: str) -> None:
        """Queue an event (type_ "Normal" or "Warning") about a JobFlow or a CronJobFlow. Never blocks,
        never raises."""
        if reason in self._skip:
            return
        dropped = self._pending.put(self._pending_for(_target(flow), type_, reason, message))
        if dropped is not None:
            self.dropped += dropped.count
            log.warning("event dropped: queue full", flow=dropped.target.key, reason=dropped.reason)

    def lost(self) -> dict[str, int]:
        """Events never recorded, by reason: queue_full (dropped from the backlog), failed (a send failed)."""
        return {"queue_full": self.dropped, "failed": self.failed}

    async def run(self) -> None:
        """Send queued events, one at a time, forever."""
        while True:
            await self._send(await self._pending.get())

    async def record(self, flow: JobFlow, type_: str, reason: str, message: str) -> None:
        """Send one event now. Errors are logged and swallowed."""
        await self._send(self._pending_for(_target(flow), type_, reason, message))

    def _pending_for(self, target: Target, type_: str, reason: str, message: str) -> Pending:
        """The Event to send: `message`, or the flow's combined Event once it had SIMILAR_EVENTS others."""
        message = message[:_MAX_MESSAGE]
        group = (target.namespace, target.uid, type_, reason)
        now = self._clock.monotonic()
        similar = self._similar.get(group)
        if similar is None or now - similar.since >= AGGREGATE_SECONDS:
            similar = _Similar(set(), now)
        self._similar[group] = similar
        self._similar.move_to_end(group)
        if len(self._similar) > _REMEMBERED:
            self._similar.popitem(last=False)
        digest = hash(message)
        if len(similar.messages) < SIMILAR_EVENTS:
            similar.messages.add(digest)
        if digest in similar.messages and len(similar.messages) < SIMILAR_EVENTS:
            return Pending(target, type_, reason, message, (*group, message))
        return Pending(target, type_, reason, (COMBINED + message)[:_MAX_MESSAGE], (*group, COMBINED))

    async def _send(self, item: Pending) -> None:
        target, key = item.target, item.key
        now = self._clock.monotonic()
        try:
            seen = self._sent.get(key)
            if seen is not None and now - seen.at < AGGREGATE_SECONDS:
                try:
                    await self._repeat(target.namespace, seen, item)
                except NotFound:  # expired (the apiserver keeps Events an hour) or deleted: post anew
                    del self._sent[key]
                else:
                    seen.at = now
                    self._sent.move_to_end(key)
                    return
            name = f"{target.name[: _MAX_NAME - 17]}.{secrets.token_hex(8)}"
            await self._client.request(
                "POST",
                EVENTS.path(target.namespace),
                body=self._body(name, item),
                retry=False,
                limiter=self._limiter,
                namespace_line=False,  # one sender for all: never behind a namespace's slow requests
            )
            self._remember(key, _Sent(name, item.count, now))
        except KubeError as err:
            self.failed += item.count
            log.warning("event not recorded", flow=target.key, reason=item.reason, error=str(err))
        except Exception:  # a bug here must not take the process down for a diagnostic
            self.failed += item.count
            log.exception("event not recorded", flow=target.key, reason=item.reason)

    async def _repeat(self, namespace: str, seen: _Sent, item: Pending) -> None:
        patch: dict[str, object] = {
            "count": seen.count + item.count,
            "lastTimestamp": format_time(self._clock.now()),
        }
        if item.key[-1] == COMBINED:
            patch["message"] = item.message  # a combined Event says its latest occurrence
        await self._client.request(
            "PATCH",
            EVENTS.path(namespace, seen.name),
            body=patch,
            content_type=MERGE_PATCH,
            retry=False,
            limiter=self._limiter,
            namespace_line=False,
        )
        seen.count += item.count

    def _remember(self, key: Key, sent: _Sent) -> None:
        self._sent[key] = sent
        if len(self._sent) > _REMEMBERED:
            self._sent.popitem(last=False)

    def _body(self, name: str, item: Pending) -> dict[str, object]:
        meta = item.target
        stamp = format_time(self._clock.now())
        return {
            "metadata": {"name": name, "namespace": meta.namespace},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": meta.kind,
                "name": meta.name,
                "namespace": meta.namespace,
                "uid": meta.uid,
                "resourceVersion": meta.resource_version,
            },
            "type": item.type,
            "reason": item.reason,
            "message": item.message,
            "source": {"component": COMPONENT, "host": self._instance},
            "reportingComponent": COMPONENT,
            "reportingInstance": self._instance,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": item.count,
        }
