"""The controller's informer caches over the apiserver fake's objects (apiserver_fake.py): they lag
behind the truth until `sync()` delivers the changes, with the controller's event handlers, as watch
events would; the controller reads them as its FlowCache and JobCache.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from zen_flow.api import Job, JobFlow


class FakeInformerCaches:
    """The flow and Job informers' caches of `flows` and `jobs`, the truth the fake apiserver keeps."""

    flows: dict[str, JobFlow]  # the truth, by namespace/name
    jobs: dict[tuple[str, str], Job]  # the truth, by (namespace, name)

    def __init__(self) -> None:
        self._cached_flows: dict[str, JobFlow] = {}
        self._cached_jobs: dict[tuple[str, str], Job] = {}
        self.disowned: list[str] = []  # Job keys the controller deleted as strays (`deleted_stray`)
        # Jobs of the truth the Job informer does not show (`sync` leaves them out, as gone): a Job watch
        # that lost them (one that hangs, or is behind), or a Job the informer's label selector no longer
        # selects (`FakeApiServer.relabel`).
        self.unwatched: set[tuple[str, str]] = set()
        # The controller's event handlers, as its informers call them.
        self.on_flow: Callable[[JobFlow], None] | None = None
        self.on_flow_deleted: Callable[[JobFlow], None] | None = None
        self.on_job: Callable[[Job], None] | None = None
        self.on_job_deleted: Callable[[Job], None] | None = None

    def sync(self, *, flows: bool = True, jobs: bool = True) -> None:
        """The informers catch up (both, or one: two informers lag independently): the caches see the
        truth, and the handlers get the changed objects. An object deleted and re-created under its name
        since the last sync is told deleted, then added, as the informers tell a relist's (store.py)."""
        shown = {k: j for k, j in self.jobs.items() if k not in self.unwatched}
        was_flows, was_jobs = self._cached_flows, self._cached_jobs
        changed_flows = [f for k, f in self.flows.items() if flows and was_flows.get(k) is not f]
        changed_jobs = [(k, j) for k, j in shown.items() if jobs and was_jobs.get(k) is not j]
        gone_jobs = [j for k, j in was_jobs.items() if jobs and k not in shown]
        gone_flows = [f for k, f in was_flows.items() if flows and k not in self.flows]
        if flows:
            self._cached_flows = dict(self.flows)
        if jobs:
            self._cached_jobs = shown
        for key, job in changed_jobs:
            old_job = was_jobs.get(key)
            if old_job is not None and old_job.metadata.uid != job.metadata.uid and self.on_job_deleted:
                self.on_job_deleted(old_job)
            if self.on_job is not None:
                self.on_job(job)
        for job in gone_jobs:
            if self.on_job_deleted is not None:
                self.on_job_deleted(job)
        for flow in changed_flows:
            old = was_flows.get(flow.key)
            if old is not None and old.metadata.uid != flow.metadata.uid and self.on_flow_deleted:
                self.on_flow_deleted(old)
            if self.on_flow is not None:
                self.on_flow(flow)
        for flow in gone_flows:
            if self.on_flow_deleted is not None:
                self.on_flow_deleted(flow)

    # --- FlowCache, JobCache: what the controller's informers have seen --------------------------------

    def get(self, key: str) -> JobFlow | None:
        return self._cached_flows.get(key)

    def parse_error(self, key: str) -> str | None:
        return None

    def concurrency_group(self, group: str) -> Sequence[JobFlow]:
        return ()

    def expect_status(self, flow: JobFlow, resource_version: str, ops: list[dict[str, Any]]) -> None:
        pass  # this cache takes every version from the fake apiserver

    def deleted_stray(self, key: str) -> None:
        self.disowned.append(key)  # the JobInformer keeps no tombstone of it

    def children_of(self, owner_uid: str) -> Sequence[JobFlow]:
        """The cached flows whose controlling ownerReference names this UID (the JobFlow informer's
        index of them: `JobFlowInformer.children_of`)."""
        return [
            f
            for f in self._cached_flows.values()
            if (ref := f.metadata.controller_ref()) is not None
            and ref.uid == owner_uid
            and ref.kind == "JobFlow"
        ]

    def jobs_for(self, owner_uid: str) -> Sequence[Job]:
        return [
            j
            for j in self._cached_jobs.values()
            if any(r.uid == owner_uid for r in j.metadata.owner_references)
        ]
