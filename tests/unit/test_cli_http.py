"""hangar/http.py, the client's HTTP/1.1 on a plain socket, against a real HTTP server (the
standard library's, on loopback) answering in each of the ways a server may: a length, chunks,
or until it closes; keeping the connection or dropping it; slow to answer."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hangar.client import ApiError, Client
from hangar.http import ConnectFailed, ConnectionLost, Http, TimedOut


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    connections: set[int] = set()  # the client ports seen

    def log_message(self, *args: object) -> None:
        pass

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def answer(self, status: int, body: bytes, **headers: str) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        type(self).connections.add(self.client_address[1])  # one port per connection
        path = self.path.partition("?")[0]
        if path == "/length":
            self.answer(200, b'{"via": "length"}', Content_Length="17")
        elif path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"first\n", b"sec", b"ond\n", b"third"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.flush()
                time.sleep(0.01)  # each chunk in its own packet
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/until-close":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"line one\nline two\n")
            self.close_connection = True
        elif path == "/drop-after":
            # Answers, then closes without saying so: the kept connection is stale.
            self.answer(200, b"{}", Content_Length="2")
            self.close_connection = True
        elif path == "/slow":
            time.sleep(2)
            self.answer(200, b"{}", Content_Length="2")
        elif path == "/query":
            target = json.dumps(self.path).encode()
            self.answer(200, target, Content_Length=str(len(target)))
        else:
            self.answer(404, b'{"detail": "Not found."}', Content_Length="24")

    def do_POST(self) -> None:
        type(self).connections.add(self.client_address[1])
        received = self.body()
        echo = json.dumps(
            {"type": self.headers.get("Content-Type"), "size": len(received)}
        ).encode()
        self.answer(201, echo, Content_Length=str(len(echo)))


@pytest.fixture
def server() -> Iterator[str]:
    Handler.connections = set()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_body_is_read_by_its_length_by_its_chunks_and_until_the_server_closes(server):
    http = Http(server, {}, timeout=5)
    assert http.request("GET", "/length").json() == {"via": "length"}
    assert http.request("GET", "/chunked").content == b"first\nsecond\nthird"
    assert http.request("GET", "/until-close").content == b"line one\nline two\n"
    http.close()


def test_requests_share_one_kept_connection_and_a_dropped_one_is_replaced(server):
    http = Http(server, {}, timeout=5)
    for _ in range(3):
        http.request("GET", "/length")
    assert len(Handler.connections) == 1  # kept alive between requests
    http.request("GET", "/drop-after")  # the server closes it without a word
    time.sleep(0.05)
    assert http.request("GET", "/length").json() == {"via": "length"}  # on a new one
    # A POST goes on a new connection too: the close was seen before anything was sent.
    http.request("GET", "/drop-after")
    time.sleep(0.05)
    assert http.request("POST", "/", json={}).json()["size"] == 2
    assert len(Handler.connections) == 3
    http.close()


def test_a_streamed_answer_comes_line_by_line_across_chunks(server):
    http = Http(server, {}, timeout=5)
    with http.stream("GET", "/chunked", params=None, timeout=5) as answer:
        assert answer.is_success
        assert list(answer.lines()) == ["first", "second", "third"]


def test_a_form_json_and_an_upload_go_with_their_length_and_type(server):
    http = Http(server, {}, timeout=5)
    form = http.request("POST", "/", data={"a": "1 2"}).json()
    assert form == {"type": "application/x-www-form-urlencoded", "size": 5}
    sent = http.request("POST", "/", json={"a": [1]}).json()
    assert sent == {"type": "application/json", "size": 10}
    upload = io.BytesIO(b"x" * 700_000)  # several of the upload's chunks
    made = http.request(
        "POST", "/", data={"name": "n"}, files={"upload": ('co"de.zip', upload, "application/zip")}
    ).json()
    assert made["type"].startswith("multipart/form-data; boundary=")
    assert made["size"] > 700_000


def test_query_values_are_encoded_and_none_left_out(server):
    http = Http(server, {}, timeout=5)
    target = http.request("GET", "/query", params={"q": "a b&c", "none": None}).json()
    assert target == "/query?q=a+b%26c"


def test_no_answer_in_time_and_no_server_are_told_apart(server):
    with pytest.raises(TimedOut):
        Http(server, {}, timeout=0.3).request("GET", "/slow")
    with pytest.raises(ConnectFailed, match="refused"):
        Http("http://127.0.0.1:9", {}, timeout=2).request("GET", "/")


def test_the_client_says_in_one_line_what_went_wrong(server):
    client = Client(server, "hgr_test")
    with pytest.raises(ApiError) as refused:
        client.call("GET", "/nowhere")
    assert refused.value.status == 404 and refused.value.detail == "Not found."
    with pytest.raises(ApiError) as unreachable:
        Client("http://127.0.0.1:9", "hgr_test").call("GET", "/")
    assert unreachable.value.status == 0
    assert unreachable.value.message == "cannot reach http://127.0.0.1:9: connection refused"


# A hostile or broken server: answers written byte for byte on a raw socket -------------


# The request lines a raw server was sent, in order.
REQUEST_LINES: list[str] = []


@pytest.fixture
def raw_server() -> Iterator[tuple[str, list[bytes]]]:
    """A server that answers each connection with the next of `answers` (the test fills
    the list), after reading the request's head only, then closes."""
    answers: list[bytes] = []
    REQUEST_LINES.clear()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    data = conn.recv(65536)
                    if not data:
                        break
                    head += data
                REQUEST_LINES.append(head.split(b"\r\n", 1)[0].decode())
                if answers:
                    conn.sendall(answers.pop(0))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", answers
    listener.close()


@pytest.mark.parametrize("size", [b"-5", b"0x10", b"1_0", b"+a", b"1" * 17])
def test_a_chunk_size_that_is_not_plain_hex_is_a_broken_answer(raw_server, size):
    url, answers = raw_server
    answers.append(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + size + b"\r\nabc\r\n0\r\n\r\n"
    )
    with pytest.raises(ConnectionLost, match="a broken chunk"):
        Http(url, {}, timeout=5).request("GET", "/")


def test_a_content_length_of_other_digits_is_a_broken_answer(raw_server):
    url, answers = raw_server
    # "²" (one byte in Latin-1, which header fields are read as) is a digit to str.isdigit().
    answers.append(b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\nab")
    with pytest.raises(ConnectionLost, match="Content-Length"):
        Http(url, {}, timeout=5).request("GET", "/")


def test_close_among_the_connection_options_is_honoured(raw_server):
    url, answers = raw_server
    answers += [
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]",
    ]
    http = Http(url, {}, timeout=5)
    assert http.request("GET", "/").json() == {}
    assert http.kept is None  # not kept: the server said it closes
    assert http.request("GET", "/").json() == []


def test_an_answer_the_server_gave_before_reading_the_upload_is_read(raw_server):
    """A server refuses an upload from its head alone (too large, no credential) and
    closes without reading the body: the client reports the server's answer."""
    url, answers = raw_server
    refusal = b'{"detail": "The code archive is larger than 100 MB."}'
    answers.append(
        b"HTTP/1.1 413 Request Entity Too Large\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(refusal), refusal)
    )
    upload = io.BytesIO(b"x" * 20_000_000)  # far more than the socket buffers hold
    answer = Http(url, {}, timeout=5).request(
        "POST", "/", files={"upload": ("code.zip", upload, "application/zip")}
    )
    assert answer.status_code == 413 and answer.json()["detail"].startswith("The code archive")


# The client over such servers: throttling waited out, a follow resumed ------------------


def test_a_short_429_is_waited_out_and_a_strange_retry_after_is_one_line(raw_server):
    url, answers = raw_server
    ok = b'[{"slug": "w"}]'
    answers += [
        b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 0.3\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(ok), ok),
    ]
    started = time.monotonic()
    assert Client(url, "hgr_test").call("GET", "/workspaces") == [{"slug": "w"}]
    assert time.monotonic() - started >= 0.3  # it waited as told, then asked again
    # A wait that is no wait (negative, NaN) is not slept on: the refusal is the answer.
    for retry_after in (b"-5", b"nan"):
        answers.append(
            b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: %s\r\nContent-Length: 2\r\n\r\n{}"
            % retry_after
        )
        with pytest.raises(ApiError) as refused:
            Client(url, "hgr_test").call("GET", "/workspaces")
        assert refused.value.status == 429 and refused.value.retry_after is None


def sse(name: str, data: dict) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


def test_following_a_job_resumes_from_its_offset_after_the_connection_dropped(raw_server):
    url, answers = raw_server
    job = b'{"id": 7, "retries": 0}'
    stream_head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
    answers += [
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(job), job),
        # The first stream gives some output, then the connection drops without an end.
        stream_head + sse("output", {"offset": 6, "text": "hello "}),
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(job), job),
        stream_head
        + sse("output", {"offset": 11, "text": "world"})
        + sse("end", {"status": "completed", "exit_code": 0, "error": ""}),
    ]
    follow = Client(url, "hgr_test").follow("w", 7)
    assert "".join(follow) == "hello world"  # nothing repeated, nothing lost
    assert follow.end == {"status": "completed", "exit_code": 0, "error": ""}
    followed = [line.split()[1] for line in REQUEST_LINES if "/follow" in line]
    assert followed == [
        "/api/v1/workspaces/w/jobs/7/follow?offset=0&rank=0",
        "/api/v1/workspaces/w/jobs/7/follow?offset=6&rank=0",  # on from where it was
    ]


def test_a_chunk_said_to_be_huge_is_read_as_it_comes_not_allocated(raw_server):
    url, answers = raw_server
    answers.append(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffff\r\nabc")
    with pytest.raises(ConnectionLost, match="ended early"):  # not MemoryError
        Http(url, {}, timeout=5).request("GET", "/")


def test_only_connecting_is_capped_a_connections_reads_wait_the_whole_timeout(server):
    connection = Http(server, {}, timeout=60).connect(60)
    try:
        assert connection.sock.gettimeout() == 60  # a follow waits 60 s for a byte
    finally:
        connection.close()
