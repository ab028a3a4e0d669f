#!/usr/bin/env python3
"""Regenerate the spec properties of the JobFlowTemplate and ClusterJobFlowTemplate CRDs from the JobFlow
CRD's (in place).

A template's spec is a JobFlow's definition: the JobFlow CRD's spec properties without the flow's own
`suspend` and `templateRef`, copied as text so their descriptions (what `kubectl explain jft.spec` and
`kubectl explain cjft.spec` show) stay word for word the JobFlow's. Run it after changing the JobFlow
CRD's spec (`make manifests` does); `--check` changes nothing and exits 1 when a template CRD is out of
date (tests/unit/test_template_crd.py asserts the same).
"""

from __future__ import annotations

import sys
from pathlib import Path

from zen_flow.api.jobflow import FLOWS_OWN  # `zen-flow validate` reads the same (validation/unknown_keys.py)

ROOT = Path(__file__).resolve().parents[1]
FLOW_CRD = ROOT / "config" / "crd" / "jobflows.workflow.kube-zen.io.yaml"
TEMPLATE_CRDS = (
    ROOT / "config" / "crd" / "jobflowtemplates.workflow.kube-zen.io.yaml",
    ROOT / "config" / "crd" / "clusterjobflowtemplates.workflow.kube-zen.io.yaml",
)
SPEC_PROPERTIES = " " * 14 + "properties:\n"  # the `properties:` of openAPIV3Schema.properties.spec
PROPERTY = " " * 16  # the indentation of a spec property's name


def _properties_of_spec(lines: list[str], spec_line: int) -> tuple[int, int]:
    """The line range of the spec's properties (their names at PROPERTY indentation)."""
    start = lines.index(SPEC_PROPERTIES, spec_line) + 1
    end = start
    while end < len(lines) and (lines[end].startswith(PROPERTY) or not lines[end].strip()):
        end += 1
    return start, end


def _spec_line(lines: list[str]) -> int:
    return lines.index(" " * 12 + "spec:\n")


def template_text(template_crd: Path) -> str:
    flow = FLOW_CRD.read_text().splitlines(keepends=True)
    start, end = _properties_of_spec(flow, _spec_line(flow))
    kept: list[str] = []
    keep = True
    for line in flow[start:end]:
        if line.startswith(PROPERTY) and not line.startswith(PROPERTY + " "):
            keep = line.strip().rstrip(":") not in FLOWS_OWN
        if keep:
            kept.append(line)
    template = template_crd.read_text().splitlines(keepends=True)
    t_start, t_end = _properties_of_spec(template, _spec_line(template))
    return "".join(template[:t_start] + kept + template[t_end:])


def main() -> int:
    status = 0
    for template_crd in TEMPLATE_CRDS:
        text = template_text(template_crd)
        if text == template_crd.read_text():
            continue
        if sys.argv[1:] == ["--check"]:
            print(
                f"out of date: {template_crd.relative_to(ROOT)} (run tools/template-crd.py)", file=sys.stderr
            )
            status = 1
            continue
        template_crd.write_text(text)
        print(f"updated {template_crd.relative_to(ROOT)}")
    return status


if __name__ == "__main__":
    sys.exit(main())
