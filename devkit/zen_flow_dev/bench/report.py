"""The run's results as text tables (stdout) and the targets of issue 5, measured against each figure.

Targets are reported, never asserted: a missed one is a finding to explain, not a failed build.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

CACHE_TARGETS = ((100_000, 300.0), (20_000, 100.0))
"""(cached Jobs, controller RSS MB) of issue 15; a smaller cache is projected to the smaller point."""
MIN_JOBS_TO_PROJECT = 2_000
"""Below this, the RSS growth over the idle process is within allocator noise."""
REQUESTS_PER_STEP = 2.5
"""Issue 15, item 2: the controller's requests per step, Events included (on `many`)."""
APISERVER_CPU_RATIO = 1.3
"""Issue 15, item 2: the apiserver's CPU in zen-flow's part over the baseline's (on `many`)."""
LATENCY_RATIO = 1.2
"""Issue 15, items 1 and 4: transition p99 on `wide` and `many-large` over the baseline's."""


def write_json(results: Mapping[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in cells
    ]
    return "\n".join(out)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def run_label(w: Mapping[str, Any]) -> str:
    """A workload's name, with its run number when it ran more than once (`--repeat`)."""
    return f"{w['workload']} #{w['repeat']}" if w.get("repeat") else str(w["workload"])


def flow_rows(workloads: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for w in workloads:
        if w["kind"] not in ("flows", "drain"):
            continue
        for engine in ("zen-flow", "baseline"):
            r = w.get(engine)
            if not r:
                continue
            lat = r["transition_latency_ms"]
            api = r.get("api", {})
            res = r.get("resources", {})
            name = run_label(w) if engine == "zen-flow" else ""
            rows.append([
                name, engine, r["steps_completed"], lat["n"], lat["p50"],
                lat["p90"], lat["p99"], lat["max"], r["steps_per_second"], r["drain_seconds"],
                api.get("controller_requests_per_step") if engine == "zen-flow" else None,
                api.get("status_writes_per_step") if engine == "zen-flow" else None,
                api.get("cluster_writes_per_step"),
                res.get("controller_cpu_seconds") if engine == "zen-flow" else None,
                res.get("controller_peak_rss_mb") if engine == "zen-flow" else None,
                "ERROR" if r.get("error") else "",
            ])  # fmt: skip
        cmp = w.get("comparison")
        if cmp:
            rows.append([
                "", "zf/base", None, None, cmp.get("latency_p50_ratio"), cmp.get("latency_p90_ratio"),
                cmp.get("latency_p99_ratio"), None, cmp.get("throughput_ratio"), cmp.get("drain_ratio"),
                None, None, None, None, None, "",
            ])  # fmt: skip
    return rows


FLOW_HEADERS = (
    "workload", "engine", "steps", "edges", "p50 ms", "p90 ms", "p99 ms", "max ms", "steps/s", "drain s",
    "ctrl req/step", "status w/step", "cluster w/step", "ctrl cpu s", "ctrl peak MB", "",
)  # fmt: skip


GROWTH_HEADERS = (
    "workload", "steps", "ctrl cpu ms", "ctrl req", "status w", "KB sent", "status KB sent",
    "flow watch KB", "p50 ms", "p99 ms",
)  # fmt: skip


def growth_rows(workloads: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    """The `length-*` workloads side by side, every figure per step: is a long flow's step dearer?"""
    rows: list[list[Any]] = []
    for w in workloads:
        r = w.get("zen-flow") or {}
        if not w["workload"].startswith("length-") or not r.get("steps_completed"):
            continue
        api, lat = r.get("api", {}), r["transition_latency_ms"]
        cpu = r.get("resources", {}).get("controller_cpu_seconds")
        per_step_cpu = round(cpu * 1000 / r["steps_completed"], 2) if cpu is not None else None
        rows.append([
            w["workload"], r["steps_completed"], per_step_cpu, api.get("controller_requests_per_step"),
            api.get("status_writes_per_step"), api.get("controller_kb_sent_per_step"),
            api.get("status_kb_sent_per_step"), api.get("flow_watch_kb_per_step"), lat["p50"], lat["p99"],
        ])  # fmt: skip
    return rows


def targets(results: Mapping[str, Any]) -> list[list[Any]]:
    """[target, measured, verdict] for each target of issues 5 and 15 that this run measured."""
    rows: list[list[Any]] = []
    by_name = {w["workload"]: w for w in results.get("workloads", [])}
    runs: dict[str, list[Mapping[str, Any]]] = {}
    for w in results.get("workloads", []):
        runs.setdefault(w["workload"], []).append(w)
    if "many" in runs:
        rows.extend(_over_runs(runs["many"], _own_share_rows))
        rows.extend(_over_runs(runs["many"], _api_cost_rows))
    for name in ("wide", "many-large"):
        if name in runs:
            rows.extend(_over_runs(runs[name], _latency_rows))
    for each in runs.values():
        rows.extend(_over_runs(each, _throughput_rows))
    writes = [
        (n, w["zen-flow"]["api"]["status_writes_per_step"])
        for n, w in by_name.items()
        if w["kind"] in ("flows", "drain") and "api" in w.get("zen-flow", {})
    ]
    if writes:
        worst = max(writes, key=lambda x: x[1])
        rows.append(
            [
                "<= 2 status writes per step (worst workload)",
                f"{worst[1]} ({worst[0]})",
                _verdict(worst[1] <= 2),
            ]
        )
    waiting = by_name.get("waiting", {}).get("zen-flow", {}).get("window")
    if waiting is not None:
        n = waiting.get("audit_requests", waiting["controller_requests"])
        rows.append(
            [
                f"zero API calls for waiting flows ({by_name['waiting']['flows']} flows)",
                f"{n} requests",
                _verdict(n == 0),
            ]
        )
    cache = by_name.get("cache", {}).get("zen-flow")
    if cache and cache.get("fresh_controller", {}).get("rss_mb"):
        jobs = cache.get("cached_jobs") or cache["jobs"]
        fresh = cache["fresh_controller"]["rss_mb"]
        running = cache.get("resources", {}).get("controller_rss_mb") or 0.0
        idle = results.get("controller_idle", {}).get("rss_mb") or 0.0
        target_jobs, limit = next(((n, mb) for n, mb in CACHE_TARGETS if jobs >= n), CACHE_TARGETS[-1])
        label = f"RSS <= {limit:.0f} MB at {target_jobs} cached Jobs"
        if jobs >= target_jobs:
            # The larger of the controller that filled its cache through watch events and a fresh one
            # that listed it: both hold the same objects, reached differently.
            rss = max(fresh, running)
            rows.append([label, f"{rss:.0f} MB (measured, {jobs} Jobs)", _verdict(rss <= limit)])
        elif jobs < MIN_JOBS_TO_PROJECT:
            rows.append([label, f"{fresh:.0f} MB at {jobs} Jobs (too few to project)", "-"])
        else:
            # Only the fresh controller scales with the cache alone: the running one also holds what the
            # fill left (connection buffers, allocator slack), which does not grow with the cache, so a
            # linear projection of it overstates (measured: 90 MB at 4,000 Jobs, 135 MB at 20,000).
            projected = idle + (fresh - idle) * target_jobs / jobs
            rows.append(
                [
                    label,
                    f"{projected:.0f} MB (linear from a fresh {fresh:.0f} MB at {jobs} Jobs;"
                    f" measure {target_jobs})",
                    _verdict(projected <= limit),
                ]
            )
    for row in results.get("admission", {}).get("webhook", []):
        if row["steps"] == 500 and row["path"].endswith("validate-jobflow CREATE"):
            lat = row["latency_ms"]
            verdict = "met" if lat["p99"] < 50 else "p50 met, p99 MISSED" if lat["p50"] < 50 else "MISSED"
            rows.append(
                [
                    f"500-step flow admitted < 50 ms (webhook validate, {row['shape']}, p50/p99)",
                    f"{lat['p50']} / {lat['p99']} ms",
                    verdict,
                ]
            )
    return rows  # fmt: skip


class Row(NamedTuple):
    """A target judged on one run: `value <= limit` meets it (`value >= limit` when `at_least`)."""

    target: str
    measured: str
    value: float
    limit: float
    at_least: bool = False

    def met(self, value: float | None = None) -> bool:
        v = self.value if value is None else value
        return v >= self.limit if self.at_least else v <= self.limit


def _over_runs(
    runs: Sequence[Mapping[str, Any]], judge: Callable[[Mapping[str, Any]], list[Row]]
) -> list[list[Any]]:
    """`judge`'s rows for one run; for several runs of a workload (`--repeat`), each run's row (its target
    marked #n) and then the median of their values, on which the target is judged."""
    judged = [judge(w) for w in runs]
    if len(runs) == 1:
        return [[r.target, r.measured, _verdict(r.met())] for r in judged[0]]
    rows: list[list[Any]] = []
    by_target: dict[str, list[Row]] = {}
    for w, run_rows in zip(runs, judged, strict=True):
        for r in run_rows:
            rows.append([f"{r.target} #{w.get('repeat', '?')}", r.measured, _verdict(r.met())])
            by_target.setdefault(r.target, []).append(r)
    for target, each in by_target.items():
        middle = statistics.median(r.value for r in each)
        values = ", ".join(f"{r.value:.2f}" for r in each)
        rows.append([f"{target}, median of {len(each)} runs", f"{middle:.2f} ({values})",
                     _verdict(each[0].met(middle))])  # fmt: skip
    return rows


def _own_share_rows(many: Mapping[str, Any]) -> list[Row]:
    """Issue 5 on `many`: what zen-flow adds to a transition, p50 and p99 over the baseline's."""
    cmp = many.get("comparison", {})
    if cmp.get("own_share_p50_ms") is None:
        return []
    flows = many["flows"]
    return [
        Row(
            f"own share of transition latency {q} <= {limit} ms ({flows} flows)",
            f"{cmp[key]} ms",
            cmp[key],
            limit,
        )
        for q, key, limit in (("p50", "own_share_p50_ms", 50), ("p99", "own_share_p99_ms", 250))
    ]


def _throughput_rows(w: Mapping[str, Any]) -> list[Row]:
    ratio_ = w.get("comparison", {}).get("throughput_ratio")
    if ratio_ is None:
        return []
    return [Row(f"throughput >= 0.8 x baseline ({w['workload']})", f"{ratio_} x", ratio_, 0.8, at_least=True)]


def _api_cost_rows(many: Mapping[str, Any]) -> list[Row]:
    """Item 2 of issue 15 on `many`: requests per step, and the apiserver's CPU against the baseline's.

    The two parts run one after the other, and this machine's speed moves between them (neighbours on
    the host): in one run every component of the baseline's part took 12-19 % less CPU. So beside the
    ratio stands that of the scheduler and kwok together, which do the same work in both parts (the
    same pods on the same node; neither sees a JobFlow, unlike the controller-manager, whose garbage
    collector follows them), and the ratio over it; the verdict is on the ratio as measured."""
    api = many.get("zen-flow", {}).get("api")
    ours = many.get("zen-flow", {}).get("resources", {}).get("components_cpu_seconds", {})
    theirs = many.get("baseline", {}).get("resources", {}).get("components_cpu_seconds", {})
    if not api:
        return []
    per_step = api.get("audit_requests_per_step", api["controller_requests_per_step"])
    rows = [
        Row(
            f"<= {REQUESTS_PER_STEP} requests per step, Events included (many)",
            f"{per_step}",
            per_step,
            REQUESTS_PER_STEP,
        )
    ]
    if ours.get("kube-apiserver") and theirs.get("kube-apiserver"):
        per_thousand = 1000 / api["steps"]
        ratio_ = ours["kube-apiserver"] / theirs["kube-apiserver"]
        ours_s, theirs_s = ours["kube-apiserver"] * per_thousand, theirs["kube-apiserver"] * per_thousand
        measured = f"{ours_s:.1f} / {theirs_s:.1f} s = {ratio_:.2f} x"
        same_work = ("kube-scheduler", "kwok")
        if all(ours.get(c) and theirs.get(c) for c in same_work):
            speed = sum(ours[c] for c in same_work) / sum(theirs[c] for c in same_work)
            measured += f" (scheduler + kwok, same work: {speed:.2f} x; over it {ratio_ / speed:.2f} x)"
        rows.append(
            Row(
                f"apiserver CPU s per 1,000 steps <= {APISERVER_CPU_RATIO} x baseline (many)",
                measured,
                ratio_,
                APISERVER_CPU_RATIO,
            )
        )
    return rows


def _latency_rows(w: Mapping[str, Any]) -> list[Row]:
    """Items 1 and 4 of issue 15: transition p99 against the baseline's in the same run; for the burst of
    many-large also the watches the apiserver closed. When some transitions fell inside the engine's
    start (its creation burst; the baseline's takes about a second, before any Job completes), the p99 of
    those after it stands beside (context: the verdict is on the whole run)."""
    ours, theirs = w.get("zen-flow", {}), w.get("baseline", {})
    mine, base = ours.get("transition_latency_ms", {}), theirs.get("transition_latency_ms", {})
    if not mine.get("n") or not base.get("p99"):
        return []
    name = w["workload"]
    ratio_ = mine["p99"] / base["p99"]
    measured = f"{mine['p99']} / {base['p99']} ms = {ratio_:.2f} x"
    later = ours.get("transition_latency_after_start_ms", {})
    if later.get("n") and later["n"] < mine["n"]:
        base_later = theirs.get("transition_latency_after_start_ms", base)
        measured += (
            f" (after the flows' start, {ours['start_seconds']} s: {later['p99']} / {base_later['p99']} ms"
            f" = {later['p99'] / base_later['p99']:.2f} x, {later['n']} of {mine['n']} transitions)"
        )
    rows = [Row(f"transition p99 <= {LATENCY_RATIO} x baseline ({name})", measured, ratio_, LATENCY_RATIO)]
    closed = ours.get("api", {}).get("apiserver_terminated_watchers")
    if name == "many-large" and closed is not None:
        rows.append(Row(f"no watch closed by the apiserver ({name})", f"{closed}", closed, 0))
    return rows


def _cache_line(r: Mapping[str, Any]) -> str:
    fresh = r.get("fresh_controller", {})
    res = r.get("resources", {})
    return (
        f"\nCache ({r.get('cached_jobs')} Jobs, {r.get('cached_flows')} flows): running controller "
        f"RSS {res.get('controller_rss_mb')} MB (peak {res.get('controller_peak_rss_mb')}); "
        f"a fresh controller is ready in {fresh.get('ready_seconds')} s with RSS {fresh.get('rss_mb')} MB "
        f"(peak {fresh.get('peak_rss_mb')}), CPU {fresh.get('cpu_seconds')} s; "
        f"requests in a quiet window: {r.get('quiet_window', {}).get('controller_requests')}"
    )


def _closed_watches(w: Mapping[str, Any]) -> str:
    """Who read too slowly, when the apiserver closed watches during a run ('' when it closed none)."""
    parts = []
    for engine in ("zen-flow", "baseline"):
        r = w.get(engine) or {}
        terminated = r.get("api", {}).get("apiserver_terminated_watchers")
        if terminated:
            mine = r.get("api", {}).get("controller_watches_closed_early")
            parts.append(
                f"{engine} run: {terminated} (controller {mine if mine is not None else '-'}, "
                f"harness observer {r.get('observer_watches_closed_early', '-')})"
            )
    return f"  ! {w['workload']}: watches the apiserver closed: " + "; ".join(parts) if parts else ""


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def render(results: Mapping[str, Any]) -> str:
    parts = []
    meta = results["meta"]
    m = meta["machine"]
    parts.append(
        f"zen-flow benchmark, {meta['date']}, commit {meta['commit']}, preset {meta['preset']}, "
        f"{m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gb']} GB; controller {meta['controller']}; "
        f"admission rules {meta.get('admission_rules', 'python')}"
    )
    workloads = results.get("workloads", [])
    if workloads:  # none with --admission-only
        parts.append(
            "\nStep-transition latency (upstream Job seen Complete -> downstream Job seen created),"
            " throughput:"
        )
        parts.append(_table(FLOW_HEADERS, flow_rows(workloads)))
        if rows := growth_rows(workloads):
            parts.append("\nCost as flows grow, per step (zen-flow):")
            parts.append(_table(GROWTH_HEADERS, rows))
    for w in workloads:
        r = w.get("zen-flow", {})
        if w["kind"] == "waiting" and "window" in r:
            win = r["window"]
            parts.append(
                f"\nWaiting flows ({w['flows']}), {r['quiet_window_seconds']} s quiet window: "
                f"controller requests {win['controller_requests']} "
                f"(audit: {win.get('audit_requests', '-')}), reconciles {win['reconciles']}"
            )
        if w["kind"] == "cache":
            parts.append(_cache_line(r))
        if closed := _closed_watches(w):
            parts.append(closed)
        for engine in ("zen-flow", "baseline"):
            if w.get(engine, {}).get("error"):
                parts.append(f"  ! {w['workload']} / {engine}: {w[engine]['error'][:300]}")
    adm = results.get("admission")
    if adm:
        rows = [
            [
                r["path"],
                r["shape"],
                r["steps"],
                r["first_ms"],
                *(r["latency_ms"][k] for k in ("p50", "p90", "p99", "n")),
            ]
            for r in [*adm["validator"], *adm.get("webhook", []), *adm.get("cli", [])]
        ]
        parts.append("\nAdmission latency, and `zen-flow get` after the API answered (ms):")
        parts.append(_table(("path", "shape", "steps", "first", "p50", "p90", "p99", "n"), rows))
        if "webhook_error" in adm:
            parts.append(f"  ! webhook: {adm['webhook_error']}")
    if sizes := results.get("cache_objects"):
        parts.append(
            "\nCached objects (tracemalloc, decoded and compacted as the informers do; "
            f"{sizes['jobs']} Jobs, {sizes['flows']} flows): a Job {sizes['bytes_per_job']} B "
            f"(its JSON {sizes['job_json_bytes']} B), a {sizes['flow_steps']}-step flow "
            f"{sizes['bytes_per_flow'] / 1000:.1f} KB (its JSON {sizes['flow_json_bytes'] / 1000:.1f} KB)"
        )
    parts.append("\nTargets (issues 5 and 15; reported, not asserted):")
    parts.append(_table(("target", "measured", "verdict"), targets(results)))
    return "\n".join(parts)
