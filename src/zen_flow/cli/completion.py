"""Shell completion for bash, zsh and fish (argcomplete): commands, options and their choices come from the
argument parser; flow (`NAMESPACE/NAME` for `shards --flow`), step and CronJobFlow names from the cluster,
as kubectl completes resource names.

The shell runs `zen-flow` itself with the command line in its environment (`_ARGCOMPLETE`); `main` hands
such a run to `answer` before parsing, so the script `zen-flow completion SHELL` prints never goes stale.
Names are looked up with the user's kubeconfig, context and namespace flags as typed so far, within
NAMES_TIMEOUT: an unreachable cluster completes nothing rather than hanging the prompt.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zen_flow.cli.session import Session
    from zen_flow.kube.resource import Resource

SHELLS = ("bash", "zsh", "fish")
NAMES_TIMEOUT = 3.0


def script(shell: str) -> str:
    from argcomplete.shell_integration import shellcode

    return shellcode(["zen-flow"], shell=shell)


def answer(parser: argparse.ArgumentParser) -> None:
    """Print the completions the shell asked for and exit."""
    import argcomplete

    argcomplete.autocomplete(parser)


def kubectl_plugin(parser: argparse.ArgumentParser, words: list[str]) -> int:
    """`kubectl jobflow ...<TAB>`: kubectl (1.26+) runs `kubectl_complete-jobflow WORD... PARTIAL` and reads
    cobra's answer: one candidate per line, then `:<directive>` (4: do not fall back to file names)."""
    import io
    import os

    import argcomplete

    line = " ".join(["zen-flow", *words])
    os.environ.update(_ARGCOMPLETE="1", _ARGCOMPLETE_IFS="\n", COMP_LINE=line, COMP_POINT=str(len(line)))
    out = io.StringIO()
    argcomplete.autocomplete(parser, exit_method=lambda code: None, output_stream=out)
    candidates = [c.rstrip() for c in out.getvalue().split("\n") if c.strip()]
    print("\n".join([*candidates, ":4"]))
    return 0


def flow_names(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    from zen_flow.kube.jobflows import JOBFLOWS  # imported when completing, not at every start

    return _lookup(_names_of(JOBFLOWS), prefix, parsed_args)


def any_flow_names(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    """Every namespace's flows as NAMESPACE/NAME (`zen-flow shards --flow`)."""
    from zen_flow.kube.jobflows import JOBFLOWS

    async def names(session: Session) -> list[str]:
        listed = await session.client.list_all(JOBFLOWS.path(None), (), page_size=500)
        return [f"{item['metadata']['namespace']}/{item['metadata']['name']}" for item in listed.items]

    return _lookup(names, prefix, parsed_args)


def cron_names(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    """The CronJobFlows of the namespace (`zen-flow cron get|trigger|backfill|suspend|resume NAME`)."""
    from zen_flow.kube.cronjobflows import CRONJOBFLOWS

    return _lookup(_names_of(CRONJOBFLOWS), prefix, parsed_args)


def _names_of(resource: Resource) -> Callable[[Session], Awaitable[list[str]]]:
    async def names(session: Session) -> list[str]:
        listed = await session.client.list_all(resource.path(session.namespace), (), page_size=500)
        return [item["metadata"]["name"] for item in listed.items]

    return names


def step_names(*, manual_only: bool = False) -> Callable[..., list[str]]:
    """The steps of the flow named earlier on the line (for approve/reject: its Manual steps)."""

    async def names(session: Session, name: str) -> list[str]:
        flow = await session.get(name)
        return [s.name for s in flow.spec.steps if not manual_only or s.is_manual]

    def complete(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
        return _lookup(lambda session: names(session, parsed_args.name), prefix, parsed_args)

    return complete


def _lookup(
    names: Callable[[Session], Awaitable[list[str]]], prefix: str, parsed_args: argparse.Namespace
) -> list[str]:
    """The names starting with `prefix`, asked with kubectl's flags typed so far, within NAMES_TIMEOUT."""
    from zen_flow.cli.session import open_session

    async def ask() -> list[str]:
        async with open_session(parsed_args) as session:
            return await names(session)

    try:
        found = asyncio.run(asyncio.wait_for(ask(), NAMES_TIMEOUT))
    except Exception:  # no cluster, no flow, no rights: nothing to offer, and no traceback in the prompt
        return []
    return [name for name in found if name.startswith(prefix)]
