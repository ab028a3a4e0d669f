"""Flows (and CronJobFlows) whose every status write the apiserver refuses for good, the write that fails
them included.

That is a verdict on the stored object, not on our status: after a CRD rolled back past a value the flow
uses (an enum widened under the atomic spec.steps list, which validation does not ratchet), every write
of the object gets 422. Acting on such a flow would loop: a plan's Jobs created, its failure's deletes
sent, nothing recorded, so the next reconcile, from the same stored status, creates the same Jobs again.
So the flow is held: no Job created or deleted, its Jobs left as they are (their names are the flow's
own: the plan a later accepted write records adopts them), until its object changes (a new
resourceVersion: an edit, a label, another writer) or a slow retry of the refused write, backing off
to RETRY_CAP_SECONDS, finds it accepted (the CRD rolled forward: the stored object does not change).
The book is in memory: a restart (or a shard handed over) costs one more plan and refusal, no loop.
A CronJobFlow is held alike (cron_status.py): no run created, stopped or deleted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from zen_flow.controller.flow_memory import Keyed
from zen_flow.kube.errors import ApiError, Conflict

K = TypeVar("K", bound=Keyed)  # a JobFlow or a CronJobFlow
S = TypeVar("S")  # its status

# The first retry of a held flow's write, doubled each refusal up to the cap.
RETRY_FIRST_SECONDS = 10.0
RETRY_CAP_SECONDS = 300.0


@dataclass(frozen=True)
class Hold(Generic[K, S]):
    """A held flow: the write refused (the flow as planned, its stored flow, the status) and when to
    send it again."""

    flow: K  # as planned (its effective flow); its resourceVersion is the one the write read
    stored: K | None
    status: S
    due: float  # monotonic


@dataclass(frozen=True)
class _Cause:
    message: str  # the apiserver's answer (its Warning is told once per cause)
    refusals: int  # in a row, for the backoff


class StatusHolds(Generic[K, S]):
    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic
        self._holds: dict[str, Hold[K, S]] = {}  # flow uid ->
        # flow uid -> why its writes are refused: kept when a change lifts the hold, so that the same
        # refusal of the changed flow is not told again and its retries keep backing off.
        self._causes: dict[str, _Cause] = {}
        self._keys: dict[str, str] = {}  # flow uid -> namespace/name, for the gauge

    def hold(self, flow: K, status: S, message: str, *, stored: K | None) -> bool:
        """The write of `status` planned from `flow` was refused with `message`, and so was the failure
        write: hold the flow. True when the cause is new (to be told)."""
        uid = flow.metadata.uid
        cause = self._causes.get(uid)
        refusals = cause.refusals + 1 if cause is not None else 1
        self._causes[uid] = _Cause(message, refusals)
        self._holds[uid] = Hold(flow, stored, status, self._monotonic() + _delay(refusals))
        self._keys[uid] = flow.key
        return cause is None or cause.message != message

    def held(self, flow: K) -> Hold[K, S] | None:
        """The flow's hold, if it is held and has not changed since (a change lifts it)."""
        hold = self._holds.get(flow.metadata.uid)
        if hold is not None and hold.flow.metadata.resource_version != flow.metadata.resource_version:
            del self._holds[flow.metadata.uid]
            return None
        return hold

    def due_in(self, hold: Hold[K, S]) -> float:
        return max(hold.due - self._monotonic(), 0.0)

    def put_off(self, hold: Hold[K, S]) -> float:
        """A retry got no verdict (a 5xx, no answer): the next one after the same wait."""
        uid = hold.flow.metadata.uid
        cause = self._causes.get(uid)
        refusals = cause.refusals if cause is not None else 1
        self._holds[uid] = Hold(hold.flow, hold.stored, hold.status, self._monotonic() + _delay(refusals))
        return _delay(refusals)

    async def resend(self, hold: Hold[K, S], write: Callable[[], Awaitable[object]]) -> ApiError | None:
        """Send the held flow's refused write again (`write`), its retry due. None: accepted, the hold is
        over. An error that is no verdict (a 5xx, no answer): the retry is put off by the same wait. One
        for good (`permanent`): the caller holds the flow anew (told once per cause). A Conflict (the
        flow changed: its watch event brings it back) lifts the hold and is raised."""
        uid = hold.flow.metadata.uid
        try:
            await write()
        except Conflict:
            self.accepted(uid)
            raise
        except ApiError as err:
            if not err.permanent:
                self.put_off(hold)
            return err
        self.accepted(uid)
        return None

    def accepted(self, uid: str) -> None:
        """A write of the flow was accepted: its refusals are over."""
        self._holds.pop(uid, None)
        self._causes.pop(uid, None)
        self._keys.pop(uid, None)

    forget = accepted

    def uids(self) -> set[str]:
        """The flows (by UID) it keeps anything of (flow_memory.py's sweep)."""
        return self._causes.keys() | self._keys.keys()

    def keys(self) -> list[str]:
        """namespace/name of the flows held now."""
        return [self._keys[uid] for uid in self._holds]


def _delay(refusals: int) -> float:
    """The wait before the retry that follows `refusals` refusals in a row."""
    return min(RETRY_FIRST_SECONDS * 2.0 ** min(refusals - 1, 16), RETRY_CAP_SECONDS)
