"""`zen-flow artifact download|upload`: run inside a step's pod, never by the controller.

The plan is the JSON in $ZF_ARTIFACTS (zen_flow.api.transfer), written by the controller into the Job.
Exit status: 0 done (upload: always, the report says what failed), 1 a download failed, 2 the plan is
unreadable.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from zen_flow.api.transfer import PLAN_ENV, TransferPlan

EXIT_BAD_PLAN = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("direction", choices=("download", "upload"))
    parser.add_argument(
        "--message-file",
        type=Path,
        default=Path("/dev/termination-log"),
        help="where the result goes (the container's terminationMessagePath)",
    )
    parser.add_argument(
        "--scratch", type=Path, default=Path("/tmp"), help="upload: a writable directory for archives"
    )
    parser.add_argument(
        "--ready-file", type=Path, help="upload: created once the uploader listens for SIGTERM"
    )


def run(args: argparse.Namespace) -> int:
    from zen_flow.transfer.runner import run_download, run_upload

    try:
        plan = TransferPlan.model_validate_json(os.environ.get(PLAN_ENV) or "{}")
    except ValidationError as err:
        text = f"zen-flow artifact: ${PLAN_ENV} is not a transfer plan: {err.error_count()} error(s)"
        print(text, file=sys.stderr)
        args.message_file.write_text(text)
        return EXIT_BAD_PLAN
    if args.direction == "download":
        return run_download(plan, args.message_file)
    return run_upload(plan, args.message_file, args.scratch, args.ready_file)
