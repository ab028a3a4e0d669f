"""Field errors in Kubernetes' style: `spec.steps[1].dependencies[0]: Not found: "zzz"`.

The rendering follows apimachinery's `field.Error` so that a message from our admission webhook reads
like one from the apiserver's own validation: `<path>: <type>[: <value>][: <detail>]`. The value is
omitted for Required, Forbidden, Too long and Too many errors, exactly as apimachinery does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

_MAX_VALUE_CHARS = 200  # a 1 MiB string must not turn into a 1 MiB error message


class ErrorType(StrEnum):
    NOT_FOUND = "Not found"
    REQUIRED = "Required value"
    DUPLICATE = "Duplicate value"
    INVALID = "Invalid value"
    NOT_SUPPORTED = "Unsupported value"
    FORBIDDEN = "Forbidden"
    TOO_LONG = "Too long"
    TOO_MANY = "Too many"


_VALUELESS = frozenset({ErrorType.REQUIRED, ErrorType.FORBIDDEN, ErrorType.TOO_LONG})


# A field path as Kubernetes prints it: `spec.steps[1].dependencies[0]`, map keys as `[key]`. Plain
# strings, built by concatenation: a 500-step flow visits tens of thousands of fields, and a path object
# per field cost more than all the rules together.
Path = str

ROOT: Path = ""


def quote(text: str) -> str:
    """A name inside a detail message, quoted like a value."""
    return json.dumps(text, ensure_ascii=False)


def render_value(value: Any) -> str:
    """Go's `%#v` spirit: strings quoted, numbers bare, null/true/false, objects as compact JSON."""
    try:
        text = _render(value)
    except (ValueError, TypeError, RecursionError):  # huge ints, odd YAML types: still never raise
        text = f"<{type(value).__name__}>"
    if len(text) > _MAX_VALUE_CHARS:
        text = text[:_MAX_VALUE_CHARS] + "...(truncated)"
    return text


def _render(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, default=str)


@dataclass(frozen=True)
class FieldError:
    """One problem at one field. `value` is the offending value (None when not meaningful)."""

    path: str
    type: ErrorType
    value: Any = field(default=None, hash=False, compare=False)
    detail: str = ""

    def body(self) -> str:
        # A count of errors not known (errors.listed, `stopped`) is left out, as a valueless type's value.
        valueless = self.type in _VALUELESS or (self.type is ErrorType.TOO_MANY and self.value is None)
        text = str(self.type) if valueless else f"{self.type}: {render_value(self.value)}"
        return f"{text}: {self.detail}" if self.detail else text

    def __str__(self) -> str:
        return f"{self.path}: {self.body()}" if self.path else self.body()


def required(path: Path, detail: str = "") -> FieldError:
    return FieldError(path, ErrorType.REQUIRED, None, detail)


def invalid(path: Path, value: Any, detail: str) -> FieldError:
    return FieldError(path, ErrorType.INVALID, value, detail)


def not_found(path: Path, value: Any, detail: str = "") -> FieldError:
    return FieldError(path, ErrorType.NOT_FOUND, value, detail)


def duplicate(path: Path, value: Any, detail: str = "") -> FieldError:
    return FieldError(path, ErrorType.DUPLICATE, value, detail)


def not_supported(path: Path, value: Any, supported: Iterable[str], detail: str = "") -> FieldError:
    text = "supported values: " + ", ".join(json.dumps(s) for s in supported)
    return FieldError(path, ErrorType.NOT_SUPPORTED, value, f"{text}; {detail}" if detail else text)


def forbidden(path: Path, detail: str) -> FieldError:
    return FieldError(path, ErrorType.FORBIDDEN, None, detail)


def too_long(path: Path, value: Any, limit: int, detail: str = "") -> FieldError:
    text = f"may not be more than {limit} bytes"
    return FieldError(path, ErrorType.TOO_LONG, value, f"{text}: {detail}" if detail else text)


def too_many(path: Path, actual: int, limit: int, detail: str = "") -> FieldError:
    text = f"must have at most {limit} items"
    return FieldError(path, ErrorType.TOO_MANY, actual, f"{text}: {detail}" if detail else text)


# The errors a validator lists, in the order it found them: a user sees the same first problems each time.
# Past them one entry says how many more there are. A 1 MB spec of 250 steps with 500 unknown dependencies
# each has 125,001 errors: listed whole, one webhook denial was 6.9 MB (1.3-1.7 s of CPU), and the
# controller kept them all for each such flow (16 MiB).
MAX_ERRORS = 100
# Errors about the whole object (its size: found last, once every field was read) are listed before the
# fields' errors are cut: the spec, a CronJobFlow's template's spec.
_WHOLE = frozenset({ROOT, "spec", "spec.jobFlowTemplate.spec"})


STOPPED = "the spec was checked no further, but for its size"


def listed(errors: list[FieldError], *, stopped: bool = False) -> list[FieldError]:
    """At most `MAX_ERRORS` of `errors` in the order found (those about the whole object, then the first
    of the others), then one `Too many` entry counting the rest. `stopped`: the validator stopped looking
    past `MAX_ERRORS` errors (Reader.stop), so the entry says so instead of a count."""
    if len(errors) <= MAX_ERRORS:
        return errors
    whole = [i for i, e in enumerate(errors) if e.path in _WHOLE][:MAX_ERRORS]
    fields = [i for i, e in enumerate(errors) if e.path not in _WHOLE][: MAX_ERRORS - len(whole)]
    shown = [errors[i] for i in sorted(whole + fields)]
    more = None if stopped else len(errors) - len(shown)
    detail = f"more errors not listed (at most {MAX_ERRORS} are)"
    if stopped:
        detail = f"{detail}; {STOPPED}"
    return [*shown, FieldError(ROOT, ErrorType.TOO_MANY, more, detail)]


def render(errors: Iterable[FieldError]) -> str:
    """One error per line, as the webhook denial and the CLI print them."""
    return "\n".join(str(e) for e in errors)
