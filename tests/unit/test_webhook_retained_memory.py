"""Reviews of long spec strings leave the webhook's process no bigger, whether they are allowed or denied.

The validator caches pure functions of spec strings (JSONPaths, names, quantities) for the life of the
process, and the webhook runs in the controller's pod: a cache keyed by whatever a review sent kept a
90 KB path's 1.8 MB of segments, or a denied spec's 900 KB Secret name, until the pod was OOM-killed.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable
from typing import Any

from test_webhook_review import review
from validation_samples import base_flow, step

from zen_flow.validation import validate_jobflow
from zen_flow.validation.limits import MAX_JSON_PATH
from zen_flow.webhook.review import validate_review

MIB = 2**20


def retained(make: Callable[[int], dict[str, Any]], n: int) -> tuple[int, set[bool]]:
    """Bytes still allocated after `n` reviews of distinct specs (the specs themselves are dropped)."""
    validate_review(review(make(-1)))  # warm up: imports, first-call caches of fixed size
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        answers = {validate_review(review(make(k)))["response"]["allowed"] for k in range(n)}
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return after - before, answers


def long_paths(k: int, *, length: int, deny: bool = False) -> dict[str, Any]:
    """Step d reads 10 distinct JSONPaths of about `length` characters from step a."""
    flow = base_flow()
    head = [f"a:$.k{k}x{j}" for j in range(10)]
    params = [
        {"name": f"p{j}", "valueFrom": {"jsonPath": h + ".ab" * ((length - len(h)) // 3)}}
        for j, h in enumerate(head)
    ]
    step(flow, "d")["inputs"] = {"parameters": params}
    if deny:
        step(flow, "d")["dependencies"] = ["a", "nope"]
    return flow


def test_megabyte_jsonpaths_are_refused_too_long_naming_the_field() -> None:
    errors = validate_jobflow(long_paths(0, length=90_000))
    assert {e.path for e in errors} == {
        f"spec.steps[4].inputs.parameters[{j}].valueFrom.jsonPath" for j in range(10)
    }
    assert all(f"Too long: may not be more than {MAX_JSON_PATH} bytes" in str(e) for e in errors)


def test_an_output_jsonpath_over_the_limit_is_refused_and_one_at_it_is_not() -> None:
    def with_output(path: str) -> list[str]:
        flow = base_flow()
        step(flow, "a")["outputs"]["parameters"].append({"name": "q", "valueFrom": {"jsonPath": path}})
        return [str(e) for e in validate_jobflow(flow)]

    at_limit = "$" + ".x" * ((MAX_JSON_PATH - 1) // 2) + "y" * ((MAX_JSON_PATH - 1) % 2)
    assert len(at_limit) == MAX_JSON_PATH
    assert with_output(at_limit) == []
    (error,) = with_output(at_limit + "z")
    assert error.startswith("spec.steps[0].outputs.parameters[1].valueFrom.jsonPath: Too long")


def test_many_allowed_reviews_of_distinct_long_paths_keep_no_memory() -> None:
    # 300 reviews x 10 distinct paths of the longest length admitted: 3,000 keys, each parsed to ~170
    # segments. Kept in a cache, that is well over 10 MB; none is kept.
    grown, answers = retained(lambda k: long_paths(k, length=MAX_JSON_PATH), 300)
    assert answers == {True}
    assert grown < 2 * MIB, grown


def test_denied_reviews_of_megabyte_paths_are_refused_by_length_and_keep_no_memory() -> None:
    # The length check (validation/limits.MAX_JSON_PATH) refuses these before any parse: no cache sees
    # them. What the path cache keeps of long paths it does parse is the 512-character test above.
    grown, answers = retained(lambda k: long_paths(1000 + k, length=90_000, deny=True), 5)
    assert answers == {False}
    assert grown < 2 * MIB, grown


def test_denied_reviews_of_megabyte_secret_names_keep_no_memory() -> None:
    def long_secret(k: int) -> dict[str, Any]:
        flow = base_flow()
        name = f"s{k}-" + "x" * 900_000
        step(flow, "d")["inputs"] = {
            "parameters": [{"name": "p", "valueFrom": {"secretKeyRef": {"name": name, "key": "k"}}}]
        }
        return flow

    grown, answers = retained(long_secret, 10)
    assert answers == {False}
    assert grown < 2 * MIB, grown


def test_many_reviews_of_distinct_long_quantities_keep_no_memory() -> None:
    # 10 reviews x 100 distinct 4,000-digit amounts: 1,000 keys, each with its Decimal, well over 4 MB if
    # the quantity cache kept them.
    def long_quantities(k: int) -> dict[str, Any]:
        flow = base_flow()
        amounts = {f"example.com/r{j}": f"{(k + 2) * 1000 + j}" + "0" * 4_000 for j in range(100)}
        container = step(flow, "d")["template"]["spec"]["template"]["spec"]["containers"][0]
        container["resources"] = {"requests": amounts}
        return flow

    grown, _ = retained(long_quantities, 10)
    assert grown < 2 * MIB, grown
