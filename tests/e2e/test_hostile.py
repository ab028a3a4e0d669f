"""One tenant's flow must never stop another's: pathological `when` expressions and templates nested
thousands of levels deep fail their own flow while other flows run to the end and the leader keeps its
lease; a tenant whose Job creates wait on a slow admission webhook does not hold back another's flows.

The probe that found it: a 448-character `when` passed admission, took 18.8 s to evaluate inline on the
event loop, starved the lease renewal, and every leader that picked the flow up resigned in turn.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from pathlib import Path
from typing import Any

from aiohttp import web

from zen_flow.machinery.leader import LeadershipLost
from zen_flow_dev.cluster.pki import create_ca, issue_serving_cert
from zen_flow_dev.testing.controller import StartController, free_port
from zen_flow_dev.testing.driver import FlowDriver, step_phases, wait_until
from zen_flow_dev.testing.flows import chain, flow_manifest, job_step
from zen_flow_dev.testing.kubectl import Kubectl

LEASE = "zen-flow-controller"
TEN = "[0,1,2,3,4,5,6,7,8,9]"
# Comprehensions eight deep: 10^8 iterations (half a minute of CPU). Admission refuses it.
NESTED = "".join(f"{TEN}.all(v{i}, " for i in range(8)) + "true" + ")" * 8
# The CEL library's other spelling of exists_one, nested 3 deep: once read as linear and run on the loop.
NESTED_EXISTS_ONE = "".join(f"{TEN}.existsOne(v{i}, " for i in range(3)) + "true" + ")" * 3
# Each pattern takes the CEL library ~40 ms to compile, on every call.
REGEXES = "||".join(['"".matches("\\\\w{290}")'] * 20)
# Passes admission (20 x 20 iterations), but each iteration copies 400 kB: far past a 0.05 s budget.
COSTLY = "steps.all(a, steps.all(b, size(flow.annotations.big + flow.annotations.big) > 0))"


async def _lease(driver: FlowDriver, namespace: str) -> dict[str, Any] | None:
    path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{LEASE}"
    try:
        return await driver.kube.request("GET", path)
    except Exception:
        return None


async def test_pathological_when_expressions_fail_alone_and_the_leader_keeps_its_lease(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    controller = start_controller(
        leader_elect=True, lease_namespace=namespace, extra_args=["--expression-budget", "0.05"]
    )

    async def held() -> dict[str, Any] | None:
        lease = await _lease(driver, namespace)
        return lease if lease and lease["spec"].get("holderIdentity") else None

    before = (await wait_until(held, 30, what="the controller to lead"))["spec"]

    nested = flow_manifest("nested", namespace, [job_step("a"), job_step("judge", "a", when=NESTED)])
    exists_one = flow_manifest("exists-one", namespace, [job_step("judge", when=NESTED_EXISTS_ONE)])
    regexes = flow_manifest("regexes", namespace, [job_step("judge", when=REGEXES)])
    costly_steps = [job_step(f"s{i}") for i in range(19)] + [job_step("judge", when=COSTLY)]
    costly = flow_manifest("costly", namespace, costly_steps, annotations={"big": "x" * 200_000})
    good = [chain(f"good-{n}", namespace, 5) for n in range(2)]
    await asyncio.gather(*(driver.create(m) for m in (nested, exists_one, regexes, costly, *good)))

    results = {
        name: await driver.wait_phase(namespace, name, timeout=120)
        for name in ("nested", "exists-one", "regexes", "costly", "good-0", "good-1")
    }
    for name, deep in (("nested", 8), ("exists-one", 3)):
        invalid = next(c for c in results[name]["status"]["conditions"] if c["type"] == "Failed")
        assert invalid["reason"] == "InvalidSpec"
        assert f"too expensive: comprehensions nested {deep} deep (at most 2)" in invalid["message"]
    for name in ("costly", "regexes"):
        assert results[name]["status"]["phase"] == "Failed"
        judge = next(s for s in results[name]["status"]["steps"] if s["name"] == "judge")
        assert judge["phase"] == "Failed"
        assert judge["message"].startswith("when stopped: evaluation ran past its 0.05s budget")
    for name in ("good-0", "good-1"):
        assert results[name]["status"]["phase"] == "Succeeded"
        assert set(step_phases(results[name]).values()) == {"Succeeded"}

    after = (await _lease(driver, namespace) or {})["spec"]
    assert after["holderIdentity"] == before["holderIdentity"]
    assert after.get("leaseTransitions") == before.get("leaseTransitions")
    assert controller.alive
    assert LeadershipLost.__name__ not in controller.log_tail(400)
    assert "lost leadership" not in controller.log_tail(400)


async def test_a_flow_nested_thousands_of_levels_deep_fails_alone(
    namespace: str, driver: FlowDriver, kubectl: Kubectl, start_controller: StartController
) -> None:
    # The apiserver stores JSON nested up to 10,000 levels in a template; Python's decoders stop near
    # 1,000. Such a flow once crashed the controller at every start (its LIST could not be decoded).
    controller = start_controller()
    deep = flow_manifest("deep", namespace, [job_step("a", template={"kind": "Job", "z": "DEEP"})])
    body = json.dumps(deep).replace('"DEEP"', "[" * 3000 + "]" * 3000)
    kubectl("create", "-f", "-", input=body)
    await driver.create(chain("good", namespace, 2))

    failed = await driver.wait_phase(namespace, "deep", timeout=60)
    condition = next(c for c in failed["status"]["conditions"] if c["type"] == "Failed")
    assert condition["reason"] == "InvalidSpec"
    assert "nested more than 128 levels deep (at spec.steps[0].template.z[0]..." in condition["message"]
    assert (await driver.wait_phase(namespace, "good", timeout=60))["status"]["phase"] == "Succeeded"
    assert controller.alive


class SlowJobWebhook:
    """A validating admission webhook for the Jobs of one namespace that holds every request until
    `answer` is set (as a policy engine verifying images against a slow registry would: a webhook may
    take up to 30 s). Served on loopback with a CA of its own; failurePolicy Ignore, so a test that ends
    early never blocks a create for long."""

    def __init__(self, namespace: str, cert_dir: Path) -> None:
        self.namespace = namespace
        self.name = f"zf-test-slow-jobs-{namespace}"
        self.answer = asyncio.Event()
        self.held = 0
        self.holding = asyncio.Event()  # at least one request is held
        ca = create_ca(cert_dir, "zen-flow-tests-slow-webhook-ca")
        cert, key = issue_serving_cert(ca, cert_dir, ["127.0.0.1"])
        self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._tls.load_cert_chain(cert, key)
        self._ca_bundle = base64.b64encode(ca.cert_path.read_bytes()).decode()
        self._runner: web.AppRunner | None = None

    async def review(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.held += 1
        self.holding.set()
        await self.answer.wait()
        uid = body["request"]["uid"]
        return web.json_response({**body, "response": {"uid": uid, "allowed": True}})

    async def start(self, kubectl: Kubectl) -> None:
        app = web.Application()
        app.router.add_post("/validate", self.review)
        self._runner = web.AppRunner(app, shutdown_timeout=0)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port, ssl_context=self._tls).start()
        config = {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": self.name},
            "webhooks": [
                {
                    "name": "slow-jobs.zenflow.test",
                    "clientConfig": {
                        "url": f"https://127.0.0.1:{port}/validate",
                        "caBundle": self._ca_bundle,
                    },
                    "rules": [
                        {
                            "apiGroups": ["batch"],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE"],
                            "resources": ["jobs"],
                        }
                    ],
                    # Only the slow tenant's namespace: the rest of the shared cluster never calls it.
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": self.namespace}},
                    "failurePolicy": "Ignore",
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                    "timeoutSeconds": 30,
                }
            ],
        }
        kubectl("apply", "-f", "-", input=json.dumps(config))

    async def stop(self, kubectl: Kubectl) -> None:
        kubectl("delete", "validatingwebhookconfiguration", self.name, "--ignore-not-found", check=False)
        self.answer.set()
        if self._runner is not None:
            await self._runner.cleanup()


async def test_a_tenant_whose_job_creates_wait_on_a_slow_webhook_does_not_hold_back_another(
    namespace: str,
    kubectl: Kubectl,
    driver: FlowDriver,
    start_controller: StartController,
    tmp_path: Path,
) -> None:
    slow = f"{namespace}-slow"
    kubectl("create", "namespace", slow)
    webhook = SlowJobWebhook(slow, tmp_path / "slow-webhook")
    await webhook.start(kubectl)
    try:
        start_controller(namespaces=[namespace, slow], extra_args=["--workers", "2"])
        await asyncio.gather(*(driver.create(chain(f"slow-{n}", slow, 1)) for n in range(8)))
        async with asyncio.timeout(30):
            await webhook.holding.wait()
        await driver.create(chain("quiet", namespace, 2))
        # Its Jobs are created while the slow tenant's creates are still held (the webhook would hold
        # them 30 s): before, the slow tenant's reconciles held every worker until then.
        done = await driver.wait_phase(namespace, "quiet", timeout=25)
        assert done["status"]["phase"] == "Succeeded"
        assert not webhook.answer.is_set()
        assert webhook.held <= 2, "the slow tenant had no more than --workers reconciles at once"
        webhook.answer.set()
        for n in range(8):
            assert (await driver.wait_phase(slow, f"slow-{n}", timeout=60))["status"]["phase"] == "Succeeded"
    finally:
        await webhook.stop(kubectl)
        kubectl("delete", "namespace", slow, "--wait=false", "--ignore-not-found", check=False)
