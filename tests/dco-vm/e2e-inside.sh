#!/bin/bash
# tests/dco-vm/e2e-inside.sh CHECKOUT - the DCO end-to-end test proper, run by e2e.sh inside a
# throwaway overlay of the Debian root, in the ovpn-dco-v2 guest, as root. ovpn-netcfgd sits
# at the reference's path under Debian's own activation file and policy.
#
# Debian's unchanged client stack (openvpn3 CLI, configmgr, sessionmgr, backendstart, client,
# log; 27.1, DCO on) connects through ovpn-netcfgd to a real OpenVPN 2.7 server (userspace,
# tun) in another network namespace of the guest. Checked in the kernel: the ovpn-dco link
# carries the pings both ways (its counters grow; no tun device exists), a renegotiation the
# client starts (reneg-sec) goes through NewKey and SwapKeys with at most one lost ping, a
# clean disconnect and a SIGKILLed client leave no link, address or route. A bus monitor
# records every call the client makes to the netcfg service, with DCO on and off.
# Prints "N passed, M failed" and the figures; exits non-zero on any failure.
set -uo pipefail
SRC=$1
OUT=${E2E_OUT:-/tmp/e2e-out}
work=/tmp/e2e
RENEG=${E2E_RENEG_SEC:-30}

pass=0 fail=0
ok() { pass=$((pass + 1)); echo "  ok   $1"; }
bad() {
	fail=$((fail + 1)); echo "  FAIL $1"
	[ -n "${2:-}" ] && printf '%s\n' "$2" | sed 's/^/         /' | head -30
	return 0
}
check() { local n=$1; shift; local o; if o=$("$@" 2>&1); then ok "$n"; else bad "$n" "$o"; fi; }
wait_for() { # SECONDS CMD...
	local n=$(($1 * 10)); shift
	while [ $n -gt 0 ]; do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; n=$((n - 1)); done
	return 1
}
now() { date +%s.%N; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%d", (b - a) * 1000 }'; }
figure() { echo "  figure: $*"; echo "$*" >> "$OUT/figures.txt"; }

pids=()
cleanup() {
	cp "$work"/*.log "$work"/*.txt "$OUT/" 2>/dev/null
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	[ -f "$work/server.pid" ] && kill "$(cat "$work/server.pid")" 2>/dev/null
	[ -n "${bus_pid:-}" ] && kill "$bus_pid" 2>/dev/null
	ip netns del e2e-srv 2>/dev/null
}
trap cleanup EXIT
mkdir -p "$work/services" "$OUT"
: > "$work/client.log"; chmod 666 "$work/client.log"
echo "kernel $(uname -r), module $(cat /sys/module/ovpn_dco_v2/version 2>/dev/null), $(openvpn3 version 2>/dev/null | head -1)"

echo "== network: the client in the guest's namespace, the server in e2e-srv"
ip link set lo up
ip netns add e2e-srv
ip link add up0 type veth peer name srv0 netns e2e-srv
ip addr add 192.0.2.2/24 dev up0
ip link set up0 up
ip -n e2e-srv link set lo up
ip -n e2e-srv addr add 192.0.2.1/24 dev srv0
ip -n e2e-srv link set srv0 up

echo "== test PKI and the OpenVPN 2.7 server (userspace, tun)"
. "$SRC/tests/e2e/pki.sh"
make_pki "$work" dco-e2e || { echo "PKI generation failed"; exit 1; }
cat > "$work/server.conf" <<CONF
dev tun
disable-dco
topology subnet
proto udp
port 1194
server 10.8.0.0 255.255.255.0
server-ipv6 fd00:8::/64
ca $work/ca.crt
cert $work/server.crt
key $work/server.key
dh none
keepalive 2 20
verb 3
CONF
{
	echo "client"; echo "dev tun"; echo "proto udp"; echo "remote 192.0.2.1 1194"; echo "nobind"
	echo "remote-cert-tls server"; echo "reneg-sec $RENEG"; echo "become-primary 3"; echo "verb 3"
	for f in ca cert key; do
		case $f in ca) p=ca.crt ;; cert) p=client.crt ;; key) p=client.key ;; esac
		echo "<$f>"; cat "$work/$p"; echo "</$f>"
	done
} > "$work/client.ovpn"
ip netns exec e2e-srv openvpn --config "$work/server.conf" --daemon dco-e2e-server \
	--writepid "$work/server.pid" --log "$work/server.log"
wait_for 30 ip -n e2e-srv addr show dev tun0 || { echo "server did not come up"; cat "$work/server.log"; exit 1; }

echo "== private system bus, the client's services, the hostname1 stand-in"
[ -s /etc/machine-id ] || head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' > /etc/machine-id
# Activation files for a bus run by root without the setuid helper: the packages' own Exec
# lines, each under its own User= (setpriv); netcfg is User=root and drops privileges itself.
for f in /usr/share/dbus-1/system-services/net.openvpn.v3.*.service; do
	name=$(sed -n 's/^Name=//p' "$f"); exe=$(sed -n 's/^Exec=//p' "$f"); user=$(sed -n 's/^User=//p' "$f")
	# the per-session client's own log
	[ "$name" = net.openvpn.v3.backends ] && exe="$exe --client-log-level 6 --client-log-file $work/client.log"
	{
		echo "[D-BUS Service]"; echo "Name=$name"
		if [ -z "$user" ] || [ "$user" = root ]; then echo "Exec=$exe"
		else echo "Exec=/usr/bin/setpriv --reuid=$user --regid=$user --init-groups $exe"; fi
	} > "$work/services/${f##*/}"
done
sed -e '/<user>/d' -e '/<fork\/>/d' -e '/<servicehelper>/d' -e '/<pidfile>/d' -e '/<syslog\/>/d' \
	-e "s#<standard_system_servicedirs/>#<servicedir>$work/services</servicedir>#" \
	-e 's#<includedir>system.d</includedir>#<includedir>/usr/share/dbus-1/system.d</includedir>#' \
	/usr/share/dbus-1/system.conf > "$work/bus.conf"
mkdir -p /run/dbus
dbus-daemon --config-file="$work/bus.conf" --nofork --nosyslog \
	> >(grep --line-buffered -v 'Failed to set fd limit' > "$work/bus.log") 2>&1 &
bus_pid=$!
wait_for 20 test -S /run/dbus/system_bus_socket || { echo "bus did not start"; exit 1; }
/usr/bin/python3 -u "$SRC/tests/e2e/hostname1-stub.py" > "$work/hostname1.log" 2>&1 &
pids+=($!)
wait_for 30 grep -q OWNED "$work/hostname1.log" || { echo "hostname1 stub failed"; cat "$work/hostname1.log"; exit 1; }
# every call to the netcfg service, with its arguments (the audit of the surface)
dbus-monitor --system "destination='net.openvpn.v3.netcfg'" > "$work/netcfg-calls.txt" 2>&1 &
pids+=($!)

dco_dev() { ip -o -d link show | awk -F': ' '/ ovpn-dco / { print $2; exit }'; }
packets() { # [NETNS] DEV: the link's rx and tx packet counts, from the kernel
	local ns=
	[ $# = 2 ] && { ns="ip netns exec $1"; shift; }
	$ns cat /proc/net/dev | sed -n "s/^ *$1: *//p" | awk '{ print $2, $10 }'
}
client_pid() { # the per-session client registers net.openvpn.v3.backends.be<PID>
	busctl list --no-legend | awk '$1 ~ /^net\.openvpn\.v3\.backends\.be[0-9]+$/ { sub(/.*\.be/, "", $1); print $1; exit }'
}
nothing_left() {
	[ -z "$(ip -o link show | grep -v ': lo:\|: up0@')" ] && [ -z "$(ip -o addr show | grep ' 10\.8\.\| fd00:8:')" ] &&
		[ -z "$(ip route show proto 79; ip -6 route show proto 79)" ] && [ -z "$(ip route show | grep 10.8.0)" ]
}
start_session() { # LABEL [PROFILE]: connects, sets $profile and $t_connect (ms)
	# Under emulation the session manager can lose a race with the client's start-up
	# ("Failed to retrieve UID for bus name", the backend is stopped before it registers);
	# that has nothing to do with netcfg, and a new attempt goes through.
	local t0 t1 out try
	profile=${2:-e2e}
	for try in 1 2 3 4 5 6; do
		t0=$(now)
		if out=$(timeout 120 openvpn3 session-start --config "${2:-e2e}" 2>&1) && grep -q Connected <<< "$out"; then
			t1=$(now)
			t_connect=$(ms "$t0" "$t1")
			ok "$1: connected in $t_connect ms (attempt $try)"
			return 0
		fi
		echo "  ($1: attempt $try did not connect: $(tail -1 <<< "$out"))"
	done
	bad "$1: session connects" "$out$(echo; tail -30 "$work/bus.log")"
	return 1
}

openvpn3 config-import --config "$work/client.ovpn" --name e2e --persistent > /dev/null ||
	{ echo "config-import failed"; exit 1; }
check "DCO turned on in the profile" openvpn3 config-manage --config e2e --dco true

echo "== 1. a DCO session"
if start_session "DCO"; then
	figure "connect time (DCO): $t_connect ms"
	dev=$(dco_dev)
	check "an ovpn-dco link exists ($dev)" test -n "$dev"
	check "no tun device exists" test -z "$(ip -o link show type tun)"
	check "VPN address on $dev" sh -c "ip -4 addr show dev $dev | grep -q 'inet 10.8.0.2/24'"
	check "VPN IPv6 address on $dev" sh -c "ip -6 addr show dev $dev | grep -q 'inet6 fd00:8::1000/64'"
	read -r rx0 tx0 <<< "$(packets "$dev")"
	read -r srx0 stx0 <<< "$(packets e2e-srv tun0)"
	check "ping the server end 10.8.0.1 (client -> server), 10 of 10" ping -c 10 -i 0.2 -W 3 10.8.0.1
	check "ping fd00:8::1 (IPv6)" ping -6 -c 3 -i 0.2 -W 3 fd00:8::1
	check "ping the client 10.8.0.2 from the server (server -> client), 10 of 10" \
		ip netns exec e2e-srv ping -c 10 -i 0.2 -W 3 10.8.0.2
	read -r rx1 tx1 <<< "$(packets "$dev")"
	read -r srx1 stx1 <<< "$(packets e2e-srv tun0)"
	figure "$dev (DCO) packets over 13 pings out and 10 in: rx $rx0 -> $rx1, tx $tx0 -> $tx1 (ovpn-dco-v2 counts tx per peer only)"
	figure "server tun0 packets: rx $srx0 -> $srx1, tx $stx0 -> $stx1"
	# the kernel's DCO device decrypted the 13 replies and the 10 requests; the server's tun
	# got what the client's kernel encrypted: 13 requests and 10 replies
	check "the DCO link received the 13 replies and 10 requests (rx +$((rx1 - rx0)))" test $((rx1 - rx0)) -ge 23
	check "the server's tun received the client's 13 requests and 10 replies (+$((srx1 - srx0)))" test $((srx1 - srx0)) -ge 23

	echo "-- renegotiation started by the client (reneg-sec $RENEG), pings every 0.2 s across it"
	keys0=$(grep -c 'DCO NEW_KEY' "$work/bus.log")
	swaps0=$(grep -c 'DCO keys of peer' "$work/bus.log")
	ping -D -i 0.2 -W 2 -w $((RENEG + 20)) 10.8.0.1 > "$work/reneg-ping.txt" 2>&1
	keys1=$(grep -c 'DCO NEW_KEY' "$work/bus.log")
	swaps1=$(grep -c 'DCO keys of peer' "$work/bus.log")
	sent=$(sed -n 's/^\([0-9]*\) packets transmitted.*/\1/p' "$work/reneg-ping.txt")
	got=$(sed -n 's/.* \([0-9]*\) received.*/\1/p' "$work/reneg-ping.txt")
	gap=$(awk -F'[][]' '/bytes from/ { if (p) { d = $2 - p; if (d > m) m = d } p = $2 } END { printf "%d", m * 1000 }' "$work/reneg-ping.txt")
	figure "renegotiation: NewKey $keys0 -> $keys1, SwapKeys $swaps0 -> $swaps1; pings $got of $sent; longest gap between replies $gap ms"
	check "a new key went in (NewKey) during the pings" test "$keys1" -gt "$keys0"
	check "and was made primary (SwapKeys)" test "$swaps1" -gt "$swaps0"
	check "at most one ping lost across the renegotiation ($got of $sent)" test $((sent - got)) -le 1
	grep 'DCO NEW_KEY\|DCO keys of peer' "$work/bus.log" | tail -4 | sed 's/^/         /'

	echo "-- clean disconnect"
	out=$(timeout 60 openvpn3 session-manage --config "$profile" --disconnect 2>&1) || bad "disconnect" "$out"
	check "nothing left: no link, address or route" wait_for 30 nothing_left
fi

echo "== 2. a DCO session whose client is killed (SIGKILL)"
if start_session "DCO, then SIGKILL"; then
	dev=$(dco_dev)
	check "ovpn-dco link $dev up" test -n "$dev"
	check "ping through it" ping -c 3 -i 0.2 -W 3 10.8.0.1
	p=$(client_pid)
	if [ -n "$p" ] && grep -q openvpn3-service-client "/proc/$p/cmdline"; then
		kill -9 "$p"; ok "client process $p killed (SIGKILL)"
	else
		bad "found the client process" "$(busctl list --no-legend | grep backends)"
	fi
	check "nothing left: no link, address or route" wait_for 30 nothing_left
fi

echo "== 3. a tun session (DCO off), for the record of the calls"
# a profile of its own: the session manager keeps the killed client's session
openvpn3 config-import --config "$work/client.ovpn" --name e2e-tun --persistent > /dev/null
if start_session "tun" e2e-tun; then
	figure "connect time (tun): $t_connect ms"
	check "a tun device, no ovpn-dco link" sh -c "[ -n \"\$(ip -o link show type tun)\" ] && [ -z \"\$(ip -o -d link show | grep ' ovpn-dco ')\" ]"
	check "ping through the tun" ping -c 3 -i 0.2 -W 3 10.8.0.1
	out=$(timeout 60 openvpn3 session-manage --config "$profile" --disconnect 2>&1) || bad "disconnect" "$out"
	check "nothing left" wait_for 30 nothing_left
fi

echo "== the calls the client made to netcfg (methods, properties)"
sleep 1
awk '/^method call/ { for (i = 1; i <= NF; i++) { if ($i ~ /^interface=/) f = substr($i, 11); if ($i ~ /^member=/) m = substr($i, 8); if ($i ~ /^path=/) p = substr($i, 6) }
	sub(/;$/, "", f); sub(/;$/, "", p); gsub(/[0-9]+_[a-z0-9]+/, "<dev>", p); print f "." m " " p }' "$work/netcfg-calls.txt" |
	sort | uniq -c | sort -rn > "$work/netcfg-surface.txt"
cat "$work/netcfg-surface.txt"
grep -q 'ClearConfig' "$work/netcfg-surface.txt" && ok "the client called ClearConfig" || bad "ClearConfig seen"
grep -q 'GetPeer' "$work/netcfg-surface.txt" && ok "the client called GetPeer" || bad "GetPeer seen"
! grep -qi 'UnknownMethod\|No such method' "$work/bus.log" "$work/netcfg-calls.txt" && ok "no unknown method" ||
	bad "unknown methods" "$(grep -i 'UnknownMethod\|No such method' "$work/bus.log" "$work/netcfg-calls.txt" | head)"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
