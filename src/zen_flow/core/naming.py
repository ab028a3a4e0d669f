"""Names and label values that are always valid for Kubernetes (JOBFLOW_API.md decision 13)."""

from __future__ import annotations

import hashlib
import re

MAX_NAME = 63  # DNS-1123 label: Job names become pod label values, so 63, not 253
# Tried with fullmatch, never match and `$`: Python's `$` also matches before a final "\n", so "a\n" would
# pass for "a" (the apiserver's RE2 `$` is the end of the text, and it refuses it).
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")


def is_dns1123_label(value: str) -> bool:
    return len(value) <= MAX_NAME and bool(_DNS1123_LABEL.fullmatch(value))


def is_dns1123_subdomain(value: str) -> bool:
    return len(value) <= 253 and bool(_DNS1123_SUBDOMAIN.fullmatch(value))


def is_label_value(value: str) -> bool:
    return len(value) <= MAX_NAME and bool(_LABEL_VALUE.fullmatch(value))


def is_qualified_name(key: str) -> bool:
    """A label/annotation key: optional DNS-1123 subdomain prefix + '/' + a name of at most 63 chars."""
    prefix, _, name = key.rpartition("/")
    if prefix and not is_dns1123_subdomain(prefix):
        return False
    return len(name) <= MAX_NAME and bool(_QUALIFIED_NAME.fullmatch(name))


def short_hash(*parts: str, length: int = 8) -> str:
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()
    return digest[:length]


def job_name(flow: str, step: str, attempt: int) -> str:
    """Deterministic Job name for one attempt of a step: `<flow>-<step>-<hash>`, plus `-r<n>` on retries.

    Deterministic names make creates idempotent: after a crash the controller re-derives the same name
    and adopts the Job (409 AlreadyExists, and the Job's owner is the flow) instead of creating a
    duplicate. A flow deleted and created again under its name derives the old flow's names too: its
    creates wait until the garbage collector has removed the old Jobs (controller/executor.py). The hash
    of the (flow, step) pair is always there because `-` is legal inside names: without it flow `a` step
    `b-c` and flow `a-b` step `c` (same namespace) would both get `a-b-c`, and step `s` attempt 1 would
    collide with a step named `s-r1`. The hash ends in a hex digit and a retry suffix in `-r<n>`, so the
    parts never blur. Long names are truncated before the hash.
    """
    suffix = ("-" + short_hash(flow, step)) + (f"-r{attempt}" if attempt else "")
    base = f"{flow}-{step}"
    keep = max(1, MAX_NAME - len(suffix))
    return base[:keep].rstrip("-.") + suffix


def label_value(value: str) -> str:
    """`value` itself when it is a valid label value, else a cleaned, truncated form with a hash.

    The hash is added to every altered value so two different inputs never share a label value (two
    long step names with the same first 63 characters, or `a/b` versus `a-b`).
    """
    if is_label_value(value):
        return value
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "-", value).strip("-_.")
    tag = short_hash(value)
    base = cleaned[: MAX_NAME - len(tag) - 1].rstrip("-_.")
    return f"{base}-{tag}" if base else tag


MAX_OBJECT_NAME = 253  # DNS-1123 subdomain: PersistentVolumeClaim and ConfigMap names


def resource_name(flow: str, template: str) -> str:
    """The name of an object created from `spec.resourceTemplates`: `<flow>-<template>`.

    Deterministic, so a create repeated after a crash finds its own object (409) and adopts it. Longer
    than 253 characters (the validator refuses such flows; a flow admitted without the webhook may
    still have one), it is truncated and a hash of the full name appended, so it stays unique.
    """
    name = f"{flow}-{template}"
    if len(name) <= MAX_OBJECT_NAME:
        return name
    suffix = "-" + short_hash(flow, template)
    return name[: MAX_OBJECT_NAME - len(suffix)].rstrip("-.") + suffix
