"""Planner: data that enters a flow from outside the Job status: the flow's arguments (spec.arguments)
and output parameters that containers write to their termination message."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zen_flow.core.jsonpath import NotFound
from zen_flow.core.naming import job_name
from zen_flow.planner import CreateJob, jobs_to_read, plan
from zen_flow.planner.job_verdicts import MESSAGES_RETRY_SECONDS
from zen_flow.planner.outputs import message_value
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)
# Text of any characters, lone surrogates often (st.text leaves them out, whatever its alphabet).
CHARACTERS = st.one_of(
    st.sampled_from(["\ud800", "\udfff", "\ud83d", "\ude00"]), st.characters(exclude_categories=())
)


def any_text(max_size: int) -> st.SearchStrategy[str]:
    return st.lists(CHARACTERS, max_size=max_size).map("".join)


A0 = job_name("flow", "a", 0)


def from_message(name: str, key: str | None = None, container: str | None = None) -> dict[str, Any]:
    source: dict[str, Any] = {}
    if key is not None:
        source["key"] = key
    if container is not None:
        source["container"] = container
    return {"name": name, "valueFrom": {"terminationMessage": source}}


def consumer(*params: dict[str, Any], deps: tuple[str, ...] = ("a",)) -> dict[str, Any]:
    return job_step("b", *deps, inputs={"parameters": list(params)})


def env_of(sim: Simulator, step: str) -> dict[str, str]:
    bodies = [a.body for p in sim.plans for a in p.actions if isinstance(a, CreateJob) and a.step == step]
    assert bodies, f"no Job was created for step {step}"
    env = bodies[-1]["spec"]["template"]["spec"]["containers"][0].get("env", [])
    return {e["name"]: e["value"] for e in env if "value" in e}


def step_status(sim: Simulator, step: str) -> Any:
    found = sim.flow.status.step(step)
    assert found is not None
    return found


def run(sim: Simulator, times: int = 3) -> None:
    for _ in range(times):
        sim.reconcile()


# --- message_value --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "key", "value"),
    [
        ('{"digest": "sha256:ab", "n": 3}', "digest", "sha256:ab"),
        ('{"digest": "sha256:ab", "n": 3}', "n", "3"),
        ('{"nested": {"a": [1, 2]}}', "nested", '{"a":[1,2]}'),
        ("digest=sha256:ab\nrows = 42\n", "rows", "42"),
        ("url=https://x/?a=b\n", "url", "https://x/?a=b"),  # only the first '=' splits
        ("hello world\n", None, "hello world"),
        ("two\nlines\n\n", None, "two\nlines\n"),  # one trailing newline dropped, no more
        ("", None, ""),
    ],
)
def test_a_value_is_selected_from_json_key_value_lines_or_the_whole_message(
    message: str, key: str | None, value: str
) -> None:
    assert message_value(message, key) == value


@pytest.mark.parametrize(
    ("message", "key"),
    [('{"digest": "x"}', "size"), ("a=1\nb=2", "c"), ("no equals sign here", "a"), ("[1, 2]", "a")],
)
def test_a_key_the_message_lacks_is_not_found(message: str, key: str) -> None:
    with pytest.raises(NotFound):
        message_value(message, key)


def test_a_message_nested_deeper_than_json_decodes_is_not_found_saying_why() -> None:
    # 4 KiB of brackets nest 2,000 deep: json.loads raised RecursionError, which nothing caught, and
    # the flow's reconcile failed and was retried for ever instead of failing the step.
    with pytest.raises(NotFound, match="its JSON nests too deep to read"):
        message_value('{"v": ' + "[" * 2000 + "]" * 2000 + "}", "v")


@given(
    st.dictionaries(
        st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,20}", fullmatch=True),
        st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=40).map(str.strip),
        min_size=1,
        max_size=8,
    )
)
def test_key_value_lines_and_json_carry_the_same_values(values: dict[str, str]) -> None:
    lines = "".join(f"{k}={v}\n" for k, v in values.items())
    document = json.dumps(values)
    for key, value in values.items():
        assert message_value(lines, key) == value
        assert message_value(document, key) == value


# --- termination-message outputs through the planner ------------------------------------------------------


def test_a_value_written_by_the_container_reaches_the_next_step() -> None:
    a = job_step("a", outputs={"parameters": [from_message("digest", "digest"), from_message("all")]})
    b = consumer(
        {"name": "digest", "valueFrom": {"jsonPath": "a:$.outputs.parameters.digest"}},
        {"name": "all", "valueFrom": {"jsonPath": "a:$.outputs.parameters.all"}},
    )
    sim = Simulator(make_flow([a, b]), T0)
    sim.reconcile()
    message = '{"digest": "sha256:0123"}\n'
    sim.complete(A0, messages={"main": message})
    assert jobs_to_read(sim.flow, list(sim.jobs.values())) == (A0,)
    run(sim)
    outputs = step_status(sim, "a").outputs
    assert {p.name: p.value for p in outputs.parameters} == {"digest": "sha256:0123", "all": message[:-1]}
    assert env_of(sim, "b")["ZF_PARAM_DIGEST"] == "sha256:0123"
    # Read once: the step is Succeeded now, so no pod is listed again.
    assert jobs_to_read(sim.flow, list(sim.jobs.values())) == ()


def test_the_named_container_is_read_when_the_pod_has_several() -> None:
    a = job_step("a", outputs={"parameters": [from_message("n", "rows", container="side")]})
    sim = Simulator(make_flow([a]), T0)
    sim.reconcile()
    sim.complete(A0, messages={"main": "rows=1", "side": "rows=2"})
    run(sim, 2)
    assert sim.phase == "Succeeded"
    assert step_status(sim, "a").outputs.parameters[0].value == "2"


@pytest.mark.parametrize(
    ("messages", "param", "expected"),
    [
        (None, from_message("digest", "digest"), "has no succeeded pod left"),
        ({"main": "other=1"}, from_message("digest", "digest"), "no JSON object field and no line digest="),
        ({"main": '{"x": 1}'}, from_message("digest", "digest"), "has no field 'digest'"),
        # As a jsonPath that finds null: nothing was written (it once stored the text "null").
        ({"main": '{"digest": null}'}, from_message("digest", "digest"), "field 'digest' is null"),
        ({"main": "a=1"}, from_message("digest", "a", container="sidecar"), "no container sidecar"),
        ({"main": "x" * 2000}, from_message("digest"), "more than the limit of 1024"),
    ],
)
def test_a_missing_or_oversized_value_fails_the_step_naming_the_parameter(
    messages: dict[str, str] | None, param: dict[str, Any], expected: str
) -> None:
    a = job_step("a", outputs={"parameters": [param]}, retryPolicy={"limit": 2})
    sim = Simulator(make_flow([a, job_step("b", "a")]), T0)
    sim.reconcile()
    sim.complete(A0, messages=messages)
    run(sim, 2)
    status = step_status(sim, "a")
    assert status.phase == "Failed"
    assert "output parameter digest" in (status.message or "")
    assert expected in (status.message or "")
    assert sim.phase == "Failed"
    assert step_status(sim, "b").phase == "Skipped"
    assert sim.created == [A0]  # completed work is not rerun for a value it did not write


def test_a_json_value_utf8_cannot_encode_fails_the_step_naming_the_parameter() -> None:
    # `{"digest": "\ud800"}` is valid ASCII JSON a container may write; Python reads it into a lone
    # surrogate (Go reads U+FFFD), and the plan raised UnicodeEncodeError at every reconcile: the flow
    # stayed Running with no message, its timeouts and stops never acted.
    a = job_step("a", outputs={"parameters": [from_message("digest", "digest")]})
    sim = Simulator(make_flow([a, job_step("b", "a")]), T0)
    sim.reconcile()
    sim.complete(A0, messages={"main": '{"digest": "\\ud800"}'})
    run(sim, 2)
    status = step_status(sim, "a")
    assert status.phase == "Failed"
    assert status.message == (
        "output parameter digest: container main's termination message: its value holds \\ud800, a "
        "lone surrogate, which is no Unicode text"
    )
    assert sim.phase == "Failed"
    assert step_status(sim, "b").phase == "Skipped"


@pytest.mark.parametrize(
    ("written", "why"),
    [
        ("NaN", "NaN is not JSON"),
        ("Infinity", "Infinity is not JSON"),
        ("-Infinity", "-Infinity is not JSON"),
        ("1e400", "1e400 is out of range"),  # infinite as a float
    ],
)
def test_a_number_json_does_not_have_fails_the_step_naming_the_parameter(written: str, why: str) -> None:
    # Python's json reads these, and the next step got "nan" or "inf", while a matrix fed by the same
    # output refuses the text as not JSON.
    a = job_step("a", outputs={"parameters": [from_message("ratio", "ratio")]})
    sim = Simulator(make_flow([a, job_step("b", "a")]), T0)
    sim.reconcile()
    sim.complete(A0, messages={"main": '{"ratio": ' + written + ', "rows": 3}'})
    run(sim, 2)
    status = step_status(sim, "a")
    assert status.phase == "Failed"
    assert status.message == (
        f"output parameter ratio: container main's termination message: it is not JSON ({why}) and "
        "has no line ratio=..."
    )
    assert step_status(sim, "b").phase == "Skipped"


def test_key_value_lines_may_still_say_nan() -> None:
    assert message_value("ratio=NaN\n", "ratio") == "NaN"  # text, not a JSON number


@given(
    st.dictionaries(
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from([math.nan, math.inf, -math.inf]) | st.floats() | st.integers() | st.text(max_size=4),
        min_size=1,
        max_size=3,
    ),
    st.sampled_from(["a", "b"]),
)
def test_a_json_number_is_passed_on_as_json_or_the_step_fails(values: dict[str, Any], key: str) -> None:
    message = json.dumps(values)  # Python writes nan and inf as NaN and Infinity
    unreadable = any(isinstance(v, float) and not math.isfinite(v) for v in values.values())
    if unreadable or key not in values:
        with pytest.raises(NotFound):
            message_value(message, key)
        return
    found, value = message_value(message, key), values[key]
    # What the next step gets reads back, as JSON, as the number written (never Python's nan or inf).
    assert found == value if isinstance(value, str) else json.loads(found) == value


@given(
    st.dictionaries(st.sampled_from(["a", "b", "c"]), any_text(8), max_size=3),
    st.sampled_from(["a", "b", None]),
)
def test_any_json_a_container_writes_is_a_value_or_a_failure_naming_the_parameter(
    values: dict[str, str], key: str | None
) -> None:
    message = json.dumps(values)  # lone surrogates travel as their ASCII escapes
    try:
        found = message_value(message, key)
    except NotFound as err:
        str(err).encode()  # the step's message: UTF-8 encodes it
        return
    found.encode()  # never raises: the value reaches the status and the next steps' Jobs
    # A surrogate pair's two escapes are one character, as in JSON.
    assert found == (message if key is None else json.loads(message)[key])


def test_the_step_stays_running_until_its_pod_was_read() -> None:
    """The controller reads the pods of the Jobs `jobs_to_read` names before planning; a plan made
    without them (e.g. by a caller that did not read) waits instead of failing the step."""
    a = job_step("a", outputs={"parameters": [from_message("v")]})
    flow = make_flow([a, job_step("b", "a")])
    sim = Simulator(flow, T0)
    sim.reconcile()
    sim.complete(A0, messages={"main": "1"})
    unread = plan(sim.flow, list(sim.jobs.values()), sim.now)
    assert unread.status.step("a").phase == "Running"
    assert not [x for x in unread.actions if isinstance(x, CreateJob)]
    assert unread.requeue_after == MESSAGES_RETRY_SECONDS
    run(sim)
    assert step_status(sim, "a").phase == "Succeeded"
    assert step_status(sim, "b").phase == "Running"


def test_steps_with_only_job_status_outputs_never_read_pods() -> None:
    a = job_step("a", outputs={"parameters": [{"name": "n", "valueFrom": {"jsonPath": "$.succeeded"}}]})
    sim = Simulator(make_flow([a]), T0)
    sim.reconcile()
    sim.complete(A0)
    assert jobs_to_read(sim.flow, list(sim.jobs.values())) == ()


# --- flow arguments -----------------------------------------------------------------------------------


def test_an_argument_reaches_the_step_that_takes_it() -> None:
    step = job_step(
        "a",
        inputs={"parameters": [{"name": "env", "valueFrom": {"argument": "environment"}}]},
        template={
            "apiVersion": "batch/v1",
            "kind": "Job",
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [
                            {
                                "name": "main",
                                "image": "busybox",
                                "args": ["deploy", "{{inputs.parameters.env}}"],
                            }
                        ],
                    }
                }
            },
        },
    )
    sim = Simulator(make_flow([step], arguments={"environment": "staging"}), T0)
    sim.reconcile()
    body = sim.plans[0].actions[0]
    assert isinstance(body, CreateJob)
    main = body.body["spec"]["template"]["spec"]["containers"][0]
    assert main["args"] == ["deploy", "staging"]
    assert {"name": "ZF_PARAM_ENV", "value": "staging"} in main["env"]


def test_when_sees_the_flow_arguments() -> None:
    flow = make_flow(
        [
            job_step("prod", when="flow.arguments.environment == 'production'"),
            job_step("stage", when="flow.arguments.environment == 'staging'"),
        ],
        arguments={"environment": "staging"},
    )
    sim = Simulator(flow, T0)
    sim.reconcile()
    assert step_status(sim, "prod").phase == "Skipped"
    assert step_status(sim, "stage").phase == "Running"


def test_a_flow_that_lost_its_argument_fails_the_step_naming_it() -> None:
    """Admission rejects an unknown argument; a flow stored before that rule still ends with a clear
    message instead of a placeholder left in the Job."""
    step = job_step("a", inputs={"parameters": [{"name": "env", "valueFrom": {"argument": "nope"}}]})
    sim = Simulator(make_flow([step], arguments={"environment": "x"}), T0)
    sim.reconcile()
    status = step_status(sim, "a")
    assert status.phase == "Failed"
    assert "the flow has no argument nope" in (status.message or "")
    assert sim.created == []
