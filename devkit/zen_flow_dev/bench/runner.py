"""One benchmark run, start to finish: admission timings, the cluster, the controller, every workload.

Order: admission first (nothing else running), then the cluster starts, the CRD and every namespace are
created, ONE controller process starts watching the zen-flow namespaces, and each workload runs on
zen-flow then on the baseline, each in its own namespace, deleted (and waited for) before the next run
so runs do not overlap. The cache scenario runs last: it replaces the controller at its end.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zen_flow import __version__
from zen_flow.kube import ClientOptions, KubeClient, load_config
from zen_flow.kube.jobflows import JOBFLOWS
from zen_flow.validation import BUILD as VALIDATOR_BUILD
from zen_flow_dev.bench import admission, cachesize, clirender, procstats
from zen_flow_dev.bench.environment import (
    Environment,
    create_namespace,
    delete_namespace,
    install_crd,
    load_crd,
    machine,
)
from zen_flow_dev.bench.scenarios import Engine, measure_cache, measure_flows, measure_waiting
from zen_flow_dev.bench.session import ControllerSettings, Session
from zen_flow_dev.bench.stats import ratio
from zen_flow_dev.bench.workloads import Workload, build_workloads, chain, flow_manifest_for
from zen_flow_dev.cluster import leftovers
from zen_flow_dev.testing.controller import ControllerProcess

HARNESS_USER_AGENT = "zen-flow-bench"
NAMESPACE_DELETE_WAIT = 600.0


@dataclass(frozen=True)
class BenchConfig:
    preset: str
    sizes: Mapping[str, int]
    only: frozenset[str] | None
    kubeconfig: Path | None
    out: Path
    controller: ControllerSettings
    admission_budget: float
    skip_admission: bool = False
    admission_only: bool = False  # no cluster: only figure 6
    step_timeout: float = 1.0
    py_spy: bool = False
    """Profile the controller for the whole run with py-spy (collapsed stacks in the logs directory)."""
    apiserver_args: tuple[str, ...] = ()
    install_crd: bool = True
    wait_deletes: bool = True
    """Wait for each run's namespace to be gone before the next run (the quick preset does not: its runs
    then overlap the namespace controller's clean-up of the previous one)."""
    repeat: int = 1
    """Runs of each workload that has a baseline; the targets are judged on their median."""
    job_retention: str | None = None
    """`executionPolicy.jobRetention` of every flow zen-flow runs (None: the field left out)."""


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def meta(config: BenchConfig, started: datetime.datetime) -> dict[str, Any]:
    """What the results file says about the run: when, what was built, how it was configured, where."""
    return {
        "date": started.isoformat(timespec="seconds"),
        "commit": git_commit(),
        "zen_flow_version": __version__,
        "admission_rules": VALIDATOR_BUILD,
        "preset": config.preset,
        "sizes": dict(config.sizes),
        "controller": {"workers": config.controller.workers, "qps": config.controller.qps,
                       "burst": config.controller.burst, "event_qps": config.controller.event_qps,
                       "event_burst": config.controller.event_burst, "env": dict(config.controller.env)},
        "job_retention": config.job_retention,
        "machine": machine(),
        "command": " ".join(sys.argv),
    }  # fmt: skip


def run(config: BenchConfig) -> dict[str, Any]:
    started = datetime.datetime.now(datetime.UTC)
    results: dict[str, Any] = {"meta": meta(config, started)}
    if not config.skip_admission:
        progress("admission: validator and webhook timings")
        results["admission"] = _admission(config.admission_budget)
    progress("cached objects: bytes per Job and per flow (tracemalloc)")
    results["cache_objects"] = cachesize.measure()
    if config.admission_only:
        results["workloads"] = []
        return results
    log_dir = config.out.parent / (config.out.stem + "-logs")
    log_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(
        tempfile.mkdtemp(prefix="zenflow-bench-", dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else None)
    )
    leftovers.claim(workdir)  # a killed run's directory is swept by the next cluster start
    try:
        if config.kubeconfig is not None:
            env = Environment.existing(config.kubeconfig)
        else:
            progress("starting the local cluster (full profile, with the controller's audit log)")
            env = Environment.local(workdir, config.apiserver_args)
        try:
            results["cluster"] = env.describe()
            results["workloads"], results["controller_idle"] = asyncio.run(_workloads(env, config, log_dir))
        finally:
            env.save_logs(log_dir / "cluster")
            env.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["meta"]["duration_seconds"] = round(
        (datetime.datetime.now(datetime.UTC) - started).total_seconds(), 1
    )
    results["meta"]["logs"] = str(log_dir)
    return results


def _admission(budget: float) -> dict[str, Any]:
    out: dict[str, Any] = {"validator": admission.time_validator(budget), "cli": clirender.time_get(budget)}
    try:
        out["webhook"] = admission.time_webhook(budget)
    except Exception as exc:  # the webhook is optional for the rest of the run
        out["webhook_error"] = repr(exc)
    return out


async def _workloads(
    env: Environment, config: BenchConfig, log_dir: Path
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    options = ClientOptions(qps=5000, burst=5000, user_agent=HARNESS_USER_AGENT, max_concurrent_requests=200)
    kube = KubeClient(await load_config(str(env.kubeconfig)), options)
    run_id = secrets.token_hex(3)
    workloads = build_workloads(config.sizes, config.only, config.job_retention)
    # Every run gets namespaces of its own, known to the controller from its start.
    rounds = {w.name: config.repeat if w.has_baseline else 1 for w in workloads}
    namespaces = {
        (w.name, i): f"zfb-{run_id}-{w.name}" + (f"-{i + 1}" if rounds[w.name] > 1 else "")
        for w in workloads
        for i in range(rounds[w.name])
    }
    with_baseline = {w.name for w in workloads if w.has_baseline}
    base_namespaces = {key: f"{ns}-base" for key, ns in namespaces.items() if key[0] in with_baseline}
    controller = ControllerProcess(
        env.controller_kubeconfig,
        log_dir / "controller.log",
        namespaces=list(namespaces.values()),
        extra_args=config.controller.args(),
        env=dict(config.controller.env),
    )
    created: list[str] = []
    try:
        if config.install_crd:
            await install_crd(kube, load_crd())
        await _warm_up(kube, f"zfb-{run_id}-warmup", run_id)
        for name in [*namespaces.values(), *base_namespaces.values()]:
            await create_namespace(kube, name, run_id)
            created.append(name)
        progress(f"starting the controller ({' '.join(config.controller.args())}), namespaces zfb-{run_id}-*")
        controller.start()
        await asyncio.to_thread(controller.wait_ready, 60.0)
        if config.py_spy:
            _attach_py_spy(controller.pid, log_dir / "controller.py-spy.txt")
        idle = procstats.sample(controller.pid)
        idle_figures = {
            "rss_mb": idle.rss_mb if idle else None,
            "cpu_seconds": idle.cpu_seconds if idle else None,
        }
        session = Session(
            env,
            kube,
            controller,
            config.controller,
            log_dir,
            run_id,
            config.step_timeout,
            delete_wait=NAMESPACE_DELETE_WAIT if config.wait_deletes else 0.0,
        )
        quiet = float(config.sizes.get("quiet_seconds", 10))
        results = []
        for workload in workloads:
            for i in range(rounds[workload.name]):
                key = (workload.name, i)
                which = f" (run {i + 1} of {rounds[workload.name]})" if rounds[workload.name] > 1 else ""
                progress(f"{workload.name}{which}: {workload.title} ({workload.steps} steps)")
                # Every other run measures the baseline first: a cluster that grows cheaper (or dearer)
                # over a run's minutes then favours neither engine in the median.
                entry = await _one(
                    session,
                    workload,
                    namespaces[key],
                    base_namespaces.get(key),
                    quiet,
                    baseline_first=i % 2 == 1,
                )
                if rounds[workload.name] > 1:
                    entry["repeat"] = i + 1
                results.append(entry)
                for ns in [namespaces[key], base_namespaces.get(key)]:
                    if ns is not None:
                        await delete_namespace(kube, ns, wait=session.delete_wait)
        return results, idle_figures
    finally:
        controller.stop()
        for name in created:
            await delete_namespace(kube, name)
        await kube.close()


def _attach_py_spy(pid: int, output: Path) -> None:
    """py-spy samples the controller until it exits, then writes collapsed stacks (flamegraph.pl and
    speedscope read them). Not waited for: it ends with the controller."""
    binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    argv = [binary, "record", "--pid", str(pid), "--rate", "200", "--format", "raw", "--output", str(output)]
    subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    progress(f"py-spy is sampling the controller into {output}")


async def _warm_up(kube: KubeClient, namespace: str, run_id: str) -> None:
    """The apiserver builds a new CRD's storage on its first request (about 2 s here): pay that before
    the first measured run, with one JobFlow in a namespace the controller does not watch."""
    await create_namespace(kube, namespace, run_id)
    manifest = flow_manifest_for(Workload("warmup", "", "flows", chain(1), 1), "warmup", namespace)
    await kube.request("POST", JOBFLOWS.path(namespace), body=manifest)
    # Waited for: its clean-up would otherwise count in the first run's cluster-wide requests.
    await delete_namespace(kube, namespace, wait=120.0)


async def _one(
    session: Session,
    workload: Workload,
    namespace: str,
    base_namespace: str | None,
    quiet: float,
    *,
    baseline_first: bool = False,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "workload": workload.name,
        "title": workload.title,
        "kind": workload.kind,
        "flows": workload.flows,
        "steps_per_flow": workload.dag.size,
        "steps": workload.steps,
        "edges": workload.dag.edges * workload.flows,
    }
    if workload.kind == "waiting":
        entry["zen-flow"] = await measure_waiting(session, workload, namespace, quiet)
        return entry
    if workload.kind == "cache":
        entry["zen-flow"] = await measure_cache(session, workload, namespace, quiet)
        return entry
    assert base_namespace is not None
    parts: list[tuple[Engine, str]] = [("zen-flow", namespace), ("baseline", base_namespace)]
    if baseline_first:
        parts.reverse()
        entry["baseline_first"] = True
    for engine, ns in parts:
        entry[engine] = await measure_flows(session, workload, engine, ns)
        _summary_line(engine, entry[engine])
        if engine == parts[0][0]:  # gone before the other part starts; the caller deletes the second
            started = time.monotonic()
            if await delete_namespace(session.kube, ns, wait=session.delete_wait):
                progress(f"  namespace deleted in {time.monotonic() - started:.1f} s")
    entry["comparison"] = compare(entry["zen-flow"], entry["baseline"])
    return entry


def _summary_line(engine: str, run: Mapping[str, Any]) -> None:
    lat = run["transition_latency_ms"]
    error = f" ERROR {run['error'][:200]}" if run.get("error") else ""
    progress(
        f"  {engine}: {run['steps_completed']}/{run['steps']} steps in {run['makespan_seconds']} s "
        f"({run['steps_per_second']}/s), transition p50 {lat['p50']} ms p99 {lat['p99']} ms{error}"
    )


def compare(zen: Mapping[str, Any], base: Mapping[str, Any]) -> dict[str, Any]:
    """zen-flow against the baseline: ratios (the headline) and zen-flow's own share of the latency."""
    lz, lb = zen["transition_latency_ms"], base["transition_latency_ms"]
    out: dict[str, Any] = {
        "throughput_ratio": ratio(zen["steps_per_second"], base["steps_per_second"]),
        "makespan_ratio": ratio(zen["makespan_seconds"], base["makespan_seconds"]),
        "drain_ratio": ratio(zen["drain_seconds"], base["drain_seconds"]),
    }
    if lz["n"] and lb["n"]:
        for q in ("p50", "p90", "p99"):
            out[f"latency_{q}_ratio"] = ratio(lz[q], lb[q])
            out[f"own_share_{q}_ms"] = round(lz[q] - lb[q], 1)
    return out


def git_commit() -> str:
    """The short commit, with "+dirty" for local changes; or "uncommitted working tree"."""

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, check=False)

    try:
        head = git("rev-parse", "--short", "HEAD")
        if head.returncode != 0:
            return "uncommitted working tree"
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except OSError:
        return "unknown (no git)"
