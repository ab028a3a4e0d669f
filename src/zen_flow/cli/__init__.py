"""The `zen-flow` command: run the controller, validate flows offline, move artifacts (in a pod)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from zen_flow import __version__, config


def _cmd_version(_: argparse.Namespace) -> int:
    print(f"zen-flow {__version__}")
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
    except Exception as exc:  # a bug of ours must still be one line, not a traceback
        print(f"zen-flow validate: internal error: {exc!r}", file=sys.stderr)
        return EXIT_UNREADABLE


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

    p = sub.add_parser("validate", help="validate JobFlow YAML files or directories offline")
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

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code
