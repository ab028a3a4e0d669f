"""What every scenario needs: the harness's client, the controller under test, and snapshots of the
counters (API requests three ways, CPU, memory) taken before and after a measured window."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zen_flow.config import Settings
from zen_flow.kube import KubeClient
from zen_flow.kube.jobflows import JOBFLOWS
from zen_flow_dev.bench import apicost, procstats, storesize
from zen_flow_dev.bench.environment import Environment
from zen_flow_dev.bench.procstats import ProcSample
from zen_flow_dev.bench.workloads import Workload, flow_manifest_for
from zen_flow_dev.testing.controller import ControllerProcess

_DEFAULTS = Settings()


@dataclass(frozen=True)
class ControllerSettings:
    """The controller's flags under test; the defaults are the controller's own."""

    workers: int = _DEFAULTS.workers
    qps: float = _DEFAULTS.qps
    burst: int = _DEFAULTS.burst
    event_qps: float = _DEFAULTS.event_qps
    event_burst: int = _DEFAULTS.event_burst
    env: tuple[tuple[str, str], ...] = ()
    """Extra environment of the controller process (e.g. ZEN_FLOW_* settings, PYTHONPATH)."""

    def args(self) -> list[str]:
        return [
            *("--workers", str(self.workers), "--qps", f"{self.qps:g}", "--burst", str(self.burst)),
            *("--event-qps", f"{self.event_qps:g}", "--event-burst", str(self.event_burst)),
        ]


@dataclass(frozen=True)
class Snapshot:
    wall: float
    mono: float
    controller_metrics: str
    apiserver: apicost.Tally | None
    # Watches the apiserver closed because their client read too slowly (all clients, all resources).
    terminated_watchers: float | None
    # Bytes of JobFlow watch events the apiserver sent (to every watcher): a status write stores and
    # sends the whole object, however little of it the patch changed.
    flow_watch_bytes: float | None
    audit_mark: int
    controller: ProcSample | None
    components_cpu: dict[str, float]
    harness_cpu: float
    store: storesize.Figures = field(default_factory=dict)
    """Objects the apiserver stores, etcd's keys and size (storesize.py); what could not be read is absent."""


@dataclass
class Session:
    env: Environment
    kube: KubeClient
    controller: ControllerProcess
    controller_settings: ControllerSettings
    log_dir: Path
    run_id: str
    step_timeout: float = 1.0
    """Seconds of timeout granted per step of a workload (plus two minutes)."""
    cluster_requests: bool = True
    delete_wait: float = 600.0
    """Seconds to wait for a finished run's namespace to be gone (0: do not wait)."""

    def timeout_for(self, workload: Workload) -> float:
        return 120.0 + self.step_timeout * workload.steps

    # --- counters -------------------------------------------------------------------------------------

    async def controller_metrics(self, controller: ControllerProcess | None = None) -> str:
        status, text = await asyncio.to_thread((controller or self.controller).get, "/metrics")
        return text if status == 200 else ""

    async def snapshot(self, controller: ControllerProcess | None = None, *, store: bool = False) -> Snapshot:
        """The counters now; with `store`, also the store's size (etcd's /metrics: read before the clocks
        and CPU counters, so its scrape is outside the window that opens here)."""
        proc = controller or self.controller
        etcd = await asyncio.to_thread(storesize.scrape_etcd, self.env.etcd_url) if store else None
        apiserver: apicost.Tally | None = None
        terminated: float | None = None
        watched: float | None = None
        text: str | None = None
        if self.cluster_requests and self.env.kubectl is not None:
            text = await asyncio.to_thread(apicost.scrape_apiserver, self.env.kubectl, self.env.kubeconfig)
            if text is not None:
                apiserver = apicost.apiserver_requests(text)
                terminated = apicost.metric_sum(text, "apiserver_terminated_watchers_total")
                watched = apicost.metric_sum(text, "apiserver_watch_events_sizes_sum", resource="jobflows")
        pids = {**self.env.component_pids()}
        if proc.alive:
            pids["zen-flow"] = proc.pid
        return Snapshot(
            wall=time.time(),
            mono=time.monotonic(),
            controller_metrics=await self.controller_metrics(proc) if proc.alive else "",
            apiserver=apiserver,
            terminated_watchers=terminated,
            flow_watch_bytes=watched,
            audit_mark=self.env.audit.mark() if self.env.audit else 0,
            controller=procstats.sample(proc.pid) if proc.alive else None,
            components_cpu=procstats.cpu_by_name(pids),
            harness_cpu=procstats.self_cpu_seconds(),
            store=storesize.from_metrics(text, etcd) if store else {},
        )

    async def settle(
        self, quiet: float = 1.0, limit: float = 30.0, controller: ControllerProcess | None = None
    ) -> float:
        """Until the controller's request counter stops moving for `quiet` seconds (at most `limit`):
        what it does after a flow finished (its last status write, its Events) belongs to the run."""
        started = time.monotonic()
        last: int | None = None
        while time.monotonic() - started < limit:
            current = apicost.total(apicost.controller_requests(await self.controller_metrics(controller)))
            if current == last:
                break
            last = current
            await asyncio.sleep(quiet)  # sampling a counter: there is no event to wait on
        return round(time.monotonic() - started, 2)

    # --- figures between two snapshots ----------------------------------------------------------------

    def api_figures(self, before: Snapshot, after: Snapshot, steps: int) -> dict[str, Any]:
        ctrl = apicost.delta(
            apicost.controller_requests(before.controller_metrics),
            apicost.controller_requests(after.controller_metrics),
        )

        def counter(name: str, **labels: str) -> float:
            return apicost.metric_sum(after.controller_metrics, name, **labels) - apicost.metric_sum(
                before.controller_metrics, name, **labels
            )

        out: dict[str, Any] = {
            "steps": steps,
            "controller_requests": apicost.total(ctrl),
            "controller_writes": apicost.writes(ctrl),
            "controller_requests_per_step": _per(apicost.total(ctrl), steps),
            "controller_writes_per_step": _per(apicost.writes(ctrl), steps),
            "controller_by_verb_resource": apicost.as_json(ctrl),
            "status_patches": {
                result: int(counter("zen_flow_status_patches_total", result=result))
                for result in ("written", "unchanged", "conflict")
            },
            "status_writes_per_step": _per(counter("zen_flow_status_patches_total", result="written"), steps),
            "controller_kb_sent_per_step": _per(counter("zen_flow_api_request_bytes_total") / 1024, steps),
            "status_kb_sent_per_step": _per(
                counter("zen_flow_api_request_bytes_total", resource="jobflows/status") / 1024, steps
            ),
            "controller_watches_closed_early": int(counter("zen_flow_informer_watch_closed_early_total")),
            # Flow events, and those that were our own status write recognised without decoding.
            "flow_events": int(counter("zen_flow_informer_events_total", resource="jobflows")),
            "flow_events_recognised": int(counter("zen_flow_informer_events_recognised_total")),
            "job_creates": int(counter("zen_flow_job_creates_total")),
            "reconciles": int(counter("zen_flow_reconcile_total")),
        }
        if self.env.audit is not None:
            audited = self.env.audit.count(before.audit_mark, before.wall, after.wall)
            out["audit_requests"] = apicost.total(audited)
            out["audit_writes_per_step"] = _per(apicost.writes(audited), steps)
            out["audit_requests_per_step"] = _per(apicost.total(audited), steps)
            out["audit_by_verb_resource"] = apicost.as_json(audited)
            out["controller_rate"] = self.env.audit.rate(
                before.audit_mark, before.wall, after.wall, self.controller_settings.qps
            )
            out["controller_request_latency_timeline"] = self.env.audit.latency_timeline(
                before.audit_mark, before.wall, after.wall
            )
        if before.apiserver is not None and after.apiserver is not None:
            cluster = apicost.delta(before.apiserver, after.apiserver)
            out.update(_cluster_figures(cluster, steps))
        if before.terminated_watchers is not None and after.terminated_watchers is not None:
            out["apiserver_terminated_watchers"] = int(after.terminated_watchers - before.terminated_watchers)
        if before.flow_watch_bytes is not None and after.flow_watch_bytes is not None:
            watched = (after.flow_watch_bytes - before.flow_watch_bytes) / 1024
            out["flow_watch_kb_per_step"] = _per(watched, steps)
        return out

    @staticmethod
    def resource_figures(before: Snapshot, after: Snapshot) -> dict[str, Any]:
        out: dict[str, Any] = {
            "components_cpu_seconds": procstats.cpu_delta(before.components_cpu, after.components_cpu),
            "harness_cpu_seconds": round(after.harness_cpu - before.harness_cpu, 2),
            "wall_seconds": round(after.mono - before.mono, 2),
        }
        if before.controller is not None and after.controller is not None:
            out["controller_cpu_seconds"] = round(
                after.controller.cpu_seconds - before.controller.cpu_seconds, 2
            )
            out["controller_peak_rss_mb"] = round(after.controller.peak_rss_mb, 1)
            out["controller_rss_mb"] = round(after.controller.rss_mb, 1)
        return out

    # --- creating flows -------------------------------------------------------------------------------

    async def create_flows(self, workload: Workload, namespace: str, concurrency: int = 50) -> None:
        """Every flow of the workload, as fast as the apiserver takes them (`concurrency` in flight)."""
        gate = asyncio.Semaphore(concurrency)
        path = JOBFLOWS.path(namespace)

        async def create(name: str) -> None:
            async with gate:
                await self.kube.request("POST", path, body=flow_manifest_for(workload, name, namespace))

        await asyncio.gather(*(create(name) for name in workload.flow_names()))


def _per(count: float, steps: int) -> float:
    return round(count / steps, 3) if steps else 0.0


def _cluster_figures(cluster: apicost.Tally, steps: int) -> dict[str, Any]:
    # The apiserver counts its own scrapes of /metrics and the harness's reads too; they are not per step.
    everyone: apicost.Tally = Counter({k: v for k, v in cluster.items() if k[1] != ""})
    return {
        "cluster_requests_per_step": _per(apicost.total(everyone), steps),
        "cluster_writes_per_step": _per(apicost.writes(everyone), steps),
        "cluster_writes_by_verb_resource_per_step": {
            key: value
            for key, value in apicost.per_step(everyone, steps).items()
            if key.split(" ")[0] in ("create", "update", "patch", "apply", "delete") and value >= 0.01
        },
    }
