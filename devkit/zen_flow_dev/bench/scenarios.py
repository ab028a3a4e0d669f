"""One measured run each: a workload through zen-flow or the baseline, flows that only wait, a big cache.

Every function returns a JSON-ready dict of figures and never raises for a run that went wrong (a
timeout, a failed Job): it reports `error` and whatever it measured, so one bad scenario does not lose
the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Literal

from zen_flow_dev.bench import apicost, procstats, storesize
from zen_flow_dev.bench.baseline import BaselineDriver
from zen_flow_dev.bench.observer import Observer
from zen_flow_dev.bench.session import Session, Snapshot
from zen_flow_dev.bench.stats import latencies_after, latency_timeline, start_end, summarize, transitions
from zen_flow_dev.bench.workloads import Workload
from zen_flow_dev.testing.controller import ControllerProcess

Engine = Literal["zen-flow", "baseline"]


async def measure_flows(
    session: Session, workload: Workload, engine: Engine, namespace: str
) -> dict[str, Any]:
    """Create every flow at once; time each step transition and the whole run, count API requests."""
    flows = workload.flow_names()
    result: dict[str, Any] = {
        "engine": engine,
        "namespace": namespace,
        "flows": len(flows),
        "steps": workload.steps,
    }
    zen = engine == "zen-flow"
    async with (
        Observer(session.kube, namespace, watch_flows=zen) as seen,
        contextlib.AsyncExitStack() as stack,
    ):
        baseline: BaselineDriver | None = None
        if not zen:
            driver = await BaselineDriver.connect(session.env.kubeconfig, workload, namespace)
            baseline = await stack.enter_async_context(driver)
        procstats.reset_peak(session.controller.pid)
        before = await session.snapshot(store=True)
        started = time.monotonic()
        if baseline is not None:
            await baseline.start()
        else:
            await session.create_flows(workload, namespace)
        result["create_seconds"] = round(time.monotonic() - started, 2)

        def finished() -> bool:
            if seen.failed or (baseline is not None and baseline.errors):
                return True
            return seen.steps_done() >= workload.steps and (not zen or len(seen.flow_done) >= len(flows))

        try:
            await seen.wait_for(finished, session.timeout_for(workload), f"{workload.name} on {engine}")
        except TimeoutError as exc:
            result["error"] = str(exc)
        after, closing = await close_part(session, namespace, before, zen=zen)
        result.update(closing)
        if seen.failed:
            result["error"] = f"{len(seen.failed)} Jobs failed, e.g. {sorted(seen.failed)[:3]}"
        if baseline is not None and baseline.errors:
            result["error"] = f"baseline: {baseline.errors[:3]}"

    result["observer_watches_closed_early"] = seen.closed_early
    # Seconds into the run: a latency spike there may be the harness seeing late, not the engine.
    result["observer_resumed_at"] = [round(t - started, 1) for t in seen.resumed_at]
    observed = transitions(workload.dag, flows, seen.created, seen.completed)
    latencies = [latency for _, latency in observed]
    completed = seen.steps_done()
    last_complete = max(seen.completed.values(), default=started)
    makespan = last_complete - started
    if (began := start_end(workload.dag, flows, seen.created)) is not None:
        # Every flow's first Job seen: the creation burst is over. The baseline creates its first Jobs
        # itself in about a second, before any Job completes; an engine that starts flows more slowly
        # has transitions inside its burst, on a saturated apiserver (docs/BENCHMARKS.md, issue 15 item 4).
        result["start_seconds"] = round(began - started, 2)
        result["transition_latency_after_start_ms"] = summarize(latencies_after(observed, began)).as_dict()
    result.update(
        steps_completed=completed,
        duplicate_jobs=len(seen.duplicates()),
        transition_latency_ms=summarize(latencies).as_dict(),
        # Every sample, for the distribution charts (charts.py): a few thousand numbers at most.
        transition_latency_samples_ms=sorted(round(t * 1000, 1) for t in latencies),
        # ... and over time, per second of the run: [second, transitions, p50 ms, max ms].
        transition_latency_timeline=latency_timeline(observed, started),
        # Job seen created -> seen Complete: the cluster's share (scheduler, kwok, Job controller).
        job_run_ms=summarize(
            [t - seen.created[k] for k, t in seen.completed.items() if k in seen.created]
        ).as_dict(),
        makespan_seconds=round(makespan, 2),
        steps_per_second=round(completed / makespan, 2) if makespan > 0 else 0.0,
    )
    if zen:
        succeeded = sum(1 for phase, _ in seen.flow_done.values() if phase == "Succeeded")
        last_done = max((t for _, t in seen.flow_done.values()), default=started)
        result["flows_succeeded"] = succeeded
        result["drain_seconds"] = round(last_done - started, 2)
        result["api"] = session.api_figures(before, after, completed)
    else:
        result["drain_seconds"] = round(makespan, 2)
        if before.apiserver is not None and after.apiserver is not None:
            cluster = session.api_figures(before, after, completed)
            result["api"] = {
                k: v
                for k, v in cluster.items()
                if k.startswith("cluster_") or k == "apiserver_terminated_watchers"
            }
    result["resources"] = session.resource_figures(before, after)
    return result


async def close_part(
    session: Session, namespace: str, before: Snapshot, *, zen: bool
) -> tuple[Snapshot, dict[str, Any]]:
    """The end of a part once its flows are done: what the cluster still does for them, the closing
    snapshot, then the store at the end (`store`)."""
    out: dict[str, Any] = {}
    if zen:
        out["settle_seconds"] = await session.settle()
    # Jobs jobRetention deleted leave their pods to the garbage collector and kwok: their work is the
    # part's too, on either side of an A/B (two one-item LISTs when nothing is left to do).
    out["gc_wait_seconds"], settled = await storesize.wait_gc(session.kube, namespace)
    if not settled:
        out["gc_unsettled"] = True
    after = await session.snapshot(store=True)
    # After the closing snapshot: these two reads are not the part's requests.
    counts = await storesize.namespace_counts(session.kube, namespace)
    out["store"] = storesize.part(before.store, after.store, counts)
    return after, out


async def measure_waiting(
    session: Session, workload: Workload, namespace: str, quiet_seconds: float
) -> dict[str, Any]:
    """Flows whose first step runs for an hour: once their pods run and the controller is idle, count
    its API requests over a quiet window. Nothing changes, so the target is zero."""
    result: dict[str, Any] = {"engine": "zen-flow", "namespace": namespace, "flows": workload.flows}
    roots = [(flow, root) for flow in workload.flow_names() for root in workload.dag.roots]
    async with Observer(session.kube, namespace, watch_flows=True) as seen:
        started = time.monotonic()
        await session.create_flows(workload, namespace)
        try:
            await seen.wait_for(
                lambda: all(key in seen.running for key in roots),
                session.timeout_for(workload),
                "pods running",
            )
        except TimeoutError as exc:
            result["error"] = str(exc)
            return result
        result["all_running_seconds"] = round(time.monotonic() - started, 2)
        result["settle_seconds"] = await session.settle(quiet=2.0)
        before = await session.snapshot()
        await asyncio.sleep(quiet_seconds)  # the measurement itself: a window in which nothing happens
        after = await session.snapshot()
    api = session.api_figures(before, after, 0)
    result["quiet_window_seconds"] = round(after.mono - before.mono, 2)
    result["window"] = {
        key: api[key]
        for key in ("controller_requests", "controller_by_verb_resource", "reconciles", "status_patches",
                    "audit_requests", "audit_by_verb_resource")
        if key in api
    }  # fmt: skip
    result["resources"] = session.resource_figures(before, after)
    return result


async def measure_cache(
    session: Session, workload: Workload, namespace: str, quiet_seconds: float
) -> dict[str, Any]:
    """Fill the controller's cache with `workload.steps` suspended Jobs (no pods) of `workload.flows`
    waiting flows; then its memory, a quiet window at that scale, and a freshly started second controller
    that syncs the same cache from scratch (its start-up time, memory and API requests).

    Stops the session's controller first for the fresh one (two active controllers would both reconcile):
    the cache scenario always runs last.
    """
    result: dict[str, Any] = {
        "engine": "zen-flow",
        "namespace": namespace,
        "flows": workload.flows,
        "jobs": workload.steps,
    }
    async with Observer(session.kube, namespace, watch_flows=False) as seen:
        procstats.reset_peak(session.controller.pid)
        before = await session.snapshot()
        started = time.monotonic()
        await session.create_flows(workload, namespace)
        try:
            await seen.wait_for(
                lambda: len(seen.created) >= workload.steps, session.timeout_for(workload), "Jobs"
            )
        except TimeoutError as exc:
            result["error"] = str(exc)
        result["jobs_seen"] = len(seen.created)
        result["fill_seconds"] = round(time.monotonic() - started, 2)
        result["settle_seconds"] = await session.settle(quiet=2.0)
        filled = await session.snapshot()
        await asyncio.sleep(quiet_seconds)  # the measurement itself: a window in which nothing happens
        quiet = await session.snapshot()
    text = filled.controller_metrics
    result["cached_jobs"] = int(apicost.metric_sum(text, "zen_flow_informer_cached_objects", resource="jobs"))
    result["cached_flows"] = int(
        apicost.metric_sum(text, "zen_flow_informer_cached_objects", resource="jobflows")
    )
    result["api_fill"] = session.api_figures(before, filled, workload.steps)
    result["resources"] = session.resource_figures(before, filled)
    window = session.api_figures(filled, quiet, 0)
    result["quiet_window"] = {
        "seconds": round(quiet.mono - filled.mono, 2),
        "controller_requests": window["controller_requests"],
        "audit_requests": window.get("audit_requests"),
        "by_verb_resource": window.get("audit_by_verb_resource", window["controller_by_verb_resource"]),
    }
    session.controller.stop()
    result["fresh_controller"] = await _fresh_controller(session, namespace)
    return result


async def _fresh_controller(session: Session, namespace: str) -> dict[str, Any]:
    """A new controller process for the filled namespace: LIST everything, reconcile every flow once."""
    log = session.log_dir / "controller-fresh.log"
    proc = ControllerProcess(
        session.env.controller_kubeconfig,
        log,
        namespaces=[namespace],
        extra_args=session.controller_settings.args(),
        env=dict(session.controller_settings.env),
    )
    out: dict[str, Any] = {}
    audit_mark = session.env.audit.mark() if session.env.audit else 0
    wall = time.time()
    started = time.monotonic()
    proc.start()
    try:
        await asyncio.to_thread(proc.wait_ready, 600.0)
        out["ready_seconds"] = round(time.monotonic() - started, 2)
        out["settle_seconds"] = await session.settle(quiet=2.0, limit=300.0, controller=proc)
        after = await session.snapshot(controller=proc)
        if after.controller is not None:
            out["cpu_seconds"] = round(after.controller.cpu_seconds, 2)
            out["rss_mb"] = round(after.controller.rss_mb, 1)
            out["peak_rss_mb"] = round(after.controller.peak_rss_mb, 1)
        requests = apicost.controller_requests(after.controller_metrics)
        out["controller_by_verb_resource"] = apicost.as_json(requests)
        out["status_patches"] = {
            result: int(
                apicost.metric_sum(after.controller_metrics, "zen_flow_status_patches_total", result=result)
            )
            for result in ("written", "unchanged", "conflict")
        }
        if session.env.audit is not None:
            out["audit_by_verb_resource"] = apicost.as_json(
                session.env.audit.count(audit_mark, wall, after.wall)
            )
    except (TimeoutError, RuntimeError) as exc:
        out["error"] = str(exc)[:2000]
    finally:
        proc.stop()
    return out
