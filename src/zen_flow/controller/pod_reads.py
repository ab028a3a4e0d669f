"""Why pending steps' pods wait: the controller's reads of their Jobs' pods, and the last of each, kept.

A Running step whose Job has no ready pod for a while has its Job's pods listed (by the Job's name
label, the list the termination messages use: kube/pods.py), before its flow is planned, when
planner.pods_to_read says a read is due: a while after the attempt began, then every half minute while
it waits, and at its podPendingTimeoutSeconds; never at every reconcile. At most
planner.pending_pods.READS_PER_PLAN per plan, POD_READS_AT_ONCE of them in flight. What a read found
(`planner.PodWait`) is kept for the flow's next plans, by flow and Job, and forgotten once the Job no
longer waits (or the flow is deleted): memory follows the Jobs that wait, not the flows.

A read that fails is not retried here, and fails nothing: the plan keeps what it had (or nothing) and
asks again a few seconds later (planner.pod_watch); the flow's other work goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

from zen_flow import planner
from zen_flow.api import Job, JobFlow
from zen_flow.api.pod import Pod
from zen_flow.logging import get_logger

log = get_logger(__name__)

# Pod reads in flight per plan (the client allows 32 in all), as for termination messages.
POD_READS_AT_ONCE = 8


class PodApi(Protocol):
    async def pods_of(self, namespace: str, job: str) -> Sequence[Pod]:
        """The pods that wear the Job's name label."""
        ...


class PodReads:
    def __init__(self, api: PodApi) -> None:
        self._api = api
        self._seen: dict[str, dict[str, planner.PodWait]] = {}  # flow uid -> Job name -> its last read
        self._failing: set[tuple[str, str]] = set()  # (flow uid, Job) whose last read failed: said once

    def seen(self, flow: JobFlow) -> Mapping[str, planner.PodWait]:
        """The last read of each of the flow's waiting Jobs, by Job name."""
        return self._seen.get(flow.metadata.uid, {})

    def watched(self, owner_uid: str, job: str) -> bool:
        """Was the Job `job` of the flow `owner_uid` found waiting by its last read? Its step may say so:
        a pod of it that turns ready is worth a plan (its message is cleared), not only a Job's end."""
        wait = self._seen.get(owner_uid, {}).get(job)
        return wait is not None and not wait.running

    def forget(self, flow_uid: str) -> None:
        self._seen.pop(flow_uid, None)
        self._failing = (
            {key for key in self._failing if key[0] != flow_uid} if self._failing else self._failing
        )

    async def read(self, flow: JobFlow, jobs: Sequence[Job], now: datetime) -> None:
        """Read the pods of the flow's Jobs whose read is due (planner.pods_to_read), and forget the
        reads of its Jobs that no longer wait."""
        uid = flow.metadata.uid
        known = self._seen.get(uid, {})
        if known:
            waiting = {j.metadata.name for j in jobs if planner.pending(j)}
            known = {name: wait for name, wait in known.items() if name in waiting}
        names = planner.pods_to_read(flow, jobs, now, known)
        if names:
            by_name = {job.metadata.name: job for job in jobs}
            at_once = asyncio.Semaphore(POD_READS_AT_ONCE)

            async def look(name: str) -> planner.PodWait | None:
                async with at_once:
                    try:
                        pods = await self._api.pods_of(flow.metadata.namespace, name)
                    except Exception as err:  # a hint for a message: the plan asks again soon
                        said = (uid, name) in self._failing
                        self._failing.add((uid, name))
                        (log.debug if said else log.warning)(
                            "could not read a pending Job's pods", job=name, error=str(err)
                        )
                        return None
                self._failing.discard((uid, name))
                return planner.pod_wait(pods, by_name[name].metadata.uid, now)

            reads = [asyncio.ensure_future(look(name)) for name in names]
            try:
                found = await asyncio.gather(*reads)
            except BaseException:
                for pending in reads:
                    pending.cancel()
                await asyncio.gather(*reads, return_exceptions=True)
                raise
            known = {**known, **{n: w for n, w in zip(names, found, strict=True) if w is not None}}
        if known:
            self._seen[uid] = known
        else:
            self._seen.pop(uid, None)
