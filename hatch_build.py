"""Wheel build hook: with ZEN_FLOW_COMPILE=1, the admission rules are compiled with mypyc.

A 500-step flow the webhook has not seen costs ~12 ms of Python in the rules alone; compiled, ~30 %
less (docs/BENCHMARKS.md). The modules are plain typed Python (mypy --strict), so mypyc compiles them
unchanged, and the wheel keeps their sources beside the compiled ones (Python imports the compiled one).

Off by default: `pip install zen-flow`, editable installs and the release's pure wheel stay pure Python
on every platform. `tools/build-image.sh` turns it on for the image, building with
`--no-build-isolation` so that mypy sees the real dependencies' types. Compiled in a copy of `src/`:
mypyc writes its modules next to their sources, and a compiled module left in the checkout would shadow
every later edit of the source under an editable install.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

# What the webhook and the controller's spec check run per step, and nothing that defines a msgspec
# Struct (mypyc compiles those into classes msgspec cannot decode into). webhook/envelope.py, its Structs
# moved out, measured 75.6 -> 74.9 M instructions per new 500-step review: not worth the split.
COMPILED_MODULES = (
    "zen_flow/validation/*.py",
    "zen_flow/core/naming.py",
    "zen_flow/core/short_cache.py",
    "zen_flow/core/dag.py",
    "zen_flow/core/expression_scanner.py",
)
SKIPPED_MODULES = ("zen_flow/validation/__init__.py",)


def compiled_sources(src: Path) -> list[str]:
    found = {str(p.relative_to(src)) for pattern in COMPILED_MODULES for p in src.glob(pattern)}
    return sorted(found - set(SKIPPED_MODULES))


class CompileHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable" or os.environ.get("ZEN_FLOW_COMPILE") != "1":
            return
        if importlib.util.find_spec("mypyc") is None:
            raise RuntimeError(
                "ZEN_FLOW_COMPILE=1 needs mypy (mypyc) and setuptools where the wheel is built: "
                "pip wheel --no-build-isolation from the development virtualenv (tools/build-image.sh)"
            )
        src = Path(self.root) / "src"
        with tempfile.TemporaryDirectory(prefix="zen-flow-mypyc-") as tmp:
            work = Path(tmp) / "src"
            shutil.copytree(src, work, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
            done = subprocess.run(
                [sys.executable, "-m", "mypyc", *compiled_sources(work)],
                cwd=work,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(f"mypyc failed ({done.returncode}):\n{done.stdout[-4000:]}")
            # Kept until the wheel is written (finalize): force_include is read after this returns.
            out = Path(tempfile.mkdtemp(prefix="zen-flow-mypyc-built-"))
            self._built = out
            # mypyc leaves each module next to its source and the modules' shared library at the top
            # (a copy of both also under build/, not wanted).
            for built in [*work.glob("*.so"), *(work / "zen_flow").rglob("*.so")]:
                target = out / built.relative_to(work)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(built, target)
                build_data["force_include"][str(target)] = str(built.relative_to(work))
        build_data["pure_python"] = False
        build_data["infer_tag"] = True

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        built = getattr(self, "_built", None)
        if built is not None:
            shutil.rmtree(built, ignore_errors=True)
