# tests/dco-vm/guest-init.sh - second stage of the guest's init (PID 1, busybox sh).
#
# run-in-vm.sh copies this file into the per-run control share (9p tag dcovm.ctl). The
# initramfs' own /init has already mounted /proc, /sys, /dev, loaded the modules and mounted
# that share at /rig/ctl; this script sets up the rest, runs the command and powers off.
#
# Control share files:  shares (in: "tag kind path" lines), env, cmd (in);
#                       started, rc, dmesg (out). Diagnostics go to the console (ttyS0).
export PATH=/rig/bin
C=/rig/ctl
log() { echo "dco-vm guest: $*" > /dev/console; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }
verbose=0
case " $(cat /proc/cmdline) " in *" dcovm.verbose=1 "*) verbose=1 ;; esac
[ $verbose = 1 ] && log "stage 2 at $(uptime_s)s"

# ---- pseudo filesystems --------------------------------------------------------------------
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/lock /run/user
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr

# ---- 9p shares from the host ---------------------------------------------------------------
p9() { mount -t 9p -o "trans=virtio,version=9p2000.L,msize=512000,$1" "$2" "$3"; }
while read -r tag kind path; do
	[ -n "$tag" ] || continue
	case "$kind" in
	usr)  # the host's /usr, read-only: glibc, iproute2, the host's binaries
		p9 ro,cache=loose "$tag" /usr || log "cannot mount /usr" ;;
	etc)  # the host's /etc, read-only, under a tmpfs overlay: current and writable in the guest
		if p9 ro,cache=loose "$tag" /rig/etc-lower; then
			mount -t tmpfs -o mode=755 tmpfs /rig/etc-rw
			mkdir -p /rig/etc-rw/upper /rig/etc-rw/work
			mount -t overlay -o lowerdir=/rig/etc-lower,upperdir=/rig/etc-rw/upper,workdir=/rig/etc-rw/work \
				overlay /etc || { log "overlay on /etc failed, copying"; cp -a /rig/etc-lower/. /etc/; }
		else
			log "cannot mount /etc"
		fi ;;
	kmod) # the unpacked /lib/modules of the guest kernel (+ ovpn-dco-v2), for modprobe
		mkdir -p /rig/kmod/lib/modules
		p9 ro,cache=loose "$tag" /rig/kmod/lib/modules || log "cannot mount the module tree" ;;
	rw)   # the repository, the working directory, DCO_VM_SHARE dirs: same path, read-write
		if ! { mkdir -p "$path" && p9 cache=mmap "$tag" "$path"; }; then log "cannot mount $path"; fi ;;
	esac
done < $C/shares
echo dco-vm > /etc/hostname 2>/dev/null
hostname dco-vm
ip link set lo up

# modprobe (from the host's kmod) against the guest kernel's module tree; the kernel's own
# module requests (e.g. `ip link add type veth`) go through the same wrapper
mkdir -p /rig/sbin
printf '#!/rig/busybox sh\nexec /usr/sbin/modprobe -d /rig/kmod "$@"\n' > /rig/sbin/modprobe
chmod 755 /rig/sbin/modprobe
[ -x /usr/sbin/modprobe ] && echo /rig/sbin/modprobe > /proc/sys/kernel/modprobe

# ---- stdout / stderr: virtio-serial ports that the host drains -----------------------------
out=/dev/console err=
for p in /sys/class/virtio-ports/*; do
	case "$(cat "$p/name" 2>/dev/null)" in
		dcovm.out) out=/dev/${p##*/} ;;
		dcovm.err) err=/dev/${p##*/} ;;
	esac
done
[ -n "$err" ] || err=$out

# ---- environment and the command ------------------------------------------------------------
export PATH=/rig/sbin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root USER=root LOGNAME=root SHELL=/bin/sh TERM=dumb DCO_VM_GUEST=1
[ -f $C/env ] && . $C/env
[ $verbose = 1 ] && log "command starts at $(uptime_s)s"
: > $C/started
/rig/busybox sh $C/cmd < /dev/null > "$out" 2> "$err"
rc=$?
[ $verbose = 1 ] && log "command exited with $rc at $(uptime_s)s"
dmesg > $C/dmesg 2>/dev/null
echo $rc > $C/rc
sync
poweroff -f
