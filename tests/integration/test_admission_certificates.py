"""The webhook server's serving certificate rotated on disk is served without a restart, while the real
kube-apiserver keeps calling it (admission_rig)."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from admission_rig import DEADLINE, Webhook, annotations_of
from admission_rig import webhook_fixture as webhook_fixture  # the `webhook` fixture
from jobflow_objects import Kubectl, flow, job

from zen_flow.api.constants import ANNOTATION_CREATED_BY
from zen_flow_dev.cluster.adminclient import wait_until

pytestmark = pytest.mark.integration


class FlowCreator:
    """Creates valid flows with kubectl, one after another in a thread, until stopped."""

    def __init__(self, kubectl: Kubectl, namespace: str) -> None:
        self._kubectl = kubectl
        self._namespace = namespace
        self.done: list[subprocess.CompletedProcess[str]] = []
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flow-creator", daemon=True)
        self._thread.start()

    def create(self, name: str) -> subprocess.CompletedProcess[str]:
        body = json.dumps(flow(name, self._namespace, [{"name": "a", "template": job()}]))
        return self._kubectl("create", "-o", "json", "-f", "-", input=body, check=False)

    def _run(self) -> None:
        while not self._stopping.is_set():
            done = self.create(f"loop-{len(self.done)}")
            with self._changed:
                self.done.append(done)
                self._changed.notify_all()

    def wait_for(self, count: int) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.done) >= count, timeout=DEADLINE):
                raise AssertionError(f"only {len(self.done)} of {count} creations finished in time")

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(DEADLINE)


def test_a_certificate_rotated_on_disk_is_served_without_restart(
    webhook: Webhook, kubectl: Kubectl, namespace: str
) -> None:
    # Record the certificate each of the apiserver's TLS handshakes gets: the listener's SNI callback
    # runs for every handshake, and the apiserver's are the ones without a server name.
    context = webhook.server.certs.listening_context()
    select: Any = context.sni_callback  # typeshed types the callback's server_name as str
    assert select is not None
    apiserver_handshakes: list[int] = []

    def recording(conn: Any, server_name: str | None, ctx: ssl.SSLContext) -> Any:
        result = select(conn, server_name, ctx)
        current = webhook.server.certs.current
        if server_name is None and current is not None:
            apiserver_handshakes.append(current.serial)
        return result

    listener = webhook.server.port
    old = webhook.presented_serial()
    context.sni_callback = recording
    creator = FlowCreator(kubectl, namespace)
    burst: list[subprocess.CompletedProcess[str]] = []
    try:
        creator.wait_for(1)  # admission works before the rotation
        new = webhook.publish_cert()
        assert new != old
        # While the background creations go on, every probe is a new handshake.
        wait_until(
            lambda: webhook.presented_serial() == new,
            timeout=DEADLINE,
            what="the new certificate",
            interval=0.02,
        )

        # The apiserver keeps its connections to the webhook alive, and those keep the certificate
        # they negotiated; concurrent requests make it open more, whose handshakes get the new one.
        def apiserver_connected_anew() -> bool:
            with ThreadPoolExecutor(4) as pool:
                burst.extend(pool.map(creator.create, [f"burst-{len(burst) + i}" for i in range(4)]))
            return new in apiserver_handshakes

        wait_until(apiserver_connected_anew, timeout=DEADLINE, what="an apiserver handshake", interval=0)
        creator.wait_for(len(creator.done) + 1)  # and it keeps working after
    finally:
        creator.stop()
        context.sni_callback = select

    for done in [*creator.done, *burst]:
        assert done.returncode == 0, done.stderr
        created = json.loads(done.stdout)  # every one went through the mutating webhook
        assert annotations_of(created)[ANNOTATION_CREATED_BY] == webhook.user, created["metadata"]["name"]
    assert webhook.server.port == listener  # the same listener: no restart
    assert webhook.server.certs.current is not None
    assert webhook.server.certs.current.serial == new
    assert webhook.server.certs.last_error is None
