"""Parameters end to end: an output value read from a real finished Job (its status, or its pod's
termination message) reaches the next step's Job; flow arguments reach the steps that take them.

Runs its own `zen-flow run` process watching only the test's namespace (as tests/e2e/test_engine.py).
"""

from __future__ import annotations

from zen_flow.api.transfer import PLAN_ENV, UPLOADER, TransferPlan
from zen_flow.cli.overrides import override_arguments
from zen_flow_dev.cluster.stages import TERMINATION_MESSAGE_ANNOTATION
from zen_flow_dev.testing.controller import StartController
from zen_flow_dev.testing.driver import FlowDriver, step_phases
from zen_flow_dev.testing.examples import EXAMPLES, WRITTEN, load, simulate_messages
from zen_flow_dev.testing.flows import flow_manifest, job_step, job_template


async def test_an_output_value_reaches_the_dependent_job(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    consumer = job_template()
    consumer["metadata"] = {"annotations": {"example.com/count": "{{inputs.parameters.count}}"}}
    consumer["spec"]["template"]["spec"]["containers"][0]["args"] = ["--count={{.Parameters.count}}"]
    a = job_step(
        "a", outputs={"parameters": [{"name": "succeeded", "valueFrom": {"jsonPath": "$.succeeded"}}]}
    )
    b = job_step(
        "b",
        "a",
        template=consumer,
        inputs={
            "parameters": [
                {"name": "count", "valueFrom": {"jsonPath": "a:$.outputs.parameters.succeeded"}},
                {"name": "done", "valueFrom": {"jsonPath": "a:$.conditions[-1].type"}},  # a's Job status
            ]
        },
    )
    start_controller()
    await driver.create(flow_manifest("params", namespace, [a, b]))
    flow = await driver.wait_phase(namespace, "params", timeout=90)

    assert flow["status"]["phase"] == "Succeeded", flow["status"]
    assert step_phases(flow) == {"a": "Succeeded", "b": "Succeeded"}
    steps = {s["name"]: s for s in flow["status"]["steps"]}
    assert steps["a"]["outputs"]["parameters"] == [{"name": "succeeded", "value": "1"}]

    jobs = {j["metadata"]["labels"]["workflow.kube-zen.io/step"]: j for j in await driver.jobs(namespace)}
    job_b = jobs["b"]
    assert job_b["metadata"]["annotations"]["example.com/count"] == "1"
    main = job_b["spec"]["template"]["spec"]["containers"][0]
    assert main["args"] == ["--count=1"]
    env = {e["name"]: e.get("value") for e in main["env"]}
    assert env["ZF_PARAM_COUNT"] == "1"
    assert env["ZF_PARAM_DONE"] == "Complete"
    # The dependent started only after the value was committed: its Job is younger than a's completion.
    assert job_b["metadata"]["creationTimestamp"] >= steps["a"]["completionTime"]


async def test_the_build_and_check_example_passes_arguments_values_and_a_file(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    """examples/build-and-check.yaml with `version` overridden as `-p` would: the argument reaches
    `build`, the values its container wrote reach `check`, the uploader's report (what kwok's fake
    kubelet hands over here) becomes the stored artifact that `check`'s downloader fetches and checks,
    and the controller listed pods once."""
    path = EXAMPLES / "build-and-check.yaml"
    manifest, errors = override_arguments(load(path), {"version": "2.0.0"})
    assert errors == []
    manifest = simulate_messages(manifest, path)
    manifest["metadata"]["namespace"] = namespace
    controller = start_controller()
    await driver.create(manifest)
    flow = await driver.wait_phase(namespace, "build-and-check", timeout=90)

    assert flow["status"]["phase"] == "Succeeded", flow["status"]
    written = WRITTEN["build-and-check.yaml"]["build"]
    digest, size = (line.split("=", 1)[1] for line in written["main"].splitlines())
    build = next(s for s in flow["status"]["steps"] if s["name"] == "build")
    assert build["outputs"]["parameters"] == [
        {"name": "digest", "value": digest},
        {"name": "size", "value": size},
    ]
    (artifact,) = build["outputs"]["artifacts"]
    uid = flow["metadata"]["uid"][:8]
    assert artifact == {
        "name": "app",
        "path": "/out/app.txt",
        "url": f"s3://builds/zen-flow/{namespace}/build-and-check/{uid}/build/app",
        "size": int(size),
        "digest": digest,
        "archive": "none",
    }
    jobs = {j["metadata"]["labels"]["workflow.kube-zen.io/step"]: j for j in await driver.jobs(namespace)}
    build_pod = jobs["build"]["spec"]["template"]["spec"]
    assert 'echo "app 2.0.0"' in build_pod["containers"][0]["command"][2]
    assert [c["name"] for c in build_pod["initContainers"]] == [UPLOADER]  # the apiserver took the sidecar
    check_pod = jobs["check"]["spec"]["template"]["spec"]
    check = check_pod["containers"][0]
    env = {e["name"]: e.get("value") for e in check["env"]}
    assert (env["ZF_PARAM_DIGEST"], env["ZF_PARAM_SIZE"], env["ZF_PARAM_ENVIRONMENT"]) == (
        digest,
        size,
        "staging",
    )
    (downloader,) = check_pod["initContainers"]
    plan = TransferPlan.model_validate_json(
        next(e["value"] for e in downloader["env"] if e["name"] == PLAN_ENV)
    )
    (download,) = plan.downloads
    assert download.s3 is not None
    assert (download.s3.url, download.digest) == (artifact["url"], digest)
    secrets = [e["valueFrom"]["secretKeyRef"]["name"] for e in downloader["env"] if "valueFrom" in e]
    assert secrets == ["artifact-storage", "artifact-storage"]
    # One LIST of pods for the one step whose pod had something to say; no pod watch, no other request.
    assert controller.metric("zen_flow_api_requests_total", resource="pods") == 1
    assert controller.metric("zen_flow_api_requests_total", resource="pods", verb="list") == 1


async def test_a_value_the_container_did_not_write_fails_the_step_naming_it(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    writer = job_template()
    writer["spec"]["template"]["metadata"] = {"annotations": {TERMINATION_MESSAGE_ANNOTATION: "rows=3\n"}}
    a = job_step(
        "a",
        template=writer,
        outputs={
            "parameters": [
                {"name": "rows", "valueFrom": {"terminationMessage": {"key": "rows"}}},
                {"name": "digest", "valueFrom": {"terminationMessage": {"key": "digest"}}},
            ]
        },
    )
    start_controller()
    await driver.create(flow_manifest("unwritten", namespace, [a, job_step("b", "a")]))
    flow = await driver.wait_phase(namespace, "unwritten", timeout=90)

    assert flow["status"]["phase"] == "Failed"
    assert step_phases(flow) == {"a": "Failed", "b": "Skipped"}
    message = next(s for s in flow["status"]["steps"] if s["name"] == "a")["message"]
    assert "output parameter digest" in message
    assert "container main's termination message: no JSON object field and no line digest=" in message


async def test_a_matrix_over_a_steps_output_runs_one_job_per_value_and_its_fan_in_reads_them_all(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    """`valueFrom.jsonPath` in a matrix (Argo's withParam): `gen` writes a JSON array (what kwok's fake
    kubelet hands over as its termination message), the matrix step waits as one step until then, and
    runs as one item per value; the fan-in reads every item's output as one JSON array."""
    gen_template = job_template()
    pod = gen_template["spec"]["template"]
    pod.setdefault("metadata", {})["annotations"] = {TERMINATION_MESSAGE_ANNOTATION: '["a","b","c"]'}
    gen = job_step(
        "gen",
        template=gen_template,
        outputs={
            "parameters": [{"name": "shards", "valueFrom": {"terminationMessage": {"container": "main"}}}]
        },
    )
    source = {"jsonPath": "gen:$.outputs.parameters.shards"}
    work = job_step(
        "work",
        "gen",
        matrix={"parameters": [{"name": "shard", "valueFrom": source}]},
        outputs={"parameters": [{"name": "n", "valueFrom": {"jsonPath": "$.succeeded"}}]},
    )
    reads = {"jsonPath": "work:$.outputs.parameters.n"}
    report = job_step("report", "work", inputs={"parameters": [{"name": "all", "valueFrom": reads}]})
    start_controller()
    await driver.create(flow_manifest("withparam", namespace, [gen, work, report]))
    flow = await driver.wait_phase(namespace, "withparam", timeout=90)

    assert flow["status"]["phase"] == "Succeeded", flow["status"]
    items = ["work-0", "work-1", "work-2"]
    assert step_phases(flow) == {
        "gen": "Succeeded",
        **dict.fromkeys(items, "Succeeded"),
        "report": "Succeeded",
    }
    assert flow["status"]["progress"]["totalSteps"] == 5  # the stand-in counted 1 until its items came
    jobs = {j["metadata"]["labels"]["workflow.kube-zen.io/step"]: j for j in await driver.jobs(namespace)}
    assert sorted(jobs) == ["gen", "report", *items]  # no Job for the matrix step itself
    shards = {
        item: {
            e["name"]: e.get("value") for e in jobs[item]["spec"]["template"]["spec"]["containers"][0]["env"]
        }["ZF_PARAM_SHARD"]
        for item in items
    }
    assert shards == {"work-0": "a", "work-1": "b", "work-2": "c"}
    env = {
        e["name"]: e.get("value") for e in jobs["report"]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["ZF_PARAM_ALL"] == '["1","1","1"]'
    assert "matrix" in flow["spec"]["steps"][1]  # the stored spec is as written
