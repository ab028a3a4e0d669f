"""CloudEvents (`--cloudevents-sink`) from a real controller process on a real control plane: a receiver
on loopback gets a flow's transitions in order, in the HTTP binding's binary mode; a sink that refuses,
fails or hangs does not hold the flow back; on SIGTERM the leader sends what it can before it releases
its lease, and nothing after (docs/OPERATOR_GUIDE.md, "CloudEvents")."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from controller_steps import WAIT, finish, wait_steps

from zen_flow.kube.leases import LeaseClient
from zen_flow_dev.testing.controller import StartController
from zen_flow_dev.testing.driver import FlowDriver
from zen_flow_dev.testing.flows import flow_manifest, job_step

pytestmark = pytest.mark.integration

P = "dev.kube-zen.jobflow."


class Receiver:
    """A CloudEvents sink on 127.0.0.1 that answers `status` (after `delay` seconds: a slow sink), or
    never answers (`hang`)."""

    def __init__(self, status: int = 202, *, hang: bool = False, delay: float = 0.0) -> None:
        self.status, self.hang, self.delay = status, hang, delay
        self.got: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.arrived: list[float] = []  # wall-clock time of each request
        self.released = asyncio.Event()
        self._changed = asyncio.Condition()

    async def handle(self, request: web.Request) -> web.Response:
        self.arrived.append(time.time())
        headers = {k.lower(): v for k, v in request.headers.items()}
        body = json.loads(await request.read())
        async with self._changed:
            self.got.append((headers, body))
            self._changed.notify_all()
        if self.hang:
            await self.released.wait()  # until the test ends
        if self.delay:
            await asyncio.sleep(self.delay)  # the sink's own slowness, not a wait of the test's
        return web.Response(status=self.status)

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(WAIT), self._changed:
            await self._changed.wait_for(lambda: len(self.got) >= count)


@asynccontextmanager
async def serve(receiver: Receiver) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/events", receiver.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/events"))
    finally:
        receiver.released.set()
        await server.close()


async def run_two_steps(driver: FlowDriver, namespace: str, name: str) -> None:
    await driver.create(flow_manifest(name, namespace, [job_step("first"), job_step("second", "first")]))
    await wait_steps(driver, namespace, name, {"first": "Running"})
    await finish(driver, namespace, "first")
    await wait_steps(driver, namespace, name, {"first": "Succeeded", "second": "Running"})
    await finish(driver, namespace, "second")
    flow = await driver.wait_phase(namespace, name, timeout=WAIT)
    assert flow["status"]["phase"] == "Succeeded"


async def test_a_receiver_gets_the_flows_transitions_in_order(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    receiver = Receiver()
    async with serve(receiver) as url:
        controller = start_controller(extra_args=["--cloudevents-sink", url])
        await run_two_steps(driver, namespace, "nightly")
        await receiver.wait_for(6)
        flow = await driver.get(namespace, "nightly")
        assert flow is not None
        got = [(h["ce-type"].removeprefix(P), h["ce-subject"]) for h, _ in receiver.got]
        assert got == [
            ("started.v1", "nightly"),
            ("step.started.v1", "first"),
            ("step.succeeded.v1", "first"),
            ("step.started.v1", "second"),
            ("step.succeeded.v1", "second"),
            ("succeeded.v1", "nightly"),
        ]
        source = f"/apis/workflow.kube-zen.io/v1alpha1/namespaces/{namespace}/jobflows/nightly"
        for headers, body in receiver.got:
            assert headers["ce-specversion"] == "1.0"
            assert headers["ce-source"] == source
            assert headers["content-type"] == "application/json"
            assert re.fullmatch(r"[0-9a-f]{32}", headers["ce-id"])
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", headers["ce-time"])
            assert (body["flow"], body["namespace"]) == ("nightly", namespace)
            assert body["uid"] == flow["metadata"]["uid"]
        assert len({h["ce-id"] for h, _ in receiver.got}) == 6
        assert receiver.got[-1][1]["phase"] == "Succeeded"
        first_done = receiver.got[2][1]
        assert (first_done["reason"], first_done["step"], first_done["stepPhase"]) == (
            "StepSucceeded",
            "first",
            "Succeeded",
        )
        assert controller.metric("zen_flow_cloudevents_sent_total") == 6
        assert controller.metric("zen_flow_cloudevents_queue_depth") == 0


async def test_a_sink_that_refuses_is_asked_each_event_once_and_does_not_hold_the_flow_back(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    receiver = Receiver(400)
    async with serve(receiver) as url:
        controller = start_controller(extra_args=["--cloudevents-sink", url])
        await run_two_steps(driver, namespace, "nightly")
        await receiver.wait_for(6)
        got = [(h["ce-type"].removeprefix(P), h["ce-subject"]) for h, _ in receiver.got]
        assert got[0] == ("started.v1", "nightly")
        assert len({h["ce-id"] for h, _ in receiver.got}) == len(got) == 6  # none sent twice
        assert controller.metric("zen_flow_cloudevents_failed_total", reason="refused") == 6
        assert controller.metric("zen_flow_cloudevents_dropped_total", reason="refused") == 6
        assert controller.metric("zen_flow_cloudevents_sent_total") == 0


@pytest.mark.parametrize("sink", ["fails", "hangs"])
async def test_a_sink_that_fails_or_hangs_does_not_hold_the_flow_back(
    sink: str, namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    receiver = Receiver(500) if sink == "fails" else Receiver(hang=True)
    async with serve(receiver) as url:
        controller = start_controller(extra_args=["--cloudevents-sink", url, "--cloudevents-timeout", "1"])
        await run_two_steps(driver, namespace, "nightly")
        await receiver.wait_for(2)  # it was asked (the same first event, again)
        reason = "server_error" if sink == "fails" else "timeout"
        assert controller.metric("zen_flow_cloudevents_failed_total", reason=reason) >= 1
        assert controller.metric("zen_flow_cloudevents_sent_total") == 0


async def test_on_sigterm_the_leader_sends_what_it_can_then_releases_its_lease_and_sends_no_more(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    receiver = Receiver(delay=1.0)  # a slow sink: seven events take seven seconds, the flush has five
    async with serve(receiver) as url:
        controller = start_controller(
            leader_elect=True, lease_namespace=namespace, extra_args=["--cloudevents-sink", url]
        )
        steps = [job_step(f"s{n}") for n in range(6)]
        await driver.create(flow_manifest("wide", namespace, steps))
        await wait_steps(driver, namespace, "wide", {f"s{n}": "Running" for n in range(6)})
        await receiver.wait_for(1)
        assert await asyncio.to_thread(controller.stop) == 0
        lease = await LeaseClient(driver.kube).get("zen-flow-controller", namespace)
        assert lease is not None
        assert lease.holder_identity == ""
        assert lease.renew_time is not None
        released = lease.renew_time.timestamp()
        # Some were sent during the flush, not all; and none after the lease was released (a margin
        # for this process to see a request sent just before: without the flush first, the POSTs go on
        # for seconds after the release).
        assert 2 <= len(receiver.arrived) < 7
        assert max(receiver.arrived) < released + 0.5
