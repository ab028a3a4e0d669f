"""`zen-flow graph`: a flow's DAG as Mermaid or Graphviz DOT text, each step coloured by its phase (a flow
read from a file has no status: every step is Pending). A Manual step is a hexagon; a finally step, which
no edge places after the others, says "finally" under its phase and has a dashed border: it runs once
every other step has ended. Pure: the caller renders SVG with Graphviz."""

from __future__ import annotations

import json

from zen_flow.api import JobFlow
from zen_flow.cli.render import dependency_order

# phase -> (fill, stroke): green done, red failed, blue running, amber waiting for a person, grey rest.
COLOURS = {
    "Succeeded": ("#c8e6c9", "#2e7d32"),
    "Failed": ("#ffcdd2", "#c62828"),
    "Running": ("#bbdefb", "#1565c0"),
    "Retrying": ("#ffe0b2", "#ef6c00"),
    "PendingApproval": ("#fff9c4", "#f9a825"),
    "Skipped": ("#eeeeee", "#9e9e9e"),
    "Pending": ("#ffffff", "#757575"),
}


def _phases(flow: JobFlow) -> dict[str, str]:
    phases = {}
    for step in flow.spec.steps:
        status = flow.status.step(step.name)
        phases[step.name] = status.phase if status is not None else "Pending"
    return phases


def mermaid(flow: JobFlow) -> str:
    phases = _phases(flow)
    ids = {name: f"s{i}" for i, (name, _) in enumerate(dependency_order(flow))}
    manual = {s.name for s in flow.spec.steps if s.is_manual}
    final = {s.name for s in flow.spec.steps if s.is_finally}
    lines = ["flowchart TD"]
    for name, node in ids.items():
        label = f"{name}<br/>{phases[name]}" + ("<br/>finally" if name in final else "")
        shape = f'{{{{"{label}"}}}}' if name in manual else f'["{label}"]'
        lines.append(f"  {node}{shape}:::{phases[name].lower()}")
    lines += [f"  style {ids[name]} stroke-dasharray: 5 5" for name in ids if name in final]
    for step in flow.spec.steps:
        lines += [f"  {ids[dep]} --> {ids[step.name]}" for dep in step.dependencies if dep in ids]
    for phase in sorted(set(phases.values())):
        fill, stroke = COLOURS.get(phase, COLOURS["Pending"])
        lines.append(f"  classDef {phase.lower()} fill:{fill},stroke:{stroke}")
    return "\n".join(lines) + "\n"


def dot(flow: JobFlow) -> str:
    phases = _phases(flow)
    manual = {s.name for s in flow.spec.steps if s.is_manual}
    final = {s.name for s in flow.spec.steps if s.is_finally}
    lines = [
        f"digraph {json.dumps(flow.metadata.name or 'jobflow')} {{",
        "  rankdir=TB;",
        '  node [shape=box, style="rounded,filled", fontname="sans-serif"];',
    ]
    for name, _ in dependency_order(flow):
        fill, stroke = COLOURS.get(phases[name], COLOURS["Pending"])
        shape = ", shape=hexagon" if name in manual else ""
        if name in final:
            shape += ', style="rounded,filled,dashed"'
        label = json.dumps(f"{name}\n{phases[name]}" + ("\nfinally" if name in final else ""))
        lines.append(f'  {json.dumps(name)} [label={label}, fillcolor="{fill}", color="{stroke}"{shape}];')
    for step in flow.spec.steps:
        lines += [
            f"  {json.dumps(dep)} -> {json.dumps(step.name)};" for dep in step.dependencies if dep in phases
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"
