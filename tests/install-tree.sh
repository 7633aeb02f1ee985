#!/usr/bin/env bash
# tests/install-tree.sh: install ovpn-netcfgd into a scratch DESTDIR and
# check the result.
#
#   tests/install-tree.sh            (from anywhere; needs make, sed, install)
#
# Environment:
#   BIN           binary to install (default target/release/ovpn-netcfgd,
#                 or /bin/true when that has not been built)
#   INSTALL_MAKE  command that installs (default: make -f dist/install.mk)
#   KEEP=1        keep the scratch directory and print its path
#
# Every check prints PASS, FAIL or SKIP and a reason.  The last line is
# "N passed, M failed, K skipped"; the exit status is 1 if anything failed.
#
# The D-Bus checks start a private dbus-daemon on a socket in the scratch
# directory, with a configuration that only includes the installed policy
# directory.  The system bus is never contacted.  When run as root they
# also exercise the policy: a stand-in owns net.openvpn.v3.netcfg as
# "nobody" (in a copy of the policy where "openvpn" is replaced by
# "nobody"), and calls from root, nobody and an unnamed UID are checked to
# be delivered or refused.

set -u

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top" || exit 1

pass=0
fail=0
skip=0
ok()   { pass=$((pass + 1)); printf 'PASS: %s\n' "$1"; }
bad()  { fail=$((fail + 1)); printf 'FAIL: %s\n' "$1"; [ $# -gt 1 ] && printf '%s\n' "${@:2}" | sed 's/^/      /'; return 0; }
skp()  { skip=$((skip + 1)); printf 'SKIP: %s\n' "$1"; }
check() { # check DESCRIPTION COMMAND...
	local what=$1; shift
	if "$@" >/dev/null 2>&1; then ok "$what"; else bad "$what"; fi
}
have() { command -v "$1" >/dev/null 2>&1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/ovpn-install-tree.XXXXXX")
dest=$work/root
busdir=$work/bus
bus_pid=
owner_pid=
cleanup() {
	[ -n "$owner_pid" ] && kill "$owner_pid" 2>/dev/null
	[ -n "$bus_pid" ] && kill "$bus_pid" 2>/dev/null
	wait 2>/dev/null
	if [ "${KEEP:-0}" = 1 ]; then echo "kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

BIN=${BIN:-}
if [ -z "$BIN" ]; then
	if [ -x target/release/ovpn-netcfgd ]; then
		BIN=target/release/ovpn-netcfgd
	else
		BIN=/bin/true
		echo "note: target/release/ovpn-netcfgd not built; installing $BIN in its place"
	fi
fi

# --- install -----------------------------------------------------------------
read -r -a install_cmd <<<"${INSTALL_MAKE:-make -f dist/install.mk}"
if "${install_cmd[@]}" install DESTDIR="$dest" BIN="$BIN" >"$work/install.log" 2>&1; then
	ok "make install DESTDIR=<scratch> BIN=$BIN"
else
	bad "make install DESTDIR=<scratch> BIN=$BIN" "$(tail -5 "$work/install.log")"
	echo "$pass passed, $fail failed, $skip skipped"
	exit 1
fi

# --- expected files and modes ------------------------------------------------
sbin=/usr/sbin
declare -A want=(
	["$sbin/ovpn-netcfgd"]=755
	[/usr/share/man/man8/ovpn-netcfgd.8]=644
	[/usr/share/dbus-1/system.d/net.openvpn.v3.netcfg.conf]=644
	[/usr/share/dbus-1/system-services/net.openvpn.v3.netcfg.service]=644
	[/usr/lib/systemd/system/ovpn-netcfgd.service]=644
	[/usr/lib/sysusers.d/ovpn-netcfgd.conf]=644
	[/usr/lib/tmpfiles.d/ovpn-netcfgd.conf]=644
	[/usr/share/polkit-1/rules.d/ovpn-netcfgd.rules]=644
	[/etc/iproute2/rt_protos.d/ovpn-netcfgd.conf]=644
	[/usr/share/doc/ovpn-netcfgd/netcfg.json.example]=644
	[/usr/share/doc/ovpn-netcfgd/THIRD-PARTY.md]=644
)
for f in $(printf '%s\n' "${!want[@]}" | sort); do
	if [ ! -f "$dest$f" ]; then
		bad "installed: $f" "missing"
		continue
	fi
	mode=$(stat -c %a "$dest$f")
	if [ "$mode" = "${want[$f]}" ]; then
		ok "installed: $f (mode $mode)"
	else
		bad "installed: $f" "mode $mode, expected ${want[$f]}"
	fi
done

# Nothing unexpected, no leftover temporary files, no group/world-writable
# entries.
extra=$(cd "$dest" && find . -type f | sed 's|^\.||' | sort | while read -r f; do
	[ -n "${want[$f]+x}" ] || case $f in
		/usr/share/doc/ovpn-netcfgd/LICENSE*|/usr/share/doc/ovpn-netcfgd/COPYING) ;;
		*) echo "$f" ;;
	esac
done)
if [ -z "$extra" ]; then ok "no unexpected files"; else bad "no unexpected files" "$extra"; fi
writable=$(find "$dest" -mindepth 1 -perm /022 ! -type l)
if [ -z "$writable" ]; then ok "nothing group- or world-writable"; else bad "nothing group- or world-writable" "$writable"; fi

if ls "$top"/LICENSE* >/dev/null 2>&1 || [ -e "$top/COPYING" ]; then
	n=$(find "$dest/usr/share/doc/ovpn-netcfgd" -name 'LICENSE*' -o -name COPYING | wc -l)
	if [ "$n" -gt 0 ]; then ok "project licence files installed ($n)"; else bad "project licence files installed"; fi
else
	skp "project licence files installed (no LICENSE* in the source tree yet)"
fi

# --- substitution ------------------------------------------------------------
left=$(grep -rIl '@[A-Z][A-Z_]*@' "$dest" 2>/dev/null)
if [ -z "$left" ]; then ok "no @VAR@ placeholder left"; else bad "no @VAR@ placeholder left" "$left"; fi

act=$dest/usr/share/dbus-1/system-services/net.openvpn.v3.netcfg.service
check "activation file: Name=net.openvpn.v3.netcfg" grep -qx 'Name=net.openvpn.v3.netcfg' "$act"
check "activation file: Exec runs $sbin/ovpn-netcfgd with --state-dir" \
	grep -qE "^Exec=$sbin/ovpn-netcfgd .*--state-dir /var/lib/ovpn-netcfgd" "$act"
check "activation file: User=root" grep -qx 'User=root' "$act"
check "activation file: SystemdService=ovpn-netcfgd.service" grep -qx 'SystemdService=ovpn-netcfgd.service' "$act"

unit=$dest/usr/lib/systemd/system/ovpn-netcfgd.service
check "unit: Type=dbus" grep -qx 'Type=dbus' "$unit"
check "unit: BusName=net.openvpn.v3.netcfg" grep -qx 'BusName=net.openvpn.v3.netcfg' "$unit"
check "unit: ExecStart=$sbin/ovpn-netcfgd ... --state-dir" \
	grep -qE "^ExecStart=$sbin/ovpn-netcfgd .*--state-dir /var/lib/ovpn-netcfgd" "$unit"
check "unit: state directory writable" grep -qx 'ReadWritePaths=/var/lib/ovpn-netcfgd' "$unit"
check "tmpfiles: state directory 0700 root" \
	grep -qE '^d /var/lib/ovpn-netcfgd 0700 root root' "$dest/usr/lib/tmpfiles.d/ovpn-netcfgd.conf"
check "rt_protos.d: 79 ovpn-netcfgd" \
	grep -qE '^79[[:space:]]+ovpn-netcfgd$' "$dest/etc/iproute2/rt_protos.d/ovpn-netcfgd.conf"

# Without a unit directory the activation file must not name a unit.
if "${install_cmd[@]}" install DESTDIR="$work/nosystemd" BIN="$BIN" SYSTEMD_UNIT_DIR= >/dev/null 2>&1 &&
	[ ! -e "$work/nosystemd/usr/lib/systemd/system/ovpn-netcfgd.service" ] &&
	! grep -q '^SystemdService=' "$work/nosystemd/usr/share/dbus-1/system-services/net.openvpn.v3.netcfg.service"; then
	ok "SYSTEMD_UNIT_DIR= installs no unit and no SystemdService= line"
else
	bad "SYSTEMD_UNIT_DIR= installs no unit and no SystemdService= line"
fi

# --- file syntax -------------------------------------------------------------
if have python3; then
	check "netcfg.json.example is valid JSON" \
		python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$dest/usr/share/doc/ovpn-netcfgd/netcfg.json.example"
	check "D-Bus policy is well-formed XML" \
		python3 -c 'import sys, xml.dom.minidom as m; m.parse(sys.argv[1])' "$dest/usr/share/dbus-1/system.d/net.openvpn.v3.netcfg.conf"
else
	skp "JSON and XML syntax (no python3)"
fi
if have node; then
	cp "$dest/usr/share/polkit-1/rules.d/ovpn-netcfgd.rules" "$work/rules.js"
	check "polkit rules parse as JavaScript" node --check "$work/rules.js"
else
	skp "polkit rules syntax (no node)"
fi
if have groff; then
	out=$(groff -man -Tutf8 -ww -z "$dest/usr/share/man/man8/ovpn-netcfgd.8" 2>&1)
	if [ -z "$out" ]; then ok "man page: groff -ww reports nothing"; else bad "man page: groff -ww reports nothing" "$out"; fi
else
	skp "man page groff check (no groff)"
fi
if have mandoc; then
	out=$(mandoc -Tlint -W warning "$dest/usr/share/man/man8/ovpn-netcfgd.8" 2>&1)
	if [ -z "$out" ]; then ok "man page: mandoc -Tlint reports nothing"; else bad "man page: mandoc -Tlint reports nothing" "$out"; fi
else
	skp "man page mandoc lint (no mandoc)"
fi
if have systemd-analyze; then
	# verify wants the ExecStart binary and the man page to exist: point
	# both into the scratch tree.
	mkdir -p "$work/units"
	sed "s|$sbin/ovpn-netcfgd|$dest$sbin/ovpn-netcfgd|" "$unit" >"$work/units/ovpn-netcfgd.service"
	if out=$(MANPATH="$dest/usr/share/man:" systemd-analyze verify "$work/units/ovpn-netcfgd.service" 2>&1); then
		ok "systemd-analyze verify"
	else
		bad "systemd-analyze verify" "$out"
	fi
	score=$(systemd-analyze security --offline=true "$work/units/ovpn-netcfgd.service" 2>/dev/null |
		sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
	if [ -n "$score" ] && awk -v s="$score" 'BEGIN { exit !(s <= 3.0) }'; then
		ok "systemd-analyze security exposure $score (<= 3.0)"
	elif [ -n "$score" ]; then
		bad "systemd-analyze security exposure $score (<= 3.0)"
	else
		skp "systemd-analyze security (no --offline support)"
	fi
else
	skp "systemd-analyze verify (not installed)"
fi

if have systemd-sysusers && have systemd-tmpfiles; then
	# Both run against a scratch root, never the real /etc or /var.
	sroot=$work/sysroot
	mkdir -p "$sroot/etc"
	: >"$sroot/etc/passwd"; : >"$sroot/etc/group"
	if out=$(systemd-sysusers --root="$sroot" "$dest/usr/lib/sysusers.d/ovpn-netcfgd.conf" 2>&1) &&
		grep -q '^ovpn-netcfgd:' "$sroot/etc/passwd" && grep -q '^openvpn:' "$sroot/etc/passwd"; then
		ok "sysusers.d creates the ovpn-netcfgd and openvpn users"
	else
		bad "sysusers.d creates the ovpn-netcfgd and openvpn users" "$out"
	fi
	if out=$(systemd-tmpfiles --root="$sroot" --create "$dest/usr/lib/tmpfiles.d/ovpn-netcfgd.conf" 2>&1) &&
		[ "$(stat -c %a:%u "$sroot/var/lib/ovpn-netcfgd" 2>/dev/null)" = 700:0 ]; then
		ok "tmpfiles.d creates the state directory 0700 root"
	else
		bad "tmpfiles.d creates the state directory 0700 root" "$out"
	fi
else
	skp "sysusers.d / tmpfiles.d (systemd tools not installed)"
fi

# --- D-Bus: the bus daemon accepts the policy --------------------------------
start_bus() { # start_bus POLICYDIR [SERVICEDIR] -> sets bus_pid, bus_addr
	mkdir -p "$busdir"
	chmod 0755 "$work" "$busdir"
	cat >"$busdir/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$busdir/socket</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
  </policy>
  <includedir>$1</includedir>
  ${2:+<servicedir>$2</servicedir>}
</busconfig>
EOF
	rm -f "$busdir/socket"
	dbus-daemon --config-file="$busdir/bus.conf" --nofork --nosyslog --nopidfile \
		--print-address=1 >"$busdir/address" 2>"$busdir/stderr" &
	bus_pid=$!
	for _ in $(seq 50); do
		[ -s "$busdir/address" ] && break
		kill -0 "$bus_pid" 2>/dev/null || break
		sleep 0.1
	done
	bus_addr=$(head -n1 "$busdir/address" 2>/dev/null)
	[ -n "$bus_addr" ]
}
stop_bus() {
	[ -n "$owner_pid" ] && kill "$owner_pid" 2>/dev/null && wait "$owner_pid" 2>/dev/null
	owner_pid=
	[ -n "$bus_pid" ] && kill "$bus_pid" 2>/dev/null && wait "$bus_pid" 2>/dev/null
	bus_pid=
}

if have dbus-daemon; then
	if start_bus "$dest/usr/share/dbus-1/system.d" "$dest/usr/share/dbus-1/system-services"; then
		# An unknown user name ("ovpn-netcfgd", "openvpn", "_openvpn" on a build machine) and an fd
		# limit a container will not raise are only warnings; anything
		# else on stderr is a problem with the file.
		noise=$(grep -v -e 'Unknown username "openvpn"' -e 'Unknown username "_openvpn"' \
			-e 'Unknown username "ovpn-netcfgd"' -e 'Failed to set fd limit' "$busdir/stderr")
		if [ -z "$noise" ]; then
			ok "private dbus-daemon accepts the installed policy"
		else
			bad "private dbus-daemon accepts the installed policy" "$noise"
		fi
		# The activation file parses and names the service (nothing is
		# started: that would need the setuid launch helper).
		if have dbus-send && dbus-send --bus="$bus_addr" --print-reply --dest=org.freedesktop.DBus \
			/org/freedesktop/DBus org.freedesktop.DBus.ListActivatableNames 2>&1 |
			grep -q '"net.openvpn.v3.netcfg"'; then
			ok "private dbus-daemon lists net.openvpn.v3.netcfg as activatable"
		else
			bad "private dbus-daemon lists net.openvpn.v3.netcfg as activatable"
		fi
	else
		bad "private dbus-daemon accepts the installed policy" "$(cat "$busdir/stderr")"
	fi
	stop_bus
else
	skp "dbus-daemon policy check (dbus-daemon not installed)"
fi

# --- D-Bus: what the policy lets through (root only) -------------------------
# A stand-in service: connects as the current (dropped) user, owns the name,
# reads and ignores every call.  Allowed calls therefore end in NoReply,
# refused ones in AccessDenied from the bus.
cat >"$work/owner.py" <<'EOF'
import os, socket, struct, sys, time

def pad(buf, n):
    return buf + b"\0" * (-len(buf) % n)

def s(v):
    b = v.encode()
    return struct.pack("<I", len(b)) + b + b"\0"

def field(code, sig, val):
    return pad(struct.pack("<B", code) + struct.pack("<B", len(sig)) + sig.encode() + b"\0", 4) + val

def call(serial, path, iface, member, dest, sig="", body=b""):
    fields = [field(1, "o", s(path)), field(2, "s", s(iface)),
              field(3, "s", s(member)), field(6, "s", s(dest))]
    if sig:
        fields.append(field(8, "g", struct.pack("<B", len(sig)) + sig.encode() + b"\0"))
    arr = b""
    for f in fields:
        arr = pad(arr, 8) + f
    head = struct.pack("<cBBBII", b"l", 1, 0, 1, len(body), serial) + struct.pack("<I", len(arr)) + arr
    return pad(head, 8) + body

def read_msg(sk):
    def take(n):
        b = b""
        while len(b) < n:
            c = sk.recv(n - len(b))
            if not c:
                sys.exit(0)
            b += c
        return b
    fixed = take(16)
    body_len, = struct.unpack("<I", fixed[4:8])
    f_len, = struct.unpack("<I", fixed[12:16])
    rest = take(f_len + (-(16 + f_len) % 8) + body_len)
    return fixed[1], rest[len(rest) - body_len:]

path = sys.argv[1]
sk = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sk.connect(path)
sk.sendall(b"\0AUTH EXTERNAL " + str(os.getuid()).encode().hex().encode() + b"\r\n")
if not sk.recv(256).startswith(b"OK"):
    sys.exit("auth failed")
sk.sendall(b"BEGIN\r\n")
sk.sendall(call(1, "/org/freedesktop/DBus", "org.freedesktop.DBus", "Hello", "org.freedesktop.DBus"))
sk.sendall(call(2, "/org/freedesktop/DBus", "org.freedesktop.DBus", "RequestName",
                "org.freedesktop.DBus", "su", pad(s("net.openvpn.v3.netcfg"), 4) + struct.pack("<I", 4)))
replies = 0
while replies < 2:
    mtype, body = read_msg(sk)
    if mtype == 3:
        sys.exit("error from the bus while taking the name")
    if mtype == 2:
        replies += 1
        if replies == 2:
            if struct.unpack("<I", body[:4])[0] != 1:
                sys.exit("name not owned")
print("OWNED", flush=True)
while True:
    read_msg(sk)
EOF

# The stand-in runs as nobody, so it needs a Python that user can execute
# (not one under /root, as pyenv shims are).
# "other" is any further existing account: the bus drops connections from a
# UID that has no passwd entry.
py=
other_user=
for u in daemon bin sys games man lp mail news; do
	if id "$u" >/dev/null 2>&1 && [ "$(id -u "$u")" != 0 ] && [ "$u" != nobody ]; then
		other_user=$u; break
	fi
done
if [ "$(id -u)" = 0 ] && have setpriv && id nobody >/dev/null 2>&1; then
	for c in /usr/bin/python3 /usr/local/bin/python3 "$(command -v python3 2>/dev/null)"; do
		[ -n "$c" ] && [ -x "$c" ] || continue
		if setpriv --reuid="$(id -u nobody)" --regid="$(id -g nobody)" --clear-groups \
			"$c" -c pass >/dev/null 2>&1; then py=$c; break; fi
	done
fi
if [ "$(id -u)" != 0 ]; then
	skp "policy behaviour checks (need root to act as several users)"
elif ! have dbus-daemon || ! have dbus-send || ! have setpriv || [ -z "$py" ] || [ -z "$other_user" ]; then
	skp "policy behaviour checks (need dbus-daemon, dbus-send, setpriv, users nobody and daemon, and a python3 they can run)"
else
	mkdir -p "$work/policy"
	sed 's/user="openvpn"/user="nobody"/' "$dest/usr/share/dbus-1/system.d/net.openvpn.v3.netcfg.conf" \
		>"$work/policy/net.openvpn.v3.netcfg.conf"
	chmod 0755 "$work/policy"
	if ! start_bus "$work/policy"; then
		bad "policy behaviour: private bus starts" "$(cat "$busdir/stderr")"
	else
		nobody_uid=$(id -u nobody)
		nobody_gid=$(id -g nobody)
		as_nobody=(setpriv --reuid="$nobody_uid" --regid="$nobody_gid" --clear-groups)
		as_other=(setpriv --reuid="$(id -u "$other_user")" --regid="$(id -g "$other_user")" --clear-groups)
		"${as_nobody[@]}" "$py" "$work/owner.py" "$busdir/socket" >"$work/owner.out" 2>&1 &
		owner_pid=$!
		for _ in $(seq 50); do grep -q OWNED "$work/owner.out" 2>/dev/null && break; sleep 0.1; done
		if ! grep -q OWNED "$work/owner.out"; then
			bad "policy behaviour: nobody (as openvpn) owns net.openvpn.v3.netcfg" "$(cat "$work/owner.out")"
		else
			ok "policy behaviour: the openvpn user may own net.openvpn.v3.netcfg"
			dev=/net/openvpn/v3/netcfg/1234_test
			# expect WHO ALLOW|DENY PATH IFACE.MEMBER [ARGS...]
			expect() {
				local who=$1 want=$2 objpath=$3 member=$4; shift 4
				local -a runner=()
				case $who in
					root) runner=() ;;
					openvpn) runner=("${as_nobody[@]}") ;;
					other) runner=("${as_other[@]}") ;;
				esac
				local out got
				out=$("${runner[@]}" dbus-send --bus="$bus_addr" --print-reply --reply-timeout=400 \
					--dest=net.openvpn.v3.netcfg "$objpath" "$member" "$@" 2>&1)
				case $out in
					*"Failed to open connection"*|*"Failed to register"*) got="?($out)" ;;
					*org.freedesktop.DBus.Error.AccessDenied*) got=DENY ;;
					*org.freedesktop.DBus.Error.NoReply*) got=ALLOW ;;
					*) got="?($out)" ;;
				esac
				if [ "$got" = "$want" ]; then
					ok "policy: $who ${member##*.} on $objpath -> $want"
				else
					bad "policy: $who ${member##*.} on $objpath -> $want" "got $got"
				fi
			}
			nc=net.openvpn.v3.netcfg
			# openvpn user: the client
			expect openvpn ALLOW /net/openvpn/v3/netcfg $nc.CreateVirtualInterface string:x
			expect openvpn ALLOW /net/openvpn/v3/netcfg $nc.ProtectSocket string:1.2.3.4 boolean:false objpath:/
			expect openvpn ALLOW /net/openvpn/v3/netcfg $nc.Cleanup
			expect openvpn ALLOW $dev $nc.AddNetworks
			expect openvpn ALLOW $dev $nc.Establish
			expect openvpn ALLOW $dev $nc.Destroy
			expect openvpn ALLOW $dev/dco $nc.NewPeer
			expect openvpn ALLOW $dev/dco $nc.GetPipeFD
			expect openvpn ALLOW /net/openvpn/v3 org.freedesktop.DBus.Introspectable.Introspect
			expect openvpn ALLOW /net/openvpn/v3/netcfg org.freedesktop.DBus.Properties.GetAll string:$nc
			expect openvpn ALLOW $dev org.freedesktop.DBus.Properties.Set string:$nc string:mtu variant:uint16:1400
			expect openvpn DENY /net/openvpn/v3/netcfg $nc.FetchInterfaceList
			expect openvpn DENY /net/openvpn/v3/netcfg $nc.NotificationSubscriberList
			expect openvpn DENY $dev $nc.AddBypassRoute
			expect openvpn DENY $dev $nc.GetDNSSEC
			# root: administration and device methods, not the client role
			expect root ALLOW /net/openvpn/v3/netcfg $nc.FetchInterfaceList
			expect root ALLOW /net/openvpn/v3/netcfg $nc.NotificationSubscriberList
			expect root ALLOW /net/openvpn/v3/netcfg $nc.NotificationSubscribe uint32:1
			expect root ALLOW $dev $nc.Destroy
			expect root ALLOW $dev $nc.Disable
			expect root ALLOW $dev org.freedesktop.DBus.Properties.GetAll string:$nc
			expect root DENY /net/openvpn/v3/netcfg $nc.CreateVirtualInterface string:x
			expect root DENY /net/openvpn/v3/netcfg $nc.ProtectSocket string:1.2.3.4 boolean:false objpath:/
			expect root DENY $dev/dco $nc.NewPeer
			expect root DENY $dev $nc.NotificationSubscriberList
			# anyone else: look, do not touch
			expect other ALLOW /net/openvpn/v3/netcfg org.freedesktop.DBus.Introspectable.Introspect
			expect other ALLOW /net/openvpn/v3/netcfg org.freedesktop.DBus.Properties.Get string:$nc string:version
			expect other ALLOW / org.freedesktop.DBus.Peer.Ping
			expect other DENY /net/openvpn/v3/netcfg org.freedesktop.DBus.Properties.GetAll string:$nc
			expect other DENY /net/openvpn/v3/netcfg org.freedesktop.DBus.Properties.Set string:$nc string:log_level variant:uint32:6
			expect other DENY $dev org.freedesktop.DBus.Introspectable.Introspect
			expect other DENY /net/openvpn/v3/netcfg $nc.CreateVirtualInterface string:x
			expect other DENY /net/openvpn/v3/netcfg $nc.NotificationSubscribe uint32:1
			expect other DENY $dev $nc.Destroy
		fi
		# Only the openvpn user may own the name.
		out=$("${as_other[@]}" "$py" "$work/owner.py" "$busdir/socket" 2>&1)
		case $out in
			*"error from the bus"*) ok "policy: another user may not own net.openvpn.v3.netcfg" ;;
			*) bad "policy: another user may not own net.openvpn.v3.netcfg" "$out" ;;
		esac
	fi
	stop_bus
fi

# --- uninstall ---------------------------------------------------------------
if "${install_cmd[@]}" uninstall DESTDIR="$dest" >"$work/uninstall.log" 2>&1; then
	left=$(find "$dest" -type f)
	if [ -z "$left" ]; then ok "make uninstall removes every installed file"; else bad "make uninstall removes every installed file" "$left"; fi
else
	bad "make uninstall" "$(tail -5 "$work/uninstall.log")"
fi

echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
