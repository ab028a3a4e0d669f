"""`spec.artifactRepository`: where a flow's output artifacts without `s3` of their own are stored (Argo's
default artifact repository). Admission names the repository's fields; the planned Job stores such an
output there under `<keyPrefix>/<namespace>/<flow>/<uid prefix>/<step>/<artifact>` with the repository's
Secret refs (never their values); an artifact's own `s3` wins whole; a flow without the field is planned
exactly as before; the field travels with a template and is fixed once the flow started."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from validation_samples import ErrorType, Flow, assert_error, assert_valid, base_flow, mutated, step

from zen_flow.api.transfer import DOWNLOADER, UPLOADER, UploadReport
from zen_flow.core.naming import job_name
from zen_flow.validation import validate_jobflow, validate_update
from zen_flow.validation.expansion import expand
from zen_flow.validation.warnings import flow_warnings
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator
from zen_flow_dev.testing.transfer_plans import container, created, transfer_plan

E = ErrorType
T0 = datetime(2025, 1, 1, tzinfo=UTC)
REPO_PATH = "spec.artifactRepository.s3"
REPOSITORY = {
    "s3": {
        "endpoint": "http://minio.storage:9000",
        "bucket": "flows",
        "keyPrefix": "team-a/",
        "region": "eu-west-1",
        "insecure": True,
        "accessKeyIDSecretRef": {"name": "repo-creds", "key": "user"},
        "secretAccessKeySecretRef": {"name": "repo-creds"},
    }
}
DIGEST = "sha256:" + "cd" * 32


# --- admission ------------------------------------------------------------------------------------------


def with_repository(repository: Any) -> Flow:
    def mutation(flow: Flow) -> None:
        flow["spec"]["artifactRepository"] = repository
        del step(flow, "a")["outputs"]["artifacts"][0]["s3"]

    return mutated(mutation)


def test_a_flow_with_a_repository_stores_outputs_without_s3_and_later_steps_may_take_them() -> None:
    def taken(flow: Flow) -> None:
        step(flow, "c")["inputs"] = {"artifacts": [{"name": "x", "from": "a/out", "path": "/in/x"}]}

    flow = with_repository(REPOSITORY)
    taken(flow)
    assert_valid(flow)
    assert_valid(with_repository({"s3": {"bucket": "flows"}}))
    # Without the repository the same input is refused, as before.
    del flow["spec"]["artifactRepository"]
    assert_error(
        flow,
        "spec.steps[3].inputs.artifacts[0].from",
        E.INVALID,
        "(it has no s3 and the flow no spec.artifactRepository)",
    )


@pytest.mark.parametrize(
    ("repository", "path", "kind", "text"),
    [
        ({}, "spec.artifactRepository.s3", E.REQUIRED, ""),
        ({"s3": {}}, f"{REPO_PATH}.bucket", E.REQUIRED, ""),
        ({"s3": {"bucket": "b", "endpoint": "minio:9000"}}, f"{REPO_PATH}.endpoint", E.INVALID, "http://"),
        (
            {"s3": {"bucket": "b", "accessKeyIDSecretRef": {}}},
            f"{REPO_PATH}.accessKeyIDSecretRef.name",
            E.REQUIRED,
            "",
        ),
        (
            {"s3": {"bucket": "b", "secretAccessKeySecretRef": {"name": "Not_A_Name"}}},
            f"{REPO_PATH}.secretAccessKeySecretRef.name",
            E.INVALID,
            "",
        ),
        ({"s3": {"bucket": "b", "insecure": "yes"}}, f"{REPO_PATH}.insecure", E.INVALID, ""),
        ({"s3": {"bucket": "b", "keyPrefix": "/"}}, f"{REPO_PATH}.keyPrefix", E.INVALID, "a name"),
        ({"s3": {"bucket": "b", "key": "k"}}, f"{REPO_PATH}.key", E.FORBIDDEN, "keyPrefix"),
        ("flows", "spec.artifactRepository", E.INVALID, ""),
    ],
)
def test_a_broken_repository_is_refused_naming_its_field(
    repository: Any, path: str, kind: ErrorType, text: str
) -> None:
    assert_error(with_repository(repository), path, kind, text)


def test_an_output_the_repository_stores_needs_a_directory_as_one_with_s3_does() -> None:
    def at_root(flow: Flow) -> None:
        step(flow, "a")["outputs"]["artifacts"][0]["path"] = "/report.txt"

    flow = with_repository(REPOSITORY)
    at_root(flow)
    assert_error(flow, "spec.steps[0].outputs.artifacts[0].path", E.INVALID, "e.g. /outputs/report.txt")
    del flow["spec"]["artifactRepository"]  # stored nowhere: nothing is mounted, nothing to say
    assert [e.path for e in validate_jobflow(flow)] == []


def test_the_stored_nowhere_warning_is_not_given_when_a_repository_stores_the_output() -> None:
    flow = with_repository(REPOSITORY)
    assert not [w for w in flow_warnings(flow) if "no s3" in w]
    del flow["spec"]["artifactRepository"]
    assert [w for w in flow_warnings(flow) if "no s3" in w]


def test_the_repository_is_fixed_once_the_flow_started() -> None:
    old = with_repository(REPOSITORY)
    new = copy.deepcopy(old)
    new["spec"]["artifactRepository"]["s3"]["bucket"] = "elsewhere"
    assert validate_update(old, new) == []  # not started: editable
    old["status"] = {"phase": "Running"}
    assert [str(e) for e in validate_update(old, new)] == [
        "spec.artifactRepository: Forbidden: artifactRepository cannot change after the flow started"
    ]


def test_the_templates_repository_is_the_flows_unless_the_flow_names_its_own() -> None:
    template = {
        "kind": "JobFlowTemplate",
        "metadata": {"name": "build", "namespace": "team-a"},
        "spec": {"steps": base_flow()["spec"]["steps"], "artifactRepository": REPOSITORY},
    }
    spec = expand({"templateRef": {"name": "build"}}, template, "team-a").spec
    assert spec is not None
    assert spec["artifactRepository"] == REPOSITORY
    own = {"s3": {"bucket": "mine"}}
    spec = expand({"templateRef": {"name": "build"}, "artifactRepository": own}, template, "team-a").spec
    assert spec is not None
    assert spec["artifactRepository"] == own


# --- the planned Job ------------------------------------------------------------------------------------


def producer(**artifact: Any) -> dict[str, Any]:
    return job_step("a", outputs={"artifacts": [{"name": "app", "path": "/out/app.txt", **artifact}]})


def consumer() -> dict[str, Any]:
    return job_step("b", "a", inputs={"artifacts": [{"name": "app", "from": "a/app", "path": "/in/app"}]})


def secret_refs(found: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {e["name"]: e["valueFrom"]["secretKeyRef"] for e in found["env"] if "valueFrom" in e}


def planned(*steps: dict[str, Any], repository: Any = None) -> Simulator:
    sim = Simulator(make_flow(list(steps), artifact_repository=repository), T0)
    sim.reconcile()
    return sim


def test_an_output_without_s3_is_stored_in_the_repository_with_its_secret_refs() -> None:
    sim = planned(producer(), consumer(), repository=REPOSITORY)
    body = created(sim, "a")
    assert body is not None
    uploader = container(body, UPLOADER)
    (upload,) = transfer_plan(uploader).uploads
    assert upload.s3.endpoint == "http://minio.storage:9000"
    assert (upload.s3.bucket, upload.s3.region, upload.s3.insecure) == ("flows", "eu-west-1", True)
    # <keyPrefix, its slash dropped>/<namespace>/<flow>/<uid prefix>/<step>/<artifact>
    assert upload.s3.key == "team-a/default/flow/uid-flow/a/app"
    assert uploader is not None
    refs = secret_refs(uploader)
    assert sorted(refs.values(), key=str) == [
        {"name": "repo-creds", "key": "secretAccessKey"},
        {"name": "repo-creds", "key": "user"},
    ]
    assert (upload.s3.access_key_env, upload.s3.secret_key_env) == (
        next(n for n, r in refs.items() if r["key"] == "user"),
        next(n for n, r in refs.items() if r["key"] == "secretAccessKey"),
    )
    assert "repo-creds" not in upload.model_dump_json()  # the plan names env vars; the kubelet fills them

    # Its report becomes status, and the consumer downloads that very object with the same refs.
    stored = {"size": 3, "digest": DIGEST, "archive": "none"}
    report = UploadReport.model_validate({"stored": {"app": stored}}).model_dump_json()
    sim.complete(job_name("flow", "a", 0), messages={"main": "", UPLOADER: report})
    for _ in range(3):
        sim.reconcile()
    found = sim.flow.status.step("a")
    assert found is not None
    (artifact,) = found.outputs.artifacts
    assert artifact.url == "s3://flows/team-a/default/flow/uid-flow/a/app"
    body = created(sim, "b")
    assert body is not None
    downloader = container(body, DOWNLOADER)
    (download,) = transfer_plan(downloader).downloads
    assert download.s3 is not None
    assert (download.s3.url, download.s3.endpoint, download.digest) == (
        artifact.url,
        "http://minio.storage:9000",
        DIGEST,
    )
    assert downloader is not None
    assert sorted(secret_refs(downloader).values(), key=str) == sorted(refs.values(), key=str)


def test_without_a_key_prefix_the_key_is_zen_flows_default() -> None:
    sim = planned(producer(), repository={"s3": {"bucket": "flows"}})
    body = created(sim, "a")
    assert body is not None
    (upload,) = transfer_plan(container(body, UPLOADER)).uploads
    assert (upload.s3.bucket, upload.s3.key) == ("flows", "zen-flow/default/flow/uid-flow/a/app")
    assert upload.s3.endpoint == "https://s3.amazonaws.com"
    assert (upload.s3.access_key_env, upload.s3.secret_key_env) == (None, None)


@pytest.mark.parametrize("prefix", ["/x", "x/", "/x/"])
def test_the_slashes_around_the_key_prefix_are_dropped(prefix: str) -> None:
    sim = planned(producer(), repository={"s3": {"bucket": "flows", "keyPrefix": prefix}})
    body = created(sim, "a")
    assert body is not None
    (upload,) = transfer_plan(container(body, UPLOADER)).uploads
    assert upload.s3.key == "x/default/flow/uid-flow/a/app"


def test_an_artifacts_own_s3_wins_whole() -> None:
    own = {"bucket": "mine", "endpoint": "https://s3.example.com"}
    sim = planned(producer(s3=own), repository=REPOSITORY)
    body = created(sim, "a")
    assert body is not None
    uploader = container(body, UPLOADER)
    (upload,) = transfer_plan(uploader).uploads
    assert (upload.s3.endpoint, upload.s3.bucket, upload.s3.region) == (
        "https://s3.example.com",
        "mine",
        None,
    )
    assert not upload.s3.insecure
    assert upload.s3.key == "zen-flow/default/flow/uid-flow/a/app"  # the repository's keyPrefix is not taken
    assert uploader is not None
    assert secret_refs(uploader) == {}  # nor its Secrets: the client's own chain, as without a repository


@settings(max_examples=40, deadline=None)
@given(
    s3=st.fixed_dictionaries(
        {"bucket": st.sampled_from(["b", "other"])},
        optional={
            "key": st.sampled_from(["k", "dir/k"]),
            "endpoint": st.sampled_from(["http://x:9000", "https://y"]),
            "region": st.just("r"),
            "insecure": st.booleans(),
            "accessKeyIDSecretRef": st.just({"name": "creds"}),
        },
    ),
    stored=st.booleans(),
)
def test_a_repository_changes_nothing_for_an_output_with_its_own_s3(s3: dict[str, Any], stored: bool) -> None:
    """Property: a repository changes nothing for an output with its own s3, and without one an output
    without s3 is not stored: no uploader at all."""
    artifact = {"s3": s3} if stored else {}
    plain = created(planned(producer(**artifact)), "a")
    assert plain is not None
    if stored:
        assert plain == created(planned(producer(**artifact), repository=REPOSITORY), "a")
    else:
        assert container(plain, UPLOADER) is None
        assert "initContainers" not in plain["spec"]["template"]["spec"]
