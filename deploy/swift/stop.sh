#!/usr/bin/env bash
# Stops the Swift all-in-one that deploy/swift/start.sh DIR started: exactly the processes listed in
# DIR/pids (checked by PID and start time), SIGTERM first, SIGKILL after 10 s. Leaves DIR in place.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 DIR" >&2
  exit 2
fi
script_directory="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=../lib/processes.sh
source "$script_directory/../lib/processes.sh"

stop_processes "$1/pids" 10
