"""Instructions per admission review, counted by valgrind: a figure a shared machine cannot move.

    python -m zen_flow_dev.bench.instructions [--steps 500] [--reviews 5] [--src DIR ...] [--kind KIND ...]

The webhook's latency on a shared VM moves by 2x while neighbours run (docs/BENCHMARKS.md), so two
builds a few percent apart cannot be told apart by their timings. Here each review kind runs in a child
interpreter under callgrind twice, once with one review and once with `1 + --reviews`, and the
difference of the two counts, divided by `--reviews`, is what one review costs: start-up and imports
cancel out. Every `--src` (a checkout's `src/`, e.g. a git worktree of another commit) is counted the
same way, so builds compare side by side in one table. Instructions are not time (a cache miss costs
more than an add; SHA-256 runs without its CPU extension under valgrind), but they count the work
the code asks for. Needs valgrind (Debian: `apt-get install valgrind`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# What each kind sends: (path, operation, what differs between its reviews: the step names, so each is
# a spec never seen; an argument's value, as `zen-flow submit -p` sends one spec; or nothing).
KINDS = {
    "new spec": ("/validate-jobflow", "CREATE", "names"),
    "same spec": ("/validate-jobflow", "CREATE", ""),
    "other arguments": ("/validate-jobflow", "CREATE", "argument"),
    "update": ("/validate-jobflow", "UPDATE", ""),
    "mutate": ("/mutate-jobflow", "CREATE", ""),
}
_COLLECTED = re.compile(r"Collected : (\d+)")
_DEVKIT = Path(__file__).resolve().parents[2]


def _child(kind: str, steps: int, total: int, run: int) -> None:
    """Build `total` review bodies (always, so set-up is the same in both runs), then answer `run`."""
    from zen_flow.webhook.review import mutate_review, validate_review
    from zen_flow_dev.bench.admission import admission_flow, admission_review

    path, operation, differs = KINDS[kind]
    handler: Callable[[bytes], dict[str, object]] = validate_review if "validate" in path else mutate_review
    bodies = []
    for n in range(total):
        flow = admission_flow(steps, rich=True, prefix=f"u{n}-" if differs == "names" else "s")
        if differs == "argument":
            flow["spec"]["arguments"] = {"parameters": [{"name": "build", "value": f"build-{n}"}]}
        bodies.append(json.dumps(admission_review(flow, operation), separators=(",", ":")).encode())
    for body in bodies[:run]:
        answer = handler(body)
        if not answer["response"]["allowed"]:  # type: ignore[index]
            raise SystemExit(f"{kind}: denied: {str(answer)[:300]}")


def count(src: str | None, kind: str, steps: int, total: int, run: int) -> int:
    """Instructions of a child interpreter that answers `run` reviews of `kind`."""
    with tempfile.TemporaryDirectory(prefix="zenflow-callgrind-") as tmp:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, str(_DEVKIT), env.get("PYTHONPATH")) if p)
        # One string-hash salt for every child: with a salt of its own each, dictionaries collide
        # differently and two counts of one build moved by ~0.5 M, more than a small review costs.
        env["PYTHONHASHSEED"] = "0"
        args = [sys.executable, "-m", "zen_flow_dev.bench.instructions", "--child", kind]
        args += ["--steps", str(steps), "--total", str(total), "--run", str(run)]
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/out", *args],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind of {kind!r} failed ({done.returncode}): {done.stderr[-1000:]}")
    return int(found.group(1))


def per_review(src: str | None, kind: str, steps: int, reviews: int) -> float:
    total = 1 + reviews
    # The two children side by side (valgrind runs one thread): counts do not depend on sharing the CPU.
    with ThreadPoolExecutor(2) as pool:
        many, one = pool.map(lambda run: count(src, kind, steps, total, run), (total, 1))
    return (many - one) / reviews


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zen_flow_dev.bench.instructions", description=__doc__)
    parser.add_argument("--steps", type=int, default=500, help="steps of the rich flow (default 500)")
    parser.add_argument("--reviews", type=int, default=5, help="reviews counted per kind (default 5)")
    parser.add_argument("--src", action="append", help="a zen-flow src/ directory (default: as installed)")
    parser.add_argument("--kind", action="append", choices=sorted(KINDS), help="default: every kind")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--total", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--run", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.steps, args.total, args.run)
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind not found (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    builds: list[str | None] = args.src or [None]
    kinds = args.kind or list(KINDS)
    print(f"| build | review ({args.steps} rich steps) | M instructions per review |")
    print("|---|---|---|")
    for kind in kinds:
        for src in builds:
            figure = per_review(src, kind, args.steps, args.reviews)
            print(f"| {src or 'installed'} | {kind} | {figure / 1e6:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
