"""Expectations: don't act on a cache that has not yet seen our own writes.

After reconcile creates or deletes Jobs, the informer cache lags behind the apiserver for a moment. A
reconcile that runs in that window would see the new Job as missing (and compute "create it" again) or the
deleted one as present (and delete it again, or count it in the status). client-go's controllers guard
against this with `ControllerExpectations` (`kubernetes/kubernetes:pkg/controller/controller_utils.go`):
before writing, record what you expect the cache to show; informer handlers lower the expectation as the
events arrive; reconcile only trusts the cache once the expectations are satisfied, or expired
(`ExpectationsTimeout` = 5 minutes, so one lost event cannot freeze an object forever).

Ours tracks **names**, not counts. Job names are deterministic (`<flow>-<step>`, see `zen_flow.core.naming`),
so we know exactly which objects we are waiting for: an event for an unrelated Job (one created by an
earlier incarnation, or an update echo) cannot satisfy the wrong expectation, an event seen twice cannot
lower a count twice, and the pending names can be logged. Each name carries its own deadline, so a lost
event only delays what depends on it, and expecting more names later does not extend the older ones.

Records are keyed by the flow's **UID**, not its name: a flow deleted and re-created under the same name
starts with no expectations.

Protocol for callers:

* call `expect_creations` / `expect_deletions` *before* sending the requests (an informer event may
  arrive before the request returns);
* informer handlers call `creation_observed` / `deletion_observed` for Jobs owned by the flow;
* a create that fails calls `creation_failed` (nothing will ever be observed); a create answered with 409
  AlreadyExists calls `creation_observed` when the Job is the flow's (it exists; no ADDED event may
  follow if the cache already holds it), `creation_failed` when it is another's; likewise
  `deletion_failed`, and a delete answered with 404 calls `deletion_observed`;
* reconcile checks `satisfied(uid)` first and, if not, waits for the events (they enqueue the flow);
* `forget(uid)` when the flow is deleted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from zen_flow.machinery.clock import Clock

EXPECTATIONS_TIMEOUT = 300.0
"""Seconds after which an unobserved expectation is given up on (client-go's ExpectationsTimeout)."""


@dataclass
class _Pending:
    creations: dict[str, float] = field(default_factory=dict)  # Job name -> monotonic deadline
    deletions: dict[str, float] = field(default_factory=dict)

    def prune(self, now: float) -> None:
        for names in (self.creations, self.deletions):
            for name in [n for n, deadline in names.items() if deadline <= now]:
                del names[name]

    def __bool__(self) -> bool:
        return bool(self.creations or self.deletions)


class Expectations:
    """Per-flow sets of Job names whose creation or deletion has been requested but not yet observed."""

    def __init__(self, clock: Clock, *, ttl: float = EXPECTATIONS_TIMEOUT) -> None:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self._clock = clock
        self._ttl = ttl
        self._records: dict[str, _Pending] = {}

    def expect_creations(self, uid: str, names: Iterable[str]) -> None:
        """We are about to create `names` for flow `uid`."""
        self._expect(uid, names, deleting=False)

    def expect_deletions(self, uid: str, names: Iterable[str]) -> None:
        """We are about to delete `names` for flow `uid`."""
        self._expect(uid, names, deleting=True)

    def creation_observed(self, uid: str, name: str) -> None:
        """The cache now holds Job `name` of flow `uid` (unexpected names are ignored)."""
        self._lower(uid, name, deleting=False)

    def deletion_observed(self, uid: str, name: str) -> None:
        """The cache no longer holds Job `name` of flow `uid`."""
        self._lower(uid, name, deleting=True)

    def creation_failed(self, uid: str, name: str) -> None:
        """The create request for `name` failed: no event will come, stop waiting for one."""
        self._lower(uid, name, deleting=False)

    def deletion_failed(self, uid: str, name: str) -> None:
        """The delete request for `name` failed: no event will come, stop waiting for one."""
        self._lower(uid, name, deleting=True)

    def satisfied(self, uid: str) -> bool:
        """True when nothing is pending for `uid` (all observed, failed, or past the TTL)."""
        record = self._records.get(uid)
        if record is None:
            return True
        record.prune(self._clock.monotonic())
        if record:
            return False
        del self._records[uid]  # keep the map bounded by the flows with work in flight
        return True

    def expires_in(self, uid: str) -> float | None:
        """Seconds until the earliest pending expectation of `uid` expires (None: nothing pending)."""
        record = self._live(uid)
        if not record:
            return None
        deadlines = (*record.creations.values(), *record.deletions.values())
        return max(0.0, min(deadlines) - self._clock.monotonic())

    def pending_creations(self, uid: str) -> frozenset[str]:
        """Names still expected to appear (unexpired), for logs and status messages."""
        record = self._live(uid)
        return frozenset(record.creations) if record else frozenset()

    def pending_deletions(self, uid: str) -> frozenset[str]:
        """Names still expected to disappear (unexpired)."""
        record = self._live(uid)
        return frozenset(record.deletions) if record else frozenset()

    def forget(self, uid: str) -> None:
        """Drop everything about flow `uid` (it was deleted)."""
        self._records.pop(uid, None)

    def uids(self) -> list[str]:
        """The flows with a record."""
        return list(self._records)

    def __len__(self) -> int:
        """Flows with a record (possibly already satisfied but not yet pruned)."""
        return len(self._records)

    def _expect(self, uid: str, names: Iterable[str], *, deleting: bool) -> None:
        wanted = list(names)
        if not wanted:
            return
        deadline = self._clock.monotonic() + self._ttl
        record = self._records.setdefault(uid, _Pending())
        target = record.deletions if deleting else record.creations
        for name in wanted:
            target[name] = deadline

    def _lower(self, uid: str, name: str, *, deleting: bool) -> None:
        record = self._records.get(uid)
        if record is None:
            return
        (record.deletions if deleting else record.creations).pop(name, None)
        if not record:
            del self._records[uid]

    def _live(self, uid: str) -> _Pending | None:
        record = self._records.get(uid)
        if record is not None:
            record.prune(self._clock.monotonic())
        return record
