"""What every `zen-flow` cluster command shares: kubectl's connection flags, one client and namespace per
run, and errors turned into one line and an exit status.

Exit status: 0 done (with `submit --wait`: the flow Succeeded); 1 the flow Failed (`submit --wait`), or
the apiserver refused or could not be reached (the message says which: not found, forbidden with the
apiserver's words naming the verb and resource, a webhook's field errors); 2 bad usage or unreadable,
invalid input (nothing was sent).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TextIO

import yaml

from zen_flow.api import JobFlow
from zen_flow.cli.colour import painter
from zen_flow.core.matrix import effective_flow
from zen_flow.kube.client import KubeClient
from zen_flow.kube.config import load_config
from zen_flow.kube.errors import ApiError, KubeError, NotFound, RequestTimedOut, TransportError
from zen_flow.kube.jobflows import JOBFLOWS, JobFlowClient
from zen_flow.kube.transport import MERGE_PATCH, ClientOptions

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
USER_AGENT = "zen-flow-cli"
# The query of every create the CLI sends (submit, cron trigger, cron backfill): strict, as kubectl's, so
# that a key the CRD does not have is refused by name, never silently pruned.
STRICT = (("fieldValidation", "Strict"),)


class UsageError(Exception):
    """Bad input, found before anything was sent: exit 2."""


def add_client_arguments(
    parser: argparse.ArgumentParser,
    *,
    all_namespaces: bool = False,
    namespace_help: str = "namespace (default: the context's, else default)",
) -> None:
    """kubectl's flags, with kubectl's meaning (`namespace_help`: a command whose -n means otherwise)."""
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)")
    parser.add_argument("--context", help="kubeconfig context (default: the current context)")
    parser.add_argument("-n", "--namespace", help=namespace_help)
    parser.add_argument(
        "--request-timeout",
        type=parse_request_timeout,
        default=DEFAULT_REQUEST_TIMEOUT,
        metavar="DURATION",
        help="how long one request may wait for its answer: 10s, 1m, plain seconds; 0: no limit (default:"
        " 30s). Per request, as kubectl: `watch` and `--wait` keep going across requests",
    )
    if all_namespaces:
        parser.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")


DEFAULT_REQUEST_TIMEOUT = 30.0
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_request_timeout(text: str) -> float | None:
    """kubectl's `--request-timeout`: a Go duration (`10s`, `1m30s`, `250ms`) or plain seconds (`10`);
    zero means no limit (None)."""
    if re.fullmatch(r"\d+", text):
        seconds = float(text)
    else:
        parts = _DURATION_PART.findall(text)
        if not text or "".join(number + unit for number, unit in parts) != text:
            raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 10s, 1m, or plain seconds)")
        seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)
    return seconds or None


Command = Callable[["Session", argparse.Namespace], Awaitable[int]]


Offline = Callable[[argparse.Namespace], "int | None"]


def run(command: Command, args: argparse.Namespace, offline: Offline | None = None) -> int:
    """Run one command; errors become one line on stderr and an exit status. `offline` runs first,
    without a cluster: it checks the input (and may prepare `args`), or answers alone (an exit status)."""
    prog = f"zen-flow {args.command}"
    try:
        if offline is not None and (code := offline(args)) is not None:
            return code
        return asyncio.run(_with_session(command, args))
    except UsageError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (ApiError, TransportError) as err:
        print(f"{prog}: {described(err)}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:
        raise  # the reader went away (`| head`): zen_flow.__main__ ends quietly
    except (KubeError, ValueError, OSError) as err:  # kubeconfig problems
        print(f"{prog}: {err}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def described(err: ApiError | TransportError) -> str:
    """What went wrong with a request, in one line: the apiserver's words (a 403 names the user, the verb
    and the resource; a webhook's denial lists its field errors), or why it could not be reached."""
    if isinstance(err, RequestTimedOut):
        return f"no answer from {err.server} within {err.seconds:g}s (--request-timeout)"
    if isinstance(err, NotFound):
        return f"not found: {err.message}"
    if isinstance(err, TransportError):
        return f"cannot reach the apiserver: {err}"
    status = f"{err.status} {err.reason}" if err.reason else str(err.status)
    return f"the apiserver refused ({status}): {err.message or 'no reason given'}"


class Session:
    """A client for the user's cluster and the namespace the command acts in."""

    def __init__(self, client: KubeClient, namespace: str, out: TextIO, err: TextIO | None = None) -> None:
        self.client = client
        self.flows = JobFlowClient(client)
        self.namespace = namespace
        self.out = out
        self._err = err
        self._painter: Callable[[str], object] | None = None

    @property
    def err(self) -> TextIO:
        """Where a command's notes go: stderr, or the web UI's page (`zen-flow ui` shows them)."""
        return self._err if self._err is not None else sys.stderr

    def print_object(self, raw: dict[str, Any], output: str | None, kind_name: Callable[[str], str]) -> bool:
        """`get -o json|yaml`: the object as stored; `-o name`: kubectl's resource.group/name
        (`kind_name`). False for any other output: the caller shows its own view."""
        if output == "json":
            self.out.write(json.dumps(raw, indent=2) + "\n")
        elif output == "yaml":
            self.out.write(yaml.safe_dump(raw, sort_keys=False))
        elif output == "name":
            self.out.write(kind_name(raw["metadata"]["name"]) + "\n")
        else:
            return False
        return True

    def show(self, text: str) -> None:
        """Write a rendered view (`get`, `list`, `watch`): coloured on a terminal. The painter, and rich
        with it, is made on first use: commands that print no view never pay for it."""
        if self._painter is None:
            self._painter = painter(self.out)
        self._painter(text)

    async def get(self, name: str) -> JobFlow:
        """The flow `name` as its steps run: its effective flow, each matrix step's items (core/matrix.py)."""
        return effective_flow(JobFlow.model_validate(await self.flows.get(self.namespace, name)))

    async def merge_patch(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return await self.client.request(
            "PATCH",
            JOBFLOWS.path(self.namespace, name),
            body=patch,
            content_type=MERGE_PATCH,
        )


async def _with_session(command: Command, args: argparse.Namespace) -> int:
    async with open_session(args) as session:
        return await command(session, args)


@asynccontextmanager
async def open_session(args: argparse.Namespace, out: TextIO = sys.stdout) -> AsyncIterator[Session]:
    """A session for kubectl's flags in `args` (--kubeconfig, --context, -n, --request-timeout); the
    client closed after."""
    config = await load_config(args.kubeconfig, args.context)
    timeout = getattr(args, "request_timeout", DEFAULT_REQUEST_TIMEOUT)
    # A timed-out request is final, as with kubectl: --request-timeout bounds it, not each of its attempts.
    options = ClientOptions(user_agent=USER_AGENT, timeout=timeout, retry_timed_out=False)
    client = KubeClient(config, options)
    try:
        yield Session(client, args.namespace or config.namespace or "default", out)
    finally:
        await client.close()


def now() -> datetime:
    return datetime.now(UTC)
