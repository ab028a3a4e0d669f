"""The two informers zen-flow runs: labelled Jobs (indexed by owner) and JobFlows."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from zen_flow.api import Job, JobFlow
from zen_flow.api.constants import API_VERSION, CRON_KIND, GROUP, KIND
from zen_flow.api.flow_status import Initiator, JobFlowStatus, ObjectRef, Progress
from zen_flow.api.job import JobMeta, JobStatus
from zen_flow.api.jobflow import Step
from zen_flow.api.meta import Condition, Model, ObjectMeta, OwnerReference
from zen_flow.core import jsonpatch
from zen_flow.informer.informer import Informer, metadata_of, status_placeholder
from zen_flow.informer.reflector import ListerWatcher, ReflectorOptions
from zen_flow.informer.tombstones import Tombstones
from zen_flow.machinery.clock import Clock
from zen_flow.planner.concurrency import group_of
from zen_flow.planner.jobs import is_jobflow

OWNER_UID_INDEX = "controller-uid"
# JobFlows by concurrency group, `namespace/<workflow.kube-zen.io/concurrency-key label>`.
CONCURRENCY_GROUP_INDEX = "concurrency-group"
# JobFlows by the uid of the CronJobFlow that controls them (its runs).
CRON_OWNER_INDEX = "cron-owner"
# JobFlows by the uid of the JobFlow that controls them: a Flow step's child flows (planner/children.py).
PARENT_INDEX = "parent-flow"


def controller_uid(job: Job) -> list[str]:
    ref = job.metadata.controller_ref()
    return [ref.uid] if ref is not None else []


def flow_concurrency_group(flow: JobFlow) -> list[str]:
    group = group_of(flow)
    return [group] if group is not None else []


def cron_owner_uid(flow: JobFlow) -> list[str]:
    ref = flow.metadata.controller_ref()
    return [ref.uid] if ref is not None and ref.kind == CRON_KIND and ref.group == GROUP else []


def parent_uid(flow: JobFlow) -> list[str]:
    ref = flow.metadata.controller_ref()
    return [ref.uid] if ref is not None and is_jobflow(ref) else []


def owner_cron_key(flow: JobFlow) -> str | None:
    """`namespace/name` of the CronJobFlow controlling `flow` (a run), or None."""
    if not cron_owner_uid(flow):
        return None
    ref = flow.metadata.controller_ref()
    return f"{flow.metadata.namespace}/{ref.name}" if ref is not None else None


def owner_flow_key(job: Job) -> str | None:
    """`namespace/name` of the JobFlow controlling `job`, or None if a JobFlow does not control it."""
    ref = job.metadata.controller_ref()
    if ref is None or not is_jobflow(ref):
        return None
    return f"{job.metadata.namespace}/{ref.name}"


class JobInformer(Informer[Job]):
    """Jobs selected by `app.kubernetes.io/managed-by=zen-flow` (the source applies the selector)."""

    def __init__(
        self,
        source: ListerWatcher,
        *,
        clock: Clock,
        namespaces: Sequence[str] = (),
        options: ReflectorOptions | None = None,
        rng: random.Random | None = None,
        model: type[Job] = Job,
        owner_alive: Callable[[Job], bool] = lambda job: True,
    ) -> None:
        """`model`: the record each Job is cached as (a tool that reads more fields passes a subclass).
        `owner_alive`: does the Job's flow still exist (`JobFlowInformer.owns`)? The garbage collector's
        deletes of a deleted flow's Jobs are no flow's results, and would crowd the tombstones out."""
        super().__init__(
            "jobs",
            source,
            model=model,
            # A flow's Jobs share its ownerReference; Jobs that changed in the same second, their status.
            shared_models=(OwnerReference, Condition, JobStatus),
            unique={JobMeta: ("name", "uid", "resource_version")},
            fallback=_job_placeholder,
            indexers={OWNER_UID_INDEX: controller_uid},
            namespaces=namespaces,
            clock=clock,
            options=options,
            rng=rng,
        )
        # Registered first, so the controller's own handlers (which enqueue the flow) run after it.
        self.gone = Tombstones(
            clock, lambda job: next(iter(controller_uid(job)), None) if owner_alive(job) else None
        )
        self.add_handler(on_add=lambda job: self.gone.forget(job.metadata.key), on_delete=self.gone.remember)

    def deleted_stray(self, key: str) -> None:
        """The controller deletes this Job (`namespace/name`) as a stray of its ended flow, or by
        jobRetention: no tombstone (tombstones.py)."""
        self.gone.disown(key)

    def jobs_for(self, owner_uid: str) -> list[Job]:
        """The Jobs whose controller ownerReference has this UID (a JobFlow's Jobs), sorted by name (their
        keys are `namespace/name`, and a flow's Jobs share its namespace), with the finished ones deleted
        moments ago (tombstones.py)."""
        live = self.store.by_index(OWNER_UID_INDEX, owner_uid, ordered=True)
        gone = self.gone.of(owner_uid)
        if not gone:
            return live
        return sorted([*live, *gone], key=lambda job: job.metadata.name)


class JobFlowInformer(Informer[JobFlow]):
    """JobFlows. One whose spec does not parse is cached as a placeholder with its metadata and (if that
    parses) its status, so reconcile can mark it Failed; `parse_error(key)` says what is wrong."""

    def __init__(
        self,
        source: ListerWatcher,
        *,
        clock: Clock,
        namespaces: Sequence[str] = (),
        options: ReflectorOptions | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(
            "jobflows",
            source,
            model=JobFlow,
            # Flows stamped from one manifest repeat its steps (matched by their JSON: they hold dicts).
            shared_models=(Condition, Progress, Initiator, Step),
            unique={ObjectMeta: ("name", "uid", "resource_version"), ObjectRef: ("name", "uid")},
            reuse=reuse_unchanged,
            head=(FlowHead, assemble_flow),
            fallback=status_placeholder(JobFlow, JobFlowStatus),
            indexers={
                CONCURRENCY_GROUP_INDEX: flow_concurrency_group,
                CRON_OWNER_INDEX: cron_owner_uid,
                PARENT_INDEX: parent_uid,
            },
            namespaces=namespaces,
            clock=clock,
            options=options,
            rng=rng,
        )

    def owns(self, job: Job) -> bool:
        """Is the Job's controller a cached flow that is not being deleted?"""
        ref = job.metadata.controller_ref()
        if ref is None:
            return False
        flow = self.get(f"{job.metadata.namespace}/{ref.name}")
        return flow is not None and flow.metadata.uid == ref.uid and flow.metadata.deletion_timestamp is None

    def runs_of(self, cron_uid: str) -> list[JobFlow]:
        """The cached flows a CronJobFlow (by uid) controls: its runs."""
        return self.store.by_index(CRON_OWNER_INDEX, cron_uid)

    def children_of(self, parent_uid: str) -> list[JobFlow]:
        """The cached flows a JobFlow (by uid) controls: its Flow steps' child flows."""
        return self.store.by_index(PARENT_INDEX, parent_uid)

    def concurrency_group(self, group: str) -> list[JobFlow]:
        """The cached flows of a concurrency group (`namespace/key`, see `planner.group_of`)."""
        return self.store.by_index(CONCURRENCY_GROUP_INDEX, group)

    def expect_status(self, flow: JobFlow, resource_version: str, ops: list[jsonpatch.Operation]) -> None:
        """Our JSON patch `ops` of `flow`'s status was answered with `resource_version`: its watch event is
        `flow` with that version and the patched status (`Informer.expect`; a write of the whole status or
        step list, or of a flow cached as a placeholder, is decoded as usual)."""
        if self.parse_error(flow.key) is not None:
            return
        status = jsonpatch.patched_status(flow.status, ops)
        if status is None:
            return
        old = flow.status
        written = flow.model_copy(
            update={
                "metadata": flow.metadata.model_copy(update={"resource_version": resource_version}),
                "status": status,
            }
        )
        kept = (flow.spec, *old.steps, *(getattr(old, name) for name in JobFlowStatus.model_fields))
        self.expect(written, unchanged=kept)


class FlowHead(Model):
    """A JobFlow without its spec: what a watch event is decoded into first (see `assemble_flow`)."""

    api_version: str = API_VERSION
    kind: str = KIND
    metadata: ObjectMeta = ObjectMeta()
    status: JobFlowStatus = JobFlowStatus()


def assemble_flow(cached: JobFlow, head: FlowHead) -> JobFlow | None:
    """The flow with the cached spec, when the cache holds this generation of this flow (the rule of
    `reuse_unchanged`); None otherwise. The head is validated, the spec was: nothing to validate again."""
    meta, old_meta = head.metadata, cached.metadata
    if meta.uid != old_meta.uid or not meta.generation or meta.generation != old_meta.generation:
        return None
    return JobFlow.model_construct(
        api_version=head.api_version, kind=head.kind, metadata=meta, spec=cached.spec, status=head.status
    )


def reuse_unchanged(cached: JobFlow, decoded: JobFlow) -> list[object]:
    """Keep the cached flow's spec and unchanged step entries in `decoded` (see `informer.Reuse`).

    The spec is kept when the generation is the same: the apiserver bumps it on every spec change of a
    custom resource with a status subresource (a generation of 0 means nobody counts: never kept). A
    step entry is kept when it equals the cached one at the same index.
    """
    meta, old_meta = decoded.metadata, cached.metadata
    if meta.uid != old_meta.uid:
        return []
    kept: list[object] = []
    if meta.generation and meta.generation == old_meta.generation:
        decoded.__dict__["spec"] = cached.spec
        kept.append(cached.spec)
    old_steps, steps = cached.status.steps, decoded.status.steps
    if old_steps and len(old_steps) == len(steps):
        merged = tuple(old if old == new else new for old, new in zip(old_steps, steps, strict=True))
        decoded.status.__dict__["steps"] = merged
        kept.extend(old for old, new in zip(old_steps, merged, strict=True) if old is new)
    return kept


def _job_placeholder(raw: dict[str, Any]) -> Job:
    # Metadata alone keeps the owner index right; a Job with no readable status looks "not finished".
    meta = metadata_of(raw)
    return Job(metadata=JobMeta.of(meta))
