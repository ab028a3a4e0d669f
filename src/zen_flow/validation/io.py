"""A step's inputs: parameters and artifacts, and the steps they refer to (outputs: outputs.py).

A reference to another step (`<step>:$.path` in a jsonPath, `<step>/<artifact>` in `from`) must name a
step the referring step depends on, directly or through other steps: inputs are resolved when the Job is
created, and only a dependency is guaranteed to have finished (and committed its outputs) by then.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from zen_flow.core.jsonpath import JsonPathError, parse
from zen_flow.core.parameter_forms import env_name
from zen_flow.core.urls import has_userinfo
from zen_flow.validation.errors import (
    Path,
    duplicate,
    forbidden,
    invalid,
    not_found,
    quote,
    required,
    too_long,
    too_many,
)
from zen_flow.validation.formats import (
    abs_path_problem,
    config_key_problem,
    label_problem,
    s3_key_problem,
    subdomain_problem,
)
from zen_flow.validation.index import StepIndex
from zen_flow.validation.limits import MAX_JSON_PATH, MAX_S3_KEY_BYTES
from zen_flow.validation.memoize import memoized_job_status
from zen_flow.validation.plain_inputs import plain_artifact, plain_parameter
from zen_flow.validation.reader import Reader

_SOURCES = ("jsonPath", "argument", "configMapKeyRef", "secretKeyRef")
_ARTIFACT_SOURCES = ("from", "http", "s3")
# A URL's `user:password@` (core/urls.py): the downloader cannot send it, and the spec, the Job and
# every message quoting the URL would show it.
CREDENTIALS_IN_URL = "may not hold a user name or password (user:password@host): "
HTTP_CREDENTIALS = "give the credential as a header from a Secret, in headersFrom (e.g. Authorization)"
S3_CREDENTIALS = "give the keys from a Secret, in accessKeyIDSecretRef and secretAccessKeySecretRef"


def check_item_name(r: Reader, item: Mapping[str, Any], path: Path, seen: set[str]) -> None:
    """An input's or output's name: a DNS-1123 subdomain, unique in its list (`seen`)."""
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
    if ref not in index.paths and ref not in index.groups:
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
    parsed = False
    if not expr.startswith("$"):
        r.add(invalid(path, value, 'the JSONPath after "<step>:" must start with "$"'))
    else:
        parsed = check_json_path_syntax(r, expr, value, path)
    if _check_step_ref(r, index, step, ref, value, path) and parsed:
        output = read_output(expr)
        declared = index.output_parameters.get(ref, frozenset())
        if output is None and ref in index.groups:
            r.add(invalid(path, value, matrix_job_status(ref, index.groups[ref], expr)))
        elif output is None and ref in index.memoized:
            r.add(invalid(path, value, memoized_job_status(ref, expr)))
        elif output is not None and output not in declared:
            r.add(
                not_found(
                    path,
                    value,
                    f"step {quote(ref)} has no output parameter {quote(output)} "
                    f"(its outputs.parameters: {', '.join(sorted(declared)) or 'none'})",
                )
            )


def matrix_job_status(ref: str, items: tuple[str, ...], expr: str) -> str:
    """Why a dependent may not read a matrix step's Job status."""
    return (
        f"step {quote(ref)} is a matrix step, with one Job per item ({items[0]} to {items[-1]}): there is "
        f"no single Job status to read; read an item's ({quote(items[0] + ':' + expr)}), or the step's "
        f"outputs.parameters (a JSON array of every item's value)"
    )


def read_output(expr: str) -> str | None:
    """The output parameter a `<step>:` path names (`$.outputs.parameters.NAME`), None for any other
    path (a path into the Job's status). `expr` parses."""
    segments = parse(expr)
    if segments[:2] == ("outputs", "parameters") and len(segments) > 2 and isinstance(segments[2], str):
        return segments[2]
    return None


def check_json_path_syntax(r: Reader, expr: str, value: str, path: Path) -> bool:
    """Is `expr` in the subset zen_flow.core.jsonpath evaluates? An unsupported form is rejected here,
    not at run time."""
    try:
        parse(expr)
    except JsonPathError as err:
        r.add(invalid(path, value, f"unsupported JSONPath ($, .field, ['field'] and [index] only): {err}"))
        return False
    return True


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
        if (json_path := r.string(source[field], field_path)) is None:
            pass
        elif len(json_path) > MAX_JSON_PATH:
            r.add(too_long(field_path, json_path, MAX_JSON_PATH))
        else:
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
        check_s3(r, s3, path + ".s3", key_required=True)
    if http is not None:
        url = r.string(http.get("url"), path + ".http" + ".url", require=True)
        if url is not None and has_userinfo(url):  # the URL is not shown: the password would be
            r.add(forbidden(path + ".http.url", CREDENTIALS_IN_URL + HTTP_CREDENTIALS))
        elif url is not None and not url.startswith(("http://", "https://")):
            r.add(invalid(path + ".http" + ".url", url, "must start with http:// or https://"))
        plain = r.string_map(http.get("headers"), path + ".http" + ".headers") or {}
        _check_headers_from(
            r, http.get("headersFrom"), {h.lower() for h in plain}, path + ".http.headersFrom"
        )


# RFC 9110's field-name: one or more "tchar" (fullmatch: Python's `$` would let a final "\n" through).
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
MAX_HEADERS_FROM = 16


def _check_headers_from(r: Reader, value: Any, taken: set[str], path: Path) -> None:
    """Headers whose values are Secrets' keys: a valid header name, once (beside `headers` too), and a
    Secret's name and key."""
    items = r.mappings(value, path)
    if len(items) > MAX_HEADERS_FROM:
        r.add(too_many(path, len(items), MAX_HEADERS_FROM))
    for item_path, item in items:
        name = r.string(item.get("name"), item_path + ".name", require=True)
        if name is not None:
            if not _TOKEN.fullmatch(name) or len(name) > 256:
                r.add(invalid(item_path + ".name", name, "must be an HTTP header name (letters, digits, -)"))
            elif name.lower() in taken:
                r.add(
                    duplicate(
                        item_path + ".name", name, "a header may be given once, in headers or headersFrom"
                    )
                )
            taken.add(name.lower())
        ref = r.mapping(item.get("secretKeyRef"), item_path + ".secretKeyRef", require=True)
        if ref is not None:
            _check_key_ref(r, ref, item_path + ".secretKeyRef")


def _check_from(r: Reader, index: StepIndex, step: str, origin: str, path: Path) -> None:
    parts = origin.split("/")
    if len(parts) > 2 or not all(parts):
        r.add(invalid(path, origin, 'must be "<step>" or "<step>/<artifact>"'))
        return
    if not _check_step_ref(r, index, step, parts[0], origin, path):
        return
    if (items := index.groups.get(parts[0])) is not None:
        item = "/".join((items[0], *parts[1:]))
        r.add(
            invalid(
                path,
                origin,
                f"step {quote(parts[0])} is a matrix step: each of its items stores its own artifacts, "
                f"so name an item's ({quote(item)})",
            )
        )
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
                f"step {quote(parts[0])} does not store artifact {quote(parts[1])} (it has no s3 and the "
                "flow no spec.artifactRepository), "
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
    params, artifacts = inputs.get("parameters"), inputs.get("artifacts")
    at = path + ".parameters"
    _check_items(r, index, step, params, at, plain_parameter, _check_input_parameter, arguments)
    _check_items(r, index, step, artifacts, path + ".artifacts", plain_artifact, _check_input_artifact)
    if isinstance(params, list) and len(params) > 1:
        _check_env_names(r, params, at)


def _check_env_names(r: Reader, params: list[Any], path: Path) -> None:
    """Each parameter is an env var `ZF_PARAM_<NAME>` of the step's containers (planner/parameters.py):
    two names that map to one (`a.b`, `a-b`) would leave one value unreachable."""
    seen: dict[str, str] = {}
    for i, param in enumerate(params):
        name = param.get("name") if isinstance(param, dict) else None
        if not isinstance(name, str) or not name:
            continue
        env = env_name(name)
        other = seen.setdefault(env, name)
        if other != name:  # the same name twice is reported as a duplicate already
            r.add(
                duplicate(
                    f"{path}[{i}].name",
                    name,
                    f"its environment variable {env} is also that of input parameter {quote(other)}",
                )
            )


_Plain = Callable[[StepIndex, str, Mapping[str, Any], set[str]], bool]


def _check_items(
    r: Reader,
    index: StepIndex,
    step: str,
    raw: Any,
    path: Path,
    plain: _Plain,
    check: Callable[..., None],
    *extra: Any,
) -> None:
    """A list of named inputs. An item of a common shape that passes every rule is known in one call
    (`plain`, plain_inputs.py); the others are checked field by field (`check(r, index, step, item,
    item_path, *extra)`), in order, so errors come as they always did. (No closure per list: this runs
    for every step of a flow.)"""
    names: set[str] = set()
    for i, item in enumerate(r.sequence(raw, path) or ()):
        if type(item) is dict and plain(index, step, item, names):
            continue
        item_path = f"{path}[{i}]"
        if (found := r.mapping(item, item_path, require=True)) is not None:
            check_item_name(r, found, item_path, names)
            check(r, index, step, found, item_path, *extra)


def check_s3(r: Reader, s3: Mapping[str, Any], path: Path, *, key_required: bool = False) -> None:
    r.string(s3.get("bucket"), path + ".bucket", require=True)
    key = r.string(s3.get("key"), path + ".key", require=key_required)
    if key and (problem := s3_key_problem(key)):
        r.add(invalid(path + ".key", key, problem))
    elif key and len(key.encode(errors="surrogatepass")) > MAX_S3_KEY_BYTES:
        r.add(too_long(path + ".key", key, MAX_S3_KEY_BYTES, "S3 refuses a longer key"))
    r.string(s3.get("region"), path + ".region")
    endpoint = r.string(s3.get("endpoint"), path + ".endpoint")
    if endpoint and has_userinfo(endpoint):
        r.add(forbidden(path + ".endpoint", CREDENTIALS_IN_URL + S3_CREDENTIALS))
    elif endpoint and not endpoint.startswith(("http://", "https://")):
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
