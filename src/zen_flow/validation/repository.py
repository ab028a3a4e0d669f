"""`spec.artifactRepository`: where a flow stores the output artifacts that name no `s3` of their own
(planner/artifacts.py). Its `s3` is an output's `s3` (the same rules, check_s3), with `keyPrefix` in
place of `key`: the repository holds many objects, each under its own default key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zen_flow.core.naming import MAX_NAME
from zen_flow.validation.errors import forbidden, invalid, too_long
from zen_flow.validation.formats import s3_key_problem
from zen_flow.validation.io import check_s3
from zen_flow.validation.limits import MAX_FLOW_NAME, MAX_S3_KEY_BYTES
from zen_flow.validation.reader import Reader

PATH = "spec.artifactRepository"
# A key the repository stores under is <keyPrefix>/<key tail> (planner/artifacts.storage_key), the tail
# <namespace>/<flow>/<uid prefix>/<step>/<artifact>: at most 5 slashes, a namespace (a DNS-1123 label: 63),
# a flow name (MAX_FLOW_NAME: 63), 8 of the uid, a step name (a label, a matrix item's "-NNN" included:
# 63) and an artifact name (a DNS-1123 subdomain: 253), all ASCII: 455 bytes. 512 + 455 = 967, within
# the 1,024 bytes S3 allows a key (MAX_S3_KEY_BYTES).
MAX_KEY_TAIL = 5 + 63 + MAX_FLOW_NAME + 8 + MAX_NAME + 253
MAX_KEY_PREFIX = 512


def has_repository(spec: Mapping[str, Any]) -> bool:
    """Does the raw flow spec name a repository: then every output artifact is stored (the repository's
    own errors are check_repository's)."""
    repository = spec.get("artifactRepository")
    return isinstance(repository, Mapping) and isinstance(repository.get("s3"), Mapping)


def check_repository(r: Reader, value: Any) -> None:
    repository = r.mapping(value, PATH)
    if repository is None:
        return
    s3 = r.mapping(repository.get("s3"), PATH + ".s3", require=True)
    if s3 is None:
        return
    path = PATH + ".s3"
    if s3.get("key") is not None:
        r.add(
            forbidden(
                path + ".key",
                "the repository stores each output under its own key, "
                "<keyPrefix>/<namespace>/<flow>/<uid prefix>/<step>/<artifact>: set keyPrefix",
            )
        )
    check_s3(r, {k: v for k, v in s3.items() if k != "key"}, path)
    prefix = r.string(s3.get("keyPrefix"), path + ".keyPrefix")
    if prefix is None:
        return
    # The planner takes off the slashes around it (planner/artifacts.key_prefix); the rest is a key's.
    if not prefix.strip("/"):
        r.add(
            invalid(path + ".keyPrefix", prefix, "must hold a name (e.g. team-a/artifacts), not only slashes")
        )
    elif problem := s3_key_problem(prefix.strip("/")):
        r.add(invalid(path + ".keyPrefix", prefix, problem))
    elif len(prefix.encode()) > MAX_KEY_PREFIX:
        r.add(
            too_long(
                path + ".keyPrefix",
                prefix,
                MAX_KEY_PREFIX,
                f"an S3 key has at most {MAX_S3_KEY_BYTES} bytes, and the prefix leaves room for "
                "<namespace>/<flow>/<uid prefix>/<step>/<artifact>",
            )
        )
