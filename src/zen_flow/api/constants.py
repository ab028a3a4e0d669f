"""Names that make up the JobFlow API contract: group, kinds, labels, annotations, phases."""

from __future__ import annotations

from enum import StrEnum

GROUP = "workflow.kube-zen.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "JobFlow"
PLURAL = "jobflows"
SINGULAR = "jobflow"
CRD_NAME = f"{PLURAL}.{GROUP}"

# Labels put on every Job (and its pod template) that zen-flow creates (JOBFLOW_API.md decision 13).
LABEL_FLOW = f"{GROUP}/flow"
LABEL_STEP = f"{GROUP}/step"
LABEL_ATTEMPT = f"{GROUP}/attempt"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "zen-flow"
JOB_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY}"

# Several controllers in one cluster (Argo Workflows' instanceID): a controller started with
# `--instance-id X` runs only the JobFlows and CronJobFlows labelled with this key and the value X; one
# started without it runs only those without the label. Copied to what it creates for them (Jobs,
# resourceTemplates objects, CronJobFlow runs); docs/OPERATOR_GUIDE.md, "Several controllers in one
# cluster".
LABEL_INSTANCE = f"{GROUP}/controller-instance"

# A step Job's pod restartPolicy where its template sets none: the Job API has no default for it (it
# refuses a Job without one), and Never is the only policy a podFailurePolicy works with. Admission counts
# an unset one as this (validation/template.py), and the Job builder writes it (planner/jobs.py).
DEFAULT_RESTART_POLICY = "Never"

# Approval (decision 6). The original's `workflow.kube-zen.io/approved/<step>` is not a legal key (two
# slashes); the prefix carries the verb and the name part is the step name (<= 63 characters).
APPROVE_PREFIX = f"approve.{GROUP}/"
REJECT_PREFIX = f"reject.{GROUP}/"

# Audit annotations written by the mutating webhook from the admission request's userInfo.
ANNOTATION_CREATED_BY = f"{GROUP}/created-by"
ANNOTATION_APPROVED_BY_PREFIX = f"approved-by.{GROUP}/"
# On a gate with `approval` (a tallied gate) approved-by lists its approvers, comma-separated, and who
# rejected it is recorded apart, here: a rejection must not read as one more approval.
ANNOTATION_REJECTED_BY_PREFIX = f"rejected-by.{GROUP}/"
# Why the decision on a Manual step was taken (free text, `zen-flow approve --message`), kept in the audit.
ANNOTATION_DECISION_MESSAGE_PREFIX = f"decision-message.{GROUP}/"
# Values supplied at a Manual gate (its outputs.parameters[].valueFrom.supplied), a JSON object of
# strings, `{"env":"prod"}` (core/gate_values.py); values-by is who last set or changed them, written by
# the mutating webhook and copied to the audit entry of the approval that opens the gate.
VALUES_PREFIX = f"values.{GROUP}/"
ANNOTATION_VALUES_BY_PREFIX = f"values-by.{GROUP}/"
# Set by whoever creates the flow (a CI system, a portal) to tie it to their request; copied to
# status.audit.correlationID.
ANNOTATION_CORRELATION_ID = f"{GROUP}/correlation-id"
# A request to rerun a Failed flow from its failed steps (`zen-flow retry`): the value is an id the
# controller honours once (status.audit.retries), retry-steps optionally limits it to some failed steps,
# and retried-by is written by the mutating webhook (the user who set or changed the request).
ANNOTATION_RETRY = f"{GROUP}/retry"
ANNOTATION_RETRY_STEPS = f"{GROUP}/retry-steps"
ANNOTATION_RETRIED_BY = f"{GROUP}/retried-by"
# status.audit.retries keeps the newest request and, before it, as many earlier ones as fit in this many
# bytes of JSON (planner.interventions): the admission size bound counts it (validation/size.py), so a
# flow rerun over and over still fits in etcd.
AUDIT_RETRIES_BYTES = 16 * 1024
# retryPolicy.limit when a retryPolicy does not say (planner/backoff.py).
DEFAULT_RETRY_LIMIT = 3
# status.steps[].failedNodes (retryPolicy.affinity.nodeAntiAffinity) keeps at most this many names, and
# never more than the step's attempts (retryPolicy.limit + 1): the planner keeps them, admission's status
# bound counts them (validation/size.py), the CRD's status schema has it as maxItems.
MAX_FAILED_NODES = 16


def retries_allowed(limit: int | None) -> int:
    """The retries a retryPolicy with `limit` (retryPolicy.limit, None when unset) allows: the one reading
    of it, the planner's (planner.backoff.retry_limit) and the status bound's (`failed_nodes_kept`)."""
    return DEFAULT_RETRY_LIMIT if limit is None else max(0, limit)


def failed_nodes_kept(limit: int | None) -> int:
    """How many node names a step with retryPolicy.limit `limit` keeps in status.steps[].failedNodes: one
    per attempt at most (a parallel Job's attempt may fail on several: the newest are kept)."""
    return min(MAX_FAILED_NODES, retries_allowed(limit) + 1)


# A request to fail the flow now (`zen-flow stop`): running Jobs are deleted, nothing else starts;
# stopped-by is written by the mutating webhook. The value STOP_RUN_FINALLY (any case; `zen-flow stop
# --run-finally`) stops the other steps the same way but runs the finally steps first (planner.finale).
ANNOTATION_STOP = f"{GROUP}/stop"
# On a child flow its parent suspended (planner/children.py): only such a suspension is the parent's to
# undo on resume; a child a user suspended stays suspended.
ANNOTATION_SUSPENDED_BY_PARENT = f"{GROUP}/suspended-by-parent"
ANNOTATION_STOPPED_BY = f"{GROUP}/stopped-by"
# Who last suspended the flow (set spec.suspend true, or created it suspended) and who last resumed it
# (set it false or removed it), written by the mutating webhook when spec.suspend flips: the last of
# each is kept. Named apart from `suspended-by-parent` (a mark, not an audit record) so that no prefix
# of one is the other.
ANNOTATION_SUSPEND_REQUESTED_BY = f"{GROUP}/suspend-requested-by"
ANNOTATION_RESUME_REQUESTED_BY = f"{GROUP}/resume-requested-by"
# Asks for (or against) the flow's step logs in the flow archive, as --archive-logs allows
# (planner/archive_logs.py); a Flow step's child flow carries its parent's (planner/children.py).
ANNOTATION_ARCHIVE_LOGS = f"{GROUP}/archive-logs"
STOP_RUN_FINALLY = "RunFinally"

# On the Job (and pod) of an item of a matrix step (`spec.steps[].matrix`, core/matrix.py): the item's
# matrix values as a JSON object of strings, `{"os":"linux","region":"eu"}`.
ANNOTATION_MATRIX = f"{GROUP}/matrix"

# Concurrency groups (decision 9): flows of one namespace with the same value of this label share
# their executionPolicy.concurrencyPolicy. A flow without it (or with an empty value) is in no group.
LABEL_CONCURRENCY_KEY = f"{GROUP}/concurrency-key"

FIELD_MANAGER = "zen-flow"


class FlowPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"
    PAUSED = "Paused"

    @property
    def terminal(self) -> bool:
        return self in (FlowPhase.SUCCEEDED, FlowPhase.FAILED)


class StepPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    RETRYING = "Retrying"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SKIPPED = "Skipped"
    PENDING_APPROVAL = "PendingApproval"

    @property
    def terminal(self) -> bool:
        return self in (StepPhase.SUCCEEDED, StepPhase.FAILED, StepPhase.SKIPPED)


class StepType(StrEnum):
    JOB = "Job"
    MANUAL = "Manual"
    FLOW = "Flow"  # a child flow made from a JobFlowTemplate (planner/children.py)


class DependencyPolicy(StrEnum):
    """`spec.steps[].dependencyPolicy`: when a step with dependencies runs, once they have all ended."""

    ALL_SUCCEEDED = "AllSucceeded"  # the default: a Skipped dependency skips the step
    SUCCEEDED_OR_SKIPPED = "SucceededOrSkipped"  # a Skipped dependency counts as done
    ANY_SUCCEEDED = "AnySucceeded"  # at least one dependency Succeeded


# Why a finally step spec cannot be planned: said by the validator (a field error) and by the planner's
# shape (for a flow that reached it without the webhook), which are sibling layers.
MANUAL_FINALLY = (
    "a Manual step cannot be finally: nobody could approve it in time to matter, as every other step "
    "has ended when it is reached"
)
# Why a Manual step cannot have a `matrix`: said by the validator and by the step admission policy.
MANUAL_MATRIX = "a Manual step is an approval gate and cannot fan out; put the matrix on a Job step"
# Why a Flow step cannot have a `matrix`: said by the validator and by the step admission policy.
FLOW_MATRIX = "a Flow step cannot fan out"
# A Manual step's `approval`: who may decide it and how many distinct users must approve it.
DEFAULT_REQUIRED_APPROVALS = 1  # the controller's default: no schema default (stored flows stay as written)
MAX_APPROVERS = 50  # CRD steps[].approval.approvers maxItems
APPROVER_KINDS = ("User", "Group")
# Why `approval` is refused on a Job step: said by the validator.
JOB_APPROVAL = "only a Manual step is approved: a Job step takes no approval"

# Why a dependency may not cross between finally steps and the others, by whether the dependent is finally.
FINALLY_CROSSING = {
    True: (
        "is not a finally step: a finally step already runs after every step that is not finally, and may "
        "depend only on finally steps (to order them)"
    ),
    False: (
        "is a finally step, which runs only after every step that is not finally has ended, this one "
        "included: it can never come first"
    ),
}


class ConcurrencyPolicy(StrEnum):
    ALLOW = "Allow"
    FORBID = "Forbid"
    REPLACE = "Replace"


class JobRetention(StrEnum):
    """`spec.executionPolicy.jobRetention`: which of a step's attempts keep their Job (and pods, logs)."""

    ALL = "All"  # the default: every attempt's Job stays until the flow is deleted
    LAST_ATTEMPT = "LastAttempt"  # an attempt superseded by a retry or rerun loses its Job
    # LastAttempt, and a Succeeded step's Job goes too once nothing needs it: only failures keep theirs
    FAILED_ONLY = "FailedOnly"


class BackoffType(StrEnum):
    EXPONENTIAL = "Exponential"
    LINEAR = "Linear"
    FIXED = "Fixed"


class ApprovalDecision(StrEnum):
    """`status.audit.approvals[].decision`."""

    APPROVED = "Approved"
    REJECTED = "Rejected"


class ConditionType(StrEnum):
    """Condition types on a JobFlow; `kubectl wait --for=condition=Complete jf/x` works like for Jobs."""

    READY = "Ready"  # kept from the original: True while healthy (Running/Succeeded), False otherwise
    RUNNING = "Running"
    COMPLETE = "Complete"
    FAILED = "Failed"
    SUSPENDED = "Suspended"
    WAITING_FOR_APPROVAL = "WaitingForApproval"
    VALID = "Valid"
    QUEUED = "Queued"  # True while concurrencyPolicy Forbid holds the flow back behind its group
    # True while Running and a step changed phase within the progress deadline (planner.progress)
    PROGRESSING = "Progressing"


# Conditions set beside the planner's (ConditionType): an ended flow's record stored (planner.archiving),
# Job creates refused for now (planner.create_refusals).
ARCHIVED = "Archived"
JOB_CREATE_FAILING = "JobCreateFailing"
# Job deletes refused for now: the Jobs the flow should have stopped run on (planner.delete_refusals).
JOB_DELETE_FAILING = "JobDeleteFailing"
# Every condition type a flow's status can hold: the status size bound counts one of each (validation/size).
CONDITION_TYPES: tuple[str, ...] = (
    *(t.value for t in ConditionType),
    ARCHIVED,
    JOB_CREATE_FAILING,
    JOB_DELETE_FAILING,
)


# Defaults (decision 15): the original's executionPolicy defaults, shared by the mutating webhook, the CRD
# schema defaults and the controller's fallbacks.
DEFAULT_CONCURRENCY_POLICY = ConcurrencyPolicy.FORBID
DEFAULT_TTL_SECONDS_AFTER_FINISHED = 86400
DEFAULT_BACKOFF_LIMIT = 6


# CronJobFlows (scheduled flows): a CronJobFlow creates a JobFlow per run time of its schedule.
CRON_KIND = "CronJobFlow"
CRON_PLURAL = "cronjobflows"
CRON_SINGULAR = "cronjobflow"
CRON_CRD_NAME = f"{CRON_PLURAL}.{GROUP}"
# On every JobFlow a CronJobFlow creates: the CronJobFlow's name (select a schedule's runs with -l). The
# scheduled time (RFC 3339, UTC; Kubernetes' CronJob annotates its Jobs the same way): on a scheduled run
# the run time it was made for, on a manual run the time given to `--scheduled-time`, on a child flow
# its parent's; what its steps render as `{{.JobFlow.ScheduledTime}}` (planner/scheduled_time.py).
LABEL_CRON = f"{GROUP}/cronjobflow"
ANNOTATION_SCHEDULED_TIME = f"{GROUP}/scheduled-time"
# On a run made by hand (`zen-flow cron trigger`: manual; `zen-flow cron backfill`: backfill), as `kubectl
# create job --from=cronjob/NAME` marks its Job `cronjob.kubernetes.io/instantiate: manual`: for people
# and selectors. The controller recognises a
# manual run by its name, `<cron>-manual-<token>` (no `<cron>-<Unix minute>` of a run time), not by this
# annotation, which a copy could forge; nor by a scheduled-time it may carry (`--scheduled-time`: only
# what its steps render).
ANNOTATION_INSTANTIATE = f"{GROUP}/instantiate"
INSTANTIATE_MANUAL = "manual"
# `zen-flow cron backfill`'s runs, one per past run time, are named as the controller names that run
# time's run (so neither ever makes it twice): to the controller they are that run time's run.
INSTANTIATE_BACKFILL = "backfill"
MANUAL_RUN_INFIX = "-manual-"
# Random characters that end a manual run's name, so two triggers at once do not collide (27**5); the
# apiserver's generateName alphabet (no vowels: no words).
MANUAL_RUN_TOKEN_LENGTH = 5
MANUAL_RUN_TOKEN_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
DEFAULT_SUCCESSFUL_HISTORY_LIMIT = 3
DEFAULT_FAILED_HISTORY_LIMIT = 1
# A CronJobFlow run's TTL when its template sets none (planner/cron_runs.py): int32's maximum (68
# years), "never" to the JobFlow TTL; 0 would delete it at once, and no value means the JobFlow default
# of a day.
RUN_TTL_SECONDS = 2**31 - 1

# JobFlowTemplates (reusable flow definitions, Argo's WorkflowTemplate): a JobFlow names one in
# spec.templateRef and is expanded from it once, when created (validation/expansion.py).
TEMPLATE_KIND = "JobFlowTemplate"
TEMPLATE_PLURAL = "jobflowtemplates"
TEMPLATE_SINGULAR = "jobflowtemplate"
TEMPLATE_CRD_NAME = f"{TEMPLATE_PLURAL}.{GROUP}"
# ClusterJobFlowTemplates (Argo's ClusterWorkflowTemplate): the same, cluster-scoped, named by
# spec.templateRef with clusterScope: true (Argo's field name).
CLUSTER_TEMPLATE_KIND = "ClusterJobFlowTemplate"
CLUSTER_TEMPLATE_PLURAL = "clusterjobflowtemplates"
CLUSTER_TEMPLATE_SINGULAR = "clusterjobflowtemplate"
CLUSTER_TEMPLATE_CRD_NAME = f"{CLUSTER_TEMPLATE_PLURAL}.{GROUP}"
# On every JobFlow expanded from a template: the template's name (select a template's flows with -l).
LABEL_TEMPLATE = f"{GROUP}/template"
# Beside it, "true" on a flow expanded from a ClusterJobFlowTemplate (absent: the flow's namespace's
# JobFlowTemplate), so that a namespaced and a cluster template of one name can be told apart.
LABEL_CLUSTER_TEMPLATE = f"{GROUP}/cluster-template"
# On a child flow (a `type: Flow` step's, planner/children.py): its parent flow, the parent's step, and how
# deep it is nested (a top-level flow is 0; its children 1, ...): recursion stops at MAX_FLOW_DEPTH.
LABEL_PARENT = f"{GROUP}/parent"
LABEL_PARENT_STEP = f"{GROUP}/parent-step"
LABEL_DEPTH = f"{GROUP}/depth"
MAX_FLOW_DEPTH = 4


class CronConditionType(StrEnum):
    """Condition types on a CronJobFlow."""

    # True while the schedule, time zone and template can be used; False with the reason otherwise.
    VALID = "Valid"
    # True when the latest run time created its flow; False when it was skipped (Forbid or the deadline).
    SCHEDULED = "Scheduled"
