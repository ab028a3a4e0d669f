"""Time-bounded evaluation of `when` expressions, in worker processes.

Admission refuses expressions whose comprehensions could be expensive (core/expression_cost.py), but an
estimate can err, a flow can arrive without the webhook, an expression without a loop can still be slow
(a chain of `+` over a large annotation copies ever longer strings), and the CEL library evaluates
holding the GIL: one pathological expression evaluated in the controller would stall every flow, the
probes and the lease renewal. So every expression but constants and phase tests (core/expressions.py)
is evaluated in a separate process (`expression_worker`), each evaluation under a wall-clock budget;
past it the worker is killed (and replaced on the next request) and `BudgetExceeded` fails that step.

How an evaluation can end, and what becomes of the step:
- an answer: its value (a CEL error is an `EvaluationError`: the condition is false);
- past the budget: `BudgetExceeded` (the step fails);
- the worker exits while evaluating: asked once more of a fresh worker (something outside may have
  killed it); when that one exits too, the expression is what ends them (memory past the worker's cap,
  a crash in the CEL library): `BudgetExceeded` (the step fails);
- no worker (it does not start, the sandbox is closed): `Unavailable`; nothing is known of the
  condition, so it is decided by a later plan, never taken as false.

Calls block: the reconciler runs such plans in threads of their own (controller/plan_runner.py), so the
event loop keeps going while a worker thinks. Workers start on first use: a controller whose flows
write only phase tests never starts one (each costs ~40 MB resident at rest, its data capped at 72 MiB:
expression_worker.MEMORY_LIMIT, so at most ~96 MiB resident). A worker that does not start is not tried
again for START_RETRY_SECONDS: meanwhile conditions wait (`Unavailable`), and no interpreter is spawned
for each of them.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import select
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any

from zen_flow.core.expressions import BudgetExceeded, CompiledWhen, EvaluationError, Unavailable
from zen_flow.logging import get_logger

log = get_logger(__name__)

DEFAULT_BUDGET = 2.0
DEFAULT_WORKERS = 2
# A worker's start-up (an interpreter importing CEL, ~0.2 s) is not part of any expression's budget.
STARTUP_TIMEOUT = 30.0
# After a worker did not start, how long the sandbox answers `Unavailable` with that failure instead of
# starting another: each try costs ~0.25 s of CPU, and every waiting `when` of every plan would try.
START_RETRY_SECONDS = 30.0
_STDERR_TAIL = 600
# Not imported from expression_worker: a sibling module (the layers contract), and one that sets it.
MEMORY_CAP = "out of memory under the worker's cap, 72 MiB of data: expression_worker.MEMORY_LIMIT"
_clock = time.monotonic  # for START_RETRY_SECONDS (tests move it on)
_HEADER = struct.Struct(">I")
_MAX_ANSWER = 1024 * 1024


class NotBool:
    """A non-bool CEL result, as the worker described it (the caller reports it as "not a bool")."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


class _Died(Exception):
    """The worker exited, or closed its end of a pipe, while it had a request; the message says how."""


# What a worker's stderr says when its memory cap is why it did not start: the interpreter or an import
# could not allocate (CPython then sometimes reports a SystemError without an exception), or map a
# library's segment.
_OUT_OF_MEMORY = (
    "MemoryError",
    "memory allocation",
    "failed to map segment",
    "Cannot allocate memory",
    "without exception set",
    "without setting an exception",
)


def _squeezed(stderr: str) -> str:
    """The end of a worker's stderr on one line (a traceback's lines joined), for a message or a log."""
    return " ".join(stderr.split())[-_STDERR_TAIL:]


def _start_failure(why: str, stderr: str) -> str:
    tail = _squeezed(stderr)
    text = f"the expression worker did not start ({why})"
    if tail:
        text += f": {tail}"
    if any(sign in stderr for sign in _OUT_OF_MEMORY):
        text += f" ({MEMORY_CAP})"
    return text


class _Worker:
    def __init__(self, command: Sequence[str]) -> None:
        # A file, not a pipe: a worker writing to a full pipe would block. Read when it fails to start;
        # otherwise it holds what the CEL library says as it aborts.
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 (the worker's lifetime: closed by kill())
        try:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self.stderr,
                close_fds=True,
            )
        except OSError as err:  # no process to be had (EAGAIN, ENOMEM): the controller's trouble
            self.stderr.close()
            raise Unavailable(f"the expression worker did not start: {err}") from None
        try:
            hello = self._answer(time.monotonic() + STARTUP_TIMEOUT)
        except (TimeoutError, _Died, ValueError) as err:
            why = str(err) or f"no answer within {STARTUP_TIMEOUT:g}s"
            stderr = self._stderr_tail()
            self.kill()
            raise Unavailable(_start_failure(why, stderr)) from None
        if hello.get("ready") is not True:
            self.kill()
            raise Unavailable(f"the expression worker said {hello!r} instead of ready")

    def ask(self, request: bytes, budget: float) -> dict[str, Any]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        try:
            self.process.stdin.write(_HEADER.pack(len(request)) + request)
            self.process.stdin.flush()
        except OSError:  # a broken pipe: it exited
            raise _Died(self._exit()) from None
        return self._answer(time.monotonic() + budget)

    def _answer(self, deadline: float) -> dict[str, Any]:
        (size,) = _HEADER.unpack(self._read(_HEADER.size, deadline))
        if size > _MAX_ANSWER:
            raise ValueError(f"expression worker answered {size} bytes")
        answer: dict[str, Any] = json.loads(self._read(size, deadline))
        return answer

    def _exit(self) -> str:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=1)
        if tail := _squeezed(self._stderr_tail()):
            log.warning("expression worker exited", code=self.process.poll(), stderr=tail)
        return f"it exited with {self.process.poll()}"

    def _read(self, size: int, deadline: float) -> bytes:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        data = b""
        while len(data) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise TimeoutError
            chunk = os.read(fd, size - len(data))
            if not chunk:
                raise _Died(self._exit())
            data += chunk
        return data

    def _stderr_tail(self) -> str:
        with contextlib.suppress(OSError, ValueError):
            self.stderr.seek(max(0, self.stderr.seek(0, os.SEEK_END) - 4 * _STDERR_TAIL))
            return self.stderr.read().decode(errors="replace")
        return ""

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        with contextlib.suppress(Exception):
            self.process.wait(timeout=5)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        with contextlib.suppress(OSError):
            self.stderr.close()


class ExpressionSandbox:
    """A pool of at most `workers` expression workers; `evaluate` is a planner `Evaluator`."""

    def __init__(
        self,
        *,
        budget: float = DEFAULT_BUDGET,
        workers: int = DEFAULT_WORKERS,
        command: Sequence[str] | None = None,
    ) -> None:
        """`command` starts a worker (tests start broken ones); by default `expression_worker`."""
        if budget <= 0 or workers < 1:
            raise ValueError("need budget > 0 and workers >= 1")
        self.budget = budget
        self._command = tuple(command or (sys.executable, "-m", "zen_flow.controller.expression_worker"))
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._slots = threading.BoundedSemaphore(workers)
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._failed: tuple[float, str] | None = None  # (until when, why) after a worker did not start
        self.evaluations = 0
        self.budget_exceeded = 0

    def evaluate(self, compiled: CompiledWhen, variables: dict[str, Any]) -> Any:
        request = json.dumps({"source": compiled.cel_source, "variables": variables}).encode()
        try:
            answer = self._ask(request)
        except _Died as died:
            log.warning("expression worker exited during an evaluation; asking a fresh one", why=str(died))
            try:
                answer = self._ask(request, fresh=True)
            except _Died as again:
                self.budget_exceeded += 1
                log.warning("expression worker exited during an evaluation again", why=str(again))
                raise BudgetExceeded(
                    f"evaluation ended its worker process twice ({again}): out of the worker's memory, "
                    "or a crash (simplify the expression)"
                ) from None
        self.evaluations += 1
        if "memory" in answer:
            self.budget_exceeded += 1
            raise BudgetExceeded("evaluation ran out of the worker's memory (simplify the expression)")
        if "error" in answer:
            raise EvaluationError(answer["error"])
        if "bool" in answer:
            return bool(answer["bool"])
        return NotBool(str(answer.get("other")))

    def _ask(self, request: bytes, *, fresh: bool = False) -> dict[str, Any]:
        with self._slots:
            worker = self._take(fresh)
            try:
                answer = worker.ask(request, self.budget)
            except TimeoutError:
                self._discard(worker)
                self.budget_exceeded += 1
                log.warning("when expression ran past its budget; worker killed", budget=self.budget)
                raise BudgetExceeded(
                    f"evaluation ran past its {self.budget:g}s budget (simplify the expression)"
                ) from None
            except BaseException:
                self._discard(worker)
                raise
            # A worker that ran out of memory may be left half-broken: a fresh one answers the next.
            (self._discard if "memory" in answer else self._idle.put)(worker)
            return answer

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers, self._all = self._all, set()
        for worker in workers:
            worker.kill()

    def _take(self, fresh: bool = False) -> _Worker:
        """An idle worker that is still alive (one killed from outside while idle, say by the OOM killer,
        is dropped), or a new one; always a new one when `fresh` (asking again after a worker died: the
        next idle one may have died the same way, and the expression must not be blamed for it)."""
        while not fresh and not self._closed:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                break
            if worker.process.poll() is None:
                return worker
            self._discard(worker)
        with self._lock:
            if self._closed:
                raise Unavailable("the expression sandbox is closed")
            if self._failed is not None and _clock() < self._failed[0]:
                raise Unavailable(self._failed[1])
            try:
                worker = _Worker(self._command)
            except Unavailable as err:
                self._failed = (_clock() + START_RETRY_SECONDS, str(err))
                log.warning(
                    "expression worker did not start", error=str(err), retry_after=START_RETRY_SECONDS
                )
                raise
            self._failed = None
            self._all.add(worker)
            return worker

    def _discard(self, worker: _Worker) -> None:
        with self._lock:
            self._all.discard(worker)
        worker.kill()
