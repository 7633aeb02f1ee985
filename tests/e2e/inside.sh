#!/bin/bash
# The real-client end-to-end test, run by real-client.sh inside a throwaway
# overlay of the Debian root (tests/rigs/o3root), as root:
#
#   inside.sh CHECKOUT BIN
#
# Debian's unchanged OpenVPN 3 Linux client stack (configmgr, sessionmgr,
# backendstart, client, log; openvpn3 CLI) connects through ovpn-netcfgd to
# a real OpenVPN 2.7 server in another network namespace, on a private
# system bus with polkitd, a real systemd-resolved and a hostname1 stand-in.
#
#   1. drop-in: ovpn-netcfgd takes the reference's place under Debian's own
#      activation file (User=root, --state-dir /var/lib/openvpn3) and bus
#      policy: it finds _openvpn, owns the name, serves a cycle with the
#      reference's DNS default (nothing touched), and answers openvpn3-admin.
#   2. `make install` over Debian's package (dist/install.mk): the activation
#      file and policy are diverted; ours serve E2E_CYCLES cycles with DNS
#      through systemd-resolved (polkit, our rule), then the client is
#      killed mid-session; `make uninstall` restores Debian's files byte for
#      byte, and the reference serves a cycle again.
#   3. the service account with real accounts: _openvpn, then openvpn, then
#      ovpn-netcfgd as each is added; --run-as; none at all.
#
# What a session did is read from the kernel (ip, /proc), resolved
# (resolvectl) or the files, never from the daemon's own view; the account
# choice (3) is read from the daemon's start-up log line. Prints "N passed, M failed" and a timing summary;
# exits non-zero on any failure.
set -uo pipefail

SRC=$1
BIN=$2
CYCLES=${E2E_CYCLES:-3}
work=/tmp/e2e
ref=/usr/libexec/openvpn3-linux/openvpn3-service-netcfg
svc=/usr/share/dbus-1/system-services/net.openvpn.v3.netcfg.service
pol=/usr/share/dbus-1/system.d/net.openvpn.v3.netcfg.conf
resolvectl=/opt/resolved-root/usr/bin/resolvectl

# Our own network namespace (the one the client side lives in); /sys shows it.
if [ "${E2E_IN_NETNS:-}" != 1 ]; then
    exec env E2E_IN_NETNS=1 unshare -n "$0" "$@"
fi
mount -t sysfs sysfs /sys

pass=0 fail=0
ok() { pass=$((pass + 1)); echo "  ok   $1"; }
bad() {
    fail=$((fail + 1))
    echo "  FAIL $1"
    [ -n "${2:-}" ] && printf '%s\n' "$2" | sed 's/^/         /' | head -30
    return 0
}
check() { # check NAME CMD...: ok if CMD succeeds
    local name=$1; shift
    local out
    if out=$("$@" 2>&1); then ok "$name"; else bad "$name" "$out"; fi
}
wait_for() { # wait_for SECONDS CMD...: until CMD succeeds
    local n=$(($1 * 10)); shift
    while [ $n -gt 0 ]; do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1; n=$((n - 1))
    done
    return 1
}
now() { date +%s.%N; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%d", (b - a) * 1000 }'; }

pids=()
# Every process of this test lives in its network namespaces (the bus's
# services too): at the end, those are ended, and nothing else.
our_pids() {
    local me p
    me=$(readlink /proc/$$/ns/net)
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        [ "$p" = $$ ] || [ "$p" = "$BASHPID" ] && continue
        [ "$(readlink "/proc/$p/ns/net" 2>/dev/null)" = "$me" ] && echo "$p"
    done
    ip netns pids e2e-srv 2>/dev/null
    ip netns pids e2e-gw 2>/dev/null
}
cleanup() {
    [ -n "${E2E_LOGS:-}" ] && cp "$work"/*.log "$E2E_LOGS/" 2>/dev/null
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    [ -n "${bus_pid:-}" ] && kill "$bus_pid" 2>/dev/null
    [ -f "$work/server.pid" ] && kill "$(cat "$work/server.pid")" 2>/dev/null
    sleep 0.5
    local left
    left=$(our_pids)
    [ -n "$left" ] && kill -9 $left 2>/dev/null
    ip netns del e2e-srv 2>/dev/null
    ip netns del e2e-gw 2>/dev/null
}
trap cleanup EXIT
rm -rf "$work"
mkdir -p "$work/services"
chmod 755 "$work"

echo "== network: client (this namespace) -- gateway -- server, nothing else"
ip link set lo up
ip netns add e2e-gw
ip netns add e2e-srv
ip link add up0 type veth peer name gw-c netns e2e-gw
ip -n e2e-gw link add gw-s type veth peer name srv0 netns e2e-srv
ip addr add 192.0.2.2/24 dev up0
# No duplicate address detection: a link-local address still tentative
# when the baseline is taken would differ from it later.
sysctl -qw net.ipv6.conf.up0.accept_dad=0
ip link set up0 up
ip route add default via 192.0.2.1
ip -n e2e-gw link set lo up
ip -n e2e-gw addr add 192.0.2.1/24 dev gw-c
ip -n e2e-gw addr add 198.51.100.1/24 dev gw-s
ip -n e2e-gw link set gw-c up
ip -n e2e-gw link set gw-s up
ip netns exec e2e-gw sysctl -qw net.ipv4.ip_forward=1
ip -n e2e-srv link set lo up
ip -n e2e-srv addr add 198.51.100.2/24 dev srv0
ip -n e2e-srv link set srv0 up
ip -n e2e-srv route add default via 198.51.100.1
# what the pushed routes lead to, behind the server
ip -n e2e-srv addr add 10.200.0.1/32 dev lo
ip -n e2e-srv addr add fd00:200::1/128 dev lo

echo "== test PKI and the OpenVPN 2.7 server"
. "$SRC/tests/e2e/pki.sh"
make_pki "$work" e2e || { echo "PKI generation failed"; exit 1; }
cat >"$work/server.conf" <<EOF
dev tun
topology subnet
proto udp
port 1194
server 10.8.0.0 255.255.255.0
server-ipv6 fd00:8::/64
ca $work/ca.crt
cert $work/server.crt
key $work/server.key
dh none
keepalive 2 10
push "route 10.200.0.0 255.255.0.0"
push "route-ipv6 fd00:200::/64"
push "redirect-gateway def1"
push "dhcp-option DNS 10.8.0.1"
push "dhcp-option DOMAIN vpn.example"
verb 3
EOF
{
    echo "client"; echo "dev tun"; echo "proto udp"; echo "remote 198.51.100.2 1194"
    echo "nobind"; echo "remote-cert-tls server"; echo "verb 3"
    for f in ca cert key; do
        case $f in ca) p=ca.crt ;; cert) p=client.crt ;; key) p=client.key ;; esac
        echo "<$f>"; cat "$work/$p"; echo "</$f>"
    done
} >"$work/client.ovpn"
ip netns exec e2e-srv openvpn --config "$work/server.conf" --daemon e2e-server \
    --writepid "$work/server.pid" --log "$work/server.log"
wait_for 10 ip -n e2e-srv addr show dev tun0 ||
    { echo "server did not come up"; cat "$work/server.log"; exit 1; }

echo "== accounts, resolv.conf, machine id"
# resolved drops to systemd-resolve; the unpacked package did not create it
getent passwd systemd-resolve >/dev/null || useradd --system --no-create-home systemd-resolve
echo "nameserver 127.0.0.53" >/etc/resolv.conf
[ -s /etc/machine-id ] || head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' >/etc/machine-id

# Activation files for a bus run by root without the setuid launch helper:
# the packages' own Exec lines, each under its own User= (setpriv), exactly
# as the helper would start them.
make_services() {
    rm -f "$work/services"/*.service
    local f name exe user
    for f in /usr/share/dbus-1/system-services/*.service; do
        name=$(sed -n 's/^Name=//p' "$f")
        exe=$(sed -n 's/^Exec=//p' "$f")
        user=$(sed -n 's/^User=//p' "$f")
        case $name in org.freedesktop.PolicyKit1 | net.openvpn.v3.*) ;; *) continue ;; esac
        {
            echo "[D-BUS Service]"
            echo "Name=$name"
            if [ -z "$user" ] || [ "$user" = root ]; then
                echo "Exec=$exe"
            else
                echo "Exec=/usr/bin/setpriv --reuid=$user --regid=$user --init-groups $exe"
            fi
        } >"$work/services/$(basename "$f")"
    done
}
make_services

echo "== private system bus at /run/dbus/system_bus_socket (the client's default)"
sed -e '/<user>/d' -e '/<fork\/>/d' -e '/<servicehelper>/d' -e '/<pidfile>/d' -e '/<syslog\/>/d' \
    -e "s#<standard_system_servicedirs/>#<servicedir>$work/services</servicedir>#" \
    -e 's#<includedir>system.d</includedir>#<includedir>/usr/share/dbus-1/system.d</includedir>#' \
    -e 's#</busconfig>#<includedir>/opt/resolved-root/usr/share/dbus-1/system.d</includedir></busconfig>#' \
    /usr/share/dbus-1/system.conf >"$work/bus.conf"
# dbus-daemon as root in a container cannot raise its fd limit; harmless
# The services it starts write their output to its stdout and stderr.
dbus-daemon --config-file="$work/bus.conf" --nofork --nosyslog \
    > >(grep --line-buffered -v 'Failed to set fd limit' >"$work/bus.log") 2>&1 &
bus_pid=$!
wait_for 10 test -S /run/dbus/system_bus_socket || { echo "bus did not start"; exit 1; }
owner_pid() { # the pid of a name's owner, as the bus knows it
    busctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus \
        GetConnectionUnixProcessID s "$1" 2>/dev/null | awk '{ print $2 }' | grep .
}
/usr/bin/python3 -u "$SRC/tests/e2e/hostname1-stub.py" >"$work/hostname1.log" 2>&1 &
pids+=($!)
mkdir -p /run/systemd
# polkitd must know resolved's actions (the unpacked package's file)
cp /opt/resolved-root/usr/share/polkit-1/actions/*.policy /usr/share/polkit-1/actions/
/opt/resolved-root/usr/lib/systemd/systemd-resolved >"$work/resolved.log" 2>&1 &
pids+=($!)
wait_for 10 grep -q OWNED "$work/hostname1.log" || { echo "hostname1 stub failed"; cat "$work/hostname1.log"; exit 1; }
wait_for 10 owner_pid org.freedesktop.resolve1 || { echo "resolved failed"; cat "$work/resolved.log" "$work/bus.log"; exit 1; }

snapshot() { # everything a session may change, with volatile fields dropped
    ip -o link show | sed 's/^[0-9]*: //; s/ link\/.*//'
    ip -o addr show | sed 's/valid_lft.*//'
    ip route show table all
    ip -6 route show table all | sed 's/ expires [0-9]*sec//'
    ip rule show
    ip -6 rule show
    cat /etc/resolv.conf
    $resolvectl dns 2>&1
    $resolvectl domain 2>&1
}
netcfg_pid() { owner_pid net.openvpn.v3.netcfg; }
tun_dev() { ip -o link show type tun | awk -F': ' 'NR == 1 { print $2 }'; }
stop_netcfg() { # ends the running netcfg service (started by this test's bus)
    local p
    p=$(netcfg_pid)
    [ -n "$p" ] || return 0
    kill "$p"
    wait_for 10 sh -c "! kill -0 $p" || { kill -9 "$p"; sleep 0.2; }
}
import_config() {
    openvpn3 config-remove --config e2e --force >/dev/null 2>&1
    openvpn3 config-import --config "$work/client.ovpn" --name e2e --persistent >/dev/null
}

connect_times=()
# cycle LABEL DNS(yes|no|skip) END(disconnect|kill) ACCOUNT PROGRAM [LEFTOVERS]
# LEFTOVERS=report: what is left is shown, not failed (the reference's run)
cycle() {
    local label=$1 dns=$2 how=$3 account=$4 prog=$5 leftovers=${6:-fail} t0 t1 out dev p uid want session
    echo "-- $label"
    t0=$(now)
    if ! out=$(timeout -k 5 60 openvpn3 session-start --config e2e 2>&1) || ! grep -q "Connected" <<<"$out" ||
        ! session=$(sed -n 's/^Session path: //p' <<<"$out" | grep .); then
        bad "$label: session connects" "$out"
        tail -20 "$work/bus.log"
        return
    fi
    t1=$(now)
    connect_times+=("$(ms "$t0" "$t1")")
    ok "$label: connected in $(ms "$t0" "$t1") ms"
    dev=$(tun_dev)
    check "$label: tun device $dev exists" test -n "$dev"
    check "$label: IPv4 address on $dev" sh -c "ip -4 addr show dev $dev | grep -q 'inet 10.8.0.2/24'"
    check "$label: IPv6 address on $dev" sh -c "ip -6 addr show dev $dev | grep -q 'inet6 fd00:8::1000/64'"
    check "$label: pushed IPv4 route" sh -c "ip route show 10.200.0.0/16 | grep -q 'dev $dev'"
    check "$label: pushed IPv6 route" sh -c "ip -6 route show fd00:200::/64 | grep -q 'dev $dev'"
    check "$label: redirect-gateway /1 routes" sh -c \
        "ip route show 0.0.0.0/1 | grep -q 'dev $dev' && ip route show 128.0.0.0/1 | grep -q 'dev $dev'"
    check "$label: protected host route to the server via the uplink" sh -c \
        "ip route show 198.51.100.2 | grep -q 'via 192.0.2.1 dev up0'"
    check "$label: ping 10.8.0.1 (IPv4, server end)" ping -c1 -W3 10.8.0.1
    check "$label: ping 10.200.0.1 (IPv4, pushed route)" ping -c1 -W3 10.200.0.1
    check "$label: ping fd00:8::1 (IPv6, server end)" ping -6 -c1 -W3 fd00:8::1
    check "$label: ping fd00:200::1 (IPv6, pushed route)" ping -6 -c1 -W3 fd00:200::1
    p=$(netcfg_pid)
    uid=$(awk '/^Uid:/ { print $2 "," $3 "," $4 }' "/proc/$p/status" 2>/dev/null)
    want=$(id -u "$account")
    check "$label: netcfg service runs as $account ($want), read from /proc" test "$uid" = "$want,$want,$want"
    check "$label: netcfg service is $prog" cmp -s "/proc/$p/exe" "$prog"
    if [ "$dns" = skip ]; then
        :
    elif [ "$dns" = yes ]; then
        check "$label: resolved has 10.8.0.1 on $dev" sh -c "$resolvectl dns $dev | grep -q '10.8.0.1'"
        check "$label: resolved has vpn.example on $dev" sh -c "$resolvectl domain $dev | grep -q 'vpn.example'"
    else
        check "$label: resolved has no DNS on $dev" sh -c "! $resolvectl dns $dev | grep -q '10.8.0.1'"
        check "$label: resolv.conf untouched" grep -qx "nameserver 127.0.0.53" /etc/resolv.conf
    fi
    if [ "$how" = kill ]; then
        # the per-session client registers net.openvpn.v3.backends.be<PID>
        p=$(busctl list --no-legend | awk '$1 ~ /^net\.openvpn\.v3\.backends\.be[0-9]+$/ { sub(/.*\.be/, "", $1); print $1; exit }')
        if [ -n "$p" ] && grep -q openvpn3-service-client "/proc/$p/cmdline"; then
            kill -9 "$p"
            ok "$label: client process $p killed (SIGKILL)"
        else
            bad "$label: found the client process" "$(busctl list --no-legend | grep backends)"
        fi
    else
        out=$(timeout -k 5 30 openvpn3 session-manage --session-path "$session" --disconnect 2>&1) ||
            bad "$label: disconnect" "$out"
    fi
    wait_for 15 sh -c "[ -z \"\$(ip -o link show type tun)\" ] && [ -z \"\$(ip route show 198.51.100.2)\" ]"
    out=$(diff <(echo "$base") <(snapshot))
    if [ "$leftovers" = report ]; then
        echo "  note $label: left behind after disconnect: ${out:-nothing}"
        return
    fi
    if [ -z "$out" ]; then ok "$label: nothing left (links, addresses, routes, rules, resolv.conf, resolved)"; else bad "$label: nothing left" "$out"; fi
    check "$label: no protected host route left" test -z "$(ip route show 198.51.100.2)"
}

echo "== 1. drop-in under Debian's activation file and policy"
# The reference's binary path now runs ovpn-netcfgd; Debian's activation
# file (User=root, --state-dir "/var/lib/openvpn3") and policy are unchanged.
mount --bind "$BIN" "$ref"
grep -q '^Exec=/usr/libexec/openvpn3-linux/openvpn3-service-netcfg --state-dir "/var/lib/openvpn3"$' "$svc" &&
    grep -qx 'User=root' "$svc" && ok "Debian's activation file: User=root, --state-dir /var/lib/openvpn3" ||
    bad "Debian's activation file is as expected" "$(cat "$svc")"
# DNS permission comes from our polkit rule alone: Debian's is taken away.
rm -f /usr/share/polkit-1/rules.d/net.openvpn.v3.rules
install -m 0644 "$SRC/dist/polkit/ovpn-netcfgd.rules" /usr/share/polkit-1/rules.d/ovpn-netcfgd.rules
import_config
base=$(snapshot)
cycle "drop-in, DNS as the reference (none)" no disconnect _openvpn "$BIN"
grep -q "running as _openvpn (uid $(id -u _openvpn), the first existing of" "$work/bus.log" &&
    ok "the daemon logged the account it found (_openvpn)" || bad "account choice logged" "$(grep -i 'running as' "$work/bus.log")"
grep -q "no DNS backend unless" "$work/bus.log" && ok "the daemon logged the reference's DNS default" ||
    bad "DNS default logged"
# openvpn3-admin finds the configuration file through the service's
# config_file property, so this also shows it talks to ovpn-netcfgd.
check "openvpn3-admin netcfg-service --config-set works against ovpn-netcfgd" \
    openvpn3-admin netcfg-service --config-set systemd-resolved true
check "openvpn3-admin wrote /var/lib/openvpn3/netcfg.json" grep -q '"systemd_resolved" : true' /var/lib/openvpn3/netcfg.json
stop_netcfg
umount "$ref"

echo "== 2. make install over Debian's package, make uninstall"
sums() { sha256sum "$svc" "$pol" "$ref" 2>&1; }
before=$(sums)
out=$(make -C "$SRC" -f dist/install.mk install BIN="$BIN" 2>&1) && ok "make install" || bad "make install" "$out"
check "Debian's activation file diverted to .distrib" sh -c "dpkg-divert --list '$svc' | grep -q 'by ovpn-netcfgd' && test -f '$svc.distrib'"
check "Debian's policy diverted to .distrib" sh -c "dpkg-divert --list '$pol' | grep -q 'by ovpn-netcfgd' && test -f '$pol.distrib'"
check "the activation file now starts ovpn-netcfgd" grep -q '^Exec=/usr/sbin/ovpn-netcfgd ' "$svc"
check "the reference binary is left installed, not diverted" sh -c "test -x '$ref' && test -z \"\$(dpkg-divert --list '$ref')\""
out=$(systemd-sysusers ovpn-netcfgd.conf 2>&1 && systemd-tmpfiles --create ovpn-netcfgd.conf 2>&1) &&
    ok "sysusers.d and tmpfiles.d applied" || bad "sysusers/tmpfiles" "$out"
# the account the daemon will find: the first of its list that now exists
acct=$(for a in ovpn-netcfgd openvpn _openvpn; do getent passwd $a >/dev/null && { echo $a; break; }; done)
make_services
busctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus ReloadConfig >/dev/null
import_config
for i in $(seq "$CYCLES"); do
    cycle "installed, cycle $i/$CYCLES" yes disconnect "$acct" "$BIN"
done
cycle "installed, client killed mid-session" yes kill "$acct" "$BIN"
grep -q "DNS backend: systemd-resolved (auto)" "$work/bus.log" && ok "installed: DNS on auto found systemd-resolved" ||
    bad "installed: DNS auto -> resolved" "$(grep 'DNS backend' "$work/bus.log")"
stop_netcfg
out=$(make -C "$SRC" -f dist/install.mk uninstall 2>&1) && ok "make uninstall" || bad "make uninstall" "$out"
check "no diversion left" test -z "$(dpkg-divert --list '*net.openvpn.v3.netcfg*')"
after=$(sums)
if [ "$before" = "$after" ]; then ok "Debian's activation file, policy and reference restored byte for byte"; else bad "restored" "$(diff <(echo "$before") <(echo "$after"))"; fi
check "ovpn-netcfgd binary removed" test ! -e /usr/sbin/ovpn-netcfgd
make_services
busctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus ReloadConfig >/dev/null
import_config
cycle "the reference again after uninstall" skip disconnect _openvpn "$ref" report

echo "== 3. which account the daemon takes, with real accounts"
# It switches before it connects to the bus, so an unreachable bus ends
# each run right after the log line that names the account.
mkdir -m 700 "$work/acct"
took() { # took ARGS...: the "running as" line, or the error
    "$BIN" --bus-address unix:path=/nonexistent --state-dir "$work/acct" --dns-backend none "$@" 2>&1 |
        grep -m1 -E 'running as|service accounts'
}
for a in ovpn-netcfgd openvpn; do getent passwd $a >/dev/null && userdel $a; done
out=$(took); grep -q "running as _openvpn (uid $(id -u _openvpn), the first existing of ovpn-netcfgd, openvpn, _openvpn)" <<<"$out" &&
    ok "only _openvpn exists: _openvpn" || bad "only _openvpn exists: _openvpn" "$out"
useradd --system --no-create-home openvpn
out=$(took); grep -q "running as openvpn (uid $(id -u openvpn), the first" <<<"$out" &&
    ok "openvpn and _openvpn exist: openvpn" || bad "openvpn and _openvpn exist: openvpn" "$out"
useradd --system --no-create-home ovpn-netcfgd
out=$(took); grep -q "running as ovpn-netcfgd (uid $(id -u ovpn-netcfgd), the first" <<<"$out" &&
    ok "all three exist: ovpn-netcfgd" || bad "all three exist: ovpn-netcfgd" "$out"
out=$(took --run-as nobody); grep -q "running as nobody (uid $(id -u nobody), --run-as)" <<<"$out" &&
    ok "--run-as nobody overrides" || bad "--run-as nobody overrides" "$out"
userdel -f ovpn-netcfgd; userdel -f openvpn; userdel -f _openvpn 2>/dev/null
out=$(took); grep -q "none of the service accounts ovpn-netcfgd, openvpn, _openvpn exists" <<<"$out" &&
    ok "none exists: refuses to start, and says why" || bad "none exists: refuses" "$out"

echo
echo "connect times (ms): ${connect_times[*]}"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
