"""A fake cluster for the planner: applies a Plan's actions to an in-memory set of Jobs, completes or
fails Jobs on request, and moves a fake clock. Used by the planner's tests and benchmarks; no I/O.

    sim = Simulator(flow, now=T0)
    sim.reconcile()                 # plan + apply, like one controller reconcile
    sim.complete(sim.running()[0])  # the Job controller finished a Job
    sim.complete(name, messages={"main": '{"digest": "sha256:..."}'})  # ...its pod wrote these
    sim.advance(sim.last.requeue_after)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from zen_flow.api.constants import FlowPhase
from zen_flow.api.flow_status import JobFlowStatus
from zen_flow.api.job import JOB, Job
from zen_flow.api.jobflow import JobFlow
from zen_flow.api.meta import Condition
from zen_flow.api.pod import Pod
from zen_flow.core import jsonpatch
from zen_flow.core.expressions import Evaluator
from zen_flow.core.matrix import effective_flow
from zen_flow.planner import (
    CreateJob,
    CreateResource,
    DeleteFlow,
    DeleteJob,
    MemoAnswer,
    Peer,
    PendingJob,
    Plan,
    PodMessages,
    SaveMemo,
    StopChild,
    jobs_to_read,
    pending,
    plan,
    pod_wait,
    pods_moved,
    pods_to_read,
)


class DuplicateCreate(AssertionError):
    """The planner asked to create a Job that already exists (a real apiserver would answer 409)."""


@dataclass
class Simulator:
    flow: JobFlow
    now: datetime
    jobs: dict[str, Job] = field(default_factory=dict)
    plans: list[Plan] = field(default_factory=list)
    created: list[str] = field(default_factory=list)  # every Job name ever created, in order
    steps: dict[str, str] = field(default_factory=dict)  # Job name -> its step
    flow_deleted: bool = False
    # Objects of spec.resourceTemplates: (kind, name) -> manifest, as created.
    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    # False: a deleted Job lingers with a deletionTimestamp (as while its pods terminate) until
    # `collect()` removes it; True: it disappears at once.
    instant_delete: bool = True
    strict: bool = True  # raise DuplicateCreate instead of ignoring a second create of one name
    # Job name -> {container: termination message} of its finished pod; a finished Job missing here
    # has no pod left (as after the pod was garbage-collected).
    pod_messages: dict[str, dict[str, str]] = field(default_factory=dict)
    # Step name -> {container: message}: what every Job of that step writes when `complete` gets none.
    written: dict[str, dict[str, str]] = field(default_factory=dict)
    progress_deadline: float = 0.0  # the controller's --progress-deadline-seconds (0: off)
    # What evaluates `when` expressions other than phase tests (None: in-process, unbounded).
    evaluate: Evaluator | None = None
    # The cluster's clocks (apiserver, Job controller) minus the controller's, in seconds: every Job
    # timestamp is stamped by them (negative: the cluster is behind).
    skew: float = 0.0
    # Job name -> the pods a read of it finds (`stick`); what the controller knows of each pending Job
    # (since when it saw it pending, its last read of its pods), by Job name (controller/pod_reads.py);
    # the reads made (Job names, in order), and those made from the apiserver's cache.
    pods: dict[str, list[Pod]] = field(default_factory=dict)
    pending_jobs: dict[str, PendingJob] = field(default_factory=dict)
    pod_reads: list[str] = field(default_factory=list)
    cached_pod_reads: list[str] = field(default_factory=list)
    # Memoize caches: ConfigMap name -> its data, as the controller reads and patches them.
    memo_cache: dict[str, dict[str, str]] = field(default_factory=dict)
    # Every lookup the controller made for the plans (step names), in order.
    memo_reads: list[str] = field(default_factory=list)
    # True: `flow` holds the stored spec, and each plan gets its effective flow (core/matrix.py) from it
    # and its current status, as the controller's MatrixFlows does (a matrix reading an output).
    expand: bool = False
    # Every StopChild sent, in order: one held for the write (planner.held) only once it landed, as the
    # controller sends it; what its patch does to the child is the test's to say.
    child_stops: list[StopChild] = field(default_factory=list)
    _uid: int = 0

    @property
    def last(self) -> Plan:
        return self.plans[-1]

    @property
    def phase(self) -> str | None:
        return self.flow.status.phase

    @property
    def terminal(self) -> bool:
        return self.phase in (FlowPhase.SUCCEEDED, FlowPhase.FAILED)

    def reconcile(self, *, write_status: bool = True, held: bool = True, peers: Sequence[Peer] = ()) -> Plan:
        """One reconcile; `write_status=False`: a status write lost after the actions ran; `held=False`: the
        actions that wait for it (planner.held) lost after it landed; `peers`: the other flows of its
        concurrency group (see `zen_flow_dev.testing.group`)."""
        result = self.preview(peers=peers)
        self.apply(result, write_status=write_status, held=held)
        return result

    def preview(self, *, peers: Sequence[Peer] = ()) -> Plan:
        """The plan the next reconcile makes, without applying it."""
        jobs = list(self.jobs.values())
        flow = effective_flow(self.flow) if self.expand else self.flow
        # What the controller reads before planning: the pods of the Jobs the planner asks about.
        messages: dict[str, PodMessages] = {
            name: self.pod_messages.get(name) for name in jobs_to_read(flow, jobs)
        }
        self._read_pods(flow, jobs)
        memos: dict[str, MemoAnswer] = {}
        while True:
            result = plan(
                flow,
                jobs,
                self.now,
                peers=peers,
                messages=messages,
                progress_deadline=self.progress_deadline,
                evaluate=self.evaluate,
                memos=memos,
                pods=self.pending_jobs,
            )
            # As the controller does: the entries the plan asked for, then the plan again with them.
            if not result.lookups:
                return result
            for lookup in result.lookups:
                self.memo_reads.append(lookup.step)
                found = self.memo_cache.get(lookup.config_map, {}).get(lookup.data_key)
                memos[lookup.step] = MemoAnswer(lookup.key, found)

    def _read_pods(self, flow: JobFlow, jobs: Sequence[Job]) -> None:
        """As the controller does before planning: note the pending Jobs it has not seen turn pending
        (from now), forget those no longer pending, and read the pods of those whose read is due."""
        names = {job.metadata.name for job in jobs}
        self.pending_jobs = {n: look for n, look in self.pending_jobs.items() if n in names}
        for job in jobs:
            self._saw(job)
        for read in pods_to_read(flow, jobs, self.now, self.pending_jobs):
            name = read.job
            self.pod_reads.append(name)
            if not read.decisive:
                self.cached_pod_reads.append(name)
            look = self.pending_jobs[name]
            found = pod_wait(
                self.pods.get(name, ()), look.job_uid, self.now, look.wait, consistent=read.decisive
            )
            self.pending_jobs[name] = replace(look, wait=found)

    def _saw(self, job: Job, old: Job | None = None) -> None:
        """As the controller's Job informer handler does: note when a Job turns pending and when its pod
        counts move while it is, by the controller's clock, and forget it once it no longer is."""
        name = job.metadata.name
        if pending(job) and name in self.jobs:
            look = self.pending_jobs.get(name)
            if look is None or look.job_uid != job.metadata.uid:
                self.pending_jobs[name] = PendingJob(job.metadata.uid, self.now)
            elif old is not None and pods_moved(old, job):
                self.pending_jobs[name] = replace(look, moved_at=self.now)
        else:
            self.pending_jobs.pop(name, None)

    def apply(self, result: Plan, *, write_status: bool = True, held: bool = True) -> None:
        self.plans.append(result)
        # As the reconciler: held actions go out once the write landed, or when there was nothing to write.
        landed = write_status or result.status == self.flow.status
        for action in result.actions:
            if isinstance(action, CreateJob):
                self._create(action)
            elif isinstance(action, DeleteJob) and not action.after_write:
                self._delete(action.name)
            elif isinstance(action, StopChild) and not action.after_write:
                self.child_stops.append(action)
            elif isinstance(action, DeleteFlow):
                self.flow_deleted = True
            elif isinstance(action, CreateResource):
                if (action.kind, action.name) in self.resources and self.strict:
                    raise DuplicateCreate(f"{action.kind} {action.name}")
                self.resources[(action.kind, action.name)] = action.body
            elif isinstance(action, SaveMemo):
                self.memo_cache.setdefault(action.config_map, {})[action.data_key] = action.value
        if write_status and result.status != self.flow.status:
            # Through the wire, as the controller does it: a JSON patch on the old status. A status
            # that does not survive the round trip unchanged would cause endless writes.
            old = {"metadata": {"resourceVersion": "1"}, "status": self.flow.status.to_wire()}
            ops = jsonpatch.status_ops(self.flow.status, result.status, "1")
            wire = jsonpatch.apply(old, ops)["status"]
            status = JobFlowStatus.model_validate_json(json.dumps(wire))
            # The controller's cache takes its own write's watch event as this prediction: it must be
            # what decoding the stored status gives.
            predicted = jsonpatch.patched_status(self.flow.status, ops)
            if predicted is not None and predicted != status:
                raise AssertionError(f"patched_status predicted {predicted!r}, the wire holds {status!r}")
            self.flow = self.flow.model_copy(update={"status": status})
        if landed and held:
            for action in result.actions:
                if isinstance(action, DeleteJob) and action.after_write:
                    self._delete(action.name)
                elif isinstance(action, StopChild) and action.after_write:
                    self.child_stops.append(action)

    def _create(self, action: CreateJob) -> None:
        name = action.name
        if name in self.jobs:
            if self.strict:
                raise DuplicateCreate(name)
            return
        self._uid += 1
        meta: dict[str, Any] = dict(action.body["metadata"])
        meta["uid"] = f"uid-{self._uid}"
        # As the apiserver stores it: whole seconds, cut down (the create happened later within the second).
        meta["creationTimestamp"] = self.stamp().isoformat()
        self.jobs[name] = JOB.validate_python({"metadata": meta, "spec": action.body.get("spec", {})})
        self.steps[name] = action.step
        self.created.append(name)

    def _delete(self, name: str) -> None:
        job = self.jobs.get(name)
        if job is None:
            return
        if self.instant_delete:
            del self.jobs[name]
        else:
            self.jobs[name] = replace(job, metadata=replace(job.metadata, deletion_timestamp=self.stamp()))

    def stamp(self) -> datetime:
        """Now by the cluster's clock, as the apiserver stores it (metav1.Time: whole seconds, cut down)."""
        return (self.now + timedelta(seconds=self.skew)).replace(microsecond=0)

    def collect(self) -> None:
        """Garbage-collect Jobs that are being deleted."""
        self.jobs = {n: j for n, j in self.jobs.items() if not j.deleting}

    # --- what the Job controller and users do ---------------------------------------------------------

    def running(self) -> list[str]:
        return sorted(n for n, j in self.jobs.items() if not j.finished and not j.deleting)

    def _finish(self, name: str, type_: str, reason: str, message: str, **counts: Any) -> None:
        """Terminal condition plus the counters and times the Job controller sets for a one-pod Job (what
        output parameters such as `$.succeeded` read)."""
        job = self.jobs[name]
        now = self.stamp()
        cond = Condition(type=type_, status="True", reason=reason, message=message, last_transition_time=now)
        update: dict[str, Any] = {
            "conditions": (*job.status.conditions, cond),
            "start_time": job.status.start_time or now,
            "active": 0,
            **counts,
        }
        self.jobs[name] = replace(job, status=replace(job.status, **update))

    def complete(self, name: str, messages: dict[str, str] | None = None) -> None:
        """The Job completed; `messages`: what its pod's containers wrote to their termination message."""
        step = self.steps[name]
        messages = messages if messages is not None else self.written.get(step)
        if messages is not None:
            self.pod_messages[name] = messages
        self._finish(name, "Complete", "Completed", "", succeeded=1, completion_time=self.stamp())

    def fail(
        self,
        name: str,
        reason: str = "BackoffLimitExceeded",
        message: str = "Job has failed",
        messages: dict[str, str] | None = None,
    ) -> None:
        """The Job failed; `messages`: the termination messages of its last failed pod."""
        if messages is not None:
            self.pod_messages[name] = messages
        self._finish(name, "Failed", reason, message, failed=1)

    def stick(self, name: str, pods: Sequence[Pod], *, ready: int = 0, **counts: int) -> None:
        """The Job has no ready pod (`ready`), and a read of its pods finds `pods` (api.pod models; their
        owner references name the Job's uid to count as its own: `owner(name)`); `counts`: the Job
        controller's other counts of its pods (`active`: 1 unless given, `succeeded`, `failed`)."""
        old = self.jobs[name]
        status = replace(
            old.status,
            ready=ready,
            active=counts.get("active", 1),
            succeeded=counts.get("succeeded", old.status.succeeded),
            failed=counts.get("failed", old.status.failed),
        )
        self.jobs[name] = replace(old, status=status)
        self.pods[name] = list(pods)
        self._saw(self.jobs[name], old)  # the controller sees the Job's update at once

    def owner(self, name: str) -> dict[str, Any]:
        """The ownerReference the Job controller puts on the Job `name`'s pods."""
        uid = self.jobs[name].metadata.uid
        return {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid, "controller": True}

    def hold(self, name: str, suspended: bool = True) -> None:
        """A queue (Kueue) or a user suspended the Job, or resumed it: the Job controller's `Suspended`
        condition, and on a resume a new start time (its activeDeadlineSeconds counts from it)."""
        job = self.jobs[name]
        now = self.stamp()
        cond = Condition(
            type="Suspended",
            status="True" if suspended else "False",
            reason="JobSuspended" if suspended else "JobResumed",
            last_transition_time=now,
        )
        others = tuple(c for c in job.status.conditions if c.type != "Suspended")
        started = job.status.start_time if suspended else now
        status = replace(job.status, conditions=(*others, cond), start_time=started, active=0)
        self.jobs[name] = replace(job, status=status)

    def delete(self, name: str) -> None:
        """Someone else deletes the Job: gone at once, or lingering while its pods go (`instant_delete`)."""
        self._delete(name)

    def vanish(self, name: str) -> None:
        """Someone else deleted the Job."""
        self.jobs.pop(name, None)

    def advance(self, seconds: float | None) -> None:
        if seconds:
            self.now += timedelta(seconds=seconds)

    def annotate(self, key: str, value: str | None) -> None:
        annotations = dict(self.flow.metadata.annotations)
        if value is None:
            annotations.pop(key, None)
        else:
            annotations[key] = value
        meta = self.flow.metadata.model_copy(update={"annotations": annotations})
        self.flow = self.flow.model_copy(update={"metadata": meta})

    def set_suspend(self, suspend: bool) -> None:
        spec = self.flow.spec.model_copy(update={"suspend": suspend})
        meta = self.flow.metadata.model_copy(update={"generation": self.flow.metadata.generation + 1})
        self.flow = self.flow.model_copy(update={"spec": spec, "metadata": meta})


Outcome = Callable[[str], str]  # Job name -> "complete" | "fail" | "wait"


def run(
    sim: Simulator,
    outcome: Outcome,
    *,
    max_rounds: int = 10_000,
    tick: float = 1.0,
    on_idle: Callable[[Simulator], bool] | None = None,
) -> int:
    """Drive the flow until it is terminal and return the number of reconciles.

    Each round: reconcile, settle every running Job as `outcome` says ("wait" leaves it running), then
    move the clock: by `tick` while Jobs are busy, else to the planner's requested wake-up; a status
    written wakes the flow at once, as its watch event does the controller's. `on_idle` runs when
    nothing else can happen (e.g. to approve a Manual step); without progress the flow is stuck and an
    AssertionError says where.
    """
    for rounds in range(1, max_rounds + 1):
        before = sim.flow.status
        result = sim.reconcile()
        if sim.terminal:
            return rounds
        settled = False
        for name in sim.running():
            verdict = outcome(name)
            if verdict == "complete":
                sim.complete(name)
                settled = True
            elif verdict == "fail":
                sim.fail(name)
                settled = True
        busy = settled or bool(result.actions) or bool(sim.running())
        if busy:
            step = tick if result.requeue_after is None else min(tick, result.requeue_after)
            sim.advance(step)
        elif result.requeue_after is not None:
            sim.advance(max(result.requeue_after, 0.001))
        elif not (on_idle is not None and on_idle(sim)) and sim.flow.status == before:
            # Nothing written either (a write wakes the flow: the finally steps start after one).
            raise AssertionError(f"flow is stuck in {sim.phase}: {sim.flow.status.message}")
    raise AssertionError(f"flow did not finish within {max_rounds} rounds")
