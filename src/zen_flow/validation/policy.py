"""spec.executionPolicy, and podFailurePolicy as the batch/v1 Job API will accept it.

The flow's podFailurePolicy is copied into every Job step that has none of its own (JOBFLOW_API.md
decision 10), so it must be valid for each of those Jobs: Kubernetes honours a podFailurePolicy only
with restartPolicy Never, and a rule's containerName must name a container of that Job's pod. Both are
checked against every step it applies to, naming the step, instead of failing at Job creation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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
from zen_flow.validation.formats import label_problem, qualified_name_problem
from zen_flow.validation.job_spec import POD_REPLACEMENT_WITH_PFP
from zen_flow.validation.limits import (
    MAX_EXIT_CODE_VALUES,
    MAX_POD_CONDITION_PATTERNS,
    MAX_POD_FAILURE_RULES,
    MAX_POD_PENDING_TIMEOUT_SECONDS,
)
from zen_flow.validation.reader import INT32_MAX, Reader
from zen_flow.validation.template import TemplateInfo

CONCURRENCY_POLICIES = ("Allow", "Forbid", "Replace")
JOB_RETENTIONS = ("All", "LastAttempt", "FailedOnly")
TTL_STRATEGY_FIELDS = ("secondsAfterSuccess", "secondsAfterFailure")
POD_FAILURE_ACTIONS = ("FailJob", "Ignore", "Count")
EXIT_CODE_OPERATORS = ("In", "NotIn")
CONDITION_STATUSES = ("True", "False", "Unknown")
# What finallyGraceSeconds is, said by the validator and the CRD's rule alike.
FINALLY_GRACE_IS = "the last seconds of the flow's deadline, kept for its finally steps"
FINALLY_GRACE_NEEDS_DEADLINE = f"needs activeDeadlineSeconds: it is {FINALLY_GRACE_IS}"
FINALLY_GRACE_TOO_LONG = f"must be less than activeDeadlineSeconds: it is {FINALLY_GRACE_IS}"
# executionPolicy.priority's bound either way (the CRD's minimum and maximum): room enough to rank, and a
# scale every team of a namespace reads the same.
MAX_PRIORITY = 1000


@dataclass(frozen=True)
class PolicyNeeds:
    """What a podFailurePolicy asks of each Job it is put into."""

    path: Path
    container_refs: tuple[tuple[Path, str], ...]


def check_execution_policy(
    r: Reader, policy: Mapping[str, Any], path: Path, *, partial: bool = False
) -> PolicyNeeds | None:
    """Check spec.executionPolicy; returns the needs of its podFailurePolicy, if it has one. `partial`:
    the policy of a flow naming a template, not expanded yet, whose fields go over the template's one
    by one: the rules across fields are the merged policy's (`check_finally_grace`)."""
    concurrency = r.string(policy.get("concurrencyPolicy"), path + ".concurrencyPolicy")
    if concurrency and concurrency not in CONCURRENCY_POLICIES:
        r.add(not_supported(path + ".concurrencyPolicy", concurrency, CONCURRENCY_POLICIES))
    for field in ("ttlSecondsAfterFinished", "backoffLimit"):
        value = r.integer(policy.get(field), path + "." + field, maximum=INT32_MAX)
        if value is not None and value < 0:
            r.add(invalid(path + "." + field, value, "must be greater than or equal to 0"))
    check_pod_pending_timeout(r, policy.get("podPendingTimeoutSeconds"), path + ".podPendingTimeoutSeconds")
    deadline = r.integer(policy.get("activeDeadlineSeconds"), path + ".activeDeadlineSeconds")
    if deadline is not None and deadline <= 0:
        r.add(invalid(path + ".activeDeadlineSeconds", deadline, "must be greater than 0"))
    check_finally_grace(r, policy, deadline, path, partial=partial)
    parallelism = r.integer(policy.get("parallelism"), path + ".parallelism", maximum=INT32_MAX)
    if parallelism is not None and parallelism < 1:
        r.add(invalid(path + ".parallelism", parallelism, "must be at least 1"))
    priority = r.integer(policy.get("priority"), path + ".priority", maximum=MAX_PRIORITY)
    if priority is not None and priority < -MAX_PRIORITY:
        r.add(invalid(path + ".priority", priority, f"must be greater than or equal to {-MAX_PRIORITY}"))
    strategy_path = path + ".ttlStrategy"
    strategy = r.mapping(policy.get("ttlStrategy"), strategy_path)
    for field in TTL_STRATEGY_FIELDS:
        ttl = r.integer((strategy or {}).get(field), f"{strategy_path}.{field}", maximum=INT32_MAX)
        if ttl is not None and ttl < 0:
            r.add(invalid(f"{strategy_path}.{field}", ttl, "must be greater than or equal to 0"))
    retention = r.string(policy.get("jobRetention"), path + ".jobRetention")
    if retention and retention not in JOB_RETENTIONS:
        r.add(not_supported(path + ".jobRetention", retention, JOB_RETENTIONS))
    pfp_path = path + ".podFailurePolicy"
    pfp = r.mapping(policy.get("podFailurePolicy"), pfp_path)
    if pfp is None:
        return None
    return check_pod_failure_policy(r, pfp, pfp_path, allow_fail_index=False)


def check_finally_grace(
    r: Reader, policy: Mapping[str, Any], deadline: int | None, path: Path, *, partial: bool = False
) -> None:
    """finallyGraceSeconds: the last seconds of activeDeadlineSeconds kept for the finally steps
    (planner/grace.py), so it needs that deadline and must leave the other steps some of it. A
    `partial` policy (a flow naming a template, not expanded yet) is merged with the template's first:
    the deadline may be the template's, or a smaller one the flow's; the merged policy is checked
    (the webhook's, or the controller's expansion: validation.expansion). The CRD's rules on the spec
    say the same, for a spec that does not name a template (config/crd)."""
    field = path + ".finallyGraceSeconds"
    grace = r.integer(policy.get("finallyGraceSeconds"), field)
    if grace is None:
        return
    if grace <= 0:
        r.add(invalid(field, grace, "must be greater than 0"))
    elif partial:
        return
    elif policy.get("activeDeadlineSeconds") is None:
        r.add(invalid(field, grace, FINALLY_GRACE_NEEDS_DEADLINE))
    elif deadline is not None and deadline > 0 and grace >= deadline:
        r.add(invalid(field, grace, FINALLY_GRACE_TOO_LONG))


def check_pod_pending_timeout(r: Reader, value: Any, path: Path) -> None:
    """podPendingTimeoutSeconds (the flow's, or a step's): whole seconds, 1 to a day."""
    seconds = r.integer(value, path)
    if seconds is not None and not 1 <= seconds <= MAX_POD_PENDING_TIMEOUT_SECONDS:
        r.add(invalid(path, seconds, f"must be between 1 and {MAX_POD_PENDING_TIMEOUT_SECONDS} (a day)"))


def check_pod_failure_policy(
    r: Reader, pfp: Mapping[str, Any], path: Path, *, allow_fail_index: bool, as_written: bool = False
) -> PolicyNeeds:
    """`as_written`: a Job template's own policy, which reaches the Job API as it is: no operator is
    filled in nor exit codes sorted for it, as the Job builder does for the flow's (planner/jobs.py)."""
    rules_path = path + ".rules"
    raw_rules = pfp.get("rules")
    rules = r.sequence(raw_rules, rules_path)
    if raw_rules is None or (rules is not None and len(rules) == 0):
        r.add(required(rules_path, "a podFailurePolicy needs at least one rule"))
    elif rules is not None and len(rules) > MAX_POD_FAILURE_RULES:
        r.add(too_many(rules_path, len(rules), MAX_POD_FAILURE_RULES))
    refs: list[tuple[Path, str]] = []
    for rule_path, rule in r.mappings(rules, rules_path):
        ref = _check_rule(r, rule, rule_path, allow_fail_index, as_written)
        if ref is not None:
            refs.append(ref)
    return PolicyNeeds(path, tuple(refs))


def _check_rule(
    r: Reader, rule: Mapping[str, Any], path: Path, allow_fail_index: bool, as_written: bool
) -> tuple[Path, str] | None:
    action = r.string(rule.get("action"), path + ".action", require=True)
    actions = (*POD_FAILURE_ACTIONS, "FailIndex") if allow_fail_index else POD_FAILURE_ACTIONS
    if action is not None and action not in actions:
        detail = "FailIndex needs the Job's backoffLimitPerIndex" if action == "FailIndex" else ""
        r.add(not_supported(path + ".action", action, actions, detail))
    exit_codes = r.mapping(rule.get("onExitCodes"), path + ".onExitCodes")
    conditions = r.sequence(rule.get("onPodConditions"), path + ".onPodConditions")
    if exit_codes is not None and conditions:
        r.add(forbidden(path + ".onPodConditions", "may not be specified together with onExitCodes"))
    elif exit_codes is None and not conditions:
        r.add(required(path + ".onExitCodes", "a rule needs onExitCodes or onPodConditions"))
    if conditions:
        _check_pod_conditions(r, conditions, path + ".onPodConditions")
    if exit_codes is None:
        return None
    return _check_exit_codes(r, exit_codes, path + ".onExitCodes", as_written)


def _check_exit_codes(
    r: Reader, rule: Mapping[str, Any], path: Path, as_written: bool
) -> tuple[Path, str] | None:
    operator = r.string(rule.get("operator"), path + ".operator") or "In"
    if as_written and rule.get("operator") is None:
        detail = 'the Job API has no default for it: supported values: "In", "NotIn"'
        r.add(required(path + ".operator", detail))
    elif operator not in EXIT_CODE_OPERATORS:
        r.add(not_supported(path + ".operator", operator, EXIT_CODE_OPERATORS))
    values_path = path + ".values"
    values = r.sequence(rule.get("values"), values_path, require=True)
    if values is not None and not values:
        r.add(required(values_path, "at least one exit code"))
    elif values is not None and len(values) > MAX_EXIT_CODE_VALUES:
        r.add(too_many(values_path, len(values), MAX_EXIT_CODE_VALUES))
    seen: set[int] = set()
    ordered, previous = True, -1
    for i, raw in enumerate(values or ()):
        value = r.integer(raw, values_path + f"[{i}]", maximum=INT32_MAX)
        if value is None:
            continue
        if not 0 <= value <= 255:
            r.add(invalid(values_path + f"[{i}]", value, "an exit code must be between 0 and 255"))
        elif value == 0 and operator == "In":
            r.add(invalid(values_path + f"[{i}]", value, "value 0 cannot be used for the In operator"))
        if value in seen:
            r.add(duplicate(values_path + f"[{i}]", value))
        seen.add(value)
        ordered, previous = ordered and value >= previous, value
    if as_written and not ordered:  # the flow's are sorted by the Job builder
        r.add(
            invalid(
                values_path, values, "must be ordered: the Job API takes the template's policy as written"
            )
        )
    name_path = path + ".containerName"
    name = r.string(rule.get("containerName"), name_path)
    if name is None:
        return None
    if problem := label_problem(name):
        r.add(invalid(name_path, name, problem))
        return None
    return (name_path, name)


def _check_pod_conditions(r: Reader, patterns: Any, path: Path) -> None:
    if len(patterns) > MAX_POD_CONDITION_PATTERNS:
        r.add(too_many(path, len(patterns), MAX_POD_CONDITION_PATTERNS))
    for item_path, pattern in r.mappings(patterns, path):
        kind = r.string(pattern.get("type"), item_path + ".type", require=True)
        if kind is not None and (problem := qualified_name_problem(kind)):
            r.add(invalid(item_path + ".type", kind, problem))
        status = r.string(pattern.get("status"), item_path + ".status")
        if status is not None and status not in CONDITION_STATUSES:
            r.add(not_supported(item_path + ".status", status, CONDITION_STATUSES))


def check_policy_fits(r: Reader, needs: PolicyNeeds, step: str, info: TemplateInfo) -> None:
    """Would the Job API accept `needs`' podFailurePolicy in the Job of `step`?"""
    if info.restart_policy == "OnFailure":  # other values were reported as unsupported already
        r.add(
            invalid(
                info.restart_policy_path,
                info.restart_policy,
                f"{needs.path} applies to step {quote(step)}, and Kubernetes accepts a podFailurePolicy only "
                "with restartPolicy Never (a pod restarted in place never fails); set restartPolicy: "
                "Never in this step's template, or give its Job a podFailurePolicy of its own",
            )
        )
    replacement = info.pod_replacement_policy
    # Beside the Job's own policy this was said checking the template (validation/job_spec.py).
    own = info.has_own_pod_failure_policy
    if replacement is not None and replacement not in POD_REPLACEMENT_WITH_PFP and not own:
        r.add(
            not_supported(
                info.pod_replacement_policy_path,
                replacement,
                POD_REPLACEMENT_WITH_PFP,
                f"{needs.path} applies to step {quote(step)}, and beside a podFailurePolicy the Job API "
                "accepts only podReplacementPolicy Failed; set Failed (or leave it out) in this step's "
                "template, or give its Job a podFailurePolicy of its own",
            )
        )
    for ref_path, name in needs.container_refs:
        if name not in info.container_names:
            r.add(
                not_found(
                    ref_path,
                    name,
                    f"step {quote(step)} has no container or initContainer of that name, and the Job API "
                    "rejects a podFailurePolicy rule naming an unknown container",
                )
            )
