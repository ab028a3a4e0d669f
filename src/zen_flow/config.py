"""Controller settings: every option is a flag and an environment variable (`ZEN_FLOW_<NAME>`).

Precedence: command-line flag > environment variable > default. The settings object is frozen and
passed down explicitly; nothing reads the environment after start-up. The options themselves (types,
defaults, help) are `zen_flow.settings.Settings`, re-exported here: the controller, the CLI and
tools/settings-table.py import `zen_flow.config.Settings`.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from zen_flow.addresses import split_addr
from zen_flow.archive_keys import ArchiveKeys
from zen_flow.core.instances import instance_id_problem
from zen_flow.core.naming import is_dns1123_subdomain
from zen_flow.planner.archive_logs import LOG_MODES
from zen_flow.setting_checks import (
    archive_problems,
    cloudevents_problems,
    shard_problems,
    webhook_load_problems,
)
from zen_flow.settings import DEFAULT_LEASE_NAME as DEFAULT_LEASE_NAME
from zen_flow.settings import Settings as Settings

ENV_PREFIX = "ZEN_FLOW_"


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _convert(kind: Any, raw: str) -> Any:
    if kind in (bool, "bool"):
        return _parse_bool(raw)
    if kind in (int, "int"):
        return int(raw)
    if kind in (float, "float"):
        return float(raw)
    if kind in ("tuple[str, ...]",):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if kind in ("str | None",):
        return raw or None
    return raw


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for f in fields(Settings):
        parser.add_argument(
            _flag(f.name),
            dest=f.name,
            default=None,
            metavar=f.name.upper(),
            help=f"{f.metadata.get('help', '')} [env {_env_name(f.name)}; default {f.default!r}]",
        )


def load(args: argparse.Namespace | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Build settings from parsed flags and the environment; raises ValueError naming the bad option."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for f in fields(Settings):
        raw = getattr(args, f.name, None) if args is not None else None
        source = _flag(f.name)
        if raw is None and _env_name(f.name) in env:
            raw, source = env[_env_name(f.name)], _env_name(f.name)
        if raw is None:
            continue
        try:
            values[f.name] = _convert(f.type, raw)
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None
    settings = Settings(**values)
    _check(settings)
    if settings.archive_enabled:
        ArchiveKeys(env)  # missing keys stop the start, not every write later
    return settings


def _check(s: Settings) -> None:
    problems: list[str] = []
    if s.workers < 1:
        problems.append("--workers must be >= 1")
    if not 0 <= s.start_workers <= s.workers:
        problems.append("--start-workers must be between 0 (automatic) and --workers")
    if s.max_running_flows < 0 or s.namespace_max_running_flows < 0:
        problems.append("--max-running-flows and --namespace-max-running-flows must be >= 0 (0: no limit)")
    if s.qps < 0 or s.burst < 1:
        problems.append("--qps must be >= 0 (0: no client-side limit) and --burst >= 1")
    if s.expression_budget <= 0 or s.expression_workers < 1:
        problems.append("--expression-budget must be > 0 and --expression-workers >= 1")
    if s.progress_deadline_seconds < 0:
        problems.append("--progress-deadline-seconds must be >= 0 (0 disables)")
    if s.event_qps <= 0 or s.event_burst < 1:
        problems.append("--event-qps must be > 0 and --event-burst >= 1")
    if not s.lease_duration > s.renew_deadline > 1.2 * s.retry_period > 0:
        problems.append("need --lease-duration > --renew-deadline > 1.2 x --retry-period > 0")
    if (problem := instance_id_problem(s.instance_id)) is not None:
        problems.append(f"--instance-id: {problem}")
    elif s.leader_elect and not is_dns1123_subdomain(s.lease_name):
        # A label value may hold capitals and underscores; a Lease's name may not.
        named = "" if s.leader_election_name else f" (made from --instance-id {s.instance_id!r})"
        problems.append(
            f"--leader-election-name: {s.lease_name!r}{named} is not a valid Lease name (lower-case letters, "
            "digits, '-' and '.'): set --leader-election-name"
        )
    problems.extend(shard_problems(s))
    if s.step_events not in ("notable", "all"):
        problems.append("--step-events must be notable or all")
    if s.archive_logs not in LOG_MODES:
        problems.append(f"--archive-logs must be {', '.join(LOG_MODES[:-1])} or {LOG_MODES[-1]}")
    if s.log_format not in ("json", "console", "auto"):
        problems.append("--log-format must be json, console or auto")
    problems.extend(cloudevents_problems(s))
    problems.extend(archive_problems(s))
    if s.webhook_client_names and not s.webhook_client_ca:
        problems.append("--webhook-client-names needs --webhook-client-ca (the CA that signs those names)")
    problems.extend(webhook_load_problems(s))
    for name, addr in (("--metrics-addr", s.metrics_addr), ("--webhook-addr", s.webhook_addr)):
        if addr:  # empty disables the server
            try:
                split_addr(addr)
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
    if problems:
        raise ValueError("; ".join(problems))
