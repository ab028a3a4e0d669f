"""A flow's DAG as an inline SVG for the web UI (`zen-flow ui`), drawn here rather than by Graphviz (which
the user may not have): a layered layout, one row per dependency depth (cli/render.py dependency_order),
finally steps in a row of their own below the others (no edge places them: they run once every other step
has ended). Boxes are coloured by phase with `zen-flow graph`'s palette (cli/graph.py COLOURS); a Manual
step is a hexagon, a finally step has a dashed border. Pure: a flow in, text out.

Every name and phase comes from a tenant's object: each is escaped (`html.escape`) where it is written."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from zen_flow.api import JobFlow
from zen_flow.cli.graph import COLOURS
from zen_flow.cli.render import dependency_order

BOX_WIDTH, BOX_HEIGHT = 180, 46
H_GAP, V_GAP, MARGIN = 28, 56, 12
# Characters of a name that fit in a box at the font size used; a longer name ends in an ellipsis (the
# whole of it is in the box's tooltip and in the step table).
NAME_FIT = 24


@dataclass(frozen=True)
class Box:
    step: str
    phase: str
    x: int  # top-left corner
    y: int
    manual: bool
    final: bool


@dataclass(frozen=True)
class Layout:
    boxes: tuple[Box, ...]
    edges: tuple[tuple[str, str], ...]  # (dependency, step)
    width: int
    height: int


def layout(flow: JobFlow) -> Layout:
    """Where each step's box goes: row = dependency depth (finally steps last), and within a row the order
    of the mean position of its dependencies above (fewer crossing edges than spec order)."""
    steps = {s.name: s for s in flow.spec.steps}
    order = dependency_order(flow)
    finals = [name for name, _ in order if steps[name].is_finally]
    rows: dict[int, list[str]] = {}
    for name, depth in order:
        if name not in finals:
            rows.setdefault(depth, []).append(name)
    if finals:
        rows[max(rows, default=-1) + 1] = finals
    column: dict[str, float] = {}
    layers: list[list[str]] = []
    for depth in sorted(rows):
        names = rows[depth]
        if layers:  # a stable sort: steps with no placed dependency go last, in topological order
            names = sorted(
                names, key=lambda n: _mean([column[d] for d in steps[n].dependencies if d in column])
            )
        layers.append(names)
        column.update((name, float(i)) for i, name in enumerate(names))
    widest = max((len(names) for names in layers), default=0)
    width = 2 * MARGIN + widest * BOX_WIDTH + max(widest - 1, 0) * H_GAP
    boxes = []
    for row, names in enumerate(layers):
        span = len(names) * BOX_WIDTH + (len(names) - 1) * H_GAP
        left = (width - span) // 2  # each row centred
        for i, name in enumerate(names):
            status = flow.status.step(name)
            boxes.append(
                Box(
                    step=name,
                    phase=status.phase if status is not None else "Pending",
                    x=left + i * (BOX_WIDTH + H_GAP),
                    y=MARGIN + row * (BOX_HEIGHT + V_GAP),
                    manual=steps[name].is_manual,
                    final=steps[name].is_finally,
                )
            )
    edges = tuple((dep, s.name) for s in flow.spec.steps for dep in s.dependencies if dep in steps)
    height = 2 * MARGIN + len(layers) * BOX_HEIGHT + max(len(layers) - 1, 0) * V_GAP
    return Layout(tuple(boxes), edges, width, height)


def _mean(columns: Sequence[float]) -> float:
    return sum(columns) / len(columns) if columns else float("inf")


def svg(flow: JobFlow, *, anchor: str = "step-") -> str:
    """The flow's DAG as an `<svg>` element; each box links to `#{anchor}{step}` (its row in the page)."""
    drawn = layout(flow)
    at = {box.step: box for box in drawn.boxes}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="dag" width="{drawn.width}" '
        f'height="{drawn.height}" viewBox="0 0 {drawn.width} {drawn.height}" role="img" '
        f'aria-label="{escape(f"DAG of {flow.metadata.name}")}" font-family="sans-serif" font-size="12">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#616161"/>'
        "</marker></defs>",
    ]
    for dep, step in drawn.edges:
        parts.append(_edge(at[dep], at[step]))
    parts += [_box(box, anchor) for box in drawn.boxes]
    parts.append("</svg>")
    return "\n".join(parts)


def _edge(start: Box, end: Box) -> str:
    x1, y1 = start.x + BOX_WIDTH // 2, start.y + BOX_HEIGHT
    x2, y2 = end.x + BOX_WIDTH // 2, end.y
    bend = (y2 - y1) // 2
    return (
        f'<path class="edge" data-from="{escape(start.step)}" data-to="{escape(end.step)}" '
        f'd="M{x1},{y1} C{x1},{y1 + bend} {x2},{y2 - bend} {x2},{y2}" fill="none" stroke="#616161" '
        'stroke-width="1.3" marker-end="url(#arrow)"/>'
    )


def _box(box: Box, anchor: str) -> str:
    fill, stroke = COLOURS.get(box.phase, COLOURS["Pending"])
    dash = ' stroke-dasharray="5 4"' if box.final else ""
    paint = f'fill="{fill}" stroke="{stroke}" stroke-width="1.6"{dash}'
    x, y, w, h = box.x, box.y, BOX_WIDTH, BOX_HEIGHT
    if box.manual:  # a hexagon, as `zen-flow graph` draws a Manual step
        points = _points([(x + 12, y), (x + w - 12, y), (x + w, y + h // 2), (x + w - 12, y + h),
                          (x + 12, y + h), (x, y + h // 2)])  # fmt: skip
        shape = f'<polygon points="{points}" {paint}/>'
    else:
        shape = f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="6" {paint}/>'
    name = box.step if len(box.step) <= NAME_FIT else box.step[: NAME_FIT - 1] + "\u2026"
    under = box.phase + (" \u00b7 finally" if box.final else "") + (" \u00b7 manual" if box.manual else "")
    return (
        f'<a href="#{escape(anchor + box.step)}" class="step" data-step="{escape(box.step)}">'
        f"<title>{escape(box.step)}: {escape(under)}</title>{shape}"
        f'<text x="{x + w // 2}" y="{y + 19}" text-anchor="middle" font-weight="bold">{escape(name)}</text>'
        f'<text x="{x + w // 2}" y="{y + 36}" text-anchor="middle" fill="#424242">{escape(under)}</text>'
        "</a>"
    )


def _points(corners: Sequence[tuple[int, int]]) -> str:
    return " ".join(f"{x},{y}" for x, y in corners)
