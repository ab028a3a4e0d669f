"""No CRD tightens a rule under spec.steps[]: each bound there is in tests/fixtures/crd-step-bounds.txt.

spec.steps is an atomic list, whose items the apiserver does not ratchet: a bound added under it refuses
every later write of a stored flow that breaks it, the controller's status writes included, so the flow
sticks Running (and a stored template can no longer be updated). New step rules go in the webhook or the
jobflow-steps admission policy; this test makes a new bound in any of the three CRDs fail with that reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BOUNDS = ROOT / "tests" / "fixtures" / "crd-step-bounds.txt"
CRDS = ("jobflows", "jobflowtemplates", "clusterjobflowtemplates")
# What refuses a value the schema took before (a default, a description or a type hint refuses nothing).
KEYWORDS = (
    "maxLength", "minLength", "maxItems", "minItems", "maxProperties", "minProperties", "pattern", "enum",
    "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "required",
    "x-kubernetes-list-type", "x-kubernetes-list-map-keys", "x-kubernetes-validations",
)  # fmt: skip

Bound = tuple[str, str, str]  # path, keyword, the value as canonical JSON

RULE = (
    "a new or tightened bound under spec.steps[] ({crd}): {bounds}. spec.steps is an atomic list and the "
    "apiserver does not ratchet its items, so every write of a stored flow breaking it, the controller's "
    "status writes included, would be refused (the flow sticks Running). Check it in the webhook "
    "(validation/) or the jobflow-steps admission policy instead. Only a bound on a field no stored object "
    "can hold a breaking value in (a new field the apiserver pruned before) may be added to "
    "tests/fixtures/crd-step-bounds.txt, with its reason after `#`."
)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def bounds(schema: dict[str, Any], path: str = "steps[]") -> Iterator[Bound]:
    for keyword in KEYWORDS:
        if keyword in schema:
            yield path, keyword, _canonical(schema[keyword])
    for name, prop in schema.get("properties", {}).items():
        yield from bounds(prop, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from bounds(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from bounds(schema["additionalProperties"], f"{path}.*")


def step_schema(crd: str) -> dict[str, Any]:
    with (ROOT / "config" / "crd" / f"{crd}.workflow.kube-zen.io.yaml").open() as f:
        (version,) = yaml.safe_load(f)["spec"]["versions"]
    steps: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["steps"]
    assert steps["x-kubernetes-list-type"] == "atomic", crd
    items: dict[str, Any] = steps["items"]
    return items


def listed() -> dict[Bound, str]:
    """The committed list: each bound and the reason it may be there (empty: it predates the rule)."""
    kept: dict[Bound, str] = {}
    for number, line in enumerate(BOUNDS.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        path, keyword, rest = line.split(" ", 2)
        value, end = json.JSONDecoder().raw_decode(rest)
        reason = rest[end:]
        assert reason == "" or reason.startswith("  # "), f"{BOUNDS.name}:{number}: {reason!r}"
        assert keyword in KEYWORDS, f"{BOUNDS.name}:{number}: {keyword}"
        kept[path, keyword, _canonical(value)] = reason.removeprefix("  # ")
    return kept


@pytest.mark.parametrize("crd", CRDS)
def test_no_bound_under_the_steps_is_new_or_tightened(crd: str) -> None:
    found = set(bounds(step_schema(crd)))
    new = sorted(found - listed().keys())
    assert new == [], RULE.format(crd=crd, bounds="; ".join(" ".join(bound) for bound in new))


@pytest.mark.parametrize("crd", CRDS)
def test_the_list_holds_no_bound_the_crd_dropped(crd: str) -> None:
    # Loosening is safe; the list follows, so that putting the bound back is caught as new.
    gone = sorted(listed().keys() - set(bounds(step_schema(crd))))
    assert gone == [], f"{crd} no longer has these bounds: remove their lines from {BOUNDS.name}: {gone}"


def test_a_new_bound_fails_with_the_reason() -> None:
    schema = step_schema("jobflows")
    schema["properties"]["inputs"]["properties"]["artifacts"]["items"]["properties"]["s3"]["properties"][
        "key"
    ]["maxLength"] = 1024
    new = set(bounds(schema)) - listed().keys()
    assert new == {("steps[].inputs.artifacts[].s3.key", "maxLength", "1024")}
    schema["properties"]["name"]["maxLength"] = 32  # tightened: a new value of a listed keyword
    assert ("steps[].name", "maxLength", "32") in set(bounds(schema)) - listed().keys()


def test_every_bound_added_after_the_rule_says_why() -> None:
    reasons = {bound: why for bound, why in listed().items() if why}
    assert reasons.keys() == {("steps[].retryPolicy.affinity.nodeAntiAffinity", "maxProperties", "0")}
    assert all("pruned" in why for why in reasons.values())
