"""The shell a Docker node runs for Hangar: start a run, follow it, look at it, cancel it,
clear it. Each script takes its inputs as arguments (never interpolated into the text) and
runs inside the node, as the job's user, so nothing it does reaches past the container.

A node's work folder (/work, a volume of the node's own) holds each run at
/work/run-<job>-a<n>-r<rank>-<token>/ and each job's code at /work/code/<job>/. The job's user owns
them, so the job could rewrite them: nothing here is trusted beyond the node itself, and
Hangar's own record of the run (compute/lib/jobfiles.py) lives on Hangar's side.

- `mkdir` of the run folder is the gate that starts an attempt at most once: a relaunch
  after a crash finds the folder and follows the run that is already there.
- `.wrapper` holds the pid of the run's wrapper, written by the launcher. The job could
  rewrite it, so it is only ever *read* to ask "is the wrapper still there" (its
  /proc/<pid>/cmdline holds `hangar-run:<run folder>`), never used to signal anything:
  a forged value can only make the job's own run look alive or ended.
- The job's output goes to a file in the node through `cat`, which writes as it reads (so
  output is live) under a file-size limit just past Hangar's (so Hangar can tell it was
  cut, and a flood never fills the disk); past it the rest is read and thrown away, so the
  job never blocks or dies of it. The follower copies the file to the exec's stdout;
  control lines go to stderr.
"""

from __future__ import annotations

NODE_WORK = "/work"
NODE_RUNS = "/work"  # each run's folder sits right in /work: one mkdir makes it
NODE_CODE = "/work/code"
NODE_USER = "1000:1000"  # the node's own process (and its setup script)
JOB_USER = "1001:1001"  # every job process: one user, so `kill -1` as it reaches them all

# The run itself: $1 run folder, $2 output limit in 512-byte blocks. The job writes into a
# FIFO that `cat` drains into output.log under the size limit (past it, the rest is read
# and thrown away: the job never blocks or dies of it). The exit code is the job's own
# process's: a child it left running may hold the FIFO open, so then the drain is waited
# for only a moment. With no writer left the drain has reached the end of the output and
# is waited for until it has written it all, however slow a loaded machine makes it (the
# exit code is what says "the output is whole": written first, the last lines were lost).
WRAPPER = r"""
run="$1"
mkfifo "$run/.out" || exit 1
{ ( trap "" XFSZ; ulimit -f "$2"; exec cat > "$run/output.log" ); exec cat > /dev/null; } \
  < "$run/.out" &
drain=$!
sh -c "$HANGAR_COMMAND" > "$run/.out" 2>&1 < /dev/null &
wait $!
code=$?
# Does any process still hold the FIFO open for writing (fdinfo flags, octal: O_WRONLY 1,
# O_RDWR 2)? Only the drain holds it for reading.
writer_left() {
  for fd in /proc/[0-9]*/fd/*; do
    [ "$(readlink "$fd" 2>/dev/null)" = "$run/.out" ] || continue
    flags=$(sed -n 's/^flags:[[:space:]]*//p' "${fd%/fd/*}/fdinfo/${fd##*/}" 2>/dev/null)
    [ -n "$flags" ] && [ $((0$flags & 3)) -ne 0 ] && return 0
  done
  return 1
}
i=0
while kill -0 "$drain" 2>/dev/null && [ $i -lt 1200 ]; do
  if [ $i -ge 20 ] && writer_left; then break; fi
  sleep 0.05; i=$((i + 1))
done
echo "$code" > "$run/exit_code.tmp" && mv "$run/exit_code.tmp" "$run/exit_code"
"""

# $1 run folder, $2 output offset already copied, $3 output limit in bytes, $4 WRAPPER.
# stderr: "launched" or "found", then "exit=N" when the run ended; "tick" twice a second.
START_AND_FOLLOW = r"""
run="$1"; off="$2"; limit="$3"
trap '' PIPE
if mkdir "$run" 2>/dev/null; then
  : > "$run/output.log"
  (
    cd "${HANGAR_WORKDIR:-$run}" 2>/dev/null || cd "$run"
    exec setsid sh -c "$4" "hangar-run:$run" "$run" "$(( (limit + 512) / 512 ))"
  ) < /dev/null > /dev/null 2>&1 &
  echo $! > "$run/.wrapper"
  : > "$run/started"
  echo launched >&2
elif [ -d "$run" ]; then
  echo found >&2
else
  echo "cannot make $run" >&2
  exit 1
fi
# The wrapper is gone without an exit code (killed): checked twice a second, not each turn.
gone() {
  [ -e "$run/started" ] || return 1
  p=$(cat "$run/.wrapper" 2>/dev/null)
  ! tr '\0' '\n' < "/proc/${p:-0}/cmdline" 2>/dev/null | grep -qxF "hangar-run:$run"
}
copy() {
  size=$(stat -c %s "$run/output.log" 2>/dev/null || echo 0)
  if [ "$size" -gt "$off" ] 2>/dev/null; then
    tail -c +$((off + 1)) "$run/output.log" | head -c $((size - off))
    off=$size
  fi
}
# Every 20 ms until the first output or for half a second (a job's first line shows at
# once), then every 100 ms: each look costs a process or two of the node's own CPU quota,
# which the job needs more. "tick" and the liveness check twice a second.
i=0; nap=0.02
until [ -e "$run/exit_code" ]; do
  copy
  i=$((i + 1))
  if [ "$nap" != 0.1 ] && { [ "$off" -gt 0 ] || [ $i -ge 25 ]; }; then nap=0.1; i=0; fi
  if [ "$nap" = 0.1 ] && [ $((i % 5)) -eq 0 ]; then
    echo tick >&2
    gone && break
  fi
  sleep $nap
done
copy
code=$(cat "$run/exit_code" 2>/dev/null)
echo "exit=${code:-none}" >&2
"""

# $1 run folder, $2 output offset already copied (or "cut"). stdout: "waiting" (never
# started), "alive", "dead" (started, all its processes gone, no exit code) or "exit=N";
# then the output past the offset.
LOOK = r"""
run="$1"; off="$2"
if [ ! -e "$run/started" ]; then echo waiting; exit 0; fi
code=$(cat "$run/exit_code" 2>/dev/null)
p=$(cat "$run/.wrapper" 2>/dev/null)
if [ -n "$code" ]; then echo "exit=$code"
elif tr '\0' '\n' < "/proc/${p:-0}/cmdline" 2>/dev/null | grep -qxF "hangar-run:$run"
then echo alive
else echo dead; fi
[ "$off" = cut ] || tail -c +$((off + 1)) "$run/output.log" 2>/dev/null
"""

# $1 run folder. TERM to every job process of the node, KILL a second later. Run as the
# job user, `kill -1` reaches exactly the job's processes: never pid 1, never the node's
# own process (another user), never anything outside the container; no pid is read.
CANCEL = r"""
kill -TERM -1 2>/dev/null
sleep 1
kill -KILL -1 2>/dev/null
[ -e "$1/exit_code" ] || echo 143 > "$1/exit_code"
"""

# After a run was collected: nothing of it survives (a canceller still sleeping included),
# and its files go, so the next job on this node sees nothing of it.
CLEAR = r"""
kill -KILL -1 2>/dev/null
chmod -R u+w /work/code 2>/dev/null
rm -rf /work/* /work/.[!.]* /tmp/* /tmp/.[!.]* 2>/dev/null
exit 0
"""
