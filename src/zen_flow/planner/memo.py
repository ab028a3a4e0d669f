"""Values derived from a frozen tuple, remembered by the tuple's identity.

A running flow is planned on every reconcile, and most of what a plan derives from its spec and its status
did not change since the last one: the informer keeps the same spec object while the generation stays,
and the same status object until the status changes. Identity, not equality: a step or a status entry is
not hashable (it holds dicts), and comparing two 500-step tuples costs what deriving the value does.

Bounded by the number of tuple items held in all (least recently used first out), so memory stays flat
however many flows there are. The tuple is held with its value, so its id cannot be reused by another.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

V = TypeVar("V")

# Items held per memo, at most: ~150 bytes per step remembered, ~1.2 MB however many flows there are.
MEMO_STEPS = 8192


class IdentityMemo(Generic[V]):
    def __init__(self, budget: int) -> None:
        """`budget`: how many tuple items the memo may hold in all."""
        self._budget = budget
        self._held = 0
        # id(key) -> (key, context, value)
        self._entries: OrderedDict[int, tuple[tuple[Any, ...], object, V]] = OrderedDict()
        self._lock = threading.Lock()  # plans that evaluate `when` in the sandbox run in threads

    def get(self, key: tuple[Any, ...], derive: Callable[[], V], context: object = None) -> V:
        """The value remembered for `key` (and `context`, also compared by identity), or `derive()`."""
        ident = id(key)
        with self._lock:
            entry = self._entries.get(ident)
            if entry is not None and entry[0] is key and entry[1] is context:
                self._entries.move_to_end(ident)
                return entry[2]
        value = derive()
        if len(key) <= self._budget:
            with self._lock:
                old = self._entries.pop(ident, None)
                if old is not None:
                    self._held -= len(old[0])
                self._entries[ident] = (key, context, value)
                self._held += len(key)
                while self._held > self._budget:
                    _, (dropped, _, _) = self._entries.popitem(last=False)
                    self._held -= len(dropped)
        return value
