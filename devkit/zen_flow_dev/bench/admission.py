"""Admission latency: `validate_jobflow` alone, and whole AdmissionReviews through the webhook over HTTPS.

The webhook is zen-flow's own server (`zen_flow.webhook.server.WebhookServer`, TLS, certificate from a
throwaway CA) on 127.0.0.1 in a process of its own, as in production where the apiserver is another
process: sharing this one would share its GIL and its garbage collector with the client. Like the
controller once its caches are synced, the server process freezes what it holds at start-up
(`zen_flow.controller.memory.freeze_long_lived`). The client is a keep-alive `http.client` connection,
as the apiserver keeps its connections to a webhook alive. Each review is timed from sending the
request to having read the whole answer.
"""

from __future__ import annotations

import asyncio
import functools
import http.client
import itertools
import json
import multiprocessing
import queue
import ssl
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from zen_flow.core.expressions import COMPILE_CACHE_SIZE
from zen_flow.validation import validate_jobflow
from zen_flow_dev.bench.stats import summarize
from zen_flow_dev.cluster.pki import create_ca, issue_serving_cert
from zen_flow_dev.testing.flows import flow_manifest, job_step, job_template

SIZES = (10, 100, 500)
# Where the rich flow's steps store their artifacts (never contacted: admission only reads the fields).
STORAGE = {
    "endpoint": "https://s3.example.com",
    "bucket": "builds",
    "accessKeyIDSecretRef": {"name": "artifact-storage", "key": "access-key"},
    "secretAccessKeySecretRef": {"name": "artifact-storage", "key": "secret-key"},
}


def admission_flow(steps: int, *, rich: bool, prefix: str = "s") -> dict[str, Any]:
    """A DAG of `steps` steps named `<prefix><i>`, each depending on up to three earlier ones (i-1, i-2,
    i/2).

    "plain": only a Job template. "rich": also resources, retryPolicy, timeout, a `when` expression,
    input parameters and artifacts from a dependency, outputs: every validator rule has work to do.
    """
    out = []
    for i in range(steps):
        earlier = list(dict.fromkeys(j for j in (i - 1, i - 2, i // 2) if 0 <= j < i))
        deps = [f"{prefix}{j}" for j in earlier]
        template = job_template()
        fields: dict[str, Any] = {}
        if rich:
            container = template["spec"]["template"]["spec"]["containers"][0]
            container["resources"] = {
                "requests": {"cpu": "100m", "memory": "64Mi"},
                "limits": {"memory": "128Mi"},
            }
            fields["retryPolicy"] = {
                "limit": 2,
                "backoff": {"type": "Exponential", "duration": "10s", "factor": 2},
            }
            fields["timeoutSeconds"] = 600
            # A quarter of the steps store an artifact and publish a value, which their dependents read:
            # on every step, a 500-step flow could outgrow what etcd stores, and the validator refuses it.
            if i % 4 == 0:
                fields["outputs"] = {
                    "parameters": [{"name": "n", "valueFrom": {"jsonPath": "$.succeeded"}}],
                    "artifacts": [{"name": "out", "path": "/outputs/out", "s3": STORAGE}],
                }
            if deps:
                fields["when"] = f"steps.{deps[0]}.phase == 'Succeeded'"
                inputs: dict[str, Any] = {
                    "parameters": [{"name": "p", "valueFrom": {"jsonPath": f"{deps[0]}:$.succeeded"}}]
                }
                if (source := next((j for j in earlier if j % 4 == 0), None)) is not None:
                    artifact = {"name": "in", "from": f"{prefix}{source}/out", "path": "/inputs/in"}
                    inputs["artifacts"] = [artifact]
                fields["inputs"] = inputs
        out.append(job_step(f"{prefix}{i}", *deps, template=template, **fields))
    return flow_manifest(f"admission-{steps}", "default", out)


def admission_review(flow: dict[str, Any], operation: str = "CREATE") -> dict[str, Any]:
    meta = flow["metadata"]
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "workflow.kube-zen.io", "version": "v1alpha1", "kind": "JobFlow"},
            "resource": {"group": "workflow.kube-zen.io", "version": "v1alpha1", "resource": "jobflows"},
            "name": meta["name"],
            "namespace": meta["namespace"],
            "operation": operation,
            "userInfo": {"username": "zen-flow-bench", "groups": ["system:authenticated"]},
            "object": flow,
            "oldObject": flow if operation == "UPDATE" else None,
            "dryRun": False,
        },
    }


# A p99 of few calls is nearly their maximum (of 60, the 59th or 60th slowest): at least 200 calls per
# second of budget (default preset: 200, so the p99 is the second or third slowest), which makes a
# 500-step flow's row take ~3 s instead of the 1 s budget; the quick preset's 0.2 s still gets 40.
MIN_CALLS_PER_BUDGET_SECOND = 200


def repeat(call: Callable[[], object], budget: float) -> tuple[float, list[float]]:
    """(first call, later calls) in seconds: at least 200 calls per second of `budget`, and more while
    within `budget`."""
    minimum = max(20, round(MIN_CALLS_PER_BUDGET_SECOND * budget))
    started = time.perf_counter()
    call()
    first = time.perf_counter() - started
    times: list[float] = []
    deadline = time.perf_counter() + budget
    while len(times) < minimum or time.perf_counter() < deadline:
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
        if len(times) >= 10_000:
            break
    return first, times


def _validate_next(flows: Iterator[dict[str, Any]]) -> object:
    return validate_jobflow(next(flows))


def time_validator(budget: float) -> list[dict[str, Any]]:
    """The same flow again and again ("plain", "rich"), and "rich, unseen": flows never validated before,
    whose conditions are new strings (as a new flow's are), so no compiled condition is reused; only
    their shapes are (a process that admitted one such flow has them)."""
    rows = []
    for shape in ("plain", "rich", "rich, unseen"):
        for steps in SIZES:
            if shape == "rich, unseen":
                # Enough flows that their conditions outnumber twice what the compile cache keeps.
                flows = [
                    admission_flow(steps, rich=True, prefix=f"u{k}-")
                    for k in range(2 * COMPILE_CACHE_SIZE // steps + 1)
                ]
                for flow in flows[:2]:
                    validate_jobflow(flow)  # the shapes, as in a process that admitted such a flow
                call: Callable[[], object] = functools.partial(_validate_next, itertools.cycle(flows[2:]))
            else:
                flow = admission_flow(steps, rich=shape == "rich")
                if errors := validate_jobflow(flow):
                    raise AssertionError(f"benchmark flow is invalid: {errors[:3]}")
                call = functools.partial(validate_jobflow, flow)
            first, times = repeat(call, budget)
            rows.append(
                {
                    "path": "validator",
                    "shape": shape,
                    "steps": steps,
                    "first_ms": round(first * 1000, 2),
                    "latency_ms": summarize(times).as_dict(),
                }
            )
    return rows


class _WebhookProcess:
    """WebhookServer on 127.0.0.1:<free port> in a child process; `port` once it listens."""

    def __init__(self, cert_dir: Path) -> None:
        context = multiprocessing.get_context("spawn")  # a clean interpreter, not a fork of the harness
        self._ports: multiprocessing.Queue[int | str] = context.Queue()
        self._stop = context.Event()
        self._process = context.Process(
            target=_serve_webhook, args=(cert_dir, self._ports, self._stop), name="bench-webhook", daemon=True
        )
        self.port = 0

    def __enter__(self) -> _WebhookProcess:
        self._process.start()
        deadline = time.monotonic() + 60
        answer: int | str = "no answer within 60 s"
        while time.monotonic() < deadline:
            try:
                answer = self._ports.get(timeout=0.5)
                break
            except queue.Empty:
                if not self._process.is_alive():
                    answer = f"the process exited with {self._process.exitcode}"
                    break
        if isinstance(answer, str):
            raise RuntimeError(f"webhook server did not start: {answer}")
        self.port = answer
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._process.join(30)
        if self._process.is_alive():
            self._process.kill()


def _serve_webhook(cert_dir: Path, ports: multiprocessing.Queue[int | str], stop: Any) -> None:
    from zen_flow.controller.memory import freeze_long_lived  # the child's own imports
    from zen_flow.webhook.server import WebhookServer

    async def serve() -> None:
        server = WebhookServer(cert_dir)
        await server.start("127.0.0.1", 0)
        freeze_long_lived()
        ports.put(server.port)
        try:
            await asyncio.to_thread(stop.wait)
        finally:
            await server.stop()

    try:
        asyncio.run(serve())
    except Exception as exc:  # reported to the harness
        ports.put(repr(exc))


# A step message that numbers a review: "rich, new spec" sends a spec the webhook has not seen each time
# (a valid spec it saw is remembered: zen_flow.validation.accepted). "rich, generated name" numbers the
# flow's name instead: one spec under a new name each time, as flows created with `generateName` reach
# the validating webhook. "rich, other arguments" numbers an argument's value: one spec submitted with
# another value each time (`zen-flow submit flow.yaml -p build=...`).
_UNIQUE = "review %09d"
_UNIQUE_BYTES = _UNIQUE.encode()
_GENERATED = "nightly-%09d"
_ARGUMENT = "build-%09d"
_RENUMBERED = {
    "rich, new spec": _UNIQUE_BYTES,
    "rich, generated name": _GENERATED.encode(),
    "rich, other arguments": _ARGUMENT.encode(),
}


def time_webhook(budget: float) -> list[dict[str, Any]]:
    """Validate and mutate reviews of CREATE (and validate of UPDATE, which also checks the transition);
    "rich" sends one review again and again, "rich, new spec" a spec not seen before each time."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="zenflow-bench-webhook-") as tmp:
        ca = create_ca(Path(tmp) / "ca", common_name="zen-flow-bench-ca")
        issue_serving_cert(ca, Path(tmp) / "serving", ("127.0.0.1",), name="tls")
        context = ssl.create_default_context(cafile=str(ca.cert_path))
        with _WebhookProcess(Path(tmp) / "serving") as server:
            connection = http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=30)
            try:
                for path, operation, shape in (
                    ("/validate-jobflow", "CREATE", "rich"),
                    ("/validate-jobflow", "CREATE", "rich, new spec"),
                    ("/validate-jobflow", "CREATE", "rich, generated name"),
                    ("/validate-jobflow", "CREATE", "rich, other arguments"),
                    ("/mutate-jobflow", "CREATE", "rich"),
                    ("/validate-jobflow", "UPDATE", "rich"),
                ):
                    for steps in SIZES:
                        flow = admission_flow(steps, rich=True)
                        flow["spec"]["steps"][0]["message"] = _UNIQUE % 0
                        flow["metadata"]["name"] = _GENERATED % 0
                        if shape == "rich, other arguments":
                            flow["spec"]["arguments"] = {
                                "parameters": [{"name": "build", "value": _ARGUMENT % 0}]
                            }
                        body = json.dumps(admission_review(flow, operation)).encode()
                        token = _RENUMBERED.get(shape)
                        reviews = (
                            (body.replace(token % 0, token % n) for n in itertools.count(1))
                            if token is not None
                            else itertools.repeat(body)
                        )

                        def post(reviews: Iterator[bytes] = reviews, path: str = path) -> None:
                            connection.request(
                                "POST", path, body=next(reviews), headers={"Content-Type": "application/json"}
                            )
                            answer = connection.getresponse()
                            payload = json.loads(answer.read())
                            if answer.status != 200 or not payload["response"]["allowed"]:
                                raise AssertionError(f"{path}: {answer.status} {str(payload)[:300]}")

                        first, times = repeat(post, budget)
                        rows.append(
                            {
                                "path": f"webhook {path} {operation}",
                                "shape": shape,
                                "steps": steps,
                                "request_kb": round(len(body) / 1024, 1),
                                "first_ms": round(first * 1000, 2),
                                "latency_ms": summarize(times).as_dict(),
                            }
                        )
            finally:
                connection.close()
    return rows
