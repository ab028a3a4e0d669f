"""What admission accepts but the user should hear about: forms the original took that zen-flow keeps
for compatibility but that do not do what the manifest suggests (docs/API.md, "Differences from the
original"). Sent as admission warnings, which kubectl prints (`Warning: ...`) and `zen-flow validate`
prints too; never a refusal.

Checked on valid flows only, and cheaply: most specs hold no artifacts, and a spec without the word is
not decoded for this at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The apiserver keeps a warning to 4 KiB in all and cuts longer ones; kubectl prints one line each.
MAX_WARNINGS = 10


def spec_may_warn(spec_bytes: bytes | None) -> bool:
    """Could this spec (its JSON as the apiserver sent it) draw a warning? False skips the decode."""
    return spec_bytes is not None and b'"artifacts"' in spec_bytes


def flow_warnings(flow: Mapping[str, Any]) -> list[str]:
    """The warnings of a flow that passed validation (its shapes are known to be right)."""
    spec = flow.get("spec")
    steps = spec.get("steps") if isinstance(spec, Mapping) else None
    warnings: list[str] = []
    for i, step in enumerate(steps if isinstance(steps, list) else []):
        outputs = step.get("outputs") if isinstance(step, Mapping) else None
        artifacts = outputs.get("artifacts") if isinstance(outputs, Mapping) else None
        for j, artifact in enumerate(artifacts if isinstance(artifacts, list) else []):
            if isinstance(artifact, Mapping) and "s3" not in artifact:
                warnings.append(
                    f"spec.steps[{i}].outputs.artifacts[{j}]: no s3, so {artifact.get('name')!s} is stored "
                    "nowhere and no later step can take it (the original meant to keep it in a ConfigMap)"
                )
    if len(warnings) > MAX_WARNINGS:
        warnings[MAX_WARNINGS - 1 :] = [f"and {len(warnings) - MAX_WARNINGS + 1} more artifacts without s3"]
    return warnings
