"""A step's Job spec, field by field and across fields, as the Job API will check it when the step runs.

A template the Job API refuses fails its step `JobRejected` when the flow reaches it, hours after
`kubectl apply` said "created": an Indexed Job without `completions`, a `successPolicy` on a NonIndexed
Job, `maxFailedIndexes` without `backoffLimitPerIndex`. The rules are upstream's `validateJobSpec`
(pkg/apis/batch/validation), in its words where it has some, with the paths of the step's template.
One rule is zen-flow's own: a Job another controller manages (`managedBy`) is refused, for zen-flow could
not follow it (`MANAGED_BY_REFUSAL`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from zen_flow.validation.errors import (
    Path,
    forbidden,
    invalid,
    not_supported,
    quote,
    required,
    too_long,
    too_many,
)
from zen_flow.validation.reader import INT32_MAX, Reader

COMPLETION_MODES = ("NonIndexed", "Indexed")
POD_REPLACEMENT_POLICIES = ("Failed", "TerminatingOrFailed")
# The Job API accepts only this beside a podFailurePolicy (the Job's own, or the flow's zen-flow copies in).
POD_REPLACEMENT_WITH_PFP = ("Failed",)
JOB_CONTROLLER = "kubernetes.io/job-controller"
MANAGED_BY_REFUSAL = (
    "zen-flow reads the Job controller's conditions and pods in this cluster, which a Job another "
    "controller manages never gets (MultiKueue's kueue.x-k8s.io/multikueue runs it on a worker cluster): "
    f"MultiKueue is not supported; leave managedBy out, or set {JOB_CONTROLLER}"
)
# Upstream's bounds for Indexed Jobs (they cap the length of the Job's completed and failed index lists).
MAX_INDEXED_PARALLELISM = 100_000
MAX_FAILED_INDEXES = 100_000
COMPLETIONS_SOFT_LIMIT = 100_000
HIGH_COMPLETIONS_PARALLELISM = 10_000
HIGH_COMPLETIONS_MAX_FAILED = 10_000
MAX_SUCCESS_RULES = 20
MAX_SUCCEEDED_INDEXES = 64 * 1024
_INDEX = re.compile(r"\+?[0-9]+")  # what Go's strconv.Atoi reads of an index (a sign never fits here)


def check_job_spec_fields(r: Reader, spec: Mapping[str, Any], path: Path) -> None:
    """The Job spec's own fields, but its pod template (template.py)."""
    counts: dict[str, int | None] = {}
    for field in ("parallelism", "completions", "ttlSecondsAfterFinished", "backoffLimitPerIndex"):
        counts[field] = value = r.integer(spec.get(field), path + "." + field, maximum=INT32_MAX)
        if value is not None and value < 0:
            r.add(invalid(path + "." + field, value, "must be greater than or equal to 0"))
    backoff = r.integer(spec.get("backoffLimit"), path + ".backoffLimit", maximum=INT32_MAX)
    if backoff is not None and backoff < 0:
        r.add(invalid(path + ".backoffLimit", backoff, "must be greater than or equal to 0"))
    deadline = r.integer(spec.get("activeDeadlineSeconds"), path + ".activeDeadlineSeconds")
    if deadline is not None and deadline <= 0:
        r.add(invalid(path + ".activeDeadlineSeconds", deadline, "must be greater than 0"))
    r.boolean(spec.get("suspend"), path + ".suspend")
    if spec.get("selector") is not None and spec.get("manualSelector") is not True:
        r.add(
            forbidden(
                path + ".selector",
                "the Job controller generates the selector; set manualSelector: true to supply one",
            )
        )
    managed_by = r.string(spec.get("managedBy"), path + ".managedBy")
    if managed_by is not None and managed_by != JOB_CONTROLLER:
        r.add(forbidden(path + ".managedBy", MANAGED_BY_REFUSAL))
    _check_pod_replacement(r, spec, path)
    raw_mode = spec.get("completionMode")
    mode = r.string(raw_mode, path + ".completionMode")
    if raw_mode is not None and mode not in COMPLETION_MODES:
        if mode is not None:  # else no string, said
            r.add(not_supported(path + ".completionMode", mode, COMPLETION_MODES))
        return  # which rules apply is not known
    _check_indexes(r, spec, path, counts, indexed=mode == "Indexed")


def pod_replacement_policy(spec: Mapping[str, Any]) -> str | None:
    """The template's podReplacementPolicy when it is one the Job API knows (others are reported)."""
    value = spec.get("podReplacementPolicy")
    return value if isinstance(value, str) and value in POD_REPLACEMENT_POLICIES else None


def _check_pod_replacement(r: Reader, spec: Mapping[str, Any], path: Path) -> None:
    field = path + ".podReplacementPolicy"
    value = r.string(spec.get("podReplacementPolicy"), field)
    if value is None:
        return
    if value not in POD_REPLACEMENT_POLICIES:
        r.add(not_supported(field, value, POD_REPLACEMENT_POLICIES))
    elif spec.get("podFailurePolicy") is not None and value not in POD_REPLACEMENT_WITH_PFP:
        r.add(not_supported(field, value, POD_REPLACEMENT_WITH_PFP, "the Job has a podFailurePolicy"))


def _check_indexes(
    r: Reader, spec: Mapping[str, Any], path: Path, counts: Mapping[str, int | None], *, indexed: bool
) -> None:
    """completions, parallelism, backoffLimitPerIndex, maxFailedIndexes and successPolicy together."""
    completions, parallelism = counts["completions"], counts["parallelism"]
    per_index = counts["backoffLimitPerIndex"]
    max_failed = r.integer(spec.get("maxFailedIndexes"), path + ".maxFailedIndexes", maximum=INT32_MAX)
    if max_failed is not None and max_failed < 0:
        r.add(invalid(path + ".maxFailedIndexes", max_failed, "must be greater than or equal to 0"))
    if spec.get("maxFailedIndexes") is not None and spec.get("backoffLimitPerIndex") is None:
        r.add(required(path + ".backoffLimitPerIndex", "when maxFailedIndexes is specified"))
    if not indexed:
        for field, value in (("backoffLimitPerIndex", per_index), ("maxFailedIndexes", max_failed)):
            if value is not None:
                r.add(invalid(path + "." + field, value, "requires indexed completion mode"))
        policy = r.mapping(spec.get("successPolicy"), path + ".successPolicy")
        if policy is not None:
            r.add(invalid(path + ".successPolicy", policy, "requires indexed completion mode"))
        return
    if spec.get("completions") is None:
        r.add(required(path + ".completions", "when completion mode is Indexed"))
    if parallelism is not None and parallelism > MAX_INDEXED_PARALLELISM:
        detail = f"must be less than or equal to {MAX_INDEXED_PARALLELISM} when completion mode is Indexed"
        r.add(invalid(path + ".parallelism", parallelism, detail))
    if max_failed is not None and completions is not None and max_failed > completions:
        r.add(invalid(path + ".maxFailedIndexes", max_failed, "must be less than or equal to completions"))
    if max_failed is not None and max_failed > MAX_FAILED_INDEXES:
        detail = f"must be less than or equal to {MAX_FAILED_INDEXES}"
        r.add(invalid(path + ".maxFailedIndexes", max_failed, detail))
    if completions is not None and completions > COMPLETIONS_SOFT_LIMIT and per_index is not None:
        above = f"when completions are above {COMPLETIONS_SOFT_LIMIT} and used with backoffLimitPerIndex"
        if spec.get("maxFailedIndexes") is None:
            detail = f"must be specified when completions is above {COMPLETIONS_SOFT_LIMIT}"
            r.add(required(path + ".maxFailedIndexes", detail))
        if parallelism is not None and parallelism > HIGH_COMPLETIONS_PARALLELISM:
            detail = f"must be less than or equal to {HIGH_COMPLETIONS_PARALLELISM} {above}"
            r.add(invalid(path + ".parallelism", parallelism, detail))
        if max_failed is not None and max_failed > HIGH_COMPLETIONS_MAX_FAILED:
            detail = f"must be less than or equal to {HIGH_COMPLETIONS_MAX_FAILED} {above}"
            r.add(invalid(path + ".maxFailedIndexes", max_failed, detail))
    policy = r.mapping(spec.get("successPolicy"), path + ".successPolicy")
    if policy is not None:
        _check_success_policy(r, policy, path + ".successPolicy", completions)


def _check_success_policy(r: Reader, policy: Mapping[str, Any], path: Path, completions: int | None) -> None:
    """An Indexed Job's successPolicy; the rules' bounds only when `completions` is known (else the
    missing or wrong completions is what is reported)."""
    rules_path = path + ".rules"
    rules = r.sequence(policy.get("rules"), rules_path)
    if not rules and (rules is not None or policy.get("rules") is None):
        r.add(required(rules_path, "a successPolicy needs at least one rule"))
    elif rules is not None and len(rules) > MAX_SUCCESS_RULES:
        r.add(too_many(rules_path, len(rules), MAX_SUCCESS_RULES))
    for rule_path, rule in r.mappings(rules, rules_path):
        count_path, indexes_path = rule_path + ".succeededCount", rule_path + ".succeededIndexes"
        count = r.integer(rule.get("succeededCount"), count_path, maximum=INT32_MAX)
        indexes = r.string(rule.get("succeededIndexes"), indexes_path)
        if rule.get("succeededCount") is None and rule.get("succeededIndexes") is None:
            r.add(required(rule_path, "at least one of succeededCount or succeededIndexes must be specified"))
        total: int | None = None
        if indexes is not None and len(indexes) > MAX_SUCCEEDED_INDEXES:
            r.add(too_long(indexes_path, indexes, MAX_SUCCEEDED_INDEXES))
        elif indexes is not None and completions is not None:
            total, problem = _count_indexes(indexes, completions)
            if problem:
                r.add(invalid(indexes_path, indexes, f"error parsing succeededIndexes: {problem}"))
        if count is None:
            continue
        if count < 0:
            r.add(invalid(count_path, count, "must be greater than or equal to 0"))
        elif completions is not None and count > completions:
            detail = f"must be less than or equal to {completions} (the number of specified completions)"
            r.add(invalid(count_path, count, detail))
        elif total is not None and count > total:
            detail = f"must be less than or equal to {total} (the number of indexes in succeededIndexes)"
            r.add(invalid(count_path, count, detail))


def _count_indexes(text: str, completions: int) -> tuple[int | None, str]:
    """How many indexes `text` ("0,2-4") names, or why the Job API will not read it: intervals in
    increasing order, each index below `completions`."""
    if not text:
        return 0, ""
    total, last = 0, -1
    for interval in text.split(","):
        bounds = interval.split("-")
        if len(bounds) > 2:
            return None, f"the fragment {quote(interval)} has more than two parts separated by '-'"
        for bound in bounds:
            if not _INDEX.fullmatch(bound):
                return None, f"cannot convert string to integer for index: {quote(bound)}"
            if int(bound) >= completions:
                return None, f"too large index: {quote(bound)}"
        low, high = int(bounds[0]), int(bounds[-1])
        if len(bounds) == 2 and low >= high:
            return None, f"non-increasing order, previous: {low}, current: {high}"
        if low <= last:
            return None, f"non-increasing order, previous: {last}, current: {low}"
        total += high - low + 1
        last = high
    return total, ""
