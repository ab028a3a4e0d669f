"""The env vars the artifact uploader needs to mount a template's volume as the step's container does.

A volume mount with `subPathExpr` (`logs/$(POD_NAME)`) is expanded by the kubelet from the env of the
container that mounts it. The uploader (planner/artifacts.py) mounts the same volume to read an output
on it, with the same `subPathExpr`, but expanded from its own env, which lacks the step container's
variables: it would read another directory (`$(POD_NAME)` left as it is, an empty one) and store
nothing, or the wrong files. So the uploader is given the variables the expression names, defined as
the step's container defines them:

- an `env` entry is copied as it is, with the entries its `$(VAR)` references name (the kubelet expands
  them against the variables defined before it), in their order; a downward API `resourceFieldRef`
  without `containerName` names the step's container, since in the uploader it would read the
  uploader's own resources;
- a variable that may come from `envFrom` (a ConfigMap or Secret, under its `prefix`) becomes one
  optional `configMapKeyRef`/`secretKeyRef` entry per source that could hold it, in the sources' order,
  placed before the copied `env` entries: the kubelet gives `env` precedence over `envFrom` and the last
  source holding a key wins, and an optional key that is absent sets nothing, as `envFrom` does.

Only what the expression needs is copied: the whole env could hold `AWS_*` variables or proxies that
would change where the uploader's S3 client goes. For the same reason an expression naming one of those
(or `PATH`, `HOME`, `PYTHON*`, ... which the uploader's process depends on), itself or through a value
referring to it, fails the step as a name the uploader sets does. The entries are placed after the
uploader's own (planner/artifacts.py): the kubelet expands `$(VAR)` in a value against the entries before
it, so the uploader's plan (an output's `s3.key` holding `$(POD_NAME)`) stays the literal text the
controller records, while `subPathExpr` is expanded from the container's whole env.

The controller reads no ConfigMap or Secret (decision 11), hence one entry per candidate source rather
than the one source that holds the key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from zen_flow.planner.jobs import JobBuildError

# What the uploader's process and its S3 client read from the env besides its own ZF_* settings: where it
# connects and as whom (AWS_*, proxies, CA files), and how it runs (PATH, HOME, Python's, the loader's).
_DEPENDED_ON = frozenset(
    {"PATH", "HOME", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"}
)
_DEPENDED_ON_PROXIES = frozenset({"http_proxy", "https_proxy", "no_proxy", "all_proxy"})  # any case
_DEPENDED_ON_PREFIXES = ("AWS_", "PYTHON", "LD_")


def depended_on(name: str) -> bool:
    """Whether the uploader depends on the env var `name`, so a copy from the step's container would
    change where it stores, as whom, or how it runs."""
    return (
        name in _DEPENDED_ON
        or name.lower() in _DEPENDED_ON_PROXIES
        or name.upper().startswith(_DEPENDED_ON_PREFIXES)
    )


def references(text: str) -> list[str]:
    """The variables `$(VAR)` in `text` names, in order, as the kubelet reads them (`$$` is a `$`)."""
    names: list[str] = []
    i = 0
    while i < len(text) - 1:
        if text[i] == "$" and text[i + 1] == "$":
            i += 2
        elif text[i] == "$" and text[i + 1] == "(":
            end = text.find(")", i + 2)
            if end < 0:
                break
            names.append(text[i + 2 : end])
            i = end + 1
        else:
            i += 1
    return names


def uploader_env(
    uses: Sequence[tuple[Mapping[str, Any], str]], reserved: Iterable[str]
) -> list[dict[str, Any]]:
    """The env entries that give the uploader the values of the variables each `subPathExpr` names, as
    the container mounting it defines them (`uses`: (container, expression) per mount the uploader
    takes). JobBuildError when a variable is one the uploader sets itself (`reserved`), or two of the
    containers define one differently: the uploader has one env, so a mount would resolve elsewhere."""
    reserved = set(reserved)
    seen: dict[str, tuple[list[dict[str, Any]], str]] = {}  # variable -> (its entries, whose)
    sourced: list[dict[str, Any]] = []
    copied: list[dict[str, Any]] = []
    for container, expression in uses:
        whose = str(container.get("name"))
        env = [
            e for e in container.get("env") or () if isinstance(e, Mapping) and isinstance(e.get("name"), str)
        ]
        needed = _closure(env, references(expression))
        if clash := sorted(needed & reserved):
            raise JobBuildError(
                f"container {whose}'s volume mount subPathExpr {expression!r} names {', '.join(clash)}, "
                "an env var zen-flow's artifact uploader sets itself: rename it"
            )
        if clash := sorted(n for n in needed if depended_on(n)):
            raise JobBuildError(
                f"container {whose}'s volume mount subPathExpr {expression!r} names {', '.join(clash)}, "
                "an env var zen-flow's artifact uploader depends on (where it stores, as whom, how it "
                "runs): use another variable"
            )
        new: set[str] = set()
        for name in sorted(needed):
            from_sources = _from_sources(container.get("envFrom") or (), name)
            entries = [*from_sources, *(_copied(e, container) for e in env if e["name"] == name)]
            if name in seen:
                if seen[name][0] != entries:
                    raise JobBuildError(
                        f"containers {seen[name][1]} and {whose} both mount a volume with a subPathExpr "
                        f"naming {name}, which they define differently: the artifact uploader, which "
                        "mounts both, has one env; define it alike or use one subPathExpr"
                    )
                continue
            seen[name] = (entries, whose)
            new.add(name)
            sourced.extend(from_sources)
        copied.extend(_copied(e, container) for e in env if e["name"] in new)
    return [*sourced, *copied]


def _closure(env: Sequence[Mapping[str, Any]], names: Iterable[str]) -> set[str]:
    """`names`, and every variable a value defining one of them refers to, and so on."""
    needed: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        needed.add(name)
        for entry in env:
            value = entry.get("value")
            if entry["name"] == name and isinstance(value, str):
                todo.extend(references(value))
    return needed


def _from_sources(sources: Iterable[Any], name: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for source in sources:
        if not isinstance(source, Mapping):
            continue
        prefix = source.get("prefix") or ""
        key = name[len(prefix) :] if isinstance(prefix, str) and name.startswith(prefix) else ""
        if not key:
            continue
        for kind, ref in (("configMapRef", "configMapKeyRef"), ("secretRef", "secretKeyRef")):
            found = source.get(kind)
            if isinstance(found, Mapping) and isinstance(found.get("name"), str):
                selector = {"name": found["name"], "key": key, "optional": True}
                out.append({"name": name, "valueFrom": {ref: selector}})
    return out


def _copied(entry: Mapping[str, Any], container: Mapping[str, Any]) -> dict[str, Any]:
    copy = dict(entry)
    source = entry.get("valueFrom")
    field = source.get("resourceFieldRef") if isinstance(source, Mapping) else None
    if isinstance(source, Mapping) and isinstance(field, Mapping) and not field.get("containerName"):
        copy["valueFrom"] = {**source, "resourceFieldRef": {**field, "containerName": container.get("name")}}
    return copy
