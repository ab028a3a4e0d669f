"""Time-bounded evaluation of `when` expressions with comprehensions, in worker processes.

Admission refuses expressions whose comprehensions could be expensive (core/expression_cost.py), but an
estimate can err, a flow can arrive without the webhook, and the CEL library evaluates holding the GIL:
one pathological expression evaluated in the controller would stall every flow, the probes and the
lease renewal. So the expressions that loop are evaluated in separate processes (`expression_worker`),
each evaluation under a wall-clock budget; past it the worker is killed (and replaced on the next
request) and `BudgetExceeded` fails that step. Expressions without comprehensions cost time linear in
their inputs and stay in-process.

Calls block: the reconciler runs such flows' plans in threads of their own (controller/plan_runner.py),
so the event loop keeps going while a worker thinks. Workers start on first use: a controller whose
flows never loop in a `when` never starts one (each costs ~15 MB).
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
import threading
import time
from typing import Any

from zen_flow.core.expressions import BudgetExceeded, CompiledWhen
from zen_flow.logging import get_logger

log = get_logger(__name__)

DEFAULT_BUDGET = 2.0
DEFAULT_WORKERS = 2
# A worker's start-up (an interpreter importing CEL, ~0.2 s) is not part of any expression's budget.
STARTUP_TIMEOUT = 30.0
_HEADER = struct.Struct(">I")
_MAX_ANSWER = 1024 * 1024


class NotBool:
    """A non-bool CEL result, as the worker described it (the caller reports it as "not a bool")."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


class _Worker:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "zen_flow.controller.expression_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        try:
            hello = self._answer(time.monotonic() + STARTUP_TIMEOUT)
        except (TimeoutError, RuntimeError):
            self.kill()
            raise RuntimeError("the expression worker did not start") from None
        if hello.get("ready") is not True:
            self.kill()
            raise RuntimeError(f"the expression worker said {hello!r} instead of ready")

    def ask(self, request: bytes, budget: float) -> dict[str, Any]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(_HEADER.pack(len(request)) + request)
        self.process.stdin.flush()
        return self._answer(time.monotonic() + budget)

    def _answer(self, deadline: float) -> dict[str, Any]:
        (size,) = _HEADER.unpack(self._read(_HEADER.size, deadline))
        if size > _MAX_ANSWER:
            raise RuntimeError(f"expression worker answered {size} bytes")
        answer: dict[str, Any] = json.loads(self._read(size, deadline))
        return answer

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
                raise RuntimeError(f"expression worker exited with {self.process.poll()}")
            data += chunk
        return data

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        with contextlib.suppress(Exception):
            self.process.wait(timeout=5)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


class ExpressionSandbox:
    """A pool of at most `workers` expression workers; `evaluate` is a planner `Evaluator`."""

    def __init__(self, *, budget: float = DEFAULT_BUDGET, workers: int = DEFAULT_WORKERS) -> None:
        if budget <= 0 or workers < 1:
            raise ValueError("need budget > 0 and workers >= 1")
        self.budget = budget
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._slots = threading.BoundedSemaphore(workers)
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        self._closed = False
        self.evaluations = 0
        self.budget_exceeded = 0

    def evaluate(self, compiled: CompiledWhen, variables: dict[str, Any]) -> Any:
        request = json.dumps({"source": compiled.cel_source, "variables": variables}).encode()
        with self._slots:
            worker = self._take()
            try:
                answer = worker.ask(request, self.budget)
            except TimeoutError:
                self._discard(worker)
                self.budget_exceeded += 1
                log.warning("when expression ran past its budget; worker killed", budget=self.budget)
                raise BudgetExceeded(
                    f"evaluation ran past its {self.budget:g}s budget (simplify the comprehensions)"
                ) from None
            except BaseException:
                self._discard(worker)
                raise
            self._idle.put(worker)
        self.evaluations += 1
        if "error" in answer:
            raise ValueError(answer["error"])
        if "bool" in answer:
            return bool(answer["bool"])
        return NotBool(str(answer.get("other")))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers, self._all = self._all, set()
        for worker in workers:
            worker.kill()

    def _take(self) -> _Worker:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if self._closed:
                raise RuntimeError("the expression sandbox is closed")
            worker = _Worker()
            self._all.add(worker)
            return worker

    def _discard(self, worker: _Worker) -> None:
        with self._lock:
            self._all.discard(worker)
        worker.kill()
