"""`zen-flow-dev`: the developer commands behind `make cluster`, `make dev`, `make bench` and
`make test-chaos`, and `webhooks` (a local controller's admission webhooks, registered by URL).

They live here, not in `zen-flow`, because they need the source checkout (config/crd, examples) and
the control-plane binaries: an installed zen-flow (wheel or image) has neither.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _cmd_cluster(args: argparse.Namespace) -> int:
    from zen_flow_dev.cluster.cli import run_cluster

    return run_cluster(args.profile)


def _cmd_dev(args: argparse.Namespace) -> int:
    from zen_flow_dev.dev import run_dev

    return run_dev(examples=args.examples, exit_when_done=args.exit_when_done, timeout=args.timeout)


def _cmd_bench(args: argparse.Namespace) -> int:
    from zen_flow_dev.bench.cli import main as bench_main

    return bench_main(args.rest)


def _cmd_chaos(args: argparse.Namespace) -> int:
    from zen_flow_dev.chaos import main as chaos_main

    return chaos_main(args.rest)


def _cmd_webhooks(args: argparse.Namespace) -> int:
    from zen_flow_dev.webhooks import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zen-flow-dev", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("cluster", help="start a local control plane in the foreground (tests, demos)")
    p.add_argument("--profile", choices=["apiserver", "full", "node"], default="full")
    p.set_defaults(func=_cmd_cluster)

    p = sub.add_parser("dev", help="local cluster + CRD + controller + example flows, with live progress")
    p.add_argument(
        "examples",
        nargs="*",
        metavar="FLOW.yaml",
        help="flows to apply (default: examples/dag.yaml and examples/chain.yaml)",
    )
    p.add_argument("--exit-when-done", action="store_true", help="stop everything once the flows finished")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the flows")
    p.set_defaults(func=_cmd_dev)

    p = sub.add_parser(
        "webhooks", help="certificates and URL-registered webhook configurations for a local controller"
    )
    from zen_flow_dev.webhooks import add_arguments

    add_arguments(p)
    p.set_defaults(func=_cmd_webhooks)

    p = sub.add_parser("bench", help="the benchmarks (`zen-flow-dev bench --help` for their options)")
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("chaos", help="SIGKILL the controller at random during 100 flows; count duplicates")
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_chaos)
    return parser


# These take their own options (and their own --help): everything after the command name is theirs.
_PASS_THROUGH = {"bench": _cmd_bench, "chaos": _cmd_chaos}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _PASS_THROUGH:
        return _PASS_THROUGH[argv[0]](argparse.Namespace(rest=argv[1:]))
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code
