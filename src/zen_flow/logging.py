"""structlog set-up: JSON lines in a cluster, readable colour on a terminal; one format for every line.

- zen-flow's own loggers are `get_logger(__name__)`: every line carries `logger` (the module), `level`,
  `timestamp` and `event`.
- Libraries log through stdlib `logging` (aiohttp's access log, asyncio's "Task exception was never
  retrieved"), and Python warnings go there too (`logging.captureWarnings`): a `ProcessorFormatter` runs
  them through the same processors and renderer, so with `--log-format json` every line of stderr is
  one JSON object, with the stdlib logger's name as `logger`.
- A reconcile binds `flow=<namespace/name>` and `reconcile_id` with `structlog.contextvars`, so every
  line logged while a flow is reconciled names both without passing a logger around.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog
from structlog.typing import Processor


def configure(fmt: str = "auto", level: str = "info") -> None:
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: Processor = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if use_console
        else structlog.processors.JSONRenderer()
    )
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.add_logger_name,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_NamedLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Libraries stay quiet unless debugging (aiohttp logs every request at info on its access logger).
    root.setLevel(max(numeric, logging.WARNING))
    logging.captureWarnings(True)


class _NamedLoggerFactory:
    """PrintLoggers that know their name (`get_logger(name)` passes it), which `add_logger_name` reads."""

    def __init__(self, file: TextIO) -> None:
        self._file = file

    def __call__(self, *args: Any) -> structlog.PrintLogger:
        logger = structlog.PrintLogger(self._file)
        logger.name = str(args[0]) if args else "zen_flow"  # type: ignore[attr-defined]
        return logger


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    """The logger of module `name`: its lines carry `logger=name`."""
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger
