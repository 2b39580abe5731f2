"""Job runners of attached computes: the same three job calls as a driver (start, cancel,
look), so the job steps of controllers/jobs.py run unchanged on them.

- The local computer runs a job as a supervised host process, as the local driver does
  (compute/drivers/hostproc.py: the job user, a clean environment, its own folder).
- A remote VM or HDInsight head node runs it detached on the far side over SSH, writing its
  output and exit code there; each look copies the new output and the exit code into the
  local run folder, so the job pages read them as they read any job's.

A runner may be given `on_finish`: it then watches a started job and calls it the moment
the job ends, so a finished job is collected at once rather than at the next sweep (over
SSH the start command itself stays open and brings back the exit code and the output).
The watch is only for speed: a worker that dies loses nothing, the sweep collects anyway.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import threading
import time
from collections.abc import Callable

from django.conf import settings

from compute.drivers import hostproc, processes
from compute.drivers.base import JobLaunch, NodeStartError
from compute.lib import jobfiles, ssh
from compute.lib.jobfiles import RunState
from compute.lib.output_collection import Sink

SAFE_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Over SSH, on the user's own machine: the job in its own process group, output to
# output.log, the exit code written atomically. "$1" is the run folder over there.
REMOTE_WRAPPER = r"""
run="$1"
cd "${HANGAR_WORKDIR:-$run}" || cd "$run"
setsid sh -c "$HANGAR_COMMAND" > "$run/output.log" 2>&1 < /dev/null &
echo $! > "$run/pid"
wait $!
echo $? > "$run/exit_code.tmp" && mv "$run/exit_code.tmp" "$run/exit_code"
"""

# TERM to the job's process group, KILL a second later for whatever ignored it.
REMOTE_CANCEL = r"""
p=$(cat "$1/pid" 2>/dev/null) || exit 0
case "$p" in ""|*[!0-9]*|0|1) exit 0 ;; esac
kill -TERM -"$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null
( sleep 1; kill -KILL -"$p" 2>/dev/null ) > /dev/null 2>&1 &
"""
WATCH_SECONDS = 6 * 3600
DRAIN_SECONDS = 1.0  # host_supervisor.DRAIN_AFTER_EXIT: the exit code follows within it
_watching: set[tuple[str, str]] = set()
_watching_lock = threading.Lock()


def _watch_once(key: tuple[str, str], wait: Callable[[], None], then: Callable[[], None]) -> None:
    """Run `wait` in a daemon thread (one per run and process), then `then`."""
    with _watching_lock:
        if key in _watching:
            return
        _watching.add(key)

    def body() -> None:
        try:
            wait()
        except Exception:  # unreachable now: the sweep collects it later
            return
        finally:
            with _watching_lock:
                _watching.discard(key)
        then()

    threading.Thread(target=body, name=f"hangar-watch-{key[1]}", daemon=True).start()


class LocalRunner:
    """The local computer: the machine the worker runs on, where the operator allowed
    host processes (HANGAR_ALLOW_HOST_PROCESSES)."""

    def __init__(self, on_finish: Callable[[], None] | None = None) -> None:
        self.on_finish = on_finish

    def start_job(self, launch: JobLaunch) -> None:
        hostproc.start_run(launch)
        if self.on_finish is not None:

            def ended_within(seconds: float) -> bool:
                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline:
                    if jobfiles.read_run(launch.run_key).exit_code is not None:
                        return True
                    time.sleep(0.02)
                return False

            def wait() -> None:
                # The supervisor writes the identity a moment after the launch, and the
                # exit code a moment after the process ends: only those moments are polled.
                deadline = time.monotonic() + hostproc.START_TIMEOUT
                while (identity := hostproc.run_identity(launch.run_key)) is None:
                    if ended_within(0.02) or time.monotonic() > deadline:
                        break
                if identity is not None:
                    processes.wait_for_exit(identity, WATCH_SECONDS)
                ended_within(processes.KILL_AFTER + 2 * DRAIN_SECONDS)

            _watch_once(("local", launch.run_key), wait, self.on_finish)

    def cancel_job(self, container: str, run_key: str) -> None:
        hostproc.cancel_run(run_key)

    def job_state(self, run_key: str, container: str = "") -> RunState:
        return jobfiles.read_run(run_key)

    def release_run(self, container: str, run_key: str) -> None:
        hostproc.release_run(run_key)

    def collect_outputs(
        self, container: str, run_key: str, code_job_id: int | None, sink: Sink
    ) -> None:
        hostproc.collect_outputs(run_key, code_job_id, sink)

    def probe(self) -> None:
        """Answers whenever the worker asking runs, unless host processes are disabled."""
        if not settings.HANGAR_ALLOW_HOST_PROCESSES:
            raise ssh.SSHError(DISABLED)

    def tidy(self, active_job_ids: set[int]) -> None:
        """Working folders of jobs no longer active go (a missed release, a crash)."""
        hostproc.tidy_runs(active_job_ids)


class SSHRunner:
    """A remote VM or an HDInsight head node. Runs live in ~/.hangar/<site>/ over there."""

    def __init__(
        self, endpoint: ssh.Endpoint, site: str, on_finish: Callable[[], None] | None = None
    ) -> None:
        self.endpoint = endpoint
        self.root = f"$HOME/.hangar/{site}"  # HANGAR_SITE is [a-z0-9-]: safe as it is
        self.on_finish = on_finish

    def _run_dir(self, run_key: str) -> str:
        return f'"{self.root}/runs/"{shlex.quote(run_key)}'

    def start_job(self, launch: JobLaunch) -> None:
        """One command starts the job detached over there and, when watched, stays open
        until it ends and then brings back its exit code and output: one round of the
        remote shell per job, and the finish is known at once."""
        jobfiles.prepare_run_dir(launch.run_key)  # the local mirror of the remote run
        environment = {
            key: value for key, value in launch.environment.items() if SAFE_ENV_KEY.match(key)
        }
        # The variables (secret ones among them) travel on the command's stdin, never in
        # its text: the text is the argument of a shell over there, which any user of that
        # machine can read in `ps`; a process's environment only its own user can.
        exports = "".join(
            f"export {key}={shlex.quote(value)}\n" for key, value in environment.items()
        )
        lines = ['eval "$(cat)"', f"run={self._run_dir(launch.run_key)}"]
        if launch.code_job_id is not None:
            code = self._upload_code(launch.code_job_id)
            lines.append(f"export HANGAR_WORKDIR={code}")
        lines += [
            # `mkdir` of the run folder is the gate: an attempt starts at most once, and a
            # relaunch after a crash finds the folder and leaves the run already there.
            'mkdir -p "${run%/*}" || exit 1',
            'if mkdir "$run" 2>/dev/null; then',
            f'  ( cd "$run" && exec setsid sh -c {shlex.quote(REMOTE_WRAPPER)} hangar "$run" ) '
            "< /dev/null > /dev/null 2>&1 &",
            "  wrapper=$!",  # setsid execs in place (not a group leader): our own child
            "fi",
            'cd "$run" || exit 1',
            "echo started",
        ]
        watched = self.on_finish is not None and _take_watch_slot(self.endpoint)
        if watched:
            lines += [
                # Wait on the wrapper itself: nothing polls over there while the job runs.
                # (A relaunch that found the run started elsewhere has no child to wait
                # on: it looks once a second.)
                '[ -n "${wrapper:-}" ] && wait "$wrapper"',
                f"i=0; while [ ! -e exit_code ] && [ $i -lt {WATCH_SECONDS} ]; "
                "do sleep 1; i=$((i+1)); done",
                '[ -e exit_code ] && echo "exit=$(cat exit_code)" && cat output.log',
            ]
        handed_over = False  # to the thread that finishes the command and frees the slot
        try:
            channel = ssh.open_command(self.endpoint, "\n".join(lines))
            ssh.send_input(channel, self.endpoint, exports.encode())
            if ssh.read_line(channel) != b"started":
                result = ssh.finish(channel, self.endpoint)
                why = result.stderr.decode(errors="replace").strip() or f"exit {result.exit_code}"
                raise NodeStartError(f"Could not start the job on {self.endpoint.where}: {why}")
            jobfiles.mark_started(launch.run_key)
            if watched:
                threading.Thread(
                    target=self._collect_when_done,
                    args=(channel, launch.run_key),
                    name=f"hangar-watch-{launch.run_key}",
                    daemon=True,
                ).start()
                handed_over = True
            else:
                ssh.finish(channel, self.endpoint)
        finally:
            if watched and not handed_over:
                _release_watch_slot(self.endpoint)

    def _collect_when_done(self, channel, run_key: str) -> None:
        """The rest of the start command: the exit code and the whole output, mirrored
        here. If the connection breaks first, the sweep's look collects it instead."""
        try:
            channel.settimeout(WATCH_SECONDS + 60)
            result = ssh.finish(channel, self.endpoint)
        except ssh.SSHError:
            return
        finally:
            _release_watch_slot(self.endpoint)
        head, _, output = result.stdout.partition(b"\n")
        code = head.removeprefix(b"exit=").strip()
        if not head.startswith(b"exit=") or not code.lstrip(b"-").isdigit():
            return
        if jobfiles.read_run(run_key).exit_code is None:
            jobfiles.mark_started(run_key)
            jobfiles.write_output(run_key, 0, output)  # the whole output, at its place
            jobfiles.write_exit_code(run_key, int(code))
        if self.on_finish is not None:  # always: only a watched start hands over to here
            self.on_finish()

    def _upload_code(self, job_id: int) -> str:
        """The job's code snapshot, copied once (a relaunch finds it); returns its folder
        over there as a shell word."""
        code = f'"{self.root}/code/{job_id}"'
        if ssh.run(self.endpoint, f"test -d {code}").exit_code != 0:
            partial = f'"{self.root}/code/{job_id}.part"'
            ssh.run(self.endpoint, f"rm -rf {partial}")
            ssh.upload_tree(self.endpoint, jobfiles.code_dir(job_id), partial)
            ssh.run(self.endpoint, f"mv {partial} {code}")
        return code

    def cancel_job(self, container: str, run_key: str) -> None:
        ssh.run(
            self.endpoint,
            f"sh -c {shlex.quote(REMOTE_CANCEL)} hangar {self._run_dir(run_key)} "
            "< /dev/null > /dev/null 2>&1",
        )

    def probe(self) -> None:
        """Raises SSHError, saying why, if the target does not answer."""
        ssh.run(self.endpoint, "true", timeout=ssh.CONNECT_TIMEOUT)

    def tidy(self, active_job_ids: set[int]) -> None:
        """Remove every job folder over there whose job is no longer active: its output and
        exit code are here now, and a machine Hangar does not own must not fill up with
        its leftovers. Level-triggered, so a crash in between leaves nothing behind for
        long. `active_job_ids` covers every target that may share this account and site;
        folders younger than a minute stay, in case a job started since that list was read.
        """
        keep = " ".join(str(job_id) for job_id in sorted(active_job_ids))
        ssh.run(
            self.endpoint,
            f'for top in runs code; do cd "{self.root}/$top" 2>/dev/null || continue\n'
            "  find . -mindepth 1 -maxdepth 1 -mmin +1 | while read -r d; do d=${d#./}\n"
            f'    case " {keep} " in *" ${{d%.part}} "*) ;; *) rm -rf "$d" ;; esac\n'
            "  done\n"
            "done",
        )

    def job_state(self, run_key: str, container: str = "") -> RunState:
        """Look over there, and bring the new output and the exit code here. A watching
        thread or another worker may copy too: output lands at its absolute place in the
        record, so a repeated copy is never doubled, and the first exit code stays."""
        state = jobfiles.read_run(run_key)
        if state.exit_code is not None:  # already brought here: final
            return state
        return self._look(run_key)

    def release_run(self, container: str, run_key: str) -> None:
        """Folders over there are tidied at each health check (`tidy`)."""

    def collect_outputs(
        self, container: str, run_key: str, code_job_id: int | None, sink: Sink
    ) -> None:
        """Not collected over SSH yet: a remote machine's job keeps its ./outputs there."""

    def _look(self, run_key: str) -> RunState:
        offset = jobfiles.output_offset(run_key)
        if offset is None:  # cut at the limit: only the exit code is still wanted
            offset = 1 << 62
        # The exit code is read before the output: once it exists, the output is whole.
        result = ssh.run(
            self.endpoint,
            f"cd {self._run_dir(run_key)} 2>/dev/null || {{ echo gone; exit 0; }}\n"
            "if [ -e pid ]; then echo started; else echo waiting; fi\n"
            "cat exit_code 2>/dev/null || echo none\n"
            f"tail -c +{offset + 1} output.log 2>/dev/null",
        )
        head, _, rest = result.stdout.partition(b"\n")
        if head == b"gone":
            return self._vanished(run_key)
        code_line, _, new_output = rest.partition(b"\n")
        if new_output:
            jobfiles.write_output(run_key, offset, new_output)
        if head == b"started":
            jobfiles.mark_started(run_key)
        code = code_line.strip()
        if code.lstrip(b"-").isdigit():
            jobfiles.write_exit_code(run_key, int(code))
        return jobfiles.read_run(run_key)

    @staticmethod
    def _vanished(run_key: str) -> RunState:
        if not jobfiles.read_run(run_key).started:
            return RunState(started=False, exit_code=None)  # never started: relaunched
        if jobfiles.write_exit_code(run_key, 255):
            jobfiles.append_note(run_key, "the run's folder vanished on the target; marked failed.")
        return jobfiles.read_run(run_key)


# Start commands kept open to watch jobs, per target: a server allows ~10 sessions per
# connection (OpenSSH's MaxSessions), so past a few the sweep's looks collect instead.
MAX_WATCHED_PER_TARGET = 6
_watched: dict[str, int] = {}


def _take_watch_slot(endpoint: ssh.Endpoint) -> bool:
    with _watching_lock:
        held = _watched.get(endpoint.cache_key, 0)
        if held >= MAX_WATCHED_PER_TARGET:
            return False
        _watched[endpoint.cache_key] = held + 1
        return True


def _release_watch_slot(endpoint: ssh.Endpoint) -> None:
    with _watching_lock:
        _watched[endpoint.cache_key] = max(0, _watched.get(endpoint.cache_key, 1) - 1)


DISABLED = (
    "host processes are disabled on this site (HANGAR_ALLOW_HOST_PROCESSES=false): "
    "the local computer cannot run jobs"
)


def local_facts() -> dict:
    """The local computer's facts, by the same script as over SSH."""
    if not settings.HANGAR_ALLOW_HOST_PROCESSES:
        raise ssh.SSHError(DISABLED)
    done = subprocess.run(
        ["sh", "-c", ssh.FACTS_SCRIPT], capture_output=True, text=True, timeout=30, check=False
    )
    return ssh.parse_facts(done.stdout)
