"""Delivering CloudEvents to the operator's sink (`--cloudevents-sink`): best effort, at least once.

Reconcile calls `publish()`, which only queues: a slow or dead sink must never slow a reconcile, let
alone fail it. One task (`run()`) posts the queued events in order, one at a time. A connection error, a
timeout, a 5xx or a 429 is retried with backoff for up to GIVE_UP_SECONDS, then the event is dropped; any
other answer but a 2xx drops it at once (the receiver refused it: sending it again would not help). The
queue holds at most `max_pending` events and drops the oldest when full, so a dead sink costs a bounded
amount of memory. The log says when the sink starts failing (no answer, a 5xx, a 429) and when it
recovers, not once per event; refusals have a line of their own, at most one a minute, with their count.
The metrics count every event (docs/METRICS.md).

Only the leader reconciles, so only the leader publishes; a standby's sender waits on an empty queue.
On shutdown the leader flushes the queue before it releases its lease (`flush`), and then sends nothing
more: a new leader never sends while the old one still does. With `--shards` each replica publishes the
transitions of the flows it reconciles; a shard handed over releases its Lease once its reconciles
ended, not once their events went out, so for a moment two replicas may send events of one flow (each
with its own id; receivers deduplicate by id, as after a failover).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Mapping

import aiohttp
import tenacity

from zen_flow.addresses import shown_url
from zen_flow.config import Settings
from zen_flow.controller.metrics import Metrics
from zen_flow.logging import get_logger
from zen_flow.machinery.clock import Clock, timeout
from zen_flow.planner.cloud_events import CloudEvent

log = get_logger(__name__)

MAX_PENDING = 1000
# How long one event is retried before it is dropped; its attempts then cost the queue behind it at most
# this plus one backoff and one request timeout.
GIVE_UP_SECONDS = 60.0
_FIRST_WAIT, _MAX_WAIT = 0.5, 10.0
# An answer's body is read (to reuse the connection) only up to this size: a sink cannot make the
# controller hold a large answer in memory.
_MAX_ANSWER = 64 * 1024
# At most one log line about refused events this often (a receiver that refuses one type of event and
# takes the others would otherwise write a line per event).
REFUSAL_LOG_SECONDS = 60.0

# POST(url, headers, body) -> the answer's status code; raises OSError, aiohttp.ClientError or
# TimeoutError when no answer came.
Post = Callable[[str, Mapping[str, str], bytes], Awaitable[int]]


class _Failure(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class _Retryable(_Failure):
    """No answer, a 5xx or a 429: sending again may work."""


class _Refused(_Failure):
    """An answer that sending again would not change (a 4xx but 429, a redirect)."""


def _attempt_error(status: int) -> tuple[str, bool] | None:
    """(failure reason, retry?) of an answer; None for a 2xx."""
    if 200 <= status < 300:
        return None
    if status == 429:
        return "throttled", True
    if status >= 500:
        return "server_error", True
    return "refused", False


def configured_sink(settings: Settings, clock: Clock, metrics: Metrics) -> CloudEventSink | None:
    """The sink `--cloudevents-sink` and its companions ask for; None when it is not set."""
    if not settings.cloudevents_sink:
        return None
    sink = CloudEventSink(
        settings.cloudevents_sink,
        clock=clock,
        metrics=metrics,
        request_timeout=settings.cloudevents_timeout,
        ca_file=settings.cloudevents_ca_file,
        step_events=settings.cloudevents_step_events,
    )
    metrics.cloudevents_queue.set_function(lambda: sink.depth)
    log.info("sending CloudEvents", sink=sink.where)
    return sink


class CloudEventSink:
    def __init__(
        self,
        url: str,
        *,
        clock: Clock,
        metrics: Metrics,
        post: Post | None = None,
        request_timeout: float = 5.0,
        ca_file: str = "",
        step_events: bool = True,
        max_pending: int = MAX_PENDING,
        give_up: float = GIVE_UP_SECONDS,
    ) -> None:
        """`step_events`: whether the sink takes the step.* types (`--cloudevents-step-events`); the
        controller leaves them out before they are queued (controller/announcements.py)."""
        self._url = url
        self.step_events = step_events
        # What the log says of the sink: never its path, query or user info, which may hold a token.
        self.where = shown_url(url)
        self._clock = clock
        self._metrics = metrics
        self._http: _HttpPost | None = None
        if post is None:  # tests pass a fake transport
            self._http = _HttpPost(request_timeout, ca_file)
            post = self._http.post
        self._post = post
        self._pending: deque[CloudEvent] = deque()
        self._delivery: asyncio.Task[None] | None = None  # the event being sent
        self._stopped = False  # flushed on shutdown: nothing more is sent
        self._max_pending = max_pending
        self._give_up = give_up
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()  # nothing to send: the queue is empty, or the sink stopped
        self._idle.set()
        self._failing = 0  # retryable failed attempts since the last delivery (0: healthy)
        self._refused = 0  # refusals not logged yet
        self._next_refusal_line = 0.0  # monotonic time before which a refusal is not logged

    @property
    def depth(self) -> int:
        """Events waiting, the one being sent included."""
        return len(self._pending) + (1 if self._delivery is not None else 0)

    def publish(self, event: CloudEvent) -> None:
        """Queue an event. Never blocks, never raises; drops the oldest waiting event when full, and
        every event once the sink was flushed for shutdown."""
        if self._stopped:
            self._metrics.cloudevents_dropped.labels("shutdown").inc()
            return
        if len(self._pending) >= self._max_pending:
            self._pending.popleft()
            self._metrics.cloudevents_dropped.labels("queue_full").inc()
        self._pending.append(event)
        self._idle.clear()
        self._wake.set()

    async def run(self) -> None:
        """Send queued events in order, until `flush` stops the sink."""
        while not self._stopped:
            if not self._pending:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            event = self._pending.popleft()
            self._delivery = asyncio.ensure_future(self._deliver(event))
            try:
                await self._delivery
            except asyncio.CancelledError:
                # Only `flush` cancels a delivery (it gave up on the event, counted there); a
                # cancellation of run() itself goes on.
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
            except Exception:  # a bug here must not take the process down for a notification
                log.exception("cloudevent not sent", type=event.type)
                self._metrics.cloudevents_dropped.labels("error").inc()
            finally:
                self._delivery = None

    async def flush(self, seconds: float) -> None:
        """On shutdown, before the lease is released: wait up to `seconds` for the queue to empty, then
        stop. What is left is counted dropped and never sent (the event being sent is abandoned): once
        the lease is free, a new leader sends, and the old one must be silent by then. A flush during
        another returns when either stops the sink (the earlier budget ends first); one after it returns
        at once."""
        delivery = None
        try:
            if not self._stopped:
                with contextlib.suppress(TimeoutError):
                    async with timeout(self._clock, seconds):
                        await self._idle.wait()
        finally:  # cancelled too: the process is going, and must send nothing once the lease is free
            if not self._stopped:
                delivery = self._stop()
        if delivery is not None:
            await asyncio.wait({delivery})

    def _stop(self) -> asyncio.Task[None] | None:
        """Stop sending: count what is left dropped, abandon the event being sent (returned, cancelled),
        end `run()` and wake every other flush."""
        if left := self.depth:
            self._metrics.cloudevents_dropped.labels("shutdown").inc(left)
            log.warning("cloudevents not sent before shutdown", events=left, sink=self.where)
        self._stopped = True
        self._pending.clear()
        delivery = self._delivery
        if delivery is not None:
            delivery.cancel()
        self._wake.set()
        self._idle.set()
        return delivery

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def _deliver(self, event: CloudEvent) -> None:
        deadline = self._clock.monotonic() + self._give_up
        retrying = tenacity.AsyncRetrying(
            stop=lambda _state: self._clock.monotonic() >= deadline,
            wait=_backoff,
            retry=tenacity.retry_if_exception_type(_Retryable),
            sleep=self._clock.sleep,
            reraise=True,
        )
        headers, body = event.headers(), event.data
        try:
            async for attempt in retrying:
                with attempt:
                    await self._attempt(headers, body)
        except _Retryable as err:
            self._metrics.cloudevents_dropped.labels("gave_up").inc()
            log.debug("cloudevent dropped after retries", type=event.type, error=str(err))
        except _Refused as err:
            self._metrics.cloudevents_dropped.labels("refused").inc()
            self._log_refusal(event, str(err))
        else:
            self._metrics.cloudevents_sent.inc()
            if self._failing:
                log.info("cloudevents sink recovered", sink=self.where, failed_attempts=self._failing)
                self._failing = 0

    async def _attempt(self, headers: Mapping[str, str], body: bytes) -> None:
        try:
            status = await self._post(self._url, headers, body)
        except TimeoutError as err:
            self._failed("timeout", f"no answer: {err!r}")
            raise _Retryable("timeout", "no answer in time") from None
        except (OSError, aiohttp.ClientError) as err:
            self._failed("connection", repr(err))
            raise _Retryable("connection", repr(err)) from None
        outcome = _attempt_error(status)
        if outcome is None:
            return
        reason, retry = outcome
        if not retry:
            # An answer: the sink is up. Not a failure of the sink's, so it neither starts nor ends a
            # "failing" streak (a receiver that refuses some events would log two lines for each).
            self._metrics.cloudevents_failed.labels(reason).inc()
            raise _Refused(reason, f"HTTP {status}")
        self._failed(reason, f"HTTP {status}")
        raise _Retryable(reason, f"HTTP {status}")

    def _log_refusal(self, event: CloudEvent, detail: str) -> None:
        self._refused += 1
        now = self._clock.monotonic()
        if now < self._next_refusal_line:
            log.debug("cloudevent refused by the sink", type=event.type, error=detail)
            return
        log.warning(
            "cloudevents refused by the sink; dropped, not sent again",
            sink=self.where,
            error=detail,
            type=event.type,
            refused=self._refused,
        )
        self._refused = 0
        self._next_refusal_line = now + REFUSAL_LOG_SECONDS

    def _failed(self, reason: str, detail: str) -> None:
        self._metrics.cloudevents_failed.labels(reason).inc()
        if not self._failing:
            log.warning(
                "cloudevents sink failing; retrying with backoff, dropping what waits too long",
                sink=self.where,
                error=detail,
            )
        self._failing += 1


def _backoff(state: tenacity.RetryCallState) -> float:
    # 0.5 s, 1 s, 2 s ... up to 10 s, each between half and all of it: a fleet does not retry in step.
    base = min(_FIRST_WAIT * 2.0 ** (state.attempt_number - 1), _MAX_WAIT)
    return base * (0.5 + random.random() / 2)


class _HttpPost:
    """The real transport: one aiohttp session (made on first use, on the running loop), one connection,
    no redirects followed (the operator named the address; nothing else is dialled)."""

    def __init__(self, request_timeout: float, ca_file: str) -> None:
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._ssl = ssl.create_default_context(cafile=ca_file) if ca_file else True
        self._session: aiohttp.ClientSession | None = None

    async def post(self, url: str, headers: Mapping[str, str], body: bytes) -> int:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=1),
                # A sink's cookies are not kept: every POST is the same, and a sink setting cookies
                # must not grow the controller's memory or see state across events.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        async with self._session.post(url, data=body, headers=dict(headers), allow_redirects=False) as resp:
            if resp.content_length is not None and resp.content_length <= _MAX_ANSWER:
                await resp.read()  # read, the connection serves the next event; else it is closed
            return resp.status

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
