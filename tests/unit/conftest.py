"""Every unit test runs hermetic (hermetic.py): no cluster tools, no network. `rig`: a controller against
FakeApiServer (controller_rig.py), for tests parametrized indirectly with the flow it starts from. `ca`
and `trust`: a test's own certificate authority and a client context trusting only it (the webhook
server's HTTPS tests)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import hermetic
import pytest
from controller_rig import Rig, running

from zen_flow_dev.cluster.pki import CertificateAuthority, create_ca


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch) -> None:
    hermetic.install(monkeypatch)


@pytest.fixture
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    async with running(request.param) as started:
        yield started


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return create_ca(tmp_path / "ca")


@pytest.fixture
def trust(ca: CertificateAuthority) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca.cert_path))
