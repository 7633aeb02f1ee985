#!/usr/bin/env bash
# Runs dist/openwrt/ovpn-netcfgd.init's start_service twice with procd, uci
# and dnsmasq's init script stubbed, in a private mount namespace (tmpfs on
# /run, /var/lib, /etc/init.d; an `openvpn` account added to a private
# /etc/passwd), and prints what it did: the instance's procd parameters,
# the calls to dnsmasq's init script, and the servers file's owner, mode
# and directory. tests/dnsmasq.rs checks the output. Needs root.
#
#   openwrt-init.sh OUT_DIR
set -euo pipefail

out=$(readlink -f "${1:?out dir}")
init=$(readlink -f "$(dirname "$0")/../dist/openwrt/ovpn-netcfgd.init")

if [ "${2:-}" != inside ]; then
    exec unshare -m "$0" "$out" inside
fi

mount --make-rprivate /
mount -t tmpfs -o mode=755 tmpfs /run
mount -t tmpfs -o mode=755 tmpfs /var/lib
mount -t tmpfs -o mode=755 tmpfs /etc/init.d
# A /sbin/ujail (never run: procd is stubbed) on an overlay of /sbin.
mkdir -p "$out/ov"
mount -t tmpfs tmpfs "$out/ov"
mkdir "$out/ov/upper" "$out/ov/work"
sbin=$(readlink -f /sbin)
mount -t overlay overlay -o "lowerdir=$sbin,upperdir=$out/ov/upper,workdir=$out/ov/work" "$sbin"
printf '#!/bin/sh\nexit 1\n' >/sbin/ujail
chmod 755 /sbin/ujail
grep -v '^openvpn:' /etc/passwd >"$out/passwd"
grep -v '^openvpn:' /etc/group >"$out/group"
echo 'openvpn:x:4711:4711:openvpn:/:/usr/sbin/nologin' >>"$out/passwd"
echo 'openvpn:x:4711:' >>"$out/group"
mkdir -p "$out/etc-ovpn-netcfgd"
printf '{ "log_level": 4 }\n' >"$out/etc-ovpn-netcfgd/netcfg.json"
mount --bind "$out/passwd" /etc/passwd
mount --bind "$out/group" /etc/group
cat >/etc/init.d/dnsmasq <<EOF
#!/bin/sh
echo "dnsmasq \$1" >>"$out/calls"
exit 0
EOF
chmod 755 /etc/init.d/dnsmasq
mkdir -p "$out/bin"
cat >"$out/bin/uci" <<'EOF'
#!/bin/sh
# uci -q get dhcp.@dnsmasq[0].serversfile
[ "$3" = "dhcp.@dnsmasq[0].serversfile" ] && echo /var/run/ovpn-netcfgd/dnsmasq.servers
EOF
chmod 755 "$out/bin/uci"
export PATH="$out/bin:$PATH"

procd_open_instance() { echo "open_instance" >>"$out/procd"; }
procd_close_instance() { echo "close_instance" >>"$out/procd"; }
procd_set_param() { echo "param $*" >>"$out/procd"; }
procd_add_jail() { echo "jail $*" >>"$out/procd"; }
procd_add_jail_mount() { echo "jail_mount $*" >>"$out/procd"; }
procd_add_jail_mount_rw() { echo "jail_mount_rw $*" >>"$out/procd"; }

# The script as rc.common sources it (its first line is then a comment);
# ujail and the capabilities file as on a router.
# shellcheck disable=SC1090
. "$init"
CONF="$out/etc-ovpn-netcfgd/netcfg.json"
CAPS="$out/caps.json"
cp "$(dirname "$init")/ovpn-netcfgd.capabilities" "$CAPS"

# Links planted where root writes: they are replaced, never written through.
echo keep >"$out/victim"
mkdir -p /var/run/ovpn-netcfgd
ln -s "$out/victim" /var/run/ovpn-netcfgd/dnsmasq.servers
start_service
echo "--- second start" >>"$out/procd"
ln -sf "$out/victim" /var/lib/ovpn-netcfgd/netcfg.json
start_service
stat -c 'victim %U %a %s' "$out/victim" >"$out/victim.stat"
stat -c 'file %U %a %s %F' /var/run/ovpn-netcfgd/dnsmasq.servers >"$out/stat"
stat -c 'dir %U %a' /var/run/ovpn-netcfgd >>"$out/stat"
stat -c 'state %U %a' /var/lib/ovpn-netcfgd >>"$out/stat"
stat -c 'conf %U %a %F' /var/lib/ovpn-netcfgd/netcfg.json >>"$out/stat"
