"""Whether a flow's spec lets it be planned: the JobFlow validator's errors (or the cache's parse error)
for a flow that has not started, remembered per generation: validation is pure but not free (500 steps:
milliseconds, and one of 500 steps with 150 dependencies each ~30-60 ms: in a thread then, plan_cpu.py), and
a spec only changes with its generation."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel

from zen_flow.api import JobFlow
from zen_flow.api.known_fields import newer_field
from zen_flow.api.meta import ObjectMeta
from zen_flow.controller.plan_cpu import PlanCpu
from zen_flow.validation import has_started, validate_jobflow


class Validity:
    def __init__(self, parse_error: Callable[[str], str | None], cpu: PlanCpu | None = None) -> None:
        self._parse_error = parse_error  # the informer's: why a flow's object did not decode
        self._cpu = cpu or PlanCpu()  # where a large spec is validated (off the event loop)
        self._validated: dict[str, tuple[int, tuple[str, ...]]] = {}  # uid -> (generation, errors)
        self._known = KnownSpecs()

    def newer(self, flow: JobFlow) -> str | None:
        """The first field or value of the flow's spec this release does not know: it was written for a
        newer zen-flow (api/known_fields.py), and is not planned; None for a flow this release knows."""
        return self._known.newer(flow.metadata, flow.spec)

    async def checked(self, flow: JobFlow) -> tuple[str, ...]:
        """Errors that make the flow fail now; empty for valid flows and for flows already under way. A
        large spec (counted after its matrix's expansion: validation expands it) is validated in a thread
        (`PlanCpu`), not on the event loop; a flow deleted meanwhile raises `FlowGone`, and nothing of it
        is remembered.

        A flow that started was valid when it started (webhook, or this check on its first reconcile);
        re-validating it after an upgrade that added a rule would fail work that is running fine, and
        `spec.steps` cannot change after the start anyway (admission and CEL enforce it).
        """
        cached = self._validated.get(flow.metadata.uid)
        if cached is not None and cached[0] == flow.metadata.generation:
            return cached[1]
        if (parse_error := self._parse_error(flow.key)) is not None:
            return self._remember(flow, parse_error)
        return self._remember(flow, await self._cpu.run(flow, lambda: _check(flow), measured=False))

    def _remember(self, flow: JobFlow, errors: str | tuple[str, ...]) -> tuple[str, ...]:
        found = (errors,) if isinstance(errors, str) else errors
        self._validated[flow.metadata.uid] = (flow.metadata.generation, found)
        return found

    def forget(self, uid: str) -> None:
        self._validated.pop(uid, None)
        self._known.forget(uid)

    def uids(self) -> list[str]:
        return [*self._validated, *self._known.uids()]


class KnownSpecs:
    """`newer_field` of each object's spec, remembered per generation (a 500-step spec: a few ms)."""

    def __init__(self) -> None:
        self._found: dict[str, tuple[int, str | None]] = {}  # uid -> (generation, newer_field)

    def newer(self, meta: ObjectMeta, spec: BaseModel) -> str | None:
        cached = self._found.get(meta.uid)
        if cached is not None and cached[0] == meta.generation:
            return cached[1]
        found = newer_field(spec)
        if meta.generation:  # 0: nobody counts the spec's changes (never from an apiserver)
            self._found[meta.uid] = (meta.generation, found)
        return found

    def forget(self, uid: str) -> None:
        self._found.pop(uid, None)

    def uids(self) -> list[str]:
        return list(self._found)


def _check(flow: JobFlow) -> tuple[str, ...]:
    raw = flow.model_dump(by_alias=True, exclude_none=True, mode="json")
    return () if has_started(raw) else tuple(str(e) for e in validate_jobflow(raw))
