"""Step memoization (`spec.steps[].memoize`): a Job step whose result is already known for the same key
succeeds without a Job, with the output parameter values stored with it.

The key is the step's `memoize.key` with its placeholders substituted from its resolved inputs, as the
Job template's are; so it is known only once the step is ready to start (its dependencies done, its `when`
true), which only the plan decides. The plan therefore asks: a memoized step ready to start whose entry
it was not given waits, and the plan names what it needs (`Plan.lookups`); the controller reads those
ConfigMap keys and plans again with the answers (`MemoAnswer`). Deciding from the answers stays here,
pure: an entry is used when it was stored less than `maxAge` ago by the plan's clock (the controller's),
not in the future (past a clock skew), and holds every output parameter the step declares now; anything
else (absent, stale, malformed, an output missing) runs the step. Anyone who may write ConfigMaps can
write an entry, so `parse_entry` is the one place that decides whether one is usable at all: whatever
it accepts can be served and written into a status without another check.

A step that succeeds by running stores its outputs (`SaveMemo`) in the plan that marks it Succeeded.
Entries live under a hash of the key (a ConfigMap's data keys allow only `[-._a-zA-Z0-9]`), and the key
is kept in the entry: a hash that is not the key's is no hit. Lost writes: every plan starts again from
observed state; a save made twice (its status write lost) is harmless, and a step whose Job exists is
adopted before a cache is ever consulted (`Starts.create`), so a hit is never applied to a step that ran.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from zen_flow.api.flow_status import ParameterValue, StepOutputValues
from zen_flow.api.jobflow import Memoize, Step
from zen_flow.api.meta import format_time, parse_time
from zen_flow.core.durations import parse_duration
from zen_flow.planner.actions import MemoLookup, SaveMemo
from zen_flow.planner.events import MEMOIZED_MARK
from zen_flow.planner.jobs import JobBuildError
from zen_flow.planner.outputs import MAX_VALUE_BYTES
from zen_flow.planner.parameters import Resolved, flow_fields, substitute_text
from zen_flow.planner.plan_state import PlanState
from zen_flow.planner.steps import StepWork
from zen_flow.planner.timing import after

# The label that makes a ConfigMap a memoize cache: only such are read or written; the controller sets it
# on those it creates (owned by no flow).
MEMO_CACHE_LABEL = "workflow.kube-zen.io/memo-cache"
# How far in the future an entry's time may be (the controllers' clocks differ a little across a
# failover): past it, the entry is no hit, or a stamp far ahead would outlive every maxAge.
CLOCK_SKEW_SECONDS = 300.0
# How soon a plan that still lacks a memoized step's entry is made again (the controller answers at once
# and plans again in the same reconcile; this is the safety net).
LOOKUP_RETRY_SECONDS = 1.0
# What every entry's data key begins with (`data_key`): the only keys of a cache the controller touches.
ENTRY_PREFIX = "memo-"


def data_key(key: str) -> str:
    """The ConfigMap data key of `key`: any key text fits (data keys allow only `[-._a-zA-Z0-9]`)."""
    return ENTRY_PREFIX + hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class MemoEntry:
    key: str
    outputs: Mapping[str, str]
    flow: str  # "namespace/name" of the flow that stored it
    step: str
    time: datetime  # when it was stored, by the controller's clock (UTC)
    # When the maxAge of the step that stored it ends: from then on the controller removes it from the
    # cache on its next save there. None (no maxAge): kept until evicted as one of the oldest.
    expires: datetime | None = None


def encode_entry(entry: MemoEntry) -> str:
    doc = {
        "key": entry.key,
        "outputs": dict(entry.outputs),
        "flow": entry.flow,
        "step": entry.step,
        "time": format_time(entry.time),
    }
    if entry.expires is not None:
        doc["expires"] = format_time(entry.expires)
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def parse_entry(text: str, key: str | None = None) -> MemoEntry | None:
    """The entry `text` holds (for `key`, when given); None when it is another key's or anything about
    it is wrong. Anyone who may write ConfigMaps can write it, so this is the one place that checks it
    all: every string is one UTF-8 can encode (a lone surrogate travels as a JSON escape, and the status
    write that would carry it raised, every reconcile), the times are in range in UTC, the outputs are
    strings. Whatever it returns can be served as it is."""
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict) or not isinstance(found := doc.get("key"), str):
            return None
        if key is not None and found != key:
            return None
        outputs, flow, step = doc.get("outputs"), doc.get("flow"), doc.get("step")
        time, expires = doc.get("time"), doc.get("expires")
        if not isinstance(outputs, dict) or not all(isinstance(v, str) for v in outputs.values()):
            return None
        if not isinstance(flow, str) or not isinstance(step, str) or not isinstance(time, str):
            return None
        if expires is not None and not isinstance(expires, str):
            return None
        for part in (found, flow, step, time, expires or "", *outputs, *outputs.values()):
            part.encode()  # UnicodeEncodeError: a lone surrogate
        # parse_time converts to UTC: a time in range only before that (year 1 at +14:00) overflows here,
        # not later in a subtraction outside any try.
        return MemoEntry(
            found,
            outputs,
            flow,
            step,
            parse_time(time),
            parse_time(expires) if expires is not None else None,
        )
    except (ValueError, TypeError, RecursionError, OverflowError):  # UnicodeEncodeError is a ValueError
        return None


def max_age(memoize: Memoize) -> float | None:
    """Seconds an entry stays usable; None: for ever. One that does not parse (admission refuses it)
    counts as 0: nothing is ever served, rather than everything for ever."""
    if memoize.max_age is None:
        return None
    seconds = parse_duration(memoize.max_age)
    return float(seconds) if seconds is not None and seconds > 0 else 0.0


def expiry(memoize: Memoize, now: datetime) -> datetime | None:
    """When an entry stored `now` stops being usable by the step that stores it; None: never (no maxAge,
    or one past the calendar's end)."""
    limit = max_age(memoize)
    try:
        return now + timedelta(seconds=limit) if limit is not None else None
    except OverflowError:
        return None


def served_outputs(entry: MemoEntry, step: Step, now: datetime) -> StepOutputValues | None:
    """The step's outputs from `entry` if it is fresh and holds every output parameter the step declares
    (in spec order; values over the status limit are not served); else None: the step runs."""
    assert step.memoize is not None
    limit = max_age(step.memoize)
    age = (now - entry.time).total_seconds()
    if age < -CLOCK_SKEW_SECONDS or (limit is not None and age >= limit):
        return None
    declared = step.outputs.parameters if step.outputs is not None else ()
    values = []
    for param in declared:
        value = entry.outputs.get(param.name)
        if value is None or len(value.encode()) > MAX_VALUE_BYTES:
            return None
        values.append(ParameterValue(name=param.name, value=value))
    return StepOutputValues(parameters=tuple(values))


def config_map_of(memoize: Memoize) -> str | None:
    cache = memoize.cache
    return cache.config_map.name or None if cache is not None and cache.config_map is not None else None


def serving_cache(step: Step) -> str | None:
    """The cache the memoized `step` is served from, or None: not memoized, or no cache. Admission requires
    a cache and refuses memoize on a finally step (cleanup must run every time, a rerun's too); a flow that
    started before that rule runs it, never served (its result is still stored: `save_result`)."""
    if step.memoize is None or step.is_finally:
        return None
    return config_map_of(step.memoize)


class Memoization(PlanState):
    """Serving a ready step from its cache entry, and storing a step's result once it succeeded."""

    def memo_key(self, w: StepWork, resolved: tuple[Resolved, ...]) -> str:
        """The step's key, its placeholders substituted (ParameterError when one cannot be)."""
        assert w.spec.memoize is not None
        return substitute_text(w.spec.memoize.key, w.name, resolved, flow_fields(self.flow))

    def from_cache(self, w: StepWork, resolved: tuple[Resolved, ...], attempt: int) -> bool:
        """Did the cache settle the ready step `w` (its attempt `attempt`): Succeeded from a fresh entry,
        or waiting for the entry the plan was not given (a lookup)? False: it runs (no entry, or not one
        to use)."""
        if (config_map := serving_cache(w.spec)) is None:
            return False
        key = self.memo_key(w, resolved)
        answer = self.memos.get(w.name)
        if answer is None or answer.key != key:
            self.lookups.append(MemoLookup(w.name, config_map, data_key(key), key))
            self.wakeups.append(after(self.now, LOOKUP_RETRY_SECONDS))
            return True
        entry = parse_entry(answer.value, key) if answer.value is not None else None
        outputs = served_outputs(entry, w.spec, self.now) if entry is not None else None
        if entry is None or outputs is None:
            return False
        if w.start_time is None:
            w.start_time = self.now
        # A retry served from the cache ran no Job for its result: the failed attempt's Job is not the
        # step's (zen-flow logs, the estimate read job_ref). It is still an attempt: its count stays
        # (the retry budget is spent, `zen-flow get` says which), and under jobRetention LastAttempt or
        # FailedOnly the earlier attempts' Jobs are superseded by it once it is stored (planner.retention).
        w.job_ref = None
        w.retry_count = attempt
        w.outputs = outputs
        which = f" (attempt {attempt + 1})" if attempt else ""
        w.succeed(
            self.now,
            f"{MEMOIZED_MARK}{which}: the result flow {entry.flow} (step {entry.step}) stored at "
            f"{format_time(entry.time)}, key {key}",
        )
        return True

    def save_result(self, w: StepWork) -> None:
        """`w` just succeeded by running: store its outputs under its key. A key that cannot be computed
        again (an input read from a Job that is gone since) is not stored."""
        memoize = w.spec.memoize
        if memoize is None or (config_map := config_map_of(memoize)) is None:
            return
        try:
            resolved = self.resolved(w)
            key = self.memo_key(w, resolved)
        except JobBuildError:
            return
        params = w.outputs.parameters if w.outputs is not None else ()
        meta = self.flow.metadata
        outputs = {p.name: p.value for p in params}
        entry = MemoEntry(
            key, outputs, f"{meta.namespace}/{meta.name}", w.name, self.now, expiry(memoize, self.now)
        )
        self.actions.append(SaveMemo(w.name, config_map, data_key(key), key, encode_entry(entry)))
