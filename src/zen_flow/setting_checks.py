"""What is wrong with the settings that need more than a type to check: shards, the CloudEvents sink,
the archive store and the webhook's limits on load. Kept apart from `zen_flow.config` (which parses the
settings; `zen_flow.settings` holds them) so that each reads on its own; `config.load` runs them all, and
`zen-flow archive` runs the archive's.
"""

from __future__ import annotations

import math
import re
import ssl
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from zen_flow.addresses import shown_url
from zen_flow.archive_keys import ACCESS_KEY_ENV as ARCHIVE_ACCESS_KEY_ENV
from zen_flow.archive_keys import SECRET_KEY_ENV as ARCHIVE_SECRET_KEY_ENV
from zen_flow.core.naming import is_dns1123_subdomain, is_label_value
from zen_flow.core.shards import MAX_SHARDS

# A log is held in memory while written, and `zen-flow archive logs` reads objects of up to 16 MiB.
MAX_LOG_LIMIT_BYTES = 8 * 1024 * 1024

if TYPE_CHECKING:
    from zen_flow.settings import Settings


def shard_problems(s: Settings) -> list[str]:
    if not 1 <= s.shards <= MAX_SHARDS:
        return [f"--shards must be between 1 and {MAX_SHARDS} (got {s.shards})"]
    if s.shards == 1:
        return []
    if not s.leader_elect:
        return ["--shards above 1 needs --leader-elect (each shard is held on a Lease)"]
    if s.identity:
        # Two replicas given one identity would each count the other's shard Leases as their own.
        return [
            "--identity cannot be set with --shards above 1: every replica needs an identity of its own "
            "(the default, <hostname>_<random>)"
        ]
    if is_dns1123_subdomain(s.lease_name) and not is_label_value(s.lease_name):
        # The shard and member Leases carry it as a label value, so one LIST finds them all.
        return [
            f"--shards: the Lease name {s.lease_name!r} must be a valid label value too (at most 63 "
            "characters) when sharding: shorten --leader-election-name"
        ]
    return []


def cloudevents_problems(s: Settings) -> list[str]:
    problems: list[str] = []
    if not math.isfinite(s.cloudevents_timeout) or s.cloudevents_timeout <= 0:
        problems.append("--cloudevents-timeout must be a finite number of seconds > 0")
    if not s.cloudevents_sink:
        if s.cloudevents_ca_file:
            problems.append("--cloudevents-ca-file needs an https --cloudevents-sink")
        return problems
    shown = shown_url(s.cloudevents_sink)
    try:
        url = urlsplit(s.cloudevents_sink)
        port = url.port  # raises on a port that is not a number or out of range
    except ValueError as exc:
        return [*problems, f"--cloudevents-sink: {shown!r} is not a URL ({exc})"]
    if any(c.isspace() or not c.isprintable() for c in s.cloudevents_sink):
        # urlsplit keeps them (in the host too); the request would fail on every event, or go elsewhere.
        problems.append(f"--cloudevents-sink: {shown!r} holds whitespace or a control character")
    elif url.scheme not in ("http", "https") or not url.hostname:
        problems.append(
            f"--cloudevents-sink: {shown!r} is not an http or https URL with a host "
            "(e.g. http://receiver.ns.svc:8080/)"
        )
    elif port == 0:
        problems.append(f"--cloudevents-sink: {shown!r} names port 0, which nothing listens on")
    elif s.cloudevents_ca_file and url.scheme != "https":
        problems.append("--cloudevents-ca-file needs an https --cloudevents-sink")
    if s.cloudevents_ca_file:
        try:  # read now: a wrong path or file stops the start, not every delivery later
            ssl.create_default_context(cafile=s.cloudevents_ca_file)
        except (OSError, ssl.SSLError) as exc:
            problems.append(
                f"--cloudevents-ca-file: {s.cloudevents_ca_file!r} is not a readable PEM bundle ({exc})"
            )
    return problems


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def archive_problems(s: Settings) -> list[str]:
    """What is wrong with the --archive-s3-* settings (the controller's and `zen-flow archive`'s)."""
    problems: list[str] = []
    if not math.isfinite(s.archive_s3_timeout) or s.archive_s3_timeout <= 0:
        problems.append("--archive-s3-timeout must be a finite number of seconds > 0")
    if not math.isfinite(s.archive_max_delay_seconds) or s.archive_max_delay_seconds < 0:
        problems.append("--archive-max-delay-seconds must be a finite number of seconds >= 0")
    if not 1 <= s.archive_log_limit_bytes <= MAX_LOG_LIMIT_BYTES:
        problems.append(f"--archive-log-limit-bytes must be between 1 and {MAX_LOG_LIMIT_BYTES}")
    if bool(s.archive_s3_endpoint) != bool(s.archive_s3_bucket):
        return [*problems, "--archive-s3-endpoint and --archive-s3-bucket go together (both, or neither)"]
    if not s.archive_s3_endpoint:
        return problems
    shown = shown_url(s.archive_s3_endpoint)
    try:
        url = urlsplit(s.archive_s3_endpoint)
        _ = url.port  # raises on a port that is not a number or out of range
    except ValueError as exc:
        return [*problems, f"--archive-s3-endpoint: {shown!r} is not a URL ({exc})"]
    if url.scheme not in ("http", "https") or not url.hostname or url.path.strip("/") or url.query:
        problems.append(
            f"--archive-s3-endpoint: {shown!r} must be http(s)://host[:port] with no path "
            "(e.g. https://s3.eu-west-1.amazonaws.com, http://minio.storage.svc:9000)"
        )
    elif url.username or url.password:
        problems.append(
            f"--archive-s3-endpoint: {shown!r} holds user info: give the keys in "
            f"${ARCHIVE_ACCESS_KEY_ENV} and ${ARCHIVE_SECRET_KEY_ENV}"
        )
    if not _BUCKET.fullmatch(s.archive_s3_bucket) or ".." in s.archive_s3_bucket:
        problems.append(
            f"--archive-s3-bucket: {s.archive_s3_bucket!r} is not a bucket name (3-63 lower-case "
            "letters, digits, '.' and '-')"
        )
    if s.archive_s3_prefix.startswith("/") or any(not c.isprintable() for c in s.archive_s3_prefix):
        problems.append(f"--archive-s3-prefix: {s.archive_s3_prefix!r} must not start with '/'")
    if s.archive_s3_ca_file:
        if url.scheme != "https":
            problems.append("--archive-s3-ca-file needs an https --archive-s3-endpoint")
        try:
            ssl.create_default_context(cafile=s.archive_s3_ca_file)
        except (OSError, ssl.SSLError) as exc:
            problems.append(
                f"--archive-s3-ca-file: {s.archive_s3_ca_file!r} is not a readable PEM bundle ({exc})"
            )
    return problems


# The largest admission request body the webhook reads (webhook/bodies.py, MAX_BODY_BYTES; the config
# layer does not import the webhook, and a test holds the two equal): a body budget below it would
# refuse the largest legitimate reviews for ever.
LARGEST_REVIEW_BYTES = 3 * 1024 * 1024 + 64 * 1024


def webhook_load_problems(s: Settings) -> list[str]:
    problems = []
    if s.webhook_max_connections < 1 or s.webhook_max_connections_per_ip < 0:
        problems.append(
            "--webhook-max-connections must be >= 1 and --webhook-max-connections-per-ip >= 0 (0: no cap)"
        )
    if s.webhook_body_budget_bytes < LARGEST_REVIEW_BYTES:
        problems.append(
            f"--webhook-body-budget-bytes must be >= {LARGEST_REVIEW_BYTES} (the largest request body)"
        )
    if not 1 <= s.webhook_namespace_review_threads <= s.webhook_review_threads:
        problems.append(
            "--webhook-review-threads must be >= 1 and --webhook-namespace-review-threads between 1 and it"
        )
    if not s.webhook_queue_wait_seconds > 0:
        problems.append("--webhook-queue-wait-seconds must be > 0")
    return problems
