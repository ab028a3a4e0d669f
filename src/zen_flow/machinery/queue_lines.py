"""The work queue's lines: FIFO, or taking turns between groups of keys (`WorkQueue(group_of=...)`).

An entry is `(sequence, key)`, live while the queue holds that sequence for the key (`live(entry)`): a key
that moved up to another line, or was handed out, leaves its old entry behind to be skipped here.

Taking turns: 1,000 flows created at once by one tenant (one namespace) queued every other tenant's new
flow behind all of them, ~10 s of starts on a small controller; the same held for running flows (1,000
of one tenant's Jobs finishing together queued another tenant's next step behind 1,000 reconciles). With
each line taking turns between namespaces, another tenant's flow is among the next ones handed out
however long the line is.

Limits per group (`WorkQueue(group_limit=...)`): a line can skip the groups that may not take another key
now (`eligible`), leaving them their place in the turns.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
Entry = tuple[int, K]
Eligible = Callable[[Hashable], bool]
"""May a key of this group be handed out now?"""


class Line(Generic[K]):
    """First in, first out."""

    def __init__(self, live: Callable[[Entry[K]], bool]) -> None:
        self._live = live
        self._entries: deque[Entry[K]] = deque()

    def append(self, entry: Entry[K]) -> None:
        self._entries.append(entry)

    def __bool__(self) -> bool:
        """Is there a live entry?"""
        entries = self._entries
        while entries and not self._live(entries[0]):
            entries.popleft()
        return bool(entries)

    def has(self, eligible: Eligible | None) -> bool:
        """Is there a live entry? (No groups here: `eligible` is for TurnLine.)"""
        return bool(self)

    def popleft(self, eligible: Eligible | None = None) -> K:
        """The first live key (call only when the line is true)."""
        return self._entries.popleft()[1]

    def clear(self) -> None:
        self._entries.clear()


class TurnLine(Generic[K]):
    """One FIFO line per group, handed out in turns: the group whose key was handed out goes to the back."""

    def __init__(self, live: Callable[[Entry[K]], bool], group_of: Callable[[K], Hashable]) -> None:
        self._live = live
        self._group_of = group_of
        self._groups: dict[Hashable, deque[Entry[K]]] = {}
        self._turns: deque[Hashable] = deque()  # groups with entries, the next one first

    def append(self, entry: Entry[K]) -> None:
        group = self._group_of(entry[1])
        line = self._groups.get(group)
        if line is None:
            line = self._groups[group] = deque()
            self._turns.append(group)
        line.append(entry)

    def __bool__(self) -> bool:
        return self._next(None) is not None

    def has(self, eligible: Eligible | None) -> bool:
        """Is there a live entry of an eligible group?"""
        return self._next(eligible) is not None

    def popleft(self, eligible: Eligible | None = None) -> K:
        """The first live key of the first eligible group in turn (call only when `has(eligible)`)."""
        found = self._next(eligible)
        assert found is not None, "popleft() on a line with no eligible key"
        index, group = found
        del self._turns[index]
        line = self._groups[group]
        key = line.popleft()[1]
        if line:
            self._turns.append(group)
        else:
            del self._groups[group]
        return key

    def _next(self, eligible: Eligible | None) -> tuple[int, Hashable] | None:
        """(place in the turns, group) of the first eligible group with a live entry; forgets the groups
        found empty on the way. Groups skipped as not eligible keep their place."""
        turns = self._turns
        index = 0
        while index < len(turns):
            group = turns[index]
            line = self._groups[group]
            while line and not self._live(line[0]):
                line.popleft()
            if not line:
                del self._groups[group]
                del turns[index]
            elif eligible is None or eligible(group):
                return index, group
            else:
                index += 1
        return None

    def clear(self) -> None:
        self._groups.clear()
        self._turns.clear()
