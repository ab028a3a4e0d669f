"""What a run of a CronJobFlow is: its name, its body, its time and its place among the other runs. Pure.

A scheduled run is named `<cron>-<Unix minute of its run time>` by the controller, and so is a run
`zen-flow cron backfill` makes for a past run time (to the controller, that run time's run); a manual run
(`zen-flow cron trigger`) `<cron>-manual-<token>`. The name is the only thing about a run no one but its
creator sets, so the controller reads from it both what kind of run it is and a scheduled run's run time:
annotations are copied from the template and editable, and a copied `instantiate: manual` or
`scheduled-time` must not turn a scheduled run into a manual one or move it.

A manual run's time is its `creationTimestamp`, written by the apiserver: the clock of the machine that
triggered it never orders runs, so a laptop a minute off cannot invert Replace or the history. Nor does
the `scheduled-time` a manual run may carry (`zen-flow cron trigger --scheduled-time`): that is only the
time its steps process (`{{.JobFlow.ScheduledTime}}`, planner/scheduled_time.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from zen_flow.api.constants import (
    ANNOTATION_INSTANTIATE,
    ANNOTATION_SCHEDULED_TIME,
    API_VERSION,
    CRON_KIND,
    INSTANTIATE_BACKFILL,
    INSTANTIATE_MANUAL,
    KIND,
    LABEL_CRON,
    MANUAL_RUN_INFIX,
    RUN_TTL_SECONDS,
)
from zen_flow.api.cronjobflow import CronJobFlow
from zen_flow.api.jobflow import JobFlow
from zen_flow.api.meta import controller_reference, format_time
from zen_flow.core.cron import scheduled_minute
from zen_flow.core.instances import instance_labels, without_instance

MAX_RUN_NAME = 63  # a flow's name is a label value (validation/limits.py MAX_FLOW_NAME)
# A run with no time at all (a manual run not yet created, a test's run) sorts oldest.
NEVER = datetime.min.replace(tzinfo=UTC)

Rank = tuple[datetime, bool, str]


def owner_reference(cron: CronJobFlow) -> dict[str, Any]:
    return controller_reference(CRON_KIND, cron.metadata)


def run_name(cron_name: str, moment: datetime) -> str:
    return f"{cron_name}-{scheduled_minute(moment)}"


def manual_run_name(cron_name: str, token: str) -> str:
    """`<cron>-manual-<token>`: never a scheduled run's name (after `<cron>-` comes `manual-`, not
    digits), and within a flow's name limit: a long CronJobFlow name is cut, without the `-` or `.` a
    name may not end a part with."""
    suffix = f"{MANUAL_RUN_INFIX}{token}"
    return cron_name[: MAX_RUN_NAME - len(suffix)].rstrip("-.") + suffix


def run_time_of(cron_name: str, name: str) -> datetime | None:
    """The run time a run named `name` was made for, from its `<cron>-<Unix minute>`; None for any
    other name (a manual run)."""
    prefix = f"{cron_name}-"
    minute = name[len(prefix) :] if name.startswith(prefix) else ""
    if not (minute.isascii() and minute.isdigit()):
        return None
    try:
        return datetime.fromtimestamp(int(minute) * 60, tz=UTC)
    except (OverflowError, ValueError, OSError):  # digits no clock reaches: no run time of ours
        return None


def is_manual(cron_name: str, run: JobFlow) -> bool:
    """A run the CronJobFlow controls that is not named for a run time: made by hand."""
    return run_time_of(cron_name, run.metadata.name) is None


def time_of(cron_name: str, run: JobFlow) -> datetime | None:
    """Where a run stands in time: a scheduled run's run time, a manual run's creation (the apiserver's
    clock; None until it is created)."""
    return run_time_of(cron_name, run.metadata.name) or run.metadata.creation_timestamp


def rank(cron_name: str, name: str, moment: datetime | None) -> Rank:
    """The order of runs, the greatest newest, for Replace (the newest run is kept), the history limits
    (the oldest go first) and the listings; the same at a create, at every later reconcile and in
    `zen-flow cron trigger`'s note. At the same second a manual run is the newer: its creationTimestamp
    is cut to the second, a run time is exact. The name settles the rest."""
    return (moment or NEVER, run_time_of(cron_name, name) is None, name)


def rank_of(cron_name: str, run: JobFlow) -> Rank:
    return rank(cron_name, run.metadata.name, time_of(cron_name, run))


def build_run(cron: CronJobFlow, moment: datetime) -> dict[str, object]:
    """The JobFlow of run time `moment`: the template's labels and annotations, plus the CronJobFlow's
    label, its controller instance label (when it has one) and the run time; owned by the CronJobFlow
    (deleting it deletes its runs)."""
    return _run(cron, run_name(cron.metadata.name, moment), {ANNOTATION_SCHEDULED_TIME: format_time(moment)})


def backfill_run(cron: CronJobFlow, moment: datetime) -> dict[str, object]:
    """The run `zen-flow cron backfill` creates for past run time `moment`: the controller's run of that
    run time (build_run: its name, so a run time the controller ran, or a backfill ran before, is never
    run twice; its scheduled-time), marked `instantiate: backfill`: made by hand."""
    marks = {ANNOTATION_SCHEDULED_TIME: format_time(moment), ANNOTATION_INSTANTIATE: INSTANTIATE_BACKFILL}
    return _run(cron, run_name(cron.metadata.name, moment), marks)


def manual_run(cron: CronJobFlow, token: str, scheduled: datetime | None = None) -> dict[str, object]:
    """The run `zen-flow cron trigger` creates: a run time's run in all but its name and annotations, as
    `kubectl create job --from=cronjob/NAME` makes a CronJob's Job: marked `instantiate: manual`, with
    the scheduled-time `scheduled` if given (`--scheduled-time`: what its steps render; its place among
    the runs is still its creationTimestamp), else none."""
    name = manual_run_name(cron.metadata.name, token)
    marks = {ANNOTATION_INSTANTIATE: INSTANTIATE_MANUAL}
    if scheduled is not None:
        marks[ANNOTATION_SCHEDULED_TIME] = format_time(scheduled)
    return _run(cron, name, marks)


def _run(cron: CronJobFlow, name: str, marks: dict[str, str]) -> dict[str, object]:
    template = cron.spec.job_flow_template
    meta = template.metadata
    # The run goes to the controller instance that runs its CronJobFlow (whose history limits and
    # concurrency policy count it): the CronJobFlow's instance label, whatever the template says.
    template_labels = without_instance(meta.labels) if meta else {}
    labels = {**template_labels, **instance_labels(cron.metadata.labels), LABEL_CRON: cron.metadata.name}
    annotations: dict[str, str] = {**(meta.annotations if meta else {}), **marks}
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": name,
            "namespace": cron.metadata.namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner_reference(cron)],
        },
        "spec": _with_run_ttl(template.spec),
    }


def _with_run_ttl(spec: dict[str, Any]) -> dict[str, Any]:
    """The template's spec with `executionPolicy.ttlSecondsAfterFinished` RUN_TTL_SECONDS if it has none
    (a `ttlStrategy` it sets still decides its outcomes first). Not for a run that names a JobFlowTemplate:
    its expansion gives it the template's TTL, or RUN_TTL_SECONDS (validation/expansion.py, from the run's
    owner reference), and a value written here could not be told from one its CronJobFlow set."""
    policy = spec.get("executionPolicy")
    if spec.get("templateRef") is not None and spec.get("steps") is None:
        return spec
    if policy is None:
        return {**spec, "executionPolicy": {"ttlSecondsAfterFinished": RUN_TTL_SECONDS}}
    if isinstance(policy, dict) and policy.get("ttlSecondsAfterFinished") is None:
        return {**spec, "executionPolicy": {**policy, "ttlSecondsAfterFinished": RUN_TTL_SECONDS}}
    return spec
