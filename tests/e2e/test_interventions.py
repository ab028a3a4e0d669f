"""Stop and rerun on the full cluster, where Jobs really run (kwok pods): a flow whose step fails on its
first attempt is rerun from that step and succeeds, keeping what succeeded; a running flow stopped
deletes its Job and ends Failed; one stopped with RunFinally runs its finally step first."""

from __future__ import annotations

from typing import Any

from zen_flow.api.constants import ANNOTATION_RETRY, ANNOTATION_STOP, LABEL_STEP, STOP_RUN_FINALLY
from zen_flow_dev.testing.controller import StartController
from zen_flow_dev.testing.driver import FlowDriver, step_phases, wait_until
from zen_flow_dev.testing.flows import flow_manifest, job_step, job_template


def _jobs_of(jobs: list[dict[str, Any]], step: str) -> list[str]:
    return sorted(j["metadata"]["name"] for j in jobs if j["metadata"]["labels"].get(LABEL_STEP) == step)


async def test_a_failed_flow_reruns_from_its_failed_step(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    start_controller()
    flaky = job_template(exit_code=2, fail_attempts=1)  # its first attempt fails, the next one succeeds
    steps = [job_step("extract"), job_step("load", "extract", template=flaky), job_step("report", "load")]
    await driver.create(flow_manifest("etl", namespace, steps))
    failed = await driver.wait_phase(namespace, "etl", timeout=90)
    assert step_phases(failed) == {"extract": "Succeeded", "load": "Failed", "report": "Skipped"}
    extract = next(s for s in failed["status"]["steps"] if s["name"] == "extract")

    await driver.patch(namespace, "etl", {"metadata": {"annotations": {ANNOTATION_RETRY: "first"}}})

    async def rerun_over() -> dict[str, Any] | None:
        flow = await driver.get(namespace, "etl") or {}
        retried = ((flow.get("status") or {}).get("audit") or {}).get("retries")
        return flow if retried and flow["status"].get("phase") in ("Succeeded", "Failed") else None

    flow = await wait_until(rerun_over, 90, what="the rerun to finish")
    assert flow["status"]["phase"] == "Succeeded", flow["status"]
    assert [(r["id"], r["steps"]) for r in flow["status"]["audit"]["retries"]] == [("first", ["load"])]
    assert next(s for s in flow["status"]["steps"] if s["name"] == "extract") == extract  # untouched
    jobs = await driver.jobs(namespace)
    assert len(_jobs_of(jobs, "extract")) == 1  # never run again
    assert len(_jobs_of(jobs, "load")) == 2  # the failed attempt's Job kept, plus the rerun's
    assert len(_jobs_of(jobs, "report")) == 1


async def test_a_running_flow_stopped_ends_failed_and_its_job_goes(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    start_controller()
    steps = [job_step("train", template=job_template(run_seconds=600)), job_step("publish", "train")]
    await driver.create(flow_manifest("long", namespace, steps))

    async def running() -> bool:
        flow = await driver.get(namespace, "long") or {}
        return step_phases(flow).get("train") == "Running"

    await wait_until(running, 60, what="train to run")
    await driver.patch(namespace, "long", {"metadata": {"annotations": {ANNOTATION_STOP: "true"}}})
    flow = await driver.wait_phase(namespace, "long", timeout=60)
    failed = next(c for c in flow["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "Stopped"
    assert step_phases(flow) == {"train": "Failed", "publish": "Skipped"}

    async def job_gone() -> bool:
        return not [j for j in await driver.jobs(namespace) if not j["metadata"].get("deletionTimestamp")]

    await wait_until(job_gone, 60, what="the stopped step's Job deleted")


async def test_a_flow_stopped_with_run_finally_runs_its_finally_step_then_ends_stopped(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    start_controller()
    steps = [
        job_step("train", template=job_template(run_seconds=600)),
        job_step("publish", "train"),
        job_step("cleanup", when="flow.outcome == 'Failed'", **{"finally": True}),
    ]
    await driver.create(flow_manifest("graceful", namespace, steps))

    async def running() -> bool:
        flow = await driver.get(namespace, "graceful") or {}
        return step_phases(flow).get("train") == "Running"

    await wait_until(running, 60, what="train to run")
    stop = {"metadata": {"annotations": {ANNOTATION_STOP: STOP_RUN_FINALLY}}}
    await driver.patch(namespace, "graceful", stop)
    flow = await driver.wait_phase(namespace, "graceful", timeout=60)
    failed = next(c for c in flow["status"]["conditions"] if c["type"] == "Failed")
    assert (failed["reason"], failed["message"]) == ("Stopped", "stopped by an unrecorded user")
    assert step_phases(flow) == {"train": "Failed", "publish": "Skipped", "cleanup": "Succeeded"}
    jobs = await driver.jobs(namespace)
    assert len(_jobs_of(jobs, "cleanup")) == 1

    async def train_gone() -> bool:
        live = [j for j in await driver.jobs(namespace) if not j["metadata"].get("deletionTimestamp")]
        return not _jobs_of(live, "train")

    await wait_until(train_gone, 60, what="the stopped step's Job deleted")
