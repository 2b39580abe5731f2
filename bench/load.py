"""A lean HTTP/1.1 load generator: N kept-alive connections, one request in flight on each,
for a number of seconds; prints how many answers came back (all must be 200).

The throughput figures compare a replica called directly with the same replica behind the
gateway, on a 2-core machine where the caller shares the cores with what it measures. A
caller made of `http.client` threads spends about as much CPU per request as the replica
does, and with the gateway in between it takes the core the gateway would use: the figure
then measures the caller. This one runs in its own process on uvloop, parses only what it
must (the status and Content-Length), and costs a fraction of that — closer to callers on
other machines, as the gateway's real callers are. The same generator drives both sides.

    python -m bench.load --unix /path/score.sock --path /score --seconds 3
    python -m bench.load --tcp 127.0.0.1:8001 --path /score/w/e --header "Authorization: Bearer k"
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time

import uvloop

LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


class Caller(asyncio.Protocol):
    """One connection: sends the request, reads its answer, sends the next, until `stop`."""

    def __init__(self, request: bytes, stop: float, done: asyncio.Future[None]) -> None:
        self.request, self.stop, self.done = request, stop, done
        self.buffer = b""
        self.answered = 0
        self.failed = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        length = LENGTH.search(self.buffer, 0, end + 2)
        if length is None:
            self.finish("an answer without Content-Length")
            return
        whole = end + 4 + int(length.group(1))
        if len(self.buffer) < whole:
            return
        if self.buffer[9:12] != b"200":
            self.finish(f"an answer {self.buffer[:whole]!r}")
            return
        self.buffer = self.buffer[whole:]
        self.answered += 1
        if time.monotonic() < self.stop:
            self.transport.write(self.request)  # type: ignore[attr-defined]
        else:
            self.finish("")

    def connection_lost(self, exc: Exception | None) -> None:
        self.finish(f"the connection closed ({exc})" if not self.done.done() else "")

    def finish(self, failure: str) -> None:
        self.failed = self.failed or failure
        if not self.done.done():
            self.done.set_result(None)
        self.transport.close()


async def drive(args: argparse.Namespace) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    headers = "".join(f"{header}\r\n" for header in args.header)
    body = args.body.encode()
    request = (
        f"POST {args.path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        f"{headers}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    callers: list[Caller] = []
    started = time.monotonic()
    stop = started + args.seconds
    for _ in range(args.connections):
        done: asyncio.Future[None] = loop.create_future()
        caller = Caller(request, stop, done)
        if args.unix:
            await loop.create_unix_connection(lambda c=caller: c, args.unix)  # type: ignore[misc]
        else:
            host, _, port = args.tcp.rpartition(":")
            await loop.create_connection(lambda c=caller: c, host, int(port))  # type: ignore[misc]
        callers.append(caller)
    await asyncio.gather(*(caller.done for caller in callers))
    took = time.monotonic() - started
    failures = [caller.failed for caller in callers if caller.failed]
    answered = sum(caller.answered for caller in callers)
    return {"per_second": answered / took, "answered": answered, "failures": failures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--unix")
    where.add_argument("--tcp")
    parser.add_argument("--path", required=True)
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--body", default='{"data": [[1.0, 2.0, 3.0, 4.0]]}')
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    figures = uvloop.run(drive(args))
    print(json.dumps(figures))
    sys.exit(1 if figures["failures"] else 0)


if __name__ == "__main__":
    main()
