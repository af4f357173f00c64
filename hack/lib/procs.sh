# shellcheck shell=bash
# Processes a script started, recorded as $PID_DIR/<name>.pid. Sourced by local-cluster.sh and
# local-node.sh; the sourcing script sets PID_DIR and LOG_DIR and defines log.

pid_file() { echo "$PID_DIR/$1.pid"; }

# launch NAME CMD...: starts CMD in its own session with every fd redirected (and the lock fds
# 8 and 9 closed, or it would hold the locks), so it outlives the script and a caller waiting
# on our stdout (execFile) is not held open by it.
launch() {
  local name=$1 pid i
  shift
  mkdir -p "$LOG_DIR"
  setsid "$@" </dev/null >>"$LOG_DIR/$name.log" 2>&1 8>&- 9>&- &
  pid=$!
  echo "$pid" >"$(pid_file "$name")"
  # Until the child has exec'd CMD its command line is this script's, and recorded_pid would
  # take it for gone: a caller checking at once (a loaded machine makes the window long) would
  # say it exited during startup. Wait for the exec, or the exit.
  for ((i = 0; i < 100; i++)); do
    [[ -r "/proc/$pid/cmdline" ]] || return 0
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$PID_DIR/" && return 0
    sleep 0.05
  done
}

# A recorded pid counts only while it is alive AND its command line names $PID_DIR,
# so a pid reused by an unrelated process after a crash is never signalled.
recorded_pid() {
  local file pid
  file=$(pid_file "$1")
  [[ -f "$file" ]] || return 1
  pid=$(<"$file")
  [[ "$pid" =~ ^[0-9]+$ && -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$PID_DIR/" || return 1
  echo "$pid"
}

# stop_recorded NAME GRACE_TENTHS [group]: SIGTERM, then SIGKILL after the grace (tenths of a
# second). With `group`, the signals go to the process group launch gave it, so children it
# forked (a relay's connections) go with it.
stop_recorded() {
  local pid i target
  pid=$(recorded_pid "$1") || { rm -f "$(pid_file "$1")"; return 0; }
  target=$pid
  [[ "${3:-}" == group ]] && target=-$pid
  kill -TERM -- "$target" 2>/dev/null || true
  for ((i = 0; i < $2; i++)); do
    [[ -d "/proc/$pid" ]] || break
    sleep 0.1
  done
  if [[ -d "/proc/$pid" ]]; then
    log "$1 (pid $pid) not gone $(($2 / 10)).$(($2 % 10)) s after SIGTERM; sending SIGKILL"
    kill -KILL -- "$target" 2>/dev/null || true
  fi
  # A group's other members may outlive its leader by a moment.
  [[ "$target" == "$pid" ]] || kill -KILL -- "$target" 2>/dev/null || true
  rm -f "$(pid_file "$1")"
}
