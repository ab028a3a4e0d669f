"""Child flows against a real kube-apiserver and controller: a parent's `type: Flow` step creates a child
JobFlow from a JobFlowTemplate (the shipped example, examples/child-flows/), owned by the parent; this
tier runs no webhook, so the controller expands the child as any flow naming a template. The test plays
the Job controller. The child's two Jobs complete, the child Succeeds, the parent's step mirrors it and
its next step reads the child's output; a child that fails fails its step, naming the child's step; and
the child carries the controller ownerReference the garbage collector deletes it by (none runs in this
tier: the e2e tier has one)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from controller_steps import WAIT, job_of, wait_steps

from zen_flow.api.constants import LABEL_DEPTH, LABEL_PARENT, LABEL_PARENT_STEP
from zen_flow_dev.testing.controller import StartController
from zen_flow_dev.testing.driver import FlowDriver, wait_until
from zen_flow_dev.testing.jobstatus import complete_job, fail_job

pytestmark = pytest.mark.integration

FOLDER = Path(__file__).resolve().parents[2] / "examples" / "child-flows"


def example(kind: str) -> dict[str, Any]:
    for path in sorted(FOLDER.glob("*.yaml")):
        doc: dict[str, Any] = yaml.safe_load(path.read_text())
        if doc["kind"] == kind:
            return doc
    raise AssertionError(f"no {kind} in {FOLDER}")


async def child_name(driver: FlowDriver, namespace: str, parent: str, step: str) -> str:
    flow = await wait_steps(driver, namespace, parent, {step: "Running"})
    ref = next(s["jobRef"] for s in flow["status"]["steps"] if s["name"] == step)
    assert ref["kind"] == "JobFlow"
    return str(ref["name"])


async def setup(namespace: str, kubectl: Any, driver: FlowDriver, start: StartController) -> dict[str, Any]:
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(example("JobFlowTemplate")))
    parent = example("JobFlow")
    parent["metadata"]["namespace"] = namespace
    created = await driver.create(parent)
    start()
    return created


async def test_a_flow_step_runs_its_child_to_success_and_the_next_step_reads_its_output(
    namespace: str, kubectl: Any, driver: FlowDriver, start_controller: StartController
) -> None:
    parent = await setup(namespace, kubectl, driver, start_controller)
    child = await child_name(driver, namespace, "release", "package")
    stored = await driver.get(namespace, child)
    assert stored is not None
    labels = stored["metadata"]["labels"]
    assert (labels[LABEL_PARENT], labels[LABEL_PARENT_STEP], labels[LABEL_DEPTH]) == (
        "release",
        "package",
        "1",
    )
    [owner] = stored["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("JobFlow", "release", parent["metadata"]["uid"])
    assert owner["controller"] is True
    assert owner["blockOwnerDeletion"] is True  # the garbage collector deletes it with its parent

    # Expanded from the template (by the controller: no webhook here), with the parent's argument.
    await wait_steps(driver, namespace, child, {"compile": "Running", "archive": "Pending"})
    expanded = await driver.get(namespace, child)
    assert expanded is not None
    assert [(p["name"], p["value"]) for p in expanded["spec"]["arguments"]["parameters"]] == [
        ("version", "1.4.0")
    ]
    compile_job = await job_of(driver, namespace, "compile", flow=child)
    await complete_job(driver.kube, namespace, compile_job["metadata"]["name"])
    await wait_steps(driver, namespace, child, {"compile": "Succeeded", "archive": "Running"})
    archive = await job_of(driver, namespace, "archive", flow=child)
    await complete_job(driver.kube, namespace, archive["metadata"]["name"], message="sha256:feed")
    done = await driver.wait_phase(namespace, child, ("Succeeded",), timeout=WAIT)
    assert done["status"]["phase"] == "Succeeded"

    # The parent's step mirrors the child, keeps its output, and the next step reads it.
    after = await wait_steps(driver, namespace, "release", {"package": "Succeeded", "publish": "Running"})
    package = next(s for s in after["status"]["steps"] if s["name"] == "package")
    assert package["outputs"]["parameters"] == [{"name": "digest", "value": "sha256:feed"}]
    publish = await job_of(driver, namespace, "publish", flow="release")
    env = publish["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "ZF_PARAM_DIGEST", "value": "sha256:feed"} in env
    await complete_job(driver.kube, namespace, publish["metadata"]["name"])
    ended = await driver.wait_phase(namespace, "release", ("Succeeded",), timeout=WAIT)
    assert ended["status"]["progressSummary"] == "2/2"


async def test_a_failing_child_fails_its_step_naming_the_childs_failed_step(
    namespace: str, kubectl: Any, driver: FlowDriver, start_controller: StartController
) -> None:
    await setup(namespace, kubectl, driver, start_controller)
    child = await child_name(driver, namespace, "release", "package")
    await wait_steps(driver, namespace, child, {"compile": "Running"})
    compile_job = await job_of(driver, namespace, "compile", flow=child)
    await fail_job(driver.kube, namespace, compile_job["metadata"]["name"])
    failed = await driver.wait_phase(namespace, "release", ("Failed",), timeout=WAIT)
    steps = {s["name"]: s for s in failed["status"]["steps"]}
    assert steps["package"]["phase"] == "Failed"
    assert steps["package"]["message"].startswith(
        f"child flow {child} failed: step compile failed: Job failed"
    )
    assert steps["publish"]["phase"] == "Skipped"


async def test_a_flow_step_naming_a_missing_template_fails_naming_it(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    parent = example("JobFlow")
    parent["metadata"]["namespace"] = namespace
    await driver.create(parent)  # no template applied
    start_controller()
    failed = await driver.wait_phase(namespace, "release", ("Failed",), timeout=WAIT)
    package = next(s for s in failed["status"]["steps"] if s["name"] == "package")
    assert package["phase"] == "Failed"
    assert 'spec.templateRef.name: Not found: "package"' in package["message"]


async def test_stopping_the_parent_deletes_its_running_child(
    namespace: str, kubectl: Any, driver: FlowDriver, start_controller: StartController
) -> None:
    await setup(namespace, kubectl, driver, start_controller)
    child = await child_name(driver, namespace, "release", "package")
    kubectl("annotate", "jf", "release", "-n", namespace, "workflow.kube-zen.io/stop=true")
    await driver.wait_phase(namespace, "release", ("Failed",), timeout=WAIT)

    async def gone() -> bool | None:
        found = await driver.get(namespace, child)
        return True if found is None or found["metadata"].get("deletionTimestamp") else None

    await wait_until(gone, WAIT, what=f"child {child} deleted")


async def finally_family(
    namespace: str, kubectl: Any, driver: FlowDriver, policy: dict[str, Any] | None = None
) -> None:
    """The example parent with a finally step `cleanup` (and `policy`), its child's template with a
    finally step `tidy`."""
    template = example("JobFlowTemplate")
    tidy = copy.deepcopy(template["spec"]["steps"][0]["template"])
    tidy["spec"]["template"]["spec"]["containers"][0]["command"] = ["sh", "-c", "echo tidying"]
    template["spec"]["steps"].append({"name": "tidy", "finally": True, "template": tidy})
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(template))
    parent = example("JobFlow")
    parent["metadata"]["namespace"] = namespace
    publish = parent["spec"]["steps"][1]
    parent["spec"]["steps"].append({"name": "cleanup", "finally": True, "template": publish["template"]})
    if policy is not None:
        parent["spec"]["executionPolicy"] = policy
    await driver.create(parent)


async def asked_to_stop(driver: FlowDriver, namespace: str, child: str, timeout: float) -> dict[str, Any]:
    """The child once it carries `workflow.kube-zen.io/stop: RunFinally`."""

    async def asked() -> dict[str, Any] | None:
        found = await driver.get(namespace, child)
        stop = found["metadata"].get("annotations", {}).get("workflow.kube-zen.io/stop") if found else None
        return found if stop == "RunFinally" else None

    found: dict[str, Any] = await wait_until(
        asked, timeout, what=f"child {child} asked to stop with RunFinally"
    )
    return found


async def child_tidies_up(driver: FlowDriver, namespace: str, child: str) -> dict[str, Any]:
    """The stopped child stops compile and runs its finally step `tidy`, which succeeds: the child ended."""
    stopping = await wait_steps(driver, namespace, child, {"compile": "Failed", "tidy": "Running"})
    assert stopping["metadata"].get("deletionTimestamp") is None
    tidy_job = await job_of(driver, namespace, "tidy", flow=child)
    await complete_job(driver.kube, namespace, tidy_job["metadata"]["name"])
    ended = await driver.wait_phase(namespace, child, ("Failed",), timeout=WAIT)
    assert next(s for s in ended["status"]["steps"] if s["name"] == "tidy")["phase"] == "Succeeded"
    return ended


async def parent_cleans_up(driver: FlowDriver, namespace: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The parent's step `package` has failed and its finally step `cleanup` runs; it succeeds: (the
    step, the parent's Failed condition)."""
    after = await wait_steps(driver, namespace, "release", {"package": "Failed", "cleanup": "Running"})
    package = next(s for s in after["status"]["steps"] if s["name"] == "package")
    cleanup = await job_of(driver, namespace, "cleanup", flow="release")
    await complete_job(driver.kube, namespace, cleanup["metadata"]["name"])
    done = await driver.wait_phase(namespace, "release", ("Failed",), timeout=WAIT)
    return package, next(c for c in done["status"]["conditions"] if c["type"] == "Failed")


async def test_at_the_parents_finally_grace_the_child_runs_its_own_finally_step(
    namespace: str, kubectl: Any, driver: FlowDriver, start_controller: StartController
) -> None:
    # The parent keeps the last 100 s of its 120 s for its finally steps: 20 s in, its Flow step's child
    # is not deleted but patched `stop: RunFinally` (a merge patch under its UID), so it stops compile
    # and runs its own finally step; then the parent's step ends for the grace and its cleanup runs.
    await finally_family(
        namespace, kubectl, driver, {"activeDeadlineSeconds": 120, "finallyGraceSeconds": 100}
    )
    start_controller()
    child = await child_name(driver, namespace, "release", "package")
    await wait_steps(driver, namespace, child, {"compile": "Running"})
    await asked_to_stop(driver, namespace, child, WAIT + 20)
    await child_tidies_up(driver, namespace, child)
    package, failed = await parent_cleans_up(driver, namespace)
    assert package["message"].startswith("flow deadline: the last 100s of activeDeadlineSeconds (120s)")
    assert failed["reason"] == "DeadlineExceeded"
    assert await driver.get(namespace, child) is not None  # it ran its cleanup; never deleted


async def test_a_graceful_stop_of_the_parent_runs_its_childs_finally_step_then_its_own(
    namespace: str, kubectl: Any, driver: FlowDriver, start_controller: StartController
) -> None:
    # `zen-flow stop --run-finally release`: the running child is not deleted (its cleanup would be lost)
    # but patched `stop: RunFinally` itself; the parent's step runs on until the child has tidied up,
    # then fails for the stop, the parent's cleanup runs, and the parent ends Stopped.
    await finally_family(namespace, kubectl, driver)
    start_controller()
    child = await child_name(driver, namespace, "release", "package")
    await wait_steps(driver, namespace, child, {"compile": "Running"})
    kubectl(
        "annotate",
        "jf",
        "release",
        "-n",
        namespace,
        "workflow.kube-zen.io/stop=RunFinally",
        "workflow.kube-zen.io/stopped-by=alice",  # the webhook's, in a tier without one
    )
    stopped = await asked_to_stop(driver, namespace, child, WAIT)
    by = stopped["metadata"]["annotations"]["workflow.kube-zen.io/stopped-by"]
    assert by == "parent flow release (stopped by alice)"  # no webhook: the controller's words

    async def held() -> dict[str, Any] | None:  # the stop recorded in the Running step's message
        found = await driver.get(namespace, "release")
        steps = {s["name"]: s for s in (found or {}).get("status", {}).get("steps", [])}
        package = steps.get("package", {})
        recorded = (package.get("message") or "").startswith("stopped by alice (its child flow is stopping")
        return found if package.get("phase") == "Running" and recorded else None

    holding = await wait_until(held, WAIT, what="package held for its child's stop")
    assert next(s for s in holding["status"]["steps"] if s["name"] == "cleanup")["phase"] == "Pending"
    ended = await child_tidies_up(driver, namespace, child)
    child_failed = next(c for c in ended["status"]["conditions"] if c["type"] == "Failed")
    assert child_failed["reason"] == "Stopped"
    package, failed = await parent_cleans_up(driver, namespace)
    assert package["message"].startswith(f"stopped by alice; child flow {child} was stopped by parent flow")
    assert (failed["reason"], failed["message"]) == ("Stopped", "stopped by alice")
    assert await driver.get(namespace, child) is not None  # it ran its cleanup; never deleted
