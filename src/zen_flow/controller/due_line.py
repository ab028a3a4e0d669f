"""The archive's writes waiting for a writer (controller/archiver.py, controller/log_archiver.py): handed
out in turns between namespaces, a FIFO line each (machinery/queue_lines.py), so one namespace ending
10,000 flows at once delays another's next write by a write or two, not by 10,000."""

from __future__ import annotations

import asyncio
import itertools

from zen_flow.machinery.queue_lines import TurnLine
from zen_flow.machinery.ratelimit import namespace_of


class DueLine:
    """(flow key, id) pairs to write, in turns between the flows' namespaces."""

    def __init__(self) -> None:
        self._line: TurnLine[tuple[str, str]] = TurnLine(
            lambda _entry: True, lambda item: namespace_of(item[0])
        )
        self._count = asyncio.Semaphore(0)  # entries in the line: each put adds one, each get takes one
        self._order = itertools.count()

    def put(self, item: tuple[str, str]) -> None:
        self._line.append((next(self._order), item))
        self._count.release()

    async def get(self) -> tuple[str, str]:
        await self._count.acquire()
        return self._line.popleft()
