"""No CRD tightens a rule under an atomic list, and none widens an enum there unsaid: each bound under the
items of an atomic list, in all four CRDs, is in tests/fixtures/crd-atomic-bounds.txt.

The apiserver ratchets a rule (lets an update keep a value a newer rule refuses) only where it can pair a
new value with its old one: object fields, and the items of a list of `x-kubernetes-list-type: map`. The
items of any other list (`atomic`, a list with no list type, which is atomic, or `set`) are never paired,
so a bound on them applies to every write of the object, a status write or a label patch included. Those
subtrees are found by walking each CRD's schema, not named here: spec.steps, the podFailurePolicy rules,
the flow's and its steps' locks, stepDefaults' tolerations and pull secrets, a step's inputs and outputs,
status.steps, the conditions, a CronJobFlow's active runs...

- A bound added or tightened there refuses every later write of a stored object that breaks it, the
  controller's status writes of a running flow included (it sticks Running), and a stored template can
  no longer be updated. New rules go in the webhook (validation/) or the jobflow-steps admission policy.
- An enum widened there is safe going forward but not backward: a CRD of an earlier version (a rollback,
  `helm rollback`, `kubectl apply -k` of an older tag) refuses every write of an object holding a new
  value, unratcheted for the same reason, so every status write of such a flow is refused (422) until it
  is deleted. A widening is recorded as an `enum+` line with its reason (the version, and that a
  rollback past it fails such flows): the test fails on one that is not. Those lines are the list of
  values a rollback cannot take (`widened()`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BOUNDS = ROOT / "tests" / "fixtures" / "crd-atomic-bounds.txt"
CRDS = ("jobflows", "jobflowtemplates", "clusterjobflowtemplates", "cronjobflows")
# The three flow CRDs share their spec (tools/template-crd.py) and so their lines; a CronJobFlow's paths
# begin with this.
PREFIX = {"cronjobflows": "cronjobflows:"}
# What refuses a value the schema took before (a default, a description or a type hint refuses nothing).
KEYWORDS = (
    "maxLength", "minLength", "maxItems", "minItems", "maxProperties", "minProperties", "pattern", "enum",
    "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "required",
    "x-kubernetes-list-type", "x-kubernetes-list-map-keys", "x-kubernetes-validations",
)  # fmt: skip
WIDENED = "enum+"  # a fixture line's keyword: values an enum gained, with why after `#`

Bound = tuple[str, str, str]  # path, keyword, the value as canonical JSON

RULE = (
    "a new or tightened bound under an atomic list ({crd}): {bounds}. The apiserver does not ratchet the "
    "items of an atomic list (nor of a list with no list type, or a set), so every write of a stored object "
    "breaking it, the controller's status writes included, would be refused (the flow sticks Running). "
    "Check it in the webhook (validation/) or the jobflow-steps admission policy instead. Only a bound on a "
    "field no stored object can hold a breaking value in (a new field the apiserver pruned before) may be "
    "added to tests/fixtures/crd-atomic-bounds.txt, with its reason after `#`."
)
WIDENING = (
    "an enum widened under an atomic list ({crd}): {enums}. Record each as a line `PATH enum+ [NEW VALUES]  "
    "# REASON` in tests/fixtures/crd-atomic-bounds.txt, the reason naming the version and saying that a "
    "rollback past it makes every status write of an object holding a new value fail (an older CRD refuses "
    "it, unratcheted under an atomic list); say so in the CHANGELOG's upgrade notes too."
)


def _canonical(keyword: str, value: Any) -> str:
    if keyword == "enum":  # its order refuses nothing
        value = sorted(value, key=_canonical_value)
    return _canonical_value(value)


def _canonical_value(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def bounds(schema: dict[str, Any], path: str) -> Iterator[Bound]:
    """Every bound of `schema` and below it, by path."""
    for keyword in KEYWORDS:
        if keyword in schema:
            yield path, keyword, _canonical(keyword, schema[keyword])
    for name, prop in schema.get("properties", {}).items():
        yield from bounds(prop, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from bounds(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from bounds(schema["additionalProperties"], f"{path}.*")


def atomic_items(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, schema) of the items of every list whose items the apiserver does not pair with their old
    values (any list type but `map`), outermost only: the lists inside those are in their subtree."""
    items = schema.get("items")
    if schema.get("type") == "array" and isinstance(items, dict):
        if schema.get("x-kubernetes-list-type") != "map":
            yield f"{path}[]", items
            return
        yield from atomic_items(items, f"{path}[]")
    for name, prop in schema.get("properties", {}).items():
        yield from atomic_items(prop, f"{path}.{name}" if path else name)
    if isinstance(schema.get("additionalProperties"), dict):
        yield from atomic_items(schema["additionalProperties"], f"{path}.*")


def crd_schema(crd: str) -> dict[str, Any]:
    with (ROOT / "config" / "crd" / f"{crd}.workflow.kube-zen.io.yaml").open() as f:
        (version,) = yaml.safe_load(f)["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def found(crd: str, schema: dict[str, Any] | None = None) -> set[Bound]:
    prefix = PREFIX.get(crd, "")
    subtrees = atomic_items(crd_schema(crd) if schema is None else schema)
    return {bound for path, items in subtrees for bound in bounds(items, prefix + path)}


def _lines() -> Iterator[tuple[int, str, str, Any, str]]:
    for number, line in enumerate(BOUNDS.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        path, keyword, rest = line.split(" ", 2)
        value, end = json.JSONDecoder().raw_decode(rest)
        reason = rest[end:]
        assert reason == "" or reason.startswith("  # "), f"{BOUNDS.name}:{number}: {reason!r}"
        assert keyword in (*KEYWORDS, WIDENED), f"{BOUNDS.name}:{number}: {keyword}"
        yield number, path, keyword, value, reason.removeprefix("  # ")


def widened() -> dict[tuple[str, str], str]:
    """The values enums under atomic lists gained, each with its reason: what a rollback cannot take."""
    return {
        (path, v): why for _, path, keyword, values, why in _lines() if keyword == WIDENED for v in values
    }


def listed() -> dict[Bound, str]:
    """The committed list: each bound and the reason it may be there (empty: it predates the rule). An
    enum is its line's values and those its `enum+` lines add."""
    kept: dict[Bound, str] = {}
    enums: dict[str, list[Any]] = {}
    for number, path, keyword, value, reason in _lines():
        if keyword == WIDENED:
            assert reason, f"{BOUNDS.name}:{number}: an enum+ line says why (the rollback it prevents)"
            assert path in enums, f"{BOUNDS.name}:{number}: an enum+ line follows its enum's line"
            enums[path] += value
            continue
        if keyword == "enum":
            enums[path] = list(value)
        kept[path, keyword, _canonical(keyword, value)] = reason
    for path, values in enums.items():
        base = next(b for b in kept if b[:2] == (path, "enum"))
        kept[path, "enum", _canonical("enum", values)] = kept.pop(base)
    return kept


def _widenings(new: list[Bound]) -> list[str]:
    """The enums of `new` that only gained values over the listed ones: `path +[values]`."""
    said: list[str] = []
    before = {path: json.loads(value) for path, keyword, value in listed() if keyword == "enum"}
    for path, keyword, value in new:
        now = json.loads(value)
        if keyword == "enum" and path in before and set(before[path]) < set(now):
            said.append(f"{path} +{json.dumps([v for v in now if v not in before[path]])}")
    return said


def verdict(crd: str, schema: dict[str, Any] | None = None) -> list[str]:
    """What is wrong with the bounds under `crd`'s atomic lists, each said with its rule."""
    new = sorted(found(crd, schema) - listed().keys())
    widenings = _widenings(new)
    tightened = [b for b in new if not (b[1] == "enum" and any(w.startswith(f"{b[0]} +") for w in widenings))]
    said = [WIDENING.format(crd=crd, enums="; ".join(widenings))] if widenings else []
    if tightened:
        said.append(RULE.format(crd=crd, bounds="; ".join(" ".join(bound) for bound in tightened)))
    return said


@pytest.mark.parametrize("crd", CRDS)
def test_no_bound_under_an_atomic_list_is_new_tightened_or_widened_unsaid(crd: str) -> None:
    said = verdict(crd)
    assert said == [], "\n".join(said)


def test_the_list_holds_no_bound_the_crds_dropped() -> None:
    # Loosening is safe going forward (a rollback past it is not, once an object uses the room: as for a
    # widened enum); the list follows, so that putting the bound back is caught as new.
    everywhere = set().union(*(found(crd) for crd in CRDS))
    grown = {w.split(" +")[0] for crd in CRDS for w in _widenings(sorted(found(crd) - listed().keys()))}
    gone = sorted(b for b in listed().keys() - everywhere if not (b[1] == "enum" and b[0] in grown))
    assert gone == [], f"the CRDs no longer have these bounds: remove their lines from {BOUNDS.name}: {gone}"


def test_the_atomic_subtrees_are_found_by_walking_the_crds() -> None:
    # Not a list to keep up to date: the walk finds a new atomic list by itself. These must be among them.
    paths = {path for crd in CRDS for path, _ in atomic_items(crd_schema(crd))}
    assert {
        "spec.steps[]",
        "spec.executionPolicy.podFailurePolicy.rules[]",
        "spec.synchronization.mutexes[]",
        "spec.synchronization.semaphores[]",
        "spec.stepDefaults.podSpec.tolerations[]",
        "spec.stepDefaults.podSpec.imagePullSecrets[]",
        "spec.resourceTemplates.configMapTemplates[]",
        "spec.arguments.parameters[].enum[]",  # a set inside a map list (whose items are paired)
        "status.steps[]",
        "status.conditions[]",
        "status.active[]",  # a CronJobFlow's
    } <= paths
    assert "spec.arguments.parameters[]" not in paths  # a map list: its items are ratcheted


@pytest.mark.parametrize(
    ("where", "bound"),
    [
        (("steps", "items", "inputs", "artifacts", "items", "s3", "key"), ("maxLength", 1024)),
        (("steps", "items", "name"), ("maxLength", 32)),  # tightened: a new value of a listed keyword
        (
            ("executionPolicy", "podFailurePolicy", "rules", "items", "onExitCodes", "values"),
            ("maxItems", 10),
        ),
        (("synchronization", "mutexes", "items", "name"), ("maxLength", 32)),
        (("stepDefaults", "podSpec", "tolerations", "items", "key"), ("maxLength", 63)),
        (("stepDefaults", "podSpec", "imagePullSecrets", "items", "name"), ("pattern", "^[a-z]+$")),
    ],
    ids=["new", "tightened", "podFailurePolicy", "locks", "tolerations", "pull-secrets"],
)
def test_a_new_or_tightened_bound_fails_with_the_rule(where: tuple[str, ...], bound: tuple[str, Any]) -> None:
    schema = crd_schema("jobflows")
    node: dict[str, Any] = schema["properties"]["spec"]
    for key in where:
        node = node[key] if key == "items" else node["properties"][key]
    keyword, value = bound
    node[keyword] = value
    new = sorted(found("jobflows", schema) - listed().keys())
    path = "spec." + ".".join(where).replace(".items", "[]")
    assert new == [(path, keyword, _canonical(keyword, value))]
    (said,) = verdict("jobflows", schema)
    assert said.startswith("a new or tightened bound under an atomic list (jobflows): " + " ".join(new[0]))


def test_a_widened_enum_fails_until_its_enum_plus_line_says_why() -> None:
    schema = crd_schema("jobflows")
    step = schema["properties"]["spec"]["properties"]["steps"]["items"]
    step["properties"]["type"]["enum"] = ["Job", "Manual", "Flow", "Loop"]
    new = sorted(found("jobflows", schema) - listed().keys())
    assert _widenings(new) == ['spec.steps[].type +["Loop"]']
    status = schema["properties"]["status"]["properties"]["steps"]["items"]
    status["properties"]["phase"]["enum"].append("Cancelled")
    new = sorted(found("jobflows", schema) - listed().keys())
    assert _widenings(new) == ['spec.steps[].type +["Loop"]', 'status.steps[].phase +["Cancelled"]']
    (said,) = verdict("jobflows", schema)  # widened only: the rollback's rule, not the tightening's
    assert said.startswith("an enum widened under an atomic list (jobflows): spec.steps[].type +")
    step["properties"]["name"]["maxLength"] = 32  # and a tightening beside it: both said
    assert [s.split(":")[0] for s in verdict("jobflows", schema)] == [
        "an enum widened under an atomic list (jobflows)",
        "a new or tightened bound under an atomic list (jobflows)",
    ]
    step["properties"]["name"]["maxLength"] = 63
    # Reordered is not widened, nor anything else.
    step["properties"]["type"]["enum"] = ["Flow", "Manual", "Job"]
    status["properties"]["phase"]["enum"].pop()
    assert found("jobflows", schema) <= listed().keys()


def test_an_enum_plus_line_takes_the_widening_only_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = crd_schema("jobflows")
    schema["properties"]["spec"]["properties"]["steps"]["items"]["properties"]["type"]["enum"].append("Loop")
    lines = BOUNDS.read_text().splitlines()
    at = lines.index('spec.steps[].type enum ["Job", "Manual", "Flow"]') + 1
    fixture = tmp_path / "bounds.txt"
    monkeypatch.setattr(sys.modules[__name__], "BOUNDS", fixture)
    fixture.write_text("\n".join([*lines[:at], 'spec.steps[].type enum+ ["Loop"]', *lines[at:]]))
    with pytest.raises(AssertionError, match="an enum\\+ line says why"):
        listed()
    why = "new in 0.3: a rollback past 0.3 refuses every status write of a flow with a Loop step"
    fixture.write_text("\n".join([*lines[:at], f'spec.steps[].type enum+ ["Loop"]  # {why}', *lines[at:]]))
    assert found("jobflows", schema) <= listed().keys()
    assert widened() == {("spec.steps[].type", "Loop"): why}


def test_every_bound_added_after_the_rule_says_why() -> None:
    reasons = {bound: why for bound, why in listed().items() if why}
    assert reasons.keys() == {("spec.steps[].retryPolicy.affinity.nodeAntiAffinity", "maxProperties", "0")}
    assert all("pruned" in why for why in reasons.values())
    # No enum was widened since the list began: a rollback to any version since takes every value.
    assert widened() == {}
