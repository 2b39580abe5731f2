"""The HTTP/1.1 under hangar.client, on a plain socket: one kept-alive connection, and
nothing imported but `socket` (and `ssl` for an https:// server).

Why not httpx or even http.client: every `hangar` command is a new process, and its start
is most of a short command's time. httpx took 100–200 ms to import; http.client imports
the email parser and ssl (50–60 ms) even for plain http. The API needs little: JSON and
form bodies, a streamed multipart upload (of one file or several) of a known length,
responses delimited by a Content-Length, by chunks or by the connection's end, and a
response read line by line as it comes (server-sent events).
"""

from __future__ import annotations

import json
import os
import re
import select
import socket
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import IO, Any

REDIRECTS = (301, 302, 303, 307, 308)
UPLOAD_CHUNK = 256 * 1024
MAX_LINE = 64 * 1024  # a status or header line longer than this is not HTTP we speak
MAX_HEADERS = 200
# A kept-alive connection the server closed meanwhile fails on its next use with one of
# these before any answer. An idempotent request is then sent again, once, on a new
# connection; a POST is not (the server may have acted on it before the connection broke),
# which is why a kept connection is first checked for a close it was already told of.
STALE = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)
IDEMPOTENT = ("GET", "HEAD", "PUT", "DELETE", "OPTIONS")
# Making the connection never waits longer than this, whatever a request's own timeout (a
# long poll's is minutes): an unreachable server is said to be so in seconds.
CONNECT_TIMEOUT = 10.0
# A chunk's size as HTTP writes it: hex digits only (Python's int() would also take a sign,
# "0x" and "_", and a negative size read to the end), at most 16 of them.
CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
# A file of a multipart body: its name as sent, the file (read from its start) and its type.
FilePart = tuple[str, IO[bytes], str]


class TransportError(Exception):
    """No answer: the server could not be reached, did not answer in time, or the
    connection broke. `reason` says which in a few lowercase words."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class ConnectFailed(TransportError):
    """The connection could not be made (refused, no such host, timed out connecting)."""


class TimedOut(TransportError):
    """Connected, then nothing came for the whole timeout."""


class ConnectionLost(TransportError):
    """Connected, then the connection broke (or the server closed it) mid-answer, or what
    came was not HTTP."""


class Closed(ConnectionLost):
    """The server closed a kept-alive connection before answering (it may be stale)."""


def reason_of(error: BaseException) -> str:
    """An OSError's own words ("connection refused"), lowercase."""
    if isinstance(error, TimeoutError):
        return "timed out"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    text = str(error).strip()
    return text[:1].lower() + text[1:] if text else type(error).__name__


class Headers:
    """A response's header fields, looked up without regard to case."""

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        self.fields = fields
        self.by_name = {name.lower(): value for name, value in fields}

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.by_name.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self.by_name


class Response:
    """A whole response: its status, headers and body."""

    def __init__(
        self, method: str, path: str, status: int, reason: str, headers: Headers, content: bytes
    ) -> None:
        self.method, self.path = method, path
        self.status_code, self.reason_phrase = status, reason
        self.headers, self.content = headers, content

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def is_redirect(self) -> bool:
        return self.status_code in REDIRECTS and "Location" in self.headers

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not."""
        return json.loads(self.content)


class Connection:
    """One TCP (or TLS) connection, read through a buffer."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = sock.makefile("rb")
        self.version = ""
        self.drop_request = False  # the server stopped reading the request mid-way

    def close(self) -> None:
        self.reader.close()
        self.sock.close()

    def closed_by_server(self) -> bool:
        """Whether a kept connection was closed by the server meanwhile (or has something
        unasked for to read): between answers it must have nothing to read at all."""
        readable, _, _ = select.select([self.sock], [], [], 0)
        return bool(readable)

    def send(self, head: bytes, body: bytes | Iterable[bytes] | None) -> None:
        if isinstance(body, bytes):
            self.sock.sendall(head + body)  # one write: a small request goes in one packet
            return
        self.sock.sendall(head)
        for chunk in body or ():
            self.sock.sendall(chunk)

    def ack_at_once(self) -> None:
        """Acknowledge what comes at once rather than after Linux's delayed-ACK timer.

        Many servers (Python's wsgiref, so Django's runserver) write an answer's headers
        and its body in two sends; with Nagle's algorithm on their side the body waits
        for our ACK of the headers, which Linux holds up to 40 ms: every request took
        40 ms longer. The option lasts until the kernel drops it, so it is set per request."""
        quickack = getattr(socket, "TCP_QUICKACK", None)  # Linux only
        if quickack is not None:
            try:
                self.sock.setsockopt(socket.IPPROTO_TCP, quickack, 1)
            except OSError:
                pass  # TLS wrappers and other families: no harm done

    def line(self) -> bytes:
        line = self.reader.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise ConnectionLost("an over-long line in the answer")
        return line

    def head(self) -> tuple[int, str, Headers]:
        """The status line and the header fields (1xx interim answers skipped)."""
        while True:
            status_line = self.line()
            if not status_line:
                raise Closed("the server closed the connection")
            version, _, rest = status_line.decode("latin-1").rstrip("\r\n").partition(" ")
            code, _, reason = rest.partition(" ")
            if not version.startswith("HTTP/") or not code.isdigit():
                raise ConnectionLost("the answer is not HTTP")
            fields = []
            for _ in range(MAX_HEADERS):
                line = self.line().decode("latin-1").rstrip("\r\n")
                if not line:
                    break
                name, _, value = line.partition(":")
                fields.append((name.strip(), value.strip()))
            else:
                raise ConnectionLost("too many header fields in the answer")
            if not 100 <= int(code) < 200:
                self.version = version
                return int(code), reason, Headers(fields)

    def body(self, method: str, status: int, headers: Headers) -> Iterator[bytes]:
        """The body's bytes as they come, however the answer delimits them."""
        if method == "HEAD" or status in (204, 304):
            return
        if "chunked" in (headers.get("Transfer-Encoding") or "").lower():
            while True:
                size_line = self.line().split(b";")[0].strip()
                if not CHUNK_SIZE.fullmatch(size_line):
                    raise ConnectionLost("a broken chunk in the answer")
                size = int(size_line, 16)
                if size == 0:
                    while self.line() not in (b"\r\n", b"\n", b""):
                        pass  # trailer fields
                    return
                yield from self.exactly(size)
                self.line()  # the chunk's CRLF
        length = headers.get("Content-Length")
        if length is not None:
            if not (length.isascii() and length.isdigit()):  # "²".isdigit() too
                raise ConnectionLost("a broken Content-Length in the answer")
            yield from self.exactly(int(length))
            return
        while chunk := self.reader.read1(65536):  # until the server closes
            yield chunk

    def exactly(self, size: int) -> Iterator[bytes]:
        """`size` bytes as they come: a chunk said to be huge is never allocated at once."""
        while size:
            data = self.reader.read1(min(size, 65536))
            if not data:
                raise ConnectionLost("the answer ended early")
            size -= len(data)
            yield data


def reusable(version: str, headers: Headers) -> bool:
    """Whether the connection may carry the next request after this answer."""
    delimited = "Content-Length" in headers or "Transfer-Encoding" in headers
    options = {token.strip() for token in (headers.get("Connection") or "").lower().split(",")}
    return version == "HTTP/1.1" and delimited and "close" not in options


class Streamed:
    """A response whose body is read as it comes, on a connection of its own."""

    def __init__(
        self, method: str, path: str, connection: Connection, status: int, reason: str,
        headers: Headers,
    ) -> None:  # fmt: skip
        self.method, self.path, self.connection = method, path, connection
        self.status_code, self.reason, self.headers = status, reason, headers

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    def chunks(self) -> Iterator[bytes]:
        body = self.connection.body(self.method, self.status_code, self.headers)
        while True:
            try:
                chunk = next(body, None)
            except TimeoutError as error:
                raise TimedOut(reason_of(error)) from error
            except OSError as error:
                raise ConnectionLost(reason_of(error)) from error
            if chunk is None:
                return
            yield chunk

    def read(self) -> Response:
        """The rest of the body, as a whole Response (for an error's words)."""
        content = b"".join(self.chunks())
        return Response(
            self.method, self.path, self.status_code, self.reason, self.headers, content
        )

    def lines(self) -> Iterator[str]:
        """Each line of the body without its line break, until the server ends it."""
        pending = b""
        for chunk in self.chunks():
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line.decode("utf-8", errors="replace").rstrip("\r")
        if pending:
            yield pending.decode("utf-8", errors="replace").rstrip("\r")


class Multipart:
    """multipart/form-data of some fields and files, sent in chunks as each file is read:
    a code folder of hundreds of MB is never held in memory. Several files may share one
    field's name (a batch job's `inputs`)."""

    def __init__(self, fields: Mapping[str, str], uploads: Sequence[tuple[str, FilePart]]) -> None:
        self.boundary = os.urandom(16).hex()
        parts = [self.part(f'name="{key}"', value.encode()) for key, value in fields.items()]
        self.fields = b"".join(parts)
        self.files: list[tuple[bytes, IO[bytes], int]] = []  # (its head, the file, its size)
        for name, (filename, file, content_type) in uploads:
            head = self.header(f'name="{name}"; filename="{header_safe(filename)}"', content_type)
            size = file.seek(0, 2)
            file.seek(0)
            self.files.append((head, file, size))
        self.tail = f"--{self.boundary}--\r\n".encode()

    def header(self, disposition: str, content_type: str = "") -> bytes:
        lines = [f"--{self.boundary}", f"Content-Disposition: form-data; {disposition}"]
        if content_type:
            lines.append(f"Content-Type: {content_type}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def part(self, disposition: str, value: bytes) -> bytes:
        return self.header(disposition) + value + b"\r\n"

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    @property
    def length(self) -> int:
        files = sum(len(head) + size + 2 for head, _, size in self.files)
        return len(self.fields) + files + len(self.tail)

    def chunks(self) -> Iterator[bytes]:
        yield self.fields
        for head, file, _ in self.files:
            yield head
            while chunk := file.read(UPLOAD_CHUNK):
                yield chunk
            yield b"\r\n"
        yield self.tail


def header_safe(text: str) -> str:
    """A value fit for a quoted header parameter: no quote, backslash or control character."""
    return "".join("_" if c in '"\\' or ord(c) < 32 or ord(c) == 127 else c for c in text)


class Http:
    """Requests to one server, `base` (scheme, host, port and path prefix), with `headers`
    on each. One connection is kept alive between requests; a stream gets its own."""

    def __init__(self, base: str, headers: Mapping[str, str], timeout: float) -> None:
        parts = urllib.parse.urlsplit(base)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.https else 80)
        default_port = parts.port is None or parts.port == (443 if self.https else 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.authority = host if default_port else f"{host}:{self.port}"
        self.prefix = parts.path.rstrip("/")
        self.headers = dict(headers)
        self.timeout = timeout
        self.kept: Connection | None = None

    def close(self) -> None:
        if self.kept is not None:
            self.kept.close()
            self.kept = None

    def connect(self, timeout: float) -> Connection:
        try:
            sock = socket.create_connection(
                (self.host, self.port), timeout=min(timeout, CONNECT_TIMEOUT)
            )
        except OSError as error:
            raise ConnectFailed(reason_of(error)) from error
        sock.settimeout(timeout)  # connected: reads wait the request's own time
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.https:
            import ssl  # only for https: its import is not free

            try:
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=self.host)
            except OSError as error:
                sock.close()
                raise ConnectFailed(reason_of(error)) from error
        return Connection(sock)

    def target(self, path: str, params: Mapping[str, Any] | None) -> str:
        query = urllib.parse.urlencode(
            {k: v for k, v in (params or {}).items() if v is not None}, doseq=True
        )
        target = self.prefix + path + (f"?{query}" if query else "")
        if any(ord(c) <= 32 or ord(c) >= 127 for c in target):
            raise ValueError(f"not a request target: {target!r}")  # the caller quotes
        return target

    def head(
        self, method: str, target: str, headers: Mapping[str, str], length: int | None
    ) -> bytes:
        fields = {"Host": self.authority, **self.headers, **headers}
        if length is not None:
            fields["Content-Length"] = str(length)
        lines = [f"{method} {target} HTTP/1.1"]
        for name, value in fields.items():
            if any(c in value for c in "\r\n\0"):
                raise ValueError(f"the header {name} holds a line break")
            lines.append(f"{name}: {value}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        data: Mapping[str, str] | None = None,
        files: Mapping[str, FilePart] | Sequence[tuple[str, FilePart]] | None = None,
        json: Any = None,
        timeout: float | None = None,
    ) -> Response:
        timeout = self.timeout if timeout is None else timeout
        headers: dict[str, str] = {}
        body: bytes | Iterable[bytes] | None = None
        length: int | None = None
        if files:
            uploads = list(files.items()) if isinstance(files, Mapping) else list(files)
            multipart = Multipart(data or {}, uploads)
            headers["Content-Type"] = multipart.content_type
            body, length = multipart.chunks(), multipart.length
            self.close()  # a body read once is never sent on a connection that may be stale
        elif json is not None:
            body = dumps(json)
            headers["Content-Type"] = "application/json"
        elif data is not None:
            body = urllib.parse.urlencode(data).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if isinstance(body, bytes):
            length = len(body)
        elif body is None and method in ("POST", "PUT", "PATCH"):
            length = 0
        head = self.head(method, self.target(path, params), headers, length)
        for attempt in range(2):
            if self.kept is not None and self.kept.closed_by_server():
                self.close()
            reused = self.kept is not None
            connection = self.kept or self.connect(timeout)
            self.kept = None  # put back only once its answer is read whole
            try:
                connection.sock.settimeout(timeout)
                try:
                    connection.send(head, body)
                except STALE:
                    if reused:
                        raise  # a stale kept connection: nothing was answered
                    # A fresh connection the server stopped reading: it may have answered
                    # already (413 for an upload too large, 401); that answer is read below.
                    connection.drop_request = True
                connection.ack_at_once()
                status, reason, answer_headers = connection.head()
                content = b"".join(connection.body(method, status, answer_headers))
            except (*STALE, Closed) as error:
                connection.close()
                if reused and attempt == 0 and method in IDEMPOTENT:
                    continue
                raise ConnectionLost(reason_of(error)) from error
            except TimeoutError as error:
                connection.close()
                raise TimedOut(reason_of(error)) from error
            except OSError as error:
                connection.close()
                raise ConnectionLost(reason_of(error)) from error
            except ConnectionLost:
                connection.close()
                raise
            if reusable(connection.version, answer_headers) and not connection.drop_request:
                self.kept = connection
            else:
                connection.close()
            return Response(method, path, status, reason, answer_headers, content)
        raise AssertionError("unreachable")  # pragma: no cover

    @contextmanager
    def stream(
        self, method: str, path: str, *, params: Mapping[str, Any] | None, timeout: float
    ) -> Iterator[Streamed]:
        """The response as it comes, on a connection of its own, closed afterwards."""
        target = self.target(path, params)
        connection = self.connect(timeout)
        try:
            try:
                connection.send(self.head(method, target, {}, None), None)
                connection.ack_at_once()
                status, reason, headers = connection.head()
            except TimeoutError as error:
                raise TimedOut(reason_of(error)) from error
            except OSError as error:
                raise ConnectionLost(reason_of(error)) from error
            yield Streamed(method, path, connection, status, reason, headers)
        finally:
            connection.close()


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()
