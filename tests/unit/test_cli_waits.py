"""What `zen-flow get` says of a flow that waits: its place in line for a running-flow slot, and who holds
the locks a waiting step waits for, computed from one LIST of the namespace's flows (a fake apiserver
here), with the controller's own order; a LIST refused says the place is unknown, and `get` still works."""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from test_planner_child_lineage import PARENT, child_body, stored

from zen_flow.api import JobFlow
from zen_flow.api.constants import ANNOTATION_RETRY, LABEL_INSTANCE
from zen_flow.cli import main, session
from zen_flow.cli.candidates import Candidates
from zen_flow.cli.render import flow_detail
from zen_flow.cli.waits import Waits, ordinal, read_waits, waits_of
from zen_flow.kube.client import ListResult
from zen_flow.kube.errors import from_status
from zen_flow.kube.streams import Decoder, decode_page
from zen_flow.planner.locks import waiting_message as lock_message
from zen_flow.planner.slot_standing import waiting_message as slot_message
from zen_flow_dev.testing.flows import job_step, make_flow

T0 = datetime(2025, 1, 1, tzinfo=UTC)
NS = "team-a"
MUTEX = {"mutexes": [{"name": "db"}]}


def flow(name: str, minute: int, steps: list[dict[str, Any]], status: dict[str, Any], **kw: Any) -> JobFlow:
    made = make_flow(steps, name=name, namespace=NS, created=T0 + timedelta(minutes=minute), **kw)
    return JobFlow.model_validate({**made.model_dump(by_alias=True, exclude_none=True), "status": status})


def slot_waiting(name: str, minute: int, *, namespace_limit: bool = True, **kw: Any) -> JobFlow:
    said = slot_message(3, NS if namespace_limit else None)
    cond = {"type": "Queued", "status": "True", "reason": "WaitingForSlot", "message": said}
    return flow(
        name, minute, [job_step("a")], {"phase": "Pending", "message": said, "conditions": [cond]}, **kw
    )


def running(name: str, minute: int, steps: list[dict[str, Any]] | None = None, **step_phases: str) -> JobFlow:
    phases = [{"name": s, "phase": p, "startTime": "2025-01-01T00:00:00Z"} for s, p in step_phases.items()]
    return flow(
        name,
        minute,
        steps or [job_step("a")],
        {"phase": "Running", "startTime": "2025-01-01T00:00:00Z", "steps": phases},
    )


def lock_waiting(name: str, minute: int, step: str = "work", **kw: Any) -> JobFlow:
    spec = job_step(step, synchronization=MUTEX)
    message = lock_message(JobFlow.model_validate(make_flow([spec]).model_dump(by_alias=True)).spec.steps[0])
    return flow(
        name,
        minute,
        [spec],
        {
            "phase": "Running",
            "startTime": "2025-01-01T00:00:00Z",
            "steps": [{"name": step, "phase": "Pending", "message": message}],
        },
        **kw,
    )


def holding(name: str, minute: int, step: str = "work") -> JobFlow:
    return running(name, minute, [job_step(step, synchronization=MUTEX)], **{step: "Running"})


def own_lock_waiting(name: str, minute: int, lock: str = "db", **kw: Any) -> JobFlow:
    """A flow waiting for its own mutex (`spec.synchronization`): Pending, condition Queued."""
    said = f"waiting for lock {lock}"
    cond = {"type": "Queued", "status": "True", "reason": "WaitingForLock", "message": said}
    status = {"phase": "Pending", "message": said, "conditions": [cond]}
    own = {"mutexes": [{"name": lock}]}
    return flow(name, minute, [job_step("a")], status, synchronization=own, **kw)


def own_lock_holding(name: str, minute: int, lock: str = "db") -> JobFlow:
    status = {"phase": "Running", "startTime": "2025-01-01T00:00:00Z", "heldLocks": [lock]}
    return flow(name, minute, [job_step("a")], status, synchronization={"mutexes": [{"name": lock}]})


def test_ordinals() -> None:
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 101, 111, 112)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "101st", "111th", "112th",
    ]  # fmt: skip


def test_a_flow_waiting_for_a_slot_is_told_its_place_in_the_controllers_order() -> None:
    # Priority first, then age: the controller's order (planner/slot_lines.py), not the list's.
    first = slot_waiting("urgent", 9, execution_policy={"priority": 10})
    me = slot_waiting("me", 2)
    flows = [
        slot_waiting("newer", 5),
        me,
        slot_waiting("older", 1),
        first,
        running("started", 0),  # holds a slot: not in line
        slot_waiting("paused", 0, suspend=True),  # a suspended flow takes no place
    ]
    waits = waits_of(me, flows)
    assert waits.summary == (("Line", "3rd of 4 flows waiting for a slot in namespace team-a"),)
    assert waits_of(first, flows).summary[0][1].startswith("1st of 4 ")
    shown = flow_detail(me, T0, extra=waits.summary)
    assert "\nLine:       3rd of 4 flows waiting for a slot in namespace team-a\n" in shown


def test_under_the_controllers_limit_the_place_says_other_namespaces_share_the_line() -> None:
    me = slot_waiting("me", 2, namespace_limit=False)
    (label, said), *_ = waits_of(me, [me, slot_waiting("older", 1, namespace_limit=False)]).summary
    assert (label, said) == (
        "Line",
        "2nd of 2 flows waiting for a slot in namespace team-a; "
        "other namespaces' flows share the controller's line, not counted here",
    )


def test_a_step_waiting_for_a_lock_names_its_holder_and_the_steps_ahead_of_it() -> None:
    me = lock_waiting("me", 5)
    flows = [holding("holder", 9), lock_waiting("older", 1), me, lock_waiting("newer", 7)]
    waits = waits_of(me, flows)
    assert waits.steps == {"work": "held by jobflow/holder step work, 1 step ahead in line"}
    assert waits.summary == ()
    rows = flow_detail(me, T0, notes=waits.steps).split("\n\n")[1]
    assert rows.splitlines()[1].endswith(
        "waiting for lock db: held by jobflow/holder step work, 1 step ahead in line"
    )
    # The first in line waits for the holder only; the holder's own view has nothing to add.
    assert waits_of(flows[1], flows).steps == {"work": "held by jobflow/holder step work"}
    assert waits_of(flows[0], flows).steps == {}


def test_a_flow_waiting_for_its_own_lock_names_the_holder_and_the_steps_and_flows_ahead_of_it() -> None:
    me = own_lock_waiting("me", 5)
    flows = [
        own_lock_holding("holder", 9),
        own_lock_waiting("older", 1),
        lock_waiting("step-older", 2),  # a step's wait for db stands in the same line
        me,
        own_lock_waiting("newer", 7),
        lock_waiting("step-newer", 8),
    ]
    waits = waits_of(me, flows)
    assert waits.summary == (("Line", "lock db held by jobflow/holder, 1 step and 1 flow ahead in line"),)
    assert waits.steps == {}
    shown = flow_detail(me, T0, extra=waits.summary)
    assert "\nMessage:    waiting for lock db\n" in shown
    assert "\nLine:       lock db held by jobflow/holder, 1 step and 1 flow ahead in line\n" in shown
    # A step behind the waiting flows counts them; the first in line waits for the holder only.
    assert waits_of(flows[5], flows).steps == {
        "work": "held by jobflow/holder, 1 step and 3 flows ahead in line"
    }
    assert waits_of(flows[1], flows).summary == (("Line", "lock db held by jobflow/holder"),)
    # Suspended, it waits for nothing and stands in no line.
    assert waits_of(with_spec(me, suspend=True), flows) == Waits()


def test_a_flow_that_waits_for_nothing_costs_no_request(
    fake: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.flows = [running("plain", 0)]
    assert main(["get", "plain", "-n", NS]) == 0
    assert fake.lists == []


def test_get_lists_the_namespace_once_and_names_the_holder(
    fake: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    other = {LABEL_INSTANCE: "team-b"}
    fake.flows = [holding("holder", 0), lock_waiting("me", 5), holding("elsewhere", 0)]
    fake.flows[2].metadata.labels.update(other)  # another controller instance's: not this line
    assert main(["get", "me", "-n", NS]) == 0
    out = capsys.readouterr().out
    assert "waiting for lock db: held by jobflow/holder step work\n" in out
    # One LIST, of the flows the same controller instance runs (the unlabelled ones here).
    assert fake.lists == [
        (f"/apis/workflow.kube-zen.io/v1alpha1/namespaces/{NS}/jobflows", f"!{LABEL_INSTANCE}")
    ]


def test_a_user_who_may_not_list_the_namespace_is_told_why_and_still_gets_the_flow(
    fake: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.flows = [slot_waiting("me", 1)]
    fake.refuse_lists = True
    assert main(["get", "me", "-n", NS]) == 0
    out = capsys.readouterr().out
    assert "Phase:      Pending\n" in out
    assert (
        "\nLine:       place in line unknown: you may not list JobFlows in namespace team-a (403 Forbidden)\n"
        in out
    )


def test_a_flow_out_of_line_costs_no_request_whatever_its_condition_still_says(
    fake: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    # Suspended while it waited: its condition still says WaitingForSlot and its step's message the
    # lock, but it takes no place in either line until resumed (and a LIST refused says nothing).
    fake.flows = [
        slot_waiting("paused", 0, suspend=True),
        with_spec(lock_waiting("sleeping", 1), suspend=True),
        holding("holder", 0),
    ]
    fake.refuse_lists = True
    for name in ("paused", "sleeping"):
        assert main(["get", name, "-n", NS]) == 0
        assert "Line:" not in capsys.readouterr().out
    assert fake.lists == []


def with_spec(f: JobFlow, **spec: Any) -> JobFlow:
    return f.model_copy(update={"spec": f.spec.model_copy(update=spec)})


def with_meta(f: JobFlow, **meta: Any) -> JobFlow:
    return f.model_copy(update={"metadata": f.metadata.model_copy(update=meta)})


def finished(name: str, minute: int, phase: str, **kw: Any) -> JobFlow:
    steps = [{"name": "work", "phase": phase}]
    return flow(
        name, minute, [job_step("work", synchronization=MUTEX)], {"phase": phase, "steps": steps}, **kw
    )


CHILD = "parent-sub-e0c94c6d"  # the name the parent gives its step's child flow


def mixed() -> list[JobFlow]:
    """A namespace of every kind of flow the lines must place, or leave out, as the controller does."""
    parent = with_meta(PARENT, namespace=NS)
    child = with_meta(stored(child_body(PARENT), phase="Pending"), namespace=NS)  # runs under its parent
    orphan = with_meta(  # claims the parent, but is none of its children: it waits as any flow does
        stored(child_body(PARENT, "other"), phase="Pending"), namespace=NS, name="orphan"
    )
    return [
        slot_waiting("older", 1),
        slot_waiting("me", 2),
        slot_waiting("urgent", 9, execution_policy={"priority": 10}),
        slot_waiting("paused", 0, suspend=True),
        with_meta(slot_waiting("going", 0), deletion_timestamp=T0),
        running("started", 0),
        finished("done", 0, "Succeeded"),
        finished("failed", 0, "Failed"),
        finished("rerun", 3, "Failed", annotations={ANNOTATION_RETRY: "r1"}),  # contends again
        holding("holder", 0),
        lock_waiting("lock-older", 1),
        lock_waiting("lock-me", 5),
        with_meta(lock_waiting("lock-going", 0), deletion_timestamp=T0),
        own_lock_holding("own-holder", 0, "cache"),  # its steps declare no lock: its own count
        own_lock_waiting("own-me", 6, "cache"),
        parent,
        child,
        orphan,
    ]


@pytest.mark.parametrize("unreadable", [False, True], ids=["from-bytes", "a-flow-does-not-parse"])
async def test_get_validates_only_the_flows_that_may_stand_in_its_lines_and_finds_the_same_places(
    unreadable: bool,
) -> None:
    flows = mixed()
    by_name = {f.metadata.name: f for f in flows}
    api = FakeApi()
    api.flows = flows
    if unreadable:  # the page is read the slow way (a dict per flow), to the same end
        api.unreadable = [{"metadata": {"name": "broken", "namespace": NS}, "spec": {"steps": "none"}}]
    # The child counts (it runs under its started parent, so it is not in line): the fixture tells.
    assert waits_of(by_name["me"], flows) != waits_of(
        by_name["me"], [f for f in flows if f.metadata.name != "parent"]
    )
    said = {}
    for name in ("me", "urgent", "older", "lock-me", "lock-older", "own-me"):
        me = by_name[name]
        api.validated.clear()
        said[name] = await read_waits(session.Session(api, NS, sys.stdout), me)  # type: ignore[arg-type]
        assert said[name] == waits_of(me, flows), name  # as if every flow had been read
        assert said[name] != Waits()
        if name.startswith(("lock", "own")):
            # A lock's line: the unfinished flows that, or whose steps, declare locks.
            assert api.validated == ["rerun", "holder", "lock-older", "lock-me", "own-holder", "own-me"]
        else:
            # A slot's line: the unfinished flows, and the Failed one asked to rerun.
            assert api.validated == [
                "older", "me", "urgent", "paused", "started", "rerun", "holder", "lock-older", "lock-me",
                "own-holder", "own-me", "parent", CHILD, "orphan",
            ]  # fmt: skip
    # Which way the page was read: straight from its bytes, or a dict per flow.
    assert (Candidates(slot=True).page(api.sent) is None) == unreadable
    assert said["me"].summary == (("Line", "4th of 5 flows waiting for a slot in namespace team-a"),)
    assert said["lock-me"].steps == {"work": "held by jobflow/holder step work, 1 step ahead in line"}
    assert said["own-me"].summary == (("Line", "lock cache held by jobflow/own-holder"),)


class FakeApi:
    """The namespace's flows; the LISTs asked for (path, labelSelector); refuses them when told to; the
    names of the listed flows the caller's decoder kept (`validated`), in list order."""

    def __init__(self) -> None:
        self.flows: list[JobFlow] = []
        self.lists: list[tuple[str, str]] = []
        self.refuse_lists = False
        self.validated: list[str] = []
        self.unreadable: list[dict[str, Any]] = []  # listed flows that do not parse
        self.sent = b""  # the last LIST's answer

    def _raw(self, f: JobFlow) -> dict[str, Any]:
        return copy.deepcopy(f.model_dump(by_alias=True, exclude_none=True, mode="json"))

    async def request(self, method: str, path: str, **_: Any) -> dict[str, Any]:
        name = path.rsplit("/", 1)[-1]
        found = next((f for f in self.flows if f.metadata.name == name), None)
        if found is None:
            raise from_status(404, {"reason": "NotFound", "message": f"{name} not found"})
        return self._raw(found)

    async def list_all(
        self, path: str, query: Any = (), *, page_size: int = 500, decoder: Decoder | None = None
    ) -> ListResult:
        selector = dict(query).get("labelSelector", "")
        self.lists.append((path, selector))
        if self.refuse_lists:
            raise from_status(
                403,
                {"reason": "Forbidden", "message": 'jobflows.workflow.kube-zen.io is forbidden: User "u"'},
            )
        raw = [self._raw(f) for f in self.flows if LABEL_INSTANCE not in f.metadata.labels] + self.unreadable
        # The page as the apiserver sends it, decoded as kube/client.list_all decodes it.
        self.sent = json.dumps({"metadata": {"resourceVersion": "1"}, "items": raw}).encode()
        page = decode_page(self.sent, decoder)
        items = page.items
        self.validated += [
            i.metadata.name if isinstance(i, JobFlow) else i["metadata"]["name"] for i in items
        ]
        return ListResult(items=tuple(items), resource_version="1")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeApi:
    api = FakeApi()

    @asynccontextmanager
    async def open_session(args: Any, out: Any = None) -> AsyncIterator[session.Session]:
        yield session.Session(api, args.namespace, sys.stdout)  # type: ignore[arg-type]

    monkeypatch.setattr(session, "open_session", open_session)
    return api
