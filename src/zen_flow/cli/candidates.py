"""Which of a namespace's listed flows `zen-flow get` reads to place a waiting flow in line (cli/waits.py):
the others are dropped while the LIST is decoded, before they are made into models.

A namespace that has run for a while holds mostly finished flows, and the lines hold a handful: decoding
and validating 5000 flows of 20 steps, 4000 of them finished (50 MB of JSON), took 5.5 s, more than
half of it making Python objects of the JSON; skipping the finished flows as the bytes are parsed
(pydantic's parser builds no Python object for a field no model declares) took 1.3 to 1.6 s.

The flows dropped are a subset of those the controller's books place nowhere (planner/slot_standing.py's
`ended`, planner/lock_book.py's `flow_locks`): a flow Succeeded, or Failed and not asked to rerun (a
Failed flow with a retry request may be reset to contend again), or being deleted, stands in no line and
holds no slot nor lock (nor hosts a child: planner/lineage.py's `_hosting`); and when only locks' lines
are read, a flow that declares no `synchronization`, neither its steps nor itself, takes no place in
them. Anything else, unexpected shapes included, is validated as a JobFlow, as before: a flow that does
not parse is left out (the controller cannot read it either).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from zen_flow.api import JobFlow
from zen_flow.api.constants import ANNOTATION_RETRY
from zen_flow.kube.streams import DecodedPage, WatchEvent


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _SucceededStatus(_Loose):
    phase: Literal["Succeeded"]


class _Succeeded(_Loose):
    status: _SucceededStatus


class _DeletingMeta(_Loose):
    deletion_timestamp: str = Field(alias="deletionTimestamp")


class _Deleting(_Loose):
    metadata: _DeletingMeta


class _NoRetry(_Loose):
    # An empty request is none (planner/interventions.request_id); any other value keeps the flow.
    retry: Literal[""] | None = Field(None, alias=ANNOTATION_RETRY)


class _NoRetryMeta(_Loose):
    annotations: _NoRetry = _NoRetry()


class _FailedStatus(_Loose):
    phase: Literal["Failed"]


class _Failed(_Loose):
    metadata: _NoRetryMeta = _NoRetryMeta()
    status: _FailedStatus


class _Unlocked(_Loose):
    synchronization: None = None


class _UnlockedSpec(_Loose):
    steps: list[_Unlocked]
    synchronization: None = None  # the flow's own locks: it holds or waits for them as a step would


class _Unlocking(_Loose):
    spec: _UnlockedSpec


_Ended = _Succeeded | _Deleting | _Failed
_Skipped = _Ended | _Unlocking


class _ListMeta(_Loose):
    resource_version: str = Field("", alias="resourceVersion")
    continue_token: str | None = Field(None, alias="continue")


# Left to right: the first shape that fits is taken, so a flow dropped is never validated as a JobFlow.
class _SlotPage(_Loose):
    metadata: _ListMeta = _ListMeta()
    items: list[Annotated[_Ended | JobFlow, Field(union_mode="left_to_right")]] | None = None


class _LockPage(_Loose):
    metadata: _ListMeta = _ListMeta()
    items: list[Annotated[_Skipped | JobFlow, Field(union_mode="left_to_right")]] | None = None


_ENDED: TypeAdapter[_Ended] = TypeAdapter(_Ended)
_SKIPPED: TypeAdapter[_Skipped] = TypeAdapter(_Skipped)
_SLOT_PAGE = TypeAdapter(_SlotPage)
_LOCK_PAGE = TypeAdapter(_LockPage)


class Candidates:
    """A `zen_flow.kube.Decoder` keeping, as JobFlows, the listed flows that may stand in a line for a
    slot or a lock (`slot`: a slot's line is read, so every unfinished flow is kept), or in a lock's line
    only (every unfinished flow that declares locks)."""

    def __init__(self, *, slot: bool) -> None:
        self._skip: TypeAdapter[Any] = _ENDED if slot else _SKIPPED
        self._page: TypeAdapter[Any] = _SLOT_PAGE if slot else _LOCK_PAGE

    def item(self, raw: dict[str, Any]) -> JobFlow | None:
        """The slow path, for a page the fast one could not read (one of its flows does not parse)."""
        try:
            self._skip.validate_python(raw)
            return None
        except ValidationError:
            pass
        try:
            return JobFlow.model_validate(raw)
        except ValidationError:
            return None

    def page(self, raw: bytes) -> DecodedPage | None:
        try:
            page = self._page.validate_json(raw)
        except ValidationError:
            return None  # a flow that does not parse: the slow path leaves it out, and only it
        kept = [item for item in page.items or () if isinstance(item, JobFlow)]
        return DecodedPage(kept, page.metadata.resource_version, page.metadata.continue_token or "")

    def event(self, raw: bytes) -> WatchEvent | None:
        return None  # never asked: nothing is watched
