"""The code blocks of README.md and docs/*.md, with what the docs tests do with each.

Every fenced block with a language (sh, console, yaml, python) says how it is tested, on the line just
before it (blank lines between are fine):

  <!-- doc-test: run [offline] [WORD=VALUE ...] -->
      sh: the block is one bash script (set -euo pipefail); console: each `$ ` line is a command and
      the lines after it, up to the next command, are what it must print (it is retried until it does,
      within a deadline: a flow moves on; columns such as AGE match any duration). `offline` runs
      it without a cluster (unit tier), otherwise it runs in the doc's session on the real-node tier:
      a fresh namespace (the kubeconfig's default), a controller watching it, the doc's files. WORD=VALUE
      replaces a placeholder word of the text (`NAME=release`) before running.
  <!-- doc-test: file NAME -->
      yaml: saved as NAME in the session's directory for later blocks; it must be a valid JobFlow.
  <!-- doc-test: fragment -->
      a piece of a manifest or of code: it must parse (yaml, python).
  <sub>not run by the docs tests: REASON</sub>
      visible to the reader: the block is not run, and REASON says why.

Blocks without a language (diagrams, trees, sample output) are text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
LANGUAGES = ("sh", "console", "yaml", "python")
_FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
_MARKER = re.compile(r"^\s*<!-- doc-test: (run|file|fragment)\b(.*?)-->\s*$")
_SKIP = re.compile(r"^\s*<sub>not run by the docs tests: (.+)</sub>\s*$")


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int  # of the opening fence, 1-based
    language: str
    body: str
    kind: str  # run | file | fragment | skip | missing (no marker)
    words: tuple[str, ...] = ()  # the marker's plain words: "offline", a file name
    substitutions: dict[str, str] = field(default_factory=dict)
    reason: str = ""  # for skip

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line}"

    def text(self) -> str:
        """The body with the marker's WORD=VALUE substitutions made."""
        body = self.body
        for word, value in self.substitutions.items():
            body = re.sub(rf"\b{re.escape(word)}\b", value, body)
        return body


def documents() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def blocks(doc: Path) -> list[Block]:
    lines = doc.read_text().split("\n")
    found: list[Block] = []
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        indent, language = fence.groups()
        end = next(j for j in range(i + 1, len(lines)) if (close := _FENCE.match(lines[j])) and not close[2])
        body = "\n".join(line.removeprefix(indent) for line in lines[i + 1 : end]) + "\n"
        if language:
            found.append(_marked(doc, i, language, body, lines))
        i = end + 1
    return found


def _marked(doc: Path, index: int, language: str, body: str, lines: list[str]) -> Block:
    before = index - 1
    while before >= 0 and not lines[before].strip():
        before -= 1
    line = lines[before] if before >= 0 else ""
    if skip := _SKIP.match(line):
        return Block(doc, index + 1, language, body, "skip", reason=skip[1])
    marker = _MARKER.match(line)
    if marker is None:
        return Block(doc, index + 1, language, body, "missing")
    words, substitutions = [], {}
    for token in marker[2].split():
        name, equals, value = token.partition("=")
        if equals:
            substitutions[name] = value
        else:
            words.append(token)
    return Block(doc, index + 1, language, body, marker[1], tuple(words), substitutions)


def commands(block: Block) -> list[tuple[str, list[str]]]:
    """A console block's commands, each with the output lines it must print."""
    steps: list[tuple[str, list[str]]] = []
    for line in block.text().splitlines():
        if line.startswith("$ "):
            steps.append((line[2:].strip(), []))
        elif steps and line.strip():
            steps[-1][1].append(line)
    return steps


_DURATION = re.compile(r"^\d+(\.\d+)?(ms|s|m|h|d)(\d+(s|m))?$")


def shows(expected: list[str], output: str) -> bool:
    """Does `output` show every expected line (whitespace-insensitive; a duration matches any duration:
    an AGE column)?"""
    got = [line.split() for line in output.splitlines()]
    return all(any(_same(want, have) for have in got) for want in (line.split() for line in expected))


def _same(want: list[str], have: list[str]) -> bool:
    return len(want) == len(have) and all(
        w == h or (_DURATION.match(w) is not None and _DURATION.match(h) is not None)
        for w, h in zip(want, have, strict=True)
    )
