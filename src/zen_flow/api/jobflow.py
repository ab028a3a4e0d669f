"""pydantic models of the JobFlow resource (workflow.kube-zen.io/v1alpha1): its spec here, its steps'
inputs and outputs in api.step_io, its status in api.flow_status.

Field names are the compatibility contract with the original Go zen-flow (JOBFLOW_API.md). Enumerated
fields are plain strings here on purpose: parsing must never fail on a value the validator is meant to
report with its field path; `zen_flow.validation` owns the rules. The CRD
(`config/crd/jobflows.workflow.kube-zen.io.yaml`) must agree with these models field by field
(tests/unit/test_crd_schema.py proves it).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from pydantic import Field

from zen_flow.api.constants import API_VERSION, DEFAULT_REQUIRED_APPROVALS, KIND, StepType
from zen_flow.api.flow_status import JobFlowStatus
from zen_flow.api.meta import Model, ObjectMeta, SpecModel
from zen_flow.api.step_io import ArtifactRepository, StepInputs, StepOutputs

# --- spec ---------------------------------------------------------------------------------------------


class ExitCodesRule(SpecModel):
    container_name: str | None = None
    operator: str = "In"
    values: tuple[int, ...] = ()


class PodConditionRule(SpecModel):
    type: str
    status: str = "True"


class PodFailurePolicyRule(SpecModel):
    action: str
    on_exit_codes: ExitCodesRule | None = None
    on_pod_conditions: tuple[PodConditionRule, ...] = ()


class PodFailurePolicy(SpecModel):
    rules: tuple[PodFailurePolicyRule, ...] = ()


class TTLStrategy(SpecModel):
    """Per-outcome TTLs; each one set replaces `ttlSecondsAfterFinished` for its outcome."""

    seconds_after_success: int | None = None
    seconds_after_failure: int | None = None


class ExecutionPolicy(SpecModel):
    concurrency_policy: str | None = None
    ttl_seconds_after_finished: int | None = None
    ttl_strategy: TTLStrategy | None = None
    job_retention: str | None = None  # JobRetention; None: All
    backoff_limit: int | None = None
    active_deadline_seconds: int | None = None
    # The last seconds of activeDeadlineSeconds kept for the finally steps (planner/grace.py); None: none.
    finally_grace_seconds: int | None = None
    pod_failure_policy: PodFailurePolicy | None = None
    parallelism: int | None = None  # at most this many Job steps run at once; None: no limit
    # The rank among its namespace's flows waiting for a slot (planner/slots.py): higher first; None: 0.
    priority: int | None = None
    # How long a Job step's attempt may have no pod running before it fails (planner/pending_pods.py);
    # each step's own podPendingTimeoutSeconds replaces it. None: no bound.
    pod_pending_timeout_seconds: int | None = None


class ResourceTemplates(SpecModel):
    volume_claim_templates: tuple[dict[str, Any], ...] = ()
    config_map_templates: tuple[dict[str, Any], ...] = ()


class StepMetadata(SpecModel):
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class Toleration(SpecModel):
    """core/v1 Toleration, as a pod spec holds it (checked by the apiserver when the Job is created)."""

    key: str | None = None
    operator: str | None = None
    value: str | None = None
    effect: str | None = None
    toleration_seconds: int | None = None


class LocalObjectReference(SpecModel):
    name: str = ""


class StepPodDefaults(SpecModel):
    """`spec.stepDefaults.podSpec`: pod spec fields every Job step's pod gets where its own template does
    not set them (core/step_defaults.py says how). Free-form where Kubernetes' type is large (affinity,
    securityContext): the apiserver checks them when it creates the Job."""

    service_account_name: str | None = None
    node_selector: dict[str, str] | None = None
    tolerations: tuple[Toleration, ...] | None = None
    affinity: dict[str, Any] | None = None
    image_pull_secrets: tuple[LocalObjectReference, ...] | None = None
    security_context: dict[str, Any] | None = None
    priority_class_name: str | None = None
    runtime_class_name: str | None = None
    scheduler_name: str | None = None


class StepDefaults(SpecModel):
    """`spec.stepDefaults`: what every Job step's Job and pod get where the step's own template (and
    `metadata`) do not say; never a Manual or a Flow step's (core/step_defaults.py)."""

    metadata: StepMetadata | None = None
    pod_spec: StepPodDefaults | None = None
    active_deadline_seconds: int | None = None


class Backoff(SpecModel):
    type: str | None = None
    factor: float | None = None
    duration: str | None = None
    max_duration: str | None = None


class RetryAffinity(SpecModel):
    """`retryPolicy.affinity`, Argo's spelling: `nodeAntiAffinity: {}` (an empty object, present or not)
    keeps a retry off the nodes the step's failed attempts ran on (planner/node_avoidance.py)."""

    node_anti_affinity: dict[str, Any] | None = None


class RetryPolicy(SpecModel):
    limit: int | None = None
    backoff: Backoff | None = None
    affinity: RetryAffinity | None = None
    # CEL over the failed attempt (`lastRetry`) and the flow: retried only when true
    # (core/retry_condition.py).
    expression: str | None = None

    @property
    def avoids_failed_nodes(self) -> bool:
        return self.affinity is not None and self.affinity.node_anti_affinity is not None


class Approver(SpecModel):
    """Who may decide a gate, as an RBAC subject: a `User` by name, or any member of a `Group`."""

    kind: str
    name: str


def needed_approvals(required: object) -> int:
    """The approvals a gate needs whose `approval.required` is `required`: the model's or a raw object's
    value, said once for the planner, the webhook and the size bound. One for a value that is no integer
    above one (refused at admission), DEFAULT_REQUIRED_APPROVALS when it is not set."""
    if required is None:
        return DEFAULT_REQUIRED_APPROVALS
    return required if type(required) is int and required > 1 else 1


class StepApproval(SpecModel):
    """A Manual step's `approval`: only its `approvers` (when listed) may decide it, and it succeeds once
    `required` distinct users approved it (None: DEFAULT_REQUIRED_APPROVALS, the controller's default:
    no schema default is written, so stored flows stay as they were written)."""

    approvers: tuple[Approver, ...] = ()
    required: int | None = None

    @property
    def needed(self) -> int:
        return needed_approvals(self.required)

    @property
    def audited(self) -> int:
        """The most status.audit.approvals entries one reach of the gate writes: `required - 1` approvals
        that do not open it and the `required` that do (or those and a rejection)."""
        return 2 * self.needed - 1


class ConfigMapCache(SpecModel):
    name: str = ""


class MemoizeCache(SpecModel):
    config_map: ConfigMapCache | None = None


class Memoize(SpecModel):
    """A Job step's result kept under `key` in a ConfigMap of the flow's namespace (planner.memoization)."""

    key: str = ""
    max_age: str | None = None
    cache: MemoizeCache | None = None


class MatrixSource(SpecModel):
    """Exactly one: a flow argument holding a JSON array, or `<step>:$.outputs.parameters.<name>`, an
    earlier step's output read at run time (core/matrix_sources.py)."""

    argument: str | None = None
    json_path: str | None = None


class MatrixVerdict(NamedTuple):
    """What becomes of a matrix step whose items an earlier step's output gives, while it is not expanded
    (core/matrix_sources.py): `phase` Pending (it waits), Skipped or Failed, `message` why, `sources`
    the steps it reads (`zen-flow get` shows `(from gen)`)."""

    phase: str
    message: str
    sources: tuple[str, ...]


class MatrixParameter(SpecModel):
    """One dimension of a matrix: its `values`, or those of a flow argument holding a JSON array."""

    name: str = ""
    values: tuple[str, ...] | None = None
    value_from: MatrixSource | None = None


class Matrix(SpecModel):
    """A step run once per combination of its parameters' values (core/matrix.py expands it)."""

    parameters: tuple[MatrixParameter, ...] = ()
    # At most this many items run at once (None: no limit of its own; planner.parallelism).
    max_parallel: int | None = None
    # The most items it may expand to (None: 256); a matrix reading an output is counted at it.
    max_items: int | None = None


class TemplateRef(SpecModel):
    """The JobFlowTemplate a flow is made from (validation/expansion.py): its steps, arguments and
    policy are copied into the flow when it is created, so the template's later edits never reach it.
    `cluster_scope`: the ClusterJobFlowTemplate of that name instead (Argo's `clusterScope`)."""

    name: str = ""
    cluster_scope: bool | None = None


class Mutex(SpecModel):
    """A lock at most one step of the namespace holds at a time (planner/locks.py)."""

    name: str = ""


class Semaphore(SpecModel):
    """A lock at most `limit` steps of the namespace hold at a time (planner/locks.py)."""

    name: str = ""
    limit: int = 1


class Synchronization(SpecModel):
    """The named locks a step takes, all at once, when it would start, and holds until it ends. A lock
    is shared by the flows of one namespace handled by one controller instance (Argo's mutexes and
    semaphores)."""

    mutexes: tuple[Mutex, ...] = ()
    semaphores: tuple[Semaphore, ...] = ()


class StepFlowArgument(SpecModel):
    name: str = ""
    value: str = ""


class StepFlowArguments(SpecModel):
    parameters: tuple[StepFlowArgument, ...] = ()


class StepFlow(SpecModel):
    """A `type: Flow` step's child flow (planner/children.py): made from the JobFlowTemplate (or
    ClusterJobFlowTemplate) `template_ref` names, with `arguments` (their values may hold the step's
    input placeholders)."""

    template_ref: TemplateRef | None = None
    arguments: StepFlowArguments | None = None


class Step(SpecModel):
    name: str = ""
    type: str | None = None
    message: str | None = None
    # A Manual step's approvers and required approvals (a tallied gate); None: one approval by anyone
    # who may write the annotation.
    approval: StepApproval | None = None
    metadata: StepMetadata | None = None
    dependencies: tuple[str, ...] = ()
    retry_policy: RetryPolicy | None = None
    timeout_seconds: int | None = None
    # Replaces executionPolicy.podPendingTimeoutSeconds for this (Job) step.
    pod_pending_timeout_seconds: int | None = None
    when: str | None = None
    continue_on_failure: bool = False
    # Its failure (after its retries) is tolerated outright: continueOnFailure's dependents run, and the
    # flow may still end Succeeded (GitLab's allow_failure, Tekton's onError: continue).
    allow_failure: bool = False
    # None: AllSucceeded (the webhook writes no default, so stored flows stay as they were written).
    dependency_policy: str | None = None
    # A finally step (Argo's onExit, Tekton's finally) runs once every other step has ended, whatever
    # the outcome. None: not one (the webhook writes no default, so stored flows stay as written).
    finally_: bool | None = Field(default=None, alias="finally")
    template: dict[str, Any] | None = None
    inputs: StepInputs | None = None
    outputs: StepOutputs | None = None
    memoize: Memoize | None = None
    # Fan-out: the step stands for one item step per combination (core/matrix.py); the planner only
    # ever sees the items (the effective flow).
    matrix: Matrix | None = None
    # A `type: Flow` step's child flow: the step runs a JobFlowTemplate as a flow of its own.
    flow: StepFlow | None = None
    # Named locks shared with the namespace's other flows' steps (planner/locks.py).
    synchronization: Synchronization | None = None

    @property
    def is_finally(self) -> bool:
        return bool(self.finally_)

    @property
    def goes_on_after_failure(self) -> bool:
        """Do its dependents run once it failed for good: continueOnFailure, or allowFailure, which
        implies it. Its failure then counts as ended, not succeeded (dependencyPolicy, `when`)."""
        return self.continue_on_failure or self.allow_failure

    @property
    def is_flow(self) -> bool:
        """A child-flow step: `type: Flow` (never inferred: the original had no such step)."""
        return self.type == StepType.FLOW

    @property
    def is_manual(self) -> bool:
        """Manual approval gate: `type: Manual`, or (as in the original) no type and no template. An
        empty template is a broken Job step (the validator says so), not an approval gate."""
        if self.type:
            return self.type == StepType.MANUAL
        return self.template is None


class ArgumentParameter(SpecModel):
    name: str = ""
    value: str = ""
    description: str | None = None
    enum: tuple[str, ...] = ()


class Arguments(SpecModel):
    parameters: tuple[ArgumentParameter, ...] = ()


# The spec fields that are a JobFlow's own, not its definition's: a JobFlowTemplate's and a
# ClusterJobFlowTemplate's spec (their CRDs: tools/template-crd.py) has all the others and not these.
FLOWS_OWN = frozenset({"suspend", "templateRef"})


class JobFlowSpec(SpecModel):
    arguments: Arguments | None = None
    # Where output artifacts without `s3` of their own are stored (planner/artifacts.py); None: nowhere.
    artifact_repository: ArtifactRepository | None = None
    execution_policy: ExecutionPolicy | None = None
    resource_templates: ResourceTemplates | None = None
    # What every Job step's Job gets where its template does not say (core/step_defaults.py).
    step_defaults: StepDefaults | None = None
    steps: tuple[Step, ...] = ()
    suspend: bool | None = None
    template_ref: TemplateRef | None = None
    # Locks the flow itself holds from before its first step to its end (planner/locks.py).
    synchronization: Synchronization | None = None
    # Not a field of the resource: in a flow's effective spec (core/matrix.py), each matrix step's items
    # in index order, which a `<matrix step>:$.outputs.parameters.NAME` input reads all of. Never
    # serialized (excluded), so the stored spec's shape stays the CRD's.
    matrix_groups: dict[str, tuple[str, ...]] = Field(default_factory=dict, exclude=True)
    # Not a field of the resource either: each matrix step whose items come from an earlier step's output
    # and that is not expanded (yet) -> what the planner does when it is ready instead of starting it:
    # core/matrix_sources.py.
    matrix_verdicts: dict[str, MatrixVerdict] = Field(default_factory=dict, exclude=True)
    # Not a field of the resource either: each expanded matrix step with `maxParallel` -> that limit,
    # which the planner applies to its items (`matrix_groups`) beside executionPolicy.parallelism.
    matrix_limits: dict[str, int] = Field(default_factory=dict, exclude=True)


class JobFlow(Model):
    api_version: str = API_VERSION
    kind: str = KIND
    metadata: ObjectMeta = ObjectMeta()
    spec: JobFlowSpec = JobFlowSpec()
    status: JobFlowStatus = JobFlowStatus()

    @property
    def key(self) -> str:
        return self.metadata.key
