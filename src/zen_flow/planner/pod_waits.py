"""Why a step's pod does not run: what a read of a pending Job's pods found (`PodWait`), and the status
message that says it.

A Running step whose Job has had no ready pod for a while has its Job's pods read (the controller does
it, now and then: planner/pending_pods.py says when), and the reason a pod waits goes into the step's
message: `pod waiting: container main ImagePullBackOff: Back-off pulling image "..."`, `pod
unschedulable: 0/3 nodes are available: ...`. The kubelet's and the scheduler's words come from the
cluster, so they are cut to DETAIL_LIMIT characters (status stays small, and a failure message that
quotes them keeps room for what it adds). What the message said before (a retried step's `attempt 2;
attempt 1 failed: ...`) stays: the wait is said after it (`WAIT_SEPARATOR`), and only that part goes
when the wait is over.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from zen_flow.api.pod import ContainerStatus, Pod
from zen_flow.planner.steps import MAX_MESSAGE, bound
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
NO_POD_REASON = "NoPod"
NO_POD_HEAD = "no pod: "
NO_POD = f"{NO_POD_HEAD}the Job has no pod that is not finished (see its events: kubectl describe job)"
_HEADS = (WAITING, UNSCHEDULABLE, PENDING, NO_POD_HEAD)
# Between what a step's message said before (a retry's history) and the wait it names now.
WAIT_SEPARATOR = "; now "
# Of a wait said after a long message, at least this much of its words beyond its cause stays.
_WAIT_DETAIL_KEPT = 40
_WAITING_KEY = re.compile(r"((?:init )?container \S+) ([^\s:]+)")


@dataclass(frozen=True)
class PodWait:
    """What one read of a Job's pods (`job_uid`) found at `read_at` (the controller's clock): a container
    runs (`running`: it is not stuck), or why none does (`message`, its `reason`), since when (`since`:
    the latest any of its pods was created, is gone by (a deletion's grace period ends), or had a
    container stop running, by the cluster's clocks; None: unknown). `seen_since`: the first of the
    controller's reads in a row that found the same (None: this one). `uncounted`: a pod finished that
    the Job controller has not counted yet; `succeeded`: the pods found Succeeded (the Job's status
    catches up with both). `consistent`: read from the apiserver's storage, not its cache (only such a
    read fails a step: a cached one may be a moment old)."""

    read_at: datetime
    job_uid: str
    running: bool = False
    message: str = ""
    reason: str = ""
    since: datetime | None = None
    seen_since: datetime | None = None
    uncounted: bool = False
    succeeded: int = 0
    consistent: bool = True

    @property
    def first_seen(self) -> datetime:
        """When the controller first found what this read found (its reads in a row since)."""
        return self.seen_since or self.read_at

    def same(self, other: PodWait) -> bool:
        """Did `other`, a read of the same Job, find what this one found (the same cause, or running)?"""
        return (
            self.job_uid == other.job_uid
            and self.running == other.running
            and self.uncounted == other.uncounted
            and wait_key(self.message) == wait_key(other.message)
        )


def pod_wait(
    pods: Sequence[Pod],
    job_uid: str,
    read_at: datetime,
    previous: PodWait | None = None,
    *,
    consistent: bool = True,
) -> PodWait:
    """Why no pod of the Job `job_uid` runs, from its pods (those it controls, not finished, not being
    deleted). Of several pods, the one with the most telling reason (a pull error before a container
    being created), the newest of those; `since` is the latest any pod of the Job, finished or being
    deleted too, began to wait. `previous`: the last read of the Job, whose `seen_since` this one keeps
    when it finds the same."""
    now = normalize(read_at)
    owned = [p for p in pods if p.owned_by(job_uid)]
    live = [p for p in owned if not p.finished and p.metadata.deletion_timestamp is None]
    uncounted = any(p.uncounted for p in owned)
    succeeded = sum(p.status.phase == "Succeeded" for p in owned)
    if live and any(_runs(p) for p in live):
        reason, message, since = "", "", None
    else:
        starts = [s for p in owned if (s := _waiting_since(p)) is not None]
        since = max(starts, default=None)
        reason, message = NO_POD_REASON, NO_POD
        if live:
            found_why = [(*_why(p), p) for p in live]
            reason, message, _ = min(found_why, key=lambda f: (_rank(f[0]), -_created(f[2])))
    found = PodWait(
        now,
        job_uid,
        running=not message,
        message=bound(message) if message else "",
        reason=reason,
        since=since,
        uncounted=uncounted,
        succeeded=succeeded,
        consistent=consistent,
    )
    if previous is not None and previous.read_at <= now and previous.same(found):
        found = replace(found, seen_since=previous.first_seen)
    return found


def wait_key(message: str | None) -> str | None:
    """The wait a step's message names, as one key per cause ("container main ImagePull",
    "Unschedulable", ...); None when it names none. Two reads that find the same cause keep the first
    message (the kubelet's words change at each retry of a pull: the status would be rewritten)."""
    message = wait_part(message)
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
    if message.startswith(NO_POD_HEAD):
        return NO_POD_REASON
    return None


def benign(key: str) -> bool:
    """Is the wait `key` (`wait_key`) one of a pod on its way rather than a stuck one?"""
    return key.rsplit(" ", 1)[-1] in BENIGN


def shown(current: str | None, wait: PodWait) -> str:
    """The step's message for `wait`: the one it shows when that names the same cause, else what it said
    before the wait (`without_wait`) and the wait after it."""
    if current is not None and wait_key(current) == wait_key(wait.message):
        return current
    return with_wait(current, wait.message)


def wait_part(message: str | None) -> str | None:
    """The part of a step's message that names the wait of its pod (`shown`); None when none does."""
    if not message:
        return None
    if message.startswith(_HEADS):
        return message
    at = message.rfind(WAIT_SEPARATOR)
    if at >= 0 and message.startswith(_HEADS, at + len(WAIT_SEPARATOR)):
        return message[at + len(WAIT_SEPARATOR) :]
    return None


def without_wait(message: str | None) -> str | None:
    """A step's message without the wait of its pod (what it said before: a retry's history), None when
    that is all it said."""
    part = wait_part(message)
    if message is None or part is None:
        return message
    return message[: len(message) - len(part)].removesuffix(WAIT_SEPARATOR) or None


def with_wait(message: str | None, wait: str) -> str:
    """`message` (a step's, less any wait it names) and then the wait: within MAX_MESSAGE, the wait's
    words cut first and its cause (`wait_key`) never, then what came before."""
    before = without_wait(message)
    if not before:
        return wait
    room = MAX_MESSAGE - len(WAIT_SEPARATOR) - len(before)
    keep = min(len(wait), _head_length(wait) + _WAIT_DETAIL_KEPT)
    if room < keep:
        before = bound(before, MAX_MESSAGE - len(WAIT_SEPARATOR) - keep)
        room = MAX_MESSAGE - len(WAIT_SEPARATOR) - len(before)
    return f"{before}{WAIT_SEPARATOR}{bound(wait, room)}"


def _head_length(wait: str) -> int:
    """How long the part of a wait's message that names its cause is (the rest is the cluster's words)."""
    if wait.startswith(WAITING) and (found := _WAITING_KEY.match(wait, len(WAITING))) is not None:
        return found.end()
    return len(UNSCHEDULABLE) if wait.startswith(UNSCHEDULABLE) else min(len(wait), len(NOT_SCHEDULED))


def _runs(pod: Pod) -> bool:
    """Does the pod run the step's work: it is ready, or a container of its own runs (an init container
    too: one downloading inputs), or they have all exited (its sidecars stop, the uploader uploading)? A
    native sidecar (`Pod.sidecars`: zen-flow's uploader, a mesh proxy) running says nothing of it: it
    starts first and runs beside a container that cannot start (its image cannot be pulled)."""
    ready = pod.status.condition("Ready")
    if ready is not None and ready.status == "True":
        return True
    sidecars = pod.sidecars
    if any(c.state.running is not None for c in pod.status.all() if c.name not in sidecars):
        return True
    containers = pod.status.container_statuses
    return bool(containers) and all(c.state.terminated is not None for c in containers)


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
    """When the pod began to wait: its creation, the last time one of its containers stopped running (an
    init container that finished, a container the kubelet restarts, one that ended the pod), or, for a pod
    being deleted, the end of its grace period (its replacement may wait for it), whichever is later."""
    stamps = [pod.metadata.creation_timestamp, pod.metadata.deletion_timestamp]
    for c in pod.status.all():
        for state in (c.state, c.last_state):
            if state.terminated is not None:
                stamps.append(state.terminated.finished_at)
    return max((utc(s) for s in stamps if s is not None), default=None)
