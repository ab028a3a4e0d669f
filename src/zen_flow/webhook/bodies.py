"""The request bodies the webhook holds: each at most `max_body` bytes, all together at most `limit`.

A review's body is held from its first byte to the answer (the review reads it throughout). Each body was
bounded (3 MiB, an update of two large flows), but not their sum: 120 connections that each sent a
3 MiB body but its last 10 bytes grew the process from 72 to 591 MB within 2 s, past the pod's 384 MiB,
and the webhook shares its process with the reconciler. So a body takes its size out of a budget before
a byte of it is read: its Content-Length, or `max_body` when the length is not known beforehand
(chunked, or compressed: aiohttp hands over the decompressed bytes), the unused part given back once it
is in. A request the budget cannot cover is answered 503 with `Retry-After: 1` at once (`Shed`), unread,
and the process keeps its memory: the apiserver calls again a second later, within the call's timeout
(tests/integration/test_admission.py), and fails that one write only if the budget stays full. The
budget is given back once the answer is made, whatever happened meanwhile (answered, timed out, client
gone, review failed).

The body is read in the pieces the connection delivers, joined once at the end, instead of by
aiohttp's `request.read()`, which grows a bytearray as the body comes (over-allocating) and copies it
into bytes at the end: 20 bodies of 3 MiB sent but for their last bytes left the process ~80 MB above
idle against ~90 MB. What stays after such a burst is free C heap, not live objects: the controller's
trim (controller/memory.py, every 30 s) gave back all of it (~230 MB to ~75 MB after 120 such clients).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from zen_flow.webhook.pressure import LoadMetrics, Refusals

# An UPDATE review carries the object and the old object, each up to etcd's ~1.5 MiB: 3 MiB plus the
# envelope. (aiohttp's default of 1 MiB would reject large flows' updates with 413.)
MAX_BODY_BYTES = 3 * 1024 * 1024 + 64 * 1024
# About twenty of the largest bodies at once, or ~170 500-step flows' reviews (375 KB each): more than
# the review threads get through before the apiserver's timeout (5 s), and ~17% of the 384 MiB limit.
BODY_BUDGET_BYTES = 64 * 1024 * 1024
RETRY_AFTER_SECONDS = 1


class Shed(Exception):
    """The request was not read: the bodies held already use the budget."""


class SlowBody(Exception):
    """The body did not arrive within the deadline."""


class BrokenBody(Exception):
    """The body was cut off (the client went away, or its connection was closed for a newcomer) or its
    encoding is broken."""


class BodyBudget:
    def __init__(
        self,
        limit: int = BODY_BUDGET_BYTES,
        *,
        max_body: int = MAX_BODY_BYTES,
        timeout: float | None = None,
        metrics: LoadMetrics | None = None,
        read: Callable[[web.Request], None] = lambda request: None,
    ) -> None:
        """`timeout`: the seconds a body may take to arrive (None: no bound); `read`: told when a body is
        in (webhook/connections.py: its connection keeps its place from then on)."""
        self.limit = limit
        self.max_body = max_body
        self.held = 0
        self._timeout = timeout
        self._metrics = metrics
        self._read = read
        self._refusals = Refusals("admission request refused unread: the request bodies held use the budget")

    @asynccontextmanager
    async def body(self, request: web.Request) -> AsyncIterator[bytes]:
        """The whole body, held within the budget for the `async with`. Raises `Shed` when the budget
        cannot cover it, 413 past `max_body`, `SlowBody` when it does not arrive within `timeout`,
        `BrokenBody` when it does not arrive whole."""
        size = request.content_length
        if size is not None and size > self.max_body:
            raise web.HTTPRequestEntityTooLarge(self.max_body, size)
        known = size is not None and request.headers.get(hdrs.CONTENT_ENCODING, "identity") == "identity"
        taken = size if known and size is not None else self.max_body
        if self.held + taken > self.limit:
            self._refusals.note(held=self.held, limit=self.limit, body=taken)
            if self._metrics is not None:
                self._metrics.review_shed("body_budget")
            raise Shed(f"{self.held} bytes of request bodies held, {taken} more would pass {self.limit}")
        self._take(taken)
        try:
            body = await self._receive(request)
            self._take(len(body) - taken)  # the part of `max_body` an unknown length did not need
            taken = len(body)
            self._read(request)
            yield body
        finally:
            self._take(-taken)

    async def _receive(self, request: web.Request) -> bytes:
        pieces: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self._timeout):
                while piece := await request.content.readany():
                    size += len(piece)
                    if size > self.max_body:
                        raise web.HTTPRequestEntityTooLarge(self.max_body, size)
                    pieces.append(piece)
        except TimeoutError:
            raise SlowBody(f"{size} bytes in {self._timeout:g}s") from None
        except (ConnectionError, HttpProcessingError) as error:
            raise BrokenBody(str(error) or type(error).__name__) from None
        return b"".join(pieces)

    def _take(self, size: int) -> None:
        if size:
            self.held += size
            if self._metrics is not None:
                self._metrics.body_bytes(self.held)


def shed_response(reason: str) -> web.Response:
    """503 with Retry-After, closing the connection (the unread body is not drained first)."""
    response = web.json_response(
        {"error": f"the webhook is busy: {reason}; retry"},
        status=503,
        headers={hdrs.RETRY_AFTER: str(RETRY_AFTER_SECONDS)},
    )
    response.force_close()
    return response
