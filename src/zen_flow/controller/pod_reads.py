"""Why pending steps' pods wait: what the controller knows of each pending Job (since when it has seen it
pending, by its own clock), its reads of their pods, and the last of each, kept.

The Job informer's handler notes each Job that turns pending (its Job controller reports no ready pod)
at the moment the controller sees it (`saw`), on every replica, and forgets it once it no longer is:
a step's wait never counts from before the controller saw it, whatever the cluster's clocks say. A
Running step whose Job has been pending a while has its Job's pods listed (by the Job's name label, the
list the termination messages use: kube/pods.py), before its flow is planned, when planner.pods_to_read
says a read is due: half a minute after it turned pending, then less and less often while what the
reads find stays the same (up to every 5 minutes), and at its podPendingTimeoutSeconds; never at every
reconcile. A read that may fail the step (at its bound) is made from the apiserver's storage, the others
from its cache (`resourceVersion=0`: no etcd read). At most planner.pending_pods.READS_PER_PLAN per plan,
POD_READS_AT_ONCE of them in flight, and at most POD_READS_PER_SECOND in all (a namespace
NAMESPACE_POD_READS_PER_SECOND of them): a read past those is not made now, and is asked for again later:
5 s after the first refusal, twice as long after each in a row, up to a minute (planner.refused: no flow
re-plans every few seconds for a read it will not get). The read at a step's bound is not the limiter's
(one per bound that falls due, followed by the Job's deletion): reads for messages never delay it.
What a read found (`planner.PodWait`) is kept for the flow's next plans,
by flow and Job, and forgotten with the Job's pending (or the flow): memory follows the Jobs that wait,
not the flows.

A read that fails is not retried here, and fails nothing: the plan keeps what it had (or nothing) and
asks again a few seconds later (planner.pod_watch); the flow's other work goes on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Protocol

from zen_flow import planner
from zen_flow.api import Job, JobFlow
from zen_flow.api.pod import Pod
from zen_flow.logging import get_logger
from zen_flow.machinery.ratelimit import SharedTokens

log = get_logger(__name__)

# Pod reads in flight per plan (the client allows 32 in all), as for termination messages.
POD_READS_AT_ONCE = 8
# Pod reads per second, by the whole controller and by one namespace (a tenant's fan-out of stuck Jobs
# leaves the others theirs), and the bursts they allow.
POD_READS_PER_SECOND = 10.0
POD_READS_BURST = 40
NAMESPACE_POD_READS_PER_SECOND = 4.0
NAMESPACE_POD_READS_BURST = 16


class PodApi(Protocol):
    async def pods_of(self, namespace: str, job: str, *, cached: bool = False) -> Sequence[Pod]:
        """The pods that wear the Job's name label (`cached`: from the apiserver's cache)."""
        ...


class PodReads:
    def __init__(self, api: PodApi, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._api = api
        # flow uid -> Job name -> what is known of it while it is pending
        self._jobs: dict[str, dict[str, planner.PendingJob]] = {}
        self._failing: set[tuple[str, str]] = set()  # (flow uid, Job) whose last read failed: said once
        self._tokens = SharedTokens(
            POD_READS_PER_SECOND,
            POD_READS_BURST,
            NAMESPACE_POD_READS_PER_SECOND,
            NAMESPACE_POD_READS_BURST,
            monotonic=monotonic,
        )

    def seen(self, flow: JobFlow) -> Mapping[str, planner.PendingJob]:
        """What is known of each of the flow's pending Jobs, by Job name."""
        return self._jobs.get(flow.metadata.uid, {})

    def saw(
        self, owner_uid: str, job: Job, now: datetime, old: Job | None = None, *, deleted: bool = False
    ) -> None:
        """The Job informer brought `job` (a Job of the flow `owner_uid`; `old`: its version before) at
        `now`: note when it turns pending and when its pod counts move while it is, forget it when it no
        longer is."""
        known = self._jobs.get(owner_uid)
        name = job.metadata.name
        if not deleted and planner.pending(job):
            look = known.get(name) if known is not None else None
            if look is None or look.job_uid != job.metadata.uid:
                self._jobs.setdefault(owner_uid, {})[name] = planner.PendingJob(job.metadata.uid, now)
            elif old is not None and planner.pods_moved(old, job):
                self._jobs[owner_uid][name] = replace(look, moved_at=now)
        elif known is not None and name in known:
            del known[name]
            if not known:
                del self._jobs[owner_uid]

    def watched(self, owner_uid: str, job: str) -> bool:
        """Was the Job `job` of the flow `owner_uid` found waiting by its last read? Its step may say so:
        a pod of it that turns ready is worth a plan (its message is cleared), not only a Job's end."""
        look = self._jobs.get(owner_uid, {}).get(job)
        return look is not None and look.wait is not None and not look.wait.running

    def forget(self, flow_uid: str) -> None:
        self._jobs.pop(flow_uid, None)
        self._failing = (
            {key for key in self._failing if key[0] != flow_uid} if self._failing else self._failing
        )

    def uids(self) -> set[str]:
        return {*self._jobs, *(uid for uid, _ in self._failing)}

    async def read(self, flow: JobFlow, jobs: Sequence[Job], now: datetime) -> None:
        """Read the pods of the flow's Jobs whose read is due (planner.pods_to_read); note the pending
        Jobs the informer's handler did not (after a restart: from now), and forget those no longer so."""
        uid = flow.metadata.uid
        known = self._jobs.get(uid, {})
        waiting = {j.metadata.name: j for j in jobs if planner.pending(j)}
        if not known and not waiting:
            return
        known = {
            name: seen
            if (seen := known.get(name)) is not None and seen.job_uid == job.metadata.uid
            else planner.PendingJob(job.metadata.uid, now)
            for name, job in waiting.items()
        }
        due = planner.pods_to_read(flow, jobs, now, known)
        if due:
            namespace = flow.metadata.namespace
            at_once = asyncio.Semaphore(POD_READS_AT_ONCE)

            async def look(read: planner.DueRead) -> planner.PodWait | bool:
                """What the read found; False: it failed; True: the limiter refused it."""
                name = read.job
                if not read.decisive and not self._tokens.take(namespace):
                    log.debug("pod read put off: too many at once", job=name)
                    return True
                async with at_once:
                    try:
                        pods = await self._api.pods_of(namespace, name, cached=not read.decisive)
                    except Exception as err:  # a hint for a message: the plan asks again soon
                        said = (uid, name) in self._failing
                        self._failing.add((uid, name))
                        (log.debug if said else log.warning)(
                            "could not read a pending Job's pods", job=name, error=str(err)
                        )
                        return False
                self._failing.discard((uid, name))
                before = known[name]
                return planner.pod_wait(pods, before.job_uid, now, before.wait, consistent=read.decisive)

            reads = [asyncio.ensure_future(look(read)) for read in due]
            try:
                found = await asyncio.gather(*reads)
            except BaseException:
                for pending in reads:
                    pending.cancel()
                await asyncio.gather(*reads, return_exceptions=True)
                raise
            for read, wait in zip(due, found, strict=True):
                if wait is True:
                    known[read.job] = planner.refused(known[read.job], now)
                elif wait is not False:
                    known[read.job] = replace(known[read.job], wait=wait, refusals=0, retry_at=None)
        if known:
            self._jobs[uid] = known
        else:
            self._jobs.pop(uid, None)
