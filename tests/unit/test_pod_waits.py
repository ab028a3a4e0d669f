"""Why a pending step's pod waits, read from its pods as the apiserver lists them (planner/pod_waits.py):
the message a user sees in `zen-flow get` and in the step's status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from zen_flow.api.pod import Pod
from zen_flow.planner.pod_waits import (
    DETAIL_LIMIT,
    NO_POD,
    WAIT_SEPARATOR,
    PodWait,
    benign,
    pod_wait,
    shown,
    wait_key,
    wait_part,
    with_wait,
    without_wait,
)
from zen_flow.planner.steps import MAX_MESSAGE, bound

T0 = datetime(2026, 3, 1, 9, tzinfo=UTC)
NOW = T0 + timedelta(minutes=5)
JOB_UID = "job-uid"
OWNER = {"apiVersion": "batch/v1", "kind": "Job", "name": "f-a-0", "uid": JOB_UID, "controller": True}


def stamp(seconds: int) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def waiting(name: str, reason: str, message: str = "") -> dict[str, Any]:
    return {"name": name, "state": {"waiting": {"reason": reason, "message": message}}}


def pod(
    *,
    created: int = 0,
    phase: str = "Pending",
    containers: tuple[dict[str, Any], ...] = (),
    init: tuple[dict[str, Any], ...] = (),
    conditions: tuple[dict[str, Any], ...] = ({"type": "PodScheduled", "status": "True"},),
    owner: dict[str, Any] = OWNER,
    name: str = "f-a-0-abcde",
    sidecars: tuple[str, ...] = (),
) -> Pod:
    """`sidecars`: the names of its init containers with `restartPolicy: Always` (native sidecars)."""
    return Pod.model_validate(
        {
            "metadata": {"name": name, "creationTimestamp": stamp(created), "ownerReferences": [owner]},
            "spec": {"initContainers": [{"name": n, "restartPolicy": "Always"} for n in sidecars]},
            "status": {
                "phase": phase,
                "conditions": list(conditions),
                "containerStatuses": list(containers),
                "initContainerStatuses": list(init),
            },
        }
    )


def test_an_image_that_cannot_be_pulled_is_named_with_the_kubelets_words() -> None:
    stuck = pod(containers=(waiting("main", "ImagePullBackOff", 'Back-off pulling image "busybox:nope"'),))
    found = pod_wait([stuck], JOB_UID, NOW)
    assert found == PodWait(
        read_at=NOW,
        job_uid=JOB_UID,
        message='pod waiting: container main ImagePullBackOff: Back-off pulling image "busybox:nope"',
        reason="ImagePullBackOff",
        since=T0,
    )


def test_a_pod_no_node_fits_says_what_the_scheduler_said() -> None:
    why = "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
    unscheduled = pod(
        conditions=({"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": why},)
    )
    found = pod_wait([unscheduled], JOB_UID, NOW)
    assert (found.message, found.reason, found.running) == (
        f"pod unschedulable: {why}",
        "Unschedulable",
        False,
    )


def test_of_several_containers_the_one_with_a_cause_to_fix_is_named() -> None:
    # The sidecar's image is being pulled (on its way); main's image name is wrong: that is the news.
    stuck = pod(
        containers=(
            waiting("sidecar", "ContainerCreating"),
            waiting("main", "InvalidImageName", 'couldn\'t parse image name "Busybox:1"'),
        )
    )
    found = pod_wait([stuck], JOB_UID, NOW)
    assert (
        found.message
        == 'pod waiting: container main InvalidImageName: couldn\'t parse image name "Busybox:1"'
    )


def test_an_init_container_in_the_way_is_named_and_the_wait_counts_from_the_last_that_finished() -> None:
    fetched = {
        "name": "fetch",
        "state": {"terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": stamp(40)}},
    }
    stuck = pod(
        init=(fetched, waiting("setup", "CreateContainerConfigError", 'secret "db" not found')),
        containers=(waiting("main", "PodInitializing"),),
    )
    found = pod_wait([stuck], JOB_UID, NOW)
    assert (
        found.message == 'pod waiting: init container setup CreateContainerConfigError: secret "db" not found'
    )
    assert found.since == T0 + timedelta(seconds=40)


def test_a_long_message_is_cut() -> None:
    long = "failed to pull and unpack image: " + "x" * 1000
    found = pod_wait([pod(containers=(waiting("main", "ErrImagePull", long),))], JOB_UID, NOW)
    head = "pod waiting: container main ErrImagePull: "
    assert found.message.startswith(head + "failed to pull and unpack image: xxx")
    assert found.message.endswith("...")
    assert len(found.message) == len(head) + DETAIL_LIMIT


def test_a_pod_with_a_container_running_is_not_stuck() -> None:
    # Its init container downloads inputs: the pod is Pending and not ready, but something runs.
    downloading = {"name": "fetch", "state": {"running": {"startedAt": stamp(5)}}}
    assert pod_wait([pod(init=(downloading,))], JOB_UID, NOW).running
    ready = pod(phase="Running", conditions=({"type": "Ready", "status": "True"},))
    assert pod_wait([ready], JOB_UID, NOW).running


PULL = 'Back-off pulling image "busybox:nope"'
# What a native sidecar (zen-flow's uploader, a mesh proxy) that started may be doing: running, or
# restarting after it stopped.
SIDECAR_STATES = st.sampled_from(
    [
        {"running": {"startedAt": stamp(2)}},
        {"terminated": {"exitCode": 1, "finishedAt": stamp(30)}},
        {"waiting": {"reason": "CrashLoopBackOff"}},
    ]
)


@given(st.lists(SIDECAR_STATES, min_size=1, max_size=3))
def test_sidecars_running_beside_a_container_that_cannot_start_do_not_make_the_pod_run(
    states: list[dict[str, Any]],
) -> None:
    # A native sidecar starts before the pod's containers and runs beside them: zen-flow's own uploader on
    # every step with output artifacts, a mesh proxy. Its running says nothing of the step's work: the pod
    # whose main container cannot pull its image is stuck, and says why, whatever its sidecars do.
    names = tuple(f"side-{i}" for i in range(len(states)))
    sidecars = tuple({"name": n, "state": state} for n, state in zip(names, states, strict=True))
    main = waiting("main", "ImagePullBackOff", PULL)
    found = pod_wait([pod(init=sidecars, containers=(main,), sidecars=names)], JOB_UID, NOW)
    assert not found.running
    if all("waiting" not in state for state in states):  # else a sidecar's crash loop is named first
        assert found.reason == "ImagePullBackOff"
        assert found.message == f"pod waiting: container main ImagePullBackOff: {PULL}"


def test_a_pod_whose_containers_ended_while_its_sidecars_stop_is_not_waiting() -> None:
    # The step's container exited; the uploader uploads its outputs as it stops (within the pod's grace).
    uploading = {"name": "zf-artifacts-out", "state": {"running": {"startedAt": stamp(2)}}}
    exited = {"name": "main", "state": {"terminated": {"exitCode": 0, "finishedAt": stamp(200)}}}
    ending = pod(phase="Running", init=(uploading,), containers=(exited,), sidecars=("zf-artifacts-out",))
    assert pod_wait([ending], JOB_UID, NOW).running


def test_only_the_jobs_own_live_pods_count() -> None:
    forged_owner = {**OWNER, "uid": "someone-else"}
    forged = pod(owner=forged_owner, containers=(waiting("main", "ImagePullBackOff"),))
    finished = pod(phase="Failed", containers=(waiting("main", "ImagePullBackOff"),))
    found = pod_wait([forged, finished], JOB_UID, NOW)
    # The finished pod is none that waits; it still says since when the Job has had none (its creation:
    # its container never ran), the forged pod does not.
    assert (found.message, found.reason, found.since) == (NO_POD, "NoPod", T0)
    assert wait_key(found.message) == "NoPod"


def test_a_crash_looping_container_waits_since_it_last_stopped() -> None:
    looping = {
        "name": "main",
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting"}},
        "lastState": {"terminated": {"exitCode": 1, "finishedAt": stamp(200)}},
    }
    found = pod_wait([pod(phase="Running", containers=(looping,))], JOB_UID, NOW)
    assert found.reason == "CrashLoopBackOff"
    assert found.since == T0 + timedelta(seconds=200)


def test_of_several_pods_the_telling_one_is_named_and_the_wait_counts_from_the_newest() -> None:
    old = pod(name="p-old", created=0, containers=(waiting("main", "ContainerCreating"),))
    new = pod(name="p-new", created=90, containers=(waiting("main", "ErrImagePull", "not found"),))
    found = pod_wait([old, new], JOB_UID, NOW)
    assert found.message == "pod waiting: container main ErrImagePull: not found"
    assert found.since == T0 + timedelta(seconds=90)


def test_a_pod_not_scheduled_yet_is_on_its_way() -> None:
    found = pod_wait([pod(conditions=())], JOB_UID, NOW)
    assert found.message == "pod pending: not scheduled yet"
    key = wait_key(found.message)
    assert key is not None
    assert benign(key)
    gated = pod(conditions=({"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"},))
    assert pod_wait([gated], JOB_UID, NOW).message == "pod pending: SchedulingGated"


def test_the_first_message_of_a_cause_is_kept_while_the_kubelet_rewords_it() -> None:
    # The kubelet alternates ErrImagePull and ImagePullBackOff at each retry: one cause, one message.
    first = pod_wait([pod(containers=(waiting("main", "ErrImagePull", "manifest unknown"),))], JOB_UID, NOW)
    again = pod_wait([pod(containers=(waiting("main", "ImagePullBackOff", "Back-off"),))], JOB_UID, NOW)
    assert wait_key(first.message) == wait_key(again.message) == "container main ImagePull"
    assert shown(first.message, again) == first.message
    # Another cause is news.
    other = pod_wait(
        [pod(containers=(waiting("main", "CreateContainerConfigError", "no key"),))], JOB_UID, NOW
    )
    assert shown(first.message, other) == other.message
    assert wait_key("attempt 1 failed: Job failed") is None


def test_a_wait_is_said_after_what_the_message_said_and_only_it_goes() -> None:
    history = "attempt 2; attempt 1 failed: exit code 137 (OOMKilled)"
    wait = f"pod unschedulable: {'0/3 nodes are available: 3 Insufficient memory. ' * 3}"
    said = with_wait(history, wait)
    assert said == f"{history}{WAIT_SEPARATOR}{bound(wait, MAX_MESSAGE - len(history) - len(WAIT_SEPARATOR))}"
    assert wait_key(said) == "Unschedulable"
    assert without_wait(said) == history
    assert without_wait(wait) is None
    assert with_wait(None, wait) == wait
    # A past attempt's PodPendingTimeout quotes the wait it failed for: that is history, not a wait now.
    past = "attempt 2; attempt 1 failed: PodPendingTimeout: no pod running for 60s; pod unschedulable: 0/3"
    assert wait_key(past) is None
    assert without_wait(past) == past


def test_a_wait_said_after_a_long_message_keeps_its_cause_within_the_bound() -> None:
    history = "attempt 3; attempt 2 failed: " + "why " * 60  # as long as a message gets
    history = bound(history)
    wait = 'pod waiting: container main ImagePullBackOff: Back-off pulling image "' + "registry/" * 20 + '"'
    said = with_wait(history, wait)
    assert len(said) <= MAX_MESSAGE
    assert wait_key(said) == "container main ImagePull"
    assert (wait_part(said) or "").startswith("pod waiting: container main ImagePullBackOff: Back-off")
    assert (without_wait(said) or "").startswith("attempt 3; attempt 2 failed: why why")
