"""`validate_cronjobflow`: every rule for a CronJobFlow, all errors at once (the webhook and the controller).

The schedule and time zone must parse (core/cron.py), the CronJob-style fields be in range, and the
template must make a valid JobFlow: its spec is checked with the JobFlow validator itself, as the flow a
run will create (under the longest name a run can have: a scheduled run's `<cron name>-<8-digit Unix
minute>` or a manual run's `<cron name>-manual-<token>`, since resource names grow with it), and its errors
are reported under `spec.jobFlowTemplate.spec`, so a mistake is refused when the CronJobFlow is written,
not at 3 a.m. when its first run is created. Its annotations may not decide a gate (`approve.`/`reject.`):
the errors of a JobFlow's create when they name no Manual step, and forbidden when they do (the
controller creates the runs and may not approve), under `spec.jobFlowTemplate.metadata`. Nor may its
labels and annotations hold the keys zen-flow writes on a run or acts on at once (RESERVED): a JobFlow may
carry them (its user's requests, the webhook's record, which it overwrites), but on a template they would
be copied to every run, forging the record or stopping each run as it starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zen_flow.api.constants import (
    ANNOTATION_APPROVED_BY_PREFIX,
    ANNOTATION_CREATED_BY,
    ANNOTATION_DECISION_MESSAGE_PREFIX,
    ANNOTATION_INSTANTIATE,
    ANNOTATION_REJECTED_BY_PREFIX,
    ANNOTATION_RESUME_REQUESTED_BY,
    ANNOTATION_RETRIED_BY,
    ANNOTATION_RETRY,
    ANNOTATION_RETRY_STEPS,
    ANNOTATION_SCHEDULED_TIME,
    ANNOTATION_STOP,
    ANNOTATION_STOPPED_BY,
    ANNOTATION_SUSPEND_REQUESTED_BY,
    ANNOTATION_VALUES_BY_PREFIX,
    API_VERSION,
    APPROVE_PREFIX,
    CRON_KIND,
    KIND,
    LABEL_CLUSTER_TEMPLATE,
    LABEL_CRON,
    LABEL_INSTANCE,
    LABEL_TEMPLATE,
    MANUAL_RUN_INFIX,
    MANUAL_RUN_TOKEN_LENGTH,
    REJECT_PREFIX,
    VALUES_PREFIX,
    ConcurrencyPolicy,
)
from zen_flow.core.cron import ScheduleError, parse_schedule, parse_time_zone
from zen_flow.validation.approvals import awaits_expansion, validate_approvals
from zen_flow.validation.errors import FieldError, forbidden, invalid, listed, not_supported
from zen_flow.validation.flow import validate_jobflow
from zen_flow.validation.limits import MAX_FLOW_NAME
from zen_flow.validation.reader import Reader
from zen_flow.validation.template import check_metadata_maps

# A run is named `<cron name>-<Unix minute>`; the minute has 8 digits until the year 2160. Kubernetes'
# CronJob keeps 11 characters for its suffix the same way (52).
RUN_SUFFIX = "-99999999"
MAX_CRON_NAME = MAX_FLOW_NAME - len(RUN_SUFFIX)
# A manual run (`zen-flow cron trigger`) is named `<cron name, cut to fit>-manual-<token>`
# (planner.cron_runs.manual_run_name): longer than a scheduled run's for most names.
MANUAL_RUN_SUFFIX = MANUAL_RUN_INFIX + "x" * MANUAL_RUN_TOKEN_LENGTH
_WRITTEN = "written by zen-flow on each run"
_RERUN = "a request to rerun a failed run: copied to every run, each would be rerun once when it fails"
# Keys (or key prefixes, ending in `/`) of a run's metadata that a template may not set, and why.
RESERVED_LABELS = {
    LABEL_CRON: f"{_WRITTEN} (the CronJobFlow's name)",
    LABEL_TEMPLATE: f"{_WRITTEN} expanded from a JobFlowTemplate (its name)",
    LABEL_CLUSTER_TEMPLATE: f"{_WRITTEN} expanded from a ClusterJobFlowTemplate",
    LABEL_INSTANCE: f"{_WRITTEN} (the CronJobFlow's own label: a run goes to the controller instance "
    "that runs its CronJobFlow)",
}
RESERVED_ANNOTATIONS = {
    ANNOTATION_SCHEDULED_TIME: f"{_WRITTEN} (its run time)",
    ANNOTATION_INSTANTIATE: f"{_WRITTEN} made by `zen-flow cron trigger` (manual) or `backfill`",
    ANNOTATION_STOP: "a request to stop the run: copied to every run, it would stop each as it starts",
    ANNOTATION_RETRY: _RERUN,
    ANNOTATION_RETRY_STEPS: _RERUN,
    ANNOTATION_CREATED_BY: f"{_WRITTEN} by the mutating webhook (who created it)",
    ANNOTATION_STOPPED_BY: f"{_WRITTEN} by the mutating webhook (who stopped it)",
    ANNOTATION_RETRIED_BY: f"{_WRITTEN} by the mutating webhook (who asked for a rerun)",
    ANNOTATION_SUSPEND_REQUESTED_BY: f"{_WRITTEN} by the mutating webhook (who suspended it)",
    ANNOTATION_RESUME_REQUESTED_BY: f"{_WRITTEN} by the mutating webhook (who resumed it)",
    ANNOTATION_APPROVED_BY_PREFIX: f"{_WRITTEN} by the mutating webhook (who approved a gate)",
    ANNOTATION_REJECTED_BY_PREFIX: f"{_WRITTEN} by the mutating webhook (who rejected a gate)",
    ANNOTATION_VALUES_BY_PREFIX: f"{_WRITTEN} by the mutating webhook (who supplied a gate's values)",
    ANNOTATION_DECISION_MESSAGE_PREFIX: "goes with a gate's decision, taken on the run",
}
TEMPLATE_SPEC = "spec.jobFlowTemplate.spec"
_POLICIES = [p.value for p in ConcurrencyPolicy]


def validate_cronjobflow(obj: Mapping[str, Any]) -> list[FieldError]:
    """Every problem with `obj` (a raw CronJobFlow) as a CronJobFlow; an empty list means valid."""
    errors: list[FieldError] = []
    r = Reader(errors)
    root = r.resource(obj, CRON_KIND)
    if root is None:
        return errors
    meta = r.mapping(root.get("metadata"), "metadata", require=True)
    name = _check_name(r, meta) if meta is not None else ""
    spec = r.mapping(root.get("spec"), "spec", require=True)
    if spec is None:
        return errors
    _check_schedule(r, spec)
    policy = r.string(spec.get("concurrencyPolicy"), "spec.concurrencyPolicy")
    if policy and policy not in _POLICIES:
        r.add(not_supported("spec.concurrencyPolicy", policy, _POLICIES))
    for field in ("startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        value = r.integer(spec.get(field), "spec." + field)
        if value is not None and value < 0:
            r.add(invalid("spec." + field, value, "must be greater than or equal to 0"))
    r.boolean(spec.get("suspend"), "spec.suspend")
    template = r.mapping(spec.get("jobFlowTemplate"), "spec.jobFlowTemplate", require=True)
    stopped: list[bool] = []  # the template's check stopped past the errors listed
    if template is not None:
        _check_template(r, template, name, stopped)
    return listed(errors, stopped=any(stopped))


def _check_name(r: Reader, meta: Mapping[str, Any]) -> str:
    why = (
        f"its runs are named <name>{RUN_SUFFIX[0]}<Unix minute> and a run's name has at most {MAX_FLOW_NAME}"
    )
    name, generate = r.object_name(meta, MAX_CRON_NAME, why)
    return name or generate + "xxxxx"


def _check_schedule(r: Reader, spec: Mapping[str, Any]) -> None:
    zone = r.string(spec.get("timeZone"), "spec.timeZone")
    zone_ok = True
    if zone:
        try:
            parse_time_zone(zone)
        except ScheduleError as err:
            r.add(invalid("spec.timeZone", zone, str(err)))
            zone_ok = False
    schedule = r.string(spec.get("schedule"), "spec.schedule", require=True)
    if schedule is None:
        return
    try:
        parse_schedule(schedule, zone if zone_ok else None)
    except ScheduleError as err:
        r.add(invalid("spec.schedule", schedule, str(err)))


def longest_run_name(name: str) -> str:
    """The longest name a run of CronJobFlow `name` can have, scheduled or manual."""
    scheduled = name[:MAX_CRON_NAME] + RUN_SUFFIX
    manual = name[: MAX_FLOW_NAME - len(MANUAL_RUN_SUFFIX)].rstrip("-.") + MANUAL_RUN_SUFFIX
    return max(scheduled, manual, key=len)


def _reserved(r: Reader, meta: Mapping[str, Any]) -> None:
    for field, reserved in (("labels", RESERVED_LABELS), ("annotations", RESERVED_ANNOTATIONS)):
        keys = meta.get(field)
        for key in keys if isinstance(keys, dict) else ():
            why = next(
                (w for k, w in reserved.items() if key == k or (k.endswith("/") and str(key).startswith(k))),
                None,
            )
            if why is not None:
                r.add(forbidden(f"spec.jobFlowTemplate.metadata.{field}[{key}]", f"reserved: {why}"))


def _check_template(r: Reader, template: Mapping[str, Any], name: str, stopped: list[bool]) -> None:
    meta = r.mapping(template.get("metadata"), "spec.jobFlowTemplate.metadata")
    if meta is not None:
        check_metadata_maps(r, meta, "spec.jobFlowTemplate.metadata", own_keys=False)
        _reserved(r, meta)
    spec = r.mapping(template.get("spec"), TEMPLATE_SPEC, require=True)
    if spec is None:
        return
    annotations = meta.get("annotations") if meta is not None else None
    run = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": longest_run_name(name or "run"),
            **({"annotations": annotations} if isinstance(annotations, dict) else {}),
        },
        "spec": spec,
    }
    for error in validate_jobflow(run, stopped=stopped):  # listed with the CronJobFlow's own
        # The run's metadata is ours (checked above as the CronJobFlow's name); its spec is the template's.
        if error.path == "spec" or error.path.startswith(("spec.", "spec[")):
            r.add(FieldError("spec.jobFlowTemplate." + error.path, error.type, error.value, error.detail))
    # The approval rules of a JobFlow's create (the webhook's, beside validate_jobflow): else every run
    # of a template with a misplaced approve. annotation would be refused, one by one, at its run time.
    wrong = set()
    # A run naming a JobFlowTemplate: its steps are unknown here, and a decision forbidden below anyway.
    for error in [] if awaits_expansion(run) else validate_approvals(run):
        wrong.add(error.path)
        r.add(FieldError("spec.jobFlowTemplate." + error.path, error.type, error.value, error.detail))
    # Even on a Manual step: the controller creates the runs, and taking a decision needs `approve`,
    # which it does not have (nor should: its CronJobFlow's author would decide gates through it).
    for key in annotations if isinstance(annotations, dict) else ():
        path = f"metadata.annotations[{key}]"
        decides = (APPROVE_PREFIX, REJECT_PREFIX, VALUES_PREFIX)  # values need a decider's authority too
        if isinstance(key, str) and key.startswith(decides) and path not in wrong:
            r.add(
                forbidden(
                    "spec.jobFlowTemplate." + path,
                    "a run's gate is decided on the run, by a user allowed to approve: the controller that "
                    "creates the runs may not take a decision, and every run would be refused",
                )
            )
