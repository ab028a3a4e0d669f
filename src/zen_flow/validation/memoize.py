"""Rules for a step's `memoize` (planner/memoization.py): a Job step's result cached under a key.

Refused where a cached result would be wrong or could not be used: on a Manual step (it runs nothing),
on a finally step (cleanup must run every time: a rerun runs its finally steps again), on a step with
output artifacts (the cache holds values, not files: an entry would point at stored
objects that outlive neither their bucket's lifecycle rules nor a rerun of the flow that stored them),
a key that reads a parameter from a ConfigMap or Secret (only the pod knows that value, so the
controller could not compute the key), and a matrix step's key that does not read each of its matrix
parameters (its items would share one result). A dependent may not read a memoized step's Job status
(`build:$.succeeded`): a hit runs no Job, so only the stored outputs (`$.outputs.parameters.NAME`) are
there on every run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zen_flow.core.durations import parse_duration
from zen_flow.core.parameter_forms import marked, placeholders
from zen_flow.validation.errors import Path, forbidden, invalid, quote, too_long
from zen_flow.validation.formats import DURATION_MSG, subdomain_problem
from zen_flow.validation.reader import Reader

MAX_KEY = 1024
MANUAL_MEMOIZE = "a Manual step runs nothing, so there is no result to memoize"
FINALLY_MEMOIZE = (
    "a finally step cannot be memoized: cleanup or a notification must run every time the flow ends "
    "(a rerun runs its finally steps again), not be served from an earlier run"
)
ARTIFACTS_MEMOIZE = (
    "a step with output artifacts cannot be memoized: the cache holds parameter values, not files, and "
    "an entry would point at stored objects it cannot keep alive (bucket lifecycle rules, a rerun of the "
    "flow that stored them); memoize the step that reads them instead, or drop outputs.artifacts"
)


def check_memoize(
    r: Reader,
    raw: Any,
    path: Path,
    *,
    manual: bool,
    final: bool,
    outputs: Mapping[str, Any] | None,
) -> None:
    """The field's own rules; `outputs`: the step's outputs (its artifacts cannot be memoized);
    `final`: a finally step."""
    memo = r.mapping(raw, path)
    if memo is None:
        return
    if manual:
        r.add(forbidden(path, MANUAL_MEMOIZE))
        return
    if final:
        r.add(forbidden(path, FINALLY_MEMOIZE))
    if outputs is not None and outputs.get("artifacts"):
        r.add(forbidden(path, ARTIFACTS_MEMOIZE))
    key = r.string(memo.get("key"), path + ".key", require=True)  # an empty one is reported as missing
    if key is not None and len(key) > MAX_KEY:
        r.add(too_long(path + ".key", key, MAX_KEY))
    age = r.string(memo.get("maxAge"), path + ".maxAge")
    if age is not None:
        seconds = parse_duration(age)
        if seconds is None:
            r.add(invalid(path + ".maxAge", age, DURATION_MSG))
        elif seconds <= 0:
            r.add(invalid(path + ".maxAge", age, "must be greater than 0"))
    cache = r.mapping(memo.get("cache"), path + ".cache", require=True)
    if cache is None:
        return
    config_map = r.mapping(cache.get("configMap"), path + ".cache.configMap", require=True)
    if config_map is None:
        return
    name = r.string(config_map.get("name"), path + ".cache.configMap.name", require=True)
    if name is not None and (problem := subdomain_problem(name)) is not None:
        r.add(invalid(path + ".cache.configMap.name", name, problem))


def memoized_job_status(step: str, expr: str) -> str:
    """Why a dependent may not read `expr` (not an output parameter) of the memoized `step`."""
    return (
        f"step {quote(step)} is memoized: a cache hit runs no Job, so the Job status {quote(expr)} reads "
        f"is not there on every run; declare the value as an output parameter of step {quote(step)} "
        f"(outputs.parameters[].valueFrom.jsonPath: {quote(expr)}) and read "
        f"{quote(step + ':$.outputs.parameters.NAME')}"
    )


def check_memoize_key_inputs(
    r: Reader, step: Mapping[str, Any], inputs: Mapping[str, Any] | None, path: Path
) -> None:
    """The key's placeholders must name parameters whose value the controller knows (not a ConfigMap's
    or a Secret's: only the pod reads those). Unknown names are check_placeholders' to report."""
    memo = step.get("memoize")
    key = memo.get("key") if isinstance(memo, dict) else None
    if not isinstance(key, str) or not marked(key):
        return
    hidden = _pod_only(inputs)
    for text, name in placeholders(key):
        if name in hidden:
            r.add(
                invalid(
                    path + ".memoize.key",
                    text,
                    f"input parameter {quote(name)} comes from a {hidden[name]}, which only the pod reads: "
                    "the controller cannot compute the key (put what the value depends on in the key "
                    "instead)",
                )
            )


def check_matrix_memoize_key(r: Reader, step: Mapping[str, Any], path: Path) -> None:
    """A matrix step's items share its `memoize.key`: a key that does not read every matrix parameter
    would be the same for two items, and the second would be served the first one's result."""
    memo, matrix = step.get("memoize"), step.get("matrix")
    key = memo.get("key") if isinstance(memo, Mapping) else None
    params = matrix.get("parameters") if isinstance(matrix, Mapping) else None
    if not isinstance(key, str) or not key or not isinstance(params, list):
        return  # no key: check_memoize reports it; no parameters: the matrix's own rules do
    read = {name for _, name in placeholders(key)} if marked(key) else set()
    names = [p["name"] for p in params if isinstance(p, Mapping) and isinstance(p.get("name"), str)]
    missing = [n for n in dict.fromkeys(names) if n and n not in read]
    if missing:
        r.add(
            invalid(
                path + ".memoize.key",
                key,
                "the items of a matrix step share its key, so it must contain the placeholder of every "
                "matrix parameter, or items with different values would be served one another's result; "
                f"missing: {', '.join('{{inputs.parameters.%s}}' % n for n in missing)}",  # noqa: UP031
            )
        )


def _pod_only(inputs: Mapping[str, Any] | None) -> dict[str, str]:
    """{parameter: "ConfigMap" | "Secret"} of the inputs the controller never reads."""
    params = inputs.get("parameters") if inputs is not None else None
    found: dict[str, str] = {}
    for p in params if isinstance(params, list) else ():
        source = p.get("valueFrom") if isinstance(p, dict) else None
        if not isinstance(source, dict) or not isinstance(p.get("name"), str) or "value" in p:
            continue
        if source.get("configMapKeyRef") is not None:
            found[p["name"]] = "ConfigMap"
        elif source.get("secretKeyRef") is not None:
            found[p["name"]] = "Secret"
    return found
