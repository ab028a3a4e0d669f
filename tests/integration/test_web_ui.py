"""`zen-flow ui` against the real apiserver with a controller reconciling: the server runs in-process on a
free loopback port with the user's kubeconfig; a browser (an aiohttp client keeping cookies) opens the
printed address, reads the list and the flow's page, and approves a Manual step; a page's event stream
tells of a change of its flow."""

from __future__ import annotations

import argparse
import asyncio
import html
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from controller_steps import wait_steps

from zen_flow.cli.session import open_session
from zen_flow.cli.ui_server import Ui, start, url
from zen_flow_dev.testing.controller import StartController
from zen_flow_dev.testing.driver import FlowDriver
from zen_flow_dev.testing.flows import flow_manifest, manual_step

pytestmark = pytest.mark.integration


async def test_a_gate_approved_from_the_web_ui(
    namespace: str, kubeconfig: Path, driver: FlowDriver, start_controller: StartController
) -> None:
    start_controller()
    message = "<script>alert(1)</script> check staging"
    steps = [manual_step("gate", message=message), manual_step("after", "gate")]
    await driver.create(flow_manifest("release", namespace, steps))
    await wait_steps(driver, namespace, "release", {"gate": "PendingApproval"})

    flags = argparse.Namespace(kubeconfig=str(kubeconfig), context=None, namespace=namespace)
    async with open_session(flags) as session:
        ui = Ui(session.client, session.namespace, False, "t0ken-for-the-test")
        runner = await start(ui, 0)
        try:
            jar = aiohttp.CookieJar(unsafe=True)  # cookies from 127.0.0.1, as a browser keeps them
            async with aiohttp.ClientSession(cookie_jar=jar) as browser:
                async with browser.get(url(ui)) as listed:  # the address the command prints
                    assert listed.status == 200
                    assert str(listed.url) == f"http://127.0.0.1:{ui.port}/"  # no token left in it
                    assert f'<a href="/flows/{namespace}/release">release</a>' in await listed.text()

                base = f"http://127.0.0.1:{ui.port}/flows/{namespace}/release"
                async with browser.get(base) as shown:
                    page = await shown.text()
                assert shown.status == 200
                assert "<svg" in page
                assert 'data-step="gate"' in page
                assert 'data-step="after"' in page
                assert "&lt;script&gt;alert(1)&lt;/script&gt; check staging" in page
                assert "<script>alert" not in page

                async with browser.post(
                    f"{base}/approve", data={"step": "gate", "message": "looks good"}
                ) as done:
                    assert done.status == 200, await done.text()
                    assert f"jobflow {namespace}/release: step gate approved" in await done.text()

                async with browser.get(f"http://127.0.0.1:{ui.port}/flows/{namespace}/nothing") as missing:
                    assert missing.status == 404
                    assert (
                        "jobflows.workflow.kube-zen.io &quot;nothing&quot; not found" in await missing.text()
                    )
        finally:
            await runner.cleanup()

    flow = await wait_steps(driver, namespace, "release", {"gate": "Succeeded"})
    assert [(a["step"], a["decision"], a["message"]) for a in flow["status"]["audit"]["approvals"]] == [
        ("gate", "Approved", "looks good")
    ]


async def test_a_page_s_event_stream_tells_of_a_change_of_its_flow(
    namespace: str, kubeconfig: Path, driver: FlowDriver, jobflow_crd: Any
) -> None:
    # No controller: the change is the user's own (suspend, as the page's button does it).
    await driver.create(flow_manifest("nightly", namespace, [manual_step("gate")]))
    flags = argparse.Namespace(kubeconfig=str(kubeconfig), context=None, namespace=namespace)
    async with open_session(flags) as session:
        ui = Ui(session.client, session.namespace, False, "t0ken-for-the-test")
        runner = await start(ui, 0)
        try:
            base = f"http://127.0.0.1:{ui.port}"
            async with aiohttp.ClientSession(cookies={ui.cookie: ui.token}) as browser:
                async with browser.get(f"{base}/flows/{namespace}/nightly") as shown:
                    found = re.search(r'<div id="live" data-events="([^"]+)">', await shown.text())
                assert found is not None
                events = html.unescape(found.group(1))  # the stream, from the version the page shows
                assert events.startswith(f"/flows/{namespace}/nightly/events?rv=")
                async with browser.get(base + events) as stream:
                    assert stream.headers["Content-Type"] == "text/event-stream"
                    # A change the page does not show yet.
                    origin = {"Origin": base}
                    async with browser.post(
                        f"{base}/flows/{namespace}/nightly/suspend", headers=origin
                    ) as done:
                        assert done.status == 200

                    async def notice() -> bytes:
                        while (line := await stream.content.readline()) != b"event: changed\n":
                            assert line, "the stream ended"
                        return await stream.content.readline()

                    assert await asyncio.wait_for(notice(), 30) == b"data: changed\n"
        finally:
            await runner.cleanup()
        assert ui.streams.open == 0
