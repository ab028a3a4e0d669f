"""The requests a plan sends on flows, not Job creates or deletes, that the apiserver refuses for now (a
webhook's or RBAC's 403, a policy's 422, a 5xx, no answer): a Flow step's child suspended, resumed or
stopped by its parent, and the flow's own TTL deletion. Each is told by what failed (a Warning
`ChildUpdateForbidden` / `ChildUpdateFailed`, or `DeleteForbidden` / `DeleteFailed` for the TTL's), never
as a refused create (`CreateForbidden`); a parent's status is written all the same; the request is sent
again, with backoff, until it passes. controller/flow_requests.py, over the fake apiserver."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from test_controller_child_flows import NS, Rig, flow_step, graced_parent, rig, set_suspend, template
from test_controller_delete_refusals import ANSWERS, WEBHOOK_DENIED
from test_controller_ttl import controller

from zen_flow.controller.reconciler import Controller
from zen_flow.core.naming import job_name
from zen_flow.kube.errors import from_status
from zen_flow_dev.testing.apiserver_fake import FakeApiServer
from zen_flow_dev.testing.clock import FakeClock
from zen_flow_dev.testing.flows import job_step, make_flow

CHILD = job_name("p", "sub", 0)
CHILD_KEY = f"{NS}/{CHILD}"


def refusing(
    api: FakeApiServer, method: str, answer: Callable[[], Exception]
) -> tuple[list[str], Callable[[], None]]:
    """`api.<method>` (suspend_flow, stop_flow, delete_flow) fails with `answer()`: the names tried so far,
    and what lifts the refusal."""
    real = getattr(api, method)
    tried: list[str] = []
    refusing_ = [True]

    async def refused(namespace: str, name: str, *args: Any) -> None:
        tried.append(name)
        if refusing_:
            raise answer()
        await real(namespace, name, *args)

    setattr(api, method, refused)
    return tried, refusing_.clear


async def look(ctrl: Controller, key: str) -> Exception | None:
    """One reconcile of `key`: the error it raised for the queue's backoff, if any."""
    try:
        await ctrl.reconcile(key)
    except Exception as err:
        return err
    return None


def told(api: FakeApiServer, reason: str) -> list[str]:
    return [message for _, r, message in api.events if r == reason]


def creates_told(api: FakeApiServer) -> list[str]:
    return told(api, "CreateForbidden") + told(api, "CreateFailed")


async def running_child(r: Rig) -> None:
    r.api.templates[(NS, "t")] = template("t", [job_step("inner")])
    p = r.api.create_flow(make_flow([flow_step("sub"), job_step("other")], name="p"))
    r.api.sync()
    await r.spin(p.key, CHILD_KEY)
    assert r.steps(p.key)["sub"][0] == "Running"


async def test_a_refused_child_suspend_is_told_as_such_and_the_parents_suspension_is_written() -> None:
    r = rig()
    await running_child(r)
    key = f"{NS}/p"
    tried, lift = refusing(r.api, "suspend_flow", ANSWERS["403"])
    set_suspend(r, key, True)
    err = await look(r.controller, key)
    assert err is not None  # to the queue's backoff
    assert tried == [CHILD]
    # The parent's own suspension is recorded although its child's patch was refused.
    assert r.api.flows[key].status.phase == "Suspended"
    [said] = told(r.api, "ChildUpdateForbidden")
    assert said.startswith(f"JobFlow {CHILD} (step sub) suspend refused: 403 ")
    assert WEBHOOK_DENIED in said
    assert said.endswith("(retried with backoff)")
    assert not creates_told(r.api)
    assert not r.api.flows[CHILD_KEY].spec.suspend
    # Sent again by the next look, and once it passes the child is suspended.
    r.api.sync()
    await look(r.controller, key)
    assert tried == [CHILD, CHILD]
    lift()
    r.api.sync()
    await r.spin(key, CHILD_KEY)
    assert r.api.flows[CHILD_KEY].spec.suspend
    assert len(told(r.api, "ChildUpdateForbidden")) == 2


async def test_a_single_5xx_on_a_child_resume_is_not_told_its_repeat_is() -> None:
    r = rig()
    await running_child(r)
    key = f"{NS}/p"
    set_suspend(r, key, True)
    await r.spin(key, CHILD_KEY)
    assert r.api.flows[CHILD_KEY].spec.suspend
    tried, _ = refusing(r.api, "suspend_flow", ANSWERS["500"])
    set_suspend(r, key, False)
    assert await look(r.controller, key) is not None
    assert tried == [CHILD]
    assert r.api.flows[key].status.phase == "Running"  # the parent's resume is written
    assert not told(r.api, "ChildUpdateFailed")  # a blip, perhaps: not said yet
    r.api.sync()
    assert await look(r.controller, key) is not None
    [said] = told(r.api, "ChildUpdateFailed")
    assert said.startswith(f"JobFlow {CHILD} (step sub) resume refused: 500 ")
    assert not creates_told(r.api)


async def test_a_refused_graceful_stop_of_a_child_is_told_and_sent_again() -> None:
    """At the parent's finally grace its child is asked to stop (RunFinally), after the status write that
    records the grace: refused, it is told, raised for the backoff, and sent again until it passes."""
    r = rig()
    p, child_name, child_key = graced_parent(r)
    await r.spin(p.key, child_key)
    tried, lift = refusing(r.api, "stop_flow", ANSWERS["422"])
    await r.clock.advance(70)
    assert await look(r.controller, p.key) is not None
    assert tried == [child_name]
    [said] = told(r.api, "ChildUpdateForbidden")
    assert said.startswith(f"JobFlow {child_name} (step sub) stop refused: 422 ")
    assert not creates_told(r.api)
    r.api.sync()
    await look(r.controller, p.key)
    assert tried == [child_name, child_name]
    lift()
    r.api.sync()
    await r.spin(p.key, child_key)
    assert r.api.flows[child_key].metadata.annotations["workflow.kube-zen.io/stop"] == "RunFinally"


async def expired(api: FakeApiServer, clock: FakeClock, ctrl: Controller) -> str:
    """A flow whose ttlSecondsAfterFinished (2 s) has expired: its key."""
    flow = api.create_flow(
        make_flow(
            [job_step("s0")], name="short", namespace=NS, execution_policy={"ttlSecondsAfterFinished": 2}
        )
    )
    api.sync()
    await ctrl.reconcile(flow.key)
    api.sync()
    (job,) = [name for (_, name) in api.jobs]
    api.finish_job(NS, job)
    api.sync()
    await ctrl.reconcile(flow.key)
    api.sync()
    assert api.flows[flow.key].status.phase == "Succeeded"
    await clock.advance(5)
    return flow.key


async def test_a_refused_ttl_deletion_is_told_once_and_retried_until_it_passes() -> None:
    clock = FakeClock()
    api = FakeApiServer(clock)
    ctrl = controller(api, clock)
    key = await expired(api, clock, ctrl)
    tried, lift = refusing(api, "delete_flow", ANSWERS["403"])
    for _ in range(3):
        assert await look(ctrl, key) is not None
    assert tried == ["short"] * 3
    assert key in api.flows
    # Once, naming the flow, the TTL and the answer; never as a refused create.
    [said] = told(api, "DeleteForbidden")
    assert said.startswith("JobFlow short (ttlSecondsAfterFinished=2s expired) delete refused: 403 ")
    assert WEBHOOK_DENIED in said
    assert not creates_told(api)
    lift()
    assert await look(ctrl, key) is None
    assert key not in api.flows


async def test_a_ttl_deletion_without_an_answer_is_told_on_its_repeat_only_once() -> None:
    clock = FakeClock()
    api = FakeApiServer(clock)
    ctrl = controller(api, clock)
    key = await expired(api, clock, ctrl)
    refusing(api, "delete_flow", ANSWERS["no answer"])
    assert await look(ctrl, key) is not None
    assert not told(api, "DeleteFailed")
    for _ in range(3):
        assert await look(ctrl, key) is not None
    [said] = told(api, "DeleteFailed")
    assert said.startswith("JobFlow short (ttlSecondsAfterFinished=2s expired) delete failed, no answer: ")
    assert not creates_told(api)


async def test_a_ttl_deletion_that_finds_the_flow_gone_or_its_name_anothers_is_done() -> None:
    """404: gone already; 409: the name is another flow's now (the UID precondition). Neither is retried
    nor told."""
    for status, reason in ((404, "NotFound"), (409, "Conflict")):
        clock = FakeClock()
        api = FakeApiServer(clock)
        ctrl = controller(api, clock)
        key = await expired(api, clock, ctrl)
        body = {
            "kind": "Status",
            "code": status,
            "reason": reason,
            "message": "jobflows.workflow.kube-zen.io",
        }
        tried, _ = refusing(api, "delete_flow", lambda: from_status(status, body))  # noqa: B023
        assert await look(ctrl, key) is None
        assert await look(ctrl, key) is None  # the cache still shows it: not deleted again
        assert tried == ["short"]
        assert not [e for e in api.events if e[0] == "Warning"]
