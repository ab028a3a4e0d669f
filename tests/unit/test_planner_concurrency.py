"""Planner: executionPolicy.concurrencyPolicy within a concurrency group (the concurrency-key label).

Forbid queues the newer flow (FIFO) until the older ones finished, Replace stops the older ones,
Allow runs side by side, and a flow without the label is in no group.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from zen_flow.api import JobFlow
from zen_flow.api.constants import (
    ANNOTATION_RETRY,
    ANNOTATION_RETRY_STEPS,
    LABEL_CONCURRENCY_KEY,
    ConcurrencyPolicy,
)
from zen_flow.planner import CreateJob, DeleteJob, Peer, keys_to_wake, peers_of, plan
from zen_flow.planner.concurrency import REPLACED_JOB_REASON, groups_to_wake, policy_of
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.group import FlowGroup

T0 = datetime(2025, 1, 1, tzinfo=UTC)
KEY = "nightly"


def flow(
    name: str,
    *,
    created: datetime = T0,
    policy: str | None = None,
    key: str | None = KEY,
    steps: int = 2,
    **kwargs: Any,
) -> JobFlow:
    chain = [job_step(f"s{i}", *([f"s{i - 1}"] if i else [])) for i in range(steps)]
    return make_flow(
        chain,
        name=name,
        created=created,
        labels={LABEL_CONCURRENCY_KEY: key} if key is not None else None,
        execution_policy={"concurrencyPolicy": policy} if policy else None,
        **kwargs,
    )


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def conditions(f: JobFlow) -> Mapping[str, Any]:
    return {c.type: c for c in f.status.conditions}


def reasons(result: Any) -> list[str]:
    return [e.reason for e in result.events]


def running_peer(name: str, created: datetime = T0, **fields: Any) -> Peer:
    return Peer(name, created, started=True, **fields)


# --- Forbid ------------------------------------------------------------------------------------------


def test_forbid_newer_flow_waits_pending_with_a_message_a_condition_and_one_event() -> None:
    group = FlowGroup(T0)
    group.add(flow("older", created=at(0)))
    group.add(flow("newer", created=at(1)))
    group.reconcile("older")
    first = group.reconcile("newer")
    assert first.actions == ()
    newer = group["newer"].flow
    assert newer.status.phase == "Pending"
    assert newer.status.start_time is None
    assert newer.status.message == f"waiting for older (concurrency group {KEY})"
    queued = conditions(newer)["Queued"]
    assert (queued.status, queued.reason, queued.message) == (
        "True",
        "ConcurrencyForbid",
        newer.status.message,
    )
    assert reasons(first) == ["FlowQueued"]
    assert first.requeue_after is None  # woken by the group, not by polling
    group.advance(30)
    again = group.reconcile("newer")
    assert again.status is group["newer"].flow.status  # nothing changed: no write, no second event
    assert again.events == ()


def test_forbid_flow_starts_as_soon_as_the_older_one_finished() -> None:
    group = FlowGroup(T0)
    group.add(flow("older", created=at(0), steps=1))
    group.add(flow("newer", created=at(1), steps=1))
    group.reconcile("older")
    group.reconcile("newer")
    group.advance(10)
    group.complete_all("older")
    group.reconcile("older")
    assert group["older"].phase == "Succeeded"
    result = group.reconcile("newer")
    assert [a.step for a in result.actions if isinstance(a, CreateJob)] == ["s0"]
    newer = group["newer"].flow
    assert newer.status.phase == "Running"
    assert newer.status.start_time == at(10)
    assert conditions(newer)["Queued"].status == "False"
    assert conditions(newer)["Queued"].reason == "NotQueued"
    assert "FlowStarted" in reasons(result)


def test_a_rerun_waits_for_its_group_while_another_flow_of_it_runs() -> None:
    # `old` failed, `newer` started behind it; a rerun of `old` must not run beside `newer` (Forbid).
    group = FlowGroup(T0)
    group.add(flow("old", created=at(0), steps=1))
    group.add(flow("newer", created=at(1), steps=1))
    group.reconcile("old")
    group.reconcile("newer")
    group["old"].fail(group["old"].running()[0])
    group.advance(10)
    group.reconcile("old")
    group.reconcile("newer")
    assert (group["old"].phase, group["newer"].phase) == ("Failed", "Running")
    group["old"].annotate(ANNOTATION_RETRY, "r1")
    group.advance(5)
    rerun = group.reconcile("old")
    assert not [a for a in rerun.actions if isinstance(a, CreateJob)]
    old = group["old"].flow
    assert (old.status.phase, old.status.start_time) == ("Pending", None)
    assert old.status.message == f"waiting for newer (concurrency group {KEY})"
    assert conditions(old)["Queued"].status == "True"
    assert reasons(rerun) == ["FlowRetried", "FlowQueued"]
    group.advance(20)
    group.complete_all("newer")
    group.reconcile("newer")
    started = group.reconcile("old")
    assert [a.step for a in started.actions if isinstance(a, CreateJob)] == ["s0"]
    assert (group["old"].phase, group["old"].flow.status.start_time) == (
        "Running",
        at(35),
    )  # deadline: per run


def test_a_rerun_waiting_for_its_group_skips_what_it_must_without_starting() -> None:
    # b fails, c (AnySucceeded on b) is skipped; a rerun of `a` alone skips c again at once while
    # `newer` runs: that skip does not start it, nor does its next plan run it beside `newer`.
    steps = [
        job_step("a"),
        job_step("b", continueOnFailure=True),
        job_step("c", "b", dependencyPolicy="AnySucceeded"),
    ]
    group = FlowGroup(T0)
    group.add(make_flow(steps, name="old", created=at(0), labels={LABEL_CONCURRENCY_KEY: KEY}))
    group.add(flow("newer", created=at(1), steps=1))
    group.reconcile("old")
    for job in group["old"].running():
        group["old"].fail(job)
    group.reconcile("old")
    group.reconcile("old")
    group.reconcile("newer")
    assert (group["old"].phase, group["newer"].phase) == ("Failed", "Running")
    group["old"].annotate(ANNOTATION_RETRY_STEPS, "a")
    group["old"].annotate(ANNOTATION_RETRY, "r1")
    for _ in range(2):
        rerun = group.reconcile("old")
        assert not [a for a in rerun.actions if isinstance(a, CreateJob)]
        old = group["old"].flow.status
        assert (old.phase, old.start_time) == ("Pending", None)
        assert old.message == f"waiting for newer (concurrency group {KEY})"


def test_a_rerun_keeps_its_place_in_the_queue_by_creation_time() -> None:
    # `old` failed; `newer` runs and `newest` waits behind it. A rerun of `old` waits too, and then goes
    # first: the group ranks flows by creationTimestamp, and a rerun keeps its flow's.
    group = FlowGroup(T0)
    group.add(flow("old", created=at(0), steps=1))
    group.reconcile("old")
    group["old"].fail(group["old"].running()[0])
    group.reconcile("old")
    group.add(flow("newer", created=at(1), steps=1))
    group.add(flow("newest", created=at(2), steps=1))
    group.reconcile("newer")
    group.reconcile("newest")
    group["old"].annotate(ANNOTATION_RETRY, "r1")
    group.reconcile("old")
    assert group.phases() == {"old": "Pending", "newer": "Running", "newest": "Pending"}
    group.complete_all("newer")
    group.reconcile_all()
    assert group.phases() == {"old": "Running", "newer": "Succeeded", "newest": "Pending"}
    assert group["newest"].flow.status.message == f"waiting for old (concurrency group {KEY})"


def test_forbid_is_the_default_policy_and_unknown_values_fall_back_to_it() -> None:
    assert policy_of(flow("a")) == ConcurrencyPolicy.FORBID
    assert policy_of(flow("a", policy="Sometimes")) == ConcurrencyPolicy.FORBID
    assert policy_of(flow("a", policy="Replace")) == ConcurrencyPolicy.REPLACE


def test_forbid_queue_is_fifo_and_each_waiting_flow_names_the_flow_ahead() -> None:
    group = FlowGroup(T0)
    for i, name in enumerate(["first", "second", "third"]):
        group.add(flow(name, created=at(i), steps=1))
    group.reconcile_all()
    assert group.running() == ["first"]
    assert group["second"].flow.status.message == f"waiting for first (concurrency group {KEY})"
    assert group["third"].flow.status.message == f"waiting for second (concurrency group {KEY})"
    third_status = group["third"].flow.status

    group.complete_all("first")
    group.reconcile_all()
    assert group.running() == ["second"]
    assert group["third"].flow.status is third_status  # the flow ahead did not change: no write

    group.complete_all("second")
    group.reconcile_all()
    assert group.running() == ["third"]
    group.complete_all("third")
    group.reconcile_all()
    assert set(group.phases().values()) == {"Succeeded"}


def test_fifo_order_follows_creation_time_then_name_not_reconcile_order() -> None:
    group = FlowGroup(T0)
    group.add(flow("zeta", created=at(0)))
    group.add(flow("alpha", created=at(5)))
    group.add(flow("beta", created=at(5)))  # same second as alpha: the name decides
    for name in ["beta", "alpha", "zeta"]:
        group.reconcile(name)
    assert group.running() == ["zeta"]
    group.complete_all("zeta")
    group.reconcile("zeta")
    group.complete_all("zeta")
    group.reconcile("zeta")
    assert group["zeta"].phase == "Succeeded"
    group.reconcile("beta")  # beta is reconciled first but waits for alpha
    group.reconcile("alpha")
    assert group.running() == ["alpha"]
    assert group["beta"].flow.status.message == f"waiting for alpha (concurrency group {KEY})"


def test_forbid_flow_waits_for_a_newer_flow_that_already_runs() -> None:
    # The cache delivered the newer flow first (equal timestamps, skewed clocks): it started. The
    # older one must not start beside it.
    group = FlowGroup(T0)
    group.add(flow("b-late", created=at(0)))
    group.add(flow("a-early", created=at(0)), visible=False)
    group.reconcile("b-late")
    assert group.running() == ["b-late"]
    group.show("a-early")
    result = group.reconcile("a-early")
    assert result.actions == ()
    assert group["a-early"].flow.status.message == f"waiting for b-late (concurrency group {KEY})"


def test_forbid_flow_waits_for_a_peer_whose_jobs_run_though_its_status_says_pending() -> None:
    # The newer flow started (its Job exists) but the status write recording it was lost and the
    # controller restarted, forgetting it had started it: its Jobs say so, its status does not.
    group = FlowGroup(T0)
    group.add(flow("b-late", created=at(0)))
    group.add(flow("a-early", created=at(0)), visible=False)
    group["b-late"].reconcile(write_status=False)
    assert group["b-late"].flow.status.start_time is None
    assert group.running() == ["b-late"]
    group.show("a-early")
    result = group.reconcile("a-early")
    assert result.actions == ()
    assert group["a-early"].flow.status.message == f"waiting for b-late (concurrency group {KEY})"
    assert group.running() == ["b-late"]


def test_finished_jobs_do_not_make_a_flow_waiting_to_rerun_look_started() -> None:
    # A failed flow asked to rerun waits for its group with its failed attempt's Job kept (for its logs):
    # counting that Job as running would make the flows it waits for wait for it in turn.
    group = FlowGroup(T0)
    group.add(flow("old", created=at(0), steps=1))
    group.add(flow("newer", created=at(1), steps=1))
    group.reconcile("old")
    group["old"].fail(group["old"].running()[0])
    group.reconcile("old")
    group.reconcile("newer")
    group["old"].annotate(ANNOTATION_RETRY, "r1")
    group.reconcile("old")
    assert group["old"].jobs
    assert group["old"].phase == "Pending"
    (old,) = group.peers("newer")
    assert (old.started, old.finished) == (False, False)


def test_forbid_ignores_finished_and_deleted_flows() -> None:
    newer = flow("newer", created=at(10))
    peers = [
        Peer("done", at(0), started=True, finished=True),
        Peer("being-deleted", at(1), started=True, finished=True),
    ]
    result = plan(newer, [], at(20), peers=peers)
    assert [a.step for a in result.actions if isinstance(a, CreateJob)] == ["s0"]


def test_suspended_waiting_flow_is_suspended_not_queued() -> None:
    result = plan(flow("newer", created=at(1), suspend=True), [], at(2), peers=[running_peer("older")])
    assert result.status.phase == "Suspended"
    assert result.status.message == "suspended"
    assert conditions(JobFlow(status=result.status))["Queued"].status == "False"


def test_a_flow_whose_jobs_exist_already_started_and_does_not_queue() -> None:
    # Its first status write was lost after the Job was created: it did start, so it keeps running.
    group = FlowGroup(T0)
    sim = group.add(flow("newer", created=at(1)))
    sim.reconcile(write_status=False)
    assert sim.jobs
    result = plan(sim.flow, list(sim.jobs.values()), at(2), peers=[running_peer("older")])
    assert result.status.phase == "Running"
    assert result.actions == ()


# --- Allow and no group -------------------------------------------------------------------------------


def test_allow_runs_alongside_an_older_running_flow() -> None:
    result = plan(flow("newer", created=at(1), policy="Allow"), [], at(2), peers=[running_peer("older")])
    assert [a.step for a in result.actions if isinstance(a, CreateJob)] == ["s0"]
    assert result.status.phase == "Running"


def test_a_flow_without_the_label_never_waits_and_is_never_replaced() -> None:
    lone = flow("lone", created=at(0), key=None)
    waiting = plan(lone, [], at(1), peers=[running_peer("older", at(-10))])
    assert waiting.status.phase == "Running"
    replaced = plan(lone, [], at(1), peers=[running_peer("newer", at(10), policy=ConcurrencyPolicy.REPLACE)])
    assert replaced.status.phase == "Running"


def test_an_empty_label_value_is_no_group() -> None:
    result = plan(flow("f", key=""), [], at(1), peers=[running_peer("older", at(-10))])
    assert result.status.phase == "Running"


# --- Replace ------------------------------------------------------------------------------------------


def test_replace_starts_at_once_and_the_older_flow_stops_itself() -> None:
    group = FlowGroup(T0)
    group.add(flow("older", created=at(0), steps=3))
    group.add(flow("newer", created=at(5), policy="Replace"))
    group.reconcile("older")
    group.complete_all("older")
    group.advance(5)
    group.reconcile("older")  # s0 succeeded, s1 runs
    running_job = group["older"].running()[0]

    started = group.reconcile("newer")
    assert [a.step for a in started.actions if isinstance(a, CreateJob)] == ["s0"]
    assert "ReplacingFlows" in reasons(started)
    assert next(e for e in started.events if e.reason == "ReplacingFlows").message == (
        f"replacing older flows of concurrency group {KEY}: older"
    )

    group.advance(1)
    stopped = group.reconcile("older")
    assert stopped.actions == (DeleteJob(running_job, "s1", REPLACED_JOB_REASON),)
    older = group["older"].flow
    assert older.status.phase == "Failed"
    message = f"replaced by newer flow newer (concurrency group {KEY})"
    assert older.status.message == message
    failed = conditions(older)["Failed"]
    assert (failed.status, failed.reason, failed.message) == ("True", "Replaced", message)
    assert {s.name: s.phase for s in older.status.steps} == {
        "s0": "Succeeded",
        "s1": "Failed",
        "s2": "Skipped",
    }
    assert reasons(stopped)[-2:] == ["FlowReplaced", "FlowFailed"]
    assert group["older"].running() == []
    assert group.running() == ["newer"]


def test_a_flow_that_finished_before_a_newer_replace_flow_started_succeeds_when_seen_late() -> None:
    group = FlowGroup(T0)
    group.add(flow("older", created=at(0), steps=1))
    group.reconcile("older")
    group.advance(10)
    group.complete_all("older")  # its last Job completes at +10 s; the controller has not looked yet
    group.advance(1)
    group.add(flow("newer", created=at(11), policy="Replace"))
    group.reconcile("newer")  # starts at +11 s
    result = group.reconcile("older")
    assert group["older"].phase == "Succeeded"
    assert conditions(group["older"].flow)["Failed"].status == "False"
    assert "FlowReplaced" not in reasons(result)


def test_replace_also_stops_flows_that_were_still_waiting() -> None:
    group = FlowGroup(T0)
    group.add(flow("a", created=at(0)))
    group.add(flow("b", created=at(1)))
    group.add(flow("c", created=at(2), policy="Replace"))
    group.reconcile_all()
    assert group.running() == ["a", "c"]  # c never waits
    group.reconcile_all()
    assert group.phases() == {"a": "Failed", "b": "Failed", "c": "Running"}
    b = group["b"].flow
    assert b.status.start_time is None
    assert {s.phase for s in b.status.steps} == {"Skipped"}
    assert conditions(b)["Failed"].reason == "Replaced"
    assert conditions(b)["Queued"].status == "False"


def test_a_replace_flow_that_has_not_started_replaces_nothing_yet() -> None:
    # e.g. created suspended: nothing replaces the older flow until it really starts.
    older = flow("older", created=at(0))
    peer = Peer("newer", at(5), policy=ConcurrencyPolicy.REPLACE, started=False)
    assert plan(older, [], at(6), peers=[peer]).status.phase == "Running"


def test_a_newer_forbid_or_allow_flow_never_stops_an_older_one() -> None:
    group = FlowGroup(T0)
    sim = group.add(flow("older", created=at(0)))
    sim.reconcile()
    for policy in (ConcurrencyPolicy.ALLOW, ConcurrencyPolicy.FORBID):
        result = plan(
            sim.flow, list(sim.jobs.values()), at(6), peers=[running_peer("newer", at(5), policy=policy)]
        )
        assert result.status.phase == "Running"
        assert result.actions == ()
        assert [e.reason for e in result.events] == []


def test_terminal_flows_never_change_whatever_their_group_does() -> None:
    group = FlowGroup(T0)
    group.add(flow("done", created=at(0), steps=1))
    group.reconcile("done")
    group.complete_all("done")
    group.reconcile("done")
    final = group["done"].flow
    assert final.status.phase == "Succeeded"
    replacer = running_peer("newer", at(5), policy=ConcurrencyPolicy.REPLACE)
    result = plan(final, [], at(10), peers=[replacer])
    assert result.status is final.status
    assert result.events == ()


# --- peers and wake-ups (what the controller feeds the planner) ---------------------------------------


def test_peers_of_excludes_the_flow_itself() -> None:
    me, other = flow("me"), flow("other", created=at(3))
    peers = peers_of(me, [me, other], starting={"uid-other"})
    assert peers == (Peer("other", at(3), started=True),)


def _started(f: JobFlow, phase: str = "Running") -> JobFlow:
    return f.model_copy(update={"status": f.status.model_copy(update={"phase": phase, "start_time": T0})})


def test_group_wakes_only_on_changes_that_matter_to_the_other_flows() -> None:
    waiting = flow("w")
    group = f"default/{KEY}"
    assert groups_to_wake(None, waiting) == ()  # a new flow that has not started blocks, never unblocks
    assert groups_to_wake(None, _started(waiting)) == (group,)
    message_only = waiting.model_copy(update={"status": waiting.status.model_copy(update={"message": "x"})})
    assert groups_to_wake(waiting, message_only) == ()
    assert groups_to_wake(waiting, _started(waiting)) == (group,)
    assert groups_to_wake(_started(waiting), _started(waiting, "Succeeded")) == (group,)
    assert groups_to_wake(waiting, None) == (group,)  # deleted while active
    assert groups_to_wake(_started(waiting, "Failed"), None) == ()
    moved = flow("w", key="other")
    assert groups_to_wake(_started(waiting), _started(moved)) == (group, "default/other")
    assert groups_to_wake(flow("x", key=None), None) == ()


def test_keys_to_wake_lists_the_unfinished_members_but_not_the_flow_itself() -> None:
    members = [flow("a"), flow("b"), _started(flow("c"), "Succeeded"), flow("d")]
    keys = keys_to_wake(members[0], None, lambda group: members if group == f"default/{KEY}" else [])
    assert keys == ["default/b", "default/d"]
