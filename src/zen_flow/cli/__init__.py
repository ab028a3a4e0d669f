"""The `zen-flow` command: run the controller, validate flows offline, drive flows with your own
kubeconfig (list, get, watch, submit, logs, approve, reject, stop, retry, resubmit, suspend, resume,
delete, graph, or a web page served on your machine: ui) and CronJobFlows (cron list, get, trigger,
suspend, resume), read the flow archive (archive list, get), show a sharded controller's shards
(shards), move artifacts (in a pod)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from zen_flow import __version__, config
from zen_flow.core.shards import MAX_SHARDS


def _cmd_version(_: argparse.Namespace) -> int:
    from zen_flow.validation import BUILD  # the image's are compiled (mypyc); a pip install's, Python

    print(f"zen-flow {__version__}")
    print(f"admission rules: {BUILD}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from zen_flow.controller.app import run_controller

    try:
        settings = config.load(args)
    except ValueError as exc:
        print(f"zen-flow run: {exc}", file=sys.stderr)
        return 2
    return run_controller(settings)


def _cmd_validate(args: argparse.Namespace) -> int:
    from zen_flow.cli.overrides import parse_overrides
    from zen_flow.cli.validate import EXIT_UNREADABLE, validate_paths

    try:
        overrides = parse_overrides(args.parameters)
    except ValueError as exc:
        print(f"zen-flow validate: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    try:
        return validate_paths(args.paths, sys.stdout, sys.stderr, overrides)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        raise  # the reader went away (`| head`): zen_flow.__main__ ends quietly
    except Exception as exc:  # a bug of ours must still be one line, not a traceback
        print(f"zen-flow validate: internal error: {exc!r}", file=sys.stderr)
        return EXIT_UNREADABLE


def _cmd_completion(args: argparse.Namespace) -> int:
    from zen_flow.cli.completion import script

    print(script(args.shell), end="")
    return 0


def _cmd_artifact(args: argparse.Namespace) -> int:
    from zen_flow.cli.artifact import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zen-flow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func=_cmd_version)

    p = sub.add_parser("run", help="run the controller (and its webhooks, metrics and probes)")
    config.add_arguments(p)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "validate",
        help="validate JobFlow YAML files or directories offline",
        description="Validate JobFlow YAML files or directories offline, with the webhook's rules and the\n"
        "schema's keys (a misspelt one would be dropped): one line per error on stdout (FILE: field:\n"
        "problem), then how many flows were checked on stderr.\n"
        "Directories are searched for *.yaml and *.yml; documents of other APIs are skipped (a kind\n"
        "zen-flow does not have, e.g. `Jobflow`, is an error).\n"
        "Exit status: 0 every flow is valid; 2 a flow is invalid or a file could not be read.",
        epilog="example: zen-flow validate flows/ -p env=prod",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument(
        "-p",
        "--parameter",
        dest="parameters",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override the flows' argument NAME (spec.arguments.parameters) before validating",
    )
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser(
        "artifact", help="move a step's artifacts: run by zen-flow's containers in the step's pod"
    )
    from zen_flow.cli.artifact import add_arguments

    add_arguments(p)
    p.set_defaults(func=_cmd_artifact)

    from zen_flow.cli.flow_parser import add_flow_commands

    add_flow_commands(sub)

    from zen_flow.cli.cron_parser import add_cron_commands

    add_cron_commands(sub)

    from zen_flow.cli.archive_parser import add_archive_commands

    add_archive_commands(sub)

    from zen_flow.cli.crd_check import add_crd_commands

    add_crd_commands(sub)

    _add_shards_command(sub)

    from zen_flow.cli.completion import SHELLS

    p = sub.add_parser(
        "completion",
        help="print a shell completion script",
        description="Print a completion script for bash, zsh or fish: commands, options, their values and\n"
        "the names of flows and steps on the cluster (with your kubeconfig, --context and -n as typed).",
        epilog="examples:\n  source <(zen-flow completion bash)        # in ~/.bashrc\n"
        '  zen-flow completion zsh > "${fpath[1]}/_zen-flow"\n'
        "  zen-flow completion fish > ~/.config/fish/completions/zen-flow.fish",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("shell", choices=SHELLS)
    p.set_defaults(func=_cmd_completion)
    return parser


SHARDS_EXAMPLES = """\
examples:
  zen-flow shards                              # the controller in zen-flow-system
  zen-flow shards --instance-id team-a         # the Leases of instance team-a
  zen-flow shards -n team-a nightly            # which shard, and which replica, reconcile a flow
  zen-flow shards --flow team-a/nightly -o json"""


def _cmd_shards(args: argparse.Namespace) -> int:
    from zen_flow.cli import session, shards

    return session.run(shards.shards, args)


def _shard_count(text: str) -> int:
    """`--shards N`: the controller's own range (`zen-flow run --shards`)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= n <= MAX_SHARDS:
        raise argparse.ArgumentTypeError(f"{n}: a controller runs with 1 to {MAX_SHARDS} shards")
    return n


def _add_shards_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from zen_flow.cli.completion import any_flow_names, flow_names
    from zen_flow.cli.session import add_client_arguments

    p = sub.add_parser(
        "shards",
        help="who holds which shard of a controller run with --shards, and which shard a flow is in",
        description="List the shard Leases of a controller run with --shards N: each shard's holder (a\n"
        "replica's identity), when it last renewed and whether its Lease has expired (by this machine's\n"
        "clock); with a flow, the shard it is hashed into and the replica holding it.",
        epilog=SHARDS_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_client_arguments(p)
    name = p.add_argument("name", nargs="?", help="a flow of the namespace (-n): which shard and replica")
    name.completer = flow_names  # type: ignore[attr-defined]  # read by argcomplete
    flow = p.add_argument("--flow", metavar="NAMESPACE/NAME", help="a flow: which shard and replica")
    flow.completer = any_flow_names  # type: ignore[attr-defined]
    p.add_argument(
        "--leader-election-namespace",
        default="",
        help="the controller's namespace, where its Leases are (default: zen-flow-system)",
    )
    p.add_argument(
        "--leader-election-name",
        default="",
        help="the controller's Lease name (default: zen-flow-controller, or zen-flow-controller-<instance "
        "id>), as `zen-flow run` takes it",
    )
    p.add_argument("--instance-id", default="", help="the controller instance (`zen-flow run --instance-id`)")
    p.add_argument(
        "--shards",
        type=_shard_count,
        metavar="N",
        help=f"the controller's --shards, 1 to {MAX_SHARDS} (default: its Leases')",
    )
    p.add_argument("-o", "--output", choices=["json"], help="json: the shards (or the flow's) as JSON")
    p.set_defaults(func=_cmd_shards)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    if "_ARGCOMPLETE" in os.environ:  # the shell asks for completions (zen-flow completion SHELL)
        from zen_flow.cli.completion import answer

        answer(parser)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code
