"""What of a stored object a given CRD's schema lacks: the keys it does not declare and the values its
enums leave out, each with its path (`spec.steps[1].allowFailure`). Pure: `zen-flow crd check-downgrade`
(cli/crd_check.py) walks the cluster's JobFlows, CronJobFlows and templates with an older release's CRD
before it is applied.

The newer-schema guard (known_fields.py) asks the same question of this release's models, which stand
for this release's CRD; an older CRD has no models here, so this walks its structural schema (as the
apiserver does) instead. Under that CRD a key it does not declare is pruned at the object's next write,
for good, and a value its enum lacks has every write of the object refused (422): the controller then
holds the object (status_holds.py, cron_status.py) until the newer CRD is back.

The subtrees whose schema keeps any key (x-kubernetes-preserve-unknown-fields, additionalProperties) are
not looked into past what the schema declares, as the apiserver prunes nothing there.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

PRUNED = "a field that CRD does not have: pruned at the object's next write"
# Not walked: the apiserver's own (metadata is never pruned by a CRD's schema), and the type's name.
_OWN = frozenset({"apiVersion", "kind", "metadata"})


def lacking(schema: Mapping[str, Any], obj: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every key and enumerated value of `obj` (a whole object, as listed) that `schema` (the CRD
    version's openAPIV3Schema) lacks: (path, what), in the object's order."""
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return []
    found: list[tuple[str, str]] = []
    for key, value in obj.items():
        if key in _OWN:
            continue
        if key not in properties:
            found.append((key, PRUNED))
        else:
            found.extend(_walk(properties[key], value, key))
    return found


def _walk(schema: Any, value: Any, path: str) -> Iterator[tuple[str, str]]:
    if not isinstance(schema, Mapping):
        return
    enum = schema.get("enum")
    if isinstance(enum, list) and value is not None and value not in enum:
        known = ", ".join(str(v) for v in enum)
        yield path, f"{json.dumps(value)} is not one of that CRD's values ({known}): every write refused"
        return
    if isinstance(value, dict):
        yield from _object(schema, value, path)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(schema.get("items"), item, f"{path}[{i}]")


def _object(schema: Mapping[str, Any], value: dict[str, Any], path: str) -> Iterator[tuple[str, str]]:
    properties = schema.get("properties")
    properties = properties if isinstance(properties, Mapping) else {}
    extra = schema.get("additionalProperties")
    keeps_any = schema.get("x-kubernetes-preserve-unknown-fields") is True or extra is True
    for key, item in value.items():
        at = f"{path}.{key}"
        if key in properties:
            yield from _walk(properties[key], item, at)
        elif isinstance(extra, Mapping):
            yield from _walk(extra, item, at)  # a map: any key, each value by the one schema
        elif not keeps_any:
            yield at, PRUNED
