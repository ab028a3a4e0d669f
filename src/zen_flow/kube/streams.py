"""What a LIST or a WATCH delivers, and how its bytes become events and objects.

A caller that keeps models passes a `Decoder` (the informers do, `zen_flow.informer.decoding`); without
one, objects arrive as decoded JSON dicts.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from zen_flow.core import nesting
from zen_flow.kube.errors import TransportError, describe, from_status

# aiohttp's readline() refuses lines over 128 KB (twice its read buffer), and a watch line is a whole
# object: a 300-step JobFlow is larger. Refusing it would end the watch, and every rewatch would replay
# the same event: the flow would never be seen again. etcd stores at most 1.5 MiB per object.
MAX_WATCH_LINE = 16 * 1024 * 1024

# Errors that mean "no HTTP answer": aiohttp's own, OS-level socket errors, and client timeouts.
TRANSPORT_ERRORS = (aiohttp.ClientError, OSError, TimeoutError)


@dataclass(frozen=True)
class DecodedPage:
    items: list[Any]
    resource_version: str
    continue_token: str


class Decoder(Protocol):
    """How listed and watched objects become what a caller keeps, for callers that keep models.

    `page` and `event` decode straight from the bytes the apiserver sent (None: they cannot, and the
    client falls back to `json.loads` and `item` on each object). A raw dict of a Job is ~20 KB of
    Python objects (managedFields, the pod template) for ~2 KB kept; never building it saves the
    decoding and, above all, the allocator fragmentation it leaves behind the cache.
    """

    def item(self, raw: dict[str, Any]) -> Any | None:
        """One object as decoded JSON -> what is kept (None: nothing)."""
        ...

    def page(self, raw: bytes) -> DecodedPage | None: ...

    def event(self, raw: bytes) -> WatchEvent | None:
        """A watch line; None for ERROR events (the client raises them) and whatever it cannot read."""
        ...


@dataclass(frozen=True)
class ListResult:
    """A complete (all pages) LIST: its items (raw dicts, or what a `Decoder` made of them) and the list's
    resourceVersion to watch from."""

    items: tuple[Any, ...]
    resource_version: str


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED | MODIFIED | DELETED | BOOKMARK (ERROR is raised as an exception)
    object: Any  # the raw dict, or what a `Decoder` made of it (None: it kept nothing)
    version: str | None = None  # the object's resourceVersion, when `object` is not a raw dict

    @property
    def resource_version(self) -> str:
        if self.version is not None:
            return self.version
        meta = self.object.get("metadata") if isinstance(self.object, dict) else None
        return str(meta.get("resourceVersion") or "") if isinstance(meta, dict) else ""


class WatchStream:
    """Decoded watch events, one JSON object per line. ERROR events raise (410 → `Expired`).

    A plain iterator class rather than an async generator: an abandoned generator would be finalized
    at some later garbage collection, outside the `stream()` block that owns the response.
    """

    def __init__(self, response: aiohttp.ClientResponse, decoder: Decoder | None = None) -> None:
        self._content = response.content
        self._decoder = decoder

    def __aiter__(self) -> WatchStream:
        return self

    async def __anext__(self) -> WatchEvent:
        while True:
            try:
                line = await self._content.readuntil(b"\n", max_size=MAX_WATCH_LINE)
            except (*TRANSPORT_ERRORS, ValueError) as err:
                raise TransportError(f"watch stream: {describe(err)}") from err
            if not line:
                raise StopAsyncIteration  # the server closed the watch (timeoutSeconds elapsed)
            # Back to the event loop between events: with events already buffered, `readuntil` returns
            # without suspending, and decoding a burst of them in one go kept the loop from reading
            # any socket, the watch's own included: the apiserver then closed the watch as a slow
            # reader's (1,000 flows created at once, docs/BENCHMARKS.md).
            await asyncio.sleep(0)
            if line.strip():
                return decode_event(line, self._decoder)


def decode_page(raw: bytes, decoder: Decoder | None, path: str = "") -> DecodedPage:
    """One LIST page: through `decoder` if it can, else `json.loads` (and `decoder.item` per object)."""
    if decoder is not None and (decoded := decoder.page(raw)) is not None:
        return decoded
    try:
        page = nesting.loads(raw) if raw else {}
    except ValueError as err:
        raise TransportError(f"LIST {path}: undecodable response {raw[:200]!r}") from err
    if not isinstance(page, dict):
        raise TransportError(f"LIST {path}: not a list: {raw[:200]!r}")
    meta = page.get("metadata") or {}
    raw_items = page.pop("items", None) or []
    if decoder is not None:
        raw_items = [obj for item in raw_items if (obj := decoder.item(item)) is not None]
    return DecodedPage(raw_items, str(meta.get("resourceVersion", "")), str(meta.get("continue") or ""))


def decode_event(line: bytes, decoder: Decoder | None = None) -> WatchEvent:
    """One watch line: through `decoder` if it can, else `json.loads` (ERROR events raise)."""
    if decoder is not None and (event := decoder.event(line)) is not None:
        return event
    try:
        decoded = nesting.loads(line)
    except ValueError as err:
        raise TransportError(f"undecodable watch line: {line[:200]!r}") from err
    if not isinstance(decoded, dict) or not isinstance(decoded.get("object"), dict):
        raise TransportError(f"malformed watch event: {line[:200]!r}")
    event_type = str(decoded.get("type", ""))
    obj: dict[str, Any] = decoded["object"]
    if event_type == "ERROR":
        raise from_status(500, obj)
    if decoder is None:
        return WatchEvent(type=event_type, object=obj)
    version = WatchEvent(event_type, obj).resource_version
    return WatchEvent(type=event_type, object=decoder.item(obj), version=version)
