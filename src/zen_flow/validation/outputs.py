"""A step's outputs: the parameters and artifacts it publishes, and the names zen-flow's artifact
transfer reserves in its pod.

An output reads the step's own finished Job (a jsonPath on the Job, or a container's termination
message); a stored artifact is uploaded from a path in the step's containers, where zen-flow mounts a
volume unless one of the template's already holds it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from zen_flow.api.transfer import TRANSFER_NAMES
from zen_flow.core.gate_values import MAX_VALUE_BYTES
from zen_flow.validation.errors import (
    Path,
    duplicate,
    forbidden,
    invalid,
    not_found,
    not_supported,
    quote,
    required,
    too_long,
    too_many,
)
from zen_flow.validation.formats import abs_path_problem
from zen_flow.validation.io import check_item_name, check_json_path_syntax, check_s3
from zen_flow.validation.limits import MAX_JSON_PATH
from zen_flow.validation.reader import Reader
from zen_flow.validation.size import MAX_OUTPUT_PARAMETERS

ARCHIVE_FORMATS = ("tar", "zip")
COMPRESSIONS = ("gzip", "none")

# Matched whole (fullmatch): Python's `$` also matches before a final newline, where the admission
# policy's (RE2's) does not, and the two must refuse the same keys.
_MESSAGE_KEY = re.compile(r"[A-Za-z0-9_.-]+")
# Where an output parameter's value comes from: exactly one of them.
_SOURCES = ("jsonPath", "terminationMessage", "supplied")
_ONE_OF = "jsonPath or terminationMessage (a Job step), or supplied (a Manual step)"
_MANUAL_ONLY = (
    "a Manual step runs no Job: its outputs are values supplied when it is approved (valueFrom.supplied)"
)
_JOB_ONLY = "only a Manual step's outputs are supplied at its approval: a Job step's read its Job"
MAX_SUPPLIED_TEXT = 1024  # CRD supplied.default, enum[] and description maxLength
MAX_SUPPLIED_ENUM = 64  # CRD supplied.enum maxItems


def _step_prefix(value: str) -> tuple[str | None, str]:
    """An output jsonPath as (its `<step>:` prefix or None, the path after it). An output reads the
    step's own finished Job; the original's validator also allowed the prefix, which we accept only when
    it names this very step (check_output_references)."""
    ref, colon, expr = value.partition(":")
    return (ref, expr) if colon and not ref.startswith("$") else (None, value)


def _check_output_json_path(r: Reader, value: str, path: Path) -> None:
    _, value = _step_prefix(value)
    if not value.startswith("$"):
        r.add(invalid(path, value, 'a JSONPath must start with "$" (e.g. "$.succeeded")'))
    else:
        check_json_path_syntax(r, value, value, path)


def check_output_references(r: Reader, step: str, outputs: Mapping[str, Any], path: Path) -> None:
    """The one output rule that reads the step's name: a jsonPath's `<step>:` prefix names this step."""
    params = outputs.get("parameters")
    for i, param in enumerate(params if isinstance(params, list) else ()):
        source = param.get("valueFrom") if isinstance(param, dict) else None
        if not isinstance(source, dict) or source.get("terminationMessage") is not None:
            continue
        value = source.get("jsonPath")
        if not isinstance(value, str):
            continue
        ref, _ = _step_prefix(value)
        if ref is not None and ref != step:
            r.add(
                invalid(
                    f"{path}.parameters[{i}].valueFrom.jsonPath",
                    value,
                    f"an output reads this step's own Job; the prefix must be {quote(step)} or absent",
                )
            )


def _check_output_artifact(
    r: Reader, artifact: Mapping[str, Any], path: Path, mounts: Sequence[str] | None, stores_all: bool
) -> None:
    file_path = r.string(artifact.get("path"), path + ".path", require=True)
    if file_path is not None and (problem := abs_path_problem(file_path)):
        r.add(invalid(path + ".path", file_path, problem))
    elif (
        file_path is not None
        and (stores_all or artifact.get("s3") is not None)
        and file_path.rstrip("/").count("/") < 2
        and not any(_under(file_path, m) for m in mounts or ())
    ):
        r.add(
            invalid(
                path + ".path",
                file_path,
                "zen-flow mounts a volume at the directory of a stored output (unless a volume of the "
                "template holds the path), so the path needs a directory below /, e.g. /outputs"
                + file_path.rstrip("/"),
            )
        )
    r.boolean(artifact.get("optional"), path + ".optional")
    archive = r.mapping(artifact.get("archive"), path + ".archive")
    if archive is not None:
        fmt = r.string(archive.get("format"), path + ".archive" + ".format")
        if fmt and fmt not in ARCHIVE_FORMATS:
            r.add(not_supported(path + ".archive" + ".format", fmt, ARCHIVE_FORMATS))
        comp = r.string(archive.get("compression"), path + ".archive" + ".compression")
        if comp and comp not in COMPRESSIONS:
            r.add(not_supported(path + ".archive" + ".compression", comp, COMPRESSIONS))
    s3 = r.mapping(artifact.get("s3"), path + ".s3")
    if s3 is not None:
        check_s3(r, s3, path + ".s3")


def _check_termination_message(
    r: Reader, source: Mapping[str, Any], path: Path, containers: Sequence[str] | None
) -> None:
    container = r.string(source.get("container"), path + ".container")
    if container is not None:
        if containers is not None and container not in containers:
            known = ", ".join(containers) or "none"
            r.add(not_found(path + ".container", container, f"the Job template's containers are: {known}"))
    elif containers is not None and len(containers) > 1:
        r.add(
            required(path + ".container", f"the Job has {len(containers)} containers: name the one to read")
        )
    key = r.string(source.get("key"), path + ".key")
    if key is not None and not _MESSAGE_KEY.fullmatch(key):
        r.add(invalid(path + ".key", key, "must consist of letters, digits, '-', '_' or '.'"))


def check_outputs(
    r: Reader,
    outputs: Mapping[str, Any],
    path: Path,
    containers: Sequence[str] | None = None,
    mounts: Sequence[str] | None = None,
    *,
    manual: bool = False,
    stores_all: bool = False,
) -> None:
    """The outputs' own rules (check_output_references has the one that reads the step's name).
    `containers`: the names in the step's Job template (None when it has none to read); `mounts`: the
    mountPaths of its containers' volumes; `manual`: the step is a Manual gate, whose outputs are
    supplied at its approval; `stores_all`: the flow's artifact repository stores the artifacts without
    `s3` too."""
    names: set[str] = set()
    params = outputs.get("parameters")
    if isinstance(params, list) and len(params) > MAX_OUTPUT_PARAMETERS:
        r.add(
            too_many(
                path + ".parameters",
                len(params),
                MAX_OUTPUT_PARAMETERS,
                "each value is stored in the flow's status, which must fit in etcd",
            )
        )
    for item_path, param in r.mappings(params, path + ".parameters"):
        check_item_name(r, param, item_path, names)
        source = r.mapping(param.get("valueFrom"), item_path + ".valueFrom", require=True)
        if source is None:
            continue
        src_path = item_path + ".valueFrom"
        given = [f for f in _SOURCES if source.get(f) is not None]
        if len(given) != 1:
            what = "may not be specified together with " + given[0] if given else "set exactly one"
            target = "." + (given[1] if given else _SOURCES[2 if manual else 0])
            error = forbidden if given else required
            r.add(error(src_path + target, f"{what}: an output reads {_ONE_OF}"))
            continue
        if manual != (given[0] == "supplied"):
            r.add(forbidden(src_path + "." + given[0], _MANUAL_ONLY if manual else _JOB_ONLY))
            continue
        json_path = r.string(source.get("jsonPath"), src_path + ".jsonPath")
        if json_path is not None and len(json_path) > MAX_JSON_PATH:
            r.add(too_long(src_path + ".jsonPath", json_path, MAX_JSON_PATH))
        elif json_path is not None:
            _check_output_json_path(r, json_path, src_path + ".jsonPath")
        message = r.mapping(source.get("terminationMessage"), src_path + ".terminationMessage")
        if message is not None:
            _check_termination_message(r, message, src_path + ".terminationMessage", containers)
        supplied = r.mapping(source.get("supplied"), src_path + ".supplied")
        if supplied is not None:
            check_supplied(r, supplied, src_path + ".supplied")
    if manual and outputs.get("artifacts"):
        # Stored by nobody, with or without s3 or spec.artifactRepository: a later step taking one
        # `from` the gate would fail once it ran, so refused here, as on a Flow step (flow_steps.py).
        r.add(forbidden(path + ".artifacts", "a Manual step runs no pod, so it has no files to store"))
        return
    names = set()
    stored: list[Mapping[str, Any]] = []
    for item_path, artifact in r.mappings(outputs.get("artifacts"), path + ".artifacts"):
        check_item_name(r, artifact, item_path, names)
        _check_output_artifact(r, artifact, item_path, mounts, stores_all)
        if stores_all or artifact.get("s3") is not None:
            stored.append(artifact)
    if (need := report_bound(stored)) > REPORT_LIMIT:
        r.add(
            too_many(
                path + ".artifacts",
                len(stored),
                _fitting(stored),
                f"the uploader reports each stored artifact's size and digest in its termination message, "
                f"which the kubelet cuts at {REPORT_LIMIT:,} bytes, and these could need {need:,}: the step "
                "would fail once its work ran; store fewer (one artifact may be a whole directory) or "
                "shorten their names",
            )
        )


# The uploader's report (api/transfer.py UploadReport) is its termination message, which the kubelet cuts
# at REPORT_LIMIT bytes (transfer/runner.py MESSAGE_LIMIT): a cut report is unreadable and fails the step
# after its work ran. As JSON it is `{"stored":{},"missing":[],"errors":{}}` (REPORT_FRAME bytes) with, per
# artifact, at its longest a stored entry `"NAME":{"size":S,"digest":"sha256:<64 hex>","archive":"A"}` (S
# at most 13 digits: S3 stores at most 5 TiB) and a comma between two; the uploader shortens what an error
# or a missing artifact takes below that (runner.report_text). tests/unit/test_artifact_keys_admission.py
# holds these numbers to the model's JSON.
REPORT_LIMIT = 4096
REPORT_FRAME = 38
REPORT_ENTRY = 121  # the entry's bytes but its name and its archive's


def _archive_name(artifact: Mapping[str, Any]) -> str:
    """The longest `archive` the report may give the artifact (planner/artifacts.archive_of): without
    `archive`, "none" for a file or "tar+gzip" for a directory."""
    archive = artifact.get("archive")
    if not isinstance(archive, Mapping):
        return "tar+gzip"
    packed = "zip" if archive.get("format") == "zip" else "tar"
    if archive.get("compression") == "none":
        return packed
    return "zip+deflate" if packed == "zip" else "tar+gzip"


def _entry(artifact: Mapping[str, Any]) -> int:
    name = artifact.get("name")
    size = len(name.encode(errors="surrogatepass")) if isinstance(name, str) else 0
    return size + REPORT_ENTRY + len(_archive_name(artifact))


def report_bound(stored: Sequence[Mapping[str, Any]]) -> int:
    """The most bytes the uploader's report on these stored output artifacts can take."""
    return REPORT_FRAME + sum(map(_entry, stored)) + max(len(stored) - 1, 0)


def _fitting(stored: Sequence[Mapping[str, Any]]) -> int:
    """How many of these artifacts' entries, taken in order, fit in the report (for the error's limit)."""
    used, count = REPORT_FRAME - 1, 0
    for artifact in stored:
        used += _entry(artifact) + 1
        if used > REPORT_LIMIT:
            break
        count += 1
    return count


def check_supplied(r: Reader, supplied: Mapping[str, Any], path: Path) -> None:
    """A gate's supplied value: its `default` must be one of its `enum` (else no approval could take it
    without a value), and both fit in an output value (core/gate_values.py)."""
    default = r.string(supplied.get("default"), path + ".default")
    if default is not None and len(default.encode()) > MAX_VALUE_BYTES:
        r.add(too_long(path + ".default", default, MAX_VALUE_BYTES))
    description = r.string(supplied.get("description"), path + ".description")
    if description is not None and len(description) > MAX_SUPPLIED_TEXT:
        r.add(too_long(path + ".description", description, MAX_SUPPLIED_TEXT))
    items = r.sequence(supplied.get("enum"), path + ".enum")
    if items is None:
        return
    if len(items) > MAX_SUPPLIED_ENUM:
        r.add(too_many(path + ".enum", len(items), MAX_SUPPLIED_ENUM))
    allowed: dict[str, None] = {}  # in the order declared
    for i, item in enumerate(items):
        value = r.string(item, f"{path}.enum[{i}]", item=True)
        if value is None:
            continue
        if len(value.encode()) > MAX_VALUE_BYTES:
            r.add(too_long(f"{path}.enum[{i}]", value, MAX_VALUE_BYTES))
        elif value in allowed:
            r.add(duplicate(f"{path}.enum[{i}]", value))
        allowed[value] = None
    if default is not None and allowed and default not in allowed:
        r.add(not_supported(path + ".default", default, allowed, "the default must be one of enum"))


def _under(path: str, mount: str) -> bool:
    base = mount.rstrip("/")
    return bool(base) and (path == base or path.startswith(base + "/"))


def check_transfer_names(r: Reader, pod: Mapping[str, Any], path: Path) -> None:
    """A step that moves artifacts gets zen-flow's volume and containers: its own may not take those names."""
    for field in ("volumes", "containers", "initContainers"):
        items = pod.get(field)
        for i, item in enumerate(items if isinstance(items, list) else ()):
            name = item.get("name") if isinstance(item, dict) else None
            if name in TRANSFER_NAMES:
                r.add(invalid(f"{path}.{field}[{i}].name", name, "reserved for zen-flow's artifact transfer"))
