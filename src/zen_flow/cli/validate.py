"""`zen-flow validate [-p NAME=VALUE]... PATH...`: the admission rules, offline, on YAML files and
directories; `-p` overrides the flows' arguments first (as creating the flow from the file would).

Directories are searched recursively for *.yaml and *.yml; a file may hold several documents; documents
that are not JobFlows (other kinds, empty documents) are skipped, so a whole manifests folder can be
checked; CronJobFlows are checked with their own rules (the schedule, the time zone, and the template
with the JobFlow rules), as their webhook does, and JobFlowTemplates and ClusterJobFlowTemplates with
theirs (their spec with the JobFlow rules). A flow that names a template (`spec.templateRef`) is expanded
from it, as the webhook would, when the template is among the documents given (same name, and namespace
when both set one; a ClusterJobFlowTemplate, `clusterScope: true`, by name), and the expanded flow
checked; otherwise it is checked as far as it can be without it (the steps its approval and values
annotations name are left to the webhook: a note on `err` says so). A key a JobFlow's, CronJobFlow's
(its run template's included) or template's spec does not have is an error too (`unknown_fields`), a
snake_case one (`execution_policy`) with the key meant: a typo the apiserver would drop (or a newer
release's field, which this CLI cannot check).
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

from zen_flow import __version__
from zen_flow.api.constants import CLUSTER_TEMPLATE_KIND, CRON_KIND, GROUP, KIND, TEMPLATE_KIND
from zen_flow.cli.overrides import override_arguments
from zen_flow.documents import DocumentError, load_all, read_bounded
from zen_flow.validation.approvals import awaits_expansion
from zen_flow.validation.cronjobflow import validate_cronjobflow
from zen_flow.validation.errors import ErrorType, FieldError
from zen_flow.validation.expansion import expand, is_cron_run, needs_expansion, template_ref
from zen_flow.validation.flow import validate_jobflow
from zen_flow.validation.flow_template import validate_clusterjobflowtemplate, validate_jobflowtemplate
from zen_flow.validation.unknown_keys import detail, document_unknown_keys
from zen_flow.validation.warnings import flow_warnings

EXIT_OK = 0
EXIT_INVALID = 2
EXIT_UNREADABLE = 2
_SUFFIXES = (".yaml", ".yml")
# Said of a flow naming a template not at hand, whose approval or values annotations name its steps.
UNCHECKED = (
    "the steps its approval and values annotations name are its JobFlowTemplate's: the webhook checks "
    "them once it has expanded the flow"
)


def unknown_fields(doc: Mapping[str, Any]) -> list[FieldError]:
    """The keys of a JobFlow's, CronJobFlow's (its run template's spec too) or template's spec that the
    schema does not have (validation/unknown_keys.py): the apiserver prunes them (kubectl's strict field
    validation refuses them), so a misspelt `dependencies` would let its step start at once. A key in
    another spelling of one it has (`execution_policy`, `ExecutionPolicy`) is named with that one."""
    # An older CLI cannot tell a typo from a newer release's field; the advice covers both.
    unknown = (
        f"zen-flow {__version__}'s schema has no such key (a typo, which the apiserver would drop, or a "
        "field of a newer zen-flow: use its CLI)"
    )
    respelt = "(keys are camelCase: the apiserver would drop this one)"  # no release has snake_case keys
    return [
        FieldError(found.path, ErrorType.FORBIDDEN, detail=detail(found, respelt, unknown))
        for found in document_unknown_keys(doc)
    ]


KINDS = (KIND, CRON_KIND, TEMPLATE_KIND, CLUSTER_TEMPLATE_KIND)


def misnamed(doc: Any) -> FieldError | None:
    """Why a document meant for zen-flow would be skipped: a kind its API group does not have, or one of
    its kinds spelt in another case (`Jobflow`). Documents of other APIs are None: skipped, so that a
    manifests folder can be checked."""
    if not isinstance(doc, dict) or not isinstance(kind := doc.get("kind"), str):
        return None
    version = doc.get("apiVersion")
    group = version.split("/")[0] if isinstance(version, str) else None
    if kind not in KINDS and (meant := [k for k in KINDS if k.lower() == kind.lower()]):
        return FieldError("kind", ErrorType.NOT_SUPPORTED, kind, f"kinds are case-sensitive: {meant[0]}")
    if group != GROUP:
        return None
    if kind not in KINDS:
        return FieldError("kind", ErrorType.NOT_SUPPORTED, kind, f"the kinds of {GROUP}: {', '.join(KINDS)}")
    return None  # a version it does not serve: the rules say so


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


Loaded = tuple[str, Any]  # (label, document)


def _load(paths: Sequence[str], err: TextIO) -> tuple[list[Loaded], bool]:
    """Every document of `paths`, labelled; and whether every path could be read."""
    docs: list[Loaded] = []
    readable = True
    for raw in paths:
        root = Path(raw)
        if not root.exists():
            err.write(f"{raw}: no such file or directory\n")
            readable = False
            continue
        for file in _files(root):
            try:
                found = load_all(read_bounded(file))
            except DocumentError as exc:
                err.write(f"{file}: {exc}\n")
                readable = False
                continue
            docs += [(f"{file}#{n}" if len(found) > 1 else str(file), d) for n, d in enumerate(found, 1)]
    return docs, readable


def _namespace(doc: Any) -> str | None:
    meta = doc.get("metadata") if isinstance(doc, dict) else None
    namespace = meta.get("namespace") if isinstance(meta, dict) else None
    return namespace if isinstance(namespace, str) and namespace else None


def _template_for(doc: Mapping[str, Any], docs: Sequence[Loaded]) -> Mapping[str, Any] | None:
    """The JobFlowTemplate the flow `doc` names, when one of the documents given is it (by name, and
    namespace when both say one), or the ClusterJobFlowTemplate (`clusterScope`, by name); None
    otherwise."""
    ref = template_ref(doc.get("spec"))
    if ref is None:
        return None
    for _, other in docs:
        if not is_jobflow(other, ref.kind) or other.get("metadata", {}).get("name") != ref.name:
            continue
        if (
            ref.cluster
            or None in (_namespace(doc), _namespace(other))
            or _namespace(doc) == _namespace(other)
        ):
            return dict(other)
    return None


def _check_flow(
    label: str, doc: Any, docs: Sequence[Loaded], overrides: Mapping[str, str], err: TextIO
) -> tuple[Any, list[FieldError]]:
    """The flow as the webhook would store it (expanded, when it names a template given beside it), and
    its errors. A flow naming a template not given is checked as far as it can be without it: the steps
    its approval and values annotations name are left to the webhook, which checks them once it has
    expanded the flow."""
    unknown = unknown_fields(doc)  # the file's own keys, before -p and a template change them
    doc, errors = override_arguments(doc, overrides)
    errors += unknown
    spec = doc.get("spec")
    if needs_expansion(spec) and (template := _template_for(doc, docs)) is not None:
        meta = doc.get("metadata")
        expansion = expand(spec, template, _namespace(doc) or "default", run=is_cron_run(meta))
        if expansion.spec is None:
            return doc, errors + list(expansion.errors)
        meta = meta if isinstance(meta, dict) else {}
        labels = meta.get("labels")
        labels = labels if isinstance(labels, dict) else {}
        ref = template_ref(spec)
        named = ref.labels if ref is not None else {}
        doc = {**doc, "metadata": {**meta, "labels": {**labels, **named}}}
        doc["spec"] = expansion.spec
    waits = awaits_expansion(doc)
    errors += validate_jobflow(doc, approvals=not waits)  # listed together, as the webhook does
    if waits:
        err.write(f"{label}: note: {UNCHECKED}\n")
    return doc, errors


def validate_paths(
    paths: Sequence[str], out: TextIO, err: TextIO, overrides: Mapping[str, str] | None = None
) -> int:
    loaded, readable = _load(paths, err)
    status = EXIT_OK if readable else EXIT_UNREADABLE
    flows = crons = templates = cluster_templates = invalid = unknown = 0
    for label, doc in loaded:
        if (wrong := misnamed(doc)) is not None:
            out.write(f"{label}: {wrong}\n")
            unknown += 1
            status = EXIT_INVALID
            continue
        if is_jobflow(doc, CRON_KIND):
            crons += 1
            errors = validate_cronjobflow(doc) + unknown_fields(doc)
        elif is_jobflow(doc, TEMPLATE_KIND):
            templates += 1
            errors = validate_jobflowtemplate(doc) + unknown_fields(doc)
        elif is_jobflow(doc, CLUSTER_TEMPLATE_KIND):
            cluster_templates += 1
            errors = validate_clusterjobflowtemplate(doc) + unknown_fields(doc)
        elif is_jobflow(doc):
            flows += 1
            doc, errors = _check_flow(label, doc, loaded, overrides or {}, err)
        else:
            continue
        for error in errors:
            out.write(f"{label}: {error}\n")
        warnings = [] if errors else flow_warnings(doc)
        for warning in warnings:  # as kubectl prints the webhook's
            err.write(f"{label}: Warning: {warning}\n")
        if errors:
            invalid += 1
            status = EXIT_INVALID
    checked = flows + crons + templates + cluster_templates
    if checked == 0 and status == EXIT_OK:
        err.write("zen-flow validate: no JobFlow documents found\n")
    elif checked:
        counted = [f"{flows} JobFlow(s)"]
        counted += [f"{crons} CronJobFlow(s)"] if crons else []
        counted += [f"{templates} JobFlowTemplate(s)"] if templates else []
        counted += [f"{cluster_templates} ClusterJobFlowTemplate(s)"] if cluster_templates else []
        listed = counted[0] if len(counted) == 1 else ", ".join(counted[:-1]) + " and " + counted[-1]
        err.write(f"zen-flow validate: {listed} checked, {invalid} invalid\n")
    if unknown:
        err.write(f"zen-flow validate: {unknown} document(s) of a kind zen-flow does not have\n")
    return status
