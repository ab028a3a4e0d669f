"""Flows with real containers: the examples run to the end, real exit codes become step failures and
podFailurePolicy outcomes, a step's pod logs are readable with kubectl, and a controller killed mid-flow
never runs a step twice, and a step whose image cannot be pulled says so and fails at its
podPendingTimeoutSeconds. The controller runs as a local process here (test_deploy.py runs it in-cluster).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from zen_flow.api.constants import APPROVE_PREFIX, LABEL_STEP, StepPhase
from zen_flow_dev.cluster import LocalCluster
from zen_flow_dev.node.host import BASE
from zen_flow_dev.testing.controller import StartController
from zen_flow_dev.testing.driver import FlowDriver, step_phases, wait_until
from zen_flow_dev.testing.examples import (
    EXPECT_PHASE,
    FAILING,
    load,
    original_forms,
    project_examples,
    upstream_examples,
)
from zen_flow_dev.testing.flows import chain, flow_manifest, job_step

# What an example ends in before anyone approves anything (the rest: Succeeded).
PAUSED = {"approval-gate.yaml"}
UPSTREAM_RUNNABLE = {"dag-flow.yaml", "simple-linear-flow.yaml"}  # the third needs a database
NEEDS_STORAGE = {"build-and-check.yaml"}  # run with a real S3 server in test_artifacts.py


def _stamp(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _container(command: str) -> dict[str, Any]:
    return {"name": "main", "image": "busybox:1.36", "command": ["sh", "-c", command]}


def _job(command: str, *, backoff_limit: int = 0, **job_spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "spec": {
            "backoffLimit": backoff_limit,
            **job_spec,
            "template": {"spec": {"restartPolicy": "Never", "containers": [_container(command)]}},
        },
    }


async def _provide_volumes(driver: FlowDriver, manifest: dict[str, Any], namespace: str) -> None:
    """A hostPath PersistentVolume pre-bound to each claim (no provisioner here), under the node's own
    directory, which the node's clean-up removes."""
    flow = manifest["metadata"]["name"]
    for template in (manifest["spec"].get("resourceTemplates") or {}).get("volumeClaimTemplates", []):
        claim = f"{flow}-{template['metadata']['name']}"
        await driver.kube.request(
            "POST",
            "/api/v1/persistentvolumes",
            body={
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": f"{namespace}-{claim}"},
                "spec": {
                    "capacity": {"storage": template["spec"]["resources"]["requests"]["storage"]},
                    "accessModes": template["spec"]["accessModes"],
                    "hostPath": {
                        "path": str(BASE / "volumes" / namespace / claim),
                        "type": "DirectoryOrCreate",
                    },
                    "claimRef": {"namespace": namespace, "name": claim},
                    "persistentVolumeReclaimPolicy": "Retain",
                },
            },
        )


async def test_every_example_runs_to_the_end_with_real_containers(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    files = [
        *(p for p in project_examples() if p.name not in NEEDS_STORAGE),
        *original_forms(),
        *(p for p in upstream_examples() if p.name in UPSTREAM_RUNNABLE),
    ]
    manifests: dict[str, tuple[dict[str, Any], Path]] = {}
    for path in files:
        manifest = load(path)
        manifest["metadata"]["namespace"] = namespace
        manifest["metadata"].setdefault("name", manifest["metadata"].pop("generateName", "flow-").rstrip("-"))
        manifests[manifest["metadata"]["name"]] = (manifest, path)
    start_controller()
    for manifest, _ in manifests.values():
        await _provide_volumes(driver, manifest, namespace)
    await asyncio.gather(*(driver.create(m) for m, _ in manifests.values()))

    async def settle(name: str, manifest: dict[str, Any], path: Path) -> dict[str, Any]:
        expected = (manifest["metadata"].get("annotations") or {}).get(EXPECT_PHASE) or (
            "Paused" if path.name in PAUSED else "Succeeded"
        )
        flow = await driver.wait_phase(namespace, name, {"Succeeded", "Failed", "Paused"}, timeout=240)
        assert flow["status"]["phase"] == expected, (path.name, flow["status"])
        if expected == "Paused":
            gates = [s for s, p in step_phases(flow).items() if p == "PendingApproval"]
            await driver.patch(
                namespace, name, {"metadata": {"annotations": {APPROVE_PREFIX + g: "true" for g in gates}}}
            )
            flow = await driver.wait_phase(namespace, name, {"Succeeded", "Failed"}, timeout=240)
        return flow

    results = await asyncio.gather(*(settle(n, m, p) for n, (m, p) in manifests.items()))
    for flow in results:
        name = flow["metadata"]["name"]
        assert flow["status"]["phase"] == "Succeeded", (name, flow["status"])
        # Only the steps whose command fails (`exit 1`) failed: allowFailure tolerated it.
        failing = FAILING.get(manifests[name][1].name, frozenset())
        assert {s for s, p in step_phases(flow).items() if p not in ("Succeeded", "Skipped")} == failing
    by_name = {f["metadata"]["name"]: f for f in results}
    # The parameters example really ran its command with the values substituted.
    params = by_name["parameters"]
    built_at = next(s for s in params["status"]["steps"] if s["name"] == "build")["outputs"]["parameters"][0]
    assert built_at["name"] == "built-at"
    assert built_at["value"].endswith("Z")


async def test_exit_codes_and_pod_failure_policy_are_the_containers_own(
    node_cluster: LocalCluster, namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    steps = [
        job_step("ok", template=_job("echo fine")),
        # podFailurePolicy FailJob on exit 3: the Job fails at once, though its backoffLimit allows 5 pods.
        job_step(
            "bad-input",
            "ok",
            template=_job("echo 'bad row 17' > /dev/termination-log; exit 3", backoff_limit=5),
        ),
    ]
    manifest = flow_manifest("codes", namespace, steps)
    manifest["spec"]["executionPolicy"] = {
        "podFailurePolicy": {
            "rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [3]}}]
        }
    }
    start_controller()
    await driver.create(manifest)
    flow = await driver.wait_phase(namespace, "codes", timeout=120)
    assert flow["status"]["phase"] == "Failed"
    assert step_phases(flow) == {"ok": "Succeeded", "bad-input": "Failed"}
    bad_job = next(
        j for j in await driver.jobs(namespace) if j["metadata"]["labels"].get(LABEL_STEP) == "bad-input"
    )
    failed = next(c for c in bad_job["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "PodFailurePolicy"
    assert "exit code 3" in failed["message"]
    pods = await driver.kube.request(
        "GET",
        f"/api/v1/namespaces/{namespace}/pods",
        query=[("labelSelector", f"job-name={bad_job['metadata']['name']}")],
    )
    assert len(pods["items"]) == 1  # not retried: FailJob
    terminated = pods["items"][0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["message"]) == (3, "bad row 17\n")


async def test_kubectl_logs_of_a_steps_pod_shows_what_it_printed(
    namespace: str, driver: FlowDriver, start_controller: StartController, kubectl: Any
) -> None:
    steps = [job_step("hello", template=_job("echo 'hello from step hello'; echo second line"))]
    start_controller()
    await driver.create(flow_manifest("logs", namespace, steps))
    flow = await driver.wait_phase(namespace, "logs", timeout=120)
    assert flow["status"]["phase"] == "Succeeded"
    job = flow["status"]["steps"][0]["jobRef"]["name"]
    out = kubectl("logs", "-n", namespace, f"job/{job}").stdout
    assert out == "hello from step hello\nsecond line\n"


async def test_sigkill_of_the_controller_mid_flow_runs_no_step_twice(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    length = 6
    manifest = chain("real-chain", namespace, length)
    for step in manifest["spec"]["steps"]:
        step["template"] = _job("sleep 1; echo done")
    first = start_controller()
    await driver.create(manifest)

    async def some_done() -> bool:
        flow = await driver.get(namespace, "real-chain")
        done = ((flow or {}).get("status") or {}).get("progress", {}).get("completedSteps", 0)
        return 2 <= done < length

    await wait_until(some_done, 120, interval=0.1, what="a few real steps done")
    first.kill()
    start_controller()
    flow = await driver.wait_phase(namespace, "real-chain", timeout=180)
    assert flow["status"]["phase"] == "Succeeded"
    steps = [j["metadata"]["labels"].get(LABEL_STEP) for j in await driver.jobs(namespace)]
    assert sorted(steps) == sorted(f"s{i}" for i in range(length))  # one Job per step: none ran twice


async def test_an_image_tag_the_registry_lacks_is_named_and_fails_the_step_at_its_bound(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    # The node's containerd pulls docker.io from the local registry only, which has no such tag: the
    # kubelet's ErrImagePull, then ImagePullBackOff. The step says so 30 s after its Job had no ready pod,
    # and fails at its 40 s bound.
    image = "busybox:zen-flow-absent"
    template = _job("true")
    template["spec"]["template"]["spec"]["containers"][0]["image"] = image
    manifest = flow_manifest(
        "pull", namespace, [job_step("a", template=template, podPendingTimeoutSeconds=40)]
    )
    start_controller()
    await driver.create(manifest)

    # A loaded node may still be making the pod's sandbox at a read (`ContainerCreating`, a pod on its
    # way: no StepPodStuck), so wait for the message that names the pull (or the step's end, to say so).
    pulls = ("pod waiting: container main ErrImagePull: ", "pod waiting: container main ImagePullBackOff: ")

    def shown(step: dict[str, Any]) -> bool:
        ended = StepPhase(step.get("phase", "Pending")).terminal
        return ended or (step.get("message") or "").startswith(pulls)

    async def named() -> dict[str, Any] | None:
        flow = await driver.get(namespace, "pull")
        steps = ((flow or {}).get("status") or {}).get("steps") or []
        return next((s for s in steps if shown(s)), None)

    step = await wait_until(named, 60, interval=0.5, what="the step's message naming the image pull")
    assert step["phase"] == "Running", step.get("message")
    cause, _, words = step["message"].removeprefix("pod waiting: container main ").partition(": ")
    assert cause in ("ErrImagePull", "ImagePullBackOff"), step["message"]
    assert "zen-flow-absent" in words  # the kubelet's own words, which name the image

    flow = await driver.wait_phase(namespace, "pull", timeout=60)
    assert flow["status"]["phase"] == "Failed"
    (failed,) = flow["status"]["steps"]
    assert failed["phase"] == "Failed"
    waited = _stamp(failed["completionTime"]) - _stamp(failed["startTime"])
    assert timedelta(seconds=40) <= waited <= timedelta(seconds=50)  # at the bound, never before it
    # The read at the bound's words (the kubelet may have reworded the pull since).
    said = failed["message"].removeprefix("PodPendingTimeout: no pod running for 40s; pod waiting: ")
    assert said.startswith(("container main ErrImagePull: ", "container main ImagePullBackOff: ")), said
    assert flow["status"]["message"].startswith("step a failed: PodPendingTimeout: no pod running for 40s")

    # Events go out after the status write that ends the step (their own queue): wait for the last one.
    async def warned() -> dict[str, str] | None:
        events = await driver.kube.request(
            "GET",
            f"/api/v1/namespaces/{namespace}/events",
            query=[("fieldSelector", "involvedObject.name=pull")],
        )
        said = {e["reason"]: e["message"] for e in events["items"] if e["type"] == "Warning"}
        return said if "PodPendingTimeout" in said else None

    warnings = await wait_until(warned, 30, interval=0.5, what="the PodPendingTimeout Warning event")
    assert warnings["StepPodStuck"] == f"step a: {step['message']}"
    assert warnings["PodPendingTimeout"].startswith("step a: PodPendingTimeout: no pod running for 40s")
