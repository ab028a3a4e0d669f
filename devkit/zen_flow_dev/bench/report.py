"""The run's results as text tables (stdout), ending with the targets of issues 5 and 15 (targets.py).

Targets are reported, never asserted: a missed one is a finding to explain, not a failed build.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from zen_flow_dev.bench.targets import targets


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


STORE_HEADERS = (
    "workload", "engine", "ns Jobs", "ns pods", "etcd keys", "keys added", "etcd in use MB", "MB added",
    "compacted",
)  # fmt: skip


def _mb(value: float | None) -> float | None:
    return round(value / 1024 / 1024, 1) if value is not None else None


def _yes_no(flag: bool | None) -> str | None:
    return None if flag is None else ("yes" if flag else "no")


def store_rows(workloads: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    """The store at the end of each part (storesize.py): the part's namespace and etcd (every namespace).
    Not the apiserver's object counts: in the JSON, but refreshed once a minute (0 before the first
    refresh), so they would mislead a short part. Parts measured before these figures existed have none."""
    rows: list[list[Any]] = []
    for w in workloads:
        for engine in ("zen-flow", "baseline"):
            store = (w.get(engine) or {}).get("store")
            if store is None:
                continue
            rows.append([
                run_label(w) if engine == "zen-flow" else "", engine, store.get("namespace_jobs"),
                store.get("namespace_pods"), store.get("etcd_keys"), store.get("etcd_keys_added"),
                _mb(store.get("etcd_db_in_use_bytes")), _mb(store.get("etcd_db_in_use_bytes_added")),
                _yes_no(store.get("etcd_compacted")),
            ])  # fmt: skip
    return rows


def retention_label(meta: Mapping[str, Any]) -> str:
    """`--job-retention`, as the run set it on zen-flow's flows (older results files lack it)."""
    value = meta.get("job_retention")
    return f"jobRetention {value}" if value else "jobRetention omitted (All)"


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


def render(results: Mapping[str, Any]) -> str:
    parts = []
    meta = results["meta"]
    m = meta["machine"]
    parts.append(
        f"zen-flow benchmark, {meta['date']}, commit {meta['commit']}, preset {meta['preset']}, "
        f"{m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gb']} GB; controller {meta['controller']}; "
        f"admission rules {meta.get('admission_rules', 'python')}"
        # No flow runs with --admission-only: no retention to name.
        + (f"; {retention_label(meta)}" if results.get("workloads") else "")
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
        if rows := store_rows(workloads):
            parts.append(
                f"\nStore at the end of each part ({retention_label(meta)} on zen-flow's flows; the baseline "
                "keeps every Job until its namespace goes). ns: the part's namespace; etcd: every "
                "namespace, its live keys; its in-use size also holds deleted keys' revisions until a "
                "compaction (compacted: one fell in the part, its MB added is smaller):"
            )
            parts.append(_table(STORE_HEADERS, rows))
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
