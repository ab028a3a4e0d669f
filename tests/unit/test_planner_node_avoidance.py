"""retryPolicy.affinity.nodeAntiAffinity: a retry's pod keeps off the nodes the step's failed attempts
ran on (planner/node_avoidance.py)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zen_flow.api.constants import MAX_FAILED_NODES, StepPhase, failed_nodes_kept
from zen_flow.planner import CreateJob, plan
from zen_flow.planner.backoff import retry_limit
from zen_flow.planner.interventions import _reset
from zen_flow.planner.node_avoidance import FAILED_NODES, avoid_nodes, remember
from zen_flow.validation import size
from zen_flow_dev.testing.flows import job_step, job_template, make_flow
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2026, 1, 1, tzinfo=UTC)
AVOID = {"limit": 20, "backoff": {"type": "Fixed", "duration": "1s"}, "affinity": {"nodeAntiAffinity": {}}}
REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"


def not_on(*nodes: str) -> list[dict[str, Any]]:
    return [{"key": "metadata.name", "operator": "NotIn", "values": [n]} for n in nodes]


def template_with(
    affinity: dict[str, Any] | None, node_selector: dict[str, str] | None = None
) -> dict[str, Any]:
    template = job_template()
    pod = template["spec"]["template"]["spec"]
    if affinity is not None:
        pod["affinity"] = affinity
    if node_selector is not None:
        pod["nodeSelector"] = node_selector
    return template


def created(sim: Simulator) -> dict[str, Any]:
    """The body of the Job the last plan created."""
    (action,) = [a for a in sim.last.actions if isinstance(a, CreateJob)]
    return action.body


def pod_spec(body: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = body["spec"]["template"]["spec"]
    return spec


def fail_on(sim: Simulator, *nodes: str) -> None:
    """The running Job fails, its failed pods having run on `nodes` (none: never scheduled)."""
    (job,) = sim.running()
    messages = {"exit:main": "exit code 1"}
    if nodes:
        messages[FAILED_NODES] = " ".join(nodes)
    sim.fail(job, messages=messages)
    sim.reconcile()


def retry(sim: Simulator) -> dict[str, Any]:
    """Wait out the backoff; the body of the retry's Job."""
    sim.advance(5)
    sim.reconcile()
    return created(sim)


def test_a_retry_avoids_the_node_its_failed_attempt_ran_on_in_a_new_term() -> None:
    sim = Simulator(make_flow([job_step("train", retryPolicy=AVOID)]), T0)
    sim.reconcile()
    assert "affinity" not in pod_spec(created(sim))  # the first attempt runs anywhere
    fail_on(sim, "gpu-7")
    step = sim.flow.status.step("train")
    assert step is not None
    assert step.phase == StepPhase.RETRYING
    assert step.failed_nodes == ("gpu-7",)
    assert step.message is not None
    assert step.message.endswith("; the next attempt avoids node gpu-7")
    assert step.message.startswith("attempt 1 failed: Job failed: main: exit code 1")
    body = retry(sim)
    assert pod_spec(body)["affinity"] == {
        "nodeAffinity": {REQUIRED: {"nodeSelectorTerms": [{"matchFields": not_on("gpu-7")}]}}
    }


def test_each_of_the_users_terms_gets_the_requirement_and_the_rest_stays() -> None:
    terms = [
        {"matchExpressions": [{"key": "gpu", "operator": "In", "values": ["a100"]}]},
        {
            "matchExpressions": [{"key": "gpu", "operator": "In", "values": ["h100"]}],
            "matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["old"]}],
        },
    ]
    pod_affinity = {
        "requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "zone", "labelSelector": {}}]
    }
    preferred = [{"weight": 1, "preference": {"matchExpressions": [{"key": "x", "operator": "Exists"}]}}]
    affinity = {
        "nodeAffinity": {
            REQUIRED: {"nodeSelectorTerms": terms},
            "preferredDuringSchedulingIgnoredDuringExecution": preferred,
        },
        "podAffinity": pod_affinity,
    }
    template = template_with(copy.deepcopy(affinity), node_selector={"pool": "gpu"})
    sim = Simulator(make_flow([job_step("train", template=template, retryPolicy=AVOID)]), T0)
    sim.reconcile()
    fail_on(sim, "gpu-7")
    spec = pod_spec(retry(sim))
    assert spec["nodeSelector"] == {"pool": "gpu"}
    assert spec["affinity"]["podAffinity"] == pod_affinity
    node = spec["affinity"]["nodeAffinity"]
    assert node["preferredDuringSchedulingIgnoredDuringExecution"] == preferred
    assert node[REQUIRED]["nodeSelectorTerms"] == [
        {**terms[0], "matchFields": not_on("gpu-7")},
        {**terms[1], "matchFields": [*terms[1]["matchFields"], *not_on("gpu-7")]},
    ]


def test_one_user_term_is_anded_with_the_requirement() -> None:
    term = {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}
    template = template_with({"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": [term]}}})
    sim = Simulator(make_flow([job_step("train", template=template, retryPolicy=AVOID)]), T0)
    sim.reconcile()
    fail_on(sim, "gpu-7")
    terms = pod_spec(retry(sim))["affinity"]["nodeAffinity"][REQUIRED]["nodeSelectorTerms"]
    assert terms == [{**term, "matchFields": not_on("gpu-7")}]
    assert "matchFields" not in term  # the spec's template itself is untouched


def test_the_nodes_accumulate_across_attempts_and_a_pod_never_scheduled_adds_none() -> None:
    sim = Simulator(make_flow([job_step("train", retryPolicy=AVOID)]), T0)
    sim.reconcile()
    fail_on(sim, "a")
    retry(sim)
    fail_on(sim, "b", "a")  # the Job's own retries: two failed pods, on b then a again
    assert sim.flow.status.step("train").failed_nodes == ("b", "a")  # type: ignore[union-attr]
    retry(sim)
    fail_on(sim)  # never got a node: nothing new
    step = sim.flow.status.step("train")
    assert step is not None
    assert step.failed_nodes == ("b", "a")
    assert step.message is not None
    assert step.message.endswith("the next attempt avoids nodes a, b")
    terms = pod_spec(retry(sim))["affinity"]["nodeAffinity"][REQUIRED]["nodeSelectorTerms"]
    assert terms == [{"matchFields": not_on("b", "a")}]


def test_the_newest_nodes_are_kept_up_to_the_bound() -> None:
    flow = make_flow([job_step("train", retryPolicy=AVOID)], execution_policy={"backoffLimit": 30})
    sim = Simulator(flow, T0)
    sim.reconcile()
    names = [f"n{i}" for i in range(MAX_FAILED_NODES + 2)]
    for name in names[:-1]:
        fail_on(sim, name)
        retry(sim)
    fail_on(sim, names[-1])
    step = sim.flow.status.step("train")
    assert step is not None
    assert step.failed_nodes == tuple(names[-MAX_FAILED_NODES:])
    assert step.message is not None
    assert step.message.endswith(f"avoids nodes n17, n16, n15 and {MAX_FAILED_NODES - 3} more")


def test_without_the_affinity_nothing_is_recorded_nor_avoided() -> None:
    policy = {k: v for k, v in AVOID.items() if k != "affinity"}
    sim = Simulator(make_flow([job_step("train", retryPolicy=policy)]), T0)
    sim.reconcile()
    fail_on(sim, "gpu-7")
    step = sim.flow.status.step("train")
    assert step is not None
    assert step.failed_nodes is None
    assert "avoids" not in (step.message or "")
    assert "affinity" not in pod_spec(retry(sim))


def test_matrix_items_keep_their_own_nodes() -> None:
    matrix = {"parameters": [{"name": "shard", "values": ["0", "1"]}]}
    sim = Simulator(make_flow([job_step("train", retryPolicy=AVOID, matrix=matrix)]), T0, expand=True)
    sim.reconcile()
    first, second = sim.running()
    sim.fail(first, messages={FAILED_NODES: "a"})
    sim.fail(second, messages={FAILED_NODES: "b"})
    sim.reconcile()
    nodes = {s.name: s.failed_nodes for s in sim.flow.status.steps}
    assert nodes == {"train-0": ("a",), "train-1": ("b",)}
    sim.advance(5)
    sim.reconcile()
    bodies = {a.step: a.body for a in sim.last.actions if isinstance(a, CreateJob)}
    assert {
        step: pod_spec(body)["affinity"]["nodeAffinity"][REQUIRED]["nodeSelectorTerms"]
        for step, body in bodies.items()
    } == {"train-0": [{"matchFields": not_on("a")}], "train-1": [{"matchFields": not_on("b")}]}


def test_the_retry_job_is_built_from_the_status_alone() -> None:
    # A restart (or another replica) plans from the stored flow: no pod is read again.
    sim = Simulator(make_flow([job_step("train", retryPolicy=AVOID)]), T0)
    sim.reconcile()
    fail_on(sim, "gpu-7")
    later = sim.now.replace(microsecond=0) + (sim.flow.status.step("train").next_retry_time - sim.now)  # type: ignore[union-attr,operator]
    fresh = plan(sim.flow, list(sim.jobs.values()), later, messages={})
    (action,) = [a for a in fresh.actions if isinstance(a, CreateJob)]
    assert pod_spec(action.body)["affinity"]["nodeAffinity"][REQUIRED]["nodeSelectorTerms"] == [
        {"matchFields": not_on("gpu-7")}
    ]


def test_a_rerun_forgets_the_nodes() -> None:
    sim = Simulator(make_flow([job_step("train", retryPolicy={**AVOID, "limit": 0})]), T0)
    sim.reconcile()
    fail_on(sim, "gpu-7")
    step = sim.flow.status.step("train")
    assert step is not None
    assert step.phase == StepPhase.FAILED
    assert step.failed_nodes == ("gpu-7",)
    assert _reset(step, True, "alice").failed_nodes is None


node_names = st.text("abc", min_size=1, max_size=2)
# More distinct names than any bound keeps (39 of them), so the cut is exercised.
many_names = st.text("abc", min_size=1, max_size=3)


@given(st.lists(st.lists(many_names, max_size=6), max_size=20), st.integers(0, 30))
def test_remember_keeps_distinct_newest_nodes_within_the_bound(reads: list[list[str]], limit: int) -> None:
    keep = min(MAX_FAILED_NODES, limit + 1)
    known: tuple[str, ...] | None = None
    for found in reads:
        known = remember(known, found, keep)
    seen = [n for found in reads for n in found]
    if not seen:
        assert known is None
        return
    assert known is not None
    assert len(known) == len(set(known)) == min(keep, len(set(seen)))
    # The newest: each name's last sighting, the latest `keep` of them, oldest first.
    last = {n: i for i, n in enumerate(seen)}
    assert list(known) == sorted(last, key=last.__getitem__)[-keep:]


terms_strategy = st.lists(
    st.fixed_dictionaries(
        {"matchExpressions": st.just([{"key": "k", "operator": "Exists"}])},
        optional={"matchFields": st.just([{"key": "metadata.name", "operator": "In", "values": ["x"]}])},
    ),
    max_size=3,
)


@given(terms_strategy, st.lists(node_names, min_size=1, max_size=4, unique=True))
def test_every_term_excludes_every_node_and_keeps_its_own_requirements(
    terms: list[dict[str, Any]], nodes: list[str]
) -> None:
    body = template_with(
        {"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": copy.deepcopy(terms)}}} if terms else None
    )
    avoid_nodes(body, tuple(nodes))
    out = pod_spec(body)["affinity"]["nodeAffinity"][REQUIRED]["nodeSelectorTerms"]
    assert len(out) == max(1, len(terms))
    for i, term in enumerate(out):
        assert term["matchFields"][-len(nodes) :] == not_on(*nodes)
        if terms:
            assert term["matchExpressions"] == terms[i]["matchExpressions"]
            assert term["matchFields"][: -len(nodes)] == terms[i].get("matchFields", [])


@pytest.mark.parametrize(
    "bad", [{"nodeAffinity": []}, {"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": "x"}}}]
)
def test_a_malformed_affinity_fails_the_attempt_naming_the_field(bad: dict[str, Any]) -> None:
    sim = Simulator(make_flow([job_step("train", template=template_with(bad), retryPolicy=AVOID)]), T0)
    sim.reconcile()
    fail_on(sim, "gpu-7")
    sim.advance(5)
    sim.reconcile()
    step = sim.flow.status.step("train")
    assert step is not None
    assert step.phase == StepPhase.FAILED
    assert step.message is not None
    assert step.message.startswith("cannot create Job: template.spec.template.spec.affinity")


def test_the_longest_node_names_stay_within_the_status_bound_admission_counts() -> None:
    # 16 failed attempts, each on a node whose name is as long as a name may be (253), the step's message
    # long too: the status stays within what validation/size.py allows the flow.
    flow = make_flow([job_step("train", retryPolicy=AVOID)], execution_policy={"backoffLimit": 30})
    spec = flow.spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    plain = {**spec, "steps": [{k: v for k, v in spec["steps"][0].items() if k != "retryPolicy"}]}
    sim = Simulator(flow, T0)
    sim.reconcile()
    for i in range(MAX_FAILED_NODES + 1):
        (job,) = sim.running()
        node = f"{i:03}" + "n" * 250
        sim.fail(job, message="x" * 1000, messages={FAILED_NODES: node, "exit:main": "exit code 1"})
        sim.reconcile()
        retry(sim)
    step = sim.flow.status.step("train")
    assert step is not None
    assert step.failed_nodes is not None
    assert len(step.failed_nodes) == MAX_FAILED_NODES
    field = len(json.dumps({"failedNodes": list(step.failed_nodes)}))
    assert size.status_bound(spec) - size.status_bound(plain) >= field  # admission counts the field
    assert len(json.dumps(sim.flow.status.to_wire())) <= size.status_bound(spec)


def test_the_nodes_kept_are_bounded_by_the_retry_limit() -> None:
    # limit 1: two attempts, so at most two nodes matter; a parallel Job's three failed pods keep two.
    sim = Simulator(make_flow([job_step("train", retryPolicy={**AVOID, "limit": 1})]), T0)
    sim.reconcile()
    fail_on(sim, "a", "b", "c")
    step = sim.flow.status.step("train")
    assert step is not None
    assert step.failed_nodes == ("b", "c")
    terms = pod_spec(retry(sim))["affinity"]["nodeAffinity"][REQUIRED]["nodeSelectorTerms"]
    assert terms == [{"matchFields": not_on("b", "c")}]


@given(st.one_of(st.none(), st.integers(min_value=-3, max_value=40)))
def test_the_nodes_kept_are_one_per_attempt_the_planner_allows(limit: int | None) -> None:
    # One reading of retryPolicy.limit (its default, a negative one) for the planner's retries and the
    # nodes the status keeps and admission counts: were they two, a changed default would drift apart.
    policy = (
        {**AVOID, "limit": limit} if limit is not None else {k: v for k, v in AVOID.items() if k != "limit"}
    )
    step = make_flow([job_step("train", retryPolicy=policy)]).spec.steps[0]
    assert failed_nodes_kept(limit) == min(MAX_FAILED_NODES, retry_limit(step) + 1)


def test_the_note_survives_a_long_error_and_long_node_names() -> None:
    sim = Simulator(make_flow([job_step("train", retryPolicy=AVOID)]), T0)
    sim.reconcile()
    (job,) = sim.running()
    nodes = [c * 253 for c in "xyz"]
    sim.fail(job, message="m" * 1000, messages={FAILED_NODES: " ".join(nodes), "exit:main": "exit code 1"})
    sim.reconcile()
    step = sim.flow.status.step("train")
    assert step is not None
    assert step.failed_nodes == tuple(nodes)
    assert step.message is not None
    assert len(step.message) <= 256
    assert step.message.startswith("attempt 1 failed: Job failed")  # the error gives way, cut
    shown = ", ".join(c * 60 + "..." for c in "zyx")  # a name is shown up to 63 characters
    assert step.message.endswith(f"; the next attempt avoids nodes {shown}")


def test_an_empty_term_stays_empty_beside_one_that_gets_the_requirement() -> None:
    term = {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}
    template = template_with({"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": [{}, term]}}})
    sim = Simulator(make_flow([job_step("train", template=template, retryPolicy=AVOID)]), T0)
    sim.reconcile()
    fail_on(sim, "gpu-7")
    terms = pod_spec(retry(sim))["affinity"]["nodeAffinity"][REQUIRED]["nodeSelectorTerms"]
    assert terms == [{}, {**term, "matchFields": not_on("gpu-7")}]


def test_a_template_deadline_records_no_node() -> None:
    # The template's own activeDeadlineSeconds ended the attempt: the node did nothing wrong.
    template = job_template()
    template["spec"]["activeDeadlineSeconds"] = 60
    sim = Simulator(make_flow([job_step("train", template=template, retryPolicy=AVOID)]), T0)
    sim.reconcile()
    (job,) = sim.running()
    sim.fail(job, reason="DeadlineExceeded", messages={FAILED_NODES: "gpu-7"})
    sim.reconcile()
    step = sim.flow.status.step("train")
    assert step is not None
    assert step.phase == StepPhase.RETRYING
    assert step.failed_nodes is None
    assert "avoids" not in (step.message or "")
    assert "affinity" not in pod_spec(retry(sim))


def test_a_pod_pinned_by_node_name_fails_the_step_at_its_retry_naming_the_field() -> None:
    # Admission refuses it (validation/steps.py); a flow that reaches the planner without the webhook
    # fails clearly rather than retrying onto the node it excludes.
    template = job_template()
    template["spec"]["template"]["spec"]["nodeName"] = "gpu-7"
    sim = Simulator(make_flow([job_step("train", template=template, retryPolicy=AVOID)]), T0)
    sim.reconcile()
    fail_on(sim, "gpu-7")
    sim.advance(5)
    sim.reconcile()
    step = sim.flow.status.step("train")
    assert step is not None
    assert step.phase == StepPhase.FAILED
    assert step.message is not None
    assert step.message.startswith("cannot create Job: template.spec.template.spec.nodeName")


def _spec(flow: Any) -> dict[str, Any]:
    spec: dict[str, Any] = flow.spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    return spec


def test_the_status_bound_counts_the_nodes_of_each_matrix_item_by_the_retry_limit() -> None:
    matrix = {"parameters": [{"name": "shard", "values": [str(i) for i in range(10)]}]}
    items = _spec(make_flow([job_step("train", retryPolicy=AVOID, matrix=matrix)]))
    plain = _spec(make_flow([job_step("train", matrix=matrix, retryPolicy={"limit": 20})]))
    assert size.status_bound(items) - size.status_bound(plain) == 10 * size.failed_nodes_bytes(
        MAX_FAILED_NODES
    )
    # At the default limit (3) four names are kept: about 1 KB per item.
    default = _spec(
        make_flow([job_step("train", matrix=matrix, retryPolicy={"affinity": {"nodeAntiAffinity": {}}})])
    )
    bare = _spec(make_flow([job_step("train", matrix=matrix, retryPolicy={})]))
    assert size.status_bound(default) - size.status_bound(bare) == 10 * size.failed_nodes_bytes(4)
    assert size.failed_nodes_bytes(4) <= 1100


def test_the_status_bound_counts_the_nodes_of_each_item_an_output_may_give() -> None:
    # A matrix whose items come from an earlier step's output: counted as its maxItems steps.
    gen = job_step(
        "gen",
        outputs={
            "parameters": [{"name": "list", "valueFrom": {"terminationMessage": {"container": "main"}}}]
        },
    )
    source = {
        "parameters": [{"name": "x", "valueFrom": {"jsonPath": "gen:$.outputs.parameters.list"}}],
        "maxItems": 7,
    }
    avoiding = _spec(make_flow([gen, job_step("build", "gen", matrix=source, retryPolicy=AVOID)]))
    plain = _spec(make_flow([gen, job_step("build", "gen", matrix=source, retryPolicy={"limit": 20})]))
    assert size.status_bound(avoiding) - size.status_bound(plain) == 7 * size.failed_nodes_bytes(
        MAX_FAILED_NODES
    )
