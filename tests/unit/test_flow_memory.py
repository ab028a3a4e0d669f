"""What the controller keeps by flow UID goes with the flow (controller/flow_memory.py): at the end of a
reconcile whose flow was deleted meanwhile, and, for whatever a writer leaves without that care, at the
sweep every ten minutes."""

from __future__ import annotations

import asyncio

import structlog

from zen_flow.api import JobFlow
from zen_flow.controller.flow_memory import SWEEP_SECONDS, FlowMemory
from zen_flow_dev.testing.clock import FakeClock
from zen_flow_dev.testing.flows import job_step, make_flow


def flow(name: str, uid: str) -> JobFlow:
    made = make_flow([job_step("a")], name=name, namespace="ns")
    return made.model_copy(update={"metadata": made.metadata.model_copy(update={"uid": uid})})


class Part:
    """A part of the controller keeping something by flow UID."""

    def __init__(self, *uids: str) -> None:
        self.kept = dict.fromkeys(uids, "state")

    def uids(self) -> list[str]:
        return list(self.kept)

    def forget(self, uid: str) -> None:
        self.kept.pop(uid, None)


async def test_the_sweep_forgets_every_ten_minutes_the_flows_the_cache_no_longer_holds() -> None:
    clock = FakeClock()
    cache = {f.key: f for f in (flow("a", "uid-a"), flow("b", "uid-b"))}
    one, two = Part("uid-a", "uid-gone"), Part("uid-b", "uid-gone", "uid-also-gone")
    memory = FlowMemory([one, two], cache.get)
    assert memory.uids() == {"uid-a", "uid-b", "uid-gone", "uid-also-gone"}
    with structlog.testing.capture_logs() as logs:
        sweeping = asyncio.create_task(memory.run(lambda: cache.values(), clock))
        await clock.advance(SWEEP_SECONDS - 1)
        assert len(memory.uids()) == 4  # not yet
        await clock.advance(1)
        assert (one.kept, two.kept) == ({"uid-a": "state"}, {"uid-b": "state"})
        del cache["ns/b"]  # deleted; a writer left something of it after its delete event
        await clock.advance(SWEEP_SECONDS)
        assert memory.uids() == {"uid-a"}
        sweeping.cancel()
    # Said, at info: something found by the sweep is a writer to fix.
    assert [(e["log_level"], e["flows"]) for e in logs] == [("info", 2), ("info", 1)]


def test_a_reconcile_whose_flow_went_meanwhile_forgets_it_and_only_it() -> None:
    cache = {"ns/a": flow("a", "uid-a"), "ns/b": flow("b", "uid-b-again")}
    part = Part("uid-a", "uid-b", "uid-c")
    memory = FlowMemory([part], cache.get)
    memory.settled(flow("a", "uid-a"))  # still there
    memory.settled(flow("b", "uid-b"))  # deleted, and another made under its name
    memory.settled(flow("c", "uid-c"))  # deleted
    assert part.uids() == ["uid-a"]
