# tests/dco-vm/lib.sh - what setup.sh and setup-ovpn.sh share: the guest's initramfs and the
# PVH-bootable vmlinux. Sourced, not run; the caller defines say() and die().

# mk_initramfs IMG MODROOT KVER BUSYBOX MODULES...
# An uncompressed newc initramfs: static busybox, the MODULES (dependencies resolved with
# `modprobe -d MODROOT --show-depends`; a name starting with '?' is optional) decompressed and
# stripped of debug info, BTF and the signature (under TCG that makes loading them ~3x faster,
# at the cost of one "module verification failed" taint), and a stage-1 /init that loads them,
# mounts the per-run control share and hands over to the guest-init.sh that run-in-vm.sh put
# there (so editing guest-init.sh needs no setup run).
mk_initramfs() {
	local img=$1 modroot=$2 kver=$3 busybox=$4 T m opt deps path base l a
	shift 4
	T=$img.d
	rm -rf "$T"
	mkdir -p "$T"/{rig/bin,rig/modules,rig/ctl,rig/kmod,rig/etc-lower,rig/etc-rw,usr,etc,proc,sys,dev,tmp,run,root,home,mnt,opt,srv,var/lib,var/log,var/cache}
	chmod 1777 "$T/tmp"
	# merged-/usr symlinks (/bin, /lib, /lib64, ...) exactly as on the host; the host's
	# /usr is mounted over 9p at boot
	for l in /bin /sbin /lib /lib32 /lib64 /libx32; do
		[ -L "$l" ] && ln -s "$(readlink "$l")" "$T$l"
	done
	ln -s ../tmp "$T/var/tmp"; ln -s ../run "$T/var/run"; ln -s ../run/lock "$T/var/lock"
	cp "$busybox" "$T/rig/busybox"
	for a in $("$busybox" --list); do ln -s ../busybox "$T/rig/bin/$a"; done
	: > "$T/rig/modules/order"
	for m in "$@"; do
		opt=; case "$m" in '?'*) opt=1; m=${m#?} ;; esac
		deps=$(modprobe -d "$modroot" -S "$kver" --show-depends "$m" 2>/dev/null | awk '$1 == "insmod" { print $2 }' || true)
		if [ -z "$deps" ]; then
			[ -n "$opt" ] && continue
			die "module $m not found for $kver"
		fi
		for path in $deps; do
			base=${path##*/}; base=${base%.xz}; base=${base%.zst}; base=${base%.gz}
			grep -qxF "$base" "$T/rig/modules/order" && continue
			case "$path" in
				*.xz) xz -dc "$path" > "$T/rig/modules/$base" ;;
				*.zst) zstd -qdc "$path" > "$T/rig/modules/$base" ;;
				*.gz) gzip -dc "$path" > "$T/rig/modules/$base" ;;
				*) cp "$path" "$T/rig/modules/$base" ;;
			esac
			strip --strip-debug -R .BTF -R .BTF.base "$T/rig/modules/$base"
			echo "$base" >> "$T/rig/modules/order"
		done
	done
	echo dco-vm > "$T/etc/hostname"
	cat > "$T/init" <<'INIT'
#!/rig/busybox sh
export PATH=/rig/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r m; do
	insmod "/rig/modules/$m" 2>/dev/null || echo "dco-vm init: insmod $m failed" > /dev/console
done < /rig/modules/order
if mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 dcovm.ctl /rig/ctl \
	&& [ -f /rig/ctl/guest-init.sh ]; then
	exec /rig/busybox sh /rig/ctl/guest-init.sh
fi
echo "dco-vm init: control share missing" > /dev/console
poweroff -f
INIT
	chmod 0755 "$T/init"
	(cd "$T" && find . -mindepth 1 -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --owner 0:0 --quiet) > "$img.tmp"
	mv -f "$img.tmp" "$img"
	rm -rf "$T"
}

# extract_vmlinux BZIMAGE OUT
# qemu starts an ELF vmlinux with a PVH note directly: no real-mode setup and no in-guest
# decompression, which under TCG saves ~1.5-2 s per boot. The payload of the bzImage is found
# through its boot header (setup_sects at 0x1f1, payload_offset/_length at 0x248/0x24c; the
# last 4 bytes are the appended uncompressed size). run-in-vm.sh falls back to vmlinuz.
extract_vmlinux() {
	local bz=$1 out=$2 setup_sects off len unz
	[ -s "$out" ] && [ ! "$out" -ot "$bz" ] && return 0
	rd() { od -An -tu"$2" -j "$1" -N"$2" "$bz" | tr -d ' '; }
	setup_sects=$(rd $((0x1f1)) 1); [ "$setup_sects" = 0 ] && setup_sects=4
	off=$(( (setup_sects + 1) * 512 + $(rd $((0x248)) 4) )) len=$(( $(rd $((0x24c)) 4) - 4 ))
	case $(od -An -tx1 -j "$off" -N4 "$bz" | tr -d ' ') in
		28b52ffd) unz="zstd -qdc" ;;
		fd377a58) unz="xz -dc" ;;
		1f8b*) unz="gzip -dc" ;;
		*) unz= ;;
	esac
	rm -f "$out"
	if [ -n "$unz" ] && dd if="$bz" bs=1M iflag=skip_bytes,count_bytes skip="$off" count="$len" status=none | $unz > "$out.tmp" 2>/dev/null \
		&& readelf -n "$out.tmp" 2>/dev/null | grep -q 'Xen.*0x00000012\|PHYS32_ENTRY'; then
		mv -f "$out.tmp" "$out"
	else
		rm -f "$out.tmp"
		say "no PVH-bootable vmlinux could be extracted; booting the bzImage (slower)"
	fi
}
