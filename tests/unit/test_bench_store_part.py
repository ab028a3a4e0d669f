"""How a benchmark part ends and reads the store (storesize.py, scenarios.close_part, Session.snapshot):
the figures `--job-retention`'s A/B compares must come from where the docs say, and a missing or broken
source must leave a figure out rather than fail the part or report a wrong one."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import http.server
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from zen_flow.api import JobFlow
from zen_flow.kube import KubeClient
from zen_flow.kube.errors import KubeError
from zen_flow_dev.bench import apicost, cli, environment, runner, scenarios, session, storesize
from zen_flow_dev.bench.observer import Observer
from zen_flow_dev.cluster.components import Ports, etcd_argv

ETCD_METRICS = """\
# TYPE etcd_debugging_mvcc_keys_total gauge
etcd_debugging_mvcc_keys_total 5230
etcd_debugging_mvcc_compact_revision 700
etcd_mvcc_db_total_size_in_bytes 2.62144e+07
etcd_mvcc_db_total_size_in_use_in_bytes 1.2582912e+07
"""
APISERVER_METRICS = """\
apiserver_resource_objects{group="batch",resource="jobs"} 40
apiserver_resource_objects{group="",resource="pods"} 41
apiserver_resource_objects{group="workflow.kube-zen.io",resource="jobflows"} 4
"""


class FakeKube:
    """Answers one-item LISTs of a namespace's Jobs and pods from the counts it is given, in turn."""

    def __init__(
        self, jobs: list[int | None], pods: list[int | None], *, extra: Mapping[str, Any] = {}
    ) -> None:
        self.counts = {"jobs": jobs, "pods": pods}
        self.extra = extra
        self.requests: list[tuple[str, str]] = []

    async def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        self.requests.append((method, path))
        kind = path.rsplit("/", 1)[1]
        queue = self.counts[kind]
        n = queue.pop(0) if len(queue) > 1 else queue[0]
        if n is None:
            raise KubeError("the apiserver said no")
        metadata: dict[str, Any] = {"remainingItemCount": n - 1, "continue": "x"} if n > 1 else {}
        return {"items": [{}] * min(n, 1), "metadata": {**metadata, **self.extra}}


def _kube(fake: FakeKube) -> KubeClient:
    return cast("KubeClient", fake)


def test_a_count_is_the_page_s_items_and_what_the_apiserver_says_remains() -> None:
    count = storesize.count
    assert asyncio.run(count(_kube(FakeKube([42], [0])), "/apis/batch/v1/namespaces/n/jobs")) == 42
    assert asyncio.run(count(_kube(FakeKube([1], [0])), "/apis/batch/v1/namespaces/n/jobs")) == 1
    assert asyncio.run(count(_kube(FakeKube([0], [0])), "/api/v1/namespaces/n/pods")) == 0
    assert asyncio.run(count(_kube(FakeKube([None], [0])), "/apis/batch/v1/namespaces/n/jobs")) is None


def test_more_pages_without_a_remaining_count_is_unknown_not_one() -> None:
    class NoCount(FakeKube):
        async def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
            return {"items": [{}], "metadata": {"continue": "next-page"}}

    assert asyncio.run(storesize.count(_kube(NoCount([5], [5])), "/api/v1/namespaces/n/pods")) is None


def test_the_namespace_counts_are_its_jobs_and_its_pods() -> None:
    fake = FakeKube([3], [7])
    assert asyncio.run(storesize.namespace_counts(_kube(fake), "n")) == {
        "namespace_jobs": 3,
        "namespace_pods": 7,
    }
    assert sorted(path for _, path in fake.requests) == [
        "/api/v1/namespaces/n/pods",
        "/apis/batch/v1/namespaces/n/jobs",
    ]


def test_every_etcd_figure_grows_over_the_part_and_a_compaction_is_flagged() -> None:
    before = storesize.from_metrics(None, ETCD_METRICS)
    grown = ETCD_METRICS.replace("5230", "5300").replace("2.62144e+07", "2.7e+07")
    grown = grown.replace("1.2582912e+07", "1.3e+07")
    after = storesize.from_metrics(None, grown)
    part = storesize.part(before, after, {})
    assert (part["etcd_keys_added"], part["etcd_db_bytes_added"]) == (70, 27000000 - 26214400)
    assert part["etcd_db_in_use_bytes_added"] == 13000000 - 12582912
    assert part["etcd_compacted"] is False
    compacted = storesize.from_metrics(None, grown.replace(" 700", " 900"))
    assert storesize.part(before, compacted, {})["etcd_compacted"] is True


def test_the_apiserver_s_current_object_counts_are_read_and_a_failed_refresh_is_left_out() -> None:
    assert storesize.from_metrics(APISERVER_METRICS, None) == {
        "apiserver_jobs": 40,
        "apiserver_pods": 41,
        "apiserver_jobflows": 4,
    }
    # -1: the apiserver could not fetch the count. Not a figure.
    failed = APISERVER_METRICS.replace("} 40", "} -1")
    assert "apiserver_jobs" not in storesize.from_metrics(failed, None)
    # A cluster older than 1.34 has only the deprecated name.
    older = 'apiserver_storage_objects{resource="jobs.batch"} 12\n'
    assert storesize.from_metrics(older, None) == {"apiserver_jobs": 12}


def test_metric_value_tells_an_absent_gauge_from_zero() -> None:
    assert apicost.metric_value("a_total 0\n", "a_total") == 0.0
    assert apicost.metric_value("b_total 1\n", "a_total") is None
    assert apicost.metric_sum("b_total 1\n", "a_total") == 0.0
    assert apicost.metric_sum('a_total{x="1"} 2\na_total{x="2"} 3\n', "a_total") == 5.0


@pytest.fixture
def etcd_page() -> Iterator[str]:
    """A loopback server answering /metrics with ETCD_METRICS, as our etcd does."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = ETCD_METRICS.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_etcd_scrape_never_goes_through_a_proxy(etcd_page: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    for name in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{dead}")
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert storesize.scrape_etcd(etcd_page, timeout=5.0) == ETCD_METRICS


def test_a_page_cut_short_is_no_page() -> None:
    listener = socket.create_server(("127.0.0.1", 0))

    def answer_half() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\netcd_debugging_mvcc_keys_total 5")

    thread = threading.Thread(target=answer_half, daemon=True)
    thread.start()
    with listener:
        assert storesize.scrape_etcd(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=5.0) is None
    thread.join(timeout=5.0)


def _session(etcd_url: str | None, monkeypatch: pytest.MonkeyPatch) -> session.Session:
    monkeypatch.setattr(apicost, "scrape_apiserver", lambda _kubectl, _kubeconfig: APISERVER_METRICS)
    env = SimpleNamespace(
        kubectl=Path("kubectl"), kubeconfig=Path("kubeconfig"), audit=None, etcd_url=etcd_url,
        component_pids=dict,
    )  # fmt: skip
    controller = SimpleNamespace(alive=False, pid=0)
    return session.Session(
        env=cast("Any", env), kube=cast("Any", None), controller=cast("Any", controller),
        controller_settings=cast("Any", None), log_dir=Path("."), run_id="r",
    )  # fmt: skip


def test_a_snapshot_reads_the_store_from_both_pages_before_its_clocks(
    etcd_page: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    scraped: list[float] = []
    real = storesize.scrape_etcd

    def scrape(url: str | None, timeout: float = 10.0) -> str | None:
        page = real(url, timeout)
        scraped.append(time.monotonic())
        return page

    monkeypatch.setattr(storesize, "scrape_etcd", scrape)
    s = _session(etcd_page, monkeypatch)
    snap = asyncio.run(s.snapshot(store=True))
    assert snap.store == storesize.from_metrics(APISERVER_METRICS, ETCD_METRICS)
    assert {"apiserver_jobs", "etcd_keys"} <= snap.store.keys()
    assert scraped
    assert scraped[0] <= snap.mono  # the scrape is outside the window this snapshot opens
    # A snapshot that is not a part's end does not ask etcd.
    assert asyncio.run(s.snapshot()).store == {}
    assert len(scraped) == 1


def _snapshot(store: storesize.Figures) -> session.Snapshot:
    return session.Snapshot(0.0, 0.0, "", None, None, None, 0, None, {}, 0.0, store)


def test_a_part_ends_once_the_pods_of_deleted_jobs_are_gone_and_then_reads_the_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # FailedOnly deleted every Job; the garbage collector takes their pods over a few polls.
    fake = FakeKube([0], [5, 2, 0, 0])
    events: list[str] = []
    end = {**storesize.from_metrics(None, ETCD_METRICS), "etcd_keys": 5000}

    async def snapshot(controller: object = None, *, store: bool = False) -> session.Snapshot:
        events.append(f"snapshot store={store} after {len(fake.requests)} reads")
        return _snapshot(end)

    async def settle() -> float:
        events.append("settle")
        return 0.5

    fake_session = cast("session.Session", SimpleNamespace(kube=fake, snapshot=snapshot, settle=settle))
    before = _snapshot(storesize.from_metrics(None, ETCD_METRICS))
    after, out = asyncio.run(scenarios.close_part(fake_session, "n", before, zen=True))
    assert after.store == end
    # Three rounds of counts (5, 2, 0 pods) before the closing snapshot, then the store's own two.
    assert events == ["settle", "snapshot store=True after 6 reads"]
    assert out["settle_seconds"] == 0.5
    assert out["gc_wait_seconds"] >= 0
    assert "gc_unsettled" not in out
    assert out["store"]["namespace_jobs"] == 0
    assert out["store"]["namespace_pods"] == 0
    assert out["store"]["etcd_keys_added"] == -230
    # The baseline's part: no controller to settle, its Jobs keep their pods (nothing to wait for).
    kept = cast("session.Session", SimpleNamespace(kube=FakeKube([3], [3]), snapshot=snapshot, settle=settle))
    _, out = asyncio.run(scenarios.close_part(kept, "n", before, zen=False))
    assert "settle_seconds" not in out
    assert out["store"]["namespace_pods"] == 3
    # Pods that never go end the wait at its limit, and say so.
    _waited, settled = asyncio.run(storesize.wait_gc(_kube(FakeKube([0], [3])), "n", limit=0.0))
    assert not settled


def test_steps_count_from_the_flow_s_status_when_their_jobs_were_never_seen_complete() -> None:
    seen = Observer(cast("KubeClient", SimpleNamespace()), "n", watch_flows=True)
    flow = JobFlow.model_validate({
        "apiVersion": "workflow.kube-zen.io/v1alpha1", "kind": "JobFlow",
        "metadata": {"name": "f1", "namespace": "n"},
        "spec": {"steps": []},
        "status": {"phase": "Running", "steps": [
            {"name": "a", "phase": "Succeeded"}, {"name": "b", "phase": "Succeeded"},
            {"name": "c", "phase": "Running"},
        ]},
    })  # fmt: skip
    seen._on_flow(flow)
    assert seen.steps_done() == 2
    assert seen.completed == {}  # no latency is timed from a flow's status


def test_the_environment_hands_on_the_cluster_s_etcd_and_the_ports_name_etcd_s_client_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ports = Ports(etcd_client=2379, etcd_peer=2380, apiserver=6443, controller_manager=1, scheduler=2, kwok=3)
    assert ports.etcd_url == "http://127.0.0.1:2379"
    assert f"--listen-client-urls={ports.etcd_url}" in etcd_argv(Path("/bin"), tmp_path, ports)

    class FakeCluster:
        def __init__(self, *args: object, **kwargs: object) -> None:
            self.ports = ports
            self.pki = SimpleNamespace(ca=None)
            self.server, self.ca_cert, self.kubeconfig, self.bin_dir = "s", tmp_path, tmp_path, tmp_path
            self.startup_seconds = {"total": 1.0}

        def start(self) -> FakeCluster:
            return self

    monkeypatch.setattr(environment, "LocalCluster", FakeCluster)
    monkeypatch.setattr(environment, "issue_client_cert", lambda *a, **k: (tmp_path, tmp_path))
    monkeypatch.setattr(environment, "write_kubeconfig", lambda *a, **k: tmp_path)
    monkeypatch.setattr(environment, "find_kubectl", lambda *a: None)
    assert environment.Environment.local(tmp_path).etcd_url == "http://127.0.0.1:2379"


def test_the_results_file_names_the_retention_the_run_used() -> None:
    args = cli.parser().parse_args(["--job-retention", "FailedOnly"])
    config = cli.config_from(args, Path("out.json"))
    started = datetime.datetime.now(datetime.UTC)
    assert runner.meta(config, started)["job_retention"] == "FailedOnly"
    assert runner.meta(dataclasses.replace(config, job_retention=None), started)["job_retention"] is None
