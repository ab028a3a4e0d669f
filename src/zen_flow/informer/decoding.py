"""From the apiserver's bytes to cached models, without building the raw objects in between.

A LIST page of 500 Jobs is ~10 MB of JSON; `json.loads` turns it into ~1.5 million Python objects
(managedFields, pod templates) of which the cache keeps ~2 KB per Job. Measured on 20,000 Jobs and
1,000 flows (docs/BENCHMARKS.md, "Memory"): the cache's live objects took 80 MB, but decoding every page
to dicts first left the process at +190 MB, because the freed dicts were interleaved with the kept
models in the allocator's arenas and those can never be returned. pydantic validates the bytes directly
(Rust), builds only the fields our models declare, and reuses one object per short string.

Anything the fast path rejects (a JobFlow whose spec does not parse, an ERROR event) goes the slow way:
`json.loads`, then the informer's per-object conversion with its placeholder fallback, which knows how to
report the problem.

A watch event can be decoded in two steps: first its *head* (a model without the parts that rarely
change: a JobFlow without its spec), which `complete` turns into the whole object from what the cache
already holds; only when it cannot (a new object, a new generation) is the event decoded whole. Every
status write of a 500-step flow is a ~250 KB event, and its spec was 60 % of decoding it (measured:
5.0 ms whole, 2.1 ms without the spec).

And an event need not be decoded at all when it is the result of our own write: `recall` recognises it
from its front (`zen_flow.kube.object_head`) and answers the object the writer said it would be.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from zen_flow.kube.streams import DecodedPage, WatchEvent

M = TypeVar("M")  # a pydantic model or a pydantic dataclass (a record)
_ADDED = b'{"type":"ADDED"'


class _ListMeta(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    resource_version: str = Field("", alias="resourceVersion")
    continue_token: str | None = Field(None, alias="continue")


class _Page(BaseModel, Generic[M]):
    model_config = ConfigDict(extra="ignore")
    metadata: _ListMeta = _ListMeta()
    items: list[M] | None = None


class _Event(BaseModel, Generic[M]):
    model_config = ConfigDict(extra="ignore")
    type: str
    object: M


class ModelDecoder(Generic[M]):
    """A `zen_flow.kube.Decoder` producing `model` instances (a pydantic model or record class).

    `finish` runs on every decoded object before anyone sees it (compaction, clearing a stale parse
    error); `item` is the slow path for one decoded dict (validation with a placeholder fallback).
    """

    def __init__(
        self,
        model: type[M],
        *,
        finish: Callable[[M], M],
        item: Callable[[dict[str, Any]], M | None],
        head: type[BaseModel] | None = None,
        complete: Callable[[Any], M | None] = lambda head: None,
        recall: Callable[[bytes], M | None] = lambda raw: None,
    ) -> None:
        self._page: TypeAdapter[_Page[M]] = TypeAdapter(_Page[model])  # type: ignore[valid-type]
        self._event: TypeAdapter[_Event[M]] = TypeAdapter(_Event[model])  # type: ignore[valid-type]
        self._head: TypeAdapter[_Event[Any]] | None = (
            TypeAdapter(_Event[head]) if head is not None else None  # type: ignore[valid-type]
        )
        self._finish = finish
        self._item = item
        self._complete = complete
        self._recall = recall

    def item(self, raw: dict[str, Any]) -> M | None:
        return self._item(raw)

    def page(self, raw: bytes) -> DecodedPage | None:
        try:
            page = self._page.validate_json(raw)
        except ValidationError:
            return None  # one object did not parse: the slow path finds which and keeps a placeholder
        items = [self._finish(obj) for obj in page.items or ()]
        return DecodedPage(items, page.metadata.resource_version, page.metadata.continue_token or "")

    def event(self, raw: bytes) -> WatchEvent | None:
        own = self._recall(raw)
        if own is not None:  # the result of our own write, known already: nothing to decode
            return WatchEvent(type="MODIFIED", object=own, version=_resource_version(own))
        whole: M | None = None
        # An ADDED event is a new object: nothing in the cache to complete its head from. The apiserver
        # writes `type` first; a line written otherwise only takes the longer way.
        if self._head is not None and not raw.startswith(_ADDED):
            try:
                head = self._head.validate_json(raw)
            except ValidationError:
                head = None  # decoded whole below, which fails too and goes the slow way
            if head is not None and head.type != "ERROR":
                whole = self._complete(head.object)
                event_type = head.type
        if whole is None:
            try:
                event = self._event.validate_json(raw)
            except ValidationError:
                return None
            whole, event_type = event.object, event.type
        if event_type == "ERROR":
            return None  # its object is a Status, not a model: the client decodes and raises it
        obj = self._finish(whole)
        return WatchEvent(type=event_type, object=obj, version=_resource_version(obj))


def _resource_version(obj: object) -> str:
    metadata = getattr(obj, "metadata", None)
    return str(getattr(metadata, "resource_version", "") or "")


def release_freed_memory() -> None:
    """Give the C heap's free pages back to the OS (glibc `malloc_trim`); a no-op elsewhere.

    pydantic parses a page into a tree of small Rust allocations before validating it; once freed, they
    stay in glibc's heap as holes the OS still counts as resident: 50 MB after listing 20,000 Jobs
    (measured; docs/BENCHMARKS.md). Called after each full LIST, not per event: a trim walks the heap.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim  # absent from musl
    except (OSError, AttributeError):
        return None
    return trim
