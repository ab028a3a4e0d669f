"""`python -m zen_flow` and the `zen-flow` console script."""

from __future__ import annotations

import sys


def main() -> None:
    from zen_flow.cli import main as cli_main

    sys.exit(cli_main())


if __name__ == "__main__":
    main()
