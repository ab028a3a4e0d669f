"""`{{.JobFlow.ScheduledTime}}`: the run's logical time in its steps (what Argo's
`{{workflow.scheduledTime}}` and Airflow's `{{ ds }}` give): a scheduled run's run time, a manual run's
`--scheduled-time`, else when the flow was created; a child flow sees its parent's; admission accepts it
wherever `{{.JobFlow.Name}}` is accepted."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from zen_flow.api.constants import ANNOTATION_INSTANTIATE, ANNOTATION_SCHEDULED_TIME, INSTANTIATE_MANUAL
from zen_flow.api.meta import format_time
from zen_flow.planner import CreateJob, plan
from zen_flow.validation import validate_update
from zen_flow.validation.flow import validate_jobflow
from zen_flow.webhook.envelope import RawObject
from zen_flow.webhook.review import _check_update
from zen_flow_dev.testing.flows import flow_manifest, job_step, job_template, make_flow

CREATED = datetime(2026, 12, 7, 6, 1, 2, tzinfo=UTC)  # when the flow was stored: a run started late
NIGHT = "2026-12-07T02:30:00Z"
PLACEHOLDER = "{{.JobFlow.ScheduledTime}}"


def template(*args: str) -> dict[str, Any]:
    body = job_template()
    body["spec"]["template"]["spec"]["containers"][0]["args"] = list(args)
    return body


def rendered_args(annotations: dict[str, str] | None = None, name: str = "nightly", *args: str) -> list[str]:
    """The args of the Job the planner creates for a step whose args are `args` (PLACEHOLDER if none)."""
    step = job_step("load", template=template(*(args or (f"--night={PLACEHOLDER}",))))
    flow = make_flow([step], name=name, annotations=annotations, created=CREATED)
    [create] = [a for a in plan(flow, [], CREATED + timedelta(seconds=5)).actions if isinstance(a, CreateJob)]
    return list(create.body["spec"]["template"]["spec"]["containers"][0]["args"])


def test_a_scheduled_run_renders_its_run_time_not_when_it_was_created() -> None:
    assert rendered_args({ANNOTATION_SCHEDULED_TIME: NIGHT}, "nightly-29633730") == [f"--night={NIGHT}"]


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        # `zen-flow cron trigger --scheduled-time`: the night it was asked to process.
        ({ANNOTATION_INSTANTIATE: INSTANTIATE_MANUAL, ANNOTATION_SCHEDULED_TIME: NIGHT}, NIGHT),
        # A plain trigger: made for no run time, so when it was created.
        ({ANNOTATION_INSTANTIATE: INSTANTIATE_MANUAL}, format_time(CREATED)),
    ],
    ids=["with-scheduled-time", "without"],
)
def test_a_manual_run_renders_its_scheduled_time_or_its_creation(
    annotations: dict[str, str], expected: str
) -> None:
    assert rendered_args(annotations, "nightly-manual-b2c4d") == [f"--night={expected}"]


def test_a_plain_flow_renders_its_creation_timestamp() -> None:
    assert rendered_args() == ["--night=2026-12-07T06:01:02Z"]


@pytest.mark.parametrize(
    "value",
    ["yesterday", "2026-12-07", "2026-12-07T02:30:00", "2026-13-07T02:30:00Z", "", " 2026-12-07T02:30:00Z"],
)
def test_an_annotation_that_is_no_rfc3339_time_falls_back_to_the_creation_timestamp(value: str) -> None:
    assert rendered_args({ANNOTATION_SCHEDULED_TIME: value}) == [f"--night={format_time(CREATED)}"]


@given(
    moment=st.datetimes(
        min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ),
    offset_minutes=st.integers(min_value=-23 * 60, max_value=23 * 60),
    fraction=st.booleans(),
)
def test_any_rfc3339_time_renders_as_that_instant_in_utc_to_the_second(
    moment: datetime, offset_minutes: int, fraction: bool
) -> None:
    local = moment.astimezone(timezone(timedelta(minutes=offset_minutes)))
    text = local.isoformat(timespec="microseconds" if fraction else "seconds").replace("+00:00", "Z")
    assert rendered_args({ANNOTATION_SCHEDULED_TIME: text}) == [f"--night={format_time(moment)}"]


def test_trim_markers_and_spaces_work_as_for_the_other_fields() -> None:
    args = rendered_args(
        {ANNOTATION_SCHEDULED_TIME: NIGHT}, "nightly", "night-\n  {{- .JobFlow.ScheduledTime -}}\n  .csv"
    )
    assert args == [f"night-{NIGHT}.csv"]


def flow_step(name: str, argument: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": "Flow",
        "flow": {
            "templateRef": {"name": "load"},
            "arguments": {"parameters": [{"name": "night", "value": argument}]},
        },
    }


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [({ANNOTATION_SCHEDULED_TIME: NIGHT}, NIGHT), (None, format_time(CREATED))],
    ids=["cron-run", "plain-flow"],
)
def test_a_child_flow_carries_its_parents_scheduled_time(
    annotations: dict[str, str] | None, expected: str
) -> None:
    parent = make_flow(
        [flow_step("sub", PLACEHOLDER)], name="parent", annotations=annotations, created=CREATED
    )
    [create] = [
        a for a in plan(parent, [], CREATED + timedelta(minutes=5)).actions if isinstance(a, CreateJob)
    ]
    meta = create.body["metadata"]
    # The child's own steps render it from the annotation: the same night as the parent's, not the child's
    # creation minutes later.
    assert meta["annotations"][ANNOTATION_SCHEDULED_TIME] == expected
    assert create.body["spec"]["arguments"]["parameters"] == [{"name": "night", "value": expected}]


def test_a_memoize_key_may_hold_it_and_is_looked_up_with_the_runs_night() -> None:
    step = job_step(
        "load",
        template=template("x"),
        memoize={"key": f"load-{PLACEHOLDER}", "cache": {"configMap": {"name": "c"}}},
    )
    assert validate_jobflow(flow_manifest("f", "ns", [step])) == []
    # Two runs for two nights look up two entries: one night's result is never served to another.
    looked_up = []
    for night in (NIGHT, "2026-12-08T02:30:00Z"):
        flow = make_flow(
            [step], name="nightly", annotations={ANNOTATION_SCHEDULED_TIME: night}, created=CREATED
        )
        [lookup] = plan(flow, [], CREATED).lookups
        looked_up.append(lookup.key)
    assert looked_up == [f"load-{NIGHT}", "load-2026-12-08T02:30:00Z"]


@pytest.mark.parametrize(
    "text",
    [
        PLACEHOLDER,
        "{{ .JobFlow.ScheduledTime }}",
        "{{- .JobFlow.ScheduledTime -}}",
        f"{PLACEHOLDER}/{{{{.StepName}}}}",
    ],
)
def test_admission_accepts_it_in_a_job_template_step_defaults_and_child_flow_arguments(text: str) -> None:
    steps = [job_step("a", template=template(text)), flow_step("b", text)]
    defaults = {"metadata": {"annotations": {"night": text}}}
    assert validate_jobflow(flow_manifest("f", "ns", steps, stepDefaults=defaults)) == []


@pytest.mark.parametrize(
    "text", ["{{.JobFlow.ScheduledTimes}}", "{{.JobFlow.CreationTimestamp}}", "{{.JobFlow.Labels}}"]
)
def test_admission_still_refuses_other_fields_of_the_flow(text: str) -> None:
    errors = validate_jobflow(flow_manifest("f", "ns", [job_step("a", template=template(text))]))
    assert [e.path for e in errors] == ["spec.steps[0].template.spec.template.spec.containers[0].args[0]"]
    assert "unsupported template action" in str(errors[0])
    assert "{{.JobFlow.ScheduledTime}}" in str(errors[0])  # the message lists it among the supported


def raw(obj: dict[str, Any]) -> RawObject:
    """`obj` as the webhook receives it in a review."""
    return RawObject.parse(msgspec.Raw(json.dumps(obj).encode()))


def started(annotations: dict[str, str]) -> dict[str, Any]:
    flow = flow_manifest("f", "ns", [job_step("a")], annotations=annotations)
    flow["status"] = {"phase": "Running", "steps": [{"name": "a", "phase": "Running"}]}
    return flow


@pytest.mark.parametrize(
    "new",
    [{ANNOTATION_SCHEDULED_TIME: "2026-12-08T02:30:00Z"}, {}],
    ids=["changed", "removed"],
)
def test_the_scheduled_time_of_a_started_flow_cannot_change(new: dict[str, str]) -> None:
    # Its Jobs were rendered with it already: a later attempt would process another night.
    old = started({ANNOTATION_SCHEDULED_TIME: NIGHT})
    edited = copy.deepcopy(old)
    edited["metadata"]["annotations"] = new
    [error] = validate_update(old, edited)
    assert error.path == f"metadata.annotations[{ANNOTATION_SCHEDULED_TIME}]"
    assert "cannot change after the flow started" in str(error)
    # Added to a started flow that had none: also refused (its Jobs rendered the creation time).
    assert [e.path for e in validate_update(started({}), started({ANNOTATION_SCHEDULED_TIME: NIGHT}))] == [
        error.path
    ]
    # An annotation-only edit keeps the spec's bytes: the webhook takes its spec_kept path.
    assert validate_update(old, edited, spec_kept=True) == [error]
    said = _check_update(raw(old), raw(edited))[0]
    assert [e.path for e in said] == [error.path]


def test_the_scheduled_time_may_change_before_the_flow_started_and_other_annotations_after() -> None:
    old = flow_manifest("f", "ns", [job_step("a")], annotations={ANNOTATION_SCHEDULED_TIME: NIGHT})
    new = copy.deepcopy(old)
    new["metadata"]["annotations"][ANNOTATION_SCHEDULED_TIME] = "2026-12-08T02:30:00Z"
    assert validate_update(old, new) == []
    running = started({ANNOTATION_SCHEDULED_TIME: NIGHT})
    relabelled = copy.deepcopy(running)
    relabelled["metadata"]["annotations"]["note"] = "late"
    assert validate_update(running, relabelled) == []
