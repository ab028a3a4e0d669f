"""A flow's logical time, `{{.JobFlow.ScheduledTime}}` in its steps (what Argo's `{{workflow.scheduledTime}}`
and Airflow's `{{ ds }}` give; Argo's form itself is not substituted here): which night a nightly flow
processes, also when it runs late or is run again. Pure.

The value is RFC 3339 in UTC to the second (`2026-12-07T02:30:00Z`): the flow's
`workflow.kube-zen.io/scheduled-time` annotation when it holds an RFC 3339 time (a CronJobFlow's scheduled
run carries its run time, `zen-flow cron trigger --scheduled-time` the time asked for, a Flow step's
child its parent's value), else the flow's creationTimestamp; anything else there (a date, a time without
an offset) counts as no annotation, as if a user's note.

It is decided from the flow object alone, so every replica and every plan (a memoized step's second
plan too) renders the same Job. It is read whenever a Job, a memoize key (looked up, and again when the
result is stored) or a child flow is built; the annotation cannot change once the flow started (the
webhook, validation/update.py, and the admission policy `jobflow-spec-immutable` refuse it) and
creationTimestamp never does, so every attempt of every step sees one value; a change before the start
is recorded replaces the first Jobs (controller/first_jobs.py). With neither the webhook nor the policy,
a change reaches what is built after it: later Jobs and child flows, and the key a memoized step's result
is stored under when it succeeds after the change (a Job rendered for the old value stores its result
under the new value's key); an attempt's Job has one name and is created once, so one attempt never
gets two Jobs.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from zen_flow.api.constants import ANNOTATION_SCHEDULED_TIME
from zen_flow.api.meta import ObjectMeta, format_time

# RFC 3339's date-time (section 5.6): a full date, `T`, a full time with optional fraction, and `Z` or an
# offset; no other ISO 8601 form (a bare date, no offset, a week date) is one.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})", re.ASCII)


def parse_rfc3339(text: str) -> datetime | None:
    """The instant an RFC 3339 date-time names, in UTC and cut to the second; None for any other text (a
    leap second too: Python's clock has none)."""
    if _RFC3339.fullmatch(text) is None:
        return None
    # The fraction is cut (the value is to the second); what follows it is the offset.
    date_time, zone = text[:19].upper(), text[19:].lstrip(".0123456789").upper()
    try:
        moment = datetime.fromisoformat(date_time + zone.replace("Z", "+00:00"))
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):  # 2026-13-07, 25:00, or out of datetime's range in UTC
        return None


def scheduled_time(meta: ObjectMeta) -> str:
    """The flow's logical time (see the module's docstring); "" for a flow never stored (no
    creationTimestamp: a test's, `zen-flow validate`'s)."""
    annotated = meta.annotations.get(ANNOTATION_SCHEDULED_TIME)
    moment = parse_rfc3339(annotated) if annotated is not None else None
    if moment is None:
        moment = meta.creation_timestamp
    return format_time(moment) if moment is not None else ""
