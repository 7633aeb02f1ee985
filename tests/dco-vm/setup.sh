#!/bin/bash
# tests/dco-vm/setup.sh - prepare the ovpn-dco-v2 qemu test rig (idempotent).
#
# Everything comes from Debian's package archive through apt-get:
#   * host tools (qemu-system-x86, busybox-static, the kernel module toolchain) are installed;
#   * Debian's 6.12 kernel image + headers and the openvpn-dco-dkms source are only
#     downloaded (`apt-get download`) and unpacked into the cache - nothing is installed
#     into /boot, /lib/modules or /usr/src, and no initramfs hooks run on the host;
#   * ovpn-dco-v2.ko is built from the dkms source (plus patches/*.patch) against the
#     unpacked headers;
#   * a small uncompressed initramfs (busybox + the modules the rig needs) is assembled.
#
# The cache lives outside the repository, so another clone reuses it:
#   ${DCO_VM_CACHE:-/var/tmp/ovpn-netcfgd-dco-vm}/
#     debs/                 downloaded .deb files
#     kver                  the kernel release run-in-vm.sh uses
#     accel                 kvm or tcg (probed once)
#     <kver>/root/          unpacked kernel image, modules (+ ovpn-dco-v2 in updates/), headers
#     <kver>/ovpn-dco-*/    patched module source and build
#     <kver>/initramfs.cpio the guest's initramfs;  <kver>/ready: stamp of a complete setup
#
# Knobs: DCO_VM_CACHE   cache directory (see above)
#        DCO_VM_KVER    kernel release to use, e.g. 6.12.117+deb12-amd64 (default: the one
#                       already in the cache, else the one linux-headers-6.12-amd64 points to)
#        DCO_VM_FORCE=1 rebuild module and initramfs (and re-probe KVM) even if up to date
# A re-run with nothing to do takes well under a second.
set -euo pipefail

HERE=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
CACHE=${DCO_VM_CACHE:-/var/tmp/ovpn-netcfgd-dco-vm}
FORCE=${DCO_VM_FORCE:-}
export DEBIAN_FRONTEND=noninteractive LC_ALL=C

say() { printf '[dco-vm setup %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
# shellcheck source=tests/dco-vm/lib.sh
. "$HERE/lib.sh"

[ "$(id -u)" = 0 ] || die "must run as root (installs packages with apt-get)"
mkdir -p "$CACHE/debs"
exec 9>"$CACHE/.setup.lock"
flock 9   # concurrent setups (parallel CI jobs) wait for each other

# Host packages. gcc-12/pahole/libelf1/libssl3/zlib1g are what linux-kbuild-6.12 needs.
HOST_PKGS="qemu-system-x86 busybox-static gcc-12 make libc6-dev binutils kmod cpio xz-utils zstd
           patch pahole libelf1 libssl3 zlib1g"
# Modules put into the initramfs and loaded at boot (dependencies are added automatically).
BOOT_MODULES="9pnet_virtio 9p overlay tun udp_tunnel ip6_udp_tunnel
              cryptd crypto_simd gcm ghash_generic ghash_clmulni_intel aesni_intel
              chacha20poly1305 chacha_generic chacha_x86_64 poly1305_generic poly1305_x86_64
              ovpn-dco-v2"

# What a complete build depends on: this script, the patches, busybox, the cache path.
make_stamp() {
	{ cat "$0" "$HERE/lib.sh" "$HERE"/patches/*.patch; echo "cache=$CACHE"
	  dpkg-query -W -f='${Version}' busybox-static 2>/dev/null || true; } | sha256sum | cut -c1-16
}
stamp=$(make_stamp)

missing_pkgs() {
	local p out=""
	for p in $HOST_PKGS; do
		dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || out="$out $p"
	done
	echo "$out"
}

# ---- fast path: nothing to do ------------------------------------------------------------
KVER=${DCO_VM_KVER:-$(cat "$CACHE/kver" 2>/dev/null || true)}
if [ -z "$FORCE" ] && [ -n "$KVER" ] && [ "$(cat "$CACHE/$KVER/ready" 2>/dev/null)" = "$stamp" ] \
	&& [ -f "$CACHE/accel" ] && [ -z "$(missing_pkgs)" ]; then
	[ "$(cat "$CACHE/kver")" = "$KVER" ] || echo "$KVER" > "$CACHE/kver"
	say "up to date: kernel $KVER, accel $(cat "$CACHE/accel"), cache $CACHE"
	exec bash "$HERE/setup-ovpn.sh"   # the second guest kernel (upstream ovpn)
fi

APT_UPDATED=
apt_update() {
	[ -n "$APT_UPDATED" ] && return 0
	say "apt-get update"
	apt-get -o DPkg::Lock::Timeout=600 -qq update >&2 || die "apt-get update failed"
	APT_UPDATED=1
}
# `apt-cache show` fails when the package lists are missing or stale: update once, retry.
apt_known() { apt-cache show "$1" >/dev/null 2>&1 || { apt_update; apt-cache show "$1" >/dev/null 2>&1; }; }

# ---- 1. host packages --------------------------------------------------------------------
# apt never removes anything here (--no-remove). One wrinkle: this machine kind ships
# qemu-utils from <codename>-backports (10.x), which Breaks bookworm's qemu-system-common 7.2.
# Then qemu-system-x86 comes from the same backports suite, through a private apt source
# list and package lists in the cache (the system's apt configuration is left alone).
apt_install() { # [apt options...] -- packages...
	local opts=()
	while [ "$1" != -- ]; do opts+=("$1"); shift; done; shift
	apt-get "${opts[@]}" -o DPkg::Lock::Timeout=600 -y -q --no-install-recommends --no-remove \
		install "$@" >&2 || die "apt-get install $* failed"
}
missing=$(missing_pkgs)
if [ -n "$missing" ]; then
	say "installing:$missing"
	plain="" bpo=""
	qemu_utils_ver=$(dpkg-query -W -f='${db:Status-Status} ${Version}' qemu-utils 2>/dev/null | sed -n 's/^installed //p')
	for p in $missing; do
		case "$p:$qemu_utils_ver" in
			qemu-system-*:*~bpo*) bpo="$bpo $p" ;;
			*) plain="$plain $p" ;;
		esac
	done
	if [ -n "$plain" ]; then
		for p in $plain; do apt_known "$p" || die "package $p not found in the Debian archive"; done
		# shellcheck disable=SC2086
		apt_install -- $plain
	fi
	if [ -n "$bpo" ]; then
		codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
		A=$CACHE/apt
		mkdir -p "$A/lists/partial" "$A/cache/archives/partial"
		printf 'deb http://deb.debian.org/debian %s main\n' \
			"$codename" "$codename-updates" "$codename-backports" > "$A/sources.list"
		printf 'deb http://deb.debian.org/debian-security %s-security main\n' "$codename" >> "$A/sources.list"
		aopt=(-o "Dir::Etc::sourcelist=$A/sources.list" -o Dir::Etc::sourceparts=- -o "Dir::State::lists=$A/lists"
		      -o "Dir::Cache=$A/cache" -o APT::Sandbox::User=root)
		say "qemu-utils $qemu_utils_ver is from $codename-backports: installing$bpo from there too"
		apt-get "${aopt[@]}" -qq update >&2 || die "apt-get update ($codename-backports) failed"
		# shellcheck disable=SC2086
		apt_install "${aopt[@]}" -t "$codename-backports" -- $bpo
		rm -rf "$A/cache"
	fi
fi
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing after install"
busybox_bin=$(readlink -f /usr/bin/busybox)
stamp=$(make_stamp)
file_is_static() { ! LC_ALL=C readelf -l "$1" 2>/dev/null | grep -q 'Requesting program interpreter'; }
file_is_static "$busybox_bin" || die "$busybox_bin is not static (busybox-static expected)"

# ---- 2. kernel release -------------------------------------------------------------------
if [ -z "$KVER" ]; then
	apt_known linux-headers-6.12-amd64 || die "linux-headers-6.12-amd64 not in the archive"
	KVER=$(apt-cache depends linux-headers-6.12-amd64 | sed -n 's/^ *Depends: linux-headers-\(6\.12\.[^ ]*-amd64\)$/\1/p' | head -1)
	[ -n "$KVER" ] || die "cannot tell which 6.12 kernel linux-headers-6.12-amd64 points to"
fi
case "$KVER" in *-amd64) ;; *) die "DCO_VM_KVER must look like 6.12.117+deb12-amd64, got $KVER" ;; esac
KABI=${KVER%-amd64}                 # 6.12.117+deb12: the name of the -common and kbuild packages
KDIR=$CACHE/$KVER
ROOT=$KDIR/root
say "kernel $KVER (cache $KDIR)"
mkdir -p "$KDIR"
[ -n "$FORCE" ] && rm -f "$KDIR/ready"

# ---- 3. download the .debs (once; kept in the cache) -------------------------------------
deb_of() { ls "$CACHE/debs/$1"_*.deb 2>/dev/null | sort -V | tail -1; }
fetch() { # package...
	local p need=""
	for p in "$@"; do [ -n "$(deb_of "$p")" ] || need="$need $p"; done
	[ -z "$need" ] && return 0
	# shellcheck disable=SC2086
	if ! apt-cache show $need >/dev/null 2>&1; then   # one look-up for all; per package on a miss
		for p in $need; do apt_known "$p" || die "package $p not found in the Debian archive"; done
	fi
	say "downloading:$need"
	# shellcheck disable=SC2086
	(cd "$CACHE/debs" && apt-get -q -o APT::Sandbox::User=root download $need >&2) \
		|| die "apt-get download failed"
}
KPKGS="linux-image-$KVER linux-headers-$KVER linux-headers-$KABI-common linux-kbuild-$KABI"
fetch openvpn-dco-dkms

# ---- 4. unpack kernel image, modules and headers -----------------------------------------
if [ ! -f "$ROOT/.complete" ]; then
	# shellcheck disable=SC2086
	fetch $KPKGS
	say "unpacking kernel packages"
	rm -rf "$ROOT"; mkdir -p "$ROOT"
	for p in $KPKGS; do dpkg-deb -x "$(deb_of "$p")" "$ROOT"; done
	# the -amd64 headers' Makefile includes /usr/src/linux-headers-<abi>-common/Makefile by
	# absolute path: point it at the unpacked copy
	sed -i "s#^include /usr/src/#include $ROOT/usr/src/#" "$ROOT/usr/src/linux-headers-$KVER/Makefile"
	rm -f "$ROOT/lib/modules/$KVER/build" "$ROOT/lib/modules/$KVER/source"
	[ -f "$ROOT/boot/vmlinuz-$KVER" ] || die "no vmlinuz in linux-image-$KVER"
	touch "$ROOT/.complete"
	for p in $KPKGS; do rm -f "$(deb_of "$p")"; done   # 124 MB that are not needed any more
fi
KSRC=$ROOT/usr/src/linux-headers-$KVER
MODDIR=$ROOT/lib/modules/$KVER

# ---- 5. build ovpn-dco-v2.ko --------------------------------------------------------------
DKMS_DEB=$(deb_of openvpn-dco-dkms)
SRCNAME=$(dpkg-deb -c "$DKMS_DEB" | sed -n 's#.*\./usr/src/\(ovpn-dco-[^/]*\)/$#\1#p' | head -1)
[ -n "$SRCNAME" ] || die "no /usr/src/ovpn-dco-* in $DKMS_DEB"
SRC=$KDIR/$SRCNAME
KO=$SRC/drivers/net/ovpn-dco/ovpn-dco-v2.ko
mod_stamp=$( { basename "$DKMS_DEB"; cat "$HERE"/patches/*.patch; } | sha256sum | cut -c1-16)
if [ -n "$FORCE" ] || [ ! -f "$KO" ] || [ "$(cat "$SRC/.built" 2>/dev/null)" != "$mod_stamp" ]; then
	say "building $SRCNAME for $KVER"
	rm -rf "$SRC" "$KDIR/dkms.tmp"
	dpkg-deb -x "$DKMS_DEB" "$KDIR/dkms.tmp"
	mv "$KDIR/dkms.tmp/usr/src/$SRCNAME" "$SRC"
	rm -rf "$KDIR/dkms.tmp"
	for p in "$HERE"/patches/*.patch; do
		patch -d "$SRC" -p1 -s --no-backup-if-mismatch < "$p" || die "patch $p failed"
	done
	nice make -C "$SRC" KERNEL_SRC="$KSRC" REVISION="${SRCNAME#ovpn-dco-}" -j"$(nproc)" \
		> "$KDIR/module-build.log" 2>&1 || { tail -40 "$KDIR/module-build.log" >&2; die "module build failed (log: $KDIR/module-build.log)"; }
	[ "$(modinfo -F vermagic "$KO" | cut -d' ' -f1)" = "$KVER" ] || die "built module has the wrong vermagic"
	echo "$mod_stamp" > "$SRC/.built"
	rm -f "$KDIR/ready"
fi
# make it part of the unpacked module tree so that modprobe (host and guest) knows it
mkdir -p "$MODDIR/updates"
cmp -s "$KO" "$MODDIR/updates/ovpn-dco-v2.ko" || { cp "$KO" "$MODDIR/updates/ovpn-dco-v2.ko"; rm -f "$MODDIR/modules.dep"; }
[ -f "$MODDIR/modules.dep" ] || depmod -b "$ROOT" "$KVER"
say "module: ovpn-dco-v2 $(modinfo -F version "$KO"), vermagic $(modinfo -F vermagic "$KO" | cut -d' ' -f1)"

# ---- 6. initramfs and the uncompressed vmlinux for a PVH boot (lib.sh) ----------------------
IMG=$KDIR/initramfs.cpio
if [ ! -f "$IMG" ] || [ "$(cat "$KDIR/ready" 2>/dev/null)" != "$stamp" ]; then
	say "building the initramfs"
	# shellcheck disable=SC2086
	mk_initramfs "$IMG" "$ROOT" "$KVER" "$busybox_bin" $BOOT_MODULES
fi
ln -sfn "root/boot/vmlinuz-$KVER" "$KDIR/vmlinuz"
extract_vmlinux "$ROOT/boot/vmlinuz-$KVER" "$KDIR/vmlinux"
echo "$KVER" > "$CACHE/kver"

# ---- 7. can this machine boot it under KVM? (once) -----------------------------------------
# A Firecracker VM with the PVM flavour of nested KVM (/sys/module/kvm_pvm) has a /dev/kvm
# that cannot run a stock kernel: use TCG there without trying.
if [ -n "$FORCE" ] || [ ! -f "$CACHE/accel" ]; then
	accel=tcg
	if [ -w /dev/kvm ] && [ ! -d /sys/module/kvm_pvm ]; then
		say "trying a KVM boot (<= 30 s)"
		echo "$stamp" > "$KDIR/ready"   # run-in-vm.sh refuses an incomplete setup
		if DCO_VM_ACCEL=kvm DCO_VM_TIMEOUT=30 DCO_VM_RETRIES=0 "$HERE/run-in-vm.sh" true >/dev/null 2>&1; then
			accel=kvm
		fi
	fi
	echo "$accel" > "$CACHE/accel"
fi
echo "$stamp" > "$KDIR/ready"
say "ready: kernel $KVER, initramfs $(du -h "$IMG" | cut -f1), accel $(cat "$CACHE/accel"), cache $CACHE ($(du -sh "$CACHE" | cut -f1))"
exec bash "$HERE/setup-ovpn.sh"   # the second guest kernel (upstream ovpn)
