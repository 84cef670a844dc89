#!/usr/bin/env bash
# Installs the Debian packages the tests need, on CI only (CI=true) and only those that are missing,
# so a developer's machine is never changed behind their back and a warm CI machine does no work.
# Adding a test peer is one line in TEST_PACKAGES: "package:command-it-provides" (the command is how
# we check it without asking dpkg; leave it empty to check with `dpkg -s` alone).
set -euo pipefail

TEST_PACKAGES=(
  # Needed now: better-sqlite3 falls back to a source build when no prebuilt binary matches.
  "build-essential:g++"
  "python3:python3"
  # NBD (issue 3): real clients and baselines for tests/interop, tests/fault/nbd-sigkill.test.ts and
  # tests/bench/nbd. python3-libnbd installs the nbd module for Debian's /usr/bin/python3 (nbdsh).
  "nbdkit:nbdkit"
  "libnbd-bin:nbdinfo"
  "python3-libnbd:"
  "qemu-utils:qemu-img"
  "fio:fio"
  "openssl:openssl"
  # Object stores (issue 5): a Swift all-in-one (deploy/swift) and a single-node Ceph RGW
  # (deploy/ceph) on loopback for tests/interop. memcached holds Swift tempauth's tokens.
  # About 75 MB to download; apt-get install took 20 s (Swift) and 16 s (Ceph) on the dev machine.
  "memcached:memcached"
  "swift:swift-ring-builder"
  "swift-proxy:swift-proxy-server"
  "swift-account:swift-account-server"
  "swift-container:swift-container-server"
  "swift-object:swift-object-server"
  "ceph-common:radosgw-admin"
  "ceph-mon:ceph-mon"
  "ceph-osd:ceph-osd"
  "radosgw:radosgw"
  # iSCSI (issue 7): libiscsi's tools (iscsi-ls, iscsi-inq, iscsi-readcapacity16, iscsi-test-cu)
  # and qemu's iscsi:// driver for tests/interop/iscsi-tools.test.ts; tgt, the peer whose
  # iscsi-test-cu tally tests/interop/iscsi-conformance.test.ts compares ours with.
  "qemu-block-extra:"
  "libiscsi-bin:iscsi-test-cu"
  "tgt:tgtd"
  # The dashboard's browser test (tests/interop/dashboard-browser.test.ts) drives Debian's chromium
  # with playwright-core (no browser download).
  "chromium:chromium"
  # Later: etcd (several hosts).
  # "etcd-server:etcd"
)

if [[ "${CI:-}" != "true" ]]; then
  echo "install-test-deps: CI is not \"true\": not installing anything (needed: ${TEST_PACKAGES[*]%%:*})"
  exit 0
fi

is_installed() {
  local package="$1" command="$2"
  if [[ -n "$command" ]] && command -v "$command" >/dev/null 2>&1; then
    return 0
  fi
  dpkg -s "$package" >/dev/null 2>&1
}

missing=()
for entry in "${TEST_PACKAGES[@]}"; do
  package="${entry%%:*}"
  command="${entry#*:}"
  if ! is_installed "$package" "$command"; then
    missing+=("$package")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-test-deps: all test packages present"
  exit 0
fi

sudo_cmd=()
if [[ "$(id -u)" -ne 0 ]]; then
  sudo_cmd=(sudo)
fi
echo "install-test-deps: installing ${missing[*]}"
"${sudo_cmd[@]}" apt-get update
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
