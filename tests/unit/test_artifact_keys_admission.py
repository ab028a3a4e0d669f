"""Admission refuses what would pass and then break after the work ran: a Manual gate's output
artifacts (a gate runs no pod, so nothing is ever stored, and a later step taking one `from` it would
fail), and S3 keys the transfer cannot use (`.`/`..`/empty segments, control characters: the S3 client
refuses them when the step's work is already done)."""

from __future__ import annotations

import copy

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from validation_samples import ErrorType, Flow, assert_error, base_flow, mutated, step

from zen_flow.api.jobflow import JobFlow
from zen_flow.api.transfer import TRANSFER_NAMES, Stored, UploadReport
from zen_flow.planner.artifacts import (
    DEFAULT_PREFIX,
    Credentials,
    archive_of,
    output_location,
    output_url,
    uploads,
)
from zen_flow.transfer.runner import MESSAGE_LIMIT, SEE_LOG, report_text
from zen_flow.validation import validate_jobflow
from zen_flow.validation.limits import MAX_FLOW_NAME, MAX_S3_KEY_BYTES
from zen_flow.validation.outputs import REPORT_LIMIT
from zen_flow.validation.repository import MAX_KEY_PREFIX, MAX_KEY_TAIL
from zen_flow.validation.size import DEFAULT_PREFIX as SIZE_DEFAULT_PREFIX
from zen_flow.validation.size import MAX_OBJECT_BYTES, object_bound, spec_json, status_bound

E = ErrorType
PREFIX = "spec.artifactRepository.s3.keyPrefix"
GATE_ARTIFACTS = "spec.steps[2].outputs.artifacts"


def gate_with_artifact(s3: dict[str, str] | None, *, repository: bool) -> Flow:
    def mutation(flow: Flow) -> None:
        artifact: dict[str, object] = {"name": "x", "path": "/o/x/y"}
        if s3 is not None:
            artifact["s3"] = s3
        step(flow, "gate")["outputs"] = {"artifacts": [artifact]}
        step(flow, "c")["inputs"] = {"artifacts": [{"name": "x", "from": "gate/x", "path": "/in/x"}]}
        if repository:
            flow["spec"]["artifactRepository"] = {"s3": {"bucket": "flows"}}

    return mutated(mutation)


@pytest.mark.parametrize("repository", [True, False])
@pytest.mark.parametrize("s3", [None, {"bucket": "b", "key": "k"}])
def test_a_manual_step_may_not_have_output_artifacts(s3: dict[str, str] | None, repository: bool) -> None:
    error = assert_error(gate_with_artifact(s3, repository=repository), GATE_ARTIFACTS, E.FORBIDDEN, "Manual")
    assert "no pod" in str(error)


def with_prefix(prefix: str) -> Flow:
    def mutation(flow: Flow) -> None:
        flow["spec"]["artifactRepository"] = {"s3": {"bucket": "flows", "keyPrefix": prefix}}

    return mutated(mutation)


@pytest.mark.parametrize(
    "prefix", ["../x", "a/../../b", "./x", "a/./b", "x/..", "a\nb", "a\x00b", "a\tb", "a\x7fb"]
)
def test_a_key_prefix_with_a_dot_segment_or_a_control_character_is_refused(prefix: str) -> None:
    assert_error(with_prefix(prefix), PREFIX, E.INVALID, "")


@pytest.mark.parametrize("prefix", ["team-a", "/team-a/", "team-a/ci", "a//b", "a.b/..c/d..", "ünïcode"])
def test_a_key_prefix_of_names_is_accepted(prefix: str) -> None:
    assert [str(e) for e in validate_jobflow(with_prefix(prefix))] == []


def test_a_key_prefix_over_512_bytes_is_refused_and_one_of_512_accepted() -> None:
    assert [str(e) for e in validate_jobflow(with_prefix("a" * MAX_KEY_PREFIX))] == []
    assert_error(with_prefix("a" * (MAX_KEY_PREFIX + 1)), PREFIX, E.TOO_LONG, "1024")
    assert_error(
        with_prefix("é" * (MAX_KEY_PREFIX // 2 + 1)), PREFIX, E.TOO_LONG, ""
    )  # bytes, not characters


def with_key(key: str) -> Flow:
    def mutation(flow: Flow) -> None:
        step(flow, "a")["outputs"]["artifacts"][0]["s3"]["key"] = key

    return mutated(mutation)


@pytest.mark.parametrize("key", ["../x", "a/../b", "./x", "x/.", "a\rb", "a\x01b"])
def test_an_s3_key_with_a_dot_segment_or_a_control_character_is_refused(key: str) -> None:
    assert_error(with_key(key), "spec.steps[0].outputs.artifacts[0].s3.key", E.INVALID, "")


def test_an_s3_key_over_1024_bytes_is_refused_and_one_of_1024_accepted() -> None:
    key = "k" * MAX_S3_KEY_BYTES
    assert [str(e) for e in validate_jobflow(with_key(key))] == []
    error = assert_error(with_key(key + "k"), "spec.steps[0].outputs.artifacts[0].s3.key", E.TOO_LONG, "")
    assert "1024 bytes" in str(error)
    assert_error(
        with_key("é" * (MAX_S3_KEY_BYTES // 2 + 1)),
        "spec.steps[0].outputs.artifacts[0].s3.key",
        E.TOO_LONG,
        "",
    )  # bytes, not characters


def test_the_longest_default_key_an_admitted_flow_can_store_under_fits_in_an_s3_key() -> None:
    # Every name at the longest admission accepts: the key the uploader is given is one S3 takes.
    def mutation(flow: Flow) -> None:
        flow["metadata"]["name"] = "f" * 63
        flow["spec"]["artifactRepository"] = {"s3": {"bucket": "flows", "keyPrefix": "p" * MAX_KEY_PREFIX}}
        producer = step(flow, "d")
        producer["name"] = "s" * 59  # its items are named up to s...s-255 (63 characters)
        producer["matrix"] = {"parameters": [{"name": "n", "values": [str(i) for i in range(256)]}]}
        name = ".".join(["a" * 63] * 3 + ["a" * 61])  # a DNS-1123 subdomain of 253
        producer["outputs"] = {"artifacts": [{"name": name, "path": "/work/out"}]}

    flow = mutated(mutation)
    assert [str(e) for e in validate_jobflow(flow)] == []
    for longer in ("f" * 64, "p" * (MAX_KEY_PREFIX + 1)):  # one more character is refused
        too_long = copy.deepcopy(flow)
        if longer.startswith("f"):
            too_long["metadata"]["name"] = longer
        else:
            too_long["spec"]["artifactRepository"]["s3"]["keyPrefix"] = longer
        assert validate_jobflow(too_long) != []
    flow["metadata"] |= {"namespace": "n" * 63, "uid": "0" * 36}
    parsed = JobFlow.model_validate(flow)
    producer = next(s for s in parsed.spec.steps if s.name.startswith("s"))
    (artifact,) = uploads(parsed, producer)
    key = output_location(parsed, "s" * 59 + "-255", artifact, Credentials()).key
    assert len(key.encode()) <= MAX_KEY_PREFIX + MAX_KEY_TAIL <= MAX_S3_KEY_BYTES
    assert output_url(parsed, "s" * 59 + "-255", artifact).endswith(key)


# Valid S3 keys the client sends as they are: accepted before admission checked keys, and still.
@pytest.mark.parametrize("key", ["reports/out.tgz", "a..b/c.d", "x", "/x", "x/", "a//b"])
def test_an_s3_key_of_names_is_accepted(key: str) -> None:
    assert [str(e) for e in validate_jobflow(with_key(key))] == []


def test_base_flow_is_valid() -> None:
    assert validate_jobflow(base_flow()) == []


def matrix_flow(prefix: str | None, items: int) -> Flow:
    """One matrix step of `items` items storing 4 artifacts each in the repository."""

    def mutation(flow: Flow) -> None:
        a = step(flow, "a")
        a["matrix"] = {"parameters": [{"name": "n", "values": [str(i) for i in range(items)]}]}
        a["outputs"] = {"artifacts": [{"name": f"out-{i}", "path": f"/work/o{i}/x"} for i in range(4)]}
        s3 = {"bucket": "b" * 63} | ({"keyPrefix": prefix} if prefix is not None else {})
        flow["spec"]["artifactRepository"] = {"s3": s3}

    return mutated(mutation)


def test_the_status_bound_counts_each_stored_output_url_with_the_repository_prefix() -> None:
    short, long = (
        status_bound(matrix_flow("p", 100)["spec"]),
        status_bound(matrix_flow("p" * 500, 100)["spec"]),
    )
    # Each of the 400 urls holds the longer prefix.
    assert long - short >= 400 * 499
    unset = status_bound(matrix_flow(None, 100)["spec"])
    assert unset - short >= 400 * (len("zen-flow") - 1)  # the default prefix when none is given
    # Each url holds the bucket, the prefix and the tail: a namespace and a flow name at most.
    assert short - status_bound(without_repository(matrix_flow("p", 100))["spec"]) >= 400 * (
        63 + 1 + 63 + MAX_FLOW_NAME
    )


def test_a_flow_whose_urls_fit_with_the_longest_flow_name_admission_allows_is_accepted() -> None:
    # 1,024 recorded urls under a 100-byte prefix: with a flow name counted at 253 bytes (more than the
    # validator's 63) the bound came to some 1.45 MB and the flow was refused although its status fits.
    flow = matrix_flow("p" * 100, 256)
    flow["metadata"]["name"] = "f" * MAX_FLOW_NAME
    assert [str(e) for e in validate_jobflow(flow)] == []
    spare = MAX_OBJECT_BYTES - object_bound(len(spec_json(flow["spec"])), status_bound(flow["spec"]))
    assert 0 < spare < 1024 * (253 - MAX_FLOW_NAME)  # the old over-count would not have fit
    # The bound still counts what the urls do hold: a fifth artifact per item is too much.
    bigger = copy.deepcopy(flow)
    step(bigger, "a")["outputs"]["artifacts"].append({"name": "out-4", "path": "/work/o4/x"})
    assert_error(bigger, "spec", E.FORBIDDEN, "its status can grow to")


def without_repository(flow: Flow) -> Flow:
    del flow["spec"]["artifactRepository"]  # its outputs are stored nowhere: no url is recorded
    return flow


def own_s3_matrix(key_bytes: int) -> Flow:
    """A 250-item matrix step storing 5 artifacts each in their own s3, under keys of `key_bytes`."""

    def mutation(flow: Flow) -> None:
        a = step(flow, "a")
        a["matrix"] = {"parameters": [{"name": "n", "values": [str(i) for i in range(250)]}]}
        a["outputs"] = {
            "artifacts": [
                {
                    "name": f"out-{i}",
                    "path": f"/work/o{i}/x",
                    "s3": {"bucket": "b", "key": f"{i}" * key_bytes},
                }
                for i in range(5)
            ]
        }

    return mutated(mutation)


def test_the_status_bound_counts_the_url_of_an_output_stored_in_its_own_s3() -> None:
    # 1,250 recorded urls of ~900 bytes: the status would outgrow etcd once the step succeeded.
    assert [str(e) for e in validate_jobflow(own_s3_matrix(20))] == []
    assert_error(own_s3_matrix(900), "spec", E.FORBIDDEN, "its status can grow to")
    # An own s3 without `key`: its default key holds a namespace and a flow name at most.
    flow = own_s3_matrix(20)
    keyed = status_bound(flow["spec"])
    for artifact in step(flow, "a")["outputs"]["artifacts"]:
        del artifact["s3"]["key"]
    assert status_bound(flow["spec"]) - keyed >= 1250 * (63 + 1 + 63 - 20)


def test_a_step_storing_only_in_the_repository_may_not_use_the_transfer_s_reserved_names() -> None:
    def mutation(flow: Flow) -> None:
        flow["spec"]["artifactRepository"] = {"s3": {"bucket": "flows"}}
        del step(flow, "a")["outputs"]["artifacts"][0]["s3"]
        pod = step(flow, "a")["template"]["spec"]["template"]["spec"]
        pod["volumes"] = [{"name": sorted(TRANSFER_NAMES)[0], "emptyDir": {}}]

    flow = mutated(mutation)
    path = "spec.steps[0].template.spec.template.spec.volumes[0].name"
    assert_error(flow, path, E.INVALID, "reserved for zen-flow's artifact transfer")


def test_the_status_bound_counts_the_default_prefix_the_planner_stores_under() -> None:
    # validation/size.py keeps its own copy (validation does not import the planner).
    assert SIZE_DEFAULT_PREFIX == DEFAULT_PREFIX


# --- the uploader's report must fit its termination message ------------------------------------------

ARCHIVES = st.sampled_from(
    [
        None,
        {"format": "tar"},
        {"format": "zip"},
        {"format": "tar", "compression": "none"},
        {"format": "zip", "compression": "none"},
    ]
)
NAMES = st.lists(st.from_regex(r"[a-z][a-z0-9]{0,60}", fullmatch=True), min_size=1, max_size=40, unique=True)


def storing(names: list[str], archives: list[dict[str, str] | None]) -> Flow:
    """Step a stores an artifact of each name, in the repository."""

    def mutation(flow: Flow) -> None:
        artifacts = []
        for i, (name, archive) in enumerate(zip(names, archives, strict=False)):
            artifact: dict[str, object] = {"name": name, "path": f"/work/o{i}/x"}
            if archive is not None:
                artifact["archive"] = archive
            artifacts.append(artifact)
        step(flow, "a")["outputs"] = {"artifacts": artifacts}
        flow["spec"]["artifactRepository"] = {"s3": {"bucket": "results"}}

    return mutated(mutation)


def worst_report(flow: Flow) -> str:
    """The longest report the uploader can write for step a: every artifact stored, 5 TiB (S3's largest
    object), packed as the planner asks (a directory's tar+gzip when nothing is asked)."""
    outputs = JobFlow.model_validate(flow).spec.steps[0].outputs
    assert outputs is not None
    stored = {
        a.name: Stored(
            size=5 * 2**40, digest="sha256:" + "f" * 64, archive=archive_of(a.archive) or "tar+gzip"
        )
        for a in outputs.artifacts
    }
    return report_text(UploadReport(stored=stored))


@settings(max_examples=60)
@given(NAMES, st.lists(ARCHIVES, min_size=40, max_size=40))
def test_stored_outputs_are_refused_exactly_when_their_report_could_pass_what_the_kubelet_keeps(
    names: list[str], archives: list[dict[str, str] | None]
) -> None:
    # The kubelet keeps 4,096 bytes of a termination message: a longer report was cut, unreadable, and
    # the step failed after its work ran and every artifact was stored (some 28 artifacts of short names).
    flow = storing(names, archives)
    errors = [e for e in validate_jobflow(flow) if e.path == "spec.steps[0].outputs.artifacts"]
    fits = len(worst_report(flow).encode()) <= MESSAGE_LIMIT == REPORT_LIMIT
    assert not errors if fits else [e.type for e in errors] == [E.TOO_MANY]


def test_too_many_stored_outputs_are_refused_naming_the_field_and_why() -> None:
    flow = storing([f"artifact-{i:02d}" for i in range(30)], [None] * 30)
    error = assert_error(flow, "spec.steps[0].outputs.artifacts", E.TOO_MANY, "termination message")
    assert str(error).startswith("spec.steps[0].outputs.artifacts: Too many: 30: must have at most 28 items")
    assert "the kubelet cuts at 4,096 bytes" in str(error)
    assert [
        str(e) for e in validate_jobflow(storing([f"artifact-{i:02d}" for i in range(28)], [None] * 28))
    ] == []


SHORT = [f"{chr(ord('a') + i // 10)}{i % 10}" for i in range(30)]  # 30 names of 2 characters


@settings(max_examples=60)
@given(NAMES, st.lists(st.text(max_size=400), min_size=40, max_size=40), st.integers(0, 40))
@example(SHORT, [""] * 40, 30)  # every one failing, short names: only SEE_LOG leaves room
def test_a_report_of_outputs_admission_accepts_fits_whatever_fails(
    names: list[str], reasons: list[str], failed: int
) -> None:
    flow = storing(names, [None] * len(names))
    if report_bound_errors := [
        e for e in validate_jobflow(flow) if e.path == "spec.steps[0].outputs.artifacts"
    ]:
        assert report_bound_errors[0].type == E.TOO_MANY
        return
    # Errors for some (any text: control characters take 6 bytes a character, `\u0001`: even cut to 25
    # characters an error then outgrows a stored entry, and short names leave no room), the others
    # stored at their largest.
    errors = {name: "\x01" * 50 + reason for name, reason in zip(names[:failed], reasons, strict=False)}
    stored = {
        n: Stored(size=5 * 2**40, digest="sha256:" + "f" * 64, archive="tar+gzip") for n in names[failed:]
    }
    text = report_text(UploadReport(stored=stored, errors=errors))
    assert len(text.encode()) <= MESSAGE_LIMIT
    read = UploadReport.model_validate_json(text)
    assert read.stored == stored  # what the next steps need is never cut
    assert read.errors.keys() == errors.keys()


def test_a_report_of_every_output_failing_with_escaped_errors_fits_saying_see_the_log() -> None:
    # 30 artifacts of 2-character names (admission takes them), each failing with 100 control
    # characters: cut to 25 characters, an error still takes ~150 bytes (`\u0001` each), 30 of them
    # overflow the 4,096 bytes the kubelet keeps; each then says only where its reasons are.
    assert [str(e) for e in validate_jobflow(storing(SHORT, [None] * 30))] == []
    text = report_text(UploadReport(errors=dict.fromkeys(SHORT, "\x01" * 100)))
    assert len(text.encode()) <= MESSAGE_LIMIT
    assert UploadReport.model_validate_json(text).errors == dict.fromkeys(SHORT, SEE_LOG)
