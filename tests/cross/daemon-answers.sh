#!/usr/bin/env bash
# Starts a release daemon the way a launcher does (as root, switching itself
# to nobody) on a private bus, in a network namespace of its own, optionally
# under a runner such as qemu-mips-static, and checks that it answers a
# D-Bus call (busctl, FetchInterfaceList and the version property).
# With --rss, prints the idle daemon's VmRSS instead (native binaries only).
#
#   tests/cross/daemon-answers.sh [--rss] BIN [RUNNER]
set -euo pipefail
rss=
[ "${1:-}" = --rss ] && { rss=1; shift; }
bin=$(realpath "$1") runner=${2:-}
top=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(mktemp -d /tmp/ovpn-netcfgd-cross.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
chmod 755 "$dir"
mkdir -p "$dir/services" "$dir/state"
chown 65534:65534 "$dir/state"
sed "s|@DIR@|$dir|g" "$top/tests/data/bus.conf.in" >"$dir/bus.conf"
dbus-daemon --config-file="$dir/bus.conf" --nofork --nopidfile 2>/dev/null &
pids+=($!)
addr=unix:path=$dir/bus.sock
for _ in $(seq 100); do [ -S "$dir/bus.sock" ] && break; sleep 0.05; done
# unshare execs the daemon (or its runner): $! is the daemon's pid.
unshare --net -- $runner "$bin" --bus-address "$addr" --run-as nobody --idle-exit 0 \
    --dns-backend none --state-dir "$dir/state" 2>"$dir/daemon.log" &
pids+=($!)
daemon=$!
call() { busctl --address="$addr" "$@" 2>/dev/null; }
# qemu-user translates every instruction: give a slow start a minute.
for _ in $(seq 600); do
    call status net.openvpn.v3.netcfg >/dev/null && break
    kill -0 "$daemon" 2>/dev/null || { echo "FAIL: the daemon exited at start:"; cat "$dir/daemon.log"; exit 1; }
    sleep 0.1
done
list=$(call call net.openvpn.v3.netcfg /net/openvpn/v3/netcfg net.openvpn.v3.netcfg FetchInterfaceList) || {
    echo "FAIL: $(basename "$bin")${runner:+ under $runner}: no answer on the bus:"; cat "$dir/daemon.log"; exit 1; }
version=$(call get-property net.openvpn.v3.netcfg /net/openvpn/v3/netcfg net.openvpn.v3.netcfg version)
[ "$list" = "ao 0" ] || { echo "FAIL: FetchInterfaceList answered '$list', expected 'ao 0'"; exit 1; }
user=$(ps -o user= -p "$daemon")
[ "$user" = nobody ] || { echo "FAIL: the daemon runs as '$user', not nobody"; exit 1; }
if [ -n "$rss" ]; then
    sleep 0.2
    kib() { awk -v k="$1" '$1 == k {print $2}' "/proc/$daemon/status"; }
    echo "idle VmRSS $(kib VmRSS:) KiB (RssAnon $(kib RssAnon:) + RssFile $(kib RssFile:))"
else
    echo "ok: $(file -b "$bin" | cut -d, -f1-2)${runner:+ under $runner}: FetchInterfaceList -> $list, version -> $version, running as $user"
fi
