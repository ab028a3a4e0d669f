"""Marking a flow or CronJobFlow written for a newer zen-flow (api/known_fields.py) as such: its condition
Valid=Unknown, reason NewerSchema (planner/newer_schema.py), for both reconcilers; nothing of it is planned.

The apiserver may refuse that write for good: a CRD rolled back with the controller (to the release both
know) no longer admits a value the stored object holds (an enum widened under an atomic list, which
validation does not ratchet), and then every write of the object gets 422, whatever it changes. Raising
would fail every reconcile, backing off, a warning logged each time and nothing said on the object. So a
refusal (a 400, 413 or 422: `ApiError.permanent`) is told once per generation and answer, as a Warning
Event NewerSchema quoting the apiserver (which names the field), and the object is looked at again as
slowly as any other written for a newer release (NEWER_SCHEMA_RETRY_SECONDS; a change wakes it at once):
once the CRD rolls forward, the write goes through. The book is in memory: a restart tells it once more.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Protocol, Self, TypeVar

from zen_flow import __version__
from zen_flow.api.meta import Condition, ObjectMeta
from zen_flow.controller.flow_memory import Keyed, cached_as
from zen_flow.kube.errors import ApiError
from zen_flow.logging import get_logger
from zen_flow.planner.newer_schema import (
    NEWER_SCHEMA_RETRY_SECONDS,
    REASON_NEWER_SCHEMA,
    newer_schema_conditions,
)
from zen_flow.planner.status import MAX_CONDITION_MESSAGE, cut

log = get_logger(__name__)


class _Status(Protocol):
    """A flow's or a CronJobFlow's status (frozen models)."""

    @property
    def conditions(self) -> tuple[Condition, ...]: ...

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self: ...


S = TypeVar("S", bound=_Status)


class NewerSchemaMarks:
    def __init__(self, now: Callable[[], datetime], cached: Callable[[str], Keyed | None]) -> None:
        """`cached`: the objects' cache, by key."""
        self._now = now
        self._cached = cached
        # object uid -> (generation, the apiserver's answer) of the refusal told last
        self._told: dict[str, tuple[int, str]] = {}

    async def mark(
        self,
        meta: ObjectMeta,
        status: S,
        found: str,
        write: Callable[[S], Awaitable[object]],
        tell: Callable[[str], None],
    ) -> float:
        """Write (`write`) `status` with Valid=Unknown (NewerSchema) for `found` (api/known_fields
        .newer_field) unless it says so already; a refusal for good is told (`tell`: a Warning Event
        NewerSchema with this message) once per generation and answer. Returns the seconds until the next
        look; any other failure of the write is raised."""
        conditions = status.conditions
        marked = newer_schema_conditions(conditions, found, meta.generation, self._now(), __version__)
        if marked == conditions:
            return NEWER_SCHEMA_RETRY_SECONDS
        try:
            await write(status.model_copy(update={"conditions": marked}))
        except ApiError as err:
            if not err.permanent:
                raise
            self._refused(meta, found, err, tell)
            return NEWER_SCHEMA_RETRY_SECONDS
        self._told.pop(meta.uid, None)
        log.warning("written for a newer zen-flow; not planned", newer=found)
        return NEWER_SCHEMA_RETRY_SECONDS

    def _refused(self, meta: ObjectMeta, found: str, err: ApiError, tell: Callable[[str], None]) -> None:
        cause = (meta.generation, err.message)
        if cached_as(self._cached, meta.key, meta.uid) is None:
            return  # deleted while the write was refused: its delete event forgot it, nothing would again
        if self._told.get(meta.uid) == cause:
            log.debug("newer-schema status write refused again", newer=found, error=err.message)
            return
        self._told[meta.uid] = cause
        log.warning(
            "written for a newer zen-flow, and its status refused: not planned, and not marked",
            newer=found,
            status=err.status,
            error=err.message,
        )
        message = (
            f"written for a newer zen-flow than this controller ({__version__}): {found}. It is not run (nor "
            "failed) until a controller that knows it leads and its CRD admits it: roll both forward, or "
            f"remove that value (looked at again every {NEWER_SCHEMA_RETRY_SECONDS:g}s, and at once when it "
            f"changes). Its condition Valid=Unknown ({REASON_NEWER_SCHEMA}) is not written either: the "
            f"apiserver refused the status ({err.status}): {err.message}"
        )
        tell(cut(message, MAX_CONDITION_MESSAGE))

    def forget(self, uid: str) -> None:
        self._told.pop(uid, None)

    def uids(self) -> list[str]:
        """The objects (by UID) whose refusal it told (flow_memory.py's sweep)."""
        return list(self._told)
