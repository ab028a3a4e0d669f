"""Bounds on the webhook server's connections: a cap on how many, and deadlines for slow clients.

aiohttp times out idle keep-alive connections only after a response; a connection that never sends a
complete request (opened and left idle, or "slow loris": headers dribbled in a byte at a time) is kept
for ever, and enough of them exhaust the process's file descriptors. Found with 100 such TLS
connections still open after 90 s. Here every connection is wrapped:

- at most `max_connections` are open at once; one more is closed at once (the apiserver retries a
  webhook call on a new connection, and it opens only a few);
- once open, a connection has `request_timeout` seconds to deliver a complete request head, and after
  each response `keepalive_timeout` seconds for the next one (whether or not bytes trickle in); a
  body is read within `request_timeout` too (`read_body`);
- the TLS handshake has `handshake_timeout` seconds (given to `create_server`).

The apiserver calls a webhook with a 10 s timeout of its own, so a legitimate request is never near
these limits.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int = 128
    request_timeout: float = 10.0
    handshake_timeout: float = 10.0
    keepalive_timeout: float = 30.0


class ConnectionGuard:
    """Wraps aiohttp's protocol factory (`wrap`); `middleware` tells it when a request head arrived."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.open = 0
        self.refused = 0
        self.timed_out = 0
        self._by_transport: weakref.WeakKeyDictionary[Any, _Guarded] = weakref.WeakKeyDictionary()

    def wrap(self, factory: Callable[[], Any]) -> Callable[[], asyncio.Protocol]:
        return lambda: _Guarded(factory(), self)

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        guarded = self._by_transport.get(request.transport) if request.transport is not None else None
        if guarded is not None:
            guarded.request_started()
        try:
            return await handler(request)
        finally:
            if guarded is not None:
                guarded.request_finished()

    async def read_body(self, request: web.Request) -> bytes:
        """The request body, within the request deadline (a client that sends its body slowly is cut)."""
        async with asyncio.timeout(self.limits.request_timeout):
            return await request.read()

    def _register(self, transport: Any, guarded: _Guarded) -> None:
        self._by_transport[transport] = guarded


class _Guarded(asyncio.Protocol):
    """One connection: delegates to aiohttp's RequestHandler and enforces the deadline and the cap."""

    def __init__(self, inner: asyncio.Protocol, guard: ConnectionGuard) -> None:
        self._inner = inner
        self._guard = guard
        self._transport: asyncio.BaseTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        guard = self._guard
        if guard.open >= guard.limits.max_connections:
            guard.refused += 1
            transport.abort()  # type: ignore[attr-defined]
            return
        guard.open += 1
        self._counted = True
        self._transport = transport
        guard._register(transport, self)
        self._arm(guard.limits.request_timeout)
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
        if not self._counted:
            return
        self._counted = False
        self._guard.open -= 1
        self._inner.connection_lost(exc)

    def request_started(self) -> None:
        self._disarm()

    def request_finished(self) -> None:
        self._arm(self._guard.limits.keepalive_timeout)

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
            self._guard.timed_out += 1
            self._transport.abort()  # type: ignore[attr-defined]
