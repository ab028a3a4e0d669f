"""`zen-flow watch [NAME]`: one flow, or every flow of a namespace, followed through one WATCH (never
polling): on a terminal the `get` (or `list`) view is redrawn in place at every change, otherwise one line
per change, so the output can be piped or logged. `changes` is that watch, which the web UI's pages
follow too (cli/ui_events.py)."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any

from zen_flow.api import JobFlow
from zen_flow.cli.render import flow_detail, flow_list, printable
from zen_flow.cli.session import EXIT_FAILED, EXIT_OK, Session, now
from zen_flow.core.matrix import effective_flow
from zen_flow.core.matrix_sources import source_states, wanted_sources
from zen_flow.kube.client import KubeClient
from zen_flow.kube.errors import Expired, NotFound
from zen_flow.kube.jobflows import JOBFLOWS

WATCH_SECONDS = 300  # the server ends a watch after this; the next one starts where it stopped

Summary = tuple[str | None, str | None, str | None]


class EffectiveFlows:
    """The watched flow as `get` draws it: its effective spec (a matrix step as its items, with their
    values). The spec only changes with the generation, and watch redraws at every event (a 256-item
    flow sends one per item's transition), so it is expanded once per uid and generation, and, for a
    matrix reading an earlier step's output, again when that output's state changes (its items appear)."""

    def __init__(self) -> None:
        self._key: tuple[object, ...] | None = None
        self._flow: JobFlow | None = None

    def __call__(self, flow: JobFlow) -> JobFlow:
        # A look at each step per event (microseconds): what the status says of the outputs read.
        sources = tuple(source_states(wanted_sources(flow.spec), flow.status.steps).items())
        key = (flow.metadata.uid, flow.metadata.generation, sources)
        if self._flow is None or key != self._key:
            self._key, self._flow = key, effective_flow(flow)
        spec = self._flow.spec
        return flow if spec is flow.spec else flow.model_copy(update={"spec": spec})


@dataclass(frozen=True)
class Change:
    """What a watch of JobFlows saw: every flow (`listed`: the first LIST, or a new one after 410 Gone),
    or one flow `changed` or `deleted`; `items` are the raw objects (decoded by whoever reads them)."""

    kind: str
    items: tuple[Mapping[str, Any], ...]


async def changes(
    client: KubeClient, namespace: str | None, name: str | None = None, since: str = ""
) -> AsyncGenerator[Change]:
    """The JobFlows of `namespace` (None: every namespace), or the one flow `name`, as they change: a LIST
    (none when `since`, a resourceVersion already read, says where to watch from), then one WATCH at a
    time, the next one starting where the last stopped, a new LIST after 410 Gone. Never polls. Close it
    (`contextlib.aclosing`) to end the watch at once."""
    selector = (("fieldSelector", f"metadata.name={name}"),) if name else ()
    path = JOBFLOWS.path(namespace)
    version = since
    while True:
        if not version:  # the first time, and after 410 Gone: a fresh LIST says where to watch from
            listed = await client.list_all(path, selector, page_size=100)
            version = listed.resource_version
            yield Change("listed", tuple(listed.items))
        query = [*selector, ("allowWatchBookmarks", "true"), ("resourceVersion", version)]
        try:
            async with client.stream(path, query, timeout_seconds=WATCH_SECONDS) as events:
                async for event in events:
                    version = event.resource_version or version
                    if event.type != "BOOKMARK":
                        kind = "deleted" if event.type == "DELETED" else "changed"
                        yield Change(kind, (event.object,))
        except Expired:
            version = ""


async def watch(session: Session, args: argparse.Namespace) -> int:
    """Follow one flow (NAME) or every flow of the namespace through one WATCH (never polling). On a
    terminal: the `get` (or `list`) view redrawn in place at every change; otherwise one line per change.
    With NAME it ends when the flow does: exit 0 if it Succeeded, 1 if it Failed."""
    tty = session.out.isatty()
    flows: dict[str, JobFlow] = {}
    shown: dict[str, Summary] = {}
    effective = EffectiveFlows()
    async with contextlib.aclosing(changes(session.client, session.namespace, args.name)) as seen:
        async for change in seen:
            decoded = [JobFlow.model_validate(item) for item in change.items]
            if change.kind == "listed":
                flows = {f.metadata.name: f for f in decoded}
                if args.name and args.name not in flows:
                    # Exit 1 as `get` does: 2 means a usage error, with nothing sent.
                    raise NotFound(404, "NotFound", f'jobflows.workflow.kube-zen.io "{args.name}" not found')
            elif change.kind == "deleted":
                flow = decoded[0]
                flows.pop(flow.metadata.name, None)
                session.out.write(f"jobflow {flow.key} deleted\n")
                if args.name:
                    return EXIT_FAILED
            else:
                flows[decoded[0].metadata.name] = decoded[0]
            outcome = _show(session, flows, shown, args.name, tty, effective)
            if outcome is not None:
                return outcome
    raise AssertionError("a watch of flows never ends by itself")  # pragma: no cover


def _show(
    session: Session,
    flows: dict[str, JobFlow],
    shown: dict[str, Summary],
    name: str | None,
    tty: bool,
    effective: EffectiveFlows,
) -> int | None:
    """Print what changed; the exit status once the watched flow is over."""
    at, out = now(), session.out
    changed = [f for f in flows.values() if shown.get(f.metadata.name) != _summary(f)]
    if changed and tty:
        view = (
            flow_detail(effective(flows[name]), at)
            if name
            else flow_list(list(flows.values()), at, all_namespaces=False)
        )
        out.write("\x1b[H\x1b[2J")  # home, clear: redrawn in place
        session.show(view)
    for flow in sorted(changed, key=lambda f: f.metadata.name):
        shown[flow.metadata.name] = _summary(flow)
        if not tty:
            status = flow.status
            out.write(
                f"{at:%H:%M:%S} {flow.metadata.name} {status.phase or 'Pending'} "
                f"{status.progress_summary or '-'} {printable(status.message or '')}".rstrip()
                + "\n"
            )
    out.flush()
    if name and name in flows and flows[name].status.phase in ("Succeeded", "Failed"):
        return EXIT_OK if flows[name].status.phase == "Succeeded" else EXIT_FAILED
    return None


def _summary(flow: JobFlow) -> Summary:
    return flow.status.phase, flow.status.progress_summary, flow.status.message
