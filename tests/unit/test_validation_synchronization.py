"""Admission of `synchronization` (step locks: planner/locks.py): DNS-1123 names, each once per step,
semaphore limits 1..10000, at most 8 locks, none on a Manual or Flow step (a matrix step's items each
take them); each error at its field."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from validation_samples import ErrorType, assert_error, assert_valid, job_step, make_flow, manual_step

from zen_flow.validation import validate_jobflow

E = ErrorType
SYNC = "spec.steps[0].synchronization"


def sync(mutexes: Sequence[str] = (), semaphores: Sequence[tuple[str, Any]] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if mutexes:
        out["mutexes"] = [{"name": n} for n in mutexes]
    if semaphores:
        out["semaphores"] = [{"name": n, "limit": limit} for n, limit in semaphores]
    return out


def test_mutexes_and_semaphores_on_job_steps_are_valid() -> None:
    assert_valid(make_flow(job_step("migrate", synchronization=sync(["db-migrations"], [("warehouse", 3)]))))


def test_a_flow_step_takes_no_lock_its_child_templates_steps_do() -> None:
    # It would hold its locks while its child's steps wait for others: two such families deadlock.
    child = {"name": "sub", "type": "Flow", "flow": {"templateRef": {"name": "build"}}}
    flow = make_flow({**child, "synchronization": sync(["db"])})
    error = assert_error(flow, SYNC, E.FORBIDDEN, "a Flow step cannot take locks")
    assert "put the locks on the steps of the child's template" in str(error)


def test_a_list_of_locks_that_is_not_a_list_gets_only_its_type_error() -> None:
    errors = validate_jobflow(make_flow(job_step("a", synchronization={"mutexes": {"name": "db"}})))
    assert [(e.path, e.type) for e in errors] == [(SYNC + ".mutexes", E.INVALID)]


def test_a_lock_name_must_be_a_dns_label() -> None:
    assert_error(
        make_flow(job_step("a", synchronization=sync(["DB"]))),
        SYNC + ".mutexes[0].name",
        E.INVALID,
        "RFC 1123",
    )


def test_a_semaphore_limit_is_required_and_between_1_and_10000() -> None:
    flow = make_flow(job_step("a", synchronization={"semaphores": [{"name": "w"}]}))
    assert_error(flow, SYNC + ".semaphores[0].limit", E.REQUIRED, "1..10000")
    for limit in (0, 10001):
        flow = make_flow(job_step("a", synchronization=sync(semaphores=[("w", limit)])))
        assert_error(flow, SYNC + ".semaphores[0].limit", E.INVALID, "between 1 and 10000")


def test_a_name_is_not_both_a_mutex_and_a_semaphore_of_one_step() -> None:
    flow = make_flow(job_step("a", synchronization=sync(["db"], [("db", 2)])))
    assert_error(flow, SYNC + ".semaphores[0].name", E.DUPLICATE, "names each lock once")


def test_at_most_8_locks_per_step_and_at_least_one() -> None:
    flow = make_flow(job_step("a", synchronization=sync([f"l{i}" for i in range(9)])))
    assert_error(flow, SYNC, E.TOO_MANY)
    assert_error(make_flow(job_step("a", synchronization={})), SYNC, E.REQUIRED, "at least one lock")


def test_a_manual_step_takes_no_lock() -> None:
    flow = make_flow(job_step("a"), manual_step("gate", "a", synchronization=sync(["db"])))
    assert_error(flow, "spec.steps[1].synchronization", E.FORBIDDEN, "a Manual step runs nothing")


def test_a_matrix_steps_items_take_its_locks_and_a_bad_one_is_reported_once_at_the_matrix_step() -> None:
    matrix = {"parameters": [{"name": "os", "values": ["linux", "darwin", "windows"]}]}
    assert_valid(make_flow(job_step("a", matrix=matrix, synchronization=sync(["db"], [("pool", 2)]))))
    flow = make_flow(job_step("a", matrix=matrix, synchronization=sync(["DB"])))
    errors = validate_jobflow(flow)
    assert [e.path for e in errors] == [f"{SYNC}.mutexes[0].name"]


# --- the flow's own locks (spec.synchronization) ---------------------------------------------------------

OWN = "spec.synchronization"


def test_a_flows_own_locks_have_the_steps_shape_and_limits_each_error_naming_its_field() -> None:
    assert_valid(make_flow(job_step("a"), synchronization=sync(["deploy"], [("warehouse", 3)])))
    assert_error(
        make_flow(job_step("a"), synchronization=sync(["Deploy"])), f"{OWN}.mutexes[0].name", E.INVALID
    )
    limit = make_flow(job_step("a"), synchronization=sync([], [("pool", 0)]))
    assert_error(limit, f"{OWN}.semaphores[0].limit", E.INVALID, "between 1 and 10000")
    twice = make_flow(job_step("a"), synchronization=sync(["db"], [("db", 2)]))
    assert_error(twice, f"{OWN}.semaphores[0].name", E.DUPLICATE, "the flow names each lock once")
    assert_error(make_flow(job_step("a"), synchronization={}), OWN, E.REQUIRED)


def test_a_flow_taking_locks_of_its_own_has_no_step_taking_more_so_no_holder_ever_waits() -> None:
    # Flow x holds A and its step waits for B while flow y holds B and its step waits for A: for ever.
    flow = make_flow(
        job_step("a"), job_step("b", "a", synchronization=sync(["cache"])), synchronization=sync(["db"])
    )
    error = assert_error(flow, "spec.steps[1].synchronization", E.FORBIDDEN, "wait for each other for ever")
    assert "name every lock the flow needs in spec.synchronization" in str(error)
    # One of the flow's own: the step would wait for its own flow, said too.
    again = make_flow(job_step("a", synchronization=sync([], [("db", 2)])), synchronization=sync(["db"]))
    assert_error(again, SYNC, E.FORBIDDEN, "this step would wait for its own flow: it holds db")
    # A matrix step's, once, at the matrix step's field.
    matrix = {"parameters": [{"name": "os", "values": ["linux", "darwin"]}]}
    fanned = make_flow(
        job_step("a", matrix=matrix, synchronization=sync(["gpu"])), synchronization=sync(["db"])
    )
    assert [e.path for e in validate_jobflow(fanned)] == [SYNC]


def test_a_flow_with_a_flow_step_takes_no_locks_of_its_own() -> None:
    child = {"name": "sub", "type": "Flow", "flow": {"templateRef": {"name": "build"}}}
    flow = make_flow(job_step("a"), child, synchronization=sync(["db"]))
    error = assert_error(flow, OWN, E.FORBIDDEN, "a flow with a Flow step (spec.steps[1])")
    assert "put them in the child's template" in str(error)


def test_a_flow_naming_a_template_has_its_own_locks_checked_before_it_is_expanded() -> None:
    flow = make_flow(synchronization=sync(["DB"]), templateRef={"name": "build"})
    del flow["spec"]["steps"]
    assert [e.path for e in validate_jobflow(flow)] == [f"{OWN}.mutexes[0].name"]
