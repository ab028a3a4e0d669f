"""`python -m zen_flow` and the `zen-flow` console script."""

from __future__ import annotations

import sys


def main() -> None:
    from zen_flow.cli import main as cli_main

    sys.exit(cli_main())


def kubectl_complete() -> None:
    """`kubectl_complete-jobflow`: completes `kubectl jobflow ...` for kubectl 1.26+."""
    from zen_flow.cli import build_parser
    from zen_flow.cli.completion import kubectl_plugin

    sys.exit(kubectl_plugin(build_parser(), sys.argv[1:]))


if __name__ == "__main__":
    main()
