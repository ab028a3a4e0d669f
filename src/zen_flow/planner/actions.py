"""What the planner hands to the controller: actions to execute, the status to write, events to emit."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from zen_flow.api.flow_status import JobFlowStatus


@dataclass(frozen=True)
class CreateJob:
    """Create one attempt of a step; `body` is the full batch/v1 Job manifest (a 409 is harmless)."""

    step: str
    attempt: int
    body: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])


@dataclass(frozen=True)
class DeleteJob:
    """Stop a Job: executed with background propagation so its pods go too.

    `after_write`: sent only once the plan's status write has landed (or there was nothing to write),
    never when it was lost. A graceful stop's deletes are so: the running Job may be all that says the
    flow had started (its first plan's write lost too), and a Job deleted at once (gone from the cache)
    would leave the next plan a flow that never ran, its finally steps skipped. Kept running instead,
    the next plan sees it and stops the flow again (planner.finale)."""

    name: str
    step: str
    reason: str
    after_write: bool = False


@dataclass(frozen=True)
class DeleteFlow:
    """Delete the JobFlow itself (ttlSecondsAfterFinished expired); its Jobs follow by ownerReference."""

    reason: str


@dataclass(frozen=True)
class CreateResource:
    """Create one object of `spec.resourceTemplates` (a core/v1 PersistentVolumeClaim or ConfigMap).

    `body` is the full manifest. A 409 is adopted only if the existing object's controller is this flow
    and it is not being deleted; one on its way out is waited for (`on_its_way_out`); otherwise the flow
    fails (the name belongs to someone else)."""

    kind: str  # "PersistentVolumeClaim" | "ConfigMap"
    body: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])


@dataclass(frozen=True)
class SaveMemo:
    """Store a memoized step's result (planner.memoization): `value` under `data_key` in the ConfigMap
    `config_map` of the flow's namespace (only one labelled as a cache), by a JSON merge patch of its
    `data` (that key, and expired or evicted entries removed: no read-modify-write of the others), the
    ConfigMap created if it is absent. Saving twice is harmless; a save that fails changes nothing of
    the step (a Warning event says so)."""

    step: str
    config_map: str
    data_key: str
    key: str
    value: str


@dataclass(frozen=True)
class SuspendChild:
    """Set a child flow's `spec.suspend` (planner.children): its parent was suspended or resumed. `uid`:
    the child's, the patch's precondition (a flow made since under its name is left alone)."""

    name: str
    step: str
    suspend: bool
    uid: str = ""


@dataclass(frozen=True)
class StopChild:
    """Ask a child flow to stop and run its finally steps (`workflow.kube-zen.io/stop: RunFinally`): its
    parent's finally grace has come, or its parent was stopped gracefully (planner.finale). Its Flow step
    runs on until the child ends; the parent's deadline, or a stop now, deletes it if it still runs then.
    `uid`: the child's, the patch's precondition; `resource_version`: the child's as this plan saw it
    without a stop, the other precondition (a stop a user set since, `true`, is never overwritten by this
    softer one: the next plan decides again); `by`: its `stopped-by` (the parent, and who stopped it).
    `after_write`: as DeleteJob's; the grace's and a graceful stop's are so, so that one taken back before
    its write stops nothing (the next plan, seeing the child without a stop, asks again if it is still
    due)."""

    name: str
    step: str
    uid: str = ""
    resource_version: str = ""
    by: str = field(kw_only=True)
    after_write: bool = False


Action = CreateJob | DeleteJob | DeleteFlow | CreateResource | SaveMemo | SuspendChild | StopChild


def held(action: Action) -> bool:
    """Does `action` wait for its plan's status write (`after_write`: sent once it landed, or there was
    nothing to write; never when it was lost)?"""
    return isinstance(action, DeleteJob | StopChild) and action.after_write


def before_write(actions: tuple[Action, ...]) -> list[Action]:
    """The plan's actions sent before its status write: all but those that wait for it (`held`)."""
    return [a for a in actions if not held(a)]


def pruned(actions: list[Action]) -> tuple[Action, ...]:
    """The plan's actions without a StopChild of a child flow the same plan deletes (DeleteJob): the
    delete decides. A graceful stop's StopChild lost after its write is asked again by every plan while
    the step records the stop (planner.child_stops), also by the one that deletes the child for a stop
    now, the deadline or its step's timeout; held for the write, it went out after the delete and could
    only meet a child on its way out. (A SuspendChild never meets a delete: suspensions are asked only
    of Running steps, and every delete of a running child ends its step first.)"""
    deleted = {a.name for a in actions if isinstance(a, DeleteJob)}
    if not deleted:
        return tuple(actions)
    return tuple(a for a in actions if not (isinstance(a, StopChild) and a.name in deleted))


@dataclass(frozen=True)
class MemoLookup:
    """A memoized step ready to start whose cache entry the plan needs: the controller reads `data_key`
    of the ConfigMap `config_map` and plans again with the answer (`MemoAnswer`)."""

    step: str
    config_map: str
    data_key: str
    key: str


@dataclass(frozen=True)
class MemoAnswer:
    """What the controller found for a `MemoLookup`: the entry's text, or None (no ConfigMap, no such
    key, or the cache could not be read: then the step runs)."""

    key: str
    value: str | None


@dataclass(frozen=True)
class EventSpec:
    type: str  # "Normal" | "Warning"
    reason: str
    message: str
    # It tells of an action of the plan (a Job deleted), not of the status the plan writes: the controller
    # emits it once the actions are done, whatever becomes of the status write. A write refused with 409
    # is planned again, and that plan no longer sees the action to do, so it would never tell of it.
    acted: bool = False
    # The step a step event is about ("" for the flow's own): its CloudEvent's subject (cloud_events.py).
    # Not compared: the message already names the step, and equal events stay equal whoever built them.
    step: str = field(default="", compare=False)


@dataclass(frozen=True)
class Plan:
    """The outcome of one reconcile. Write `status` only if it differs from the flow's current status."""

    actions: tuple[Action, ...]
    status: JobFlowStatus
    events: tuple[EventSpec, ...]
    requeue_after: float | None
    # Memoized steps ready to start whose cache entries this plan lacked: they wait (planner.memoization).
    lookups: tuple[MemoLookup, ...] = ()
