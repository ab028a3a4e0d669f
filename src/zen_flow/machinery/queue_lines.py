"""The work queue's lines: FIFO, or taking turns between groups of keys (`WorkQueue(group_of=...)`).

An entry is `(sequence, key)`, live while the queue holds that sequence for the key (`live(entry)`): a key
that moved up to another line, or was handed out, leaves its old entry behind to be skipped here.

Taking turns: 1,000 flows created at once by one tenant (one namespace) queued every other tenant's new
flow behind all of them, ~10 s of starts on a small controller; the same held for running flows (1,000
of one tenant's Jobs finishing together queued another tenant's next step behind 1,000 reconciles). With
each line taking turns between namespaces, another tenant's flow is among the next ones handed out
however long the line is.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
Entry = tuple[int, K]


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

    def popleft(self) -> K:
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
        while self._turns:
            group = self._turns[0]
            line = self._groups[group]
            while line and not self._live(line[0]):
                line.popleft()
            if line:
                return True
            del self._groups[group]
            self._turns.popleft()
        return False

    def popleft(self) -> K:
        group = self._turns.popleft()
        line = self._groups[group]
        key = line.popleft()[1]
        if line:
            self._turns.append(group)
        else:
            del self._groups[group]
        return key

    def clear(self) -> None:
        self._groups.clear()
        self._turns.clear()
