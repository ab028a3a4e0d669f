"""A Job's pods as zen_flow.kube reads them (kube_client_rig): only those its Job controls, why they
wait, how their containers ended and on which nodes, and the containers the log archive reads."""

from __future__ import annotations

from typing import Any

from kube_client_rig import FakeApiserver, reply
from kube_client_rig import api_fixture as api_fixture  # the `api` fixture
from kube_client_rig import clock_fixture as clock_fixture  # the `clock` fixture
from kube_client_rig import fake_fixture as fake_fixture  # the `fake` fixture
from kube_client_rig import kube_fixture as kube_fixture  # the `kube` fixture
from test_planner_artifacts import S3, T0, created

from zen_flow.api.transfer import TRANSFER_NAMES
from zen_flow.kube import KubeClient
from zen_flow.kube.pods import JobPod, PodClient, PodLogs
from zen_flow.planner.archive_logs import step_containers
from zen_flow.planner.reports import INTERRUPTED, exit_summary, first_exit_code
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator


async def test_a_steps_messages_come_only_from_a_pod_its_job_controls(
    api: FakeApiserver, kube: KubeClient
) -> None:
    # Job names are predictable: anyone who may create pods can label one with a step's Job name and
    # finish it last. Its "termination message" must not become the step's outputs or artifact report.
    def pod(owner: str | None, finished: str, message: str) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": f"p-{message}"}
        if owner is not None:
            meta["ownerReferences"] = [
                {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": owner, "controller": True}
            ]
        terminated = {"exitCode": 0, "message": message, "finishedAt": finished}
        return {
            "metadata": meta,
            "status": {
                "phase": "Succeeded",
                "containerStatuses": [{"name": "main", "state": {"terminated": terminated}}],
            },
        }

    api.answer(
        reply(
            200,
            {
                "metadata": {"resourceVersion": "9"},
                "items": [
                    pod("job-uid", "2026-12-05T10:00:00Z", "real"),
                    pod(None, "2026-12-05T10:00:05Z", "forged"),
                    pod("another-job", "2026-12-05T10:00:09Z", "other"),
                ],
            },
        )
    )
    messages = await PodClient(kube).termination_messages("ns", "j", job_uid="job-uid", succeeded=True)
    assert messages == {"main": "real"}
    assert api.requests[0][3] == {"labelSelector": "batch.kubernetes.io/job-name=j"}


async def test_a_pending_jobs_pods_are_listed_by_its_label_and_read_for_why_they_wait(
    api: FakeApiserver, kube: KubeClient
) -> None:
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "job-uid", "controller": True}
    waiting = {"name": "main", "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off"}}}
    stuck = {
        "metadata": {"name": "p", "creationTimestamp": "2026-12-05T10:00:00Z", "ownerReferences": [owner]},
        "spec": {"containers": [{"name": "main", "image": "busybox:nope"}]},
        "status": {"phase": "Pending", "containerStatuses": [waiting]},
    }
    api.answer(reply(200, {"metadata": {"resourceVersion": "9"}, "items": [stuck]}))
    (pod,) = await PodClient(kube).pods_of("ns", "j")
    assert api.requests[0][3] == {"labelSelector": "batch.kubernetes.io/job-name=j"}
    assert pod.owned_by("job-uid")
    state = pod.status.container_statuses[0].state.waiting
    assert state is not None
    assert (state.reason, state.message) == ("ImagePullBackOff", "Back-off")
    # A read that only words a message comes from the apiserver's watch cache: no etcd read.
    api.answer(reply(200, {"metadata": {"resourceVersion": "9"}, "items": []}))
    assert await PodClient(kube).pods_of("ns", "j", cached=True) == ()
    assert api.requests[1][3] == {"labelSelector": "batch.kubernetes.io/job-name=j", "resourceVersion": "0"}


async def test_a_failed_pod_says_how_its_containers_ended(api: FakeApiserver, kube: KubeClient) -> None:
    # What a user debugging a failed step needs first: the exit code, and OOMKilled.
    def ended(name: str, code: int, reason: str) -> dict[str, Any]:
        terminated = {"exitCode": code, "reason": reason, "finishedAt": "2026-12-05T10:00:00Z"}
        return {"name": name, "state": {"terminated": terminated}}

    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "job-uid", "controller": True}
    failed = {
        "metadata": {"name": "p", "ownerReferences": [owner]},
        "status": {
            "phase": "Failed",
            "initContainerStatuses": [ended("setup", 0, "Completed")],
            "containerStatuses": [ended("main", 137, "OOMKilled"), ended("sidecar", 2, "Error")],
        },
    }
    api.answer(reply(200, {"metadata": {"resourceVersion": "9"}, "items": [failed]}))
    messages = await PodClient(kube).termination_messages("ns", "j", job_uid="job-uid", succeeded=False)
    assert messages == {
        "setup": "",
        "main": "",
        "sidecar": "",
        "exit:main": "exit code 137 (OOMKilled)",
        "exit:sidecar": "exit code 2",
    }


async def test_a_failed_pods_main_containers_exit_code_comes_before_its_sidecars(
    api: FakeApiserver, kube: KubeClient
) -> None:
    # retryPolicy.expression's lastRetry.exitCode is the first failing container's: a sidecar (an init
    # container that restarts: zen-flow's own uploader, a user's proxy) killed at the pod's end is not it.
    def ended(name: str, code: int) -> dict[str, Any]:
        return {
            "name": name,
            "state": {"terminated": {"exitCode": code, "finishedAt": "2026-12-05T10:00:00Z"}},
        }

    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "job-uid", "controller": True}
    failed = {
        "metadata": {"name": "p", "ownerReferences": [owner]},
        "spec": {
            "initContainers": [
                {"name": "zf-artifacts-in"},
                {"name": "zf-artifacts-out", "restartPolicy": "Always"},
                {"name": "proxy", "restartPolicy": "Always"},
            ],
            "containers": [{"name": "main"}],
        },
        "status": {
            "phase": "Failed",
            "initContainerStatuses": [
                ended("zf-artifacts-in", 0),
                ended("zf-artifacts-out", 137),
                ended("proxy", 143),
            ],
            "containerStatuses": [ended("main", 2)],
        },
    }
    api.answer(reply(200, {"metadata": {"resourceVersion": "9"}, "items": [failed]}))
    messages = await PodClient(kube).termination_messages("ns", "j", job_uid="job-uid", succeeded=False)
    assert messages is not None
    assert first_exit_code(messages) == 2
    assert (
        exit_summary(messages) == "main: exit code 2; zf-artifacts-out: exit code 137; proxy: exit code 143"
    )


async def test_a_failed_jobs_read_says_which_nodes_its_failed_pods_ran_on(
    api: FakeApiserver, kube: KubeClient
) -> None:
    # retryPolicy's nodeAntiAffinity: the same list gives each failed pod's spec.nodeName, oldest first,
    # a node failed on again among the newest; a pod never scheduled, or not the Job's own, adds none.
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "job-uid", "controller": True}

    def failed(
        name: str, node: str | None, at: str, owners: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        ended = {"name": "main", "state": {"terminated": {"exitCode": 1, "finishedAt": at}}}
        spec: dict[str, Any] = {"containers": [{"name": "main"}]}
        if node is not None:
            spec["nodeName"] = node
        return {
            "metadata": {"name": name, "ownerReferences": [owner] if owners is None else owners},
            "spec": spec,
            "status": {"phase": "Failed", "containerStatuses": [ended] if node else []},
        }

    items = [
        failed("p3", "node-a", "2026-12-05T10:00:03Z"),
        failed("p1", "node-a", "2026-12-05T10:00:01Z"),
        failed("p2", "node-b", "2026-12-05T10:00:02Z"),
        failed("p0", None, "2026-12-05T10:00:00Z"),
        failed("forged", "node-x", "2026-12-05T10:00:09Z", owners=[]),
    ]
    api.answer(reply(200, {"metadata": {"resourceVersion": "9"}, "items": items}))
    messages = await PodClient(kube).termination_messages("ns", "j", job_uid="job-uid", succeeded=False)
    assert messages is not None
    assert messages["nodes:"] == "node-b node-a"
    assert len(api.requests) == 1  # no read of its own


async def test_nodes_that_did_not_fail_their_pods_are_not_named(api: FakeApiserver, kube: KubeClient) -> None:
    # A pod being deleted (the Job controller removing a parallel Job's siblings), one disrupted
    # (preempted, evicted, its node drained) or one its own activeDeadlineSeconds ended: its node is not
    # to blame, so a retry need not avoid it.
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "job-uid", "controller": True}

    def failed(name: str, node: str, **extra: Any) -> dict[str, Any]:
        ended = {
            "name": "main",
            "state": {"terminated": {"exitCode": 1, "finishedAt": "2026-12-05T10:00:01Z"}},
        }
        pod: dict[str, Any] = {
            "metadata": {"name": name, "ownerReferences": [owner]},
            "spec": {"containers": [{"name": "main"}], "nodeName": node},
            "status": {"phase": "Failed", "containerStatuses": [ended]},
        }
        for part, fields in extra.items():
            pod[part].update(fields)
        return pod

    disrupted = {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}
    items = [
        failed("bad", "node-bad"),
        failed("sibling", "node-a", metadata={"deletionTimestamp": "2026-12-05T10:00:05Z"}),
        failed("preempted", "node-b", status={"conditions": [disrupted]}),
        failed("late", "node-c", status={"reason": "DeadlineExceeded"}),
    ]
    api.answer(reply(200, {"metadata": {"resourceVersion": "9"}, "items": items}))
    messages = await PodClient(kube).termination_messages("ns", "j", job_uid="job-uid", succeeded=False)
    assert messages is not None
    assert messages["nodes:"] == "node-bad"


async def test_a_failed_pod_that_never_ran_to_an_exit_of_its_own_says_what_ended_it(
    api: FakeApiserver, kube: KubeClient
) -> None:
    # retryPolicy.expression's lastRetry.status: "Error" when the last failed pod was evicted or
    # preempted (a DisruptionTarget condition) or ended by its activeDeadlineSeconds, whatever its
    # containers' exit codes; a pod whose container exited on its own says nothing more.
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "job-uid", "controller": True}

    def failed(**status: Any) -> dict[str, Any]:
        ended = {
            "name": "main",
            "state": {"terminated": {"exitCode": 137, "finishedAt": "2026-12-05T10:00:01Z"}},
        }
        return {
            "metadata": {"name": "p", "ownerReferences": [owner]},
            "spec": {"containers": [{"name": "main"}], "nodeName": "n"},
            "status": {"phase": "Failed", "containerStatuses": [ended], **status},
        }

    disrupted = {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"}
    for status, said in [
        ({"conditions": [disrupted]}, "DisruptionTarget"),
        ({"reason": "DeadlineExceeded"}, "DeadlineExceeded"),
        ({}, None),
    ]:
        api.answer(reply(200, {"metadata": {"resourceVersion": "9"}, "items": [failed(**status)]}))
        messages = await PodClient(kube).termination_messages("ns", "j", job_uid="job-uid", succeeded=False)
        assert messages is not None
        assert messages.get(INTERRUPTED) == said
        assert messages["exit:main"] == "exit code 137"


async def test_the_log_archive_reads_the_containers_of_the_pods_its_job_controls_not_init_ones(
    api: FakeApiserver, kube: KubeClient
) -> None:
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "job-uid", "controller": True}
    spec = {"initContainers": [{"name": "setup"}], "containers": [{"name": "main"}, {"name": "sidecar"}]}
    pods = [
        {"metadata": {"name": "p-1", "ownerReferences": [owner]}, "spec": spec},
        {"metadata": {"name": "p-forged"}, "spec": spec},  # wears the label only
    ]
    api.answer(reply(200, {"metadata": {"resourceVersion": "9"}, "items": pods}))
    found = await PodLogs(kube).job_pods("ns", "j", "job-uid")
    assert found == [JobPod("p-1", ("main", "sidecar"))]  # as `zen-flow logs` shows them


async def test_an_artifact_steps_transfer_containers_are_never_read_so_no_restart_finds_theirs_missing(
    api: FakeApiserver, kube: KubeClient
) -> None:
    """zen-flow's transfer containers are init containers (the downloader; the uploader a native sidecar),
    which the log archive does not read: a pod of an artifact step is read for exactly the containers
    its step's template names, what the check after a restart (`step_containers`, controller/
    log_archiver.py) expects of the logs stored before it. No transfer container's log is written, so
    none can be left unwritten by a restart and go unflagged in the record."""
    http = {"name": "seed", "http": {"url": "https://example.com/seed.csv"}, "path": "/in/seed.csv"}
    out = {"name": "app", "path": "/out/app.txt", "s3": S3}
    flow = make_flow([job_step("b", inputs={"artifacts": [http]}, outputs={"artifacts": [out]})])
    sim = Simulator(flow, T0)
    sim.reconcile()
    spec = created(sim, "b")["spec"]["template"]["spec"]
    assert TRANSFER_NAMES - {"zf-artifacts"} <= {c["name"] for c in spec["initContainers"]}
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "job-uid", "controller": True}
    api.answer(
        reply(200, {"items": [{"metadata": {"name": "p-1", "ownerReferences": [owner]}, "spec": spec}]})
    )
    (pod,) = await PodLogs(kube).job_pods("ns", "j", "job-uid")
    assert pod.containers == step_containers(flow, "b") == ("main",)
