"""The process that evaluates `when` expressions (all but constants and phase tests) for the controller.

Started by `ExpressionSandbox` as `python -m zen_flow.controller.expression_worker`. Once it has
imported CEL it says `{"ready": true}`; then it reads requests from stdin and answers on stdout, each
a 4-byte big-endian length and a JSON document:

  request  {"source": "<CEL>", "variables": {"steps": ..., "flow": ...}}
  answer   {"bool": true|false} | {"other": "<repr of a non-bool result>"} | {"error": "<Type>: <message>"}
           | {"memory": true} (Python ran out of memory; an allocation the CEL library cannot make
           aborts this process, which the controller sees as an exit)

The CEL library evaluates holding the GIL; in here that cannot stall the controller, and the
controller kills this process when an evaluation outlives its budget. Its data segment is capped
(MEMORY_LIMIT), and it writes no core file, so a runaway allocation ends this process, not the
controller's container.
"""

from __future__ import annotations

import json
import resource
import struct
import sys
from functools import lru_cache
from typing import Any, BinaryIO

# The cap is on the worker's data segment (RLIMIT_DATA: heap and anonymous memory), not its address space:
# library text and reserved but unused ranges do not count, so start-up does not eat into it. Measured
# (/proc/PID/status; docs/OPERATOR_GUIDE.md, "Scaling"): at rest a worker holds 27 MiB of data (48 MiB
# mapped, 40 MiB resident); a 500-step flow's whole step table (32 parameters each) with 240 KB of
# annotations, mapped and filtered, fails under a 40 MiB cap and passes under 48 MiB (56 MiB resident).
# 72 MiB leaves 1.5 times that need, and start-up uses 38% of it (a unit test asserts at most 60%); an
# accepted `when` concatenating a 250 KB annotation in a nested map (230-330 MiB resident under the former
# 1 GiB address-space cap) ends the worker, whose resident peak (cap plus ~16 MiB of library text) stays
# under 96 MiB. Past the cap the worker dies (or answers MemoryError), a fresh one replaces it, and the
# step fails (expression_sandbox.py).
MEMORY_LIMIT = 72 * 1024 * 1024
# What the worker's resident memory stays under (the cap plus library text): the limit arithmetic in
# docs/OPERATOR_GUIDE.md counts two of these.
RESIDENT_BOUND = 96 * 1024 * 1024
_HEADER = struct.Struct(">I")


@lru_cache(maxsize=1024)
def _program(source: str) -> Any:
    import cel

    return cel.compile(source)


_MAX_ERROR = 1024


def _answer(request: dict[str, Any]) -> dict[str, Any]:
    try:
        value = _program(request["source"]).execute(request["variables"])
    except MemoryError:
        return {"memory": True}
    except Exception as err:
        # Cut: the library's messages quote the data (a missing key of a 200 KB annotation, whole), and an
        # answer past the sandbox's limit would read as the sandbox failing, not the expression.
        return {"error": f"{type(err).__name__}: {err}"[:_MAX_ERROR]}
    if isinstance(value, bool):
        return {"bool": value}
    return {"other": repr(value)[:200]}


def _read_exact(stream: BinaryIO, size: int) -> bytes | None:
    data = stream.read(size)
    return data if len(data) == size else None


def serve(inp: BinaryIO, out: BinaryIO) -> None:
    import cel  # noqa: F401  (before saying ready: the import is most of the start-up time)

    ready = json.dumps({"ready": True}).encode()
    out.write(_HEADER.pack(len(ready)) + ready)
    out.flush()
    while (header := _read_exact(inp, _HEADER.size)) is not None:
        body = _read_exact(inp, _HEADER.unpack(header)[0])
        if body is None:
            return
        answer = json.dumps(_answer(json.loads(body))).encode()
        out.write(_HEADER.pack(len(answer)) + answer)
        out.flush()


def main() -> None:
    # First: a worker that dies past its cap (the CEL library aborts) must not write a core file. Its
    # cwd is the pod's /tmp, a 64Mi emptyDir, and an ~80 MB core would get the controller's pod evicted.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_DATA, (MEMORY_LIMIT, MEMORY_LIMIT))
    serve(sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    main()
