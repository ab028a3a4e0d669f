"""Values that are each valid but wrong together, refused by the chart naming both, rendered by the real
helm (helm_rig): the controller would refuse them at start-up (pods crash-looping, the flags named, not
the values), or the apiserver would cut the webhook off before its own answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helm_rig import RenderError, deployment, render

from deploy_manifests import settings_of


@pytest.mark.parametrize(
    ("values", "named"),
    [
        # A review waiting for a thread longer than the apiserver waits is cut by the apiserver: the
        # write fails on a timeout (failurePolicy Fail) instead of the webhook's 429.
        ({"webhook": {"queueWaitSeconds": 5, "timeoutSeconds": 5}}, r"webhook\.queueWaitSeconds \(5\)"),
        ({"webhook": {"queueWaitSeconds": 10}}, r"below webhook\.timeoutSeconds \(5\)"),
        # zen-flow run refuses these (need --lease-duration > --renew-deadline > 1.2 x --retry-period).
        ({"leaderElection": {"leaseDuration": 10}}, r"leaderElection\.leaseDuration \(10\)"),
        ({"leaderElection": {"renewDeadline": 2}}, r"leaderElection\.renewDeadline \(2\)"),
        # Two servers on one port: the second cannot bind, the pod crash-loops.
        ({"metrics": {"port": 9443}}, r"metrics\.port and webhook\.port"),
    ],
)
def test_values_wrong_together_are_refused_naming_them(
    helm: str, tmp_path: Path, values: dict[str, Any], named: str
) -> None:
    with pytest.raises(RenderError, match=named):
        render(helm, tmp_path, values)


def test_the_same_values_render_where_they_do_not_meet(helm: str, tmp_path: Path) -> None:
    # Without the webhook its port and queue are not used; without leader election, no Lease.
    off = {"webhook": {"enabled": False, "queueWaitSeconds": 10}, "metrics": {"port": 9443}}
    assert settings_of(deployment(render(helm, tmp_path, off))).webhook_addr == ""
    single = {"replicaCount": 1, "leaderElection": {"enabled": False, "leaseDuration": 10}}
    assert settings_of(deployment(render(helm, tmp_path, single))).leader_elect is False
    # Fractions, as the flags take them.
    values = {"leaderElection": {"leaseDuration": 7.5, "renewDeadline": 5, "retryPeriod": 4}}
    assert settings_of(deployment(render(helm, tmp_path, values))).lease_duration == 7.5
