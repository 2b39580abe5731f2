"""The run wrapper (compute/drivers/node_scripts.py WRAPPER) writes the exit code — which
tells Hangar "the output is whole" — only after the output drain has written the last
line, however slow a loaded machine makes the drain. Run here in the host's sh, as the
node runs it in its own."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from compute.drivers import node_scripts

# The job stops its own drain (the processes reading its output FIFO), prints its last
# line, and has the drain resumed three seconds later by a helper that does not hold the
# FIFO (as a machine too loaded to run the drain for a while would).
STALLS_ITS_DRAIN = r"""
fifo="$PWD/.out"
for p in /proc/[0-9]*; do
  [ "$(readlink "$p/fd/0" 2>/dev/null)" = "$fifo" ] && stalled="$stalled ${p#/proc/}"
done
kill -STOP $stalled
echo "last line"
( sleep 3; kill -CONT $stalled ) > /dev/null 2>&1 < /dev/null &
"""


def run_wrapper(folder: Path, command: str) -> subprocess.Popen:
    return subprocess.Popen(
        ["sh", "-c", node_scripts.WRAPPER, "hangar-run:test", str(folder), "2048"],
        cwd=folder,
        env={**os.environ, "HANGAR_COMMAND": command},
        start_new_session=True,  # its own group: everything it started ends with the test
    )


def test_the_exit_code_waits_for_a_slow_drain_to_write_the_last_line(tmp_path):
    wrapper = run_wrapper(tmp_path, STALLS_ITS_DRAIN)
    try:
        exit_code = tmp_path / "exit_code"
        deadline = time.monotonic() + 20
        while not exit_code.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        output = (tmp_path / "output.log").read_text()
        assert exit_code.read_text() == "0\n"
        assert output == "last line\n"
        assert wrapper.wait(timeout=5) == 0
    finally:
        try:
            os.killpg(wrapper.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        wrapper.wait()


def test_a_child_left_holding_the_output_does_not_hold_the_exit_code(tmp_path):
    began = time.monotonic()
    wrapper = run_wrapper(tmp_path, "echo first; (sleep 30 &); echo second")
    try:
        assert wrapper.wait(timeout=15) == 0
        assert time.monotonic() - began < 5  # a moment for the drain, not the child's 30 s
        assert (tmp_path / "exit_code").read_text() == "0\n"
        assert (tmp_path / "output.log").read_text() == "first\nsecond\n"
    finally:
        try:
            os.killpg(wrapper.pid, signal.SIGKILL)  # the child left running
        except ProcessLookupError:
            pass
