"""An informer: reflectors feeding one store, transforming objects on the way in, notifying handlers.

The reflector task applies each change to the store synchronously and then calls the handlers, which
must only enqueue keys (they run inside the watch loop; anything slow there delays every other event).
Readers get the store's frozen objects. Handler exceptions are not caught: a broken handler is a bug and
ends the process (crash, don't limp).

The model decides what is cached: the Job informer keeps records (`zen_flow.api.job`), the JobFlow
informer pydantic models, with only the fields they declare (no pod templates, no managedFields),
decoded straight from the apiserver's bytes (`decoding.py`) and compacted (`compaction.py`). An object
the model cannot parse must not stop the informer, nor vanish from the cache (reconcile has to see it to
report the problem), so a *fallback* builds a placeholder (metadata, plus whatever else still parses)
and the error is kept in a side table, `parse_error(key)`.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import contextlib
import random
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from pydantic import BaseModel, TypeAdapter, ValidationError

from zen_flow.api.meta import ObjectMeta
from zen_flow.core.nesting import MAX_OBJECT_DEPTH, deepest_path, describe_depth
from zen_flow.informer.compaction import Compactor
from zen_flow.informer.decoding import ModelDecoder, release_freed_memory
from zen_flow.informer.reflector import ListerWatcher, Reflector, ReflectorOptions
from zen_flow.informer.store import IndexFunc, Store, T
from zen_flow.kube.object_head import event_head
from zen_flow.logging import get_logger
from zen_flow.machinery.clock import Clock

Fallback = Callable[[dict[str, Any]], T]

log = get_logger(__name__)
P = TypeVar("P")  # a placeholder's model


Assemble = Callable[[T, Any], T | None]
"""`assemble(cached, head)`: the whole object from its freshly decoded head (see `ModelDecoder`) and the
cached object, or None when the cache's parts may be stale (the event is then decoded whole)."""

Reuse = Callable[[T, T], Sequence[object]]
"""`reuse(cached, decoded)`: put into the freshly decoded object (in place, before anyone sees it) the parts
of the cached one it can keep, and return them. Decoding and compacting a 500-step flow on every status
write cost more than planning it; what did not change is kept as it was, already compacted."""


@dataclass(frozen=True)
class Handler(Generic[T]):
    on_add: Callable[[T], None] | None = None
    on_update: Callable[[T, T], None] | None = None  # (old, new)
    on_delete: Callable[[T], None] | None = None  # the final state, or the last known one (tombstone)


class Informer(Generic[T]):
    def __init__(
        self,
        name: str,
        source: ListerWatcher,
        *,
        model: type[T],
        fallback: Fallback[T],
        shared_models: tuple[type[Any], ...] = (),
        unique: Mapping[type[Any], Sequence[str]] | None = None,
        reuse: Reuse[T] | None = None,
        head: tuple[type[BaseModel], Assemble[T]] | None = None,
        indexers: Mapping[str, IndexFunc[T]] | None = None,
        namespaces: Sequence[str] = (),
        clock: Clock,
        options: ReflectorOptions | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """`namespaces=()` watches all namespaces with one reflector; otherwise one reflector each."""
        self.name = name
        self.store: Store[T] = Store(indexers)
        # A pydantic model or dataclass (the store's protocol only needs `.metadata`; decoding, pydantic).
        self._model: TypeAdapter[Any] = TypeAdapter(model)
        self._fallback: Fallback[T] = fallback
        self._compactor = Compactor(shared_models, unique=unique)
        self._reuse = reuse
        self._assemble = head[1] if head is not None else None
        self.decoder: ModelDecoder[Any] = ModelDecoder(
            model,
            finish=self._finish,
            item=self._convert,
            head=head[0] if head is not None else None,
            complete=self._complete,
            recall=self._recall,
        )
        # uid -> the object our own write made (see `expect`); dropped at that object's next event.
        self._expected: dict[str, T] = {}
        self.recognised = 0  # watch events recognised as an `expect`ed object, not decoded
        self._handlers: list[Handler[T]] = []
        self._parse_errors: dict[str, str] = {}
        # Plain tallies read by the metrics collector at scrape time (no metrics import down here).
        self.events: collections.Counter[str] = collections.Counter()
        self.lists = 0  # the first list and every relist
        scopes: Sequence[str | None] = tuple(dict.fromkeys(namespaces)) or (None,)
        self.reflectors = [
            Reflector(
                name,
                source,
                scope,
                decoder=self.decoder,
                on_list=self._list_applier(scope),
                on_event=self._apply_event,
                clock=clock,
                options=options,
                rng=rng,
            )
            for scope in scopes
        ]

    # --- wiring --------------------------------------------------------------------------------------

    def add_handler(
        self,
        *,
        on_add: Callable[[T], None] | None = None,
        on_update: Callable[[T, T], None] | None = None,
        on_delete: Callable[[T], None] | None = None,
    ) -> None:
        """Register callbacks. Like client-go, a handler added late first gets `on_add` for every object
        already cached, so it never misses state."""
        handler = Handler(on_add, on_update, on_delete)
        self._handlers.append(handler)
        if on_add is not None:
            for obj in self.store.list():
                on_add(obj)

    async def run(self) -> None:
        """Run every reflector until cancelled; an unexpected error in one ends them all."""
        async with asyncio.TaskGroup() as tg:
            for reflector in self.reflectors:
                tg.create_task(reflector.run(), name=f"reflector/{self.name}/{reflector.namespace or '*'}")

    async def wait_synced(self) -> None:
        for reflector in self.reflectors:
            await reflector.synced.wait()

    # --- reads ---------------------------------------------------------------------------------------

    @property
    def has_synced(self) -> bool:
        """Every reflector has completed its first list (the cache has been complete at least once)."""
        return all(r.has_synced for r in self.reflectors)

    @property
    def last_error(self) -> str | None:
        """Why a reflector's last list or watch failed (None once it listed again)."""
        return next((r.last_error for r in self.reflectors if r.last_error), None)

    @property
    def last_progress(self) -> float:
        """Clock-monotonic time of the stalest reflector's last list, event or bookmark (for /healthz)."""
        return min(r.last_progress for r in self.reflectors)

    @property
    def closed_early(self) -> int:
        """Watches the server ended before their timeout, over every namespace's reflector."""
        return sum(r.closed_early for r in self.reflectors)

    @property
    def resource_version(self) -> str:
        """The cache's position: the RV of the single scope, or `ns=rv,...` (display only) for several."""
        if len(self.reflectors) == 1:
            return self.reflectors[0].resource_version
        return ",".join(f"{r.namespace}={r.resource_version}" for r in self.reflectors)

    def get(self, key: str) -> T | None:
        return self.store.get(key)

    def list(self) -> builtins.list[T]:
        return self.store.list()

    def by_index(self, index: str, value: str) -> builtins.list[T]:
        return self.store.by_index(index, value)

    def parse_error(self, key: str) -> str | None:
        """Why the cached object under `key` is only a placeholder, or None if it parsed."""
        return self._parse_errors.get(key)

    # --- applying changes ----------------------------------------------------------------------------

    def expect(self, obj: T, *, unchanged: Collection[object] = ()) -> None:
        """`obj` is what the apiserver holds after our own write (its answer gave the resourceVersion): its
        watch event will be taken as `obj` instead of being decoded. `unchanged`: parts of it taken from a
        cached object (already compacted). Only for a write whose event has not arrived yet: otherwise the
        expectation waits, unused, for that object's next event, which drops it. Not kept for an object
        the cache no longer holds (its DELETED event came before the write's answer): no event of it
        will come, and the whole object would be held until the next relist."""
        cached = self.store.get(obj.metadata.key)
        if cached is None or cached.metadata.uid != obj.metadata.uid:
            return
        self._expected[obj.metadata.uid] = self._compactor.compact(obj, done=unchanged)

    def _recall(self, raw: bytes) -> T | None:
        """The expected object, if `raw` is the MODIFIED event of its resourceVersion. Any other event of
        that object drops the expectation: the object moved on (the watch delivers an object's versions
        in order), or a relist went past it."""
        if not self._expected:
            return None
        head = event_head(raw)
        if head is None:
            return None
        event_type, seen = head
        expected = self._expected.pop(seen.uid, None)
        if (
            expected is None
            or event_type != "MODIFIED"
            or expected.metadata.resource_version != seen.resource_version
        ):
            return None
        self.recognised += 1
        return expected

    def _list_applier(self, namespace: str | None) -> Callable[[Sequence[T]], None]:
        # The reflector lists with `self.decoder`: the items arrive as models, decoded page by page.
        def apply(objects: Sequence[T]) -> None:
            self.lists += 1
            self._expected.clear()  # the list is newer than any write still expected
            release_freed_memory()  # what decoding the pages left behind
            result = self.store.replace(objects, namespace)
            for obj in result.deleted:
                self._parse_errors.pop(obj.metadata.key, None)
            for handler in self._handlers:
                for obj in result.added:
                    if handler.on_add:
                        handler.on_add(obj)
                for old, new in result.updated:
                    _changed(handler, old, new)
                for obj in result.deleted:
                    if handler.on_delete:
                        handler.on_delete(obj)

        return apply

    def _apply_event(self, type_: str, obj: T | None) -> None:
        self.events[type_] += 1
        if obj is None:
            return  # the decoder kept nothing (cannot happen with a fallback; no key to act on)
        if type_ == "DELETED":
            key = obj.metadata.key
            self.store.delete(key)
            self._parse_errors.pop(key, None)
            for handler in self._handlers:
                if handler.on_delete:
                    handler.on_delete(obj)
            return
        old = self.store.upsert(obj)
        for handler in self._handlers:
            _changed(handler, old, obj)

    def _finish(self, obj: Any) -> Any:
        """Every model decoded from the API passes here once: it parsed, so any old parse error is gone."""
        key = obj.metadata.key
        # A placeholder (cached while the object did not parse) has nothing worth keeping.
        placeholder = self._parse_errors.pop(key, None) is not None
        cached = None if placeholder or self._reuse is None else self.store.get(key)
        kept = self._reuse(cached, obj) if self._reuse is not None and cached is not None else ()
        return self._compactor.compact(obj, done=kept)

    def _complete(self, head: Any) -> T | None:
        """A watch event's head made whole from the cache; never from a placeholder."""
        key = head.metadata.key
        cached = None if key in self._parse_errors else self.store.get(key)
        return self._assemble(cached, head) if cached is not None and self._assemble is not None else None

    def _convert(self, raw: dict[str, Any]) -> T:
        """The slow path for one decoded object: validate, or cache a placeholder and remember why."""
        try:
            # Deeper than the decoders and the compactor's serializer go (core/nesting.py): a placeholder.
            if (deep := deepest_path(raw, MAX_OBJECT_DEPTH)) is not None:
                raise ValueError(describe_depth(deep, MAX_OBJECT_DEPTH))
            obj = self._model.validate_python(raw)
        except (ValidationError, ValueError, TypeError, KeyError) as err:
            key = _key_of(raw)
            message = describe_error(err)
            if self._parse_errors.get(key) != message:
                log.warning(
                    "object cached as a placeholder: cannot parse it",
                    informer=self.name,
                    key=key,
                    error=message,
                )
            self._parse_errors[key] = message
            return self._fallback(raw)
        return cast("T", self._finish(obj))


def _changed(handler: Handler[T], old: T | None, new: T) -> None:
    """Tell `handler` of `new`, cached in place of `old`: an add, an update, or, when `old` is another
    object of that name (deleted and re-created while the watch was away, which a relist finds as a
    change), the old one's delete and then the new one's add. Handlers that forget an object on its delete
    would otherwise keep the old one's state for ever (client-go leaves each handler to compare UIDs)."""
    if old is not None and old.metadata.uid == new.metadata.uid:
        if handler.on_update:
            handler.on_update(old, new)
        return
    if old is not None and handler.on_delete:
        handler.on_delete(old)
    if handler.on_add:
        handler.on_add(new)


def describe_error(err: Exception) -> str:
    """One line per problem, with the field path: `spec.steps.0.retryPolicy.limit: Input should be ...`."""
    if isinstance(err, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}"
            for e in err.errors(include_url=False)
        )
    return str(err) or type(err).__name__


def metadata_of(raw: dict[str, Any]) -> ObjectMeta:
    """The object's metadata, as much of it as parses (for placeholders)."""
    meta = raw.get("metadata")
    if not isinstance(meta, dict):
        meta = {}
    try:
        return ObjectMeta.model_validate(meta)
    except ValidationError:
        generation = meta.get("generation")
        return ObjectMeta(
            name=str(meta.get("name", "")),
            namespace=str(meta.get("namespace", "")),
            uid=str(meta.get("uid", "")),
            resource_version=str(meta.get("resourceVersion", "")),
            generation=generation if isinstance(generation, int) else 0,
        )


def status_placeholder(
    model: Callable[..., P], status_model: type[BaseModel]
) -> Callable[[dict[str, Any]], P]:
    """The fallback decoder of a resource whose objects carry a status: its metadata (`metadata_of`) and
    its status, or an empty one when the status does not decode either."""

    def placeholder(raw: dict[str, Any]) -> P:
        status = status_model()
        raw_status = raw.get("status")
        if isinstance(raw_status, dict):
            with contextlib.suppress(ValidationError):
                status = status_model.model_validate(raw_status)
        return model(metadata=metadata_of(raw), status=status)

    return placeholder


def _key_of(raw: dict[str, Any]) -> str:
    meta = raw.get("metadata")
    if not isinstance(meta, dict):
        return "/"
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"
