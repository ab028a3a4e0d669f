"""The pure heart of the controller: `plan(flow, jobs, now) -> Plan` (no I/O, no clock reads)."""

from zen_flow.planner.actions import (
    Action,
    CreateJob,
    CreateResource,
    DeleteFlow,
    DeleteJob,
    EventSpec,
    MemoAnswer,
    MemoLookup,
    Plan,
    SaveMemo,
    StopChild,
    SuspendChild,
    before_write,
    held,
)
from zen_flow.planner.artifacts import ArtifactOptions
from zen_flow.planner.backoff import parse_duration, retry_delay
from zen_flow.planner.child_job import ChildFlowJob
from zen_flow.planner.children import as_job, is_child_body, parent_of, refused_job
from zen_flow.planner.concurrency import Peer, group_of, keys_to_wake, peers_of
from zen_flow.planner.create_refusals import CreateRefusal, refused_creates, with_create_condition
from zen_flow.planner.delete_refusals import DeleteRefusal, untold, with_delete_condition
from zen_flow.planner.engine import plan
from zen_flow.planner.jobs import (
    JobBuildError,
    adoptable,
    build_job,
    describe_owner,
    is_jobflow,
    name_taken,
    on_its_way_out,
)
from zen_flow.planner.lifecycle import ENDED_REASON, fail_invalid, fail_rejected
from zen_flow.planner.lineage import (
    MAX_DESCENDANTS,
    TOP_LEVEL,
    Lineage,
    hosted,
    is_verified_child,
    lineage,
    runs_under,
    verified_children,
    verified_parent,
)
from zen_flow.planner.lock_book import LockBook
from zen_flow.planner.locks import NO_LOCKS, LockView
from zen_flow.planner.memoization import MEMO_CACHE_LABEL
from zen_flow.planner.observed import plan_sees_change
from zen_flow.planner.outputs import PodMessages, jobs_to_read, unseen_jobs
from zen_flow.planner.pending_pods import (
    DueRead,
    PendingJob,
    first_look_after,
    pending,
    pods_moved,
    pods_to_read,
    refused,
)
from zen_flow.planner.pod_waits import PodWait, pod_wait
from zen_flow.planner.resources import fail_resources
from zen_flow.planner.slots import SlotBook, SlotLimits, needs_slot

__all__ = [
    "ENDED_REASON",
    "MAX_DESCENDANTS",
    "MEMO_CACHE_LABEL",
    "NO_LOCKS",
    "TOP_LEVEL",
    "Action",
    "ArtifactOptions",
    "ChildFlowJob",
    "CreateJob",
    "CreateRefusal",
    "CreateResource",
    "DeleteFlow",
    "DeleteJob",
    "DeleteRefusal",
    "DueRead",
    "EventSpec",
    "JobBuildError",
    "Lineage",
    "LockBook",
    "LockView",
    "MemoAnswer",
    "MemoLookup",
    "Peer",
    "PendingJob",
    "Plan",
    "PodMessages",
    "PodWait",
    "SaveMemo",
    "SlotBook",
    "SlotLimits",
    "StopChild",
    "SuspendChild",
    "adoptable",
    "as_job",
    "before_write",
    "build_job",
    "describe_owner",
    "fail_invalid",
    "fail_rejected",
    "fail_resources",
    "first_look_after",
    "group_of",
    "held",
    "hosted",
    "is_child_body",
    "is_jobflow",
    "is_verified_child",
    "jobs_to_read",
    "keys_to_wake",
    "lineage",
    "name_taken",
    "needs_slot",
    "on_its_way_out",
    "parent_of",
    "parse_duration",
    "peers_of",
    "pending",
    "plan",
    "plan_sees_change",
    "pod_wait",
    "pods_moved",
    "pods_to_read",
    "refused",
    "refused_creates",
    "refused_job",
    "retry_delay",
    "runs_under",
    "unseen_jobs",
    "untold",
    "verified_children",
    "verified_parent",
    "with_create_condition",
    "with_delete_condition",
]
