#!/bin/bash
# tests/dco-vm/e2e.sh - the real OpenVPN 3 Linux client with DCO on, end to end through
# ovpn-netcfgd, in the ovpn-dco-v2 guest of this rig:
#
#   e2e.sh [BIN]          (default target/debug/ovpn-netcfgd; run-tests.sh runs it)
#
# The guest's userland is the Debian root of tests/rigs/o3root (openvpn3-client 27.1,
# openvpn 2.7), shared over 9p and entered through a throwaway overlay (e2e.sh --guest, as
# the guest's command); e2e-inside.sh runs there. Exit status: e2e-inside.sh's; 124 on a
# timeout (DCO_E2E_TIMEOUT, default 900 s).
set -euo pipefail
HERE=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)

if [ "${1:-}" = --guest ]; then   # in the guest, as its command: enter the root, run the test
	ROOT=$2 BIN=$3
	R=/rig/o3
	mkdir -p $R /rig/o3-rw
	# a throwaway copy: the shared root is never written to
	mount -t tmpfs -o mode=755 tmpfs /rig/o3-rw
	mkdir -p /rig/o3-rw/upper /rig/o3-rw/work
	# the programs and libraries in guest memory: under emulation, starting the client's
	# services page by page over 9p is slow enough to trip their own D-Bus time-outs
	for d in usr/libexec/openvpn3-linux usr/lib/x86_64-linux-gnu usr/bin usr/sbin; do
		mkdir -p "/rig/o3-rw/upper/$d"
		cp -a "$ROOT/$d/." "/rig/o3-rw/upper/$d/"
	done
	mount -t overlay -o "lowerdir=$ROOT,upperdir=/rig/o3-rw/upper,workdir=/rig/o3-rw/work" o3 $R
	mount --rbind /proc $R/proc
	mount --rbind /sys $R/sys
	mount --rbind /dev $R/dev
	chmod 666 /dev/net/tun   # as distributions ship it (devtmpfs makes it 0600)
	mount -t tmpfs -o mode=755 tmpfs $R/run
	mount -t tmpfs -o mode=1777 tmpfs $R/tmp
	mkdir -p "$R$TOP" "$R/rig"
	mount --bind "$TOP" "$R$TOP"
	# drop-in: Debian's activation file and policy, our binary at the reference's path
	cp "$BIN" $R/rig/ovpn-netcfgd
	mount --bind $R/rig/ovpn-netcfgd $R/usr/libexec/openvpn3-linux/openvpn3-service-netcfg
	exec chroot $R /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		HOME=/root LANG=C.UTF-8 E2E_OUT="${E2E_OUT:-}" /bin/bash "$HERE/e2e-inside.sh" "$TOP"
fi

BIN=$(readlink -f "${1:-$TOP/target/debug/ovpn-netcfgd}")
[ -x "$BIN" ] || { echo "e2e: no daemon at $BIN (build first)" >&2; exit 2; }
O3_QUIET=1 bash "$TOP/tests/rigs/o3root/setup.sh"
ROOT=$(readlink -f "${O3_ROOT:-/var/tmp/ovpn-netcfgd-o3root}")
# figures and the bus trace are left here
export E2E_OUT=${E2E_OUT:-$TOP/target/dco-e2e}
rm -rf "$E2E_OUT"; mkdir -p "$E2E_OUT"
DCO_VM_FAMILY=ovpn-dco-v2 DCO_VM_SHARE="$ROOT:$(dirname "$BIN")" DCO_VM_ENV="E2E_OUT" DCO_VM_MEM=1536 \
	DCO_VM_TIMEOUT=${DCO_E2E_TIMEOUT:-900} "$HERE/run-in-vm.sh" "$HERE/e2e.sh" --guest "$ROOT" "$BIN"
