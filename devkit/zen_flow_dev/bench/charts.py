"""Pictures of a benchmark run, next to its JSON: what the tables say, at a glance (docs/BENCHMARKS.md).

- `<stem>-latency.svg`: per workload, the distribution (empirical CDF) of step-transition latency for
  zen-flow and for the ideal baseline in the same run: the closer the curves, the less zen-flow costs.
- `<stem>-cost.svg`: per workload, what a step costs the cluster: every client's writes per step for
  zen-flow and the baseline (apiserver metrics), and the controller's own requests per step.
- `<stem>-timeline.svg`: per workload, transition latency over the run (per second: the slowest and the
  median), zen-flow and the baseline: a tail that is one stall shows as a spike, a steady cost as a band.
  A dashed line marks where the harness's own watch resumed after the apiserver closed it: what it saw
  just before was seen late, whichever engine ran.
- `<stem>-growth.svg` (the `length` workloads): the controller's CPU per step as one flow grows; flat is
  the goal.

matplotlib draws them headless (the Agg backend, SVG text as text). A workload without samples (an
older results file, or a failed run) is left out of the picture, never drawn empty.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from zen_flow_dev.bench.report import growth_rows, run_label

ENGINES = ("zen-flow", "baseline")
COLOURS = {"zen-flow": "#1f77b4", "baseline": "#7f7f7f", "controller": "#ff7f0e"}


def _flow_workloads(results: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [w for w in results.get("workloads", []) if w.get("kind") in ("flows", "drain")]


def _samples(workload: Mapping[str, Any], engine: str) -> Sequence[float]:
    run = workload.get(engine) or {}
    samples: Sequence[float] = run.get("transition_latency_samples_ms") or ()
    return samples


def _timeline(workload: Mapping[str, Any], engine: str) -> Sequence[Sequence[float]]:
    run = workload.get(engine) or {}
    rows: Sequence[Sequence[float]] = run.get("transition_latency_timeline") or ()
    return rows


def write_charts(results: Mapping[str, Any], json_path: Path) -> list[Path]:
    """Draw the charts of `results` beside `json_path`; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import NullFormatter

    plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "svg.hashsalt": "zen-flow"})
    written: list[Path] = []
    stamp = _caption(results)
    latency = [w for w in _flow_workloads(results) if all(_samples(w, e) for e in ENGINES)]
    if latency:
        fig, axes = plt.subplots(
            1, len(latency), figsize=(max(6.4, 3.2 * len(latency)), 3.3), squeeze=False, layout="constrained"
        )
        for ax, workload in zip(axes[0], latency, strict=True):
            for engine in ENGINES:
                xs = sorted(max(x, 0.1) for x in _samples(workload, engine))  # log scale: no zeros
                ys = [(i + 1) / len(xs) for i in range(len(xs))]
                ax.step(xs, ys, where="post", label=engine, color=COLOURS[engine])
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # within one decade it would label every tick
            ax.set_title(run_label(workload))
            ax.set_xlabel("transition latency (ms)")
            ax.grid(True, which="both", alpha=0.3)
        axes[0][0].set_ylabel("share of steps at or below")
        axes[0][0].legend(loc="lower right")
        fig.suptitle(f"Step-transition latency: zen-flow vs the ideal baseline\n{stamp}", fontsize=9)
        written.append(_save(fig, json_path, "latency"))
        plt.close(fig)

    timeline = [w for w in _flow_workloads(results) if all(_timeline(w, e) for e in ENGINES)]
    if timeline:
        fig, axes = plt.subplots(
            len(timeline), 1, figsize=(7.2, 2.2 * len(timeline) + 0.8), squeeze=False, layout="constrained"
        )
        for ax, workload in zip(axes[:, 0], timeline, strict=True):
            for engine in ENGINES:
                rows = _timeline(workload, engine)
                seconds = [row[0] for row in rows]
                colour = COLOURS[engine]
                ax.plot(seconds, [max(row[3], 0.1) for row in rows], color=colour, label=f"{engine}: slowest")
                ax.plot(
                    seconds, [max(row[2], 0.1) for row in rows], color=colour, linestyle=":", label="median"
                )
                for second in (workload.get(engine) or {}).get("observer_resumed_at") or ():
                    ax.axvline(second, color=colour, linestyle="--", linewidth=0.8)
            ax.set_yscale("log")
            ax.set_title(run_label(workload), fontsize=9)
            ax.set_ylabel("latency (ms)")
            ax.grid(True, which="major", alpha=0.3)
        axes[-1][0].set_xlabel("seconds since the flows were created")
        axes[0][0].legend(loc="upper right", fontsize=7, ncols=2)
        fig.suptitle(f"Step-transition latency over the run, per second\n{stamp}", fontsize=9)
        written.append(_save(fig, json_path, "timeline"))
        plt.close(fig)

    cost = [w for w in _flow_workloads(results) if (w.get("zen-flow") or {}).get("api")]
    if cost:
        fig, ax = plt.subplots(figsize=(max(6.4, 1.6 * len(cost) + 2.5), 3.6), layout="constrained")
        width = 0.27
        for i, workload in enumerate(cost):
            zen = workload["zen-flow"]["api"]
            base = (workload.get("baseline") or {}).get("api", {})
            bars = [
                ("zen-flow", zen.get("cluster_writes_per_step"), -width),
                ("baseline", base.get("cluster_writes_per_step"), 0.0),
                ("controller", zen.get("controller_requests_per_step"), width),
            ]
            for label, value, offset in bars:
                if value is None:
                    continue
                ax.bar(i + offset, value, width, color=COLOURS[label], label=label if i == 0 else None)
                ax.annotate(f"{value:.3g}", (i + offset, value), ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(cost)), [run_label(w) for w in cost])
        ax.set_ylabel("requests per step")
        fig.suptitle(
            f"What a step costs: writes by every client, and the controller's requests\n{stamp}", fontsize=9
        )
        ax.legend(
            ["zen-flow: cluster writes", "baseline: cluster writes", "zen-flow controller: requests"],
            loc="upper left",
            bbox_to_anchor=(1.0, 1.0),
        )
        ax.grid(True, axis="y", alpha=0.3)
        written.append(_save(fig, json_path, "cost"))
        plt.close(fig)

    growth = [row for row in growth_rows(results.get("workloads", [])) if row[2] is not None]
    if growth:
        fig, axes = plt.subplots(1, 2, figsize=(9.6, 3.4), layout="constrained")
        names = [f"{row[0]}\n({row[1]} steps)" for row in growth]
        for ax, column, label in zip(
            axes, (2, 6), ("controller CPU ms per step", "status KB sent per step"), strict=True
        ):
            values = [row[column] or 0.0 for row in growth]
            ax.bar(range(len(growth)), values, color=COLOURS["zen-flow"])
            for i, value in enumerate(values):
                ax.annotate(f"{value:.3g}", (i, value), ha="center", va="bottom", fontsize=7)
            ax.set_xticks(range(len(growth)), names, fontsize=7)
            ax.set_ylabel(label)
            ax.grid(True, axis="y", alpha=0.3)
        fig.suptitle(f"What one step costs the controller as one flow grows\n{stamp}", fontsize=9)
        written.append(_save(fig, json_path, "growth"))
        plt.close(fig)
    return written


def _caption(results: Mapping[str, Any]) -> str:
    meta = results.get("meta", {})
    return ", ".join(str(x) for x in (meta.get("commit"), meta.get("date")) if x) or "this run"


def _save(fig: Any, json_path: Path, kind: str) -> Path:
    path = json_path.with_name(f"{json_path.stem}-{kind}.svg")
    fig.savefig(path, format="svg", metadata={"Date": None})  # no timestamp: the same run, the same file
    return path
