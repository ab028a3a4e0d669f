"""How many requests the client has in flight: a bound in all, and a share of it per namespace.

The bound keeps the connection pool small (aiohttp opens a connection per request in flight). Without a
share, one tenant could hold all of it: Job creates in a namespace whose admission webhook answers slowly
(10-30 s, its timeout) fill the slots, and every other tenant's creates and status writes wait behind
them. With the share, a namespace's requests past it wait in that namespace's own line, outside the bound,
so a quarter of the slots always stays open to the others (three quarters: a fan-out's 16 creates and
another flow's requests of the same namespace fit in its share).

The share alone leaves a quarter to the others only while one namespace is slow: two at once (a webhook
slow for both, each with fan-outs) would hold every slot between them. So a quarter of the slots is a
reserve: a namespace with a request in flight sends another only while more than the reserve is free,
and a namespace with none in flight takes any free slot. Namespaces in flight take the last quarter only
for a first request each, and one namespace alone still has its share (its share ends where the reserve
begins). Requests outside any namespace's share (the Event sender, cluster-wide reads) take any free
slot: they serve every namespace.

No wait here can deadlock: a slot is held only by a request on the wire, which never waits for another
slot and ends within the client's timeout; a request held back by the reserve waits for requests in flight
to end (at the latest its own namespace's, and then it has none in flight).
"""

from __future__ import annotations

import asyncio
from collections import deque

NAMESPACED = "/namespaces/"


def namespace_of_path(path: str) -> str | None:
    """The namespace an API path is in (`/apis/batch/v1/namespaces/a/jobs` -> `a`), or None (cluster-scoped:
    a Namespace object itself counts as in its namespace)."""
    at = path.find(NAMESPACED)
    if at < 0:
        return None
    start = at + len(NAMESPACED)
    end = path.find("/", start)
    return path[start:] if end < 0 else path[start:end]


class _Share:
    __slots__ = ("gate", "held", "users")

    def __init__(self, size: int) -> None:
        self.gate = asyncio.Semaphore(size)
        self.held = 0  # requests of this namespace in flight (holding a slot of the bound)
        self.users = 0  # requests holding or waiting for a slot of this namespace


class RequestSlots:
    """At most `total` requests in flight, of them at most `share` in one namespace (default: three
    quarters); a namespace with requests in flight sends another only while more than `reserve` slots are
    free (default: a quarter, at least one)."""

    def __init__(self, total: int, share: int | None = None, reserve: int | None = None) -> None:
        self._free = total
        self._share = share if share is not None else max(1, total - total // 4)
        self._reserve = reserve if reserve is not None else max(1, total // 4)
        self._namespaces: dict[str, _Share] = {}
        # Requests waiting for a slot of the bound, first come first: (its namespace's share, woken once
        # given a slot). Every request here may not take a slot now; the others took one.
        self._waiting: deque[tuple[_Share | None, asyncio.Future[None]]] = deque()

    async def acquire(self, path: str | None) -> str | None:
        """Wait for a slot for a request to `path` (None: outside any namespace's share); returns what
        `release` needs."""
        namespace = namespace_of_path(path) if path is not None else None
        share: _Share | None = None
        if namespace is not None:
            share = self._namespaces.get(namespace)
            if share is None:
                share = self._namespaces[namespace] = _Share(self._share)
            share.users += 1
            try:
                await share.gate.acquire()
            except BaseException:
                self._leave(namespace, share, held=False)
                raise
        try:
            await self._take(share)
        except BaseException:
            if namespace is not None and share is not None:
                self._leave(namespace, share, held=True)
            raise
        return namespace

    def release(self, namespace: str | None) -> None:
        share = self._namespaces[namespace] if namespace is not None else None
        self._give_back(share)
        if namespace is not None and share is not None:
            self._leave(namespace, share, held=True)

    async def _take(self, share: _Share | None) -> None:
        if self._may_take(share):
            self._taken(share)
            return
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (share, woken)
        self._waiting.append(entry)
        try:
            await woken
        except BaseException:
            if woken.done() and not woken.cancelled():
                self._give_back(share)  # given a slot as it was cancelled: pass it on
            elif entry in self._waiting:  # (a wake pass may have dropped it already)
                self._waiting.remove(entry)
            raise

    def _may_take(self, share: _Share | None) -> bool:
        if self._free <= 0:
            return False
        return share is None or share.held == 0 or self._free > self._reserve

    def _taken(self, share: _Share | None) -> None:
        self._free -= 1
        if share is not None:
            share.held += 1

    def _give_back(self, share: _Share | None) -> None:
        self._free += 1
        if share is not None:
            share.held -= 1
        # Wake, first come first, every waiting request that may now take a slot (a namespace held back
        # by the reserve keeps its place; one with nothing in flight goes ahead of it). One pass.
        if not self._waiting:
            return
        kept: deque[tuple[_Share | None, asyncio.Future[None]]] = deque()
        while self._waiting and self._free > 0:
            entry = self._waiting.popleft()
            if entry[1].done():
                continue  # cancelled while waiting: it takes nothing
            if self._may_take(entry[0]):
                self._taken(entry[0])
                entry[1].set_result(None)
            else:
                kept.append(entry)
        kept.extend(self._waiting)
        self._waiting = kept

    def _leave(self, namespace: str, share: _Share, *, held: bool) -> None:
        if held:
            share.gate.release()
        share.users -= 1
        if share.users == 0:
            del self._namespaces[namespace]  # idle namespaces are forgotten: tenants come and go
