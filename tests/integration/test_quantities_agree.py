"""The validator reads a step's resource quantities as the apiserver does in the Job the controller
creates for it. The controller's JSON escapes every character but printable ASCII (kube/client.py:
json.dumps, as this test's client); resource.Quantity's UnmarshalJSON takes the text between the quotes
as it is (escapes not decoded), trims Go's white space around it and parses the rest (ParseQuantity).
So spaces around a quantity are taken, and any other white space (a tab, a newline, a no-break space)
reaches it as an escape and is refused: a step whose Job the apiserver would refuse (after the steps
before it ran) is refused at admission instead, and one it takes is admitted."""

from __future__ import annotations

from typing import Any

import pytest

from zen_flow.kube.errors import ApiError
from zen_flow.validation.formats import parse_quantity
from zen_flow_dev.testing.driver import FlowDriver

pytestmark = pytest.mark.integration

AMOUNTS = [
    "1Gi",
    " 1Gi",
    "1Gi ",
    "\t1Gi\n",
    "\u00a01Gi",  # no-break space: white space for Go and Python, sent escaped
    "1Gi\u2003",  # em space: likewise
    "\u30001Gi",  # ideographic space: likewise
    "1Gi\x1c",  # file separator: white space for Python's str.strip() only
    "\x1f1Gi",  # unit separator: likewise
    "\u200b1Gi",  # zero-width space: white space for neither
    "1 Gi",
    "   ",
]


def job(memory: str) -> dict[str, Any]:
    container = {"name": "main", "image": "busybox", "resources": {"limits": {"memory": memory}}}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"generateName": "quantity-"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [container]}}},
    }


async def created(driver: FlowDriver, namespace: str, memory: str) -> bool:
    """Would the apiserver create a Job with this memory limit (a dry run)? False when it refuses it."""
    try:
        await driver.kube.request(
            "POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", body=job(memory), query=[("dryRun", "All")]
        )
    except ApiError as err:
        if err.status not in (400, 422):
            raise
        return False
    return True


async def test_the_validator_reads_a_quantity_as_the_apiserver_does(
    driver: FlowDriver, namespace: str
) -> None:
    taken = {amount: await created(driver, namespace, amount) for amount in AMOUNTS}
    assert taken[" 1Gi"]  # trimmed by UnmarshalJSON (its TODO would remove that one day)
    assert not taken["\t1Gi\n"]
    assert {a: parse_quantity(a) is not None for a in AMOUNTS} == taken
