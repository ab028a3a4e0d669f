"""How many requests the client has in flight: a bound in all, and a share of it per namespace.

The bound keeps the connection pool small (aiohttp opens a connection per request in flight). Without a
share, one tenant could hold all of it: Job creates in a namespace whose admission webhook answers slowly
(10-30 s, its timeout) fill the slots, and every other tenant's creates and status writes wait behind
them. With the share, a namespace's requests past it wait in that namespace's own line, outside the bound,
so a quarter of the slots always stays open to the others (three quarters: a fan-out's 16 creates and
another flow's requests of the same namespace fit in its share).
"""

from __future__ import annotations

import asyncio

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
    __slots__ = ("gate", "users")

    def __init__(self, size: int) -> None:
        self.gate = asyncio.Semaphore(size)
        self.users = 0  # requests holding or waiting for a slot of this namespace


class RequestSlots:
    """At most `total` requests in flight, of them at most `share` in one namespace (default: three
    quarters)."""

    def __init__(self, total: int, share: int | None = None) -> None:
        self._all = asyncio.Semaphore(total)
        self._share = share if share is not None else max(1, total - total // 4)
        self._namespaces: dict[str, _Share] = {}

    async def acquire(self, path: str | None) -> str | None:
        """Wait for a slot for a request to `path` (None: outside any namespace's share); returns what
        `release` needs."""
        namespace = namespace_of_path(path) if path is not None else None
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
            await self._all.acquire()
        except BaseException:
            if namespace is not None:
                self._leave(namespace, self._namespaces[namespace], held=True)
            raise
        return namespace

    def release(self, namespace: str | None) -> None:
        self._all.release()
        if namespace is not None:
            self._leave(namespace, self._namespaces[namespace], held=True)

    def _leave(self, namespace: str, share: _Share, *, held: bool) -> None:
        if held:
            share.gate.release()
        share.users -= 1
        if share.users == 0:
            del self._namespaces[namespace]  # idle namespaces are forgotten: tenants come and go
