"""The subset of a batch/v1 Job that reconcile reads (the informer caches only this).

These are *records* (`zen_flow.api.meta.RECORD`), not `Model`s: a controller caches every Job of every
flow, and a pydantic model carries a `__dict__` per instance (a Job with its metadata was ~1.1 KB of
dicts before any value; a record of the same fields ~0.2 KB). They are decoded from the apiserver's
bytes as directly as models are. What reconcile never reads is not kept: labels, annotations,
managedFields, the spec (the planner rebuilds a step's Job from the flow). A tool that needs more
declares its own record and passes it to the informer; a read of one Job keeps its labels (`LabelledJob`).
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

from pydantic import TypeAdapter
from pydantic.dataclasses import dataclass

from zen_flow.api.meta import (
    RECORD,
    Condition,
    ObjectMeta,
    OwnerReference,
    Timestamp,
    controller_of,
    record_to_wire,
)

# The Job controller's terminal conditions: a step's outcome (not pod counts).
JOB_COMPLETE = "Complete"
JOB_FAILED = "Failed"
# True while the Job is suspended (`spec.suspend`: a queue such as Kueue holds it until it admits it, or
# preempts it; or a user); False once it was resumed, with the time of the resume.
JOB_SUSPENDED = "Suspended"
# The Job controller's interim conditions (Kubernetes 1.31+): the Job has met its success criteria, or
# will fail (its backoffLimit, a podFailurePolicy's FailJob, its deadline), and `Complete` or `Failed`
# follows once its pods are gone. Never taken back: the outcome is decided.
JOB_SUCCESS_CRITERIA_MET = "SuccessCriteriaMet"
JOB_FAILURE_TARGET = "FailureTarget"
JOB_ENDING = (JOB_SUCCESS_CRITERIA_MET, JOB_FAILURE_TARGET)


@dataclass(frozen=True, slots=True, config=RECORD)
class JobMeta:
    name: str = ""
    namespace: str = ""
    uid: str = ""
    resource_version: str = ""
    creation_timestamp: Timestamp | None = None
    deletion_timestamp: Timestamp | None = None
    owner_references: tuple[OwnerReference, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def controller_ref(self) -> OwnerReference | None:
        return controller_of(self.owner_references)

    @classmethod
    def of(cls, meta: ObjectMeta) -> JobMeta:
        """The part of another object's metadata a Job record keeps (a placeholder, a child flow)."""
        return cls(
            name=meta.name,
            namespace=meta.namespace,
            uid=meta.uid,
            resource_version=meta.resource_version,
            creation_timestamp=meta.creation_timestamp,
            deletion_timestamp=meta.deletion_timestamp,
            owner_references=meta.owner_references,
        )


@dataclass(frozen=True, slots=True, config=RECORD)
class JobStatus:
    conditions: tuple[Condition, ...] = ()
    start_time: Timestamp | None = None
    completion_time: Timestamp | None = None
    active: int = 0
    succeeded: int = 0
    failed: int = 0
    ready: int | None = None

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict as the apiserver writes it: camelCase, no nulls."""
        return record_to_wire(_STATUS, self)


_STATUS: TypeAdapter[JobStatus] = TypeAdapter(JobStatus)


@dataclass(frozen=True, slots=True, config=RECORD)
class Job:
    metadata: JobMeta
    status: JobStatus = JobStatus()

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.status.conditions if c.type == type_), None)

    def _is_true(self, type_: str) -> bool:
        cond = self.condition(type_)
        return cond is not None and cond.status == "True"

    @property
    def complete(self) -> bool:
        """Terminal success: the Job controller's `Complete` condition (not pod counts)."""
        return self._is_true(JOB_COMPLETE)

    @property
    def failed(self) -> bool:
        """Terminal failure: the Job controller's `Failed` condition."""
        return self._is_true(JOB_FAILED)

    @property
    def finished(self) -> bool:
        return self.complete or self.failed

    @property
    def ending(self) -> bool:
        """Its terminal condition is on its way (`JOB_ENDING`): no pod of it is to run any more."""
        return any(self._is_true(type_) for type_ in JOB_ENDING)

    @property
    def interim(self) -> Condition | None:
        """The interim condition (`JOB_ENDING`) that is True, if any: how the Job will end."""
        return next((c for c in self.status.conditions if c.type in JOB_ENDING and c.status == "True"), None)

    @property
    def succeeds(self) -> bool:
        """Completed, or decided to (`SuccessCriteriaMet`): its succeeded pod holds its outputs."""
        return self.complete or self._is_true(JOB_SUCCESS_CRITERIA_MET)

    @property
    def suspended(self) -> bool:
        """Held suspended: no pod runs, and its activeDeadlineSeconds waits for the resume."""
        return self._is_true(JOB_SUSPENDED)

    @property
    def resumed_at(self) -> Timestamp | None:
        """When a Job that was suspended was last resumed (the Job controller restarts its
        activeDeadlineSeconds then, and resets `status.startTime`); None for a Job never suspended."""
        cond = self.condition(JOB_SUSPENDED)
        if cond is None or cond.status != "False":
            return None
        return cond.last_transition_time or self.status.start_time

    @property
    def deleting(self) -> bool:
        return self.metadata.deletion_timestamp is not None


@dataclass(frozen=True, slots=True, config=RECORD)
class LabelledMeta(JobMeta):
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, config=RECORD)
class LabelledJob(Job):
    """A Job with its labels: what a read of one Job gives (a GET costs no cache memory), so that the
    controller can say why its cache, label-selected, lacks a Job of its own (its managed-by label was
    removed); the benchmark's observer caches these to tell steps apart."""

    metadata: LabelledMeta


def labels_of(job: Job) -> dict[str, str] | None:
    """The labels of a Job read with them (`LabelledJob`); None for a cached Job record (never kept)."""
    return job.metadata.labels if isinstance(job.metadata, LabelledMeta) else None


JOB: TypeAdapter[Job] = TypeAdapter(Job)
"""Validates a Job from the API's dict or bytes (`JOB.validate_json(raw)`)."""
