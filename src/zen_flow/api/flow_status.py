"""pydantic models (and slotted records) of a JobFlow's status: what the controller writes, per step and
for the flow, with the audit of who started, approved and reran it (api.jobflow: the spec). The CRD's
status schema must agree with them field by field, as the spec's (tests/unit/test_crd_schema.py)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, TypeAdapter
from pydantic.dataclasses import dataclass

from zen_flow.api.meta import RECORD, Condition, Model, Timestamp, record_to_wire
from zen_flow.api.transfer import Archive


@dataclass(frozen=True, slots=True, config=RECORD)
class ObjectRef:
    """A record (`meta.RECORD`): one per step entry of every cached flow."""

    api_version: str | None = None
    kind: str | None = None
    name: str = ""
    namespace: str | None = None
    uid: str | None = None


class ParameterValue(Model):
    name: str
    value: str = ""


class ArtifactRef(Model):
    name: str
    path: str | None = None
    url: str | None = None
    size: int | None = None
    digest: str | None = None
    archive: Archive | None = None


class StepOutputValues(Model):
    parameters: tuple[ParameterValue, ...] = ()
    artifacts: tuple[ArtifactRef, ...] = ()


@dataclass(frozen=True, slots=True, config=RECORD)
class StepStatus:
    """A record (`meta.RECORD`), not a model: a cached flow holds one per step (~860 -> ~330 bytes)."""

    name: str
    phase: str = "Pending"
    start_time: Timestamp | None = None
    completion_time: Timestamp | None = None
    job_ref: ObjectRef | None = None
    outputs: StepOutputValues | None = None
    retry_count: int = 0
    message: str | None = None
    # When a Retrying step's next attempt is due (time is scheduled, not polled).
    next_retry_time: Timestamp | None = None
    # While Running: when the current attempt began running by the controller's own clock (its Job
    # created or taken over, or seen resumed). The step's timeout never counts from earlier: the Job's
    # timestamps come from the cluster's clocks, which may be behind the controller's.
    attempt_start_time: Timestamp | None = None
    # Who approved or rejected a Manual step (from the admission request's userInfo, when recorded); on a
    # gate with `approval`, every distinct approver so far, comma-separated ("alice, bob").
    approved_by: str | None = None
    # With `retryPolicy.affinity.nodeAntiAffinity`: the nodes its failed attempts' pods ran on, oldest
    # first (at most api.constants.failed_nodes_kept: limit + 1, 16 at most), which its next attempts avoid.
    failed_nodes: tuple[str, ...] | None = None

    def to_wire(self) -> dict[str, Any]:
        return record_to_wire(_STEP_STATUS, self)


_STEP_STATUS: TypeAdapter[StepStatus] = TypeAdapter(StepStatus)


class Progress(Model):
    completed_steps: int = 0
    total_steps: int = 0
    successful_steps: int = 0
    failed_steps: int = 0
    skipped_steps: int = 0


class Initiator(Model):
    user: str | None = None
    type: str | None = None


class Approval(Model):
    step: str
    decision: str  # Approved | Rejected
    user: str | None = None
    time: Timestamp | None = None
    message: str | None = None  # why, as the decider wrote it (decision-message annotation)
    # On the approval that opens a gate with supplied values: who last set them (values-by annotation).
    supplied_by: str | None = None


class Retry(Model):
    """A rerun of a Failed flow, honoured once per request id."""

    id: str
    user: str | None = None
    time: Timestamp | None = None
    steps: tuple[str, ...] = ()  # the failed steps it reran


class Audit(Model):
    initiated_by: Initiator | None = None
    correlation_id: str | None = Field(default=None, alias="correlationID")
    approvals: tuple[Approval, ...] = ()
    retries: tuple[Retry, ...] = ()


class JobFlowStatus(Model):
    phase: str | None = None
    conditions: tuple[Condition, ...] = ()
    start_time: Timestamp | None = None
    completion_time: Timestamp | None = None
    estimated_completion_time: Timestamp | None = None
    # When the flow or one of its steps last changed phase (the progress deadline counts from it).
    last_progress_time: Timestamp | None = None
    steps: tuple[StepStatus, ...] = ()
    resource_refs: tuple[ObjectRef, ...] = ()
    progress: Progress | None = None
    audit: Audit | None = None
    observed_generation: int | None = None
    # "done/total", for the printer column (JSONPath cannot format).
    progress_summary: str | None = None
    message: str | None = None
    # The flow's own locks (spec.synchronization) while it holds them: its run's start to its end.
    held_locks: tuple[str, ...] | None = None

    def step(self, name: str) -> StepStatus | None:
        return next((s for s in self.steps if s.name == name), None)
