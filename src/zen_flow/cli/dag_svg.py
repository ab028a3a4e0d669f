"""A flow's DAG as an inline SVG for the web UI (`zen-flow ui`), drawn here rather than by Graphviz (which
the user may not have): a layered layout, one row per dependency depth (cli/render.py dependency_order),
finally steps in rows of their own below the others, by their depth among finally steps (they run once
every other step has ended, and may depend on each other); a row of more than WRAP boxes goes on over
several lines. An edge between adjacent lines is a curve; one that skips lines passes through a gap
between the boxes of each line it crosses, so no box hides it. Boxes are coloured by phase with
`zen-flow graph`'s palette (cli/graph.py COLOURS); a Manual step is a hexagon, a finally step has a
dashed border. Pure: a flow in, text out.

Every name and phase comes from a tenant's object: each is escaped (`html.escape`) where it is written."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from zen_flow.api import JobFlow
from zen_flow.cli.graph import COLOURS
from zen_flow.cli.render import ALLOWED_NOTE, dependency_order
from zen_flow.planner.tolerance import tolerated

BOX_WIDTH, BOX_HEIGHT = 180, 46
H_GAP, V_GAP = 28, 56
MARGIN = H_GAP // 2 + 4  # room for an edge passing left or right of the widest line
# Characters of a name that fit in a box at the font size used; a longer name loses its middle to an
# ellipsis, its end kept (matrix items differ at the end; the whole name is in the tooltip and table).
NAME_FIT = 24
WRAP = 24  # boxes on a line at most: a 200-step fan-out is 9 lines, not 41,600 px wide
Point = tuple[int, int]


@dataclass(frozen=True)
class Box:
    step: str
    phase: str
    x: int  # top-left corner
    y: int
    manual: bool
    final: bool
    allowed: bool = False  # a failure its allowFailure tolerated (planner.tolerance): said under its name


@dataclass(frozen=True)
class Layout:
    boxes: tuple[Box, ...]
    edges: tuple[tuple[str, str], ...]  # (dependency, step)
    routes: tuple[tuple[Point, ...], ...]  # per edge: the points a line skipping lines passes, else ()
    width: int
    height: int


def layout(flow: JobFlow) -> Layout:
    """Where each step's box goes: row = dependency depth (finally steps below, by their depth among
    finally steps), and within a row the order of the mean position of its dependencies above (fewer
    crossing edges than spec order); a row wider than WRAP on several lines."""
    steps = {s.name: s for s in flow.spec.steps}
    order = dependency_order(flow)
    rows: dict[int, list[str]] = {}
    for name, depth in order:
        if not steps[name].is_finally:
            rows.setdefault(depth, []).append(name)
    below = max(rows, default=-1) + 1
    final_depth: dict[str, int] = {}
    for name, _ in order:  # topological: a finally step's finally dependencies are placed first
        if steps[name].is_finally:
            above = [final_depth[d] for d in steps[name].dependencies if d in final_depth]
            final_depth[name] = 1 + max(above, default=-1)
            rows.setdefault(below + final_depth[name], []).append(name)
    column: dict[str, float] = {}
    layers: list[list[str]] = []
    for depth in sorted(rows):
        names = rows[depth]
        if layers:  # a stable sort: steps with no placed dependency go last, in topological order
            names = sorted(
                names, key=lambda n: _mean([column[d] for d in steps[n].dependencies if d in column])
            )
        column.update((name, float(i)) for i, name in enumerate(names))
        layers += [names[i : i + WRAP] for i in range(0, len(names), WRAP)]
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
                    allowed=status is not None and tolerated(steps[name], status, flow.status),
                )
            )
    edges = tuple((dep, s.name) for s in flow.spec.steps for dep in s.dependencies if dep in steps)
    height = 2 * MARGIN + len(layers) * BOX_HEIGHT + max(len(layers) - 1, 0) * V_GAP
    at = {box.step: box for box in boxes}
    lines: dict[int, list[int]] = {}  # each line's boxes' x, left to right
    for box in boxes:
        lines.setdefault(_line(box), []).append(box.x)
    routes = tuple(_route(at[dep], at[step], lines) for dep, step in edges)
    return Layout(tuple(boxes), edges, routes, width, height)


def _line(box: Box) -> int:
    return (box.y - MARGIN) // (BOX_HEIGHT + V_GAP)


def _route(start: Box, end: Box, lines: dict[int, list[int]]) -> tuple[Point, ...]:
    """Through each line between `start`'s and `end`'s, the gap between two boxes (or beside the line)
    nearest the straight line from one to the other: down it, clear of every box."""
    first, last = _line(start), _line(end)
    if last - first < 2:
        return ()
    x1, x2 = start.x + BOX_WIDTH // 2, end.x + BOX_WIDTH // 2
    points: list[Point] = []
    for line in range(first + 1, last):
        row = lines[line]
        gaps = [x - H_GAP // 2 for x in row] + [row[-1] + BOX_WIDTH + H_GAP // 2]
        aim = x1 + (x2 - x1) * (line - first) / (last - first)
        gap = min(gaps, key=lambda g: abs(g - aim))
        top = MARGIN + line * (BOX_HEIGHT + V_GAP)
        points += [(gap, top), (gap, top + BOX_HEIGHT)]
    return tuple(points)


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
    for (dep, step), route in zip(drawn.edges, drawn.routes, strict=True):
        parts.append(_edge(at[dep], at[step], route))
    parts += [_box(box, anchor) for box in drawn.boxes]
    parts.append("</svg>")
    return "\n".join(parts)


def _edge(start: Box, end: Box, route: Sequence[Point]) -> str:
    x1, y1 = start.x + BOX_WIDTH // 2, start.y + BOX_HEIGHT
    x2, y2 = end.x + BOX_WIDTH // 2, end.y
    if route:  # straight lines between the lines of boxes, down the gaps it was given
        d = f"M{x1},{y1} " + " ".join(f"L{x},{y}" for x, y in (*route, (x2, y2)))
    else:  # adjacent lines: a curve within the space between them
        bend = (y2 - y1) // 2
        d = f"M{x1},{y1} C{x1},{y1 + bend} {x2},{y2 - bend} {x2},{y2}"
    return (
        f'<path class="edge" data-from="{escape(start.step)}" data-to="{escape(end.step)}" '
        f'd="{d}" fill="none" stroke="#616161" stroke-width="1.3" marker-end="url(#arrow)"/>'
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
    name = _fit(box.step)
    under = f"{box.phase} {ALLOWED_NOTE}" if box.allowed else box.phase
    under += (" \u00b7 finally" if box.final else "") + (" \u00b7 manual" if box.manual else "")
    return (
        f'<a href="#{escape(anchor + box.step)}" class="step" data-step="{escape(box.step)}">'
        f"<title>{escape(box.step)}: {escape(under)}</title>{shape}"
        f'<text x="{x + w // 2}" y="{y + 19}" text-anchor="middle" font-weight="bold">{escape(name)}</text>'
        f'<text x="{x + w // 2}" y="{y + 36}" text-anchor="middle" fill="#424242">{escape(under)}</text>'
        "</a>"
    )


def _fit(name: str) -> str:
    if len(name) <= NAME_FIT:
        return name
    head = (NAME_FIT - 1) // 2
    return name[:head] + "\u2026" + name[-(NAME_FIT - 1 - head) :]


def _points(corners: Sequence[tuple[int, int]]) -> str:
    return " ".join(f"{x},{y}" for x, y in corners)
