"""Which of a namespace's listed flows `zen-flow get` reads to place a waiting flow in line (cli/waits.py):
the others are dropped while the LIST is decoded, before they are made into models.

A namespace that has run for a while holds mostly finished flows, and the lines hold a handful: decoding
and validating 5000 flows of 20 steps, 4000 of them finished (50 MB of JSON), took 5.5 s, more than
half of it making Python objects of the JSON; skipping the finished flows as the bytes are parsed
(pydantic's parser builds no Python object for a field no model declares) took 1.3 to 1.6 s.

The flows dropped are those planner/bystanders.py's `out_of_line` names, the rule the controller's books
decide with first, tried on the few fields it reads: a flow Succeeded, or Failed and not asked to rerun,
or being deleted, stands in no line and holds no slot nor lock (nor hosts a child); and when only locks'
lines are read, a flow that declares no `synchronization`, neither its steps nor itself, takes no place
in them. Anything else, unexpected shapes included, is validated as a JobFlow, as before: a flow that
does not parse is left out (the controller cannot read it either).
"""

from __future__ import annotations

from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from zen_flow.api import JobFlow
from zen_flow.api.constants import ANNOTATION_RETRY
from zen_flow.kube.streams import DecodedPage, WatchEvent
from zen_flow.planner.bystanders import out_of_line


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# The fields `out_of_line` reads, and no other: pydantic's parser builds no Python object for the rest.
class _Annotations(_Loose):
    retry: str | None = Field(None, alias=ANNOTATION_RETRY)


class _Meta(_Loose):
    deletion_timestamp: str | None = Field(None, alias="deletionTimestamp")
    annotations: _Annotations = _Annotations()


class _Status(_Loose):
    phase: str | None = None


class _Locks(_Loose):
    synchronization: object = None


class _Spec(_Loose):
    synchronization: object = None
    steps: list[_Locks] = []


class _Ended(_Loose):
    """A flow `out_of_line` places in no line; any other fails to validate as one (and is tried next)."""

    metadata: _Meta = _Meta()
    status: _Status = _Status()

    def _out(self, synchronization: tuple[object, ...] | None) -> Self:
        meta = self.metadata
        if not out_of_line(
            self.status.phase, meta.deletion_timestamp is not None, meta.annotations.retry, synchronization
        ):
            raise ValueError("may stand in line")
        return self

    @model_validator(mode="after")
    def _ended(self) -> Self:
        return self._out(None)


class _Unlocking(_Ended):
    """A flow in no lock's line: ended (as `_Ended`, tried first: it reads no step), or declaring none."""

    spec: _Spec = _Spec()

    @model_validator(mode="after")
    def _ended(self) -> Self:
        return self._out((self.spec.synchronization, *(s.synchronization for s in self.spec.steps)))


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
