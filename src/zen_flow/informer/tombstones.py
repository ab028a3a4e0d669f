"""The last state of finished Jobs that were deleted, kept for a while by their owner's UID.

A Job whose template (or a cluster policy) sets `ttlSecondsAfterFinished: 0` is deleted by the TTL
controller moments after the Job controller marks it Complete. When both events reach the cache before
the flow's reconcile runs (a busy queue, a burst of events), the plan found no Job for a Running step and
failed it as "deleted outside zen-flow", or ran it again under a retry policy. The DELETED event carries
the Job's final state: kept here, the plan reads the outcome instead. Only finished Jobs are kept (a
Job deleted while running did not finish, whoever deleted it), for `ttl` seconds and at most `limit` of
them (a deleted flow's Jobs all pass through here on their way out). A restarted controller has none:
by then the flow's status is the record, and a step whose result was never written still fails as before.

A finished Job the controller itself deleted (`disown`) is not kept: a stray of an ended flow, whose
outcome is no step's (its tombstone brought it back to the flow's next plans, which deleted it again on
every wake-up, and let a rerun take its old outcome over: planner.lifecycle.strays), or a Job
executionPolicy.jobRetention deleted, whose outcome is stored or superseded (planner.retention): nothing
reads its last state, and its tombstone would have it deleted again.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from zen_flow.api import Job
from zen_flow.machinery.clock import Clock

TTL_SECONDS = 300.0
LIMIT = 2_000


class Tombstones:
    def __init__(
        self,
        clock: Clock,
        owner_of: Callable[[Job], str | None],
        *,
        ttl: float = TTL_SECONDS,
        limit: int = LIMIT,
    ) -> None:
        self._clock = clock
        self._owner_of = owner_of
        self._ttl = ttl
        self._limit = limit
        self._expiry: OrderedDict[str, float] = OrderedDict()  # Job key -> when it is forgotten, in order
        self._by_owner: dict[str, dict[str, Job]] = {}
        self._owner: dict[str, str] = {}  # Job key -> its owner's UID
        self._disowned: OrderedDict[str, float] = OrderedDict()  # Job key -> until when, in order

    def remember(self, job: Job) -> None:
        """A deleted Job's final state, when it finished and has an owner."""
        key = job.metadata.key
        if self._disowned.pop(key, None) is not None:
            return
        owner = self._owner_of(job)
        if owner is None or not job.finished:
            return
        self._forget(key)
        self._expiry[key] = self._clock.monotonic() + self._ttl
        self._by_owner.setdefault(owner, {})[key] = job
        self._owner[key] = owner
        while len(self._expiry) > self._limit:
            self._forget(next(iter(self._expiry)))

    def forget(self, key: str) -> None:
        """The Job exists again (re-listed, or created anew under its name): the live one counts."""
        self._forget(key)

    def disown(self, key: str) -> None:
        """The controller deletes this Job as a stray of its ended flow (called before the delete goes
        out, since its watch event may come first): its final state is not kept, nor a tombstone of it
        already kept (a delete that found it gone). Marked for `ttl` seconds, for its delete's event only."""
        self._forget(key)
        self._disowned.pop(key, None)
        now = self._clock.monotonic()
        self._disowned[key] = now + self._ttl
        while self._disowned and (
            next(iter(self._disowned.values())) <= now or len(self._disowned) > self._limit
        ):
            self._disowned.popitem(last=False)

    def of(self, owner: str) -> list[Job]:
        """The owner's deleted finished Jobs still remembered."""
        now = self._clock.monotonic()
        while self._expiry and next(iter(self._expiry.values())) <= now:
            self._forget(next(iter(self._expiry)))
        return list(self._by_owner.get(owner, {}).values())

    def __len__(self) -> int:
        return len(self._expiry)

    def _forget(self, key: str) -> None:
        if self._expiry.pop(key, None) is None:
            return
        owner = self._owner.pop(key)
        jobs = self._by_owner[owner]
        del jobs[key]
        if not jobs:
            del self._by_owner[owner]
