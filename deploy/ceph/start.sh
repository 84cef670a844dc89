#!/usr/bin/env bash
# Starts a throwaway single-node Ceph cluster with an S3 gateway on 127.0.0.1 for tests: one
# monitor, one OSD on memstore (data in RAM, capped at CEPH_MEMSTORE_BYTES), pools of size 1, no
# cephx, and radosgw (beast frontend) on PORT with one S3 user whose keys are fixed.
#
#   deploy/ceph/start.sh DIR PORT
#
# Everything (ceph.conf, monitor store, logs, admin sockets) lives under DIR; the daemons run in the
# foreground of their own (-f), backgrounded here, as the current user. DIR/pids lists them as
# "name pid start-time" so deploy/ceph/stop.sh DIR stops exactly these processes and nothing else.
# No manager daemon: RGW and the pools it creates need only the monitor and the OSD.
#   S3: endpoint http://127.0.0.1:PORT, access key "ovs-test-access", secret "ovs-test-secret",
#       region us-east-1 (RGW accepts any region name for SigV4 by default), path-style addressing.
# On success the last lines of stdout are KEY=VALUE pairs (see the end of this file) for callers.
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 DIR PORT" >&2
  exit 2
fi
directory="$(mkdir -p "$1" && cd "$1" && pwd)"
rgw_port="$2"
script_directory="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=../lib/processes.sh
source "$script_directory/../lib/processes.sh"

readonly S3_ACCESS_KEY="ovs-test-access"
readonly S3_SECRET_KEY="ovs-test-secret"
readonly READY_TIMEOUT_SECONDS="${CEPH_READY_TIMEOUT_SECONDS:-120}"
readonly MEMSTORE_BYTES="${CEPH_MEMSTORE_BYTES:-1073741824}"

for command in ceph-mon ceph-osd radosgw radosgw-admin ceph monmaptool ceph-authtool python3; do
  if ! command -v "$command" >/dev/null 2>&1; then
    echo "ceph/start.sh: $command is not installed (apt-get install ceph-mon ceph-osd radosgw ceph-common, or deploy/install-test-deps.sh with CI=true)" >&2
    exit 1
  fi
done

pid_file="$directory/pids"
refuse_if_running "$pid_file" "ceph/start.sh"
: > "$pid_file"

conf="$directory/ceph.conf"
logs="$directory/log"
mkdir -p "$logs" "$directory/run" "$directory/crash" "$directory/mon/a" "$directory/osd/0" "$directory/rgw"
read -r mon_port < <(free_loopback_ports 1)
fsid="$(python3 -c 'import uuid; print(uuid.uuid4())')"
osd_uuid="$(python3 -c 'import uuid; print(uuid.uuid4())')"

# auth ... = none: no cephx, so the daemons and tools need no keys (the monitor still wants a
# keyring at mkfs). Without cephx there is no session key, so connections must use crc mode, not
# secure (which radosgw, as a daemon, asks of monitors by default: "get_initial_auth_request
# returned -13"). One OSD: pools of size 1, CRUSH picks OSDs, not hosts (chooseleaf type 0, read
# at the monitor's mkfs), few PGs per pool so RGW's pools fit under mon_max_pg_per_osd, and no PG
# autoscaler (that lives in the manager, which we do not run).
cat > "$conf" <<EOF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$mon_port]
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc
ms client mode = crc
keyring = $directory/keyring
run dir = $directory/run
admin socket = $directory/run/\$name.asok
pid file = $directory/run/\$name.pid
crash dir = $directory/crash
log file = $logs/\$name.log
log to stderr = false
err to stderr = true
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
mon osd full ratio = .99
mon osd backfillfull ratio = .99
mon osd nearfull ratio = .99

[mon]
mon data = $directory/mon/\$id

[osd]
osd data = $directory/osd/\$id
osd objectstore = memstore
memstore device bytes = $MEMSTORE_BYTES
osd crush update on start = true

[client.rgw.a]
rgw data = $directory/rgw
rgw frontends = beast endpoint=127.0.0.1:$rgw_port
rgw dns name = 127.0.0.1
EOF

fail() {
  echo "ceph/start.sh: $1; logs in $logs; stopping what started" >&2
  tail -n 30 "$logs"/*.log >&2 2>/dev/null || true
  "$script_directory/stop.sh" "$directory" >&2 || true
  exit 1
}

# Runs a ceph CLI command against this cluster with a deadline (the CLI otherwise waits forever
# for a monitor that is not there).
ceph_cli() {
  timeout 30 ceph -c "$conf" --connect-timeout 20 "$@"
}

ceph-authtool --create-keyring "$directory/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port]" "$directory/monmap" >/dev/null
ceph-mon -c "$conf" -i a --mkfs --monmap "$directory/monmap" --keyring "$directory/keyring" \
  >"$logs/mkfs-mon.log" 2>&1 || fail "ceph-mon --mkfs failed"
start_process "$pid_file" ceph-mon "$logs/mon.a.stdout.log" ceph-mon -c "$conf" -i a -f || fail "ceph-mon did not start"

osd_id="$(ceph_cli osd new "$osd_uuid" 2>>"$logs/cli.log")" || fail "ceph osd new failed (monitor not answering?)"
ceph-osd -c "$conf" -i "$osd_id" --mkfs --osd-uuid "$osd_uuid" >"$logs/mkfs-osd.log" 2>&1 || fail "ceph-osd --mkfs failed"
start_process "$pid_file" ceph-osd "$logs/osd.$osd_id.stdout.log" ceph-osd -c "$conf" -i "$osd_id" -f || fail "ceph-osd did not start"

deadline=$((SECONDS + READY_TIMEOUT_SECONDS))
until [[ "$(ceph_cli osd stat -f json 2>>"$logs/cli.log" | python3 -c 'import json, sys; print(json.load(sys.stdin)["num_up_osds"])' 2>/dev/null)" == "1" ]]; do
  [[ $SECONDS -lt $deadline ]] || fail "the OSD was not up after $READY_TIMEOUT_SECONDS s"
  sleep 0.5
done

start_process "$pid_file" radosgw "$logs/rgw.a.stdout.log" radosgw -c "$conf" -n client.rgw.a -f || fail "radosgw did not start"

# Ready when the gateway answers an anonymous request (it creates its pools before it listens).
python3 - "$rgw_port" "$((deadline - SECONDS))" <<'EOF' || fail "radosgw did not answer on port $rgw_port"
import sys, time, urllib.error, urllib.request
port, timeout = sys.argv[1], max(1.0, float(sys.argv[2]))
deadline = time.monotonic() + timeout
last_error = "nothing tried"
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5):
            sys.exit(0)
    except urllib.error.HTTPError:
        sys.exit(0)  # any HTTP answer means the gateway listens
    except OSError as error:
        last_error = str(error)
    time.sleep(0.2)
print(f"not ready after {timeout} s: {last_error}", file=sys.stderr)
sys.exit(1)
EOF

timeout 60 radosgw-admin -c "$conf" user create --uid=ovs-test --display-name="ovs test user" \
  --access-key="$S3_ACCESS_KEY" --secret-key="$S3_SECRET_KEY" >"$logs/user-create.log" 2>&1 \
  || fail "radosgw-admin user create failed"

echo "CEPH_PIDS=$(pid_list "$pid_file")"
echo "CEPH_PID_FILE=$pid_file"
echo "CEPH_CONF=$conf"
echo "S3_ENDPOINT=http://127.0.0.1:$rgw_port"
echo "S3_REGION=us-east-1"
echo "S3_ACCESS_KEY=$S3_ACCESS_KEY"
echo "S3_SECRET_KEY=$S3_SECRET_KEY"
