"""The `zen-flow` command: run the controller, validate flows, start a local cluster, try it out."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from zen_flow import __version__, config


def _cmd_version(_: argparse.Namespace) -> int:
    print(f"zen-flow {__version__}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from zen_flow.app import run_controller

    try:
        settings = config.load(args)
    except ValueError as exc:
        print(f"zen-flow run: {exc}", file=sys.stderr)
        return 2
    return run_controller(settings)


def _cmd_validate(args: argparse.Namespace) -> int:
    from zen_flow.validation.cli import validate_paths

    return validate_paths(args.paths, sys.stdout, sys.stderr)


def _cmd_cluster(args: argparse.Namespace) -> int:
    from zen_flow.devcluster.cli import run_cluster

    return run_cluster(args.profile)


def _cmd_dev(args: argparse.Namespace) -> int:
    from zen_flow.devmode import run_dev

    return run_dev(examples=args.examples, exit_when_done=args.exit_when_done, timeout=args.timeout)


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
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("cluster", help="start a local control plane in the foreground (tests, demos)")
    p.add_argument("--profile", choices=["apiserver", "full"], default="full")
    p.set_defaults(func=_cmd_cluster)

    p = sub.add_parser("dev", help="local cluster + CRD + controller + example flows, with live progress")
    p.add_argument(
        "examples", nargs="*", metavar="FLOW.yaml", help="flows to apply (default: the bundled examples)"
    )
    p.add_argument("--exit-when-done", action="store_true", help="stop everything once the flows finished")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the flows")
    p.set_defaults(func=_cmd_dev)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code
