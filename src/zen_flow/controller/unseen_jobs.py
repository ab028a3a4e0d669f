"""A Running step's Job the controller's Job cache lacks while the apiserver has it (ours, not being
deleted): the cache's fault, whatever the Job's age. A Job watch that lags or hangs (the reflector's
inactivity watchdog reopens a silent one after 150 s), a new leader's or shard holder's that is behind,
or a Job whose `app.kubernetes.io/managed-by` label was removed (the Job informer is label-selected, and
its watch drops such a Job). Planned from that cache, the flow took the Job for deleted: it failed the
attempt as "deleted outside zen-flow" and a retry ran beside the Job still running.

So the flow is not planned while such a Job is missing (`lags`): the reconcile looks again, by this
process's own monotonic clock from when it first found the Job missing, for CACHE_LAG_WAIT_SECONDS, longer
than a hung watch takes to heal. A Job the cache still lacks then will not be shown (its label): it is
deleted by its uid, and its attempt fails saying why (`unwatched`, the plan's message for it), retried as
its retryPolicy allows. Deleted rather than planned from the Job the GET returned: the controller would
see neither its end (a GET of its metadata says nothing of its status, and no watch event wakes the
flow) nor delete it (a timeout's, a stop's deletes go by the cache), and could only poll it for as long
as it runs.

At most CACHE_LAG_LOOKUPS GETs per reconcile, the looks spreading out to one every
CACHE_LAG_RETRY_MAX_SECONDS (the Job's watch event, when it comes, wakes the flow anyway); what is kept of
a flow goes when its steps no longer miss those Jobs, or with the flow (`forget`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from zen_flow import planner
from zen_flow.api import Job, JobFlow
from zen_flow.api.constants import LABEL_MANAGED_BY, MANAGED_BY
from zen_flow.api.job import labels_of
from zen_flow.kube.errors import Conflict, NotFound
from zen_flow.logging import get_logger

log = get_logger(__name__)

# How long a missing Job is waited for: longer than what heals a hung watch (informer/reflector.py: the
# inactivity watchdog's 150 s, a failed rewatch's backoff at its cap, 30 s and up to 100 % jitter) by 90 s
# for the relist.
CACHE_LAG_WAIT_SECONDS = 300.0
# Jobs looked up per reconcile; the flow looks again after the first delay, then less often, up to the
# second (plan_runner.py's `flow_lags` waits the first too).
CACHE_LAG_LOOKUPS = 8
CACHE_LAG_RETRY_SECONDS = 1.0
CACHE_LAG_RETRY_MAX_SECONDS = 15.0
# A flow this process has not looked at for this long (its shard held by another replica meanwhile)
# waits afresh: what its cache showed in between is not known.
CACHE_LAG_GAP_SECONDS = 120.0


class JobApi(Protocol):
    async def get_job(self, namespace: str, name: str) -> Job: ...
    async def delete_job(self, namespace: str, name: str, uid: str = "") -> None: ...


class UnseenJobs:
    """The missing Jobs of the flows this process reconciles (see the module's note)."""

    def __init__(self, api: JobApi, *, monotonic: Callable[[], float]) -> None:
        self._api = api
        self._monotonic = monotonic
        # flow uid -> {Job name: (when first found missing, when last looked)}, and {Job name: why} of
        # those deleted, until their steps no longer run them.
        self._unseen: dict[str, dict[str, tuple[float, float]]] = {}
        self._unwatched: dict[str, dict[str, str]] = {}

    async def lags(self, flow: JobFlow, jobs: Sequence[Job]) -> float | None:
        """When to look again if a Running step's Job is missing from the cache but not from the
        apiserver (ours, not being deleted): the plan would take it for deleted, fail the attempt and
        retry it beside the Job still running. Its age says nothing (a Job watch that hangs, a new
        leader's that is behind), so it is waited for, CACHE_LAG_WAIT_SECONDS by this process's clock.
        A Job the cache never shows in that time (its managed-by label removed) is deleted, by its uid:
        nothing of the controller's would see it end or delete it, and its step's plan fails the attempt
        saying so (`unwatched`), never runs another beside it. None when there is nothing to wait for
        (one GET per Job the cache lacks, at most CACHE_LAG_LOOKUPS, which is rare: a Job deleted
        outside zen-flow fails its step after it)."""
        uid, namespace = flow.metadata.uid, flow.metadata.namespace
        unseen = planner.unseen_jobs(flow, jobs)
        self._prune(uid, unseen)
        if not unseen:
            return None
        missing = self._unseen.setdefault(uid, {})
        gone = self._unwatched.get(uid, {})
        wait: float | None = None
        for name in unseen[:CACHE_LAG_LOOKUPS]:
            if name in gone:
                continue  # deleted by us already: the plan says why
            try:
                job = await self._api.get_job(namespace, name)
            except NotFound:
                missing.pop(name, None)
                continue
            ref = job.metadata.controller_ref()
            if ref is None or ref.uid != uid or job.deleting:
                missing.pop(name, None)
                continue
            clock = self._monotonic()
            first, last = missing.get(name, (clock, clock))
            if clock - last > CACHE_LAG_GAP_SECONDS:
                first = clock
            missing[name] = (first, clock)
            waited = clock - first
            if waited < CACHE_LAG_WAIT_SECONDS:
                log.info("job not in the cache yet; planning once it is", job=name, waited=round(waited))
                # Sooner at first (a watch event moments late), then less often: the Job's event wakes
                # the flow when it comes, and a hung watch takes minutes.
                again = min(max(CACHE_LAG_RETRY_SECONDS, waited / 4), CACHE_LAG_RETRY_MAX_SECONDS)
                again = min(again, CACHE_LAG_WAIT_SECONDS - waited)
                wait = again if wait is None else min(wait, again)
                continue
            why = unwatched_message(job, waited)
            with contextlib.suppress(NotFound, Conflict):  # gone, or another Job of that name: not ours
                await self._api.delete_job(namespace, name, job.metadata.uid)
            log.warning("job the cache never showed deleted; its attempt fails", job=name, why=why)
            del missing[name]
            self._unwatched.setdefault(uid, {})[name] = why
        if not missing:
            self._unseen.pop(uid, None)
        return wait

    def _prune(self, uid: str, unseen: Sequence[str]) -> None:
        """Forget the flow's Jobs that its Running steps no longer miss: the cache shows them again, or
        their steps moved on (the plan's write recording a deleted one's end landed)."""
        for known in (self._unseen, self._unwatched):
            entries = known.get(uid)
            if entries is None:
                continue
            still = set(unseen)
            for name in [n for n in entries if n not in still]:
                del entries[name]
            if not entries:
                del known[uid]

    def kept(self) -> int:
        """The flows whose missing Jobs are remembered (each until its steps move on, or it goes)."""
        return len(self._unseen.keys() | self._unwatched.keys())

    def forget(self, uid: str) -> None:
        """The flow was deleted: nothing of its Jobs is kept."""
        self._unseen.pop(uid, None)
        self._unwatched.pop(uid, None)

    def unwatched(self, uid: str) -> Mapping[str, str] | None:
        """The flow's Running steps' Jobs deleted because the cache never showed them: why, by name (what
        the plan says of their attempts)."""
        return self._unwatched.get(uid)


def unwatched_message(job: Job, waited: float) -> str:
    """Why the step of a Job the cache never showed fails: it ran, unseen, and was deleted."""
    labels = labels_of(job)
    if labels is not None and labels.get(LABEL_MANAGED_BY) != MANAGED_BY:
        cause = f"label {LABEL_MANAGED_BY} is not {MANAGED_BY}"
    else:
        cause = f"not in its Job watch for {waited:.0f}s"
    return f"Job {job.metadata.name} deleted: it ran but the controller could not see it ({cause})"
