"""Planner: the Job of a step with artifacts carries the transfer containers, the volume and the mounts;
the uploader's report becomes status outputs, and a failed transfer fails the step naming the artifact.
No credential ever appears in a Job, only references to the flow's Secrets."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from zen_flow.api.transfer import DOWNLOADER, PLAN_ENV, UPLOADER, VOLUME, TransferPlan, UploadReport
from zen_flow.core.naming import job_name
from zen_flow.planner import ArtifactOptions, CreateJob, jobs_to_read, plan
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)
A0, B0 = job_name("flow", "a", 0), job_name("flow", "b", 0)
S3 = {
    "endpoint": "http://storage.example:9000",
    "bucket": "builds",
    "accessKeyIDSecretRef": {"name": "s3-creds", "key": "id"},
    "secretAccessKeySecretRef": {"name": "s3-creds"},
}
DIGEST = "sha256:" + "ab" * 32


def producer(**artifact: Any) -> dict[str, Any]:
    out = {"name": "app", "path": "/out/app.txt", "s3": S3, **artifact}
    return job_step("a", outputs={"artifacts": [out]})


def consumer(*artifacts: dict[str, Any]) -> dict[str, Any]:
    return job_step("b", "a", inputs={"artifacts": list(artifacts)})


def created(sim: Simulator, step: str) -> dict[str, Any]:
    bodies = [a.body for p in sim.plans for a in p.actions if isinstance(a, CreateJob) and a.step == step]
    assert bodies, f"no Job for step {step}"
    return bodies[-1]


def pod(body: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = body["spec"]["template"]["spec"]
    return spec


def init(body: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in pod(body)["initContainers"] if c["name"] == name)


def transfer_plan(container: dict[str, Any]) -> TransferPlan:
    value = next(e["value"] for e in container["env"] if e["name"] == PLAN_ENV)
    return TransferPlan.model_validate_json(value)


def report(**stored: dict[str, Any]) -> str:
    return UploadReport.model_validate({"stored": stored}).model_dump_json()


def step_status(sim: Simulator, name: str) -> Any:
    found = sim.flow.status.step(name)
    assert found is not None
    return found


def test_the_producer_gets_an_uploader_sidecar_the_volume_and_a_mount_at_the_outputs_directory() -> None:
    sim = Simulator(make_flow([producer()]), T0)
    sim.reconcile()
    body = created(sim, "a")
    uploader = init(body, UPLOADER)
    assert uploader["restartPolicy"] == "Always"  # a native sidecar: stopped after the step's containers
    assert uploader["image"] == ArtifactOptions().image
    assert uploader["command"][:3] == ["zen-flow", "artifact", "upload"]
    assert uploader["startupProbe"]["exec"]["command"][:2] == ["test", "-e"]
    assert {"name": VOLUME, "emptyDir": {}} in pod(body)["volumes"]
    main = pod(body)["containers"][0]
    (mount,) = [m for m in main["volumeMounts"] if m["name"] == VOLUME]
    assert mount["mountPath"] == "/out"
    (upload,) = transfer_plan(uploader).uploads
    assert upload.source == f"/zf-artifacts/{mount['subPath']}/app.txt"
    assert upload.s3.bucket == "builds"
    assert upload.s3.key == "zen-flow/default/flow/uid-flow/a/app"  # <ns>/<flow>/<uid[:8]>/<step>/<name>
    assert upload.archive is None  # a file as it is, a directory as tar+gzip
    # Credentials: references to the flow's Secret, resolved by the kubelet; never values.
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in uploader["env"] if "valueFrom" in e}
    assert sorted(refs.values(), key=str) == [
        {"name": "s3-creds", "key": "id"},
        {"name": "s3-creds", "key": "secretAccessKey"},
    ]
    assert (upload.s3.access_key_env, upload.s3.secret_key_env) == tuple(refs)
    assert DOWNLOADER not in {c["name"] for c in pod(body)["initContainers"]}


def test_an_output_on_a_volume_of_the_template_is_read_through_that_volume() -> None:
    step = producer(path="/workspace/dist/site", archive={"format": "zip"})
    spec = step["template"]["spec"]["template"]["spec"]
    spec["volumes"] = [{"name": "work", "emptyDir": {}}]
    spec["containers"][0]["volumeMounts"] = [{"name": "work", "mountPath": "/workspace"}]
    sim = Simulator(make_flow([step]), T0)
    sim.reconcile()
    body = created(sim, "a")
    uploader = init(body, UPLOADER)
    assert {"name": "work", "mountPath": "/workspace", "readOnly": True} in uploader["volumeMounts"]
    (upload,) = transfer_plan(uploader).uploads
    assert (upload.source, upload.archive) == ("/workspace/dist/site", "zip+deflate")
    main = pod(body)["containers"][0]
    assert [m["name"] for m in main["volumeMounts"]] == ["work"]  # nothing of ours hides /workspace


def test_outputs_sharing_a_volume_of_the_template_give_the_uploader_that_volume_once() -> None:
    """The apiserver refuses a container with two mounts at one path (`mountPath: must be unique`): the
    uploader mounts each of the template's volumes it reads through once, however many outputs lie on
    it, so the Job can be created."""
    step = job_step(
        "a",
        outputs={
            "artifacts": [
                {"name": "x", "path": "/workspace/x.txt", "s3": S3},
                {"name": "y", "path": "/workspace/y.txt", "s3": S3},
                {"name": "z", "path": "/workspace/cache/z.txt", "s3": S3},
                {"name": "w", "path": "/workspace/cache/w.txt", "s3": S3},
            ]
        },
    )
    spec = step["template"]["spec"]["template"]["spec"]
    spec["volumes"] = [{"name": "work", "emptyDir": {}}, {"name": "cache", "emptyDir": {}}]
    spec["containers"][0]["volumeMounts"] = [
        {"name": "work", "mountPath": "/workspace"},
        {"name": "cache", "mountPath": "/workspace/cache"},
    ]
    sim = Simulator(make_flow([step]), T0)
    sim.reconcile()
    uploader = init(created(sim, "a"), UPLOADER)
    paths = [m["mountPath"] for m in uploader["volumeMounts"]]
    assert len(paths) == len(set(paths)), paths
    assert {"name": "work", "mountPath": "/workspace", "readOnly": True} in uploader["volumeMounts"]
    assert {"name": "cache", "mountPath": "/workspace/cache", "readOnly": True} in uploader["volumeMounts"]
    sources = {u.name: u.source for u in transfer_plan(uploader).uploads}
    assert sources == {
        "x": "/workspace/x.txt",
        "y": "/workspace/y.txt",
        "z": "/workspace/cache/z.txt",
        "w": "/workspace/cache/w.txt",
    }


def run_producer(messages: dict[str, str] | None, **artifact: Any) -> Simulator:
    sim = Simulator(
        make_flow([producer(**artifact), consumer({"name": "app", "from": "a/app", "path": "/in/app"})]), T0
    )
    sim.reconcile()
    sim.complete(A0, messages=messages)
    assert jobs_to_read(sim.flow, list(sim.jobs.values())) == (A0,)
    for _ in range(3):
        sim.reconcile()
    return sim


def test_the_report_becomes_status_and_the_consumer_downloads_and_checks_that_object() -> None:
    stored = {"size": 10, "digest": DIGEST, "archive": "none"}
    sim = run_producer({"main": "", UPLOADER: report(app=stored)})
    (artifact,) = step_status(sim, "a").outputs.artifacts
    assert artifact.to_wire() == {
        "name": "app",
        "path": "/out/app.txt",
        "url": "s3://builds/zen-flow/default/flow/uid-flow/a/app",
        "size": 10,
        "digest": DIGEST,
        "archive": "none",
    }
    body = created(sim, "b")
    downloader = init(body, DOWNLOADER)
    assert "restartPolicy" not in downloader  # a plain init container: the step's containers wait for it
    (download,) = transfer_plan(downloader).downloads
    assert download.s3 is not None
    assert (download.s3.url, download.digest, download.archive) == (artifact.url, DIGEST, "none")
    main = pod(body)["containers"][0]
    assert {"name": VOLUME, "mountPath": "/in/app", "subPath": "in/app"} in main["volumeMounts"]
    assert download.dest == "/zf-artifacts/in/app"


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        (None, "no succeeded pod left to read the uploader's report"),
        ({"main": ""}, "the uploader wrote no report: it was stopped before it finished"),
        ({UPLOADER: "garbage"}, "the uploader's report is unreadable"),
        (
            {
                UPLOADER: UploadReport(
                    errors={"app": "s3://builds/x at http://s: AccessDenied: no"}
                ).model_dump_json()
            },
            "output artifact app: s3://builds/x at http://s: AccessDenied: no",
        ),
        (
            {UPLOADER: UploadReport(missing=("app",)).model_dump_json()},
            "output artifact app: the uploader did not report it",
        ),
    ],
)
def test_a_failed_or_unreported_upload_fails_the_step_naming_the_artifact(
    messages: dict[str, str] | None, expected: str
) -> None:
    sim = run_producer(messages)
    status = step_status(sim, "a")
    assert status.phase == "Failed"
    assert expected in (status.message or "")
    assert step_status(sim, "b").phase == "Skipped"
    assert sim.created == [A0]


def test_a_missing_optional_artifact_is_fine_until_a_step_needs_it() -> None:
    sim = run_producer({UPLOADER: UploadReport(missing=("app",)).model_dump_json()}, optional=True)
    assert step_status(sim, "a").phase == "Succeeded"
    assert step_status(sim, "a").outputs.artifacts == ()
    b = step_status(sim, "b")
    assert b.phase == "Failed"
    assert (
        "input artifact app: step a stored no artifact app (an optional artifact its step did not write)"
        in (b.message or "")
    )
    assert sim.created == [A0]  # no Job with a missing input


def test_a_header_from_a_secret_reaches_the_downloader_as_an_env_var_only() -> None:
    # The controller never reads the Secret: the kubelet fills the transfer container's env from it, and
    # the plan (JSON in the Job) names the variable, never a value.
    ref = {"name": "gh-token", "key": "header"}
    http = {
        "name": "seed",
        "http": {
            "url": "https://example.com/seed.csv",
            "headersFrom": [{"name": "Authorization", "secretKeyRef": ref}],
        },
    }
    sim = Simulator(make_flow([job_step("b", inputs={"artifacts": [http]})]), T0)
    sim.reconcile()
    container = init(created(sim, "b"), DOWNLOADER)
    (download,) = transfer_plan(container).downloads
    assert download.http is not None
    assert download.http.headers == {}
    (variable,) = download.http.header_env.values()
    assert download.http.header_env == {"Authorization": variable}
    assert {"name": variable, "valueFrom": {"secretKeyRef": ref}} in container["env"]


def test_a_failed_download_is_named_in_the_steps_message() -> None:
    http = {"name": "seed", "http": {"url": "https://example.com/seed.csv?token=t"}, "path": "/in/seed.csv"}
    sim = Simulator(make_flow([job_step("b", inputs={"artifacts": [http]})]), T0)
    sim.reconcile()
    (download,) = transfer_plan(init(created(sim, "b"), DOWNLOADER)).downloads
    assert download.http is not None
    assert download.http.url.endswith("?token=t")
    sim.fail(
        B0, messages={DOWNLOADER: "input artifact seed: https://example.com/seed.csv: HTTP 404 Not Found"}
    )
    sim.reconcile()
    message = step_status(sim, "b").message or ""
    assert message.startswith(
        "Job failed: input artifact seed: https://example.com/seed.csv: HTTP 404 Not Found"
    )
    assert "BackoffLimitExceeded" in message


def test_steps_without_artifacts_are_untouched_and_never_read_pods() -> None:
    sim = Simulator(make_flow([job_step("a"), job_step("b", "a")]), T0)
    sim.reconcile()
    body = created(sim, "a")
    assert "initContainers" not in pod(body)
    assert "volumes" not in pod(body)
    sim.complete(A0)
    assert jobs_to_read(sim.flow, list(sim.jobs.values())) == ()


def test_a_template_using_our_names_fails_the_step_with_a_clear_message() -> None:
    step = producer()
    step["template"]["spec"]["template"]["spec"]["volumes"] = [{"name": VOLUME, "emptyDir": {}}]
    sim = Simulator(make_flow([step]), T0)
    sim.reconcile()
    assert "zf-artifacts are zen-flow's own" in (step_status(sim, "a").message or "")
    assert sim.created == []


def test_the_controllers_image_setting_reaches_the_transfer_containers() -> None:
    flow = make_flow([producer()])
    result = plan(flow, [], T0, transfers=ArtifactOptions(image="registry.local/zen-flow:dev"))
    (create,) = [a for a in result.actions if isinstance(a, CreateJob)]
    assert init(create.body, UPLOADER)["image"] == "registry.local/zen-flow:dev"
    assert json.loads(next(e["value"] for e in init(create.body, UPLOADER)["env"] if e["name"] == PLAN_ENV))
