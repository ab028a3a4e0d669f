"""A matrix reading an earlier step's output, run (core/matrix_sources.py): the step waits as one pending
stand-in until its source succeeded, then runs as its items with the usual fan-in; an empty array skips
it, a value it cannot use fails it before any Job exists, naming the field; a source that did not
succeed skips it as any dependent. The Simulator expands the stored flow from its status before each
plan, as the controller's MatrixFlows does."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zen_flow.api.flow_status import ParameterValue, StepOutputValues
from zen_flow.controller.matrix_flows import MatrixFlows
from zen_flow.core.matrix import effective_flow
from zen_flow.core.matrix_sources import read_array
from zen_flow.core.naming import job_name
from zen_flow.planner import CreateJob, DeleteJob
from zen_flow_dev.testing import simulator as simulator_module
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)
# Text of any characters, lone surrogates often (st.text leaves them out, whatever its alphabet).
CHARACTERS = st.one_of(
    st.sampled_from(["\ud800", "\udfff", "\ud83d", "\ude00"]), st.characters(exclude_categories=())
)


def any_text(max_size: int) -> st.SearchStrategy[str]:
    return st.lists(CHARACTERS, max_size=max_size).map("".join)


FIELD = "spec.steps[1].matrix.parameters[0].valueFrom.jsonPath"
GEN = job_name("flow", "gen", 0)


def simulator(
    *,
    reader: bool = True,
    more: tuple[dict[str, Any], ...] = (),
    arguments: dict[str, str] | None = None,
    **build: Any,
) -> Simulator:
    gen = job_step(
        "gen",
        outputs={
            "parameters": [{"name": "list", "valueFrom": {"terminationMessage": {"container": "main"}}}]
        },
    )
    source = {"jsonPath": "gen:$.outputs.parameters.list"}
    step = job_step(
        "build",
        "gen",
        matrix={"parameters": [{"name": "x", "valueFrom": source}, {"name": "os", "values": ["l", "d"]}]},
        outputs={"parameters": [{"name": "n", "valueFrom": {"jsonPath": "$.succeeded"}}]},
        **build,
    )
    reads = {"jsonPath": "build:$.outputs.parameters.n"}
    inputs = {"parameters": [{"name": "all", "valueFrom": reads}]} if reader else None
    publish = job_step("publish", "build", **({"inputs": inputs} if inputs else {}))
    return Simulator(make_flow([gen, step, publish, *more], arguments=arguments), T0, expand=True)


def phases(sim: Simulator) -> dict[str, str]:
    return {s.name: s.phase for s in sim.flow.status.steps}


def messages(sim: Simulator) -> dict[str, str | None]:
    return {s.name: s.message for s in sim.flow.status.steps}


def created(sim: Simulator) -> dict[str, dict[str, Any]]:
    return {a.step: a.body for p in sim.plans for a in p.actions if isinstance(a, CreateJob)}


def settle(sim: Simulator) -> None:
    for _ in range(3):
        sim.reconcile()


def test_the_step_waits_as_one_stand_in_then_runs_its_items_and_the_fan_in() -> None:
    sim = simulator()
    sim.reconcile()
    assert phases(sim) == {"gen": "Running", "build": "Pending", "publish": "Pending"}
    assert sim.flow.status.progress is not None
    assert sim.flow.status.progress.total_steps == 3
    sim.complete(GEN, {"main": '["a", 1, true]'})
    settle(sim)
    items = [f"build-{k}" for k in range(6)]
    assert phases(sim) == {"gen": "Succeeded", **dict.fromkeys(items, "Running"), "publish": "Pending"}
    assert sim.flow.status.progress is not None
    assert sim.flow.status.progress.total_steps == 8
    env = {
        e["name"]: e["value"]
        for e in created(sim)["build-3"]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert (env["ZF_PARAM_X"], env["ZF_PARAM_OS"]) == ("1", "d")  # a number is its JSON text
    assert "build" not in created(sim)  # the stand-in never had a Job
    for item in items[:-1]:
        sim.complete(job_name("flow", item, 0))
    settle(sim)
    assert "publish" not in created(sim)  # the fan-in waits for every item
    sim.complete(job_name("flow", items[-1], 0))
    settle(sim)
    publish = created(sim)["publish"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {e["name"]: e.get("value") for e in publish}["ZF_PARAM_ALL"] == json.dumps(
        ["1"] * 6, separators=(",", ":")
    )


def test_an_empty_array_skips_the_step_and_its_dependents_as_any_skip() -> None:
    sim = simulator()
    sim.reconcile()
    sim.complete(GEN, {"main": "[]"})
    settle(sim)
    assert phases(sim) == {"gen": "Succeeded", "build": "Skipped", "publish": "Skipped"}
    assert messages(sim)["build"] == f"{FIELD}: step gen's output list is an empty array: no items"
    assert sim.phase == "Succeeded"
    assert sorted(created(sim)) == ["gen"]


def test_an_unusable_value_fails_the_step_before_any_job_naming_the_field() -> None:
    for value, why in [
        ("not json", '"not json" is not JSON'),
        ('{"a": 1}', "it is JSON, but not an array"),
        ('["a", {"b": 1}]', "item 1 is an object, not a string"),
        ("[" + ",".join(["1"] * 257) + "]", "the array has 257 items"),  # outputs hold at most 1 KiB
        ("[" * 1000, "item 0 is an array, not a string"),  # 1 KiB: json would raise RecursionError
        ('["a", NaN]', '"[\\"a\\", NaN]" is not JSON'),  # Python's json reads NaN; JSON has none
        ("[Infinity]", '"[Infinity]" is not JSON'),
        ("[1e400]", '"[1e400]" is not JSON'),  # Infinity as a float
        # Valid ASCII JSON that Python reads into text UTF-8 cannot encode (Go reads U+FFFD): it raised
        # UnicodeEncodeError in every plan, and the flow stayed Running with no message.
        ('["a", "\\ud800"]', "item 1 holds \\ud800, a lone surrogate, which is no Unicode text"),
    ]:
        sim = simulator()
        sim.reconcile()
        sim.complete(GEN, {"main": value})
        settle(sim)
        assert phases(sim) == {"gen": "Succeeded", "build": "Failed", "publish": "Skipped"}, value
        message = messages(sim)["build"] or ""
        assert message.startswith(f"{FIELD}: step gen's output list must be a JSON array")
        assert why in message
        assert sim.phase == "Failed"
        assert sorted(created(sim)) == ["gen"]


@given(st.lists(any_text(6), max_size=5))
def test_an_array_of_any_strings_gives_values_utf8_encodes_or_says_why(items: list[str]) -> None:
    text = json.dumps(items)  # a lone surrogate travels as its ASCII escape
    values, why = read_array(text)
    if why is None:
        assert values == json.loads(text)  # a surrogate pair's two escapes are one character, as in JSON
        for value in values:
            value.encode()  # never raises: every value reaches a Job, and the status
    else:
        assert values == []
        assert "lone surrogate" in why
        why.encode()


def test_an_output_nested_a_thousand_deep_fails_the_step_and_the_finally_step_runs() -> None:
    # It raised RecursionError out of the expansion, before any plan: the flow stayed Running with no
    # message, requeued forever, and its finally step never ran.
    sim = simulator(more=(job_step("cleanup", **{"finally": True}),))
    sim.reconcile()
    sim.complete(GEN, {"main": "[" * 1000})
    settle(sim)
    assert phases(sim) == {
        "gen": "Succeeded",
        "build": "Failed",
        "publish": "Skipped",
        "cleanup": "Running",
    }
    assert messages(sim)["build"] == (
        f"{FIELD}: step gen's output list must be a JSON array of at most 256 strings (numbers and "
        "booleans count as their JSON text): item 0 is an array, not a string"
    )
    sim.complete(job_name("flow", "cleanup", 0))
    settle(sim)
    assert sim.phase == "Failed"


def test_too_many_items_for_the_product_fails_the_step_and_continue_on_failure_goes_on() -> None:
    sim = simulator(reader=False, continueOnFailure=True)  # 129 values x 2 OSes: 258 items, more than 256
    sim.reconcile()
    sim.complete(GEN, {"main": json.dumps([str(i) for i in range(129)])})
    settle(sim)
    assert phases(sim)["build"] == "Failed"
    assert (messages(sim)["build"] or "").startswith("spec.steps[1].matrix: too_many: 258 (at most 256)")
    assert phases(sim)["publish"] == "Running"  # the existing continueOnFailure semantics


def test_a_source_that_failed_skips_the_step_with_continue_on_failure_too() -> None:
    sim = simulator()
    sim.reconcile()
    sim.fail(GEN)
    settle(sim)
    assert phases(sim) == {"gen": "Failed", "build": "Skipped", "publish": "Skipped"}
    # continueOnFailure would start a plain dependent; here there are no values: skipped all the same.
    sim = simulator()
    sim.flow = sim.flow.model_copy(
        update={
            "spec": sim.flow.spec.model_copy(
                update={
                    "steps": (
                        sim.flow.spec.steps[0].model_copy(update={"continue_on_failure": True}),
                        *sim.flow.spec.steps[1:],
                    )
                }
            )
        }
    )
    sim.reconcile()
    sim.fail(GEN)
    settle(sim)
    assert phases(sim) == {"gen": "Failed", "build": "Skipped", "publish": "Skipped"}
    assert (
        messages(sim)["build"] == f"{FIELD}: its matrix items come from step gen's output, and gen is Failed"
    )
    assert sim.phase == "Failed"


def test_items_that_vanish_with_a_new_source_value_leave_no_entry_and_no_running_job() -> None:
    sim = simulator()
    sim.reconcile()
    sim.complete(GEN, {"main": '["a", "b"]'})
    settle(sim)
    assert len([n for n in phases(sim) if n.startswith("build-")]) == 4
    # The source's output changes (as a rerun of it giving another array would): one value now.
    listed = StepOutputValues(parameters=(ParameterValue(name="list", value='["a"]'),))
    steps = tuple(replace(s, outputs=listed) if s.name == "gen" else s for s in sim.flow.status.steps)
    sim.flow = sim.flow.model_copy(update={"status": sim.flow.status.model_copy(update={"steps": steps})})
    assert [s.name for s in effective_flow(sim.flow).spec.steps] == ["gen", "build-0", "build-1", "publish"]
    settle(sim)
    assert set(phases(sim)) == {"gen", "build-0", "build-1", "publish"}  # no stale entries
    for item in ("build-0", "build-1"):
        sim.complete(job_name("flow", item, 0))
    settle(sim)
    sim.complete(job_name("flow", "publish", 0))
    settle(sim)
    assert sim.phase == "Succeeded"
    # The Jobs of the items that vanished do not run on: deleted once the flow ended (lifecycle.strays).
    deleted = {a.name for p in sim.plans for a in p.actions if isinstance(a, DeleteJob)}
    assert {job_name("flow", "build-2", 0), job_name("flow", "build-3", 0)} <= deleted
    assert sim.running() == []


def test_in_the_plan_its_source_ends_in_the_stand_in_waits_for_the_next_one_and_never_runs_a_job() -> None:
    # An output read from the Job's status ends the source in one plan, whose flow was expanded before
    # it ended: the stand-in must wait for the expansion from the committed output, not run as a Job.
    gen = job_step(
        "gen", outputs={"parameters": [{"name": "list", "valueFrom": {"jsonPath": "$.succeeded"}}]}
    )
    source = {"jsonPath": "gen:$.outputs.parameters.list"}
    step = job_step("build", "gen", matrix={"parameters": [{"name": "x", "valueFrom": source}]})
    sim = Simulator(make_flow([gen, step]), T0, expand=True)
    sim.reconcile()
    sim.complete(GEN)
    sim.reconcile()
    assert phases(sim) == {"gen": "Succeeded", "build": "Pending"}
    assert sorted(created(sim)) == ["gen"]
    sim.reconcile()  # expanded from the status that plan wrote: "1" is no array
    assert phases(sim) == {"gen": "Succeeded", "build": "Failed"}
    assert "it is JSON, but not an array" in (messages(sim)["build"] or "")


def cached(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> MatrixFlows:
    """The simulator's plans made from the controller's cache (MatrixFlows) rather than a fresh expansion."""
    flows = MatrixFlows()
    monkeypatch.setattr(simulator_module, "effective_flow", lambda flow: flows.effective(flow)[0])
    return flows


def new_generation(sim: Simulator, **spec: Any) -> None:
    """A spec write (suspend toggled, parallelism, kubectl edit): a new generation."""
    meta = sim.flow.metadata.model_copy(update={"generation": sim.flow.metadata.generation + 1})
    sim.flow = sim.flow.model_copy(update={"metadata": meta, "spec": sim.flow.spec.model_copy(update=spec)})


def test_a_spec_write_just_after_the_source_succeeded_does_not_keep_the_step_waiting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The cache entry was made while gen ran; the write recording gen's success and a new generation
    # land before the next reconcile: the started flow kept its waiting stand-in, keyed with gen's new
    # state, and never expanded it (Running forever, nothing running).
    sim = simulator(reader=False)
    cached(sim, monkeypatch)
    sim.reconcile()
    sim.complete(GEN, {"main": '["a"]'})
    sim.reconcile()  # writes gen Succeeded
    assert phases(sim) == {"gen": "Succeeded", "build": "Pending", "publish": "Pending"}
    new_generation(sim, parallelism=5)
    settle(sim)
    assert phases(sim) == {
        "gen": "Succeeded",
        "build-0": "Running",
        "build-1": "Running",
        "publish": "Pending",
    }
    for item in ("build-0", "build-1"):
        sim.complete(job_name("flow", item, 0))
    settle(sim)
    sim.complete(job_name("flow", "publish", 0))
    settle(sim)
    assert sim.phase == "Succeeded"


def test_an_argument_edited_under_a_started_flow_then_its_source_landing_keeps_the_static_items(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Where no admission policy guards it, the argument a static matrix reads is edited after the start:
    # the flow keeps its running items; when gen's output lands, only `build` expands, and the static
    # items stay (they were expanded again from the edited argument: the running deploy-1 and deploy-2
    # vanished, their Jobs deleted as strays).
    deploy = job_step("deploy", matrix={"parameters": [{"name": "r", "valueFrom": {"argument": "regions"}}]})
    sim = simulator(reader=False, more=(deploy,), arguments={"regions": '["eu","us","ap"]'})
    flows = cached(sim, monkeypatch)
    sim.reconcile()
    deploys = ["deploy-0", "deploy-1", "deploy-2"]
    assert [n for n in phases(sim) if n.startswith("deploy")] == deploys
    new_generation(sim, arguments=make_flow([], arguments={"regions": '["eu"]'}).spec.arguments)
    sim.reconcile()
    sim.complete(GEN, {"main": '["a"]'})
    settle(sim)
    assert phases(sim) == {
        "gen": "Succeeded",
        "build-0": "Running",
        "build-1": "Running",
        "publish": "Pending",
        **dict.fromkeys(deploys, "Running"),
    }
    assert flows.effective(sim.flow)[1] == ()
    assert not [a for p in sim.plans for a in p.actions if isinstance(a, DeleteJob)]
