"""spec.resourceTemplates: PersistentVolumeClaims and ConfigMaps created once when the flow starts.

Each is created as `<flow name>-<metadata.name>`; the original's checks (a name, access modes, a
non-zero storage request) plus unique names and that the prefixed name is still a valid object name, and
no label or annotation key of zen-flow's own (core/own_keys.py): the controller creates these objects
under its identity, and trusts those keys on ConfigMaps.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from zen_flow.validation.errors import Path, duplicate, invalid, not_supported, required
from zen_flow.validation.formats import (
    config_key_problem,
    parse_quantity,
    quantity_problem,
    subdomain_problem,
)
from zen_flow.validation.reader import Reader
from zen_flow.validation.template import refuse_own_keys

ACCESS_MODES = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")


def _check_name(r: Reader, obj: Mapping[str, Any], path: Path, flow: str, seen: set[str]) -> None:
    meta = r.mapping(obj.get("metadata"), path + ".metadata", require=True)
    if meta is None:
        return
    for field in ("labels", "annotations"):  # `enabled: true` would become the label value "True"
        field_path = path + ".metadata" + "." + field
        # The controller creates the object: it must not carry keys it trusts.
        refuse_own_keys(r, r.string_map(meta.get(field), field_path) or (), field_path)
    name_path = path + ".metadata" + ".name"
    name = r.string(meta.get("name"), name_path, require=True)
    if name is None:
        return
    if problem := subdomain_problem(name):
        r.add(invalid(name_path, name, problem))
    elif flow and (problem := subdomain_problem(f"{flow}-{name}")):
        r.add(invalid(name_path, name, f"the object is created as {flow}-{name}, which {problem}"))
    if name in seen:
        r.add(duplicate(name_path, name))
    seen.add(name)


def _check_claim(r: Reader, claim: Mapping[str, Any], path: Path) -> None:
    spec_path = path + ".spec"
    spec = r.mapping(claim.get("spec"), spec_path, require=True)
    if spec is None:
        return
    modes_path = spec_path + ".accessModes"
    modes = r.sequence(spec.get("accessModes"), modes_path, require=True)
    if modes is not None and not modes:
        r.add(required(modes_path, "at least one access mode"))
    for i, mode in enumerate(modes or ()):
        text = r.string(mode, modes_path + f"[{i}]", item=True)
        if text is not None and text not in ACCESS_MODES:
            r.add(not_supported(modes_path + f"[{i}]", text, ACCESS_MODES))
    resources = r.mapping(spec.get("resources"), spec_path + ".resources", require=True)
    if resources is None:
        return
    requests_path = spec_path + ".resources" + ".requests"
    requests = r.mapping(resources.get("requests"), requests_path, require=True)
    if requests is None:
        return
    storage_path = requests_path + "[storage]"
    if requests.get("storage") is None:
        r.add(required(storage_path, "a volume claim must request storage"))
        return
    amount = parse_quantity(requests["storage"])
    if amount is None:
        r.add(invalid(storage_path, requests["storage"], quantity_problem(requests["storage"])))
    elif amount <= 0:
        r.add(invalid(storage_path, requests["storage"], "must be greater than 0"))


def _check_config_map(r: Reader, config_map: Mapping[str, Any], path: Path) -> None:
    for field in ("data", "binaryData"):
        data = r.string_map(config_map.get(field), path + "." + field)
        for key, value in (data or {}).items():
            if problem := config_key_problem(key):
                r.add(invalid(path + "." + field, key, problem))
            elif field == "binaryData" and not _is_base64(value):
                # The CRD keeps the template as written: the apiserver would refuse the ConfigMap later.
                r.add(invalid(path + "." + field + f"[{key}]", "...", "must be base64-encoded"))


def _is_base64(value: str) -> bool:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def check_resource_templates(r: Reader, templates: Mapping[str, Any], path: Path, flow: str) -> None:
    seen: set[str] = set()
    for item_path, claim in r.mappings(templates.get("volumeClaimTemplates"), path + ".volumeClaimTemplates"):
        if r.shallow(claim, item_path):
            _check_name(r, claim, item_path, flow, seen)
            _check_claim(r, claim, item_path)
    seen = set()
    for item_path, config_map in r.mappings(
        templates.get("configMapTemplates"), path + ".configMapTemplates"
    ):
        if r.shallow(config_map, item_path):
            _check_name(r, config_map, item_path, flow, seen)
            _check_config_map(r, config_map, item_path)
