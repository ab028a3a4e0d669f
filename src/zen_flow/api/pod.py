"""The subset of a core/v1 Pod that the controller reads: the pods of one Job, listed by its job-name
label now and then, decoded straight into these models and never cached (kube/pods.py).

What is read: how the pod's containers ended (termination messages, exit codes: a finished step's
outputs and failure), and why none of them runs (waiting reasons, the scheduler's PodScheduled
condition, when pods were created, deleted or last stopped, whether the Job controller has counted a
finished one: a stuck step's message and bound, planner/pod_waits.py).
"""

from __future__ import annotations

from pydantic import Field

from zen_flow.api.meta import Condition, Model, Timestamp


class Terminated(Model):
    message: str | None = None
    finished_at: Timestamp | None = None
    exit_code: int | None = None
    reason: str | None = None


class Waiting(Model):
    reason: str | None = None
    message: str | None = None


class Running(Model):
    started_at: Timestamp | None = None


class ContainerState(Model):
    waiting: Waiting | None = None
    running: Running | None = None
    terminated: Terminated | None = None


class ContainerStatus(Model):
    name: str = ""
    state: ContainerState = ContainerState()
    # How it ended the last time it ran, when it has been restarted (a crash loop).
    last_state: ContainerState = ContainerState()


class PodStatus(Model):
    phase: str | None = None
    # Why it is in its phase: `DeadlineExceeded` when its own activeDeadlineSeconds ended it.
    reason: str | None = None
    conditions: tuple[Condition, ...] = ()
    container_statuses: tuple[ContainerStatus, ...] = ()
    init_container_statuses: tuple[ContainerStatus, ...] = ()

    def all(self) -> tuple[ContainerStatus, ...]:
        return (*self.init_container_statuses, *self.container_statuses)

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)


# The finalizer the Job controller puts on its pods and takes off once it has counted the pod's end in the
# Job's status (`succeeded`, `failed`, or a podFailurePolicy's verdict).
JOB_TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
# The condition the control plane puts on a pod it is about to end for a disruption (preemption, eviction,
# a taint, a node shutdown), and the kubelet's reason for a pod its activeDeadlineSeconds ended.
DISRUPTION_TARGET = "DisruptionTarget"
POD_DEADLINE_REASON = "DeadlineExceeded"


class PodOwner(Model):
    uid: str = ""
    controller: bool | None = None


class PodMeta(Model):
    name: str = ""
    creation_timestamp: Timestamp | None = None
    # When a pod being deleted is gone at the latest: the deletion's time plus its grace period.
    deletion_timestamp: Timestamp | None = None
    owner_references: tuple[PodOwner, ...] = ()
    # `batch.kubernetes.io/job-tracking` while the Job controller has yet to count the pod's end
    # (JOB_TRACKING_FINALIZER): a finished pod that still has it is not in the Job's status yet.
    finalizers: tuple[str, ...] = ()


class Container(Model):
    name: str = ""


class InitContainer(Model):
    name: str = ""
    # "Always": a sidecar (a native one: it runs beside the containers, and is killed at the pod's end).
    restart_policy: str | None = None


class PodSpec(Model):
    containers: tuple[Container, ...] = ()
    init_containers: tuple[InitContainer, ...] = ()
    # The node it was bound to (none while unscheduled): a failed pod's, for retryPolicy's
    # nodeAntiAffinity (planner/node_avoidance.py).
    node_name: str | None = None


class Pod(Model):
    metadata: PodMeta = PodMeta()
    spec: PodSpec = PodSpec()
    status: PodStatus = PodStatus()

    def owned_by(self, uid: str) -> bool:
        """Is it a pod of the object `uid` (its controller)? Anyone who may create pods in a namespace can
        put a Job's name label on one; only the owner reference says whose it is."""
        return any(o.controller and o.uid == uid for o in self.metadata.owner_references)

    @property
    def blames_its_node(self) -> bool:
        """Did it fail where its node may be the cause (retryPolicy's nodeAntiAffinity)? Not when it is
        being deleted (the Job controller removing a parallel Job's other pods once it failed), disrupted
        (a DisruptionTarget condition: preempted, evicted, its node drained or shut down), or ended by its
        activeDeadlineSeconds; nor when it never got a node."""
        disrupted = self.status.condition(DISRUPTION_TARGET)
        return (
            bool(self.spec.node_name)
            and self.metadata.deletion_timestamp is None
            and (disrupted is None or disrupted.status != "True")
            and self.status.reason != POD_DEADLINE_REASON
        )

    @property
    def sidecars(self) -> frozenset[str]:
        """Its init containers that run beside its containers (`restartPolicy: Always`): zen-flow's own
        uploader, a user's proxy. Killed when the pod ends, their exit says nothing of its work."""
        return frozenset(c.name for c in self.spec.init_containers if c.restart_policy == "Always")

    @property
    def interrupted(self) -> str | None:
        """What ended it before it ran to an exit of its own (retryPolicy.expression's `Error` status):
        a DisruptionTarget condition (preempted, evicted, drained) or its activeDeadlineSeconds; None
        when nothing did."""
        disrupted = self.status.condition(DISRUPTION_TARGET)
        if disrupted is not None and disrupted.status == "True":
            return DISRUPTION_TARGET
        return POD_DEADLINE_REASON if self.status.reason == POD_DEADLINE_REASON else None

    @property
    def finished(self) -> bool:
        return self.status.phase in ("Succeeded", "Failed")

    @property
    def uncounted(self) -> bool:
        """Has it finished, and the Job controller not yet counted it in its Job's status?"""
        return self.finished and JOB_TRACKING_FINALIZER in self.metadata.finalizers


class PodList(Model):
    items: tuple[Pod, ...] = Field(default=())
