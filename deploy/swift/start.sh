#!/usr/bin/env bash
# Starts a throwaway OpenStack Swift all-in-one on 127.0.0.1 for tests: memcached, one account,
# container and object server (one replica and device under DIR unless SWIFT_OBJECT_REPLICAS says
# more for objects, mount_check off) and one proxy on PORT serving both the native API (tempauth,
# /auth/v1.0) and the S3 API (s3api, path-style).
#
#   deploy/swift/start.sh DIR PORT
#
# Everything (configs, rings, data, logs) lives under DIR; the processes run in the foreground of
# their own (workers = 0), backgrounded here, as the current user. DIR/pids lists them as
# "name pid start-time" so deploy/swift/stop.sh DIR stops exactly these processes and nothing else.
# Credentials (tempauth; s3api checks S3 signatures against the same users):
#   native: GET http://127.0.0.1:PORT/auth/v1.0 with X-Auth-User: test:tester, X-Auth-Key: testing
#   S3:     access key "test:tester", secret key "testing", region us-east-1, path-style addressing
# On success the last lines of stdout are KEY=VALUE pairs (see the end of this file) for callers.
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 DIR PORT" >&2
  exit 2
fi
directory="$(mkdir -p "$1" && cd "$1" && pwd)"
proxy_port="$2"
script_directory="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=../lib/processes.sh
source "$script_directory/../lib/processes.sh"

readonly SWIFT_USER="test:tester"
readonly SWIFT_KEY="testing"
readonly READY_TIMEOUT_SECONDS="${SWIFT_READY_TIMEOUT_SECONDS:-60}"

for command in memcached swift-ring-builder swift-proxy-server swift-account-server swift-container-server swift-object-server python3; do
  if ! command -v "$command" >/dev/null 2>&1; then
    echo "swift/start.sh: $command is not installed (apt-get install memcached swift swift-proxy swift-account swift-container swift-object, or deploy/install-test-deps.sh with CI=true)" >&2
    exit 1
  fi
done

pid_file="$directory/pids"
refuse_if_running "$pid_file" "swift/start.sh"
: > "$pid_file"

configuration="$directory/etc"
devices="$directory/srv/node"
logs="$directory/log"
readonly object_replicas="${SWIFT_OBJECT_REPLICAS:-1}"
if ! [[ "$object_replicas" =~ ^[1-9]$ ]]; then
  echo "swift/start.sh: SWIFT_OBJECT_REPLICAS must be 1-9, not $object_replicas" >&2
  exit 2
fi
mkdir -p "$configuration" "$logs"
for device in $(seq 1 "$object_replicas"); do mkdir -p "$devices/d$device"; done
user="$(id -un)"
read -r account_port container_port object_port memcached_port < <(free_loopback_ports 4)

# swift_dir in each server's [DEFAULT] makes Swift read this swift.conf instead of /etc/swift's.
cat > "$configuration/swift.conf" <<EOF
[swift-hash]
swift_hash_path_suffix = ovs-test-suffix
swift_hash_path_prefix = ovs-test-prefix

[storage-policy:0]
name = Policy-0
default = yes
EOF

# workers = 0: one foreground process per server, whose PID is the one we record.
# disable_fallocate: a test machine's /tmp may be nearly full; Swift would refuse writes early.
write_backend_conf() {
  local name="$1" port="$2" app="$3"
  cat > "$configuration/$name-server.conf" <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $port
workers = 0
user = $user
swift_dir = $configuration
devices = $devices
mount_check = false
disable_fallocate = true
log_name = $name-server

[pipeline:main]
pipeline = $name-server

[app:$name-server]
use = egg:swift#$app
EOF
}
write_backend_conf account "$account_port" account
write_backend_conf container "$container_port" container
write_backend_conf object "$object_port" object

# s3api sits before tempauth: it turns an S3 request into a Swift one and hands tempauth the
# signature check (the S3 access key is the tempauth "account:user", the secret its key). slo is
# needed by s3api's multipart uploads. tempauth keeps its tokens in memcached (it refuses without).
cat > "$configuration/proxy-server.conf" <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $proxy_port
workers = 0
user = $user
swift_dir = $configuration
log_name = proxy-server

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api tempauth copy slo dlo proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

[filter:s3api]
use = egg:swift#s3api
location = us-east-1

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = $SWIFT_KEY .admin
user_admin_admin = admin .admin .reseller_admin

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:$memcached_port

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:gatekeeper]
use = egg:swift#gatekeeper

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:proxy-logging]
use = egg:swift#proxy_logging

[filter:listing_formats]
use = egg:swift#listing_formats

[filter:copy]
use = egg:swift#copy

[filter:slo]
use = egg:swift#slo

[filter:dlo]
use = egg:swift#dlo
EOF

# Rings: 2^8 partitions, min_part_hours 1 (never rebalanced again). Account and container: one
# replica on d1. Objects: SWIFT_OBJECT_REPLICAS replicas (default 1) on as many devices d1..dN, each
# in its own zone, all served by the one object server (a benchmark compares Swift with 3 replicas,
# which survives 2 lost devices, with erasure coding that does too).
for ring in account:"$account_port":1 container:"$container_port":1 object:"$object_port":"$object_replicas"; do
  name="${ring%%:*}"
  rest="${ring#*:}"
  port="${rest%%:*}"
  replicas="${rest#*:}"
  builder="$configuration/$name.builder"
  swift-ring-builder "$builder" create 8 "$replicas" 1 >/dev/null
  for device in $(seq 1 "$replicas"); do
    swift-ring-builder "$builder" add "r1z$device-127.0.0.1:$port/d$device" 1 >/dev/null
  done
  swift-ring-builder "$builder" rebalance >/dev/null
done

# memcached refuses to run as root unless told which user to run as.
start_process "$pid_file" memcached "$logs/memcached.log" \
  memcached -l 127.0.0.1 -p "$memcached_port" -U 0 -m 16 -u "$user"
# --verbose sends each server's log to its stdout (our log file) as well as to syslog.
for server in account container object proxy; do
  start_process "$pid_file" "$server-server" "$logs/$server-server.log" \
    "swift-$server-server" "$configuration/$server-server.conf" --verbose
done

# Ready when the backend servers accept connections and a tempauth token lists the account (which
# needs the proxy, memcached and the account server).
if ! python3 - "$proxy_port" "$SWIFT_USER" "$SWIFT_KEY" "$READY_TIMEOUT_SECONDS" "$account_port" "$container_port" "$object_port" <<'EOF'
import socket, sys, time, urllib.error, urllib.request
proxy_port, user, key, timeout = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
backend_ports = [int(port) for port in sys.argv[5:]]
base = f"http://127.0.0.1:{proxy_port}"
deadline = time.monotonic() + timeout
last_error = "nothing tried"
while time.monotonic() < deadline:
    try:
        for port in backend_ports:
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                pass
        request = urllib.request.Request(f"{base}/auth/v1.0", headers={"X-Auth-User": user, "X-Auth-Key": key})
        with urllib.request.urlopen(request, timeout=5) as response:
            token = response.headers["X-Auth-Token"]
            storage_url = response.headers["X-Storage-Url"]
        request = urllib.request.Request(storage_url, headers={"X-Auth-Token": token})
        with urllib.request.urlopen(request, timeout=5) as response:
            if response.status in (200, 204):
                sys.exit(0)
            last_error = f"account GET answered {response.status}"
    except (OSError, urllib.error.URLError) as error:
        last_error = str(error)
    time.sleep(0.2)
print(f"not ready after {timeout} s: {last_error}", file=sys.stderr)
sys.exit(1)
EOF
then
  echo "swift/start.sh: Swift did not become ready; logs in $logs; stopping it" >&2
  tail -n 20 "$logs"/*.log >&2 || true
  "$script_directory/stop.sh" "$directory" >&2 || true
  exit 1
fi

echo "SWIFT_PIDS=$(pid_list "$pid_file")"
echo "SWIFT_PID_FILE=$pid_file"
echo "SWIFT_AUTH_URL=http://127.0.0.1:$proxy_port/auth/v1.0"
echo "SWIFT_USER=$SWIFT_USER"
echo "SWIFT_KEY=$SWIFT_KEY"
echo "S3_ENDPOINT=http://127.0.0.1:$proxy_port"
echo "S3_REGION=us-east-1"
echo "S3_ACCESS_KEY=$SWIFT_USER"
echo "S3_SECRET_KEY=$SWIFT_KEY"
