#!/bin/bash
# make demo: the daemon on a private bus inside a throwaway network
# namespace, driven through a real session by a GLib client (the way the
# openvpn3 client does it), showing what it did to the kernel. Cleans up.
set -euo pipefail
# Everything runs in a private mount namespace: /etc/resolv.conf and
# /dev/net/tun seen here are the demo's own, never the host's.
if [ -z "${DEMO_INNER:-}" ]; then
    exec unshare -m --propagation private env DEMO_INNER=1 "$0" "$@"
fi
BIN=$(realpath "${1:-target/release/ovpn-netcfgd}")
here=$(cd "$(dirname "$0")" && pwd)
ns=ovpn-demo-$$
dir=$(mktemp -d /tmp/ovpn-demo.XXXXXX)
chmod 755 "$dir"
dbus_pid= daemon_pid=
cleanup() {
    [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
    [ -n "$dbus_pid" ] && kill "$dbus_pid" 2>/dev/null
    ip netns del "$ns" 2>/dev/null || true
    ip netns del "$ns-gw" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

echo "== a throwaway namespace '$ns' with a fake uplink (veth to a gateway namespace; nothing leaves the machine)"
ip netns add "$ns"; ip netns add "$ns-gw"
ip -n "$ns" link set lo up
ip -n "$ns" link add name uplink0 type veth peer name gw0
ip -n "$ns" link set gw0 netns "$ns-gw"
ip -n "$ns-gw" addr add 192.0.2.1/24 dev gw0; ip -n "$ns-gw" link set gw0 up
ip -n "$ns" addr add 192.0.2.2/24 dev uplink0; ip -n "$ns" link set uplink0 up
ip -n "$ns" route add default via 192.0.2.1

echo "== a private /etc/resolv.conf and a 0666 /dev/net/tun (as distributions ship it)"
printf 'nameserver 192.0.2.53\nsearch lan.example\n' >"$dir/resolv.conf"
mount --bind "$dir/resolv.conf" /etc/resolv.conf
mknod -m 666 "$dir/tun" c 10 200
mount --bind "$dir/tun" /dev/net/tun
sed 's/^/  /' /etc/resolv.conf

echo "== a private system-like D-Bus"
mkdir -p "$dir/services" "$dir/state"
chmod 700 "$dir/state" # root's: the daemon keeps its journal open from before it drops to nobody
sed "s#@DIR@#$dir#" "$here/../data/bus.conf.in" >"$dir/bus.conf"
# (as root in a container it cannot raise its fd limit and says so; harmless)
dbus-daemon --config-file="$dir/bus.conf" --nofork --nopidfile 2> >(grep -v 'Failed to set fd limit' >&2) &
dbus_pid=$!
for _ in $(seq 100); do [ -S "$dir/bus.sock" ] && break; sleep 0.05; done
addr="unix:path=$dir/bus.sock"

echo "== ovpn-netcfgd ($(stat -c %s "$BIN") bytes) inside the namespace"
# As the unprivileged user nobody, DNS through the (private) resolv.conf file.
ip netns exec "$ns" "$BIN" --bus-address "$addr" --state-dir "$dir/state" --idle-exit 0 --log-level 4 \
    --run-as nobody --resolv-conf /etc/resolv.conf 2>"$dir/daemon.log" &
daemon_pid=$!
# Its log is shown in step with the story: what it wrote since last time.
shown=0
daemon_log() {
    local n
    n=$(wc -l <"$dir/daemon.log")
    [ "$n" -gt "$shown" ] && sed -n "$((shown + 1)),${n}p" "$dir/daemon.log" | sed 's/^/  daemon: /'
    shown=$n
}
for _ in $(seq 100); do
    busctl --address="$addr" status net.openvpn.v3.netcfg >/dev/null 2>&1 && break; sleep 0.05
done
daemon_log

echo "== the client session"
coproc CLIENT { /usr/bin/python3 -u "$here/client.py" "$addr" --keep 2>&1; }
client_pid=$CLIENT_PID
while IFS= read -r line <&"${CLIENT[0]}"; do
    case "$line" in
    READY*)
        dev=${line#READY }
        daemon_log
        echo "== kernel state while connected (read back with ip)"
        ip -n "$ns" addr show dev "$dev" | sed 's/^/  /'
        echo "  -- IPv4 routes:"; ip -n "$ns" route | sed 's/^/    /'
        echo "  -- IPv6 routes:"; ip -n "$ns" -6 route | sed 's/^/    /'
        echo "  -- /etc/resolv.conf:"; sed 's/^/    /' /etc/resolv.conf
        echo "  -- the daemon's identity:"
        grep -E '^(Uid|CapEff|CapBnd|NoNewPrivs)' "/proc/$daemon_pid/status" | sed 's/^/    /'
        echo >&"${CLIENT[1]}"
        ;;
    *) echo "$line" ;;
    esac
done
wait "$client_pid"
daemon_log
echo "== kernel state after Destroy"
ip -n "$ns" -o link show | sed 's/^/  /'
echo "  -- IPv4 routes:"; ip -n "$ns" route | sed 's/^/    /'
echo "  -- /etc/resolv.conf:"; sed 's/^/    /' /etc/resolv.conf
left=$(ip -n "$ns" route show proto 79; ip -n "$ns" -6 route show proto 79)
[ -z "$left" ] && echo "== nothing of ours is left" || { echo "!! routes left behind: $left"; exit 1; }
echo "== the daemon stops (SIGTERM)"
kill "$daemon_pid"
wait "$daemon_pid" 2>/dev/null
daemon_pid=
daemon_log
