"""Runs one local node: `python -m compute.drivers.local_supervisor DIR -- COMMAND...`.

It detaches (double fork, own session), so the node outlives the Celery worker that
started it and never becomes the worker's zombie. It records its pid, runs the command in
its process group, forwards SIGTERM, and writes the exit code when the command ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


def write_atomically(path: Path, text: str) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    temporary.replace(path)


def main(argv: list[str]) -> None:
    node_dir = Path(argv[0])
    command = argv[argv.index("--") + 1 :]
    if os.fork() > 0:
        os._exit(0)  # the starter reaps this at once; the grandchild lives on
    os.setsid()
    with open(node_dir / "output.log", "ab") as log:
        child = subprocess.Popen(
            command, cwd=node_dir, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
    write_atomically(node_dir / "pid", str(os.getpid()))

    def forward(signum: int, _frame: object) -> None:
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = child.wait()
    write_atomically(node_dir / "exit_code", str(code))


if __name__ == "__main__":
    main(sys.argv[1:])
