"""Kubernetes Events on JobFlows (`kubectl describe jobflow` shows them). Best effort by design.

Reconcile calls `emit()`, which only queues: an event must never slow a reconcile down, let alone fail
it. `run()` (one long-lived task) sends them; a failed send is logged and dropped, and when the queue is
full new events are dropped too (an apiserver outage must not grow memory without bound).

Each event is a core/v1 Event named `<flow>.<random hex>`, like client-go's recorder names them. A repeat
(same flow, type, reason and message) within AGGREGATE_SECONDS is folded into the Event already sent, as
client-go's correlator does: one PATCH raising its `count` and `lastTimestamp`, so `kubectl describe` shows
"x3 over 2m" instead of three lines (and the apiserver stores one object). `skip` leaves out reasons the
operator chose not to record (`--step-events`): they are dropped at `emit`, before they cost anything.

Events have a request budget of their own (`--event-qps`/`--event-burst`), not the controller's: they
were half of its requests, and in one bucket with Job creates an Event could delay the next step's Job
(docs/BENCHMARKS.md). kube-scheduler and kube-controller-manager separate them the same way (a second
client for events). When the budget cannot keep up, the queue absorbs bursts and then drops.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections import OrderedDict
from dataclasses import dataclass

from zen_flow.api import JobFlow
from zen_flow.api.constants import API_VERSION, KIND
from zen_flow.api.meta import format_time
from zen_flow.kube.client import KubeClient
from zen_flow.kube.errors import KubeError, NotFound
from zen_flow.kube.resource import Resource
from zen_flow.logging import get_logger
from zen_flow.machinery.clock import Clock
from zen_flow.machinery.ratelimit import TokenBucket

EVENTS = Resource("", "v1", "events")
COMPONENT = "zen-flow"
_MAX_MESSAGE = 1024  # what the apiserver accepts for a core/v1 Event message
_MAX_NAME = 253
# client-go's correlator: repeats within 10 minutes aggregate, remembered in an LRU of 4,096 events.
AGGREGATE_SECONDS = 600.0
_REMEMBERED = 4096

log = get_logger(__name__)


@dataclass(frozen=True)
class _Target:
    """What an Event says about its flow. Queued events keep only this, not the flow: up to 1,000 waiting
    events would otherwise pin as many old versions of 20-step flows (~30 KB each) in memory."""

    namespace: str
    name: str
    uid: str
    resource_version: str

    @classmethod
    def of(cls, flow: JobFlow) -> _Target:
        meta = flow.metadata
        return cls(meta.namespace, meta.name, meta.uid, meta.resource_version)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class _Pending:
    target: _Target
    type: str
    reason: str
    message: str


@dataclass
class _Sent:
    """An Event already in the apiserver, to fold its repeats into."""

    name: str
    count: int
    at: float  # monotonic time of the last send


_Key = tuple[str, str, str, str, str]  # namespace, flow uid, type, reason, message


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
        self._pending: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=max_pending)
        self._skip = skip
        self._sent: OrderedDict[_Key, _Sent] = OrderedDict()
        self.dropped = 0

    def emit(self, flow: JobFlow, type_: str, reason: str, message: str) -> None:
        """Queue an event (type_ "Normal" or "Warning"). Never blocks, never raises."""
        if reason in self._skip:
            return
        try:
            self._pending.put_nowait(_Pending(_Target.of(flow), type_, reason, message))
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("event dropped: queue full", flow=flow.key, reason=reason)

    async def run(self) -> None:
        """Send queued events, one at a time, forever."""
        while True:
            item = await self._pending.get()
            await self._send(item.target, item.type, item.reason, item.message)

    async def record(self, flow: JobFlow, type_: str, reason: str, message: str) -> None:
        """Send one event now. Errors are logged and swallowed."""
        await self._send(_Target.of(flow), type_, reason, message)

    async def _send(self, target: _Target, type_: str, reason: str, message: str) -> None:
        message = message[:_MAX_MESSAGE]
        key = (target.namespace, target.uid, type_, reason, message)
        now = self._clock.monotonic()
        try:
            seen = self._sent.get(key)
            if seen is not None and now - seen.at < AGGREGATE_SECONDS:
                try:
                    await self._repeat(target.namespace, seen)
                except NotFound:  # expired (the apiserver keeps Events an hour) or deleted: post anew
                    del self._sent[key]
                else:
                    seen.at = now
                    self._sent.move_to_end(key)
                    return
            name = f"{target.name[: _MAX_NAME - 17]}.{secrets.token_hex(8)}"
            body = self._body(target, name, type_, reason, message)
            await self._client.request(
                "POST", EVENTS.path(target.namespace), body=body, retry=False, limiter=self._limiter
            )
            self._remember(key, _Sent(name, 1, now))
        except KubeError as err:
            log.warning("event not recorded", flow=target.key, reason=reason, error=str(err))
        except Exception:  # a bug here must not take the process down for a diagnostic
            log.exception("event not recorded", flow=target.key, reason=reason)

    async def _repeat(self, namespace: str, seen: _Sent) -> None:
        patch = {"count": seen.count + 1, "lastTimestamp": format_time(self._clock.now())}
        await self._client.request(
            "PATCH",
            EVENTS.path(namespace, seen.name),
            body=patch,
            content_type="application/merge-patch+json",
            retry=False,
            limiter=self._limiter,
        )
        seen.count += 1

    def _remember(self, key: _Key, sent: _Sent) -> None:
        self._sent[key] = sent
        if len(self._sent) > _REMEMBERED:
            self._sent.popitem(last=False)

    def _body(self, meta: _Target, name: str, type_: str, reason: str, message: str) -> dict[str, object]:
        stamp = format_time(self._clock.now())
        return {
            "metadata": {"name": name, "namespace": meta.namespace},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": meta.name,
                "namespace": meta.namespace,
                "uid": meta.uid,
                "resourceVersion": meta.resource_version,
            },
            "type": type_,
            "reason": reason,
            "message": message,
            "source": {"component": COMPONENT, "host": self._instance},
            "reportingComponent": COMPONENT,
            "reportingInstance": self._instance,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
