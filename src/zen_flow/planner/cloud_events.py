"""A flow's transitions as CloudEvents 1.0 (HTTP binary content mode), for the operator's sink.

The controller already derives one Kubernetes Event per transition (events.py); the transitions that
automation cares about (a flow or a step starting and ending, a gate waiting or decided) are also sent
as CloudEvents when `--cloudevents-sink` is set. This module only builds them (no I/O): the type each
event reason maps to, a deterministic id, the headers and a compact JSON body.
docs/OPERATOR_GUIDE.md, "CloudEvents", documents all of it: keep both in step.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from zen_flow.api.constants import API_VERSION, PLURAL
from zen_flow.api.flow_status import JobFlowStatus
from zen_flow.api.jobflow import JobFlow
from zen_flow.api.meta import format_time
from zen_flow.planner.actions import EventSpec
from zen_flow.planner.events import FAILURE_ALLOWED, MEMOIZED, STOPPED_EVENT, TIMED_OUT
from zen_flow.planner.status import REASON_STATUS_REJECTED

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"
TYPE_PREFIX = "dev.kube-zen.jobflow."
# Event reason -> CloudEvent type (without TYPE_PREFIX). Only these are sent; the other reasons
# (suspended, queued, stalled, stray Jobs, ...) stay Kubernetes Events. A new version of a type's body
# gets a new suffix (.v2), so a receiver never misreads it.
TYPES: Mapping[str, str] = {
    "FlowStarted": "started.v1",
    "FlowSucceeded": "succeeded.v1",
    "FlowFailed": "failed.v1",
    # The apiserver refused the flow's status for good (too large, invalid): the flow failed with a
    # smaller write (controller/status_writer.py), and no FlowFailed Event was planned.
    REASON_STATUS_REJECTED: "failed.v1",
    STOPPED_EVENT: "stopped.v1",
    "FlowRetried": "retried.v1",
    "StepStarted": "step.started.v1",
    "StepSucceeded": "step.succeeded.v1",
    MEMOIZED: "step.succeeded.v1",  # it succeeded from its cache; `reason` in the body says so
    "StepFailed": "step.failed.v1",
    "StepRetrying": "step.retrying.v1",
    "StepSkipped": "step.skipped.v1",
    TIMED_OUT: "step.timedout.v1",
    "StepPendingApproval": "approval.waiting.v1",
    "StepApproved": "approval.approved.v1",
    "StepRejected": "approval.rejected.v1",
}
# Sent before the step events of the same plan: a run begins before its first step starts (the planner
# lists step events first, then the flow's).
_OPENING = frozenset({"FlowStarted", "FlowRetried"})
# The types of one step's own transitions (`--cloudevents-step-events=false` leaves them out): a matrix
# step of 256 items sends two of them per item. The approval types are not among them: a gate waiting is
# what a person must act on.
STEP_PREFIX = "step."
# The reasons whose body says `allowed: true` when the plan tolerated that failure (StepFailureAllowed,
# not sent itself, follows them for the same step: planner.tolerance).
_ENDINGS = frozenset({"StepFailed", "StepRejected"})
_MAX_MESSAGE = 1024  # as a Kubernetes Event's message


@dataclass(frozen=True)
class CloudEvent:
    id: str
    source: str
    type: str
    subject: str
    time: str  # RFC 3339
    data: bytes  # compact JSON

    def headers(self) -> dict[str, str]:
        """The binary content mode's headers: each attribute as `ce-<name>`, percent-encoded."""
        attributes = {
            "specversion": SPEC_VERSION,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "subject": self.subject,
            "time": self.time,
        }
        return {"Content-Type": CONTENT_TYPE} | {f"ce-{k}": header_value(v) for k, v in attributes.items()}


def header_value(value: str) -> str:
    """Percent-encode as the HTTP binding requires: space, `"`, `%` and everything outside printable
    ASCII (a flow's name is ASCII, but a step's name or a message need not be)."""
    return "".join(
        c if "!" <= c <= "~" and c not in '"%' else "".join(f"%{b:02X}" for b in c.encode()) for c in value
    )


def source_of(flow: JobFlow) -> str:
    meta = flow.metadata
    return f"/apis/{API_VERSION}/namespaces/{meta.namespace}/{PLURAL}/{meta.name}"


def cloud_events(
    flow: JobFlow,
    status: JobFlowStatus,
    events: Iterable[EventSpec],
    now: datetime,
    *,
    steps: bool = True,
) -> tuple[CloudEvent, ...]:
    """The CloudEvents of one plan's `events` (those with a type in TYPES), the flow's opening ones
    first; `status` is the status the plan wrote. `steps=False`: none of the `step.*` types."""
    events = tuple(events)
    allowed = {e.step for e in events if e.reason == FAILURE_ALLOWED}
    chosen = [
        e for e in events if e.reason in TYPES and (steps or not TYPES[e.reason].startswith(STEP_PREFIX))
    ]
    ordered = [e for e in chosen if e.reason in _OPENING] + [e for e in chosen if e.reason not in _OPENING]
    return tuple(
        cloud_event(flow, status, e, now, allowed=e.reason in _ENDINGS and e.step in allowed) for e in ordered
    )


def _run(status: JobFlowStatus) -> str:
    """Which run of the flow this is: the id of its latest rerun request, "" for the first run."""
    retries = status.audit.retries if status.audit is not None else ()
    return retries[-1].id if retries else ""


def cloud_event(
    flow: JobFlow, status: JobFlowStatus, event: EventSpec, now: datetime, *, allowed: bool = False
) -> CloudEvent:
    """`allowed`: the step's failure (`event`) is one its allowFailure tolerates: the body says so."""
    meta = flow.metadata
    step = status.step(event.step) if event.step else None
    job = step.job_ref if step is not None else None
    retries = step.retry_count if step is not None else 0
    # The same transition gets the same id however often it is described or sent: a POST whose answer
    # was lost is sent again; a status write whose answer was lost is described by the plan that made it
    # (sent once the cache shows the write landed) and, when it had not landed, by the next plan again.
    # So nothing from the clock goes in, only what identifies the transition in the flow's history
    # (which run, which step, which attempt, what happened).
    identity = (meta.uid, _run(status), event.reason, event.step, str(retries))
    data: dict[str, object] = {
        "flow": meta.name,
        "namespace": meta.namespace,
        "uid": meta.uid,
        "phase": status.phase or "Pending",
        "reason": event.reason,
        "message": event.message[:_MAX_MESSAGE],
    }
    if step is not None:
        data |= {"step": step.name, "stepPhase": step.phase, "retryCount": step.retry_count}
        if job is not None:
            data["job"] = job.name
        if allowed:
            data["allowed"] = True
    if meta.labels:
        data["labels"] = dict(sorted(meta.labels.items()))
    return CloudEvent(
        id=hashlib.sha256("\x00".join(identity).encode()).hexdigest()[:32],
        source=source_of(flow),
        type=TYPE_PREFIX + TYPES[event.reason],
        subject=event.step or meta.name,
        time=format_time(now),
        data=json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode(),
    )
