"""`zen-flow validate [-p NAME=VALUE]... PATH...`: the admission rules, offline, on YAML files and
directories; `-p` overrides the flows' arguments first (as creating the flow from the file would).

Directories are searched recursively for *.yaml and *.yml; a file may hold several documents; documents that
are not JobFlows (other kinds, empty documents) are skipped, so a whole manifests folder can be checked;
CronJobFlows are checked with their own rules (the schedule, the time zone, and the template with the
JobFlow rules), as their webhook does, and JobFlowTemplates with theirs (their spec with the JobFlow
rules). A flow that names a template (`spec.templateRef`) is checked as far as it can be without it.
One line per error on `out`, prefixed with the file (and `#<n>`, the 1-based document number, when the
file has several documents); the webhook's warnings on a valid flow on
`err` (`Warning: ...`, as kubectl prints them); then one line on `err`: how many flows were checked and how
many are invalid. Exit status: 0 all valid; 2 some flow invalid, or a path could not be read or parsed (as
`zen-flow submit` refuses an invalid file: 2 is bad input, 1 is left to the cluster's answers).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from zen_flow.api.constants import CRON_KIND, GROUP, KIND, TEMPLATE_KIND
from zen_flow.cli.overrides import override_arguments
from zen_flow.documents import DocumentError, load_all, read_bounded
from zen_flow.validation.approvals import validate_approvals
from zen_flow.validation.cronjobflow import validate_cronjobflow
from zen_flow.validation.flow import validate_jobflow
from zen_flow.validation.flow_template import validate_jobflowtemplate
from zen_flow.validation.warnings import flow_warnings

EXIT_OK = 0
EXIT_INVALID = 2
EXIT_UNREADABLE = 2
_SUFFIXES = (".yaml", ".yml")


def _files(path: Path) -> Iterator[Path]:
    if path.is_dir():
        yield from sorted(p for p in path.rglob("*") if p.suffix in _SUFFIXES and p.is_file())
    else:
        yield path


def is_jobflow(doc: Any, kind: str = KIND) -> bool:
    if not isinstance(doc, dict) or doc.get("kind") != kind:
        return False
    api_version = doc.get("apiVersion")
    return not isinstance(api_version, str) or api_version.split("/")[0] == GROUP


def validate_paths(
    paths: Sequence[str], out: TextIO, err: TextIO, overrides: Mapping[str, str] | None = None
) -> int:
    status = EXIT_OK
    flows = crons = templates = invalid = 0
    for raw in paths:
        root = Path(raw)
        if not root.exists():
            err.write(f"{raw}: no such file or directory\n")
            status = EXIT_UNREADABLE
            continue
        for file in _files(root):
            try:
                docs = load_all(read_bounded(file))
            except DocumentError as exc:
                err.write(f"{file}: {exc}\n")
                status = EXIT_UNREADABLE
                continue
            for number, doc in enumerate(docs, start=1):
                label = f"{file}#{number}" if len(docs) > 1 else str(file)
                if is_jobflow(doc, CRON_KIND):
                    crons += 1
                    errors = validate_cronjobflow(doc)
                elif is_jobflow(doc, TEMPLATE_KIND):
                    templates += 1
                    errors = validate_jobflowtemplate(doc)
                elif is_jobflow(doc):
                    flows += 1
                    doc, errors = override_arguments(doc, overrides or {})
                    errors += validate_jobflow(doc) + validate_approvals(doc)
                else:
                    continue
                for error in errors:
                    out.write(f"{label}: {error}\n")
                warnings = [] if errors or doc.get("kind") != KIND else flow_warnings(doc)
                for warning in warnings:  # as kubectl prints the webhook's
                    err.write(f"{label}: Warning: {warning}\n")
                if errors:
                    invalid += 1
                    status = EXIT_INVALID
    if flows + crons + templates == 0 and status == EXIT_OK:
        err.write("zen-flow validate: no JobFlow documents found\n")
    elif flows + crons + templates:
        counted = [f"{flows} JobFlow(s)"]
        counted += [f"{crons} CronJobFlow(s)"] if crons else []
        counted += [f"{templates} JobFlowTemplate(s)"] if templates else []
        listed = counted[0] if len(counted) == 1 else ", ".join(counted[:-1]) + " and " + counted[-1]
        err.write(f"zen-flow validate: {listed} checked, {invalid} invalid\n")
    return status
