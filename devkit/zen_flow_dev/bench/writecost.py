"""What one status write of a JobFlow costs the apiserver, next to a ConfigMap write of the same size.

    python -m zen_flow_dev.bench.writecost [--steps 10 --steps 500] [--crd FILE ...] [--rounds 3]

Starts a local kube-apiserver and etcd (nothing else runs: the quietest place to see this), installs the
JobFlow CRD (each `--crd` file in turn, alternating per round, to compare versions of it), creates a flow
of `--steps` steps with the status the controller writes for it (the planner's, every step Succeeded
with its jobRef), and sends conditional JSON patches of what a transition changes (a `status.steps`
entry, the conditions, the message), as the controller does (answered with the flow's metadata only;
`--way` for other ways), while `--watchers` watches read every JobFlow event (the controller's and an
observer's in `make bench`).
The apiserver's CPU comes from /proc; a ConfigMap of the flow's size patched the same way is the yardstick.
This is how docs/BENCHMARKS.md ("Spec immutability off the status path") measured the CRD's rules.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import statistics
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from zen_flow import planner
from zen_flow.api import JobFlow
from zen_flow.api.constants import GROUP, KIND, PLURAL, VERSION
from zen_flow.kube.transport import METADATA_ONLY  # how the controller asks for its writes' answers
from zen_flow_dev.bench import procstats
from zen_flow_dev.bench.workloads import Workload, chain, flow_manifest_for
from zen_flow_dev.cluster import LocalCluster
from zen_flow_dev.cluster.adminclient import tls_context
from zen_flow_dev.testing.crd import JOBFLOW_CRD_PATH

FLOWS = f"/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
CRD_PATH = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{PLURAL}.{GROUP}"
JSON_PATCH = "application/json-patch+json"


class Connection:
    """One kept-alive HTTPS connection (a TLS handshake per write would be counted as the write's)."""

    def __init__(self, cluster: LocalCluster) -> None:
        url = urllib.parse.urlsplit(cluster.server)
        self._context = tls_context(cluster.ca_cert, cluster.pki.admin_cert, cluster.pki.admin_key)
        self.host, self.port = url.hostname or "", url.port or 443
        self._http = http.client.HTTPSConnection(self.host, self.port, context=self._context)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> Any:
        payload = None if body is None else json.dumps(body).encode()
        self._http.request(
            method, path, body=payload, headers={"Content-Type": content_type, "Accept": accept}
        )
        response = self._http.getresponse()
        data = response.read()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: {response.status} {data[:300]!r}")
        return json.loads(data)

    @contextmanager
    def watchers(self, count: int) -> Iterator[None]:
        """`count` watches of every JobFlow, read and thrown away by threads until the block ends."""
        connections, responses = [], []
        for _ in range(count):  # opened here, so that a thread only ever reads
            conn = http.client.HTTPSConnection(self.host, self.port, context=self._context)
            conn.request("GET", f"/apis/{GROUP}/{VERSION}/{PLURAL}?watch=1")
            connections.append(conn)
            responses.append(conn.getresponse())

        def drain(response: http.client.HTTPResponse) -> None:
            try:
                while response.read1(65536):
                    pass
            except (OSError, ValueError, http.client.HTTPException):
                pass  # closed when the block ends

        threads = [threading.Thread(target=drain, args=(r,), daemon=True) for r in responses]
        for thread in threads:
            thread.start()
        try:
            yield
        finally:
            for conn in connections:
                if conn.sock is not None:
                    conn.sock.shutdown(socket.SHUT_RDWR)
            for thread in threads:
                thread.join(timeout=10)
            for conn, response in zip(connections, responses, strict=True):
                response.close()
                conn.close()

    def close(self) -> None:
        self._http.close()


def cpu_seconds(pid: int) -> float:
    got = procstats.sample(pid)
    if got is None:
        raise RuntimeError("the apiserver exited")
    return got.cpu_seconds


def flow_and_status(steps: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """A `steps`-step chain and the status the controller writes for it, every step Succeeded with its
    Job's reference: the planner's own status (its conditions, progress and messages), not a copy of its
    shape, so the measurement follows what the controller writes."""
    workload = Workload(name="writecost", title="", kind="flows", dag=chain(steps), flows=1)
    flow = flow_manifest_for(workload, "writecost", "default")
    meta = {**flow["metadata"], "uid": "aa95ac31-e3a5-4b7b-b4a1-dfac9060af65", "generation": 1}
    now = datetime(2026, 12, 3, 11, 0, tzinfo=UTC)
    running = planner.plan(JobFlow.model_validate({**flow, "metadata": meta}), [], now).status
    status = running.to_wire()
    status["steps"] = [
        {
            "name": entry["name"],
            "phase": "Succeeded",
            "startTime": status["startTime"],
            "completionTime": status["startTime"],
            "retryCount": 0,
            "jobRef": {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": f"writecost-{entry['name']}-0123abcd",
                "namespace": "default",
                "uid": "aa95ac31-e3a5-4b7b-b4a1-dfac9060af65",
            },
        }
        for entry in status["steps"]
    ]
    return flow, status


def flow_write_ms(conn: Connection, apiserver: int, steps: int, writes: int, way: str) -> tuple[float, int]:
    """Apiserver CPU ms per status write of a `steps`-step flow, and the flow's size in bytes. `way`:
    "patch", a conditional JSON patch of what a transition changes (one entry, the conditions, the
    message); "patch-whole-answer", the same answered with the whole flow instead of its metadata;
    "put", the whole status with the object's resourceVersion (an update of the status subresource takes
    nothing else from the body)."""
    flow, status = flow_and_status(steps)
    name = f"writecost-{steps}-{time.monotonic_ns()}"
    flow["metadata"]["name"] = name
    version = conn.call("POST", FLOWS, flow)["metadata"]["resourceVersion"]
    ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": version}]
    written = conn.call(
        "PATCH",
        f"{FLOWS}/{name}/status",
        [*ops, {"op": "add", "path": "/status", "value": status}],
        JSON_PATCH,
    )
    before = cpu_seconds(apiserver)
    for i in range(writes):
        # What a transition writes: the entry that changed, and the conditions and message that name the
        # running step (the controller sends the conditions whole when one of them changed).
        entry = {**status["steps"][i % steps], "retryCount": i % 3}
        message = f"running: s{i % steps} ({i})"
        conditions = [
            {**c, "message": message} if c["type"] in ("Ready", "Running") else c
            for c in status["conditions"]
        ]
        version = written["metadata"]["resourceVersion"]
        if way == "put":
            status["steps"][i % steps] = entry
            status["conditions"], status["message"] = conditions, message
            meta = {"name": name, "namespace": "default", "resourceVersion": version}
            body = {"apiVersion": flow["apiVersion"], "kind": KIND, "metadata": meta, "status": status}
            written = conn.call("PUT", f"{FLOWS}/{name}/status", body)
            continue
        ops = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": version},
            {"op": "replace", "path": f"/status/steps/{i % steps}", "value": entry},
            {"op": "add", "path": "/status/conditions", "value": conditions},
            {"op": "add", "path": "/status/message", "value": message},
        ]
        accept = "application/json" if way == "patch-whole-answer" else METADATA_ONLY
        written = conn.call("PATCH", f"{FLOWS}/{name}/status", ops, JSON_PATCH, accept)
    after = cpu_seconds(apiserver)
    size = len(json.dumps(conn.call("GET", f"{FLOWS}/{name}")))  # the answer may be its metadata only
    conn.call("DELETE", f"{FLOWS}/{name}")
    return 1000 * (after - before) / writes, size


def configmap_write_ms(conn: Connection, apiserver: int, size: int, writes: int) -> float:
    """The same for a ConfigMap of `size` bytes in ten keys, one key replaced per write."""
    name = f"writecost-{time.monotonic_ns()}"
    chunk = "x" * (size // 10)
    conn.call("POST", CONFIGMAPS, {"metadata": {"name": name}, "data": {f"k{i}": chunk for i in range(10)}})
    before = cpu_seconds(apiserver)
    for i in range(writes):
        ops = [{"op": "replace", "path": f"/data/k{i % 10}", "value": f"{i}{chunk}"}]
        conn.call("PATCH", f"{CONFIGMAPS}/{name}", ops, JSON_PATCH)
    after = cpu_seconds(apiserver)
    conn.call("DELETE", f"{CONFIGMAPS}/{name}")
    return 1000 * (after - before) / writes


def install(conn: Connection, crd_file: Path) -> None:
    """Create or replace the CRD from `crd_file` and wait until the apiserver serves JobFlows by it."""
    crd = yaml.safe_load(crd_file.read_text())
    try:
        current = conn.call("GET", CRD_PATH)
    except RuntimeError:
        conn.call("POST", CRD_PATH.rsplit("/", 1)[0], crd)
    else:
        crd["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        conn.call("PUT", CRD_PATH, crd)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            conn.call("GET", FLOWS)
        except RuntimeError:
            time.sleep(0.2)  # polled with a deadline: the new version is served within a second or so
            continue
        time.sleep(2)  # the apiserver swaps its CRD handler; let the old one drain before measuring
        return
    raise TimeoutError(f"{KIND} not served after installing {crd_file}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m zen_flow_dev.bench.writecost", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--steps", type=int, action="append", help="flow sizes (default: 10 and 500)")
    parser.add_argument(
        "--crd", type=Path, action="append", help=f"CRD files to compare (default: {JOBFLOW_CRD_PATH.name})"
    )
    parser.add_argument(
        "--writes", type=int, default=300, help="writes per measurement for 10 steps (fewer for larger flows)"
    )
    parser.add_argument(
        "--way",
        choices=("patch", "patch-whole-answer", "put"),
        action="append",
        help="how a status is written (default: patch)",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--watchers", type=int, default=2)
    args = parser.parse_args(argv)
    sizes, crds, ways = args.steps or [10, 500], args.crd or [JOBFLOW_CRD_PATH], args.way or ["patch"]

    writes: int = args.writes

    def writes_for(steps: int) -> int:  # as many for a large flow would take minutes
        return max(20, writes * 10 // steps)

    results: dict[tuple[str, int], list[float]] = {}
    sizes_bytes: dict[tuple[str, int], int] = {}  # a CRD's list types change the object's managedFields
    with LocalCluster("apiserver", smoke_job=False) as cluster:
        apiserver = cluster.pids()["kube-apiserver"]
        conn = Connection(cluster)
        with closing(conn):
            for round_ in range(args.rounds):
                for crd in crds:
                    install(conn, crd)
                    for steps in sizes:
                        for way in ways:
                            # Opened after the install: replacing a CRD ends every watch of its objects.
                            with conn.watchers(args.watchers):
                                ms, size = flow_write_ms(conn, apiserver, steps, writes_for(steps), way)
                            what = str(crd) if len(ways) == 1 else f"{crd} ({way})"
                            results.setdefault((what, steps), []).append(ms)
                            sizes_bytes[what, steps] = size
                            sizes_bytes[str(crd), steps] = size
                            print(
                                f"round {round_ + 1}: {crd.name} {way}, {steps} steps ({size:,} B): "
                                f"{ms:.1f} ms",
                                flush=True,
                            )
            for steps in sizes:
                size = sizes_bytes[str(crds[0]), steps]  # the first CRD's flow is the yardstick's size
                sizes_bytes["ConfigMap", steps] = size
                ms = configmap_write_ms(conn, apiserver, size, writes_for(steps))
                results.setdefault(("ConfigMap", steps), []).append(ms)
    print("\n| writes of | flow steps | object bytes | apiserver CPU ms per write, median (range) |")
    print("|---|---|---|---|")
    for (what, steps), values in results.items():
        label = what if what == "ConfigMap" else Path(what).name
        median, low, high = statistics.median(values), min(values), max(values)
        print(f"| {label} | {steps} | {sizes_bytes[what, steps]:,} | {median:.1f} ({low:.1f}-{high:.1f}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
