"""A byte relay between a TCP listener and a Unix socket, so that traffic crosses network namespaces
without any address outside loopback or the node's own namespace.

The apiserver listens on the host's loopback; pods and the kubelet live in the node's network
namespace, where the host's loopback is out of reach. So two relays meet at a Unix socket (a file, not a
network address): in the host namespace `unix -> tcp` (socket file to 127.0.0.1:<apiserver port>), in the
node namespace `tcp -> unix` (<node address>:<apiserver port> to the socket file).

    python -m zen_flow_dev.node.relay tcp-to-unix HOST PORT SOCKET
    python -m zen_flow_dev.node.relay unix-to-tcp SOCKET HOST PORT
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

Connect = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.close()


def _handler(connect: Connect) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await connect()
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

    return handle


async def serve(mode: str, args: list[str]) -> None:
    if mode == "tcp-to-unix":
        host, port, socket_path = args[0], int(args[1]), args[2]
        server = await asyncio.start_server(
            _handler(lambda: asyncio.open_unix_connection(socket_path)), host, port, reuse_address=True
        )
    elif mode == "unix-to-tcp":
        socket_path, host, port = args[0], args[1], int(args[2])
        server = await asyncio.start_unix_server(
            _handler(lambda: asyncio.open_connection(host, port)), socket_path
        )
    else:
        raise SystemExit(f"unknown mode {mode!r}: tcp-to-unix or unix-to-tcp")
    print(f"relay {mode} {' '.join(args)} ready", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    if len(sys.argv) != 5:
        raise SystemExit(__doc__)
    if sys.argv[1] == "unix-to-tcp":
        Path(sys.argv[2]).unlink(missing_ok=True)  # a stale socket file from a crashed run
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(sys.argv[1], sys.argv[2:]))


if __name__ == "__main__":
    main()
