"""Hangar's scoring server: what a replica runs. It loads the user's scoring script, calls
its `init()` once, then answers each request with `run(request_json)` over a Unix socket
that only Hangar reaches (nodes stay off the network).

It runs inside the node, on whatever Python the environment has: the standard library
only, no Django, no Hangar import. Started as

    python3 score_server.py --socket /run/hangar/score.sock --script /code/score.py

- The socket appears only once `init()` returned: its presence (and `GET /ready`) is the
  replica's readiness. If `init()` raises, the server prints the traceback and exits 3.
- `POST /score` with a JSON body → 200 and `run()`'s result as JSON. A body that is not
  JSON → 400; over `--body-limit` bytes → 413; `run()` raising → 500 with the exception's
  type and message (the server goes on serving).
- `run()` calls are one at a time (scoring scripts are written for one caller); requests
  wait for their turn on the server's threads.
- SIGTERM: no new connection is taken, requests under way are answered, then exit 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import socket
import socketserver
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler
from types import ModuleType
from typing import Any

INIT_FAILED = 3
DEFAULT_BODY_LIMIT = 16 * 1024 * 1024


def load_script(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("score", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load a scoring script from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["score"] = module
    spec.loader.exec_module(module)
    for name in ("init", "run"):
        if not callable(getattr(module, name, None)):
            raise AttributeError(f"the scoring script defines no {name}() function")
    return module


class Scorer:
    """The loaded script, and the one lock its `run()` is called under."""

    def __init__(self, module: ModuleType) -> None:
        self.module = module
        self.lock = threading.Lock()
        self.answered = 0

    def score(self, request_json: str) -> Any:
        with self.lock:
            result = self.module.run(request_json)
            self.answered += 1
            return result


class Handler(BaseHTTPRequestHandler):
    server: ScoreServer
    protocol_version = "HTTP/1.1"  # keep-alive: the gateway reuses its connections
    # An idle kept-alive connection is closed after this: a stopping replica waits for
    # its connections' threads, at most this long for an idle one.
    timeout = 5

    def do_GET(self) -> None:
        if self.path != "/ready":
            self.reply(404, {"error": "not found"})
            return
        self.reply(200, {"ready": True, "answered": self.server.scorer.answered})

    def do_POST(self) -> None:
        if self.path != "/score":
            self.reply(404, {"error": "not found"})
            return
        length = self.header_length()
        if length is None:
            self.reply(411, {"error": "a scoring request needs a Content-Length"})
            return
        if length > self.server.body_limit:
            self.close_connection = True  # the body is not read
            self.reply(413, {"error": f"the request is over {self.server.body_limit} bytes"})
            return
        body = self.rfile.read(length).decode("utf-8", errors="replace")
        try:
            json.loads(body)
        except ValueError as exc:
            self.reply(400, {"error": f"the request is not JSON: {exc}"})
            return
        try:
            result = self.server.scorer.score(body)
            payload = json.dumps(result)
        except Exception as exc:  # the user's code: any failure is the request's
            detail = f"{type(exc).__name__}: {exc}"
            self.log_message("run() failed: %s", detail)
            self.reply(500, {"error": "run() failed", "detail": detail[:2000]})
            return
        self.send_json(200, payload)

    def header_length(self) -> int | None:
        text = self.headers.get("Content-Length")
        if text is None or not text.isascii() or not text.isdigit() or len(text) > 12:
            return None
        return int(text)

    def reply(self, status: int, body: dict[str, Any]) -> None:
        self.send_json(status, json.dumps(body))

    def send_json(self, status: int, payload: str) -> None:
        data = payload.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"score-server: {format % args}\n")

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # one line per request would flood a replica's log; errors are logged


class ScoreServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = False  # a request under way is answered before the process exits
    block_on_close = True
    # Connections waiting to be accepted: socketserver's 5 refuses a burst of callers
    # (the gateway opens a connection per concurrent request) with EAGAIN.
    request_queue_size = socket.SOMAXCONN

    def __init__(self, path: str, scorer: Scorer, body_limit: int) -> None:
        self.scorer = scorer
        self.body_limit = body_limit
        super().__init__(path, Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, _ = self.socket.accept()
        return connection, ("unix", 0)  # BaseHTTPRequestHandler wants a (host, port)


def bind_when_ready(path: str, scorer: Scorer, body_limit: int) -> ScoreServer:
    """Listen at `path`, made under a temporary name and renamed into place: whoever sees
    the socket can connect to it."""
    folder, name = os.path.split(path)
    # Bound by a name relative to its folder (AF_UNIX paths stop at 108 bytes, and the
    # folder may be deep), then back to where the script was loaded from.
    here = os.getcwd()
    os.chdir(folder or ".")
    try:
        staging = f"{name}.{os.getpid()}.starting"
        for stale in (name, staging):
            if os.path.lexists(stale):
                os.unlink(stale)  # a previous replica's: it is gone
        server = ScoreServer(staging, scorer, body_limit)
        # Hangar's gateway runs as another user than the node's; the folder the socket is
        # in keeps everyone else out (Hangar's alone, 0700, on the machine).
        os.chmod(staging, 0o666)  # noqa: S103
        os.rename(staging, name)
    finally:
        os.chdir(here)
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Hangar's scoring server (one replica).")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--script", required=True)
    parser.add_argument("--body-limit", type=int, default=DEFAULT_BODY_LIMIT)
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        module = load_script(args.script)
        module.init()
    except BaseException:
        sys.stdout.flush()  # what the script printed first, then why it failed
        sys.stderr.write("score-server: init() failed, the replica does not start:\n")
        traceback.print_exc()
        return INIT_FAILED
    socket_path = os.path.abspath(args.socket)
    server = bind_when_ready(socket_path, Scorer(module), args.body_limit)

    def stop(signum: int, frame: object) -> None:
        # shutdown() waits for serve_forever to return: from another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sys.stderr.write(f"score-server: ready in {time.monotonic() - started:.2f} s\n")
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()  # joins the request threads: those under way are answered
        if os.path.lexists(socket_path):
            os.unlink(socket_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
