"""String formats: Kubernetes names, label keys and values, quantities, Go durations, file paths.

Messages are apimachinery's wording, so users see the same text as from `kubectl apply`.
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal, InvalidOperation

from zen_flow.core.naming import MAX_NAME, is_dns1123_label, is_dns1123_subdomain, is_label_value
from zen_flow.core.short_cache import short_cache

DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
    "start and end with an alphanumeric character (e.g. 'my-name', or '123-abc', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and "
    "must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and "
    "must start and end with an alphanumeric character (e.g. 'MyValue', or 'my_value', or '12345', regex "
    "used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
QUALIFIED_NAME_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName', or 'my.name', or '123-abc', regex used for validation is "
    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' "
    "(e.g. 'example.com/MyName')"
)
CONFIG_KEY_MSG = (
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name', or "
    "'KEY_NAME', or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
)
QUANTITY_MSG = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
DURATION_MSG = "must be a Go duration such as 10s, 1m30s or 1h (units ns, us, ms, s, m, h)"


# Names repeat across a flow's steps; only a name that can be valid is kept (core/short_cache.py), so a
# denied spec's megabyte-long name is not held by the process after its review.
@short_cache(maxsize=4096, longest=MAX_NAME)
def label_problem(value: str) -> str | None:
    """Why `value` is not a DNS-1123 label, or None."""
    if is_dns1123_label(value):
        return None
    if len(value) > MAX_NAME:
        return f"must be no more than {MAX_NAME} characters"
    return DNS1123_LABEL_MSG


@short_cache(maxsize=4096, longest=253)
def subdomain_problem(value: str) -> str | None:
    if is_dns1123_subdomain(value):
        return None
    if len(value) > 253:
        return "must be no more than 253 characters"
    return DNS1123_SUBDOMAIN_MSG


def label_value_problem(value: str) -> str | None:
    if is_label_value(value):
        return None
    if len(value) > MAX_NAME:
        return f"must be no more than {MAX_NAME} characters"
    return LABEL_VALUE_MSG


# Patterns here are tried with fullmatch: Python's `$` also matches before a final "\n" (RE2's does not).
_NAME_PART = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")


def qualified_name_problem(key: str) -> str | None:
    """Why `key` is not a valid label or annotation key, or None."""
    prefix, slash, name = key.rpartition("/")
    if slash and "/" in prefix:
        return "a qualified name must consist of an optional DNS subdomain prefix, one '/' and a name part"
    if slash and not is_dns1123_subdomain(prefix):
        return "prefix part " + DNS1123_SUBDOMAIN_MSG
    if not name:
        return "name part must be non-empty"
    if len(name) > MAX_NAME:
        return f"name part must be no more than {MAX_NAME} characters"
    if not _NAME_PART.fullmatch(name):
        return QUALIFIED_NAME_MSG
    return None


_CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+")


def config_key_problem(key: str) -> str | None:
    if len(key) > 253:
        return "must be no more than 253 characters"
    if not _CONFIG_KEY.fullmatch(key):
        return CONFIG_KEY_MSG
    if key in (".", ".."):
        return "must not be '.' or '..'"
    return None


# --- quantities (resource.Quantity) -------------------------------------------------------------------

_QUANTITY = re.compile(r"([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)")
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_EXPONENT = re.compile(r"[eE]([-+]?[0-9]+)")


def parse_quantity(value: object) -> Decimal | None:
    """A Kubernetes quantity (`500m`, `1Gi`, `2`, `1e3`) as a Decimal, or None when malformed."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            number = Decimal(str(value))
        except ValueError:  # an int beyond Python's str() digit limit: no resource is that large
            return None
        return number if number.is_finite() else None
    if not isinstance(value, str):
        return None
    return _parse_quantity(value)


# What reads as a space or as nothing around a quantity in an answer: white space (Python's, more than
# Go's TrimSpace takes), controls, format characters (a zero-width space) and separators.
_UNSEEN = frozenset({"Cc", "Cf", "Zl", "Zp", "Zs"})
_EDGE = 64


def _unseen(char: str) -> bool:
    return char.isspace() or unicodedata.category(char) in _UNSEEN


def quantity_problem(value: object) -> str:
    """Why a value parse_quantity refused is not a quantity: apimachinery's message, or, for a character
    around it that the apiserver does not trim, its code point: a tab shows as `\\t` in the answer, but a
    no-break or ideographic space reads as a space there, and is one once the controller squeezes the
    failure into the flow's condition and event (planner/status.cut), where `" 1Gi"` is what it shows."""
    if not isinstance(value, str):
        return QUANTITY_MSG
    start, end = 0, len(value)
    # Bounded: a quantity is short, and a megabyte of no-break spaces should not cost a megabyte of calls.
    while start < min(end, _EDGE) and _unseen(value[start]):
        start += 1
    while end > max(start, len(value) - _EDGE) and _unseen(value[end - 1]):
        end -= 1
    around = dict.fromkeys(c for c in value[:start] + value[end:] if c != " ")
    if not around:
        return QUANTITY_MSG
    points = ", ".join(f"U+{ord(c):04X}" for c in around)
    said = f"the apiserver trims only spaces around a quantity, not {points}"
    return said if _parse_quantity(value[start:end]) is not None else f"{said}; {QUANTITY_MSG}"


# Flows repeat the same few amounts ("100m", "1Gi") in every step: parse each once (an amount over 64
# characters is parsed every time and not kept: core/short_cache.py).
@short_cache(maxsize=1024, longest=64)
def _parse_quantity(value: str) -> Decimal | None:
    # Only spaces around it, as the apiserver reads it in the Job (or claim) the controller sends: its JSON
    # escapes every other white space (kube/client.py, json.dumps), and resource.Quantity's UnmarshalJSON
    # trims the text between the quotes as it is, escapes not decoded, so ParseQuantity refuses a tab or a
    # no-break space (tests/integration/test_quantities_agree.py). str.strip() took them all, so such a
    # step passed admission and failed at its Job create.
    match = _QUANTITY.fullmatch(value.strip(" "))
    if match is None:
        return None
    number, suffix = match.groups()
    if number.count(".") > 1 or not any(c.isdigit() for c in number):
        return None
    try:
        base = Decimal(number)
    except InvalidOperation:
        return None
    if suffix in _BINARY:
        return base * _BINARY[suffix]
    if suffix in _DECIMAL:
        return base * _DECIMAL[suffix]
    exponent = _EXPONENT.fullmatch(suffix)
    if exponent is None or len(exponent.group(1)) > 4:  # 1e99999 is not a resource amount
        return None
    return base.scaleb(int(exponent.group(1)))


# --- file paths ---------------------------------------------------------------------------------------


def abs_path_problem(value: str) -> str | None:
    """Artifact paths live in the step's containers: absolute, no `..` (no escaping the mount)."""
    if not value.startswith("/"):
        return "must be an absolute path"
    if ".." in value.split("/"):
        return "must not contain '..'"
    if "\x00" in value:
        return "must not contain NUL"
    return None


def s3_key_problem(key: str) -> str | None:
    """An S3 key (or a key prefix, its outer slashes taken off) the transfer can store under: the S3
    client (minio's check_object_name) refuses `.` and `..` segments (urllib3 would fold them, so the
    signed path and the sent one would differ); a control character breaks the request line. Refused at
    admission rather than by the uploader after the step's work ran. Empty segments (`/x`, `x/`, `a//b`)
    are valid S3 keys that the client sends as they are: accepted, as they always were."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        return "must not hold control characters"
    if any(segment in (".", "..") for segment in key.split("/")):
        return "no /-separated segment may be '.' or '..'"
    return None
