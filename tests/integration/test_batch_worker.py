"""The batch runner's node worker as real processes on a real Unix socket, the way a batch
node runs them (its supervisor, then one mini-batch job after another as clients), in a
folder standing for one node: init() runs once for many mini-batches; a worker that dies
in run() (os._exit, a segfault) fails only that mini-batch, with the exit code its
process had, and the next one gets a fresh worker; init() or run() raising is that
mini-batch's error with its traceback; a job killed mid-run takes its run() with it; a
node whose supervisor is gone runs the script in the job's own process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from compute.inference.runtime import batch_runner

pytestmark = pytest.mark.integration
RUNNER = Path(batch_runner.__file__)
MARK = "hangar-row-test"

# init() and run() write where they ran (pids) in the node's folder; a file's text
# tells run() what to do with it.
SCRIPT = """
import os, signal, time
from pathlib import Path

NODE = Path(os.environ["NODE_DIR"])
state = None


def init():
    global state
    print("init in", os.getpid())
    if (NODE / "init-fails").exists():
        raise RuntimeError("the model cannot load")
    with open(NODE / "inits.txt", "a") as log:
        log.write(f"{os.getpid()}\\n")
    state = os.getpid()


def run(mini_batch):
    rows = []
    for path in mini_batch:
        what = Path(path).read_text()
        print("scoring", os.path.basename(path))
        if what == "exit" and not (NODE / "exited").exists():
            (NODE / "exited").touch()
            os._exit(3)
        if what == "segfault" and not (NODE / "crashed").exists():
            (NODE / "crashed").touch()
            os.kill(os.getpid(), signal.SIGSEGV)
        if what == "raise":
            raise ValueError("cannot score " + os.path.basename(path))
        if what == "sleep":
            (NODE / "sleeping").write_text(str(os.getpid()))
            time.sleep(60)
        rows.append([os.path.basename(path), state, os.environ["HANGAR_MINI_BATCH"]])
    return rows
"""


@dataclass
class Node:
    folder: Path
    supervisor: subprocess.Popen

    @property
    def socket(self) -> str:
        return str(self.folder / "run" / "worker.sock")

    def environment(self, index: int, socket: bool = True) -> dict[str, str]:
        return {
            "PATH": os.environ["PATH"],
            "NODE_DIR": str(self.folder),
            "HANGAR_BATCH_DIR": str(self.folder / "batch"),
            "HANGAR_INPUT_DIR": str(self.folder / "inputs"),
            "HANGAR_MINI_BATCH": str(index),
            "HANGAR_RESULT_MARK": MARK,
            **({"HANGAR_BATCH_SOCKET": self.socket} if socket else {}),
        }

    def mini_batch(
        self, index: int, socket: bool = True, merged: bool = False
    ) -> subprocess.CompletedProcess:
        """`merged`: stderr into stdout, as a job's output has them (one pipe)."""
        return subprocess.run(
            [sys.executable, str(RUNNER)],
            env=self.environment(index, socket),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merged else subprocess.PIPE,
            text=True,
            timeout=60,
        )

    def inits(self) -> list[str]:
        path = self.folder / "inits.txt"
        return path.read_text().split() if path.exists() else []


def rows(done: subprocess.CompletedProcess) -> list[list]:
    marked = [line for line in done.stdout.splitlines() if line.startswith(f"{MARK}\t")]
    return [json.loads(line.split("\t", 1)[1]) for line in marked]


def make_node(inputs: list[str]) -> Iterator[Node]:
    # A short folder: a Unix socket's path stops at 108 bytes.
    folder = Path(tempfile.mkdtemp(prefix="hb-", dir="/tmp"))
    (folder / "batch").mkdir()
    (folder / "inputs").mkdir()
    (folder / "batch" / "score.py").write_text(SCRIPT)
    names = []
    for number, text in enumerate(inputs):
        name = f"f{number:02}.txt"
        (folder / "inputs" / name).write_text(text)
        names.append(name)
    chunks = [names[at : at + 2] for at in range(0, len(names), 2)]
    (folder / "batch" / "mini_batches.json").write_text(json.dumps(chunks))
    env = {"PATH": os.environ["PATH"], "NODE_DIR": str(folder)}
    env["HANGAR_BATCH_DIR"] = str(folder / "batch")
    socket = str(folder / "run" / "worker.sock")
    supervisor = subprocess.Popen(
        [sys.executable, str(RUNNER), "--serve", socket],
        env=env,
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    node = Node(folder, supervisor)
    deadline = time.monotonic() + 10
    while not os.path.exists(socket) and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield node
    finally:
        for pid in [supervisor.pid, *map(int, node.inits())]:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
        supervisor.wait()
        subprocess.run(["rm", "-rf", str(folder)], check=False)


@pytest.fixture
def node() -> Iterator[Node]:
    yield from make_node(["ok"] * 12)


def test_init_runs_once_for_every_mini_batch_of_the_node(node):
    results = [node.mini_batch(index) for index in range(6)]
    assert [r.returncode for r in results] == [0] * 6, [r.stderr for r in results]
    assert len(node.inits()) == 1
    worker = int(node.inits()[0])
    got = [row for r in results for row in rows(r)]
    assert [row[0] for row in got] == [f"f{n:02}.txt" for n in range(12)]
    # One worker answered them all, each with its own job's environment.
    assert {row[1] for row in got} == {worker}
    assert [row[2] for row in got] == [str(n // 2) for n in range(12)]
    assert "init() ran now" in results[0].stdout and "init() ran now" not in results[1].stdout
    # What the script printed is in its own job's output, unmarked, before the rows.
    assert "init in" in results[0].stdout and "init in" not in results[3].stdout
    assert results[3].stdout.index("scoring f06.txt") < results[3].stdout.index(MARK)
    assert worker != node.supervisor.pid


@pytest.fixture
def crashing() -> Iterator[Node]:
    yield from make_node(["ok", "ok", "ok", "exit", "ok", "segfault", "ok", "raise"])


def test_a_worker_that_dies_fails_only_its_mini_batch_and_the_next_gets_a_fresh_one(crashing):
    node = crashing
    first = node.mini_batch(0)
    assert first.returncode == 0 and len(node.inits()) == 1
    exited = node.mini_batch(1)  # run() calls os._exit(3)
    assert exited.returncode == 3 and not rows(exited)
    assert "batch worker exited with code 3" in exited.stderr
    again = node.mini_batch(1)  # its retry: a fresh worker, init() again
    assert again.returncode == 0 and len(node.inits()) == 2
    assert {row[1] for row in rows(again)} == {int(node.inits()[1])}
    crashed = node.mini_batch(2)  # a segfault
    assert crashed.returncode == 128 + signal.SIGSEGV
    assert "killed by SIGSEGV" in crashed.stderr
    assert node.mini_batch(2).returncode == 0 and len(node.inits()) == 3
    # run() raising is its mini-batch's error, traceback and all; the worker goes on.
    raised = node.mini_batch(3)
    assert raised.returncode == 1 and not rows(raised)
    assert "ValueError: cannot score f07.txt" in raised.stderr
    assert "Traceback" in raised.stderr
    # In the job's output, as Python's own exit wrote it: the script's lines, then the
    # traceback (the sweep shows its last line as the mini-batch's error).
    output = node.mini_batch(3, merged=True).stdout.strip()
    assert output.index("scoring f06.txt") < output.index("Traceback")
    assert output.endswith("ValueError: cannot score f07.txt")
    assert node.mini_batch(0).returncode == 0 and len(node.inits()) == 3
    assert node.supervisor.poll() is None


def test_init_failing_fails_the_mini_batch_with_its_traceback_and_is_tried_again(node):
    (node.folder / "init-fails").touch()
    failed = node.mini_batch(0)
    assert failed.returncode == 1 and not rows(failed)
    assert "RuntimeError: the model cannot load" in failed.stderr
    assert "init in" in failed.stdout
    (node.folder / "init-fails").unlink()
    assert node.mini_batch(0).returncode == 0 and len(node.inits()) == 1


@pytest.fixture
def sleepy() -> Iterator[Node]:
    yield from make_node(["sleep", "ok", "ok", "ok"])


def test_a_job_killed_mid_run_takes_its_run_with_it(sleepy):
    node = sleepy
    job = subprocess.Popen(
        [sys.executable, str(RUNNER)], env=node.environment(0), stdout=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 20
    while not (node.folder / "sleeping").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    worker = int((node.folder / "sleeping").read_text())
    job.kill()  # a cancel, a preempted node's job
    job.wait()
    deadline = time.monotonic() + 5
    while pid_alive(worker) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not pid_alive(worker)
    started = time.monotonic()
    after = node.mini_batch(1)
    assert after.returncode == 0 and time.monotonic() - started < 10
    assert len(node.inits()) == 2


def pid_alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return status.rsplit(")", 1)[1].split()[0] != "Z"


def test_without_its_supervisor_the_job_runs_the_script_itself(node):
    os.killpg(node.supervisor.pid, signal.SIGKILL)
    node.supervisor.wait()
    alone = node.mini_batch(0)
    assert alone.returncode == 0 and len(rows(alone)) == 2
    assert "no batch worker in this node" in alone.stdout
    assert {row[1] for row in rows(alone)} == {int(node.inits()[0])}
    # A node that never had one (no socket said): the same, without the note.
    plain = node.mini_batch(1, socket=False)
    assert plain.returncode == 0 and "no batch worker" not in plain.stdout
    assert len(node.inits()) == 2
