"""The controller against a bare kube-apiserver: the test plays the Job controller.

In this profile no Job controller and no kubelet run, so the Jobs zen-flow creates never start. The test
finishes them by writing valid terminal conditions to their /status (`zen_flow_dev.testing.jobstatus`) and
checks what the controller creates, and when. Each test runs its own `zen-flow run` process watching only
the test's namespace.

"The controller has provably reconciled" is always read from the flow's status: the controller writes it
after the creates of the same reconcile, so once the status shows a step Running, every Job that
reconcile created is already in the API, and a re-list that still lacks a Job means it was not created.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable
from typing import Any

import pytest
from controller_steps import WAIT, conditions, finish, job_of, jobs_by_step, wait_steps

from zen_flow.api.constants import (
    API_VERSION,
    KIND,
    LABEL_FLOW,
    LABEL_MANAGED_BY,
    LABEL_STEP,
    MANAGED_BY,
)
from zen_flow.core.naming import label_value
from zen_flow.kube.jobs import JOBS
from zen_flow_dev.testing.controller import ControllerProcess, StartController
from zen_flow_dev.testing.driver import FlowDriver, step_phases, wait_until
from zen_flow_dev.testing.flows import flow_manifest, job_step

pytestmark = pytest.mark.integration

QUIET_WINDOW = 2.0  # seconds a waiting flow is watched for API writes


# --- fixtures -------------------------------------------------------------------------------------


# --- tests ----------------------------------------------------------------------------------------


async def test_diamond_creates_jobs_in_dependency_order(
    namespace: str, driver: FlowDriver, start_controller: StartController, kubectl: Any
) -> None:
    steps = [job_step("a"), job_step("b", "a"), job_step("c", "a"), job_step("d", "b", "c")]
    start_controller()
    await driver.create(flow_manifest("diamond", namespace, steps))

    await wait_steps(
        driver, namespace, "diamond", {"a": "Running", "b": "Pending", "c": "Pending", "d": "Pending"}
    )
    assert sorted(await jobs_by_step(driver, namespace)) == ["a"]

    await finish(driver, namespace, "a")
    await wait_steps(
        driver, namespace, "diamond", {"a": "Succeeded", "b": "Running", "c": "Running", "d": "Pending"}
    )
    assert sorted(await jobs_by_step(driver, namespace)) == ["a", "b", "c"]

    await finish(driver, namespace, "b")
    # The controller saw b finish (it wrote so) and still did not start d: c is not done.
    await wait_steps(driver, namespace, "diamond", {"b": "Succeeded", "c": "Running", "d": "Pending"})
    assert sorted(await jobs_by_step(driver, namespace)) == ["a", "b", "c"]

    await finish(driver, namespace, "c")
    await wait_steps(driver, namespace, "diamond", {"c": "Succeeded", "d": "Running"})
    assert sorted(await jobs_by_step(driver, namespace)) == ["a", "b", "c", "d"]

    await finish(driver, namespace, "d")
    flow = await driver.wait_phase(namespace, "diamond", timeout=WAIT)
    status = flow["status"]
    assert status["phase"] == "Succeeded", status
    assert set(step_phases(flow).values()) == {"Succeeded"}
    assert status["progress"]["completedSteps"] == status["progress"]["totalSteps"] == 4
    assert conditions(flow)["Complete"]["status"] == "True"
    assert all(len(jobs) == 1 for jobs in (await jobs_by_step(driver, namespace)).values())
    waited = kubectl(
        "wait", "-n", namespace, "--for=condition=Complete", "jobflow/diamond", "--timeout=10s", check=False
    )
    assert waited.returncode == 0, waited.stderr

    # The ended flow re-applied with a changed TTL: kubectl wait goes by the condition's own
    # observedGeneration, which must follow the edit or the wait runs to its timeout.
    edited = await driver.patch(
        namespace, "diamond", {"spec": {"executionPolicy": {"ttlSecondsAfterFinished": 900}}}
    )
    generation = edited["metadata"]["generation"]
    assert generation == flow["metadata"]["generation"] + 1

    async def acknowledged() -> bool:
        stored = await driver.get(namespace, "diamond")
        return ((stored or {}).get("status") or {}).get("observedGeneration") == generation

    await wait_until(acknowledged, timeout=WAIT)
    waited = kubectl(
        "wait", "-n", namespace, "--for=condition=Complete", "jobflow/diamond", "--timeout=10s", check=False
    )
    assert waited.returncode == 0, waited.stderr


async def test_failed_job_fails_the_flow_and_skips_dependents(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    controller = start_controller()
    await driver.create(flow_manifest("breaks", namespace, [job_step("a"), job_step("b", "a")]))
    await wait_steps(driver, namespace, "breaks", {"a": "Running", "b": "Pending"})

    await finish(driver, namespace, "a", ok=False)
    flow = await driver.wait_phase(namespace, "breaks", timeout=WAIT)
    assert flow["status"]["phase"] == "Failed", flow["status"]
    assert step_phases(flow) == {"a": "Failed", "b": "Skipped"}
    assert conditions(flow)["Failed"]["status"] == "True"
    assert sorted(await jobs_by_step(driver, namespace)) == ["a"]
    # Not even created and deleted again in between: the controller made exactly one Job.
    assert controller.metric("zen_flow_job_creates_total") == 1


@pytest.mark.parametrize(
    ("setting", "routine"), [((), False), (("--step-events", "all"), True)], ids=["notable", "all"]
)
async def test_step_events_are_the_notable_ones_unless_all_are_asked_for(
    namespace: str,
    driver: FlowDriver,
    start_controller: StartController,
    kubectl: Any,
    setting: tuple[str, ...],
    routine: bool,
) -> None:
    start_controller(extra_args=setting)
    await driver.create(flow_manifest("told", namespace, [job_step("a"), job_step("b", "a")]))
    await wait_steps(driver, namespace, "told", {"a": "Running"})
    await finish(driver, namespace, "a", ok=False)
    await driver.wait_phase(namespace, "told", timeout=WAIT)

    async def reasons() -> list[str] | None:  # Events are sent after the status write that caused them
        items = json.loads(kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
        found = sorted(e["reason"] for e in items if e["involvedObject"]["name"] == "told")
        return found if "FlowFailed" in found else None

    found = await wait_until(reasons, timeout=WAIT)
    assert {"FlowStarted", "StepFailed", "StepSkipped", "FlowFailed"} <= set(found)
    assert ("StepStarted" in found) is routine


async def test_created_jobs_carry_the_contract(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    # Long names: the naive `<flow>-<step>` would be 113 characters.
    flow_name = "contract-" + "f" * 54
    step_name = "step-" + "s" * 44
    start_controller()
    created = await driver.create(flow_manifest(flow_name, namespace, [job_step(step_name)]))
    flow = await wait_steps(driver, namespace, flow_name, {step_name: "Running"})
    job = await job_of(driver, namespace, step_name)
    meta = job["metadata"]

    assert len(meta["name"]) <= 63, meta["name"]
    ours = {
        LABEL_FLOW: label_value(flow_name),
        LABEL_STEP: step_name,
        LABEL_MANAGED_BY: MANAGED_BY,
    }
    assert ours.items() <= meta["labels"].items()
    assert ours.items() <= job["spec"]["template"]["metadata"]["labels"].items()
    owners = [o for o in meta.get("ownerReferences", []) if o.get("controller")]
    assert len(owners) == 1, meta.get("ownerReferences")
    owner = owners[0]
    assert (owner["apiVersion"], owner["kind"], owner["name"]) == (API_VERSION, KIND, flow_name)
    assert owner["uid"] == created["metadata"]["uid"]
    ref = flow["status"]["steps"][0]["jobRef"]
    assert (ref["name"], ref["uid"]) == (meta["name"], meta["uid"])


async def test_a_template_without_restart_policy_runs_with_the_flows_pod_failure_policy(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    # Admission counts an unset restartPolicy as Never; the Job API has no default for it and refuses a
    # Job without one, so the step runs only if the Job is created with Never (and the policy with it).
    step = job_step("a")
    del step["template"]["spec"]["template"]["spec"]["restartPolicy"]
    policy = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]}
    start_controller()
    manifest = flow_manifest("unset", namespace, [step], executionPolicy={"podFailurePolicy": policy})
    await driver.create(manifest)
    await wait_steps(driver, namespace, "unset", {"a": "Running"})
    job = await job_of(driver, namespace, "a")
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert job["spec"]["podFailurePolicy"]["rules"][0]["action"] == "FailJob"


async def test_step_defaults_reach_every_jobs_pods_under_the_steps_own_values(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    queue = "kueue.x-k8s.io/queue-name"
    defaults = {
        "metadata": {"labels": {queue: "team-a"}},  # zen-flow's own keys are refused here (admission)
        "podSpec": {
            "serviceAccountName": "runner",
            "nodeSelector": {"pool": "batch", "kubernetes.io/os": "linux"},
            "tolerations": [{"key": "batch", "operator": "Exists", "effect": "NoSchedule"}],
            "imagePullSecrets": [{"name": "registry"}],
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000},
        },
        "activeDeadlineSeconds": 3600,
    }
    own = job_step("own", metadata={"labels": {queue: "team-b"}})
    own["template"]["spec"]["template"]["spec"].update(
        serviceAccountName="builder", nodeSelector={"pool": "gpu"}, tolerations=[]
    )
    start_controller()
    await driver.create(flow_manifest("defaults", namespace, [job_step("plain"), own], stepDefaults=defaults))
    await wait_steps(driver, namespace, "defaults", {"plain": "Running", "own": "Running"})
    plain = await job_of(driver, namespace, "plain")
    mine = await job_of(driver, namespace, "own")

    # As the apiserver stored them: the CRD kept every field, and it took the Jobs as they were built.
    assert plain["metadata"]["labels"][queue] == "team-a"
    assert plain["metadata"]["labels"][LABEL_FLOW] == "defaults"  # beside zen-flow's own labels
    assert plain["spec"]["activeDeadlineSeconds"] == 3600
    pod = plain["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "runner"
    assert pod["nodeSelector"] == {"pool": "batch", "kubernetes.io/os": "linux"}
    assert pod["tolerations"] == defaults["podSpec"]["tolerations"]
    assert pod["imagePullSecrets"] == [{"name": "registry"}]
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 1000}
    assert plain["spec"]["template"]["metadata"]["labels"][queue] == "team-a"

    assert mine["metadata"]["labels"][queue] == "team-b"
    pod = mine["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "builder"
    assert pod["nodeSelector"] == {"pool": "gpu", "kubernetes.io/os": "linux"}
    assert "tolerations" not in pod  # the step's own empty list (the apiserver drops it)
    assert pod["imagePullSecrets"] == [{"name": "registry"}]


async def test_a_flow_recreated_under_its_name_waits_for_the_old_flows_jobs_to_go(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    """`kubectl delete jf f && kubectl apply -f f.yaml`: the old flow's Jobs, with the same names, stay
    until the garbage collector removes them (none runs in this profile: the test plays it). The new
    flow once took the old Job for its own and failed its step as "deleted outside zen-flow"."""
    controller = start_controller()
    manifest = flow_manifest("again", namespace, [job_step("a"), job_step("b", "a")])
    await driver.create(manifest)
    await wait_steps(driver, namespace, "again", {"a": "Running"})
    old = await job_of(driver, namespace, "a")
    await driver.delete(namespace, "again")
    await wait_until(lambda: _gone(driver, namespace, "again"), WAIT, what="the flow deleted")
    await driver.create(manifest)

    async def refused_once() -> float | None:
        return controller.metric("zen_flow_job_creates_total", result="taken") or None

    await wait_until(refused_once, WAIT, what="a create of the old Job's name refused")
    flow = await driver.get(namespace, "again")
    assert flow is not None
    assert step_phases(flow).get("a") in (None, "Pending")  # waiting, not failed
    await driver.jobs_api.delete(namespace, old["metadata"]["name"])  # the garbage collector's turn

    await wait_steps(driver, namespace, "again", {"a": "Running"})
    new = await job_of(driver, namespace, "a")
    assert new["metadata"]["name"] == old["metadata"]["name"]
    assert new["metadata"]["ownerReferences"][0]["uid"] == flow["metadata"]["uid"]
    await finish(driver, namespace, "a")
    await wait_steps(driver, namespace, "again", {"a": "Succeeded", "b": "Running"})


async def _gone(driver: FlowDriver, namespace: str, name: str) -> bool | None:
    return (await driver.get(namespace, name)) is None or None


async def test_restarted_controller_adopts_jobs_instead_of_duplicating_them(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    """Two flows whose first Job exists when the controller stops: `kept` with its status intact, `lost`
    with its status gone, as after a crash between the Job create and the status write."""
    first = start_controller()
    for name in ("kept", "lost"):
        await driver.create(
            flow_manifest(name, namespace, [job_step(f"{name}-a"), job_step(f"{name}-b", f"{name}-a")])
        )
    originals: dict[str, str] = {}
    created: dict[str, str] = {}
    for name in ("kept", "lost"):
        await wait_steps(driver, namespace, name, {f"{name}-a": "Running", f"{name}-b": "Pending"})
        job = await job_of(driver, namespace, f"{name}-a")
        originals[name], created[name] = job["metadata"]["uid"], job["metadata"]["creationTimestamp"]
    first.stop()  # SIGTERM: an orderly stop, as in a rolling update
    await driver.kube.request(
        "PATCH",
        f"/apis/{API_VERSION}/namespaces/{namespace}/jobflows/lost/status",
        body={"status": None},
        content_type="application/merge-patch+json",
    )
    assert not (await driver.get(namespace, "lost") or {}).get("status")

    second = start_controller()
    # `lost` gets its status back only from a reconcile, which must find the existing Job by its owner.
    flow = await wait_steps(driver, namespace, "lost", {"lost-a": "Running", "lost-b": "Pending"})
    assert flow["status"]["steps"][0]["jobRef"]["uid"] == originals["lost"]
    # It started when its Job was created, not when the second controller took the Job over.
    assert flow["status"]["startTime"] == created["lost"]
    assert flow["status"]["steps"][0]["startTime"] == created["lost"]
    jobs = await jobs_by_step(driver, namespace)
    assert {step: [j["metadata"]["uid"] for j in js] for step, js in jobs.items()} == {
        "kept-a": [originals["kept"]],
        "lost-a": [originals["lost"]],
    }
    assert second.metric("zen_flow_job_creates_total", result="created") == 0

    for name in ("kept", "lost"):
        await finish(driver, namespace, f"{name}-a")
        await wait_steps(driver, namespace, name, {f"{name}-a": "Succeeded", f"{name}-b": "Running"})
        await finish(driver, namespace, f"{name}-b")
        flow = await driver.wait_phase(namespace, name, timeout=WAIT)
        assert flow["status"]["phase"] == "Succeeded", flow["status"]
    jobs = await jobs_by_step(driver, namespace)
    assert {step: len(js) for step, js in jobs.items()} == {
        "kept-a": 1,
        "kept-b": 1,
        "lost-a": 1,
        "lost-b": 1,
    }
    assert second.metric("zen_flow_job_creates_total", result="created") == 2
    # Every request is timed, the apiserver's time apart from the wait for a token.
    creates = second.metric("zen_flow_api_requests_total", verb="create", resource="jobs")
    for timed in ("zen_flow_api_request_duration_seconds_count", "zen_flow_api_request_wait_seconds_count"):
        assert second.metric(timed, verb="create", resource="jobs") == creates == 2


def _write_counts(controller: ControllerProcess) -> dict[str, float]:
    requests = controller.metric("zen_flow_api_requests_total")
    return {
        "status patches": controller.metric("zen_flow_status_patches_total", result="written"),
        "job creates": controller.metric("zen_flow_job_creates_total"),
        # Watches (re)open on their own schedule; every other request is reconcile or event traffic.
        "api requests": requests - controller.metric("zen_flow_api_requests_total", verb="watch"),
    }


async def test_a_waiting_flow_costs_no_api_writes(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    controller = start_controller()
    await driver.create(flow_manifest("idle", namespace, [job_step("a")]))
    await wait_steps(driver, namespace, "idle", {"a": "Running"})
    job = await job_of(driver, namespace, "a")

    # Quiescence: the start's follow-up reconciles (the Job's add event, our own status event) and the
    # StepStarted event write are done once two reads a short while apart agree.
    samples: list[dict[str, float]] = []

    async def settled() -> dict[str, float] | None:
        samples.append(_write_counts(controller))
        return samples[-1] if len(samples) >= 2 and samples[-1] == samples[-2] else None

    baseline = await wait_until(settled, WAIT, interval=0.5, what="controller metrics settle")
    assert baseline["job creates"] == 1
    assert baseline["status patches"] >= 1
    quiet_since = time.monotonic()

    # Provoke reconciles that have nothing to do: unrelated changes to the Job and the flow.
    async def reconciled_after(change: Awaitable[object]) -> None:
        before = controller.metric("zen_flow_reconcile_total")  # read before the change, not after
        await change

        async def moved() -> bool:
            return controller.metric("zen_flow_reconcile_total") > before

        await wait_until(moved, WAIT, what="a reconcile of the poked flow")

    # The Job's change wakes the flow too; only the flow's changes are counted, each on its own, since two
    # changes close together may merge into one reconcile.
    poke = {"metadata": {"annotations": {"zenflow.test/poke": "1"}}}
    job_path = JOBS.path(namespace, job["metadata"]["name"])
    await driver.kube.request("PATCH", job_path, body=poke, content_type="application/merge-patch+json")
    await reconciled_after(
        driver.patch(namespace, "idle", {"metadata": {"labels": {"zenflow.test/poke": "1"}}})
    )
    await reconciled_after(driver.patch(namespace, "idle", poke))

    async def observed() -> bool:
        # The observation window, not a wait for an outcome: writes a timer would make (a requeue loop,
        # a resync that writes) must have had QUIET_WINDOW seconds to show up.
        return time.monotonic() - quiet_since >= QUIET_WINDOW

    await wait_until(observed, WAIT, what="a quiet window")
    after = _write_counts(controller)
    assert baseline["api requests"] > 0  # the counters really count: the start itself made requests
    assert after == baseline
    assert step_phases(await driver.get(namespace, "idle") or {}) == {"a": "Running"}


INVALID_FLOWS = {
    # The CRD's CEL does not resolve step names, and a `when` is only compiled by the webhook: with no
    # webhook in front of the apiserver both reach the controller, which must fail them, not crash.
    "unknown-dependency": (
        [job_step("a"), job_step("b", "a", "ghost")],
        "spec.steps[1].dependencies[1]",
    ),
    "when-does-not-compile": (
        [job_step("a"), job_step("b", "a", when="steps.a.phase == (")],
        "spec.steps[1].when",
    ),
    # spec.steps is an atomic list (a keyed one made every status write ~30 % dearer): unique names are
    # the webhook's rule and, without it, the controller's.
    "duplicate-step-names": (
        [job_step("a"), job_step("b", "a"), job_step("a")],
        "spec.steps[2].name: Duplicate value",
    ),
}


async def test_invalid_flows_fail_with_a_condition_and_the_controller_survives(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    controller = start_controller()
    for name, (steps, _) in INVALID_FLOWS.items():
        await driver.create(flow_manifest(name, namespace, steps))
    for name, (_, field) in INVALID_FLOWS.items():
        flow = await driver.wait_phase(namespace, name, timeout=WAIT)
        status = flow["status"]
        assert status["phase"] == "Failed", status
        valid = conditions(flow)["Valid"]
        assert (valid["status"], valid["reason"]) == ("False", "InvalidSpec"), valid
        assert field in valid["message"], valid["message"]
        assert set(step_phases(flow).values()) == {"Skipped"}, status
    assert await driver.jobs(namespace) == []
    assert controller.alive, controller.log_tail()
    assert controller.get("/healthz")[0] == 200


async def test_sigterm_stops_the_controller_cleanly(start_controller: StartController) -> None:
    controller = start_controller()
    code = controller.stop()
    assert code == 0, controller.log_tail()
    assert not any('"controller crashed"' in line for line in controller.log_lines())


async def test_readiness_says_why_the_caches_cannot_sync(
    kubeconfig: Any, tmp_path: Any, namespace: str
) -> None:
    """A token file that is missing (a bad mount) must show up as the reason the controller is not
    ready, not as a start-up that never ends."""
    import yaml

    config = yaml.safe_load(kubeconfig.read_text())
    for user in config["users"]:
        user["user"] = {"tokenFile": str(tmp_path / "no-such-token")}
    broken = tmp_path / "kubeconfig"
    broken.write_text(yaml.safe_dump(config))
    controller = ControllerProcess(broken, tmp_path / "controller.log", namespaces=[namespace]).start()
    try:

        async def reason() -> str | None:
            status, body = controller.get("/readyz")
            return body if status == 503 and "last error" not in body and "no-such-token" in body else None

        body = await wait_until(reason, WAIT, what="/readyz naming the missing token file")
    finally:
        controller.stop()
    assert "informer-jobflows-synced: cache not synced yet: token file" in body
    assert "no-such-token" in body


async def test_a_job_quota_holds_back_one_step_and_the_flow_says_why(
    namespace: str, driver: FlowDriver, start_controller: StartController, kubectl: Any
) -> None:
    """A `count/jobs.batch` ResourceQuota of 1: the real apiserver's quota admission refuses the second
    Job (403 `exceeded quota`). The first is recorded Running, the refused step waits Pending saying why,
    condition JobCreateFailing says so, and once the quota is raised the step starts and it clears."""

    def quota(jobs: int) -> None:
        # No quota controller runs in this profile: the test sets the quota's status as it would (the
        # admission plugin enforces status.hard, and counts each Job it admits into status.used).
        hard = {"count/jobs.batch": str(jobs)}
        spec = {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "jobs"},
            "spec": {"hard": hard},
        }
        kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(spec))
        status = (
            {"status": {"hard": hard}}
            if jobs > 1
            else {"status": {"hard": hard, "used": {"count/jobs.batch": "0"}}}
        )
        kubectl("patch", "resourcequota", "jobs", "-n", namespace, "--subresource=status", "--type=merge",
                "-p", json.dumps(status))  # fmt: skip

    quota(1)
    start_controller()
    await driver.create(flow_manifest("quota", namespace, [job_step("a"), job_step("b")]))

    async def refused() -> dict[str, Any] | None:
        flow = await driver.get(namespace, "quota")
        cond = conditions(flow).get("JobCreateFailing") if flow and flow.get("status") else None
        return flow if cond is not None and cond["status"] == "True" else None

    flow = await wait_until(refused, WAIT, what="condition JobCreateFailing")
    steps = {s["name"]: s for s in flow["status"]["steps"]}
    (ran,) = [n for n, s in steps.items() if s["phase"] == "Running"]
    (held,) = [n for n, s in steps.items() if s["phase"] == "Pending"]
    assert steps[held]["message"].startswith("Job create refused: 403 ")
    assert "exceeded quota" in steps[held]["message"]
    cond = conditions(flow)["JobCreateFailing"]
    assert cond["reason"] == "CreateForbidden"
    assert f"step {held}" in cond["message"]
    assert flow["status"]["phase"] == "Running"
    assert sorted(await jobs_by_step(driver, namespace)) == [ran]

    quota(2)
    flow = await wait_steps(driver, namespace, "quota", {ran: "Running", held: "Running"})
    cond = conditions(flow)["JobCreateFailing"]
    assert (cond["status"], cond["reason"]) == ("False", "JobsCreated")
