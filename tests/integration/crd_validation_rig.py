"""The `objects` fixture of the CRD validation tests: the CustomObjectsApi, with the JobFlow CRD installed."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes_asyncio import client


@pytest.fixture(name="objects")
def objects_fixture(api_client: Any, jobflow_crd: dict[str, Any]) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)
