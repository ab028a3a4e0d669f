"""spec.arguments: named values for the whole flow (read by steps through valueFrom.argument).

Each argument has a unique DNS-1123 subdomain name and a string value; `enum`, when given, lists the
values allowed, so a value overridden at creation (the CLI's -p name=value) is checked at admission.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zen_flow.validation.errors import Path, duplicate, invalid, not_supported, required, too_long, too_many
from zen_flow.validation.formats import subdomain_problem
from zen_flow.validation.reader import Reader

MAX_ARGUMENTS = 64  # CRD maxItems
MAX_ARGUMENT_VALUE = 4096  # CRD maxLength
MAX_DESCRIPTION = 1024


def check_arguments(r: Reader, arguments: Mapping[str, Any], path: Path) -> frozenset[str]:
    """Validate the arguments; the names declared (for `valueFrom.argument` references)."""
    params_path = path + ".parameters"
    raw = r.sequence(arguments.get("parameters"), params_path)
    if raw is not None and len(raw) > MAX_ARGUMENTS:
        r.add(too_many(params_path, len(raw), MAX_ARGUMENTS))
    names: set[str] = set()
    for item_path, param in r.mappings(raw, params_path):
        name = r.string(param.get("name"), item_path + ".name", require=True)
        if name is not None:
            if problem := subdomain_problem(name):
                r.add(invalid(item_path + ".name", name, problem))
            elif name in names:
                r.add(duplicate(item_path + ".name", name))
            names.add(name)
        # Required, but "" is a value (an empty default the CLI's -p may override).
        if param.get("value") is None:
            r.add(required(item_path + ".value"))
        value = r.string(param.get("value"), item_path + ".value")
        if value is not None and len(value) > MAX_ARGUMENT_VALUE:
            r.add(too_long(item_path + ".value", value, MAX_ARGUMENT_VALUE))
        description = r.string(param.get("description"), item_path + ".description")
        if description is not None and len(description) > MAX_DESCRIPTION:
            r.add(too_long(item_path + ".description", description, MAX_DESCRIPTION))
        allowed = r.sequence(param.get("enum"), item_path + ".enum")
        if allowed is None:
            continue
        choices = [
            c for i, c in enumerate(allowed) if r.string(c, f"{item_path}.enum[{i}]", item=True) is not None
        ]
        if value is not None and choices and value not in choices:
            r.add(not_supported(item_path + ".value", value, choices))
    return frozenset(names)
