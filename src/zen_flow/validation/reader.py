"""Typed reads from raw JSON-like data: a wrong type becomes a FieldError, never an exception.

The validator works on the object exactly as it arrives (an AdmissionReview's `object` or a YAML
document), so a string where a number belongs is reported with its field path instead of a traceback.
JSON `null` counts as "not set", as it does for optional fields in the apiserver.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from zen_flow.api.constants import API_VERSION
from zen_flow.core.nesting import MAX_TEMPLATE_DEPTH, deepest_path, describe_depth
from zen_flow.validation.errors import ROOT, FieldError, Path, forbidden, invalid, not_supported, required
from zen_flow.validation.formats import subdomain_problem

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


def type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    if value is None:
        return "null"
    return type(value).__name__


class Reader:
    """Collects errors while reading; each method returns None when the value is absent or unusable."""

    def __init__(self, errors: list[FieldError], *, stop_after: int | None = None) -> None:
        """`stop_after`: a caller lists only so many errors (errors.listed), so the long walks (the steps,
        a step's dependencies) may stop once more than that are found: `stop()`."""
        self.errors = errors
        self.stop_after = stop_after
        self.stopped = False

    def stop(self) -> bool:
        """Whether a walk should stop here: more errors found than are listed (125,000 unknown
        dependencies took 0.6 s to report, 100 of them listed). `stopped` then says the count of errors
        is not known; the checks of the whole object (its size) still run."""
        if self.stop_after is not None and len(self.errors) > self.stop_after:
            self.stopped = True
        return self.stopped

    def add(self, error: FieldError) -> None:
        self.errors.append(error)

    def _wrong(self, path: Path, value: Any, expected: str) -> None:
        self.errors.append(invalid(path, value, f"must be {expected}, not {type_name(value)}"))

    def resource(self, obj: Any, kind: str) -> Mapping[str, Any] | None:
        """The whole object, with `apiVersion` and `kind` checked against ours and `kind`."""
        root = self.mapping(obj, ROOT, require=True)
        if root is None:
            return None
        api_version = self.string(root.get("apiVersion"), "apiVersion")
        if api_version and api_version != API_VERSION:
            self.add(not_supported("apiVersion", api_version, [API_VERSION]))
        found = self.string(root.get("kind"), "kind")
        if found and found != kind:
            self.add(not_supported("kind", found, [kind]))
        return root

    def object_name(self, meta: Mapping[str, Any], limit: int, why: str) -> tuple[str, str]:
        """`metadata.name` and `metadata.generateName` (one of them required) of a resource whose name
        holds at most `limit` characters (`why`: what makes it shorter than the apiserver's limit);
        the apiserver adds 5 random characters to a generateName."""
        name = self.string(meta.get("name"), "metadata.name") or ""
        generate = self.string(meta.get("generateName"), "metadata.generateName") or ""
        if not name and not generate:
            self.add(required("metadata.name", "name or generateName is required"))
        if len(name) > limit:
            self.add(invalid("metadata.name", name, f"must be no more than {limit} characters: {why}"))
        elif name and (problem := subdomain_problem(name)):
            self.add(invalid("metadata.name", name, problem))
        if len(generate) > limit - 5:
            self.add(
                invalid("metadata.generateName", generate, f"must be no more than {limit - 5} characters")
            )
        return name, generate

    def mapping(self, value: Any, path: Path, *, require: bool = False) -> Mapping[str, Any] | None:
        if value is None:
            if require:
                self.errors.append(required(path))
            return None
        if not isinstance(value, dict):
            self._wrong(path, value, "an object")
            return None
        return value

    def sequence(self, value: Any, path: Path, *, require: bool = False) -> Sequence[Any] | None:
        if value is None:
            if require:
                self.errors.append(required(path))
            return None
        if not isinstance(value, list | tuple):
            self._wrong(path, value, "an array")
            return None
        return value

    def string(self, value: Any, path: Path, *, require: bool = False, item: bool = False) -> str | None:
        """A string; with `require`, the empty string counts as missing (as in Kubernetes validation).
        `item`: an element of a list, where null is not "absent" but a wrong value (the apiserver refuses
        it in a list of strings)."""
        if item and value is None:
            self._wrong(path, value, "a string")
            return None
        if value is None or (require and value == ""):
            if require:
                self.errors.append(required(path))
            return None
        if not isinstance(value, str):
            self._wrong(path, value, "a string")
            return None
        return value

    def integer(self, value: Any, path: Path, *, maximum: int = INT64_MAX) -> int | None:
        if value is None:
            return None
        # bool is an int subclass in Python, but `true` is not a number in JSON
        if isinstance(value, bool) or not isinstance(value, int):
            self._wrong(path, value, "an integer")
            return None
        if value > maximum:
            self.errors.append(invalid(path, value, f"must be less than or equal to {maximum}"))
            return None
        return value

    def number(self, value: Any, path: Path) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self._wrong(path, value, "a number")
            return None
        if value != value or value in (float("inf"), float("-inf")):  # NaN and infinities are not JSON
            self.errors.append(invalid(path, value, "must be a finite number"))
            return None
        return float(value)

    def boolean(self, value: Any, path: Path) -> bool | None:
        if value is None:
            return None
        if not isinstance(value, bool):
            self._wrong(path, value, "a boolean")
            return None
        return value

    def string_map(self, value: Any, path: Path) -> dict[str, str] | None:
        """A map of strings to strings (labels, annotations, headers, ConfigMap data)."""
        raw = self.mapping(value, path)
        if raw is None:
            return None
        out: dict[str, str] = {}
        for raw_key, item in raw.items():
            key: object = raw_key  # YAML allows non-string keys
            if not isinstance(key, str):
                self.errors.append(invalid(path, key, "keys must be strings"))
                continue
            text = self.string(item, path + f"[{key}]")
            if text is not None:
                out[key] = text
        return out

    def mappings(self, value: Any, path: Path) -> list[tuple[Path, Mapping[str, Any]]]:
        """The object items of an array, each with its path; other items are reported and dropped."""
        items = self.sequence(value, path)
        out: list[tuple[Path, Mapping[str, Any]]] = []
        for i, item in enumerate(items or ()):
            if isinstance(item, dict):  # nearly always: no method call per item
                out.append((f"{path}[{i}]", item))
            else:
                self.mapping(item, f"{path}[{i}]", require=True)
        return out

    def shallow(self, value: Mapping[str, Any], path: Path) -> bool:
        """A free-form object (a Job or resource template) nested at most MAX_TEMPLATE_DEPTH levels;
        else reported, and nothing else should read it: other checks and the memo's key recurse."""
        found = deepest_path(value, MAX_TEMPLATE_DEPTH)
        if found is None:
            return True
        self.add(forbidden(path, describe_depth(found, MAX_TEMPLATE_DEPTH) + ": no Job needs that many"))
        return False
