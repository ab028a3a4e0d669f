"""Why a step's pod does not run: what a read of a pending Job's pods found (`PodWait`), and the status
message that says it.

A Running step whose Job has had no ready pod for a while has its Job's pods read (the controller does
it, now and then: planner/pending_pods.py says when), and the reason a pod waits goes into the step's
message: `pod waiting: container main ImagePullBackOff: Back-off pulling image "..."`, `pod
unschedulable: 0/3 nodes are available: ...`. The kubelet's and the scheduler's words come from the
cluster, so they are cut to DETAIL_LIMIT characters (status stays small, and a failure message that
quotes them keeps room for what it adds).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from zen_flow.api.pod import ContainerStatus, Pod
from zen_flow.planner.steps import bound
from zen_flow.planner.timing import normalize, utc

# The kubelet's and the scheduler's message, as a step's message quotes it: at most this many characters.
DETAIL_LIMIT = 120
# Waits that are a pod on its way (its image pulled, its volumes mounted, its init containers run): said
# after a while, never warned about (no StepPodStuck event).
BENIGN = frozenset({"ContainerCreating", "PodInitializing", "Pending"})
# Reasons the kubelet alternates between for one cause: one message while the cause lasts.
_FAMILIES = {"ErrImagePull": "ImagePull", "ImagePullBackOff": "ImagePull"}
# How each kind of wait's message begins (`wait_key` reads them back).
WAITING = "pod waiting: "
UNSCHEDULABLE = "pod unschedulable: "
PENDING = "pod pending"
NOT_SCHEDULED = f"{PENDING}: not scheduled yet"
NO_POD = "no pod: the Job has no pod that is not finished (see its events: kubectl describe job)"
_WAITING_KEY = re.compile(r"((?:init )?container \S+) ([^\s:]+)")


@dataclass(frozen=True)
class PodWait:
    """What one read of a Job's pods (`job_uid`) found at `read_at` (the controller's clock): a container
    runs (`running`: it is not stuck), or why none does (`message`, its `reason`), since when (`since`:
    when its current pod was created or last had a container stop running; None: unknown)."""

    read_at: datetime
    job_uid: str
    running: bool = False
    message: str = ""
    reason: str = ""
    since: datetime | None = None


def pod_wait(pods: Sequence[Pod], job_uid: str, read_at: datetime) -> PodWait:
    """Why no pod of the Job `job_uid` runs, from its pods (those it controls, not finished, not being
    deleted). Of several pods, the one with the most telling reason (a pull error before a container
    being created), the newest of those; `since` is the latest any of them began to wait."""
    now = normalize(read_at)
    live = [
        p
        for p in pods
        if p.owned_by(job_uid)
        and p.status.phase not in ("Succeeded", "Failed")
        and p.metadata.deletion_timestamp is None
    ]
    if not live:
        return PodWait(now, job_uid, message=NO_POD, reason="NoPod")
    if any(_runs(p) for p in live):
        return PodWait(now, job_uid, running=True)
    found = [(*_why(p), p) for p in live]
    reason, message, _ = min(found, key=lambda f: (_rank(f[0]), -_created(f[2])))
    starts = [s for p in live if (s := _waiting_since(p)) is not None]
    return PodWait(now, job_uid, message=bound(message), reason=reason, since=max(starts, default=None))


def wait_key(message: str | None) -> str | None:
    """The wait a step's message names, as one key per cause ("container main ImagePull",
    "Unschedulable", ...); None when it names none. Two reads that find the same cause keep the first
    message (the kubelet's words change at each retry of a pull: the status would be rewritten)."""
    if not message:
        return None
    if message.startswith(WAITING):
        found = _WAITING_KEY.match(message, len(WAITING))
        if found is None:
            return None
        return f"{found[1]} {_FAMILIES.get(found[2], found[2])}"
    if message.startswith(UNSCHEDULABLE):
        return "Unschedulable"
    if message.startswith(PENDING):
        return "Pending"
    if message == NO_POD:
        return "NoPod"
    return None


def benign(key: str) -> bool:
    """Is the wait `key` (`wait_key`) one of a pod on its way rather than a stuck one?"""
    return key.rsplit(" ", 1)[-1] in BENIGN


def shown(current: str | None, wait: PodWait) -> str:
    """The step's message for `wait`: the one it shows when that names the same cause."""
    if current is not None and wait_key(current) == wait_key(wait.message):
        return current
    return wait.message


def _runs(pod: Pod) -> bool:
    ready = pod.status.condition("Ready")
    if ready is not None and ready.status == "True":
        return True
    return any(c.state.running is not None for c in pod.status.all())


def _why(pod: Pod) -> tuple[str, str]:
    """(reason, message) of a pod none of whose containers runs."""
    scheduled = pod.status.condition("PodScheduled")
    if scheduled is not None and scheduled.status == "False":
        if scheduled.reason == "Unschedulable":
            return "Unschedulable", UNSCHEDULABLE + (_detail(scheduled.message) or "no node fits")
        reason = scheduled.reason or "Pending"  # SchedulingGated: held by its schedulingGates
        return reason, _said(f"{PENDING}: {reason}", scheduled.message)
    if (scheduled is None or scheduled.status != "True") and not pod.status.all():
        return "Pending", NOT_SCHEDULED
    # Init containers run one after the other: the first that has not finished is the one in the way.
    for c in pod.status.init_container_statuses:
        if c.state.terminated is not None and c.state.terminated.exit_code == 0:
            continue
        if c.state.waiting is not None:
            return _waiting(c, "init container")
        break
    waits = [_waiting(c, "container") for c in pod.status.container_statuses if c.state.waiting is not None]
    if waits:
        return min(waits, key=lambda w: _rank(w[0]))  # the first most telling, in the pod's order
    return "Pending", f"{PENDING}: no container has started yet"


def _waiting(c: ContainerStatus, kind: str) -> tuple[str, str]:
    waiting = c.state.waiting
    reason = (waiting.reason if waiting is not None else None) or "Waiting"
    return reason, _said(
        f"{WAITING}{kind} {c.name} {reason}", waiting.message if waiting is not None else None
    )


def _said(head: str, detail: str | None) -> str:
    text = _detail(detail)
    return f"{head}: {text}" if text else head


def _detail(text: str | None) -> str:
    return bound(text, DETAIL_LIMIT) if text else ""


def _rank(reason: str) -> int:
    """Most telling first: a cause to fix (a pull error, no node fits), then one to wait for."""
    return 1 if reason in BENIGN or reason == "Waiting" else 0


def _created(pod: Pod) -> float:
    created = pod.metadata.creation_timestamp
    return created.timestamp() if created is not None else 0.0


def _waiting_since(pod: Pod) -> datetime | None:
    """When the pod began to wait: its creation, or the last time one of its containers stopped running
    (an init container that finished, a container the kubelet restarts), whichever is later."""
    stamps = [pod.metadata.creation_timestamp]
    for c in pod.status.all():
        for state in (c.state, c.last_state):
            if state.terminated is not None:
                stamps.append(state.terminated.finished_at)
    return max((utc(s) for s in stamps if s is not None), default=None)
