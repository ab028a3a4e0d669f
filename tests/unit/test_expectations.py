"""Expectations by Job name, keyed by flow UID, with a per-name TTL."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from zen_flow.machinery.expectations import EXPECTATIONS_TIMEOUT, Expectations
from zen_flow_dev.testing.clock import FakeClock

UID = "3f1c-uid"


def test_a_flow_with_no_expectations_is_satisfied() -> None:
    assert Expectations(FakeClock()).satisfied(UID)


def test_satisfied_once_every_expected_creation_is_observed() -> None:
    exp = Expectations(FakeClock())
    exp.expect_creations(UID, ["flow-a", "flow-b"])
    assert not exp.satisfied(UID)
    exp.creation_observed(UID, "flow-a")
    assert not exp.satisfied(UID)
    assert exp.pending_creations(UID) == {"flow-b"}
    exp.creation_observed(UID, "flow-b")
    assert exp.satisfied(UID)
    assert len(exp) == 0  # satisfied records do not linger


def test_unrelated_and_repeated_events_do_not_satisfy_anything() -> None:
    exp = Expectations(FakeClock())
    exp.expect_creations(UID, ["flow-a", "flow-b"])
    exp.creation_observed(UID, "flow-a")
    exp.creation_observed(UID, "flow-a")  # the same ADDED seen twice (relist)
    exp.creation_observed(UID, "old-job")  # a Job we did not just create
    exp.creation_observed("other-uid", "flow-b")  # the right name, another flow
    assert not exp.satisfied(UID)
    assert exp.pending_creations(UID) == {"flow-b"}


def test_a_failed_create_lowers_the_expectation() -> None:
    exp = Expectations(FakeClock())
    exp.expect_creations(UID, ["flow-a", "flow-b"])
    exp.creation_observed(UID, "flow-a")
    exp.creation_failed(UID, "flow-b")
    assert exp.satisfied(UID)


def test_deletions_are_tracked_separately_from_creations() -> None:
    exp = Expectations(FakeClock())
    exp.expect_deletions(UID, ["flow-a"])
    exp.creation_observed(UID, "flow-a")  # a creation event does not satisfy a deletion
    assert not exp.satisfied(UID)
    assert exp.pending_deletions(UID) == {"flow-a"}
    exp.deletion_observed(UID, "flow-a")
    assert exp.satisfied(UID)
    exp.expect_deletions(UID, ["flow-b"])
    exp.deletion_failed(UID, "flow-b")
    assert exp.satisfied(UID)


def test_expectations_expire_after_five_minutes() -> None:
    clock = FakeClock()
    exp = Expectations(clock)
    exp.expect_creations(UID, ["flow-a"])
    clock.jump(EXPECTATIONS_TIMEOUT - 0.001)
    assert not exp.satisfied(UID)
    clock.jump(0.001)
    assert exp.satisfied(UID)
    assert exp.pending_creations(UID) == frozenset()


def test_expecting_more_names_later_does_not_extend_the_earlier_ones() -> None:
    clock = FakeClock()
    exp = Expectations(clock, ttl=60.0)
    exp.expect_creations(UID, ["flow-a"])
    clock.jump(50.0)
    exp.expect_creations(UID, ["flow-b"])
    clock.jump(10.0)  # flow-a is lost (expired), flow-b still pending
    assert exp.pending_creations(UID) == {"flow-b"}
    assert not exp.satisfied(UID)
    exp.creation_observed(UID, "flow-b")
    assert exp.satisfied(UID)


def test_forget_drops_a_deleted_flow_and_uids_never_share_records() -> None:
    exp = Expectations(FakeClock())
    exp.expect_creations(UID, ["flow-a"])
    exp.expect_creations("recreated-uid", ["flow-a"])  # same flow name, new object
    exp.forget(UID)
    assert exp.satisfied(UID)
    assert not exp.satisfied("recreated-uid")


def test_expecting_nothing_creates_no_record() -> None:
    exp = Expectations(FakeClock())
    exp.expect_creations(UID, [])
    assert len(exp) == 0
    assert exp.satisfied(UID)


_events = st.lists(
    st.tuples(
        st.sampled_from(["expect", "observe", "fail", "wait"]),
        st.sampled_from(["j1", "j2", "j3"]),
        st.floats(min_value=0.0, max_value=200.0),
    ),
    max_size=40,
)


@given(events=_events)
def test_satisfied_iff_no_name_is_awaited_and_unexpired(events: list[tuple[str, str, float]]) -> None:
    clock = FakeClock()
    exp = Expectations(clock, ttl=300.0)
    deadlines: dict[str, float] = {}  # the model: name -> deadline while pending
    for kind, name, seconds in events:
        if kind == "expect":
            exp.expect_creations(UID, [name])
            deadlines[name] = clock.monotonic() + 300.0
        elif kind == "observe":
            exp.creation_observed(UID, name)
            deadlines.pop(name, None)
        elif kind == "fail":
            exp.creation_failed(UID, name)
            deadlines.pop(name, None)
        else:
            clock.jump(seconds)
        live = {n for n, deadline in deadlines.items() if deadline > clock.monotonic()}
        assert exp.pending_creations(UID) == live
        assert exp.satisfied(UID) == (not live)
