"""`python -m zen_flow` and the `zen-flow` console script."""

from __future__ import annotations

import os
import sys

# What a shell reports for a command killed by SIGPIPE (128 + 13), as kubectl's is when `| head` exits.
EXIT_BROKEN_PIPE = 141


def main() -> None:
    from zen_flow.cli import main as cli_main

    try:
        code = cli_main()
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`zen-flow list | head -1`): stop quietly, as Unix tools do. stdout now
        # points at /dev/null, so the interpreter's own flush at exit cannot fail again and print
        # "Exception ignored ... BrokenPipeError".
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = EXIT_BROKEN_PIPE
    sys.exit(code)


def kubectl_complete() -> None:
    """`kubectl_complete-jobflow`: completes `kubectl jobflow ...` for kubectl 1.26+."""
    from zen_flow.cli import build_parser
    from zen_flow.cli.completion import kubectl_plugin

    sys.exit(kubectl_plugin(build_parser(), sys.argv[1:]))


if __name__ == "__main__":
    main()
