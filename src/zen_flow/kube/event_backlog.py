"""The Events waiting to be sent, shared fairly between tenants (namespaces).

One sender and one budget serve every namespace, so what waits is what one tenant can take from the
others. Measured before (a review's simulation): two 500-step flows of one namespace failing together
queued 1,000 Events ahead of another namespace's two Warnings, which went out 17 s later, or never (the
queue was full). Here:

* namespaces take turns: the next Event sent is the oldest of the namespace whose turn it is, so another
  tenant's Event is among the next few sent however much one tenant has queued;
* an Event equal to one already waiting (same flow, type, reason and message) is not queued again: the
  waiting one's count goes up, and it is sent once with that count;
* when the backlog is full, a Normal Event of the namespace with the most waiting makes room for a
  Warning, or for a Normal Event of a namespace with fewer waiting: Warnings are kept while any Normal
  Event waits, and one tenant's flood does not crowd out another's Events. Otherwise the new Event is
  the one dropped.

`EventRecorder` (events.py) folds similar Events of one flow into one before they get here, as client-go's
aggregator does, so a flow's burst of step failures is a handful of entries, not one per step.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from zen_flow.api.constants import KIND

WARNING = "Warning"
# namespace, flow uid, type, reason, message (or the marker of a combined Event): equal Events fold.
Key = tuple[str, str, str, str, str]


@dataclass(frozen=True)
class Target:
    """What an Event says about its flow. Waiting Events keep only this, not the flow: up to 1,000 of them
    would otherwise pin as many old versions of 20-step flows (~30 KB each) in memory."""

    namespace: str
    name: str
    uid: str
    resource_version: str
    kind: str = KIND  # or CronJobFlow

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass
class Pending:
    target: Target
    type: str
    reason: str
    message: str
    key: Key
    count: int = 1  # occurrences folded into this entry while it waited


@dataclass
class _Namespace:
    waiting: OrderedDict[Key, Pending] = field(default_factory=OrderedDict)
    normal: int = 0  # how many of `waiting` are not Warnings


class EventBacklog:
    """Bounded: at most `limit` entries waiting (folded repeats count once)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._namespaces: dict[str, _Namespace] = {}
        self._turns: deque[str] = deque()  # namespaces with Events waiting, the next one first
        self._size = 0
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return self._size

    def put(self, item: Pending) -> Pending | None:
        """Queue `item`, or fold it into its equal already waiting. Returns what was dropped to stay
        within the limit (`item` itself, or a Normal Event that made room for it), else None."""
        ns = item.target.namespace
        space = self._namespaces.get(ns)
        if space is not None and (same := space.waiting.get(item.key)) is not None:
            same.count += item.count
            same.message = item.message  # a combined Event says its latest occurrence
            return None
        dropped = None
        if self._size >= self._limit:
            dropped = self._make_room(item)
            if dropped is None:
                return item
            space = self._namespaces.get(ns)  # making room may have emptied (and removed) it
        if space is None:
            space = self._namespaces[ns] = _Namespace()
            self._turns.append(ns)
        space.waiting[item.key] = item
        space.normal += item.type != WARNING
        self._size += 1
        self._ready.set()
        return dropped

    async def get(self) -> Pending:
        """The next Event to send: the oldest of the namespace whose turn it is."""
        while not self._size:
            self._ready.clear()
            await self._ready.wait()
        ns = self._turns.popleft()
        space = self._namespaces[ns]
        _, item = space.waiting.popitem(last=False)
        self._taken(ns, space, item)
        if space.waiting:
            self._turns.append(ns)  # its turn is over: to the back
        return item

    def _make_room(self, item: Pending) -> Pending | None:
        """Drop the oldest Normal Event of the namespace with the most waiting, for a Warning, or for a
        Normal Event of a namespace with fewer waiting (one tenant's flood must not crowd out another's
        Normal Events either); None when there is nothing to drop for `item`."""
        candidates = [(len(s.waiting), ns) for ns, s in self._namespaces.items() if s.normal]
        if not candidates:
            return None
        most, ns = max(candidates)
        own = self._namespaces.get(item.target.namespace)
        if item.type != WARNING and most <= (len(own.waiting) if own is not None else 0) + 1:
            return None
        space = self._namespaces[ns]
        key = next(k for k, p in space.waiting.items() if p.type != WARNING)
        item = space.waiting.pop(key)
        self._taken(ns, space, item)
        if not space.waiting:
            self._turns.remove(ns)
        return item

    def _taken(self, ns: str, space: _Namespace, item: Pending) -> None:
        self._size -= 1
        space.normal -= item.type != WARNING
        if not space.waiting:
            del self._namespaces[ns]
