"""Shared building blocks: the model base class, Kubernetes timestamps, object metadata, conditions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, TypeAdapter
from pydantic.alias_generators import to_camel

from zen_flow.api.constants import API_VERSION


def format_time(value: datetime) -> str:
    """RFC 3339 with second precision and a `Z`, like metav1.Time. The year has four digits also before
    1000 (glibc's `%Y` does not pad it; RFC 3339 and `parse_rfc3339` need four)."""
    utc = value.astimezone(UTC)
    return f"{utc.year:04d}-" + utc.strftime("%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


Timestamp = Annotated[datetime, PlainSerializer(format_time, return_type=str)]


class Model(BaseModel):
    """Frozen, camelCase on the wire, unknown fields ignored (the apiserver is the schema's authority)."""

    model_config = ConfigDict(
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
    )

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict as the apiserver expects it: camelCase, no nulls."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class SpecModel(Model):
    """A part of a spec (a JobFlow's, a CronJobFlow's): a key it does not declare is kept, not dropped, so
    that a spec written for a newer zen-flow is recognised (api/known_fields.py) instead of planned
    without what this release does not know. The informer's compaction drops the empty dict of a model
    that has none (informer/compaction.py)."""

    model_config = ConfigDict(
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
        extra="allow",
    )


RECORD = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")
"""The config of *records*, frozen slotted pydantic dataclasses (`@dataclass(frozen=True, slots=True,
config=RECORD)`): what is cached by the thousand (a Job, a step's status). Like `Model` on the wire, but
no `__dict__` per instance: a model of 10 fields costs ~420 bytes before any value, a record ~110."""


def record_to_wire(adapter: TypeAdapter[Any], value: Any) -> dict[str, Any]:
    """A record as `Model.to_wire` gives a model: camelCase, no nulls, JSON-ready."""
    wire: dict[str, Any] = adapter.dump_python(value, by_alias=True, exclude_none=True, mode="json")
    return wire


class OwnerReference(Model):
    api_version: str
    kind: str
    name: str
    uid: str
    controller: bool | None = None
    block_owner_deletion: bool | None = None

    @property
    def group(self) -> str:
        """The owner's API group: `apiVersion` without its version ("" for the core group's `v1`)."""
        return self.api_version.rpartition("/")[0]


class ObjectMeta(Model):
    name: str = ""
    # Kept so that a flow read from a file (`kubectl create` with generateName) re-validates the same.
    generate_name: str | None = None
    namespace: str = ""
    uid: str = ""
    generation: int = 0
    resource_version: str = ""
    creation_timestamp: Timestamp | None = None
    deletion_timestamp: Timestamp | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    owner_references: tuple[OwnerReference, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def controller_ref(self) -> OwnerReference | None:
        return controller_of(self.owner_references)


def controller_of(refs: tuple[OwnerReference, ...]) -> OwnerReference | None:
    """The controller among an object's ownerReferences (ObjectMeta, and the Job record's JobMeta)."""
    return next((ref for ref in refs if ref.controller), None)


class Condition(Model):
    """metav1.Condition."""

    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str = ""
    message: str = ""
    last_transition_time: Timestamp | None = None
    observed_generation: int | None = None


def controller_reference(kind: str, meta: ObjectMeta) -> dict[str, Any]:
    """The ownerReference zen-flow puts on what it creates for the object of `meta` (a JobFlow's Jobs and
    resources, a CronJobFlow's runs): that object controls them, and its foreground deletion waits for
    them (blockOwnerDeletion)."""
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "name": meta.name,
        "uid": meta.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
