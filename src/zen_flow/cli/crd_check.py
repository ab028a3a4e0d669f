"""`zen-flow crd check-downgrade --crd FILE`: before rolling zen-flow's CRDs back to an older release's,
list every stored object those CRDs would not keep as it is.

FILE holds the older CRDs (one or several YAML documents: the older checkout's config/crd/*.yaml, or
`kubectl kustomize config/crd` there); every CustomResourceDefinition of workflow.kube-zen.io in it is
checked: each object of its kind in the cluster (or in the namespace -n names) is walked with the CRD's
schema, as the apiserver would hold it to. A key the older schema does not declare would be pruned at
the object's next write, for good; a value its enum lacks gets every write of the object refused, and
the controller holds the object (OPERATOR_GUIDE.md, "Rollback"). One line per finding on stdout,
`Kind namespace/name: path: what`, and a count on stderr.

Exit status: 0 nothing found; 1 some object holds what the older CRD lacks, or the apiserver refused or
could not be reached; 2 FILE unreadable or without a CRD of zen-flow's (nothing was sent).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from zen_flow.api.constants import GROUP
from zen_flow.api.older_crd import lacking
from zen_flow.cli import session
from zen_flow.cli.session import EXIT_FAILED, EXIT_OK, Session, UsageError

EXAMPLES = """\
examples:
  zen-flow crd check-downgrade --crd ../zen-flow-0.4/config/crd/      # the older checkout's CRDs
  kubectl kustomize ../zen-flow-0.4/config/crd > old.yaml && zen-flow crd check-downgrade --crd old.yaml
  zen-flow crd check-downgrade --crd old.yaml -n team-a               # one namespace's objects"""


@dataclass(frozen=True)
class OlderCrd:
    """One CRD of the file: what to list, and the schema to hold the objects to."""

    kind: str
    plural: str
    version: str
    namespaced: bool
    schema: Mapping[str, Any]


def add_crd_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    crd = sub.add_parser("crd", help="zen-flow's CRDs: check a rollback to an older release's")
    verbs = crd.add_subparsers(dest="crd_command", required=True, metavar="VERB")
    p = verbs.add_parser(
        "check-downgrade",
        help="list the objects holding a field or value an older release's CRD lacks",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # kubectl's flags, but -n: its default is every namespace (a rollback is the whole cluster's).
    session.add_client_arguments(p, namespace_help="only this namespace's objects (default: every namespace)")
    p.add_argument(
        "--crd",
        required=True,
        metavar="FILE",
        help="the older CRDs: a YAML file, or a directory of them (*.yaml, *.yml)",
    )
    p.set_defaults(func=_cmd_check_downgrade)


def _cmd_check_downgrade(args: argparse.Namespace) -> int:
    args.command = f"crd {args.crd_command}"  # errors say `zen-flow crd check-downgrade: ...`
    return session.run(check_downgrade, args, offline=_read_crds)


def _read_crds(args: argparse.Namespace) -> None:
    """Read FILE before anything is sent: unreadable, or no CRD of zen-flow's in it, is exit 2."""
    path = Path(args.crd)
    files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")]) if path.is_dir() else [path]
    crds: list[OlderCrd] = []
    for file in files:
        try:
            documents = list(yaml.safe_load_all(file.read_text()))
        except (OSError, yaml.YAMLError) as err:
            raise UsageError(f"{file}: {err}") from None
        crds.extend(crd for doc in documents if (crd := _older_crd(doc)) is not None)
    if not crds:
        raise UsageError(f"{args.crd}: no CustomResourceDefinition of {GROUP} in it")
    args.older_crds = crds


def _older_crd(doc: Any) -> OlderCrd | None:
    """The CRD of `doc` if it is one of zen-flow's, at its storage version (the one objects are kept at)."""
    if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
        return None
    spec = doc.get("spec") or {}
    if spec.get("group") != GROUP:
        return None
    versions = [v for v in spec.get("versions") or [] if isinstance(v, dict)]
    version = next((v for v in versions if v.get("storage")), versions[0] if versions else None)
    names = spec.get("names") or {}
    if version is None or not version.get("name") or not names.get("plural"):
        return None  # not a CRD the apiserver would take
    schema = ((version.get("schema") or {}).get("openAPIV3Schema")) or {}
    return OlderCrd(
        names.get("kind", ""),
        names["plural"],
        version["name"],
        spec.get("scope") != "Cluster",
        schema,
    )


async def check_downgrade(s: Session, args: argparse.Namespace) -> int:
    namespace: str | None = args.namespace  # None: every namespace (not the context's: a whole cluster)
    found = checked = 0
    # Cluster-scoped kinds are not of one namespace: left out with -n (and from the summary's list).
    crds = [c for c in args.older_crds if namespace is None or c.namespaced]
    for crd in crds:
        where = f"namespaces/{namespace}/" if namespace is not None else ""
        listed = await s.client.list_all(f"/apis/{GROUP}/{crd.version}/{where}{crd.plural}")
        for obj in listed.items:
            checked += 1
            meta = obj.get("metadata") or {}
            name = f"{meta['namespace']}/{meta.get('name')}" if meta.get("namespace") else meta.get("name")
            for path, what in lacking(crd.schema, obj):
                found += 1
                s.out.write(f"{crd.kind} {name}: {path}: {what}\n")
    kinds = ", ".join(c.kind for c in crds)
    s.err.write(f"{found} finding(s) in {checked} object(s) ({kinds}) against {args.crd}\n")
    return EXIT_FAILED if found else EXIT_OK
