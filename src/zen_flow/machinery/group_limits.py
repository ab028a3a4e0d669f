"""Which groups' keys the work queue may hand out now: limits per group, and a reserve of workers for the
groups that have none in hand (`WorkQueue(group_limit=, group_low_limit=, workers=, reserve=)`).

A group is a tenant's namespace, and its keys in hand are its reconciles. A limit per group keeps one
namespace from holding every worker while its reconciles wait (Job creates held 10-30 s each by a slow
admission webhook of the namespace). It does not keep two such namespaces from holding every worker
between them: the reserve does. A group that already has a key in hand may take another only while more
than `reserve` workers are free, so the groups in hand never take the last `reserve` workers but for a
first one each, and a group with nothing in hand finds a worker at once while they last.

No wait here can deadlock: a group held back by the reserve waits only for keys in hand (its own or
another group's) to be done, and a key in hand never waits for the queue.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable

from zen_flow.machinery.queue_lines import Eligible


class GroupLimits:
    """Keys in hand by group (of them handed out low), and which groups may take one more.

    `limit`, `low_limit`: at most that many keys of one group in hand (of them low); None: no limit.
    `workers`, `reserve`: with `workers` taking keys, a group with a key in hand takes another only while
    more than `reserve` of them are free.
    """

    def __init__(
        self,
        *,
        limit: int | None = None,
        low_limit: int | None = None,
        workers: int | None = None,
        reserve: int | None = None,
    ) -> None:
        if (workers is None) != (reserve is None):
            raise ValueError("a reserve of workers needs both workers and reserve")
        self._limit = limit
        self._low_limit = low_limit
        self._workers = workers
        self._reserve = reserve
        self._in_hand = 0
        self._busy: Counter[Hashable] = Counter()  # group -> its keys in hand
        self._busy_low: Counter[Hashable] = Counter()  # group -> its keys in hand, handed out as low

    @property
    def limited(self) -> bool:
        """Can a group be held back at all (else every group may always take a key)?"""
        return self._limit is not None or self._low_limit is not None or self._reserve is not None

    def taken(self, group: Hashable, *, low: bool) -> None:
        self._in_hand += 1
        self._busy[group] += 1
        if low:
            self._busy_low[group] += 1

    def released(self, group: Hashable, *, low: bool) -> None:
        self._in_hand -= 1
        _release(self._busy, group)
        if low:
            _release(self._busy_low, group)

    def eligible(self) -> tuple[Eligible | None, Eligible | None]:
        """The filters of the normal and the low line (None: every group may take a key)."""
        if not self.limited:
            return None, None
        return self._normal_eligible, self._low_eligible

    def _normal_eligible(self, group: Hashable) -> bool:
        busy = self._busy[group]
        if self._limit is not None and busy >= self._limit:
            return False
        if busy == 0 or self._workers is None or self._reserve is None:
            return True
        return self._workers - self._in_hand > self._reserve

    def _low_eligible(self, group: Hashable) -> bool:
        return self._normal_eligible(group) and (
            self._low_limit is None or self._busy_low[group] < self._low_limit
        )


def _release(counts: Counter[Hashable], group: Hashable) -> None:
    counts[group] -= 1
    if counts[group] <= 0:
        del counts[group]  # a namespace that has nothing in hand is forgotten
