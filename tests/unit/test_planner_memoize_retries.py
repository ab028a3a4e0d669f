"""Planner: a retry served from the memoize cache is still an attempt: it keeps its count (the retry budget
stays spent, `zen-flow get` shows it), says which attempt was served, and under jobRetention LastAttempt
supersedes the earlier attempts' Jobs, though it has no Job of its own."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from test_planner_memoize import CACHE, creates, memoized, status

from zen_flow.api.constants import ANNOTATION_RETRIED_BY, ANNOTATION_RETRY
from zen_flow.core.naming import job_name
from zen_flow.planner import DeleteJob
from zen_flow.planner.memoization import MemoEntry, data_key, encode_entry
from zen_flow.planner.retention import SUPERSEDED_REASON
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)
RETRY = {"retryPolicy": {"limit": 2, "backoff": {"type": "Fixed", "duration": "1s"}}}


def served_retry(steps: list[dict[str, Any]] | None = None, **policy: Any) -> Simulator:
    """`a` fails its first attempt; another flow stores its key meanwhile; its retry is served."""
    sim = Simulator(make_flow(steps or [memoized(**RETRY)], execution_policy=policy or None), T0)
    sim.reconcile()
    sim.fail(job_name("flow", "a", 0))
    sim.reconcile()
    assert status(sim, "a").phase == "Retrying"
    entry = MemoEntry("build-v1", {"count": "7"}, "default/x", "a", T0)
    sim.memo_cache[CACHE] = {data_key("build-v1"): encode_entry(entry)}
    sim.advance(2)
    sim.reconcile()
    assert status(sim, "a").phase == "Succeeded"
    return sim


def test_a_served_retry_keeps_its_attempt_and_says_which() -> None:
    a = status(served_retry(), "a")
    assert (a.retry_count, a.job_ref) == (1, None)
    assert a.message.startswith("memoized (attempt 2): the result flow default/x (step a)")


def test_a_served_retry_spends_the_flow_retry_budget() -> None:
    # backoffLimit 1: a's retry (served) used it, so b's failure is final.
    steps = [memoized(**RETRY), job_step("b", "a", **RETRY)]
    sim = served_retry(steps, backoffLimit=1)
    sim.advance(1)
    sim.reconcile()
    sim.fail(job_name("flow", "b", 0))
    sim.reconcile()
    b = status(sim, "b")
    assert b.phase == "Failed"
    assert "(flow retry budget backoffLimit=1 used up)" in b.message
    assert [c.attempt for c in creates(sim, "b")] == [0]


def test_under_last_attempt_a_served_retry_supersedes_the_failed_attempts_job_once_stored() -> None:
    sim = served_retry(jobRetention="LastAttempt")
    # Not in the plan that serves it (its status write may be lost)...
    assert not [a for p in sim.plans for a in p.actions if isinstance(a, DeleteJob)]
    assert sim.phase == "Succeeded"
    # ...but in the next one, which reads the success stored.
    deletes = [a for a in sim.reconcile().actions if isinstance(a, DeleteJob)]
    assert deletes == [DeleteJob(job_name("flow", "a", 0), "a", SUPERSEDED_REASON)]
    assert list(sim.jobs) == []


@pytest.mark.parametrize("retention", ["LastAttempt", "FailedOnly"])
def test_a_served_rerun_taken_back_before_it_is_stored_keeps_the_failed_attempts_job(retention: str) -> None:
    sim = Simulator(make_flow([memoized()], execution_policy={"jobRetention": retention}), T0)
    sim.reconcile()
    sim.fail(job_name("flow", "a", 0))
    sim.reconcile()
    assert sim.phase == "Failed"
    entry = MemoEntry("build-v1", {"count": "7"}, "default/x", "a", T0)
    sim.memo_cache[CACHE] = {data_key("build-v1"): encode_entry(entry)}  # another flow stored the key
    sim.annotate(ANNOTATION_RETRY, "1")
    sim.annotate(ANNOTATION_RETRIED_BY, "alice")
    served = sim.reconcile(write_status=False)  # the rerun served from the cache; its write lost
    assert not [a for a in served.actions if isinstance(a, DeleteJob)]
    sim.annotate(ANNOTATION_RETRY, None)  # the request taken back: the rerun never happened
    sim.reconcile()
    a = status(sim, "a")
    assert a.phase == "Failed"
    assert a.job_ref is not None
    assert a.job_ref.name == job_name("flow", "a", 0)
    assert job_name("flow", "a", 0) in sim.jobs  # the failure it records keeps its Job and logs


def test_by_default_a_served_retry_keeps_the_failed_attempts_job() -> None:
    sim = served_retry()
    assert not [a for p in sim.plans for a in p.actions if isinstance(a, DeleteJob)]
    assert list(sim.jobs) == [job_name("flow", "a", 0)]
