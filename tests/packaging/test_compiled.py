"""The wheel the image installs: the admission rules compiled by mypyc (hatch_build.py,
tools/build-image.sh), answering exactly as the Python they are compiled from.

mypyc checks declared types at run time where Python does not look, and a compiled module calls its
neighbours directly; so the unit and property tests of the rules and the webhook run again here, against
the compiled build, in a process of their own, and 500 broken example flows are reviewed by both builds,
whose answers (denials with every cause) must be equal.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings

from zen_flow_dev.bench.compiled import build_wheel, unpack
from zen_flow_dev.testing.mutations import corrupted_examples

ROOT = Path(__file__).resolve().parents[2]


def compiled_sources(src: Path) -> list[str]:
    """The build hook's own list of what it compiles."""
    spec = importlib.util.spec_from_file_location("hatch_build", ROOT / "hatch_build.py")
    assert spec is not None
    assert spec.loader is not None
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    found: list[str] = hook.compiled_sources(src)
    return found


# The tests that exercise what is compiled: the rules, the webhook that calls them, `zen-flow validate`.
SUITES = (
    "tests/unit/test_validation_flow.py",
    "tests/unit/test_validation_job_spec.py",
    "tests/unit/test_job_template_keys.py",
    "tests/unit/test_validation_matrix.py",
    "tests/unit/test_validation_io.py",
    "tests/unit/test_validation_plain_inputs.py",
    "tests/unit/test_validation_policy.py",
    "tests/unit/test_validation_properties.py",
    "tests/unit/test_validation_steps.py",
    "tests/unit/test_validation_step_runs.py",
    "tests/unit/test_validation_update.py",
    "tests/unit/test_webhook_accepted.py",
    "tests/unit/test_webhook_envelope.py",
    "tests/unit/test_webhook_fuzz.py",
    "tests/unit/test_webhook_review.py",
    "tests/unit/test_webhook_retained_memory.py",
    "tests/unit/test_cli_validate.py",
    "tests/unit/test_dag.py",
    "tests/unit/test_naming.py",
    "tests/unit/test_expression_scanner.py",
)

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) to compile with")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The compiled wheel, and a directory it is unpacked into (to put first on PYTHONPATH)."""
    wheel = build_wheel(tmp_path_factory.mktemp("dist"))
    return wheel, unpack(wheel, tmp_path_factory.mktemp("unpacked"))


def _env(unpacked: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(unpacked), os.environ.get("PYTHONPATH", "")])}


def test_the_wheel_is_for_this_platform_and_holds_every_compiled_module(compiled: tuple[Path, Path]) -> None:
    wheel, _ = compiled
    assert "-cp311-cp311-linux_" in wheel.name  # not py3-none-any: pip elsewhere takes the pure wheel
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = compiled_sources(ROOT / "src")
    assert len(expected) > 10
    for source in expected:
        module = source.removesuffix(".py")
        assert any(n.startswith(module + ".cpython-") and n.endswith(".so") for n in names), source
        assert source in names  # the source stays beside it
    assert not any(n.startswith("build/") for n in names)


def test_the_compiled_build_says_so(compiled: tuple[Path, Path]) -> None:
    _, unpacked = compiled
    done = subprocess.run(
        [sys.executable, "-m", "zen_flow", "version"],
        env=_env(unpacked),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "admission rules: compiled" in done.stdout
    here = subprocess.run(
        [sys.executable, "-m", "zen_flow", "version"], capture_output=True, text=True, timeout=60, check=True
    )
    assert "admission rules: python" in here.stdout  # the development install stays pure


def test_the_compiled_rules_pass_the_rules_tests(compiled: tuple[Path, Path]) -> None:
    _, unpacked = compiled
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *SUITES],
        env=_env(unpacked),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert " passed" in done.stdout
    # They ran against the compiled modules: the tests that patch a module function skipped themselves.
    assert "counts check_spec calls by patching it" in done.stdout


# Answers every review of a pickled list with the rules it imports; pickles the answers.
_ANSWER = """
import pickle, sys
from zen_flow.validation import COMPILED
from zen_flow.webhook.review import mutate_review, validate_review
reviews = pickle.load(open(sys.argv[1], "rb"))
answers = [(validate_review(r), mutate_review(r)) for r in reviews]
pickle.dump((COMPILED, answers), open(sys.argv[2], "wb"))
"""


def _corpus() -> list[bytes]:
    """CREATE reviews of the project's examples with a random subtree replaced (derandomized)."""
    found: list[bytes] = []

    @settings(max_examples=500, derandomize=True, database=None, deadline=None)
    @given(corrupted_examples())
    def collect(flow: Any) -> None:
        request = {"uid": "u", "operation": "CREATE", "object": flow, "oldObject": None, "name": "f"}
        review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
        # Not JSON (NaN, a lone surrogate: Go never writes them): no review can carry it.
        with contextlib.suppress(TypeError, ValueError):
            found.append(json.dumps(review, sort_keys=True, separators=(",", ":"), allow_nan=False).encode())

    collect()
    return found


# Its 500-example corpus is the first large allocation after the integration and load tiers in `make
# test`'s one process, so the full collection it triggers finalizes what earlier tests left unclosed: on
# 2026-12-07 a socket of some earlier test (not found yet: run the tiers with PYTHONTRACEMALLOC to say
# which) failed this test, which opens none itself (its reviews are answered in subprocesses). Such a
# warning is still printed in the summary, not raised here.
@pytest.mark.filterwarnings("default::pytest.PytestUnraisableExceptionWarning")
def test_the_compiled_rules_answer_every_review_as_the_python_ones(
    compiled: tuple[Path, Path], tmp_path: Path
) -> None:
    corpus = tmp_path / "reviews.pickle"
    corpus.write_bytes(pickle.dumps(_corpus()))
    answers = {}
    for build, env in (("python", os.environ), ("compiled", _env(compiled[1]))):
        out = tmp_path / f"{build}.pickle"
        subprocess.run(
            [sys.executable, "-c", _ANSWER, str(corpus), str(out)], env=env, check=True, timeout=600
        )
        answers[build] = pickle.loads(out.read_bytes())
    assert answers["python"][0] is False
    assert answers["compiled"][0] is True
    python, compiled_answers = answers["python"][1], answers["compiled"][1]
    assert len(python) > 400
    assert sum(not a["response"]["allowed"] for a, _ in python) > 100  # denials, with their causes
    for number, (expected, got) in enumerate(zip(python, compiled_answers, strict=True)):
        assert got == expected, f"review {number}"
