#!/bin/bash
# tests/dco-vm/setup-ovpn.sh - the rig's second guest kernel: Debian's trixie-backports kernel
# (Linux >= 6.16), which ships the upstream `ovpn` module (drivers/net/ovpn). setup.sh runs
# it after its own work; run-in-vm.sh boots it with DCO_VM_FAMILY=ovpn. Idempotent.
#
# The kernel is only downloaded (`apt-get download`, through a private apt configuration in the
# cache: the system's apt sources are not touched) and unpacked. Since ~6.19 Debian splits it
# into linux-binary-K (the bzImage) and linux-modules-K (the modules, under /usr/lib/modules,
# without modules.dep: depmod runs here).
#
#   ${DCO_VM_CACHE:-/var/tmp/ovpn-netcfgd-dco-vm}/ovpn/
#     kver, apt/, debs/       the release in use, private apt lists, downloads (deleted after use)
#     <kver>/root/            the unpacked kernel;  <kver>/moddir: its lib/modules directory
#     <kver>/initramfs.cpio, vmlinux, vmlinuz, ready (stamp of a complete setup)
#
# Knobs: DCO_VM_OVPN_KVER  the release, e.g. 7.3.4+deb13-amd64 (default: the cached one, else
#                          the one trixie-backports' linux-image-amd64 points to)
#        DCO_VM_FORCE=1    rebuild the initramfs
set -euo pipefail

HERE=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
TOP=${DCO_VM_CACHE:-/var/tmp/ovpn-netcfgd-dco-vm}
CACHE=$TOP/ovpn
FORCE=${DCO_VM_FORCE:-}
export DEBIAN_FRONTEND=noninteractive LC_ALL=C

say() { printf '[dco-vm setup ovpn %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
# shellcheck source=tests/dco-vm/lib.sh
. "$HERE/lib.sh"

[ "$(id -u)" = 0 ] || die "must run as root"
mkdir -p "$CACHE/debs"
exec 8>"$CACHE/.setup.lock"
flock 8

# Required modules and, marked '?', those that exist only in some releases (the x86 crypto
# glue moved into lib/crypto around 6.17-7.x).
BOOT_MODULES="9pnet_virtio 9p overlay tun udp_tunnel ip6_udp_tunnel ovpn gcm ctr seqiv aesni_intel
              chacha20poly1305 ?chacha ?chacha_generic ?chacha_x86_64 ?poly1305_generic
              ?poly1305_x86_64 ?ghash_generic ?ghash_clmulni_intel ?cryptd ?crypto_simd
              ?libchacha20poly1305"
busybox_bin=$(readlink -f /usr/bin/busybox)
stamp=$( { cat "$0" "$HERE/lib.sh"; echo "cache=$CACHE"
	   dpkg-query -W -f='${Version}' busybox-static 2>/dev/null || true; } | sha256sum | cut -c1-16)

KVER=${DCO_VM_OVPN_KVER:-$(cat "$CACHE/kver" 2>/dev/null || true)}
if [ -z "$FORCE" ] && [ -n "$KVER" ] && [ "$(cat "$CACHE/$KVER/ready" 2>/dev/null)" = "$stamp" ]; then
	[ "$(cat "$CACHE/kver")" = "$KVER" ] || echo "$KVER" > "$CACHE/kver"
	say "up to date: kernel $KVER"
	exit 0
fi

A=$CACHE/apt
mkdir -p "$A/lists/partial" "$A/cache/archives/partial"
echo 'deb http://deb.debian.org/debian trixie-backports main' > "$A/sources.list"
AO=(-o "Dir::Etc::sourcelist=$A/sources.list" -o Dir::Etc::sourceparts=- -o "Dir::State::Lists=$A/lists"
    -o "Dir::Cache=$A/cache" -o APT::Sandbox::User=root -o Debug::NoLocking=1)
# trixie-backports is signed by the trixie archive keys, which an older host may not have:
# fall back to an unverified index only when verification is impossible.
apt_update() {
	[ -n "${APT_DONE:-}" ] && return 0
	say "apt-get update (private lists: trixie-backports)"
	if ! apt-get "${AO[@]}" -qq update >&2; then
		say "verification failed; retrying with [trusted=yes]"
		echo 'deb [trusted=yes] http://deb.debian.org/debian trixie-backports main' > "$A/sources.list"
		apt-get "${AO[@]}" -qq update >&2 || die "apt-get update (trixie-backports) failed"
	fi
	APT_DONE=1
}
# (grep -c, not -q: with pipefail an early grep exit would fail the pipeline through SIGPIPE)
have_pkg() { [ "$(apt-cache "${AO[@]}" show "$1" 2>/dev/null | grep -c '^Package:')" -gt 0 ]; }

if [ -z "$KVER" ]; then
	apt_update
	KVER=$(apt-cache "${AO[@]}" depends linux-image-amd64 2>/dev/null \
		| sed -n 's/^ *Depends: linux-image-\([0-9][^ ]*-amd64\)$/\1/p' | head -1)
	[ -n "$KVER" ] || die "cannot tell which kernel trixie-backports' linux-image-amd64 points to (set DCO_VM_OVPN_KVER)"
fi
case "$KVER" in *-amd64) ;; *) die "DCO_VM_OVPN_KVER must look like 7.3.4+deb13-amd64, got $KVER" ;; esac
KDIR=$CACHE/$KVER
ROOT=$KDIR/root
say "kernel $KVER (cache $KDIR)"

if [ ! -f "$ROOT/.complete" ]; then
	apt_update
	if have_pkg "linux-modules-$KVER"; then
		bin=linux-binary-$KVER
		have_pkg "$bin" || bin=linux-binary-unsigned-$KVER
		pkgs="$bin linux-modules-$KVER"
	elif have_pkg "linux-image-$KVER-unsigned"; then
		pkgs="linux-image-$KVER-unsigned"
	else
		die "no kernel packages for $KVER in trixie-backports"
	fi
	say "downloading: $pkgs"
	# shellcheck disable=SC2086
	(cd "$CACHE/debs" && apt-get "${AO[@]}" -q download $pkgs >&2) || die "apt-get download failed"
	say "unpacking"
	rm -rf "$ROOT"; mkdir -p "$ROOT"
	for p in $pkgs; do dpkg-deb -x "$(ls "$CACHE/debs/${p}_"*.deb | sort -V | tail -1)" "$ROOT"; done
	for p in $pkgs; do rm -f "$CACHE/debs/${p}_"*.deb; done
	touch "$ROOT/.complete"
fi
# the module tree root for modprobe -d / depmod -b: <KROOT>/lib/modules/$KVER
if [ -d "$ROOT/usr/lib/modules/$KVER" ]; then KROOT=$ROOT/usr; else KROOT=$ROOT; fi
MODDIR=$KROOT/lib/modules/$KVER
[ -d "$MODDIR/kernel" ] || die "no modules in $MODDIR"
BZ=$(ls "$ROOT/boot/vmlinuz-$KVER" "$MODDIR/vmlinuz" 2>/dev/null | head -1 || true)
[ -n "$BZ" ] || die "no vmlinuz for $KVER"
if [ ! -f "$MODDIR/modules.dep.bin" ]; then
	say "depmod (every module is decompressed once: up to a minute)"
	depmod -b "$KROOT" "$KVER"
fi
grep -q 'drivers/net/ovpn/ovpn\.ko' "$MODDIR/modules.dep" || die "kernel $KVER has no drivers/net/ovpn module"

IMG=$KDIR/initramfs.cpio
say "building the initramfs"
# shellcheck disable=SC2086
mk_initramfs "$IMG" "$KROOT" "$KVER" "$busybox_bin" $BOOT_MODULES
ln -sfn "$BZ" "$KDIR/vmlinuz"
extract_vmlinux "$BZ" "$KDIR/vmlinux"
echo "$KROOT/lib/modules" > "$KDIR/moddir"
echo "$KVER" > "$CACHE/kver"
echo "$stamp" > "$KDIR/ready"
say "ready: kernel $KVER, initramfs $(du -h "$IMG" | cut -f1), cache $CACHE ($(du -sh "$CACHE" | cut -f1))"
