"""Hangar's batch runner: a batch job's mini-batches in its nodes. Standard library only (it
runs in any environment with Python 3), and the one file of Hangar's a batch node gets, so
it has three roles:

- **The mini-batch job** (no argument): what each mini-batch's job runs. It hands its
  files to the node's batch worker over a Unix socket and writes each row `run` returned
  as one line `<mark>\\t<JSON list of fields>` on its output. The mark is the attempt's
  own (an environment variable the worker is never given), so a line the script prints
  itself is never taken for a result. Hangar reads the rows from the job's output once
  the job has ended well; any failure is a non-zero exit, and the traceback is the job's
  output, as for any job. A node with no worker answering (a node started before there
  were workers, one whose worker supervisor was killed) runs the script in the job's own
  process instead: init(), then run(mini_batch), as a worker would.
- **The worker supervisor** (`--serve SOCKET`): the batch node's own process (the node's
  user, started with the node). It listens on SOCKET, in the node's own /tmp (a tmpfs no
  other node and not the host shares), takes one mini-batch at a time and keeps one
  worker for them: a node runs one job at a time. It runs none of the user's code.
- **The worker** (`--work FD`), the supervisor's child: loads score.py and calls `init()`
  on its first mini-batch, then `run(mini_batch)` for each mini-batch it is handed (the
  convention users know: init() once per worker process). While it works on a
  mini-batch its stdout and stderr are that job's (handed over with the request), so
  what init() and run() print, and their tracebacks, are in that job's output.

What a failure costs: `run()` raising fails its mini-batch (retried as before) and the
worker goes on; `init()` failing fails the mini-batch with its traceback and ends the
worker (the next mini-batch tries init() again). A worker that dies — os._exit, a signal,
the out-of-memory killer — fails the mini-batch in flight with the exit code its process
would have had, and the next mini-batch gets a fresh worker (init() again). A mini-batch
job that goes away (canceled, its node preempted) takes the worker's run() with it: the
supervisor kills the worker, as a canceled job's process was killed before.

`run` may return a list (one row per element: a list or tuple of fields, a dict's
values, or one value), or a pandas DataFrame (one row per row).
"""

from __future__ import annotations

import array
import json
import os
import select
import signal
import socket
import struct
import sys
import time
import traceback
from pathlib import Path

BATCH = Path(os.environ.get("HANGAR_BATCH_DIR", "/hangar/batch"))
INPUTS = Path(os.environ.get("HANGAR_INPUT_DIR", "/hangar/inputs"))
# Where a batch node's worker listens (set in the node's environment, which its jobs
# inherit; unset: no worker, the job runs the script itself).
SOCKET_VARIABLE = "HANGAR_BATCH_SOCKET"
MARK_VARIABLE = "HANGAR_RESULT_MARK"
# A node's worker may still be binding its socket when its first job starts.
CONNECT_WAIT = 5.0
HEADER = struct.Struct(">I")
MAX_MESSAGE = 1 << 31
# A request arrives at once: a connection that says less is not a mini-batch job's.
REQUEST_WAIT = 10.0


class ScriptError(Exception):
    """The script broke the runner's rules (no init(), run() returning None, ...)."""


class WorkerGone(Exception):
    """The other end of a worker's socket closed or spoke out of turn."""


# The user's script ---------------------------------------------------------------------


def load_script(path: Path):
    import importlib.util

    sys.path.insert(0, str(path.parent))  # its own helper modules beside it
    spec = importlib.util.spec_from_file_location("score", path)
    if spec is None or spec.loader is None:
        raise ScriptError(f"[hangar] cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in ("init", "run"):
        if not callable(getattr(module, name, None)):
            raise ScriptError(f"[hangar] score.py has no {name}() function")
    return module


def rows_of(result) -> list[list]:
    if result is None:
        raise ScriptError("[hangar] run(mini_batch) returned None: return one row per input")
    if hasattr(result, "columns") and hasattr(result, "itertuples"):  # a pandas DataFrame
        return [list(row) for row in result.itertuples(index=False)]
    if isinstance(result, (str, bytes)) or not hasattr(result, "__iter__"):
        raise ScriptError(
            f"[hangar] run(mini_batch) returned {type(result).__name__}: return a list of rows"
        )
    rows = []
    for row in result:
        if isinstance(row, dict):
            rows.append(list(row.values()))
        elif isinstance(row, (list, tuple)):
            rows.append(list(row))
        else:
            rows.append([row])
    return rows


def field(value):
    """A JSON field: numbers, text, booleans and nothing as they are, anything else as text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item"):  # numpy scalars
        try:
            return value.item()
        except (TypeError, ValueError):
            pass
    return str(value)


def scored(module, files: list[str]) -> list[list]:
    return [[field(value) for value in row] for row in rows_of(module.run(files))]


# Messages: a 4-byte length, then JSON (ASCII: a lone surrogate crosses as an escape) --------


def send(channel: socket.socket, message: dict, fds: tuple[int, ...] = ()) -> None:
    body = json.dumps(message).encode()
    data = HEADER.pack(len(body)) + body
    if fds:
        rights = array.array("i", fds).tobytes()
        sent = channel.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)])
        data = data[sent:]
    if data:  # (an empty send to a peer that has answered and closed already: EPIPE)
        channel.sendall(data)


def receive(channel: socket.socket, want_fds: int = 0) -> tuple[dict, list[int]] | None:
    """The next message and the descriptors it brought; None if the other end closed
    before a message began. WorkerGone if it closed or broke off in the middle of one."""
    fds: list[int] = []
    head = b""
    try:
        while len(head) < HEADER.size:
            if want_fds and not fds:
                space = socket.CMSG_SPACE(want_fds * array.array("i").itemsize)
                chunk, ancillary, _, _ = channel.recvmsg(HEADER.size - len(head), space)
                for level, kind, data in ancillary:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                        usable = len(data) - len(data) % array.array("i").itemsize
                        fds += array.array("i", data[:usable]).tolist()
            else:
                chunk = channel.recv(HEADER.size - len(head))
            if not chunk:
                if head:
                    raise WorkerGone("the message was cut short")
                close_all(fds)
                return None
            head += chunk
        (size,) = HEADER.unpack(head)
        if size > MAX_MESSAGE:
            raise WorkerGone("a message past its size limit")
        body = bytearray()
        while len(body) < size:
            chunk = channel.recv(min(size - len(body), 1 << 20))
            if not chunk:
                raise WorkerGone("the message was cut short")
            body += chunk
        message = json.loads(body)
        if not isinstance(message, dict):
            raise WorkerGone("a message that is not an object")
        return message, fds
    except (WorkerGone, ValueError, OSError) as exc:
        close_all(fds)
        if isinstance(exc, WorkerGone):
            raise
        raise WorkerGone(str(exc)) from None


def close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


# The mini-batch job -------------------------------------------------------------------------


def main() -> int:
    mark = os.environ[MARK_VARIABLE]
    index = int(os.environ["HANGAR_MINI_BATCH"])
    manifest = json.loads((BATCH / "mini_batches.json").read_text())
    files = [str(INPUTS / name) for name in manifest[index]]
    # The results' own channel: the output as it is now (the script may replace
    # sys.stdout, or print to it in run(); its lines carry no mark).
    results = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    channel = connect(os.environ.get(SOCKET_VARIABLE, ""))
    if channel is None:
        code, rows, where = in_this_process(files)
    else:
        with channel:
            code, rows, where = by_worker(channel, index, files)
    if rows is None:
        return code
    sys.stdout.flush()
    sys.stderr.flush()
    for row in rows:
        line = json.dumps(row, ensure_ascii=False)
        results.write(f"{mark}\t{line}\n")
    results.flush()
    print(
        f"[hangar] mini-batch {index + 1}: {len(files)} files, {len(rows)} rows ({where})",
        flush=True,
    )
    return 0


def connect(path: str) -> socket.socket | None:
    """The node's worker, if it has one (waiting a moment for one still starting)."""
    if not path:
        return None
    deadline = time.monotonic() + CONNECT_WAIT
    while True:
        channel = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            channel.connect(path)
            return channel
        except FileNotFoundError:
            channel.close()
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        except OSError:  # refused: its supervisor is gone
            channel.close()
            break
    print("[hangar] no batch worker in this node: the script runs in this process", flush=True)
    return None


def in_this_process(files: list[str]) -> tuple[int, list[list] | None, str]:
    """init() and run(mini_batch) here, as a worker would (anything else they raise
    ends this process with its traceback)."""
    try:
        module = load_script(BATCH / "score.py")
        module.init()
        return 0, scored(module, files), "this process"
    except ScriptError as exc:
        said(exc)
        return 1, None, ""


def by_worker(
    channel: socket.socket, index: int, files: list[str]
) -> tuple[int, list[list] | None, str]:
    """Its rows from the node's worker; or the exit code, the failure said on stderr."""
    sys.stdout.flush()
    sys.stderr.flush()
    # What the script may read of this job's environment, but its mark.
    environment = {k: v for k, v in os.environ.items() if k != MARK_VARIABLE}
    request = {"index": index, "files": files, "environment": environment}
    try:
        send(channel, request, (sys.stdout.fileno(), sys.stderr.fileno()))
        got = receive(channel)
    except (WorkerGone, OSError) as exc:
        got, why = None, str(exc)
    else:
        why = "it closed the connection"
    if got is None:
        print(f"[hangar] the node's batch worker did not answer: {why}", file=sys.stderr)
        return 1, None, ""
    reply = got[0]
    if reply.get("ok") and isinstance(reply.get("rows"), list):
        return 0, reply["rows"], str(reply.get("worker", "the node's batch worker"))
    if reply.get("said"):
        print(reply["said"], file=sys.stderr, flush=True)
    code = reply.get("code")
    return (code if isinstance(code, int) and 0 < code < 256 else 1), None, ""


# The node's worker supervisor ---------------------------------------------------------------


def serve(path: str) -> int:
    listener = listen(path)
    print(f"[hangar] batch worker supervisor listening on {path}", flush=True)
    worker: Worker | None = None
    while True:
        channel, _ = listener.accept()
        with channel:
            worker = serve_one(channel, worker)


def listen(path: str) -> socket.socket:
    """SOCKET in a folder of the node user's own: the job's user (another user) may
    connect, and neither remove nor replace it (the folder is not theirs, /tmp is sticky)."""
    folder = os.path.dirname(path) or "."
    try:
        os.mkdir(folder, 0o711)
    except FileExistsError:
        pass
    info = os.lstat(folder)
    if not os.path.isdir(folder) or os.path.islink(folder) or info.st_uid != os.geteuid():
        raise SystemExit(f"[hangar] {folder} is not this node user's folder: no batch worker")
    os.chmod(folder, 0o711)  # noqa: S103 (its users pass through to the socket, no more)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o666)  # noqa: S103 (the job's user connects; only this node's users exist)
    listener.listen(8)
    return listener


class Worker:
    """The worker process and the supervisor's end of its socket."""

    def __init__(self) -> None:
        import subprocess

        ours, theirs = socket.socketpair()
        self.channel = ours
        self.served = 0
        # A session of its own: ending it ends whatever it started too.
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--work", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        theirs.close()

    def alive(self) -> bool:
        return self.process.poll() is None

    def end(self) -> int:
        """Kill it (and all it started), and its exit code as a shell would give it."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except OSError:
            pass
        self.channel.close()
        code = self.process.wait()
        return code if code >= 0 else 128 - code


def serve_one(channel: socket.socket, worker: Worker | None) -> Worker | None:
    """One mini-batch: handed to the worker (a fresh one if there is none), its reply
    handed back. The worker kept for the next, or None when it is gone."""
    try:
        channel.settimeout(REQUEST_WAIT)
        got = receive(channel, want_fds=2)
        channel.settimeout(None)
    except WorkerGone:
        return worker
    if got is None:
        return worker
    request, fds = got
    try:
        if len(fds) != 2:
            return worker  # a client that is not the runner: nothing to serve
        if worker is not None and not worker.alive():
            worker.end()
            worker = None
        if worker is None:
            worker = Worker()
        try:
            send(worker.channel, request, tuple(fds))
        except OSError:
            pass  # it died already: told below
    finally:
        close_all(fds)
    reply = wait_for_reply(channel, worker)
    if reply is None:  # the job went away: so does what it asked for
        worker.end()
        return None
    if reply.get("ok") is None:  # the worker died
        code = worker.end()
        reply = {"ok": False, "code": code, "said": ended_in_run(code)}
    try:
        send(channel, reply)
    except OSError:
        pass
    if reply.get("quit"):
        worker.end()
        return None
    worker.served += 1
    return worker


def wait_for_reply(channel: socket.socket, worker: Worker) -> dict | None:
    """The worker's reply; {} when the worker died first; None when the job went away."""
    poller = select.poll()
    poller.register(channel, select.POLLIN)
    poller.register(worker.channel, select.POLLIN)
    while True:
        ready = {fd for fd, _ in poller.poll(500)}
        if channel.fileno() in ready:  # the job sends nothing more: it closed
            return None
        if worker.channel.fileno() in ready:
            try:
                got = receive(worker.channel)
            except WorkerGone:
                return {}
            return {} if got is None else got[0]
        if not worker.alive():  # gone, though a child of its may hold its socket open
            if not poller.poll(0):
                return {}


def ended_in_run(code: int) -> str:
    if code > 128 and code - 128 in signal.valid_signals():
        name = signal.Signals(code - 128).name
        how = f"was killed by {name}" + (" (out of memory?)" if name == "SIGKILL" else "")
    else:
        how = f"exited with code {code}"
    return (
        f"[hangar] the batch worker {how} during this mini-batch; "
        "the next mini-batch gets a fresh worker (init() again)"
    )


# The worker ---------------------------------------------------------------------------------


def work(fd: int) -> int:
    channel = socket.socket(fileno=fd)
    try:  # the out-of-memory killer takes the worker first, never its supervisor
        Path("/proc/self/oom_score_adj").write_text("1000")
    except OSError:
        pass
    own_output = os.dup(1), os.dup(2)
    module = None
    while True:
        try:
            got = receive(channel, want_fds=2)
        except WorkerGone:
            return 1
        if got is None:
            return 0  # its supervisor is gone
        request, fds = got
        if len(fds) != 2:
            close_all(fds)
            return 1
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        close_all(fds)
        try:
            module, reply = handle(module, request)
        finally:
            # The job's output is let go before it hears back: its end finds no writer left.
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:  # noqa: S110 (the script may have replaced them)
                    pass
            os.dup2(own_output[0], 1)
            os.dup2(own_output[1], 2)
        send(channel, reply)
        if reply.get("quit"):
            return 1


def handle(module, request: dict) -> tuple[object, dict]:
    """The script's answer to one request; the module (None once it must not be used)."""
    environment = request.get("environment")
    if isinstance(environment, dict):
        os.environ.update({str(k): str(v) for k, v in environment.items()})
    first = module is None
    try:
        if module is None:
            module = load_script(BATCH / "score.py")
            module.init()
    except BaseException as exc:  # init() failed, whatever it raised
        said(exc)
        return None, {"ok": False, "code": 1, "quit": True}
    try:
        rows = scored(module, [str(f) for f in request.get("files", [])])
    except (Exception, SystemExit, KeyboardInterrupt) as exc:
        said(exc)
        # A process that ran out of memory, or asked to end, is not used again.
        end = isinstance(exc, (MemoryError, SystemExit, KeyboardInterrupt))
        return module, {"ok": False, "code": 1, "quit": end}
    where = f"batch worker {os.getpid()}" + (", init() ran now" if first else "")
    return module, {"ok": True, "rows": rows, "worker": where}


def said(exc: BaseException) -> None:
    """What went wrong, after what the script printed (as Python's own exit prints it)."""
    try:
        sys.stdout.flush()
    except Exception:  # noqa: S110 (the script may have replaced or closed it)
        pass
    if isinstance(exc, ScriptError):
        print(exc, file=sys.stderr, flush=True)
    else:
        traceback.print_exc()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"] and len(sys.argv) == 3:
        sys.exit(serve(sys.argv[2]))
    if sys.argv[1:2] == ["--work"] and len(sys.argv) == 3:
        sys.exit(work(int(sys.argv[2])))
    sys.exit(main())
