"""Planner: values supplied when a Manual gate is approved (outputs.parameters[].valueFrom.supplied).

An approved gate records its values (given, else the default) in status.steps[].outputs, where later steps
read them as any step's outputs; without the webhook, a missing or disallowed value fails the gate naming
the parameter; a rerun that reaches the gate again takes the values afresh.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from zen_flow.api.constants import (
    ANNOTATION_APPROVED_BY_PREFIX,
    ANNOTATION_RETRY,
    ANNOTATION_VALUES_BY_PREFIX,
    APPROVE_PREFIX,
    VALUES_PREFIX,
)
from zen_flow.planner import CreateJob
from zen_flow_dev.testing.flows import job_step, make_flow, manual_step
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def supplied(name: str, **source: Any) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"supplied": source}}


def deploy(**fields: Any) -> dict[str, Any]:
    """A step reading the gate's env as an input, and its version in a when."""
    return job_step(
        "deploy",
        "gate",
        inputs={"parameters": [{"name": "env", "valueFrom": {"jsonPath": "gate:$.outputs.parameters.env"}}]},
        **fields,
    )


def release(
    annotations: dict[str, str] | None = None,
    *,
    timeout: int | None = None,
    approval: dict[str, Any] | None = None,
    **deploy_fields: Any,
) -> Simulator:
    gate: dict[str, Any] = {
        "outputs": {
            "parameters": [
                supplied("env", enum=["staging", "prod"]),
                supplied("version", default="latest"),
            ]
        }
    }
    if timeout is not None:
        gate["timeoutSeconds"] = timeout
    if approval is not None:
        gate["approval"] = approval
    steps = [job_step("build"), manual_step("gate", "build", **gate), deploy(**deploy_fields)]
    sim = Simulator(make_flow(steps, name="rel", annotations=annotations), T0)
    sim.reconcile()
    sim.complete(sim.running()[0])
    sim.reconcile()
    return sim


def env_of(sim: Simulator, step: str) -> dict[str, str]:
    bodies = [a.body for p in sim.plans for a in p.actions if isinstance(a, CreateJob) and a.step == step]
    assert bodies, f"no Job was created for step {step}"
    env = bodies[-1]["spec"]["template"]["spec"]["containers"][0].get("env", [])
    return {e["name"]: e["value"] for e in env if "value" in e}


def outputs(sim: Simulator, step: str = "gate") -> dict[str, str] | None:
    found = sim.flow.status.step(step)
    assert found is not None
    return {p.name: p.value for p in found.outputs.parameters} if found.outputs is not None else None


def gate(sim: Simulator) -> tuple[str, str | None]:
    found = sim.flow.status.step("gate")
    assert found is not None
    return found.phase, found.message


def give(sim: Simulator, values: dict[str, str], user: str | None = "alice") -> None:
    sim.annotate(VALUES_PREFIX + "gate", json.dumps(values))
    if user:
        sim.annotate(ANNOTATION_VALUES_BY_PREFIX + "gate", user)


def approve(sim: Simulator) -> None:
    sim.annotate(APPROVE_PREFIX + "gate", "true")
    sim.annotate("approved-by.workflow.kube-zen.io/gate", "bob")


def run_to_deploy(sim: Simulator) -> None:
    sim.reconcile()  # the gate opens and records its values
    sim.reconcile()  # its dependent starts once they are committed


def test_an_approved_gate_records_its_values_and_the_default_of_one_not_given() -> None:
    sim = release()
    give(sim, {"env": "prod"})
    approve(sim)
    run_to_deploy(sim)
    assert gate(sim) == ("Succeeded", "approved by bob")
    assert outputs(sim) == {"env": "prod", "version": "latest"}
    assert env_of(sim, "deploy")["ZF_PARAM_ENV"] == "prod"


def test_values_read_in_a_when_decide_the_dependent() -> None:
    sim = release(when="steps.gate.outputs.parameters.env == 'staging'")
    give(sim, {"env": "prod", "version": "1.2"})
    approve(sim)
    run_to_deploy(sim)
    assert outputs(sim) == {"env": "prod", "version": "1.2"}
    deployed = sim.flow.status.step("deploy")
    assert deployed is not None
    assert deployed.phase == "Skipped"


def test_the_audit_entry_of_the_approval_says_who_supplied_the_values() -> None:
    sim = release()
    give(sim, {"env": "staging"}, user="carol")
    approve(sim)
    sim.reconcile()
    audit = sim.flow.status.audit
    assert audit is not None
    assert [(a.decision, a.user, a.supplied_by) for a in audit.approvals] == [("Approved", "bob", "carol")]


def test_values_given_before_the_gate_is_reached_count_when_it_is() -> None:
    sim = release({VALUES_PREFIX + "gate": '{"env":"staging"}', APPROVE_PREFIX + "gate": "true"})
    sim.reconcile()
    assert gate(sim) == ("Succeeded", "approved")
    assert outputs(sim) == {"env": "staging", "version": "latest"}


def test_without_the_webhook_a_missing_value_fails_the_gate_naming_the_parameter() -> None:
    sim = release()
    approve(sim)
    sim.reconcile()
    phase, message = gate(sim)
    assert phase == "Failed"
    assert message is not None
    assert "needs a value for parameter 'env'" in message
    assert VALUES_PREFIX + "gate" in message
    assert outputs(sim) is None
    assert sim.phase == "Failed"
    assert not [a for p in sim.plans for a in p.actions if isinstance(a, CreateJob) and a.step == "deploy"]


def test_without_the_webhook_a_value_outside_the_enum_fails_the_gate() -> None:
    sim = release()
    give(sim, {"env": "qa"})
    approve(sim)
    sim.reconcile()
    phase, message = gate(sim)
    assert phase == "Failed"
    assert message is not None
    assert "value 'qa' of parameter 'env' is not one of: staging, prod" in message


def test_without_the_webhook_a_name_the_gate_does_not_declare_fails_it_naming_the_name() -> None:
    # A typo: "verison" would leave version at its default, silently, where the webhook refuses it.
    sim = release()
    give(sim, {"env": "prod", "verison": "1.2"})
    approve(sim)
    sim.reconcile()
    phase, message = gate(sim)
    assert phase == "Failed"
    assert message == (
        "approved by bob, but its values cannot be taken (values.workflow.kube-zen.io/gate): the gate has "
        "no supplied output parameter 'verison' (declared: env, version)"
    )
    assert outputs(sim) is None


def test_an_annotation_that_is_no_json_object_fails_the_gate_instead_of_raising() -> None:
    sim = release()
    sim.annotate(VALUES_PREFIX + "gate", "[not json")
    approve(sim)
    sim.reconcile()
    phase, message = gate(sim)
    assert phase == "Failed"
    assert message is not None
    assert "JSON object of strings" in message


def test_a_value_utf8_cannot_encode_fails_the_gate_instead_of_every_plan() -> None:
    # `"\ud800"` is valid ASCII JSON that Python reads into a lone surrogate: without the webhook the
    # plan raised UnicodeEncodeError at every reconcile, and the flow stayed waiting with no word.
    sim = release()
    sim.annotate(VALUES_PREFIX + "gate", '{"env": "\\ud800"}')
    approve(sim)
    sim.reconcile()
    phase, message = gate(sim)
    assert phase == "Failed"
    assert message is not None
    assert "'env' holds \\ud800, a lone surrogate, which is no Unicode text" in message
    assert outputs(sim) is None
    assert sim.phase == "Failed"


def test_a_waiting_gate_records_no_values() -> None:
    sim = release()
    give(sim, {"env": "prod"})
    sim.reconcile()
    assert gate(sim)[0] == "PendingApproval"
    assert outputs(sim) is None


def test_a_rerun_that_reaches_a_timed_out_gate_again_takes_the_values_afresh() -> None:
    sim = release(timeout=60)
    sim.advance(61)
    sim.reconcile()
    assert gate(sim)[0] == "Failed"
    sim.annotate(ANNOTATION_RETRY, "r1")
    sim.reconcile()
    assert gate(sim)[0] == "PendingApproval"
    assert outputs(sim) is None
    give(sim, {"env": "staging"})
    approve(sim)
    run_to_deploy(sim)
    assert outputs(sim) == {"env": "staging", "version": "latest"}
    assert env_of(sim, "deploy")["ZF_PARAM_ENV"] == "staging"


def test_the_approval_that_opens_a_gate_says_who_supplied_the_values_by_a_user_audited_before() -> None:
    # Two must approve: alice approves (audited), her approval is taken back, bob approves, and alice
    # approves again: hers opens the gate, and its entry says who set the values.
    sim = release(approval={"required": 2})
    give(sim, {"env": "prod"}, user="carol")
    for approved_by in ("alice", None, "bob", "bob,alice"):
        if approved_by is None:
            sim.annotate(APPROVE_PREFIX + "gate", None)
            sim.annotate(ANNOTATION_APPROVED_BY_PREFIX + "gate", None)
        else:
            sim.annotate(APPROVE_PREFIX + "gate", f"true-{len(approved_by)}")
            sim.annotate(ANNOTATION_APPROVED_BY_PREFIX + "gate", approved_by)
        sim.reconcile()
    assert gate(sim) == ("Succeeded", "approved by bob, alice")
    audit = sim.flow.status.audit
    assert audit is not None
    assert [(a.user, a.supplied_by) for a in audit.approvals] == [
        ("alice", None),
        ("bob", None),
        ("alice", "carol"),
    ]
