"""Step logs read back from the flow archive (`--archive-logs`; planner/archive_logs.py): what
`zen-flow archive logs` prints, and what `zen-flow logs` falls back to once a step's pods are gone.

The logs of a flow are the objects under `<prefix>~logs/<namespace>/<name>/<uid>/`, found by listing
(one request per 1,000 objects): each step's latest attempt unless one is asked for, its containers in
name order, zen-flow's own transfer containers left out as `zen-flow logs` leaves them out. Each is
printed whole (at most the controller's `--archive-log-limit-bytes`, a cut one saying so in its last
line), its lines prefixed as `zen-flow logs` prefixes them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TextIO

from zen_flow.api.transfer import TRANSFER_NAMES
from zen_flow.planner.archive_logs import logs_prefix, parse_log_key
from zen_flow.s3 import Listed


class LogStore(Protocol):
    def pages(self, prefix: str) -> AsyncIterator[list[Listed]]: ...

    async def get(self, key: str) -> bytes: ...


@dataclass(frozen=True)
class ArchivedLog:
    step: str
    attempt: int
    pod: str
    container: str
    key: str


async def find_logs(
    store: LogStore,
    prefix: str,
    namespace: str,
    name: str,
    uid: str,
    steps: Sequence[str] | None = None,
    attempt: int | None = None,
    order: Sequence[str] = (),
    latest: Mapping[str, int] | None = None,
) -> list[ArchivedLog]:
    """The archived logs of flow `uid`'s `steps` (None: every step), each step's `attempt` (None: its
    latest: its newest key's, or the newer one `latest` has, from the flow's record, whose latest
    attempt may have no log to show), in step order as given (else as `order` has them, the flow's
    dependency order: the others after, by name), then pod and container."""
    found: list[ArchivedLog] = []
    wanted = set(steps) if steps is not None else None
    # One listing for one step, else the flow's whole logs prefix.
    one = steps[0] if steps is not None and len(steps) == 1 else ""
    async for page in store.pages(logs_prefix(prefix, namespace, name, uid, one)):
        for item in page:
            key = parse_log_key(prefix, namespace, name, uid, item.key)
            if key is None or (wanted is not None and key.step not in wanted):
                continue
            if key.container in TRANSFER_NAMES:
                continue
            found.append(ArchivedLog(key.step, key.attempt, key.pod, key.container, item.key))
    newest = dict(latest or {})
    for log in found:
        newest[log.step] = max(newest.get(log.step, 0), log.attempt)
    kept = [g for g in found if g.attempt == (attempt if attempt is not None else newest[g.step])]
    rank = {s: n for n, s in enumerate(steps if steps is not None else order)}
    return sorted(kept, key=lambda g: (rank.get(g.step, len(rank)), g.step, g.pod, g.container))


def labels(shown: Sequence[tuple[str, ArchivedLog]]) -> list[tuple[str, ArchivedLog]]:
    """Each log (with its step as shown: a Flow step's child's `step/child-step`) with the prefix of its
    lines, as `zen-flow logs` gives them: `[step/container] ` when a step shows more than one container,
    `[step] ` when more than one step or a child's, none for one container."""
    steps = {step for step, _ in shown}
    several_steps = len(steps) > 1 or any("/" in step for step in steps)
    several_containers = len(shown) > len(steps)
    out: list[tuple[str, ArchivedLog]] = []
    for step, g in shown:
        if several_containers:
            label = f"[{step}/{g.container}] "
        elif several_steps:
            label = f"[{step}] "
        else:
            label = ""
        out.append((label, g))
    return out


async def print_logs(store: LogStore, logs: Sequence[tuple[str, ArchivedLog]], out: TextIO) -> None:
    for label, log in logs:
        text = (await store.get(log.key)).decode(errors="replace")
        out.writelines(f"{label}{line}\n" for line in text.splitlines())
