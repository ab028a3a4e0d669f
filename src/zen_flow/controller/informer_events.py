"""What the informers' events do to the controller: they only enqueue the flow (at its priority) and lower
its expectations, keep the books fed from the caches (concurrency groups, slots, step locks) up to date,
and forget a deleted flow everywhere; the plan is the reconcile's (reconciler.py).
"""

from __future__ import annotations

from zen_flow import planner
from zen_flow.api import Job, JobFlow
from zen_flow.controller.announcements import Announcements
from zen_flow.controller.archiver import Archiver
from zen_flow.controller.cluster_access import FlowCache
from zen_flow.controller.executor import PlanExecutor
from zen_flow.controller.first_jobs import FirstJobs
from zen_flow.controller.flow_groups import FlowGroups
from zen_flow.controller.flow_memory import FlowMemory, FlowUids
from zen_flow.controller.flow_queue import FailureReports, priority
from zen_flow.controller.flow_slots import FlowSlots
from zen_flow.controller.matrix_flows import MatrixFlows
from zen_flow.controller.metrics import Metrics
from zen_flow.controller.plan_runner import PlanRunner
from zen_flow.controller.status_writer import StatusWriter
from zen_flow.controller.step_locks import StepLocks
from zen_flow.controller.templates import TemplateResolver
from zen_flow.controller.transition_metrics import namespace_seen
from zen_flow.controller.validity import Validity
from zen_flow.informer import owner_flow_key
from zen_flow.machinery.clock import Clock
from zen_flow.machinery.expectations import Expectations
from zen_flow.machinery.workqueue import WorkQueue


class InformerEvents:
    """The informers' event handlers of the Controller (reconciler.py), which sets what they use."""

    _flows: FlowCache
    _queue: WorkQueue[str]
    _expectations: Expectations
    _clock: Clock
    _metrics: Metrics
    _status: StatusWriter
    _announcements: Announcements
    _groups: FlowGroups
    _slots: FlowSlots
    _locks: StepLocks
    _runner: PlanRunner
    _executor: PlanExecutor
    _validity: Validity
    _matrix: MatrixFlows
    _first_jobs: FirstJobs
    _templates: TemplateResolver
    _failures: FailureReports
    _archive: Archiver | None
    _memory: FlowMemory

    def _remembering(self, family: object) -> FlowMemory:
        """Every part that keeps state by flow UID (`family`: the JobCache, when it keeps child flows'),
        forgotten together (flow_memory.py)."""
        parts: list[FlowUids] = [
            self._expectations, self._validity, self._matrix, self._status, self._announcements,
            self._first_jobs, self._templates, self._runner.pod_reads, self._runner.cpu, self._runner.unseen,
            self._executor,
        ]  # fmt: skip
        if self._archive is not None:
            parts.append(self._archive)
        if isinstance(family, FlowUids):
            parts.append(family)
        return FlowMemory(parts, self._flows.get)

    @property
    def memory(self) -> FlowMemory:
        """What the controller keeps by flow UID; its sweep runs beside the workers (flow_memory.py)."""
        return self._memory

    def _dropped(self, key: str) -> None:
        """This replica no longer reconciles the flow of `key` (its shard's holder does): forget its
        failing requests (by its UID) and reconciles (by its key), told anew should it come back."""
        if (flow := self._flows.get(key)) is not None:
            self._executor.forget(flow.metadata.uid)
        self._failures.forget(key)

    def on_flow_event(self, flow: JobFlow, old: JobFlow | None = None) -> None:
        if old is None:  # on a standby too: its series are at 0 long before it leads
            namespace_seen(self._metrics, flow.metadata.namespace)
        self._status.observed(flow)
        self._queue.add(flow.key, priority(flow))
        self._groups.observe(old, flow)
        self._slots.observe(old, flow)
        self._locks.observe(old, flow)
        # Its children run under its slot only while it has started and its status names them
        # (planner.runs_under): a status write that records or clears one decides them anew.
        if old is None or planner.hosted(old) != planner.hosted(flow):
            self._slots.family_changed(flow)

    def on_flow_deleted(self, flow: JobFlow) -> None:
        self._memory.forget(flow.metadata.uid)  # its failing requests (the executor's) among the rest
        self._failures.forget(flow.key)
        # Its timers would wake nothing, and stay until due: a finished flow's TTL (a day by default).
        self._queue.cancel_after(flow.key)
        self._queue.add(flow.key)
        self._groups.observe(flow, None)
        self._slots.observe(flow, None)
        self._locks.observe(flow, None)
        self._slots.family_changed(flow)

    def on_job_event(self, job: Job, old: Job | None = None, *, deleted: bool = False) -> None:
        """A Job was added, updated (`old` is its previous version) or deleted."""
        key = owner_flow_key(job)
        owner = job.metadata.controller_ref()
        if key is None or owner is None:
            return
        if deleted:
            self._expectations.deletion_observed(owner.uid, job.metadata.name)
        else:
            self._expectations.creation_observed(owner.uid, job.metadata.name)
            if job.deleting:
                self._expectations.deletion_observed(owner.uid, job.metadata.name)
        if (flow := self._flows.get(key)) is None:
            # Not a flow of ours: another controller instance's (Jobs are not selected by instance), or
            # one gone (its deletion enqueued it). A reconcile would find nothing, yet count as one.
            # Should the flow come (a fresh start's list, a relabel to this instance), its own add
            # event enqueues it, and the plan then reads its Jobs from the cache.
            return
        if old is not None and not deleted and not planner.plan_sees_change(old, job):
            self._metrics.job_updates_ignored.inc()
            self._pods_moved(key, flow, owner.uid, old, job)
            self._saw(flow, owner.uid, job, old)
            return  # a counter moved (active, ready): no plan can differ now
        self._saw(flow, owner.uid, job, old, deleted=deleted)
        self._queue.add(key)
        # A Job running for a flow whose status records no start (a lost write, a failover) holds a slot,
        # and the locks of its step.
        self._slots.observe(flow, flow)
        self._locks.observe(flow, flow)

    def _saw(
        self, flow: JobFlow, owner_uid: str, job: Job, old: Job | None, *, deleted: bool = False
    ) -> None:
        """When the Job turns pending or its pods move while it is, by our clock: its step's wait never
        counts from before the controller saw it (planner/pending_pods.py). Not for the Job of a flow
        deleted under `flow`'s name (the garbage collector's now): nothing would forget it."""
        if owner_uid == flow.metadata.uid:
            self._runner.pod_reads.saw(owner_uid, job, self._clock.now(), old, deleted=deleted)

    def _pods_moved(self, key: str, flow: JobFlow, owner_uid: str, old: Job, job: Job) -> None:
        """The Job's pod counts moved, which only its step's pod watch reads (planner/pod_watch.py):
        a Job that turns pending (its pod is not ready yet, or no longer), or whose pods come and go while
        it is, is looked at once its pods may be due for a read (a timer: one per flow at a time, the
        earliest; most pods are ready by then and the plan does nothing); a Job whose waiting pod was
        named in its step's message and turns ready is planned now, to take the message back."""
        if planner.pending(job):
            if not planner.pending(old) or planner.pods_moved(old, job):
                self._queue.add_after(key, planner.first_look_after(flow), priority(flow))
        elif planner.pending(old) and self._runner.pod_reads.watched(owner_uid, job.metadata.name):
            self._queue.add(key, priority(flow))
