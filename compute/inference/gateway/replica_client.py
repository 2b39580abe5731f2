"""HTTP/1.1 to a replica's scoring server over its Unix socket, from asyncio: one request
per connection at a time, connections kept for the next request (the server keeps an
idle one 5 s). The whole exchange is Hangar's own on both ends, so the client is small:
a Content-Length body each way, no chunking."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections import defaultdict
from dataclasses import dataclass
from typing import cast

from compute.lib import replicas

MAX_HEADER_LINES = 100
MAX_ANSWER = 64 * 1024 * 1024
MAX_HEAD = 64 * 1024
BUSY_RETRY_SECONDS = 0.005


class ReplicaFailed(Exception):
    """The replica could not be reached, or broke off its answer. `unsent`: not one byte of
    the request reached it (no connection, or the first send refused), so the request may
    go to another replica; `gone`: the replica looks dead (send it nothing more)."""

    def __init__(self, message: str, *, unsent: bool = False, gone: bool = False) -> None:
        super().__init__(message)
        self.unsent, self.gone = unsent, gone


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


class ReplicaClient:
    def __init__(self, keep_per_replica: int = 32) -> None:
        self.idle: defaultdict[str, list[Connection]] = defaultdict(list)
        self.keep = keep_per_replica
        self.folders: dict[str, replicas.FolderHandle] = {}  # held open: short paths

    def connect_path(self, socket_path: str) -> str:
        handle = self.folders.get(socket_path)
        if handle is None:
            handle = self.folders[socket_path] = replicas.FolderHandle(socket_path)
        return handle.path

    async def score(self, socket_path: str, body: bytes, container: str = "") -> Answer:
        """POST /score. A kept connection the server closed meanwhile is not used (or, if
        it closes as the request goes, the request is sent once more on a new one: the
        server had read nothing, it closes only idle connections). `container`: the
        Docker id of the replica that must be listening there (see `peer_is`)."""
        reached = False  # whether a byte of this request may be in the replica
        idle = self.idle[socket_path]
        while idle:
            kept = idle.pop()
            if kept.closed:
                continue  # closed by the server (or its replica died) meanwhile
            try:
                return await self._exchange(socket_path, kept, body)
            except _ClosedBeforeAnswer as closed:
                reached = closed.reached
                break
        try:
            fresh = await self._connect(socket_path)
        except OSError as exc:
            why = exc.strerror or str(exc)
            gone = "its socket's folder is gone" if socket_path not in self.folders else ""
            raise ReplicaFailed(
                f"{gone} ({why})" if gone else f"cannot connect: {why}",
                unsent=not reached,
                gone=True,
            ) from None
        if container and not peer_is(fresh.transport, container):
            fresh.close()
            raise ReplicaFailed(
                "its socket is not its own (another process answers there)",
                unsent=not reached,
                gone=True,
            )
        try:
            return await self._exchange(socket_path, fresh, body)
        except _ClosedBeforeAnswer as closed:
            raise ReplicaFailed(
                "it closed the connection without an answer",
                unsent=not (reached or closed.reached),
                gone=True,
            ) from None

    async def _connect(self, socket_path: str) -> Connection:
        """A new connection. A replica whose queue of connections not yet accepted is full
        refuses with EAGAIN: busy (a burst of callers), not dead — tried again shortly,
        within the request's timeout (the caller's), or a connection it hands back first."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                _, connection = await loop.create_unix_connection(
                    Connection, self.connect_path(socket_path)
                )
                return connection
            except BlockingIOError:
                await asyncio.sleep(BUSY_RETRY_SECONDS)
                idle = self.idle[socket_path]
                while idle:
                    kept = idle.pop()
                    if not kept.closed:
                        return kept

    async def _exchange(self, socket_path: str, connection: Connection, body: bytes) -> Answer:
        done = False
        try:
            answer = await connection.send(
                b"POST /score HTTP/1.1\r\nHost: replica\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body) + body
            )
            done = True
            return answer
        finally:
            if done and len(self.idle[socket_path]) < self.keep:
                self.idle[socket_path].append(connection)
            else:
                connection.close()  # also when cancelled (a timeout): its state is unknown

    def forget(self, socket_path: str) -> None:
        """A replica gone: its kept connections are closed."""
        for connection in self.idle.pop(socket_path, []):
            connection.close()
        handle = self.folders.pop(socket_path, None)
        if handle is not None:
            handle.close()


class Connection(asyncio.Protocol):
    """One kept-alive connection to a replica, one request at a time. A protocol rather
    than asyncio's streams: an answer is one wake-up of the request's coroutine, not one
    per read (this is the gateway's hot path)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport
        self.buffer = bytearray()
        self.waiter: asyncio.Future[Answer] | None = None
        self.status = 0
        self.length = -1  # the answer's body length, once its head is read
        self.head = 0  # where its body starts in the buffer
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's: not a subclass

    def send(self, request: bytes) -> asyncio.Future[Answer]:
        self.buffer.clear()
        self.length, self.head = -1, 0
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        if self.transport.is_closing():
            # The first send failed (a dead peer: EPIPE): not one byte went.
            self.fail(_ClosedBeforeAnswer(reached=False))
        return self.waiter

    def data_received(self, data: bytes) -> None:
        if self.waiter is None or self.waiter.done():
            self.close()  # bytes nobody asked for: the connection is not to be trusted
            return
        self.buffer += data
        try:
            if self.length < 0 and not self.read_head():
                return
        except ReplicaFailed as failure:
            self.fail(failure)
            return
        if len(self.buffer) - self.head >= self.length:
            body = bytes(self.buffer[self.head : self.head + self.length])
            if len(self.buffer) > self.head + self.length:
                self.close()  # more than one answer: not HTTP as Hangar's server speaks it
            self.waiter.set_result(Answer(self.status, body))

    def read_head(self) -> bool:
        """The answer's status and length, once its head is all there."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEAD:
                raise ReplicaFailed("it answered with a head too long for HTTP")
            return False
        status_line, *lines = bytes(self.buffer[:end]).split(b"\r\n")
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[1].isdigit() or not 100 <= int(parts[1]) < 600:
            raise ReplicaFailed("it answered something that is not HTTP")
        if len(lines) > MAX_HEADER_LINES:
            raise ReplicaFailed("its answer has too many header lines")
        length = None
        for line in lines:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip()) if value.strip().isdigit() else None
        if length is None or length > MAX_ANSWER:
            raise ReplicaFailed("its answer has no usable Content-Length")
        self.status, self.length, self.head = int(parts[1]), length, end + 4
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.buffer:
            # Nothing of an answer: the request may be in run() (or never reached it).
            self.fail(_ClosedBeforeAnswer(reached=True))
        else:
            self.fail(
                ReplicaFailed(f"the connection broke: {exc or 'closed mid-answer'}", gone=True)
            )

    def fail(self, failure: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(failure)
        self.close()

    def close(self) -> None:
        self.closed = True
        self.transport.close()


class _ClosedBeforeAnswer(Exception):
    """The connection closed before an answer; `reached`: after (part of) the request
    may have gone (then it may be in run(): never sent to another replica)."""

    def __init__(self, reached: bool) -> None:
        super().__init__()
        self.reached = reached


def peer_is(transport: asyncio.BaseTransport, container: str) -> bool:
    """Whether the process at the other end is in the replica's container. The socket's
    folder is the replica's to write in: its code could put a link there to another
    replica's socket (another workspace's model). The kernel says who listens
    (SO_PEERCRED); the process's cgroup names its container."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    credentials = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid = struct.unpack("3i", credentials)[0]
    try:
        with open(f"/proc/{pid}/cgroup") as handle:
            return container in handle.read()
    except OSError:
        return False
