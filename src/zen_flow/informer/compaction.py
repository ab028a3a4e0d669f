"""Making cached objects small: the informer's cache is most of the controller's memory at scale.

Measured on real objects from a 1.36 apiserver (docs/BENCHMARKS.md, "Memory"): a pydantic model of a
Job took 8.4 KB and a 20-step JobFlow 122 KB, most of it not data but repetition:

- every model instance carries its own `__pydantic_fields_set__`, a `set` of 216-728 bytes, although
  the objects of one class share a handful of distinct field combinations. Our models are frozen (no
  `__setattr__`, the only in-place writer of that set; `model_copy` copies it before updating), so one
  shared set per (class, combination) is safe;
- the same short strings (label keys, `batch/v1`, `True`, phases, reasons, namespaces, step names) are
  separate objects in every decoded document: `json.loads` shares keys only within one document;
- flows stamped from one manifest repeat the same Job templates, each a tree of a dozen dicts, and the
  same steps;
- nested models repeat too: the 20 Jobs of a flow carry equal ownerReferences, Jobs that changed in the
  same second equal conditions and statuses.

What is cached by the thousand is a *record* now (`zen_flow.api.meta.RECORD`: a slotted dataclass, no
`__dict__` and no fields set): a Job 435 bytes, a 20-step flow 10.3 KB (tracemalloc, 2026-12-02).

`Compactor.compact(model)` rewrites a freshly parsed model in place, before anyone else sees it: equal
fields sets become one object, strings shorter than `MAX_INTERNED` become `sys.intern`ed ones (which the
interpreter frees with their last user), dict/list values equal to one seen recently become that one
object, and so do nested models of the classes the informer names as repeating (not all: a unique one,
like a step's status, would only churn the table and keep dead versions alive). Strings that identify
one object (uids, names, resourceVersions) stay uninterned: the interpreter's table would hold an entry
for each. Nothing changes value, only identity. The price: values are shared between cached objects,
so they must be treated as read-only, which the store's contract already demands (the planner
deep-copies a template before building a Job from it). Sharing tables are bounded LRUs: an evicted
value stays valid where it is used.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections import OrderedDict
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any, TypeVar

import pydantic_core
from pydantic import BaseModel

M = TypeVar("M")

MAX_INTERNED = 64  # longer strings are rarely repeated (messages, uids are 36 but unique)
# Containers remembered for sharing. An evicted one stays valid in the objects holding it; later equal
# values just stop sharing it. 4096 distinct templates/label sets is far more than a cluster's pipelines.
MAX_SHARED_CONTAINERS = 4096
MAX_SHARED_MODELS = 8192


class Compactor:
    """One per informer; keeps the tables of shared fields sets, containers and nested models."""

    def __init__(
        self,
        shared_models: tuple[type[Any], ...] = (),
        *,
        unique: Mapping[type[Any], Collection[str]] | None = None,
        max_shared: int = MAX_SHARED_CONTAINERS,
        max_models: int = MAX_SHARED_MODELS,
    ) -> None:
        """`shared_models`: nested model or record classes whose equal instances become one (frozen; an
        unhashable one, holding a dict, is matched by its JSON). `unique`: per class, the fields whose
        strings identify one object (uids, resourceVersions, a Job's name): interning them would only
        grow the interpreter's table of interned strings (~60 bytes each, three per cached Job)."""
        self._shareable = frozenset(shared_models)
        self._unique = {cls: frozenset(names) for cls, names in (unique or {}).items()}
        self._fields_sets: dict[tuple[type[BaseModel], frozenset[str]], set[str]] = {}
        self._record_fields: dict[type[Any], tuple[str, ...]] = {}
        self._containers: OrderedDict[str, Any] = OrderedDict()
        self._models: OrderedDict[object, Any] = OrderedDict()
        self._max_shared = max_shared
        self._max_models = max_models
        self._done: set[int] = set()

    def compact(self, model: M, *, done: Collection[object] = ()) -> M:
        """Shrink `model` (and every model, record, dict and list inside it) in place; returns it (itself:
        the top-level object is never swapped for another, only what it holds). Values in `done` (by
        identity: parts reused from an object compacted before) are left as they are, unwalked."""
        self._done = {id(value) for value in done}
        try:
            self._shrink(model)
        finally:
            self._done = set()
        return model

    @property
    def shared_containers(self) -> int:
        return len(self._containers)

    def _model(self, model: Any) -> Any:
        """`model` (or record) shrunk, or an equal one seen recently."""
        self._shrink(model)
        if type(model) not in self._shareable:
            return model
        try:
            return self._known(model, model)
        except TypeError:  # a dict inside: matched by its JSON's hash, confirmed by equality
            key = (type(model), hash(pydantic_core.to_json(model)))
        known = self._models.get(key)
        if known is not None and known != model:
            return model  # a hash collision: keep both
        return known if known is not None else self._known(key, model)

    def _known(self, key: object, value: Any) -> Any:
        """The value remembered under `key` (hashable), or `value`, remembered from now on."""
        known = self._models.get(key)
        if known is not None:
            self._models.move_to_end(key)
            return known
        self._models[key] = value
        if len(self._models) > self._max_models:
            self._models.popitem(last=False)
        return value

    def _shrink(self, obj: Any) -> None:
        unique = self._unique.get(type(obj), ())
        if isinstance(obj, BaseModel):
            fields_set = obj.__pydantic_fields_set__
            key = (type(obj), frozenset(fields_set))
            shared = self._fields_sets.get(key)
            if shared is None:
                shared = self._fields_sets[key] = set(fields_set)
            object.__setattr__(obj, "__pydantic_fields_set__", shared)
            if obj.__pydantic_extra__ == {}:  # a spec model's (api.meta.SpecModel) with no unknown key
                object.__setattr__(obj, "__pydantic_extra__", None)
            values = obj.__dict__
            for name, value in values.items():
                if name not in unique:
                    values[name] = self._value(value)
            return
        # A record: a frozen slotted dataclass, no __dict__; set what changes (object.__setattr__, as
        # dataclasses' own __init__ does for frozen ones).
        for name in self._fields_of(type(obj)):
            if name not in unique:
                value = getattr(obj, name)
                shrunk = self._value(value)
                if shrunk is not value:
                    object.__setattr__(obj, name, shrunk)

    def _fields_of(self, cls: type[Any]) -> tuple[str, ...]:
        """A record class's field names; () for any other class."""
        names = self._record_fields.get(cls)
        if names is None:
            names = self._record_fields[cls] = tuple(getattr(cls, "__dataclass_fields__", ()))
        return names

    def _value(self, value: Any) -> Any:
        if self._done and id(value) in self._done:
            return value
        if isinstance(value, str):
            return sys.intern(value) if len(value) < MAX_INTERNED else value
        if isinstance(value, datetime):  # second precision: Jobs created in one second share one
            return self._known(value, value)
        if isinstance(value, BaseModel):
            return self._model(value)
        if isinstance(value, tuple) and value:  # models, step names (`dependencies`), ...
            items = tuple(self._value(item) for item in value)
            if all(type(item) in self._shareable for item in items):
                with contextlib.suppress(TypeError):  # a dict inside (steps): not hashable
                    return self._known(items, items)  # a flow's Jobs share one tuple of ownerReferences
            return value if all(a is b for a, b in zip(items, value, strict=True)) else items
        if isinstance(value, dict | list):
            return self._shared(value) if value else value
        if self._fields_of(type(value)):  # a record (the per-type lookup also answers for ints, None)
            return self._model(value)
        return value

    def _shared(self, container: dict[str, Any] | list[Any]) -> Any:
        """An equal container seen before, or this one (its strings interned) from now on."""
        try:
            key = json.dumps(container, sort_keys=True, separators=(",", ":"))
        except (TypeError, ValueError):  # not JSON (never from the API): leave it alone
            return container
        known = self._containers.get(key)
        if known is not None:
            self._containers.move_to_end(key)
            return known
        _intern_json(container)
        self._containers[key] = container
        if len(self._containers) > self._max_shared:
            self._containers.popitem(last=False)
        return container


def _intern_json(value: Any) -> Any:
    """Intern the short strings (keys and values) of a decoded JSON document, in place."""
    if isinstance(value, str):
        return sys.intern(value) if len(value) < MAX_INTERNED else value
    if isinstance(value, dict):
        items = [(_intern_json(k), _intern_json(v)) for k, v in value.items()]
        value.clear()
        value.update(items)
    elif isinstance(value, list):
        value[:] = [_intern_json(item) for item in value]
    return value
