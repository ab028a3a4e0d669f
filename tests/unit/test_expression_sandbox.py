"""When the expression sandbox itself fails: its trouble never decides a flow's outcome, while an
expression that ends its worker fails its own step, saying so."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from zen_flow.controller import expression_sandbox
from zen_flow.controller.expression_sandbox import ExpressionSandbox, _Worker
from zen_flow.controller.expression_worker import MEMORY_LIMIT
from zen_flow.core.expressions import BudgetExceeded, EvaluationError, Unavailable, compile_when
from zen_flow.planner.timing import UNAVAILABLE_RETRY_SECONDS
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)
WHEN = "steps.all(s, steps[s].phase != 'Failed')"
VARIABLES = {"steps": {"build": {"phase": "Succeeded"}}, "flow": {}}

# Workers that speak the protocol (expression_worker.py) up to a point.
_READY = (
    "import json, os, signal, struct, sys\n"
    "def say(doc):\n"
    "    body = json.dumps(doc).encode()\n"
    "    sys.stdout.buffer.write(struct.pack('>I', len(body)) + body)\n"
    "    sys.stdout.buffer.flush()\n"
    "say({'ready': True})\n"
)
# Killed while it evaluates, as the kernel kills a process over its memory limit.
KILLED = _READY + "sys.stdin.buffer.read(4)\nos.kill(os.getpid(), signal.SIGKILL)\n"
# Python's MemoryError inside the worker.
OUT_OF_MEMORY = _READY + "sys.stdin.buffer.read(4)\nsay({'memory': True})\n"


def worker(script: str) -> tuple[str, ...]:
    return (sys.executable, "-c", script)


def killed_once(marker: Path) -> tuple[str, ...]:
    """The first worker is killed during its evaluation (from outside, say); the ones after serve."""
    script = (
        "import os\n"
        f"if not os.path.exists({str(marker)!r}):\n"
        f"    open({str(marker)!r}, 'w').close()\n"
        f"    exec({KILLED!r})\n"
        "from zen_flow.controller.expression_worker import main\n"
        "main()\n"
    )
    return worker(script)


def deploy_after_build(sandbox: ExpressionSandbox) -> Simulator:
    """build has succeeded; the next plan decides deploy's `when` with `sandbox`."""
    sim = Simulator(make_flow([job_step("build"), job_step("deploy", "build", when=WHEN)]), T0)
    sim.evaluate = sandbox.evaluate
    sim.reconcile()
    sim.complete(sim.running()[0])
    return sim


def test_a_worker_that_cannot_start_leaves_the_step_waiting_not_skipped() -> None:
    # The interpreter exits at once (as under a PID or memory limit). Before, the condition counted as
    # false: deploy was Skipped and the flow ended Succeeded without deploying.
    broken = ExpressionSandbox(budget=2.0, workers=1, command=worker("raise SystemExit(1)"))
    try:
        sim = deploy_after_build(broken)
        for _ in range(3):
            sim.reconcile()
        deploy = sim.flow.status.step("deploy")
        assert (deploy.phase, sim.phase) == ("Pending", "Running")
        assert deploy.message is not None
        assert "waiting to evaluate when: the expression worker did not start" in deploy.message
        assert sim.last.requeue_after == UNAVAILABLE_RETRY_SECONDS
    finally:
        broken.close()
    # Workers start again: the next plan decides the condition, and the step runs.
    working = ExpressionSandbox(budget=2.0, workers=1)
    try:
        sim.evaluate = working.evaluate
        sim.advance(UNAVAILABLE_RETRY_SECONDS)
        sim.reconcile()
        assert sim.flow.status.step("deploy").phase == "Running"
        assert sim.flow.status.step("deploy").message is None
    finally:
        working.close()


def test_a_worker_that_cannot_start_is_not_started_again_for_a_while(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each try spawned an interpreter (~0.25 s of CPU) for every waiting `when` of every plan, and printed
    # its traceback to the controller's stderr; the message did not say why.
    starts = tmp_path / "starts"
    script = f"open({str(starts)!r}, 'a').write('x')\nimport sys\nsys.exit('no cel here')\n"
    broken = ExpressionSandbox(budget=2.0, workers=1, command=worker(script))
    try:
        for _ in range(5):
            with pytest.raises(Unavailable) as caught:
                broken.evaluate(compile_when(WHEN), VARIABLES)
            assert str(caught.value) == (
                "the expression worker did not start (it exited with 1): no cel here"
            )
        assert starts.read_text() == "x"  # one try, then the failure remembered
        later = time.monotonic() + expression_sandbox.START_RETRY_SECONDS
        monkeypatch.setattr(expression_sandbox, "_clock", lambda: later)
        for _ in range(3):
            with pytest.raises(Unavailable):
                broken.evaluate(compile_when(WHEN), VARIABLES)
        assert starts.read_text() == "xx"  # past the wait, tried once more
    finally:
        broken.close()


def test_a_worker_that_cannot_start_under_its_memory_cap_says_so() -> None:
    starved = (
        "import resource, sys\n"
        f"resource.setrlimit(resource.RLIMIT_DATA, ({20 * 2**20}, {20 * 2**20}))\n"
        "from zen_flow.controller.expression_worker import serve\n"
        "serve(sys.stdin.buffer, sys.stdout.buffer)\n"
    )
    sandbox = ExpressionSandbox(budget=2.0, workers=1, command=worker(starved))
    try:
        with pytest.raises(Unavailable) as caught:
            sandbox.evaluate(compile_when(WHEN), VARIABLES)
    finally:
        sandbox.close()
    assert str(caught.value).startswith("the expression worker did not start (it exited with 1): ")
    assert str(caught.value).endswith(f"({expression_sandbox.MEMORY_CAP})")
    assert f"{MEMORY_LIMIT // 2**20} MiB" in expression_sandbox.MEMORY_CAP  # the cap said is the one set


def test_a_worker_writes_no_core_and_starts_well_within_its_memory_cap() -> None:
    # A worker past its cap aborts (the CEL library), and a core file would land in the pod's /tmp, a
    # 64Mi emptyDir: the kubelet would evict the controller. Start-up needs headroom under the cap, or
    # an injected import (a tracing agent's sitecustomize) would keep every worker from starting.
    ready = _Worker(ExpressionSandbox()._command)
    try:
        pid = ready.process.pid
        limits = {
            line[:26].strip(): line[26:].split()[:2]
            for line in Path(f"/proc/{pid}/limits").read_text().splitlines()
        }
        status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    finally:
        ready.kill()
    assert limits["Max core file size"] == ["0", "0"]
    assert limits["Max data size"] == [str(MEMORY_LIMIT)] * 2
    data = int(status["VmData"].split()[0]) * 1024
    assert data <= 0.6 * MEMORY_LIMIT  # 27 MiB of 72 measured


def test_a_closed_sandbox_decides_nothing() -> None:
    sandbox = ExpressionSandbox(budget=2.0, workers=1)
    sandbox.close()
    with pytest.raises(Unavailable, match="closed"):
        sandbox.evaluate(compile_when(WHEN), VARIABLES)


def test_an_expression_that_ends_its_worker_fails_its_step_saying_so() -> None:
    sandbox = ExpressionSandbox(budget=2.0, workers=1, command=worker(KILLED))
    try:
        sim = deploy_after_build(sandbox)
        sim.reconcile()
    finally:
        sandbox.close()
    deploy = sim.flow.status.step("deploy")
    assert (deploy.phase, sim.phase) == ("Failed", "Failed")
    assert deploy.message is not None
    assert deploy.message.startswith(
        "when stopped: evaluation ended its worker process twice (it exited with -9): out of the "
        "worker's memory"
    )


def test_a_worker_killed_once_from_outside_is_replaced_and_the_condition_decided(tmp_path: Path) -> None:
    sandbox = ExpressionSandbox(budget=5.0, workers=1, command=killed_once(tmp_path / "killed"))
    try:
        assert sandbox.evaluate(compile_when(WHEN), VARIABLES) is True
        assert (tmp_path / "killed").exists()  # the first worker did die
    finally:
        sandbox.close()


def test_a_worker_out_of_python_memory_fails_the_expression_and_is_replaced() -> None:
    sandbox = ExpressionSandbox(budget=2.0, workers=1, command=worker(OUT_OF_MEMORY))
    try:
        with pytest.raises(BudgetExceeded, match="ran out of the worker's memory"):
            sandbox.evaluate(compile_when(WHEN), VARIABLES)
        assert sandbox.budget_exceeded == 1
        assert not sandbox._all  # not reused: a fresh worker answers the next expression
    finally:
        sandbox.close()


def test_idle_workers_killed_from_outside_never_fail_an_innocent_expression() -> None:
    # Both idle workers were killed (the OOM killer, an operator): the next evaluation is answered by a
    # new one, not blamed on the expression.
    sandbox = ExpressionSandbox(budget=5.0, workers=2)
    try:
        first = [sandbox._take() for _ in range(2)]
        for w in first:
            sandbox._idle.put(w)
            w.kill()
            w.process.wait()
        assert sandbox.evaluate(
            compile_when("flow.labels.env == 'prod'"), {"flow": {"labels": {"env": "prod"}}}
        )
        assert not set(first) & sandbox._all
    finally:
        sandbox.close()


def test_an_error_quoting_a_huge_value_is_the_expressions_error_not_the_sandboxs() -> None:
    # The library's message quotes the missing key whole: a 1 MB answer must not read as a sandbox failure.
    key = "k" * 300_000
    sandbox = ExpressionSandbox(budget=5.0, workers=1)
    try:
        with pytest.raises(EvaluationError) as caught:
            sandbox.evaluate(
                compile_when("flow.labels[flow.annotations.a + flow.annotations.a] == 'x'"),
                {"flow": {"labels": {}, "annotations": {"a": key}}},
            )
        assert len(str(caught.value)) <= 1024
    finally:
        sandbox.close()


# Run in a process of its own: its only children are the workers, so RUSAGE_CHILDREN's ru_maxrss is the
# largest worker's peak resident memory (the kernel's own count: no sampling to miss the peak).
_PEAK_PROBE = """
import json, resource, sys
# As containerd's LimitCORE=infinity leaves it to the controller: cores allowed, up to the hard limit.
resource.setrlimit(resource.RLIMIT_CORE, (resource.getrlimit(resource.RLIMIT_CORE)[1],) * 2)
from zen_flow.api import JobFlow
from zen_flow.controller import expression_sandbox
from zen_flow.controller.expression_sandbox import ExpressionSandbox, _Worker
from zen_flow.controller.expression_worker import MEMORY_LIMIT
from zen_flow.core.expressions import WhenContext, _variables, compile_when
from zen_flow.validation import validate_jobflow
from zen_flow_dev.testing.flows import flow_manifest, job_step

when = sys.argv[1]
steps = [job_step(f"s{i}") for i in range(19)] + [job_step("last", "s0", when=when)]
manifest = flow_manifest("f", "tenant-a", steps, annotations={"a": "x" * 250_000})
admitted = validate_jobflow(manifest) == []
table = {f"s{i}": {"phase": "Succeeded", "outputs": {"parameters": {}}} for i in range(19)}
context = WhenContext(table, WhenContext.from_flow(JobFlow.model_validate(manifest), {}).flow)
compiled = compile_when(when)
sandbox = ExpressionSandbox(budget=120)  # memory, not time, must end it
try:
    answer = repr(sandbox.evaluate(compiled, _variables(compiled, context)))
except Exception as err:
    answer = f"{type(err).__name__}: {err}"
after = sandbox.evaluate(compile_when("steps.exists(s, true)"), {"steps": {"a": {}}, "flow": {}})
sandbox.close()
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps({"admitted": admitted, "answer": answer, "after": after, "peak": peak}))
"""


def test_an_admitted_expression_building_strings_past_the_worker_cap_fails_its_step(tmp_path: Path) -> None:
    # A 250 KB annotation concatenated in a nested map over 20 steps: admitted (the cost model counts
    # iterations, not bytes), and it took a worker to 230-330 MiB resident, past the controller container's
    # whole memory limit. Now the worker's cap ends it: the expression fails saying so (under the former
    # 1 GiB cap it finished, True), and a fresh worker answers the next one. The cap is on data, not
    # address space, so resident memory is not bounded by construction: the peak is checked against what
    # docs/OPERATOR_GUIDE.md counts per worker. Run in `tmp_path`, the workers' cwd: no core file.
    import json
    import subprocess

    from zen_flow.controller.expression_worker import RESIDENT_BOUND

    when = "steps.map(s, steps.map(t, flow.annotations.a + t)).size() > 0"
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_PROBE, when],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
        cwd=tmp_path,
    )
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["admitted"] is True
    assert result["answer"].startswith("BudgetExceeded: evaluation ended its worker process twice")
    assert "out of the worker's memory" in result["answer"]
    assert result["after"] is True  # replaced
    assert result["peak"] < RESIDENT_BOUND  # 88 MiB measured
    assert list(tmp_path.iterdir()) == []


def test_a_retry_condition_is_decided_in_a_worker_with_what_the_attempt_said() -> None:
    # retryPolicy.expression goes to the same workers as `when`: its lastRetry crosses as JSON (an int,
    # a double, strings) and reads as CEL expects (a double compared with a double).
    expression = 'lastRetry.exitCode != 2 && lastRetry.status == "Failed" && lastRetry.duration >= 5.0'
    sandbox = ExpressionSandbox(budget=5.0, workers=1)
    try:
        verdicts = []
        for code in (137, 2):
            policy = {"limit": 2, "backoff": {"type": "Fixed", "duration": "1s"}, "expression": expression}
            sim = Simulator(make_flow([job_step("train", retryPolicy=policy)]), T0)
            sim.evaluate = sandbox.evaluate
            sim.reconcile()
            sim.advance(5)
            sim.fail(sim.running()[0], messages={"exit:main": f"exit code {code}"})
            sim.reconcile()
            train = sim.flow.status.step("train")
            assert train is not None
            verdicts.append((train.phase, (train.message or "").rpartition("; ")[2]))
        assert verdicts == [
            ("Retrying", "BackoffLimitExceeded: Job has failed"),
            ("Failed", f"not retried: retryPolicy.expression {json.dumps(expression)} is false"),
        ]
    finally:
        sandbox.close()
