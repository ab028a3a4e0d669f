"""The web UI's live updates (`zen-flow ui`): each page listens to a stream of Server-Sent Events fed by a
watch of the flows it shows (the namespace's, or the one flow: cli/watcher.py's `changes`, as `zen-flow
watch` follows them), and at a change fetches itself again and swaps in its live part (cli/ui_pages.py's
SCRIPT).

The stream says only that something changed (`event: changed`), never what: no tenant text reaches it,
so nothing in it needs escaping; and at most once every `interval` seconds (one second): the changes
that come in between make one notice, sent when the interval is over. Each notice makes the page fetch
itself, and a list page's fetch is a LIST of the namespace's flows (every namespace's with `?all=1`):
a flow changing every 200 ms must not cost five of them a second.

Resources are bounded: one watch per open stream, ended as soon as the page goes (aiohttp cancels the
handler when its connection is lost; a keep-alive comment every `heartbeat` seconds finds a peer that
vanished without a word), is hidden (its script closes the stream, and opens it again when shown) or
the server stops (`Streams.close`, at its shutdown: it would otherwise wait for the pages to go), and
at most `limit` streams at once: past it, or when the watch cannot go on (refused, the apiserver gone),
the stream is refused or ends, and the page falls back to reloading itself every few seconds (each
reload tries the stream again).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field

from aiohttp import web

from zen_flow.cli.watcher import Change, changes
from zen_flow.kube.client import KubeClient
from zen_flow.machinery.clock import Clock, SystemClock

MAX_STREAMS = 32  # a few browser tabs' worth; each holds one watch on the apiserver
HEARTBEAT_SECONDS = 25.0
NOTICE_INTERVAL = 1.0  # seconds between two notices of a stream, at the least
CHANGED = b"event: changed\ndata: changed\n\n"  # an event with no data is never dispatched
KEEP_ALIVE = b": keep-alive\n\n"
# resourceVersions the apiserver gives are opaque, in practice decimal: anything else starts with a LIST.
_VERSION = re.compile(r"[0-9]{1,24}")

Follow = Callable[[KubeClient, str | None, str | None, str], AsyncGenerator[Change]]


@dataclass
class Streams:
    """The open change streams (`open`), at most `limit`, and their watches; `follow` is the watch and
    `clock` paces the notices (both replaced in tests)."""

    follow: Follow = changes
    limit: int = MAX_STREAMS
    heartbeat: float = HEARTBEAT_SECONDS
    interval: float = NOTICE_INTERVAL
    clock: Clock = field(default_factory=SystemClock)
    open: int = 0
    watches: set[asyncio.Task[None]] = field(default_factory=set)

    async def close(self) -> None:
        """End every stream (the server stops: it would otherwise wait for the pages to go)."""
        for watch in self.watches:
            watch.cancel()


def since(request: web.Request) -> str:
    """The resourceVersion the page was made from (`?rv=`), where its watch starts: no change between
    the page's read and its stream is missed, and none is sent twice. "" when missing or malformed."""
    given = request.query.get("rv", "")
    return given if _VERSION.fullmatch(given) else ""


async def _watch(changed: asyncio.Event, follow: AsyncGenerator[Change], baseline: bool) -> None:
    """Set `changed` at every change `follow` sees; the first LIST is no change when it is the baseline
    (no version to start from), a later one (after 410 Gone) may hide any."""
    async with contextlib.aclosing(follow) as seen:
        async for change in seen:
            if change.kind == "listed" and baseline:
                baseline = False
                continue
            changed.set()


async def stream(
    request: web.Request,
    client: KubeClient,
    streams: Streams,
    namespace: str | None,
    name: str | None,
    headers: dict[str, str],
) -> web.StreamResponse:
    """`text/event-stream` for a page showing the flows of `namespace` (None: every namespace) or the one
    flow `name`, with `headers` (the server's security headers: sent before any event)."""
    if streams.open >= streams.limit:
        return web.Response(
            status=503,
            text=f"at most {streams.limit} pages follow changes at once: this one reloads by itself",
            headers=headers,
        )
    streams.open += 1
    watch: asyncio.Task[None] | None = None
    try:
        response = web.StreamResponse(headers={**headers, "Content-Type": "text/event-stream"})
        await response.prepare(request)
        start = since(request)
        changed = asyncio.Event()
        watch = asyncio.create_task(
            _watch(changed, streams.follow(client, namespace, name, start), baseline=not start)
        )
        streams.watches.add(watch)
        await _send(response, changed, watch, streams)
    finally:
        streams.open -= 1  # first: the place is free once the watch is told to end
        if watch is not None:
            streams.watches.discard(watch)
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)  # its error ended the stream: said
    return response


async def _send(
    response: web.StreamResponse, changed: asyncio.Event, watch: asyncio.Task[None], streams: Streams
) -> None:
    """A notice when something changed, at most one every `streams.interval` seconds (the changes seen
    meanwhile: one notice, once the interval is over), and a keep-alive comment when none came for
    `streams.heartbeat` seconds; until the watch ends or the page goes (a write to it fails, or the
    handler is cancelled, a wait for the interval included)."""
    clock = streams.clock
    sent: float | None = None  # when the last notice went
    while not watch.done():
        waiting = asyncio.ensure_future(changed.wait())
        try:
            await asyncio.wait(
                (waiting, watch), timeout=streams.heartbeat, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiting.cancel()
        try:
            if changed.is_set():
                if sent is not None and (rest := sent + streams.interval - clock.monotonic()) > 0:
                    await clock.sleep(rest)
                changed.clear()  # after the wait: the changes it saw go with this notice
                await response.write(CHANGED)
                sent = clock.monotonic()
            elif not watch.done():
                await response.write(KEEP_ALIVE)
        except ConnectionError:  # the page went
            return
