"""Planner: a memoized step (`memoize`) is served from a fresh cache entry of the same key without a Job,
its outputs read by its dependents; a missing, stale or unusable entry runs it, and only a success by
running is stored. The simulator plays the controller's part: it answers the plan's lookups from its
ConfigMaps and plans again, and applies SaveMemo actions to them."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from zen_flow.core.naming import job_name
from zen_flow.planner import CreateJob, SaveMemo, plan
from zen_flow.planner.memoization import data_key
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)
CACHE = "build-cache"


def memoized(
    name: str = "a",
    *deps: str,
    key: str = "build-{{inputs.parameters.version}}",
    version: str = "v1",
    max_age: str | None = "24h",
    **fields: Any,
) -> dict[str, Any]:
    memoize: dict[str, Any] = {"key": key, "cache": {"configMap": {"name": CACHE}}}
    if max_age is not None:
        memoize["maxAge"] = max_age
    fields.setdefault(
        "outputs", {"parameters": [{"name": "count", "valueFrom": {"jsonPath": "$.succeeded"}}]}
    )
    return job_step(
        name,
        *deps,
        inputs={"parameters": [{"name": "version", "value": version}]},
        memoize=memoize,
        **fields,
    )


def reader(name: str = "b", producer: str = "a") -> dict[str, Any]:
    """A step that takes `producer`'s output `count` as its input `n`."""
    source = {"jsonPath": f"{producer}:$.outputs.parameters.count"}
    return job_step(name, producer, inputs={"parameters": [{"name": "n", "valueFrom": source}]})


def status(sim: Simulator, step: str) -> Any:
    found = sim.flow.status.step(step)
    assert found is not None
    return found


def values(sim: Simulator, step: str) -> dict[str, str]:
    out = status(sim, step).outputs
    return {p.name: p.value for p in out.parameters} if out is not None else {}


def creates(sim: Simulator, step: str) -> list[CreateJob]:
    return [a for p in sim.plans for a in p.actions if isinstance(a, CreateJob) and a.step == step]


def saves(sim: Simulator) -> list[SaveMemo]:
    return [a for p in sim.plans for a in p.actions if isinstance(a, SaveMemo)]


def env(create: CreateJob) -> dict[str, str]:
    entries = create.body["spec"]["template"]["spec"]["containers"][0]["env"]
    return {e["name"]: e["value"] for e in entries if "value" in e}


def run_first(steps: list[dict[str, Any]], *, name: str = "first") -> Simulator:
    """A flow whose memoized step `a` runs (an empty cache) and succeeds."""
    sim = Simulator(make_flow(steps, name=name), T0)
    sim.reconcile()
    sim.complete(job_name(name, "a", 0))
    sim.reconcile()
    return sim


def second(first: Simulator, steps: list[dict[str, Any]], *, after: float = 60.0) -> Simulator:
    """Another flow, `after` seconds later, on the same cache."""
    sim = Simulator(make_flow(steps, name="second"), first.now + timedelta(seconds=after))
    sim.memo_cache = first.memo_cache
    sim.reconcile()
    return sim


def test_a_success_by_running_stores_its_outputs_under_a_hash_of_the_key() -> None:
    sim = run_first([memoized()])
    assert status(sim, "a").phase == "Succeeded"
    (save,) = saves(sim)
    assert (save.step, save.config_map, save.key) == ("a", CACHE, "build-v1")
    assert save.data_key == "memo-" + hashlib.sha256(b"build-v1").hexdigest()
    assert json.loads(sim.memo_cache[CACHE][save.data_key]) == {
        "key": "build-v1",
        "outputs": {"count": "1"},
        "flow": "default/first",
        "step": "a",
        "time": "2025-01-01T00:00:00Z",
        "expires": "2025-01-02T00:00:00Z",  # maxAge 24h: removed from the cache once past
    }


def test_without_max_age_an_entry_has_no_expiry() -> None:
    sim = run_first([memoized(max_age=None)])
    (save,) = saves(sim)
    assert "expires" not in json.loads(save.value)


def test_a_fresh_entry_succeeds_the_step_without_a_job_and_its_dependents_read_the_outputs() -> None:
    first = run_first([memoized(), reader()])
    sim = second(first, [memoized(), reader()])
    a = status(sim, "a")
    assert a.phase == "Succeeded"
    assert a.job_ref is None
    assert not creates(sim, "a")
    assert values(sim, "a") == {"count": "1"}
    assert a.message.startswith(
        "memoized: the result flow default/first (step a) stored at 2025-01-01T00:00:00Z"
    )
    assert a.message.endswith("key build-v1")
    # Its dependent starts once the values are in the status (the next reconcile, as after a Job).
    sim.reconcile()
    (b,) = creates(sim, "b")
    assert env(b)["ZF_PARAM_N"] == "1"
    memoized_events = [e for p in sim.plans for e in p.events if e.reason == "StepMemoized"]
    assert len(memoized_events) == 1
    assert memoized_events[0].type == "Normal"
    assert memoized_events[0].message.startswith("step a: memoized")
    assert not saves(sim)  # a result served from the cache is not stored again


def test_a_stale_entry_runs_the_step_and_stores_it_again() -> None:
    first = run_first([memoized(max_age="1h")])
    sim = second(first, [memoized(max_age="1h")], after=3600)
    assert status(sim, "a").phase == "Running"
    assert len(creates(sim, "a")) == 1
    sim.complete(job_name("second", "a", 0))
    sim.reconcile()
    (save,) = saves(sim)
    assert json.loads(save.value)["flow"] == "default/second"


def test_an_entry_just_younger_than_max_age_is_used() -> None:
    first = run_first([memoized(max_age="1h")])
    sim = second(first, [memoized(max_age="1h")], after=3599)
    assert status(sim, "a").phase == "Succeeded"


def test_without_max_age_an_entry_never_expires() -> None:
    first = run_first([memoized(max_age=None)])
    sim = second(first, [memoized(max_age=None)], after=365 * 86400)
    assert status(sim, "a").phase == "Succeeded"


def test_another_key_runs_the_step() -> None:
    first = run_first([memoized(version="v1")])
    sim = second(first, [memoized(version="v2")])
    assert status(sim, "a").phase == "Running"
    assert creates(sim, "a")


def test_an_entry_without_an_output_the_step_now_declares_runs_it() -> None:
    first = run_first([memoized()])
    more = {
        "parameters": [
            {"name": "count", "valueFrom": {"jsonPath": "$.succeeded"}},
            {"name": "when", "valueFrom": {"jsonPath": "$.completionTime"}},
        ]
    }
    sim = second(first, [memoized(outputs=more)])
    assert status(sim, "a").phase == "Running"


def test_a_malformed_or_foreign_entry_runs_the_step() -> None:
    foreign = {
        "key": "other",
        "outputs": {"count": "7"},
        "flow": "default/x",
        "step": "a",
        "time": "2025-01-01T00:00:00Z",
    }
    for text in ("not json", "[]", json.dumps(foreign)):
        first = run_first([memoized()])
        first.memo_cache[CACHE][data_key("build-v1")] = text
        sim = second(first, [memoized()])
        assert status(sim, "a").phase == "Running", text


def test_only_a_success_is_stored_not_a_failed_attempt() -> None:
    step = memoized(retryPolicy={"limit": 1, "backoff": {"type": "Fixed", "duration": "1s"}})
    sim = Simulator(make_flow([step]), T0)
    sim.reconcile()
    sim.fail(job_name("flow", "a", 0))
    sim.reconcile()
    assert status(sim, "a").phase == "Retrying"
    assert not saves(sim)
    sim.advance(2)
    sim.reconcile()
    sim.complete(job_name("flow", "a", 1))
    sim.reconcile()
    assert status(sim, "a").phase == "Succeeded"
    assert len(saves(sim)) == 1


def test_a_failed_step_stores_nothing() -> None:
    sim = Simulator(make_flow([memoized()]), T0)
    sim.reconcile()
    sim.fail(job_name("flow", "a", 0))
    sim.reconcile()
    assert sim.phase == "Failed"
    assert not saves(sim)
    assert sim.memo_cache == {}


def test_the_key_is_substituted_the_same_way_on_every_plan() -> None:
    step = memoized(key="{{.JobFlow.Namespace}}/{{.StepName}}/{{ inputs.parameters.version }}")
    flow = make_flow([step])
    one = plan(flow, [], T0)
    two = plan(flow, [], T0)
    assert one.lookups == two.lookups
    (lookup,) = one.lookups
    assert (lookup.step, lookup.config_map, lookup.key) == ("a", CACHE, "default/a/v1")
    assert lookup.data_key == data_key("default/a/v1")


def test_a_ready_step_waits_for_its_entry_and_creates_no_job_until_it_is_read() -> None:
    result = plan(make_flow([memoized()]), [], T0)
    assert not [a for a in result.actions if isinstance(a, CreateJob)]
    assert result.status.step("a").phase == "Pending"
    assert result.requeue_after == 1.0


def test_a_step_whose_job_exists_is_adopted_never_served_from_the_cache() -> None:
    sim = Simulator(make_flow([memoized()]), T0)
    sim.reconcile(write_status=False)  # the Job is created, the status write that records it is lost
    assert creates(sim, "a")
    reads = len(sim.memo_reads)
    # Meanwhile another flow stored a fresh entry under the same key.
    entry = {
        "key": "build-v1",
        "outputs": {"count": "7"},
        "flow": "default/x",
        "step": "a",
        "time": "2025-01-01T00:00:00Z",
    }
    sim.memo_cache[CACHE] = {data_key("build-v1"): json.dumps(entry)}
    sim.reconcile()
    a = status(sim, "a")
    assert a.phase == "Running"
    assert a.job_ref is not None
    assert a.job_ref.name == job_name("flow", "a", 0)
    assert len(sim.memo_reads) == reads  # the cache was not even read
    sim.complete(job_name("flow", "a", 0))
    sim.reconcile()
    assert values(sim, "a") == {"count": "1"}


def test_a_step_whose_when_is_false_reads_no_cache() -> None:
    sim = Simulator(make_flow([memoized(when="false")]), T0)
    sim.reconcile()
    assert status(sim, "a").phase == "Skipped"
    assert sim.memo_reads == []


def test_a_chain_of_memoized_steps_is_served_without_a_job() -> None:
    steps = [
        memoized("a"),
        memoized("b", "a", key="b-{{inputs.parameters.version}}"),
    ]
    first = Simulator(make_flow(steps, name="first"), T0)
    first.reconcile()
    first.complete(job_name("first", "a", 0))
    first.reconcile()
    first.reconcile()  # b starts once a's outputs are in the status
    first.complete(job_name("first", "b", 0))
    first.reconcile()
    assert first.phase == "Succeeded"
    sim = second(first, steps)
    sim.reconcile()
    assert sim.phase == "Succeeded"
    assert not creates(sim, "a")
    assert not creates(sim, "b")


def test_under_a_parallelism_limit_a_served_step_takes_no_slot() -> None:
    steps = [memoized("a", key="a"), job_step("c"), memoized("b", "a", key="b")]
    first = Simulator(make_flow([memoized("a", key="a")], name="first"), T0)
    first.reconcile()
    first.complete(job_name("first", "a", 0))
    first.reconcile()
    sim = Simulator(
        make_flow(steps, name="second", execution_policy={"parallelism": 1}), T0 + timedelta(seconds=1)
    )
    sim.memo_cache = first.memo_cache
    sim.reconcile()
    assert status(sim, "a").phase == "Succeeded"
    # a took no slot: c runs; b (its dependent, a miss) waits for the slot c holds.
    assert status(sim, "c").phase == "Running"
    assert status(sim, "b").phase == "Pending"


def entry(**fields: Any) -> str:
    doc = {"key": "build-v1", "outputs": {"count": "7"}, "flow": "default/x", "step": "a"}
    doc["time"] = "2025-01-01T00:00:00Z"
    doc.update(fields)
    return json.dumps(doc)


def test_an_entry_stamped_in_the_future_past_the_clock_skew_runs_the_step() -> None:
    # A stamp far ahead would otherwise beat every maxAge: 400 days later a 1h maxAge still served it.
    for stamp, served in (("9999-01-01T00:00:00Z", False), ("2025-01-01T00:06:00Z", False)):
        sim = Simulator(make_flow([memoized(max_age="1h")]), T0)
        sim.memo_cache[CACHE] = {data_key("build-v1"): entry(time=stamp)}
        sim.reconcile()
        assert (status(sim, "a").phase == "Succeeded") is served, stamp
    # A controller whose clock is a little behind another's: a few minutes ahead is still a hit.
    sim = Simulator(make_flow([memoized(max_age="1h")]), T0)
    sim.memo_cache[CACHE] = {data_key("build-v1"): entry(time="2025-01-01T00:04:00Z")}
    sim.reconcile()
    assert values(sim, "a") == {"count": "7"}


def test_a_retry_served_from_the_cache_has_no_job_ref() -> None:
    step = memoized(retryPolicy={"limit": 1, "backoff": {"type": "Fixed", "duration": "1s"}})
    sim = Simulator(make_flow([step]), T0)
    sim.reconcile()
    sim.fail(job_name("flow", "a", 0))
    sim.reconcile()
    assert status(sim, "a").job_ref is not None
    # Meanwhile another flow stored the key: the retry is served from it, and ran no Job.
    sim.memo_cache[CACHE] = {data_key("build-v1"): entry()}
    sim.advance(2)
    sim.reconcile()
    a = status(sim, "a")
    assert a.phase == "Succeeded"
    assert a.message.startswith("memoized (attempt 2): the result flow default/x")
    assert a.job_ref is None


def test_a_finally_step_is_never_served_from_the_cache() -> None:
    # Admission refuses memoize on a finally step; one stored before that rule still runs every time.
    steps = [job_step("main"), {**memoized("cleanup"), "finally": True}]
    sim = Simulator(make_flow(steps), T0)
    sim.memo_cache[CACHE] = {data_key("build-v1"): entry(step="cleanup")}
    sim.reconcile()
    sim.complete(job_name("flow", "main", 0))
    sim.reconcile()
    sim.reconcile()
    assert status(sim, "cleanup").phase == "Running"
    assert creates(sim, "cleanup")
    assert sim.memo_reads == []
