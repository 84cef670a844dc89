# Shared by deploy/*/start.sh and stop.sh: start test servers in the background with their output in
# a log file, record each as "name pid start-time" in a pid file, and stop exactly those processes.
# The start time (field 22 of /proc/PID/stat, clock ticks since boot) tells our process apart from
# a later one that reused its PID, so stop never signals a stranger. Linux only; source, don't run.

# Prints the start time of a live (not zombie) process, or nothing when it is gone.
process_start_time() {
  local pid="$1" stat
  stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 0
  # The command name (field 2) may hold spaces; the fields after its closing parenthesis do not.
  # shellcheck disable=SC2086
  set -- ${stat##*) }
  # $1 is field 3 (the state), so field 22 is ${20}.
  if [[ "$1" != "Z" && "$1" != "X" ]]; then
    echo "${20}"
  fi
}

# Fails when the pid file lists a process that still runs (a second start would fight it for ports).
refuse_if_running() {
  local pid_file="$1" who="$2" name pid start_time
  [[ -f "$pid_file" ]] || return 0
  while read -r name pid start_time; do
    if [[ -n "$pid" && "$(process_start_time "$pid")" == "$start_time" ]]; then
      echo "$who: $name (pid $pid) from $pid_file still runs; stop it first" >&2
      exit 1
    fi
  done < "$pid_file"
}

# Prints COUNT TCP ports that were free on 127.0.0.1 a moment ago, space-separated, all different.
free_loopback_ports() {
  python3 - "$1" <<'PYTHON'
import socket, sys
sockets = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    sockets.append(s)
print(" ".join(str(s.getsockname()[1]) for s in sockets))
for s in sockets:
    s.close()
PYTHON
}

# start_process PID_FILE NAME LOG_FILE COMMAND [ARGS...]: runs the command in the background with
# stdin from /dev/null and stdout and stderr to LOG_FILE (so no caller's pipe is held open), and
# appends "NAME PID START-TIME" to PID_FILE.
start_process() {
  local pid_file="$1" name="$2" log_file="$3"
  shift 3
  nohup "$@" </dev/null >>"$log_file" 2>&1 &
  local pid=$!
  local start_time
  start_time="$(process_start_time "$pid")"
  if [[ -z "$start_time" ]]; then
    echo "$name exited at once; see $log_file" >&2
    tail -n 20 "$log_file" >&2 || true
    return 1
  fi
  echo "$name $pid $start_time" >> "$pid_file"
}

# Prints "name=pid,..." for the processes in the pid file.
pid_list() {
  local pid_file="$1" name pid start_time list=""
  while read -r name pid start_time; do
    list+="${list:+,}$name=$pid"
  done < "$pid_file"
  echo "$list"
}

# stop_processes PID_FILE GRACE_SECONDS: SIGTERM to every listed process that is still the one we
# started, SIGKILL to those still there after the grace period, then removes the pid file.
stop_processes() {
  local pid_file="$1" grace_seconds="$2" name pid start_time
  [[ -f "$pid_file" ]] || { echo "no pid file $pid_file: nothing to stop"; return 0; }
  local -a names=() pids=() start_times=()
  while read -r name pid start_time; do
    [[ -n "$pid" ]] || continue
    names+=("$name"); pids+=("$pid"); start_times+=("$start_time")
  done < "$pid_file"

  local index
  for index in "${!pids[@]}"; do
    if [[ "$(process_start_time "${pids[$index]}")" == "${start_times[$index]}" ]]; then
      kill -TERM "${pids[$index]}" 2>/dev/null || true
    fi
  done
  local deadline=$((SECONDS + grace_seconds)) running
  while :; do
    running=()
    for index in "${!pids[@]}"; do
      if [[ "$(process_start_time "${pids[$index]}")" == "${start_times[$index]}" ]]; then
        running+=("$index")
      fi
    done
    [[ ${#running[@]} -gt 0 && $SECONDS -lt $deadline ]] || break
    sleep 0.2
  done
  for index in "${running[@]}"; do
    echo "${names[$index]} (pid ${pids[$index]}) ignored SIGTERM for ${grace_seconds} s: SIGKILL" >&2
    kill -KILL "${pids[$index]}" 2>/dev/null || true
  done
  echo "stopped $(pid_list "$pid_file")"
  rm -f "$pid_file"
}
