"""The informer's cache: `namespace/name` → latest object, plus secondary indexes (client-go's indexer).

One event loop means no locks: the reflector task mutates the store synchronously, and readers (reconcile
workers) never see a half-applied change because nothing awaits in between. Objects are frozen (pydantic
models or records), so a reader can keep one without it changing underneath.

`replace()` is what a relist does: it reports every listed object as added or updated, and every cached
object the list no longer has as deleted, with its last known state (client-go's
`DeletedFinalStateUnknown` tombstone: a delete that happened while we were not watching). An object
"updated" into another UID was deleted and re-created under its name meanwhile: the informer tells its
handlers of that as a delete and an add (informer.py).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar


class Metadata(Protocol):
    @property
    def key(self) -> str: ...  # `namespace/name`

    @property
    def namespace(self) -> str: ...

    @property
    def uid(self) -> str: ...

    @property
    def resource_version(self) -> str: ...


class KubeObject(Protocol):
    """A pydantic model (`JobFlow`) or a record (`Job`): anything with metadata."""

    @property
    def metadata(self) -> Metadata: ...


T = TypeVar("T", bound=KubeObject)

IndexFunc = Callable[[T], Iterable[str]]


@dataclass(frozen=True)
class ReplaceResult(Generic[T]):
    added: tuple[T, ...] = ()
    updated: tuple[tuple[T, T], ...] = ()  # (old, new)
    deleted: tuple[T, ...] = ()  # tombstones: the last state we knew


@dataclass
class _Index(Generic[T]):
    func: IndexFunc[T]
    keys_by_value: dict[str, set[str]] = field(default_factory=dict)


class Store(Generic[T]):
    def __init__(self, indexers: Mapping[str, IndexFunc[T]] | None = None) -> None:
        self._items: dict[str, T] = {}
        self._indexes: dict[str, _Index[T]] = {name: _Index(func) for name, func in (indexers or {}).items()}

    # --- reads ---------------------------------------------------------------------------------------

    def get(self, key: str) -> T | None:
        return self._items.get(key)

    def list(self) -> builtins.list[T]:
        return list(self._items.values())

    def keys(self) -> builtins.list[str]:
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def by_index(self, index: str, value: str, *, ordered: bool = False) -> builtins.list[T]:
        """Objects whose `index` function yields `value`, in no particular order (`ordered`: by key).
        KeyError: no such index."""
        keys = self._indexes[index].keys_by_value.get(value, ())
        return [self._items[key] for key in (sorted(keys) if ordered else keys)]

    # --- writes --------------------------------------------------------------------------------------

    def upsert(self, obj: T) -> T | None:
        """Insert or replace by key; returns the previous object (None if it is new)."""
        key = obj.metadata.key
        old = self._items.get(key)
        self._items[key] = obj
        if old is not None:
            self._unindex(key, old)
        self._index(key, obj)
        return old

    def delete(self, key: str) -> T | None:
        old = self._items.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def replace(self, objects: Iterable[T], namespace: str | None = None) -> ReplaceResult[T]:
        """Make the store hold exactly `objects` within `namespace` (all namespaces if None).

        Objects of other namespaces are left alone, so one store can be fed by one reflector per
        namespace, each replacing only its own part.
        """
        added: list[T] = []
        updated: list[tuple[T, T]] = []
        seen: set[str] = set()
        for obj in objects:
            seen.add(obj.metadata.key)
            old = self.upsert(obj)
            if old is None:
                added.append(obj)
            else:
                updated.append((old, obj))
        gone = [
            key
            for key, obj in self._items.items()
            if key not in seen and (namespace is None or obj.metadata.namespace == namespace)
        ]
        deleted = [old for key in gone if (old := self.delete(key)) is not None]
        return ReplaceResult(added=tuple(added), updated=tuple(updated), deleted=tuple(deleted))

    # --- indexes -------------------------------------------------------------------------------------

    def _index(self, key: str, obj: T) -> None:
        for index in self._indexes.values():
            for value in index.func(obj):
                index.keys_by_value.setdefault(value, set()).add(key)

    def _unindex(self, key: str, obj: T) -> None:
        for index in self._indexes.values():
            for value in index.func(obj):
                keys = index.keys_by_value.get(value)
                if keys is None:
                    continue
                keys.discard(key)
                if not keys:
                    del index.keys_by_value[value]
