"""The scoring server a replica runs, as a real process on a real Unix socket: a model
trained here answers predictions; readiness is the socket (after init); a bad request or
a failing run() is that request's error, not the replica's; SIGTERM answers what is under
way before the process ends."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from compute.inference.runtime import score_server
from compute.lib import replicas

SERVER = Path(score_server.__file__)
# A pure-Python model (nearest centroid), trained in the test: no framework in the node.
SCRIPT = """
import json, os, time
from pathlib import Path

centroids = None


def init():
    global centroids
    time.sleep(float(os.environ.get("INIT_SLEEP", "0")))
    centroids = json.loads(Path(os.environ["HANGAR_MODEL_DIR"], "model.json").read_text())


def run(request_json):
    request = json.loads(request_json)
    if request.get("boom"):
        raise ValueError("the model cannot score a boom")
    time.sleep(request.get("sleep", 0))
    predictions = []
    for row in request["data"]:
        distance = {
            label: sum((a - b) ** 2 for a, b in zip(row, centre))
            for label, centre in centroids.items()
        }
        predictions.append(min(distance, key=distance.get))
    return {"predictions": predictions}
"""


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 10) -> None:
        super().__init__("replica", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        folder = replicas.FolderHandle(self.path)  # however deep the socket's folder
        try:
            self.sock.connect(folder.path)
        finally:
            folder.close()


def call(path: str, method: str, url: str, body: bytes | None = None) -> tuple[int, dict]:
    connection = UnixConnection(path)
    try:
        connection.request(method, url, body=body, headers={"Content-Type": "application/json"})
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        connection.close()


def train(folder: Path) -> dict[str, list[float]]:
    """Centroids of two labelled clusters of points: the whole of the training."""
    points = {"small": [(1.0, 1.2), (0.8, 1.1), (1.1, 0.9)], "large": [(9.0, 8.8), (9.2, 9.1)]}
    centroids = {
        label: [sum(axis) / len(rows) for axis in zip(*rows, strict=True)]
        for label, rows in points.items()
    }
    (folder / "model.json").write_text(json.dumps(centroids))
    return centroids


@pytest.fixture
def replica(tmp_path: Path) -> Iterator[dict]:
    """Start a scoring server (the test says when); it is stopped when the test ends."""
    model = tmp_path / "model"
    model.mkdir()
    train(model)
    script = tmp_path / "score.py"
    script.write_text(SCRIPT)
    started: list[subprocess.Popen] = []
    folder = tempfile.mkdtemp(prefix="hangar-score-")
    made: dict = {"socket": os.path.join(folder, "replica.sock"), "script": script}

    def start(**environment: str) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, str(SERVER), "--socket", made["socket"], "--script", str(script),
             "--body-limit", "4096"],
            env={**os.environ, "HANGAR_MODEL_DIR": str(model), **environment},
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        started.append(process)
        return process

    made["start"] = start
    yield made
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()
    shutil.rmtree(folder)


def wait_ready(path: str, process: subprocess.Popen, timeout: float = 10) -> float:
    started = time.monotonic()
    while not os.path.exists(path):
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() - started < timeout, "the replica never became ready"
        time.sleep(0.01)
    return time.monotonic() - started


def test_a_model_trained_here_answers_through_the_socket(replica):
    process = replica["start"]()
    wait_ready(replica["socket"], process)
    assert call(replica["socket"], "GET", "/ready") == (200, {"ready": True, "answered": 0})
    body = json.dumps({"data": [[1, 1], [9, 9], [0.5, 2]]}).encode()
    status, answer = call(replica["socket"], "POST", "/score", body)
    assert (status, answer) == (200, {"predictions": ["small", "large", "small"]})
    assert oct(os.stat(replica["socket"]).st_mode & 0o777) == oct(0o666)


def test_the_socket_appears_only_once_init_has_returned(replica):
    process = replica["start"](INIT_SLEEP="0.6")
    time.sleep(0.3)
    assert not os.path.exists(replica["socket"]) and process.poll() is None
    assert wait_ready(replica["socket"], process) > 0.1
    assert call(replica["socket"], "GET", "/ready")[0] == 200


def test_a_failing_init_stops_the_replica_with_its_traceback(replica):
    Path(replica["script"]).write_text(SCRIPT.replace("time.sleep(float", "1 / 0; (float"))
    process = replica["start"]()
    assert process.wait(timeout=10) == score_server.INIT_FAILED
    error = process.stderr.read() if process.stderr else ""
    assert "init() failed" in error and "ZeroDivisionError" in error
    assert not os.path.lexists(replica["socket"])


@pytest.mark.parametrize(
    "body, status, says",
    [
        (b"{not json", 400, "the request is not JSON"),
        (json.dumps({"data": [[0, 0]] * 2000}).encode(), 413, "over 4096 bytes"),
        (json.dumps({"boom": True}).encode(), 500, "ValueError: the model cannot score a boom"),
    ],
)
def test_a_bad_request_is_its_own_error_and_the_replica_goes_on(replica, body, status, says):
    process = replica["start"]()
    wait_ready(replica["socket"], process)
    answered, answer = call(replica["socket"], "POST", "/score", body)
    assert answered == status and says in json.dumps(answer)
    good = json.dumps({"data": [[9, 9]]}).encode()
    assert call(replica["socket"], "POST", "/score", good) == (200, {"predictions": ["large"]})


def test_sigterm_answers_the_request_under_way_then_exits(replica):
    process = replica["start"]()
    wait_ready(replica["socket"], process)
    answers: list[tuple[int, dict]] = []
    slow = json.dumps({"data": [[1, 1]], "sleep": 0.8}).encode()
    caller = threading.Thread(
        target=lambda: answers.append(call(replica["socket"], "POST", "/score", slow))
    )
    caller.start()
    time.sleep(0.3)  # the request is in run()
    process.send_signal(signal.SIGTERM)
    caller.join(timeout=10)
    assert answers == [(200, {"predictions": ["small"]})]
    assert process.wait(timeout=10) == 0
    assert not os.path.lexists(replica["socket"])


def test_a_socket_deeper_than_af_unix_allows_is_served_and_reached(replica, tmp_path):
    """AF_UNIX paths stop at 108 bytes; a replica's folder on the host may be deeper (a
    clone in a long path): the server binds relative to it, clients go through the
    folder's descriptor."""
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    replica["socket"] = str(deep / "replica.sock")
    assert len(replica["socket"]) > 108
    process = replica["start"]()
    wait_ready(replica["socket"], process)
    body = json.dumps({"data": [[9, 9]]}).encode()
    assert call(replica["socket"], "POST", "/score", body) == (200, {"predictions": ["large"]})
