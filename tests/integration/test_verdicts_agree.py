"""The validator, the CRD and the models agree, on generated (broken) flows, against a real apiserver.

Three judges read a JobFlow: the apiserver (the CRD's schema and CEL rules), the validator (webhook and
controller) and the models (the controller's cache). Their verdicts must fit together:
- what the validator admits, the apiserver stores (the webhook never allows a flow the CRD refuses);
- what the apiserver stores, the models read (the controller can always load what is in the cluster),
  and a step is a Job or an approval gate for both the validator and the models.
The validator may refuse more than the CRD (cycles, references, cost): that is what the webhook adds.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from zen_flow.api import JobFlow
from zen_flow.api.constants import API_VERSION, KIND, PLURAL
from zen_flow.kube.errors import ApiError
from zen_flow.kube.jobflows import JOBFLOWS
from zen_flow.validation import validate_jobflow
from zen_flow.validation.steps import is_manual
from zen_flow_dev.testing.driver import FlowDriver
from zen_flow_dev.testing.mutations import corrupted_examples

pytestmark = pytest.mark.integration


async def _dry_run_create(driver: FlowDriver, namespace: str, flow: Any) -> dict[str, Any] | None:
    """The object the apiserver would store, or None when it refuses it."""
    try:
        return await driver.kube.request(
            "POST", JOBFLOWS.path(namespace), body=flow, query=[("dryRun", "All")]
        )
    except ApiError as err:
        if err.status in (400, 422):
            return None
        raise


def test_the_validator_the_crd_and_the_models_agree(
    namespace: str, kubeconfig: Any, jobflow_crd: Any
) -> None:
    assert PLURAL == "jobflows"
    loop = asyncio.new_event_loop()
    driver = loop.run_until_complete(FlowDriver.connect(kubeconfig))
    checked = {"admitted": 0, "stored": 0}

    @settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(corrupted_examples())
    def check(flow: Any) -> None:
        # The envelope is the request's, not the flow's: an admission review always has it.
        meta = flow.get("metadata") if isinstance(flow.get("metadata"), dict) else {}
        flow.update(apiVersion=API_VERSION, kind=KIND, metadata={**meta, "namespace": namespace})
        valid = validate_jobflow(flow) == []
        stored = loop.run_until_complete(_dry_run_create(driver, namespace, flow))
        if valid:
            checked["admitted"] += 1
            assert stored is not None, "the validator admitted a flow the CRD refuses"
        if stored is None:
            return
        checked["stored"] += 1
        model = JobFlow.model_validate(stored)  # the controller can load whatever the cluster holds
        for raw, step in zip(stored["spec"]["steps"], model.spec.steps, strict=True):
            assert step.is_manual == is_manual(raw), raw

    try:
        check()
    finally:
        loop.run_until_complete(driver.close())
        loop.close()
    assert checked["admitted"] > 0
    assert checked["stored"] > checked["admitted"] / 2
