"""Bounds on the webhook server's connections: how many in all and from one address, and deadlines for
slow clients.

aiohttp times out idle keep-alive connections only after a response; a connection that never sends a
complete request (opened and left idle, or "slow loris": headers dribbled in a byte at a time) is kept
for ever, and enough of them exhaust the process's file descriptors. Found with 100 such TLS
connections still open after 90 s. Here every connection is wrapped:

- once open, a connection has `request_timeout` seconds to deliver a complete request head, and after
  each response `keepalive_timeout` seconds for the next one (whether or not bytes trickle in); a
  body is read within `request_timeout` too (webhook/bodies.py);
- the TLS handshake has `handshake_timeout` seconds (given to `create_server`);
- at most `max_connections` are open at once, and `max_connections_per_ip` from one address.

Which connection gives way at a cap. Refusing the newcomer, as the server once did, let one client that
opened 128 connections and sent `GET /healthz` on each every 20 s (within the keep-alive) keep every
other client out for good, the apiserver too, and with `failurePolicy: Fail` every JobFlow write failed.
So a connection holds its place only while the server owes it an answer: from its request's body read
to the response. While the server waits on the client (for a request head, for the rest of a body, for
the next request on a keep-alive connection) a newcomer may take its place: at a cap, the connection
that has waited on its client longest is closed for the newcomer, which is refused only when every
connection under the cap has a request under review. A connection's wait starts when it opens, when a
request head arrives, and when a response is sent, so one that sends a request now is not the next to
go. Holding places thus takes requests under review, which the body budget and the review threads bound
and answer within seconds. At the total cap the longest-waiting connection is taken from the address
holding the most connections: an idle connection closed just as its client sends on it fails that
request (Go's client does not resend a POST it has written), and the apiserver's few are then not the
first to go; Go's pool reuses its most recently used idle connection first, so the longest-waiting one
is the least likely to be in use.

The per-address cap is a second line, against one address keeping its connections busy with requests.
The apiserver reaches the webhook from one address or a few (one per apiserver, or a konnectivity
agent's), with a connection per call in flight: a flood of `kubectl create --dry-run=server` makes it
open as many. A cap low enough to matter against a client that shares an address with nobody would also
refuse a busy apiserver, so it is three quarters of the total by default (a flood of 64 reviews at once
from one address and one more caller beside it, as in the measurement of webhook/review_threads.py, stay
under it), and a newcomer over it takes its own address's longest-waiting connection. Closing waiting
connections is the defence that holds whoever the client is; client certificates (who may call at all)
are another matter.

The apiserver calls a webhook with a 10 s timeout of its own and reconnects when a keep-alive
connection was closed, so a legitimate request is never near these limits.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from zen_flow.webhook.pressure import LoadMetrics, Refusals

TOTAL = "total"
PER_IP = "per_ip"


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int = 128
    max_connections_per_ip: int = 96  # 0: no cap per address
    request_timeout: float = 10.0
    handshake_timeout: float = 10.0
    keepalive_timeout: float = 30.0


class ConnectionGuard:
    """Wraps aiohttp's protocol factory (`wrap`); `middleware` tells it when a request head arrived and
    when its response is out, and `body_read` when its body is in."""

    def __init__(self, limits: ConnectionLimits, metrics: LoadMetrics | None = None) -> None:
        self.limits = limits
        self.open = 0
        self.refused = 0
        self.evicted = 0
        self.timed_out = 0
        self._metrics = metrics
        self._per_ip: Counter[str] = Counter()
        # The connections the server waits on, the longest-waiting first (a dict keeps insertion order).
        self._waiting: dict[_Guarded, None] = {}
        self._by_transport: weakref.WeakKeyDictionary[Any, _Guarded] = weakref.WeakKeyDictionary()
        self._refusals = Refusals(
            "webhook connection refused: every connection under the limit has a request under review"
        )

    def wrap(self, factory: Callable[[], Any]) -> Callable[[], asyncio.Protocol]:
        return lambda: _Guarded(factory(), self)

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        guarded = self._find(request)
        if guarded is not None:
            guarded.request_started()
            self._wait_on(guarded)  # now for its body, from now on
        try:
            return await handler(request)
        finally:
            if guarded is not None:
                guarded.request_finished()
                self._wait_on(guarded)

    def body_read(self, request: web.Request) -> None:
        """The request's body is in: its connection keeps its place until the response."""
        guarded = self._find(request)
        if guarded is not None:
            self._waiting.pop(guarded, None)

    def _find(self, request: web.Request) -> _Guarded | None:
        return self._by_transport.get(request.transport) if request.transport is not None else None

    def _admit(self, guarded: _Guarded, transport: Any) -> bool:
        """Count a new connection in, closing the connection that has waited longest when a cap is
        reached; False (refused) when every connection under that cap has a request under review."""
        limits = self.limits
        limit: str | None = None
        victim: _Guarded | None = None
        if limits.max_connections_per_ip and self._per_ip[guarded.ip] >= limits.max_connections_per_ip:
            limit = PER_IP
            victim = next((c for c in self._waiting if c.ip == guarded.ip), None)
        elif self.open >= limits.max_connections:
            limit = TOTAL
            victim = self._longest_waiting_of_largest()
        if limit is not None:
            if victim is None:
                self.refused += 1
                if self._metrics is not None:
                    self._metrics.connection_refused(limit)
                self._refusals.note(limit=limit, peer=guarded.ip, open=self.open)
                return False
            self.evicted += 1
            if self._metrics is not None:
                self._metrics.connection_evicted(limit)
            victim.close()
        self._count(guarded, +1)
        self._by_transport[transport] = guarded
        self._waiting[guarded] = None
        return True

    def _longest_waiting_of_largest(self) -> _Guarded | None:
        """The connection that has waited longest among those of the address holding the most: the
        apiserver's few keep-alive connections are not the first to go while another address holds
        more (an idle connection closed just as the apiserver sends on it fails that call)."""
        most = max((self._per_ip[c.ip] for c in self._waiting), default=0)
        return next((c for c in self._waiting if self._per_ip[c.ip] == most), None)

    def _wait_on(self, guarded: _Guarded) -> None:
        """The server waits on this connection's client from now on: to the back of the line."""
        if guarded.counted:
            self._waiting.pop(guarded, None)
            self._waiting[guarded] = None

    def _leave(self, guarded: _Guarded) -> None:
        self._waiting.pop(guarded, None)
        self._count(guarded, -1)

    def _count(self, guarded: _Guarded, step: int) -> None:
        self.open += step
        self._per_ip[guarded.ip] += step
        if not self._per_ip[guarded.ip]:
            del self._per_ip[guarded.ip]
        if self._metrics is not None:
            self._metrics.connections_open(self.open)

    def _expired(self) -> None:
        self.timed_out += 1
        if self._metrics is not None:
            self._metrics.connection_timed_out()


class _Guarded(asyncio.Protocol):
    """One connection: delegates to aiohttp's RequestHandler and enforces the deadlines and the caps."""

    def __init__(self, inner: asyncio.Protocol, guard: ConnectionGuard) -> None:
        self._inner = inner
        self._guard = guard
        self._transport: asyncio.BaseTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.ip = ""
        self.counted = False  # in the guard's counts (from admission until closed)
        self._started = False  # handed to aiohttp (which must then hear of its end)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self.ip = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if not self._guard._admit(self, transport):
            transport.abort()  # type: ignore[attr-defined]
            return
        self.counted = self._started = True
        self._transport = transport
        self._arm(self._guard.limits.request_timeout)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._uncount()
        if self._started:
            self._started = False
            self._inner.connection_lost(exc)

    def close(self) -> None:
        """Closed for a newcomer: out of the counts now (aiohttp hears of it when the transport is gone)."""
        self._disarm()
        self._uncount()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.abort()  # type: ignore[attr-defined]

    def request_started(self) -> None:
        self._disarm()

    def request_finished(self) -> None:
        self._arm(self._guard.limits.keepalive_timeout)

    def _uncount(self) -> None:
        if self.counted:
            self.counted = False
            self._guard._leave(self)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = asyncio.get_running_loop().call_later(seconds, self._expire)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        if self._transport is not None and not self._transport.is_closing():
            self._guard._expired()
            self._transport.abort()  # type: ignore[attr-defined]
