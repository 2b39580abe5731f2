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

from compute.lib import replicas

MAX_HEADER_LINES = 100
MAX_ANSWER = 64 * 1024 * 1024
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


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


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
            if kept[0].at_eof() or kept[1].is_closing():
                kept[1].close()  # closed by the server (or its replica died) meanwhile
                continue
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
        if container and not peer_is(fresh[1], container):
            fresh[1].close()
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
        while True:
            try:
                return await asyncio.open_unix_connection(self.connect_path(socket_path))
            except BlockingIOError:
                await asyncio.sleep(BUSY_RETRY_SECONDS)
                idle = self.idle[socket_path]
                while idle:
                    kept = idle.pop()
                    if not (kept[0].at_eof() or kept[1].is_closing()):
                        return kept
                    kept[1].close()

    async def _exchange(self, socket_path: str, connection: Connection, body: bytes) -> Answer:
        reader, writer = connection
        done = False
        try:
            writer.write(
                b"POST /score HTTP/1.1\r\nHost: replica\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body) + body
            )
            if writer.transport.is_closing():
                # The first send failed (a dead peer: EPIPE): not one byte went.
                raise _ClosedBeforeAnswer(reached=False)
            await writer.drain()
            try:
                # The head in one read (one await, not one per line: this is the gateway's
                # hot path); a head past the reader's limit (64 KiB) is LimitOverrunError.
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as cut:
                if not cut.partial:
                    raise _ClosedBeforeAnswer(reached=True) from None
                raise
            answer = await self._read_rest(reader, head)
            done = True
            return answer
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            if isinstance(exc, ConnectionResetError | BrokenPipeError):
                raise _ClosedBeforeAnswer(reached=True) from None
            raise ReplicaFailed(f"the connection broke: {exc}", gone=True) from None
        except (ValueError, asyncio.LimitOverrunError):  # a head past the reader's limit
            raise ReplicaFailed("it answered with a head too long for HTTP") from None
        finally:
            if done and len(self.idle[socket_path]) < self.keep:
                self.idle[socket_path].append(connection)
            else:
                writer.close()

    @staticmethod
    async def _read_rest(reader: asyncio.StreamReader, head: bytes) -> Answer:
        status_line, *lines = head[:-4].split(b"\r\n")
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
        return Answer(int(parts[1]), await reader.readexactly(length))

    def forget(self, socket_path: str) -> None:
        """A replica gone: its kept connections are closed."""
        for _, writer in self.idle.pop(socket_path, []):
            writer.close()
        handle = self.folders.pop(socket_path, None)
        if handle is not None:
            handle.close()


class _ClosedBeforeAnswer(Exception):
    """The connection closed before an answer; `reached`: after (part of) the request
    may have gone (then it may be in run(): never sent to another replica)."""

    def __init__(self, reached: bool) -> None:
        super().__init__()
        self.reached = reached


def peer_is(writer: asyncio.StreamWriter, container: str) -> bool:
    """Whether the process at the other end is in the replica's container. The socket's
    folder is the replica's to write in: its code could put a link there to another
    replica's socket (another workspace's model). The kernel says who listens
    (SO_PEERCRED); the process's cgroup names its container."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return False
    credentials = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid = struct.unpack("3i", credentials)[0]
    try:
        with open(f"/proc/{pid}/cgroup") as handle:
            return container in handle.read()
    except OSError:
        return False
