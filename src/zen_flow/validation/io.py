"""A step's inputs and outputs: parameters and artifacts, and the steps they refer to.

A reference to another step (`<step>:$.path` in a jsonPath, `<step>/<artifact>` in `from`) must name a
step the referring step depends on, directly or through other steps: inputs are resolved when the Job is
created, and only a dependency is guaranteed to have finished (and committed its outputs) by then.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from zen_flow.api.transfer import TRANSFER_NAMES
from zen_flow.core.jsonpath import JsonPathError, parse
from zen_flow.validation.errors import (
    Path,
    duplicate,
    forbidden,
    invalid,
    not_found,
    not_supported,
    quote,
    required,
    too_many,
)
from zen_flow.validation.formats import (
    abs_path_problem,
    config_key_problem,
    label_problem,
    subdomain_problem,
)
from zen_flow.validation.index import StepIndex
from zen_flow.validation.plain_inputs import plain_artifact, plain_parameter
from zen_flow.validation.reader import Reader
from zen_flow.validation.size import MAX_OUTPUT_PARAMETERS

ARCHIVE_FORMATS = ("tar", "zip")
COMPRESSIONS = ("gzip", "none")
_SOURCES = ("jsonPath", "argument", "configMapKeyRef", "secretKeyRef")
_ARTIFACT_SOURCES = ("from", "http", "s3")

_MESSAGE_KEY = re.compile(r"^[A-Za-z0-9_.-]+$")


def _check_name(r: Reader, item: Mapping[str, Any], path: Path, seen: set[str]) -> None:
    name = item.get("name")
    if type(name) is str and name and name not in seen and subdomain_problem(name) is None:
        seen.add(name)  # nearly always: no field path built
        return
    name = r.string(name, path + ".name", require=True)
    if name is None:
        return
    if problem := subdomain_problem(name):
        r.add(invalid(path + ".name", name, problem))
    if name in seen:
        r.add(duplicate(path + ".name", name))
    seen.add(name)


def _check_step_ref(r: Reader, index: StepIndex, step: str, ref: str, value: str, path: Path) -> bool:
    """`ref` names a step that `step` depends on; reports and returns False otherwise."""
    if problem := label_problem(ref):
        r.add(invalid(path, value, f"step name {quote(ref)}: {problem}"))
        return False
    if ref not in index.paths:
        r.add(not_found(path, value, f"this flow has no step {quote(ref)}"))
        return False
    if ref == step or index.precedes(ref, step) is False:
        r.add(
            invalid(
                path,
                value,
                f"step {quote(step)} does not depend (directly or indirectly) on step {quote(ref)}, so its "
                "outputs are not available when this step starts",
            )
        )
        return False
    return True


def _check_input_json_path(r: Reader, index: StepIndex, step: str, value: str, path: Path) -> None:
    ref, colon, expr = value.partition(":")
    if not colon or value.startswith("$"):
        r.add(invalid(path, value, 'must name the step it reads and a JSONPath: "<step>:$.path"'))
        return
    if not expr.startswith("$"):
        r.add(invalid(path, value, 'the JSONPath after "<step>:" must start with "$"'))
    else:
        _check_json_path_syntax(r, expr, value, path)
    _check_step_ref(r, index, step, ref, value, path)


def _check_json_path_syntax(r: Reader, expr: str, value: str, path: Path) -> None:
    # The subset zen_flow.core.jsonpath evaluates: an unsupported form is rejected here, not at run time.
    try:
        parse(expr)
    except JsonPathError as err:
        r.add(invalid(path, value, f"unsupported JSONPath ($, .field, ['field'] and [index] only): {err}"))


def _check_key_ref(r: Reader, ref: Mapping[str, Any], path: Path) -> None:
    name = r.string(ref.get("name"), path + ".name", require=True)
    if name is not None and (problem := subdomain_problem(name)):
        r.add(invalid(path + ".name", name, problem))
    key = r.string(ref.get("key"), path + ".key", require=True)
    if key is not None and (problem := config_key_problem(key)):
        r.add(invalid(path + ".key", key, problem))


def _check_input_parameter(
    r: Reader, index: StepIndex, step: str, param: Mapping[str, Any], path: Path, arguments: frozenset[str]
) -> None:
    # Field paths are built only for the fields that are set: a 500-step flow has a thousand inputs.
    raw_value, raw_source = param.get("value"), param.get("valueFrom")
    value = None if raw_value is None else r.string(raw_value, path + ".value")
    src_path = path + ".valueFrom"
    source = None if raw_source is None else r.mapping(raw_source, src_path)
    if value is not None and raw_source is not None:
        r.add(forbidden(src_path, "may not be specified together with value: set exactly one"))
        return
    if value is None and raw_source is None:
        r.add(required(path + ".value", "set exactly one of value and valueFrom"))
        return
    if source is None:
        return
    if len(source) == 1 and source.get("jsonPath") is not None:  # the commonest source: no scan for others
        given = ["jsonPath"]
    else:
        given = [s for s in _SOURCES if source.get(s) is not None]
    if not given:
        r.add(required(src_path, "exactly one of jsonPath, argument, configMapKeyRef and secretKeyRef"))
        return
    if len(given) > 1:
        r.add(
            forbidden(
                src_path + "." + given[1],
                f"may not be specified together with {given[0]}: set exactly one source",
            )
        )
        return
    field = given[0]
    field_path = src_path + "." + field
    if field == "jsonPath":
        if (json_path := r.string(source[field], field_path)) is not None:
            _check_input_json_path(r, index, step, json_path, field_path)
    elif field == "argument":
        argument = r.string(source[field], field_path)
        if argument is not None and argument not in arguments:
            known = ", ".join(sorted(arguments)) or "none"
            r.add(not_found(field_path, argument, f"spec.arguments.parameters has no such name ({known})"))
    elif (ref := r.mapping(source[field], field_path)) is not None:  # configMapKeyRef, secretKeyRef
        _check_key_ref(r, ref, field_path)


def _check_input_artifact(
    r: Reader, index: StepIndex, step: str, artifact: Mapping[str, Any], path: Path
) -> None:
    raw_path, raw_from = artifact.get("path"), artifact.get("from")
    raw_http, raw_s3 = artifact.get("http"), artifact.get("s3")
    file_path = None if raw_path is None else r.string(raw_path, path + ".path")
    if file_path is not None and (problem := abs_path_problem(file_path)):
        r.add(invalid(path + ".path", file_path, problem))
    origin = None if raw_from is None else r.string(raw_from, path + ".from")
    http = None if raw_http is None else r.mapping(raw_http, path + ".http")
    s3 = None if raw_s3 is None else r.mapping(raw_s3, path + ".s3")
    given = [f for f in _ARTIFACT_SOURCES if artifact.get(f) is not None]
    if len(given) > 1:
        r.add(
            forbidden(f"{path}.{given[1]}", f"may not be specified together with {given[0]}: set exactly one")
        )
    elif not given:
        r.add(required(path + ".from", "set exactly one of from, http and s3"))
    if origin is not None:
        _check_from(r, index, step, origin, path + ".from")
    if s3 is not None:
        _check_s3(r, s3, path + ".s3", key_required=True)
    if http is not None:
        url = r.string(http.get("url"), path + ".http" + ".url", require=True)
        if url is not None and not url.startswith(("http://", "https://")):
            r.add(invalid(path + ".http" + ".url", url, "must start with http:// or https://"))
        r.string_map(http.get("headers"), path + ".http" + ".headers")


def _check_from(r: Reader, index: StepIndex, step: str, origin: str, path: Path) -> None:
    parts = origin.split("/")
    if len(parts) > 2 or not all(parts):
        r.add(invalid(path, origin, 'must be "<step>" or "<step>/<artifact>"'))
        return
    if not _check_step_ref(r, index, step, parts[0], origin, path):
        return
    stored = index.stored_artifacts.get(parts[0], frozenset())
    if len(parts) == 1:
        # The original's bare "<step>": that step's one stored artifact.
        if len(stored) != 1:
            r.add(
                invalid(
                    path,
                    origin,
                    f"step {quote(parts[0])} stores {len(stored)} artifacts: use <step>/<artifact>",
                )
            )
        return
    if problem := subdomain_problem(parts[1]):
        r.add(invalid(path, origin, f"artifact name {quote(parts[1])}: {problem}"))
    elif parts[1] not in index.output_artifacts.get(parts[0], frozenset()):
        r.add(not_found(path, origin, f"step {quote(parts[0])} has no output artifact {quote(parts[1])}"))
    elif parts[1] not in stored:
        r.add(
            invalid(
                path,
                origin,
                f"step {quote(parts[0])} does not store artifact {quote(parts[1])} (it has no s3), "
                "so no later step can fetch it",
            )
        )


def check_inputs(
    r: Reader,
    index: StepIndex,
    step: str,
    inputs: Mapping[str, Any],
    path: Path,
    arguments: frozenset[str] = frozenset(),
) -> None:
    # An input of a common shape that passes every rule is known in one call (plain_inputs.py); the
    # others are checked here, field by field, in order, so errors come as they always did.
    names: set[str] = set()
    params_path = path + ".parameters"
    params = r.sequence(inputs.get("parameters"), params_path)
    for i, param in enumerate(params or ()):
        if type(param) is dict and plain_parameter(index, step, param, names):
            continue
        item_path = f"{params_path}[{i}]"
        if (item := r.mapping(param, item_path, require=True)) is not None:
            _check_name(r, item, item_path, names)
            _check_input_parameter(r, index, step, item, item_path, arguments)
    names = set()
    artifacts_path = path + ".artifacts"
    artifacts = r.sequence(inputs.get("artifacts"), artifacts_path)
    for i, artifact in enumerate(artifacts or ()):
        if type(artifact) is dict and plain_artifact(index, step, artifact, names):
            continue
        item_path = f"{artifacts_path}[{i}]"
        if (item := r.mapping(artifact, item_path, require=True)) is not None:
            _check_name(r, item, item_path, names)
            _check_input_artifact(r, index, step, item, item_path)


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
        _check_json_path_syntax(r, value, value, path)


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
    r: Reader, artifact: Mapping[str, Any], path: Path, mounts: Sequence[str] | None
) -> None:
    file_path = r.string(artifact.get("path"), path + ".path", require=True)
    if file_path is not None and (problem := abs_path_problem(file_path)):
        r.add(invalid(path + ".path", file_path, problem))
    elif (
        file_path is not None
        and artifact.get("s3") is not None
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
        _check_s3(r, s3, path + ".s3")


def _check_s3(r: Reader, s3: Mapping[str, Any], path: Path, *, key_required: bool = False) -> None:
    r.string(s3.get("bucket"), path + ".bucket", require=True)
    r.string(s3.get("key"), path + ".key", require=key_required)
    r.string(s3.get("region"), path + ".region")
    endpoint = r.string(s3.get("endpoint"), path + ".endpoint")
    if endpoint and not endpoint.startswith(("http://", "https://")):
        r.add(invalid(path + ".endpoint", endpoint, "must start with http:// or https://"))
    r.boolean(s3.get("insecure"), path + ".insecure")
    for field in ("accessKeyIDSecretRef", "secretAccessKeySecretRef"):
        ref = r.mapping(s3.get(field), path + "." + field)
        if ref is None:
            continue
        name = r.string(ref.get("name"), path + "." + field + ".name", require=True)
        if name is not None and (problem := subdomain_problem(name)):
            r.add(invalid(path + "." + field + ".name", name, problem))
        key = r.string(ref.get("key"), path + "." + field + ".key")
        if key and (problem := config_key_problem(key)):
            r.add(invalid(path + "." + field + ".key", key, problem))


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
    if key is not None and not _MESSAGE_KEY.match(key):
        r.add(invalid(path + ".key", key, "must consist of letters, digits, '-', '_' or '.'"))


def check_outputs(
    r: Reader,
    outputs: Mapping[str, Any],
    path: Path,
    containers: Sequence[str] | None = None,
    mounts: Sequence[str] | None = None,
) -> None:
    """The outputs' own rules (check_output_references has the one that reads the step's name).
    `containers`: the names in the step's Job template (None when it has none to read); `mounts`: the
    mountPaths of its containers' volumes."""
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
        _check_name(r, param, item_path, names)
        source = r.mapping(param.get("valueFrom"), item_path + ".valueFrom", require=True)
        if source is None:
            continue
        src_path = item_path + ".valueFrom"
        has_path, has_message = (
            source.get("jsonPath") is not None,
            source.get("terminationMessage") is not None,
        )
        if has_path == has_message:
            what = "may not be specified together with jsonPath" if has_path else "set exactly one"
            target = ".terminationMessage" if has_path else ".jsonPath"
            error = forbidden if has_path else required
            r.add(error(src_path + target, f"{what}: an output reads jsonPath or terminationMessage"))
            continue
        json_path = r.string(source.get("jsonPath"), src_path + ".jsonPath")
        if json_path is not None:
            _check_output_json_path(r, json_path, src_path + ".jsonPath")
        message = r.mapping(source.get("terminationMessage"), src_path + ".terminationMessage")
        if message is not None:
            _check_termination_message(r, message, src_path + ".terminationMessage", containers)
    names = set()
    for item_path, artifact in r.mappings(outputs.get("artifacts"), path + ".artifacts"):
        _check_name(r, artifact, item_path, names)
        _check_output_artifact(r, artifact, item_path, mounts)


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
