"""Whether a flow's spec lets it be planned: the JobFlow validator's errors (or the cache's parse error)
for a flow that has not started, remembered per generation: validation is pure but not free (500 steps:
milliseconds), and a spec only changes with its generation."""

from __future__ import annotations

from collections.abc import Callable

from zen_flow.api import JobFlow
from zen_flow.validation import has_started, validate_jobflow


class Validity:
    def __init__(self, parse_error: Callable[[str], str | None]) -> None:
        self._parse_error = parse_error  # the informer's: why a flow's object did not decode
        self._validated: dict[str, tuple[int, tuple[str, ...]]] = {}  # uid -> (generation, errors)

    def errors(self, flow: JobFlow) -> tuple[str, ...]:
        """Errors that make the flow fail now; empty for valid flows and for flows already under way.

        A flow that started was valid when it started (webhook, or this check on its first reconcile);
        re-validating it after an upgrade that added a rule would fail work that is running fine, and
        `spec.steps` cannot change after the start anyway (admission and CEL enforce it).
        """
        uid, generation = flow.metadata.uid, flow.metadata.generation
        cached = self._validated.get(uid)
        if cached is not None and cached[0] == generation:
            return cached[1]
        if (parse_error := self._parse_error(flow.key)) is not None:
            errors: tuple[str, ...] = (parse_error,)
        else:
            raw = flow.model_dump(by_alias=True, exclude_none=True, mode="json")
            errors = () if has_started(raw) else tuple(str(e) for e in validate_jobflow(raw))
        self._validated[uid] = (generation, errors)
        return errors

    def forget(self, uid: str) -> None:
        self._validated.pop(uid, None)
