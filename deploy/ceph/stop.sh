#!/usr/bin/env bash
# Stops the Ceph cluster that deploy/ceph/start.sh DIR started: exactly the processes listed in
# DIR/pids (checked by PID and start time), SIGTERM first, SIGKILL after 15 s. Leaves DIR in place
# (the OSD is memstore, so its data is gone with the process).
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 DIR" >&2
  exit 2
fi
script_directory="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=../lib/processes.sh
source "$script_directory/../lib/processes.sh"

stop_processes "$1/pids" 15
