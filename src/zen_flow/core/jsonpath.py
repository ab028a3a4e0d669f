"""The small JSONPath subset parameters use, and how a found value is rendered as a parameter value.

Grammar (a path is `$` followed by any number of segments):
  `$`                the document itself
  `.name`            a field; `name` is letters, digits, `_` and `-` (e.g. `.startTime`, `.my-key`)
  `['name']`         a field with any other characters (`"` quotes work too; `\\'` escapes a quote)
  `[3]`, `[-1]`      a list element, counted from the end when negative (at most 18 digits)
Nothing else: no wildcards, filters, slices or recursive descent. One path selects at most one value,
which is what a parameter needs, and an unsupported form is a clear error instead of a silent miss.

Rendering (`render`): strings as they are; integers and floats as JSON writes them but without losing
decimals (3 -> "3", 2.5 -> "2.5", 3.0 -> "3"); booleans `true`/`false`; objects and lists as compact
JSON. The original formatted every number with `%.0f` and so lost decimals.

Text read from JSON a step wrote (`lone_surrogate`): Python's json reads the escape `"\\ud800"`, valid
ASCII JSON, into a string UTF-8 cannot encode (Go's reads U+FFFD); such a value is refused where it is
read, since no status write, Job or byte count could take it.

Reading JSON a step wrote (`read_json`): Python's json also reads `NaN`, `Infinity`, `-Infinity` and
numbers past a float's range (`1e400`), which JSON does not have; taken, they would reach later steps
as Python's `nan` and `inf`. Both readers of step output, termination-message outputs
(planner/outputs.py) and matrix values from an output (core/matrix_sources.py), refuse them alike.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from zen_flow.core.short_cache import short_cache

Segment = str | int

_NAME = re.compile(r"[A-Za-z0-9_-]+")
_INDEX = re.compile(r"-?[0-9]+")
# No list has 10**18 elements; a longer index is refused as a path error here, because int() of over
# 4,300 digits raises a plain ValueError (int_max_str_digits) that no caller, catching JsonPathError, expects.
MAX_INDEX_DIGITS = 18


class JsonPathError(ValueError):
    """A path outside the supported subset; the message says where."""


class NotJson(ValueError):
    """Text Python's json reads but JSON has not (NaN, Infinity, 1e400); the message says which."""


class NotFound(LookupError):
    """The path selects nothing in the document (or a JSON null, which Kubernetes treats as absent)."""


def _quoted(path: str, pos: int) -> tuple[str, int]:
    """The quoted field name starting at `path[pos]` (a quote) and the index after its closing `]`."""
    quote = path[pos]
    out: list[str] = []
    i = pos + 1
    while i < len(path):
        char = path[i]
        if char == "\\" and i + 1 < len(path):
            out.append(path[i + 1])
            i += 2
            continue
        if char == quote:
            if path[i + 1 : i + 2] != "]":
                raise JsonPathError(f"{path!r}: expected ']' after the quoted name at position {i + 1}")
            return "".join(out), i + 2
        out.append(char)
        i += 1
    raise JsonPathError(f"{path!r}: unterminated quoted name at position {pos}")


# Flows repeat the same few paths; a path over 128 characters is parsed every time, never kept, so the
# cache holds at most 4,096 x ~3 KB however many distinct (denied) paths reviews send (core/short_cache.py).
@short_cache(maxsize=4096, longest=128)
def parse(path: str) -> tuple[Segment, ...]:
    """The segments of `path` (field names and list indexes); raises JsonPathError."""
    if not path.startswith("$"):
        raise JsonPathError(f'{path!r}: a JSONPath starts with "$"')
    segments: list[Segment] = []
    i = 1
    while i < len(path):
        char = path[i]
        if char == ".":
            match = _NAME.match(path, i + 1)
            if match is None:
                raise JsonPathError(
                    f"{path!r}: expected a field name after '.' at position {i} "
                    "(use ['name'] for other characters; wildcards and '..' are not supported)"
                )
            segments.append(match.group())
            i = match.end()
        elif char == "[":
            if path[i + 1 : i + 2] in ("'", '"'):
                name, i = _quoted(path, i + 1)
                segments.append(name)
                continue
            match = _INDEX.match(path, i + 1)
            if match is None or path[match.end() : match.end() + 1] != "]":
                raise JsonPathError(
                    f"{path!r}: expected an integer index or a quoted name after '[' at position {i} "
                    "(wildcards, slices and filters are not supported)"
                )
            if len(match.group().lstrip("-")) > MAX_INDEX_DIGITS:
                shown = path if len(path) <= 80 else path[:64] + "..."
                raise JsonPathError(
                    f"{shown!r}: the index at position {i} has {len(match.group().lstrip('-')):,} digits; "
                    f"an index has at most {MAX_INDEX_DIGITS} digits"
                )
            segments.append(int(match.group()))
            i = match.end() + 1
        else:
            raise JsonPathError(f"{path!r}: unexpected {char!r} at position {i}")
    return tuple(segments)


def evaluate(path: str, document: Any) -> Any:
    """The value `path` selects in `document` (parsed JSON); raises NotFound or JsonPathError."""
    value = document
    for segment in parse(path):
        if isinstance(segment, int):
            if not isinstance(value, Sequence) or isinstance(value, str | bytes):
                raise NotFound(f"{path!r}: [{segment}] needs a list")
            if not -len(value) <= segment < len(value):
                raise NotFound(f"{path!r}: index [{segment}] is out of range (the list has {len(value)})")
            value = value[segment]
        else:
            if not isinstance(value, Mapping):
                raise NotFound(f"{path!r}: field {segment!r} needs an object")
            if segment not in value:
                raise NotFound(f"{path!r}: no field {segment!r}")
            value = value[segment]
    if value is None:
        raise NotFound(f"{path!r}: the value is null")
    return value


def render(value: Any) -> str:
    """A found value as parameter text (see the module docstring)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 2**53:
            return str(int(value))
        return repr(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def lone_surrogate(text: str) -> str | None:
    """The first lone surrogate in `text` as its escape (`\\ud800`), None when UTF-8 encodes all of it."""
    try:
        text.encode()
    except UnicodeEncodeError as err:
        return f"\\u{ord(text[err.start]):04x}"
    return None


def surrogate_problem(text: str) -> str | None:
    """Why `text`, read from JSON, is no value (a lone surrogate), None when it is one."""
    found = lone_surrogate(text)
    return None if found is None else f"holds {found}, a lone surrogate, which is no Unicode text"


def read_json(text: str) -> Any:
    """`json.loads`, refusing NaN, Infinity and infinite numbers (NotJson); ValueError when not JSON."""
    return json.loads(text, parse_constant=_not_json, parse_float=_finite)


def _not_json(constant: str) -> Any:
    raise NotJson(f"{constant} is not JSON")


def _finite(text: str) -> float:
    """A JSON number as a float; `1e400` (infinite as a float, and written out as `Infinity`) is none."""
    found = float(text)
    if not math.isfinite(found):
        raise NotJson(f"{text} is out of range")
    return found
