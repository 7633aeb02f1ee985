#!/bin/bash
# tests/dco-vm/run-in-vm.sh - run one command inside a throw-away qemu guest that runs Debian's
# 6.12 kernel with ovpn-dco-v2 (or, with DCO_VM_FAMILY=ovpn, trixie-backports' kernel with the
# upstream ovpn module) plus tun, udp_tunnel and AEAD crypto loaded. Prepare with setup.sh.
#
# usage: run-in-vm.sh [-v] CMD [ARGS...]
#        run-in-vm.sh [-v] 'shell command line'   (one argument with blanks: run by /bin/sh -c)
#
# The command's stdout/stderr come out on ours; our exit status is the command's. The guest
# is root in its own (fresh) root namespaces, with only `lo` and no way out. It sees:
#   /usr     the host's /usr, read-only (so host binaries, glibc and iproute2 work)
#   /etc     the host's /etc, read-only, under a throw-away tmpfs overlay (writable)
#   the repository, the current directory (the command's working directory), the directory
#   of CMD when it is a path outside those (for a cargo test binary: its target/<profile>
#   directory), $CARGO_TARGET_DIR and every $DCO_VM_SHARE directory: read-write, at the same
#   absolute path as on the host.  /tmp, /run, /dev/shm: empty tmpfs.
#
# Environment knobs (all optional):
#   DCO_VM_TIMEOUT=120       hard limit in seconds for one boot + command; qemu is killed and
#                            we exit 124 with a message
#   DCO_VM_BOOT_TIMEOUT=60   the command must have started by then, else the boot counts as hung
#   DCO_VM_RETRIES=1         how often a boot that failed before the command started (hang:
#                            124, guest died: 125) is retried
#   DCO_VM_ENV="A B"         more variables to pass in (space/comma/colon separated); always
#                            passed when set: RUST_LOG RUST_BACKTRACE RUST_LIB_BACKTRACE
#                            RUST_TEST_THREADS RUST_MIN_STACK and cargo's CARGO_MANIFEST_DIR,
#                            CARGO_PKG_NAME, CARGO_CRATE_NAME, ...
#   DCO_VM_SHARE=/a:/b       more host directories to share read-write (same paths)
#   DCO_VM_MEM=512 DCO_VM_SMP=1   guest memory (MiB) and CPUs
#   DCO_VM_APPEND="..."      extra kernel command line
#   DCO_VM_ACCEL=kvm|tcg     override what setup.sh found out
#   DCO_VM_KERNEL=path       boot another kernel image (default: the cache's vmlinux via PVH,
#                            else its vmlinuz); it must match the initramfs' modules
#   DCO_VM_KEEP=1            keep the per-run directory (console.log, dmesg, qemu.log)
#   DCO_VM_TIME=1            print the wall time to stderr
#   DCO_VM_CACHE             where setup.sh put everything (/var/tmp/ovpn-netcfgd-dco-vm)
#   DCO_VM_FAMILY=ovpn       boot the trixie-backports kernel with the upstream ovpn module
#                            instead of 6.12 with ovpn-dco-v2 (passed into the guest)
# -v: kernel log at loglevel 7 with boot timings, printed to stderr after the run.
# Exit status: the command's; 124 timeout / boot hang; 125 the guest died or never reported;
# 2 usage or setup missing.
set -uo pipefail

HERE=$(cd "$(dirname "$(readlink -f "$0")")" && pwd -P)
REPO=$(cd "$HERE/../.." && pwd -P)
CACHE=${DCO_VM_CACHE:-/var/tmp/ovpn-netcfgd-dco-vm}
me=run-in-vm
warn() { echo "$me: $*" >&2; }

verbose=0
if [ "${1:-}" = -v ]; then verbose=1; shift; fi
if [ $# -lt 1 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
	sed -n '2,/^set -uo/{/^set -uo/d;s/^# \{0,1\}//;p}' "$0" >&2
	exit 2
fi

# the guest kernel: Debian's 6.12 with ovpn-dco-v2 (setup.sh), or trixie-backports' with the
# upstream ovpn module (setup-ovpn.sh, its cache under ovpn/)
export DCO_VM_FAMILY=${DCO_VM_FAMILY:-ovpn-dco-v2}
case "$DCO_VM_FAMILY" in
	ovpn-dco-v2) KCACHE=$CACHE stamp_files=("$HERE/setup.sh" "$HERE/lib.sh" "$HERE"/patches/*.patch) ;;
	ovpn) KCACHE=$CACHE/ovpn stamp_files=("$HERE/setup-ovpn.sh" "$HERE/lib.sh") ;;
	*) warn "DCO_VM_FAMILY must be ovpn-dco-v2 or ovpn, got '$DCO_VM_FAMILY'"; exit 2 ;;
esac
KVER=$(cat "$KCACHE/kver" 2>/dev/null) || KVER=
KDIR=$KCACHE/$KVER
if [ -z "$KVER" ] || [ ! -f "$KDIR/ready" ] || [ ! -f "$KDIR/initramfs.cpio" ] || [ ! -e "$KDIR/vmlinuz" ]; then
	warn "the rig is not set up (cache $KCACHE): run $HERE/setup.sh first"
	exit 2
fi
QEMU=$(command -v qemu-system-x86_64) || { warn "qemu-system-x86_64 missing: run $HERE/setup.sh"; exit 2; }
stamp=$( { cat "${stamp_files[@]}"; echo "cache=$KCACHE"
	   dpkg-query -W -f='${Version}' busybox-static 2>/dev/null || true; } | sha256sum | cut -c1-16)
[ "$(cat "$KDIR/ready")" = "$stamp" ] || warn "warning: setup.sh or patches changed since the last setup: run $HERE/setup.sh"

num() { case "$2" in ''|*[!0-9]*) warn "$1 must be a number, got '$2'"; exit 2 ;; esac; }
TIMEOUT=${DCO_VM_TIMEOUT:-120};         num DCO_VM_TIMEOUT "$TIMEOUT"
BOOT_TIMEOUT=${DCO_VM_BOOT_TIMEOUT:-60}; num DCO_VM_BOOT_TIMEOUT "$BOOT_TIMEOUT"
RETRIES=${DCO_VM_RETRIES:-1};           num DCO_VM_RETRIES "$RETRIES"
[ "$BOOT_TIMEOUT" -le "$TIMEOUT" ] || BOOT_TIMEOUT=$TIMEOUT

CTL=$(mktemp -d "${TMPDIR:-/tmp}/dco-vm.XXXXXX") || exit 2
qpid='' wpid='' cat_out='' cat_err=''
stop_all() {
	[ -n "$wpid" ] && kill "$wpid" 2>/dev/null
	[ -n "$qpid" ] && kill -KILL "$qpid" 2>/dev/null
	# shellcheck disable=SC2086
	[ -n "$cat_out$cat_err" ] && kill $cat_out $cat_err 2>/dev/null
}
cleanup() { if [ -n "${DCO_VM_KEEP:-}" ]; then warn "kept $CTL"; else rm -rf "$CTL"; fi; }
on_signal() { stop_all; wait 2>/dev/null; warn "interrupted"; cleanup; exit $((128 + $1)); }
trap 'on_signal 1' HUP; trap 'on_signal 2' INT; trap 'on_signal 15' TERM

# ---- shares -------------------------------------------------------------------------------
q() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }   # quote for sh
rw_shares=()
add_rw() { # dir: share it read-write at the same path (unless covered by another share)
	local d s keep=()
	d=$(cd "$1" 2>/dev/null && pwd -P) || { warn "warning: cannot share $1 (not a directory)"; return 0; }
	case "$d" in
		/|/usr|/usr/*|/etc|/etc/*|/proc|/proc/*|/sys|/sys/*|/dev|/dev/*|/rig|/rig/*)
			warn "warning: not sharing $d (system directory)"; return 0 ;;
	esac
	case "$d" in *[[:space:]]*) warn "warning: not sharing $d (blank in path)"; return 0 ;; esac
	for s in "${rw_shares[@]+"${rw_shares[@]}"}"; do
		case "$d/" in "$s"/*) return 0 ;; esac       # already inside a share
	done
	for s in "${rw_shares[@]+"${rw_shares[@]}"}"; do
		case "$s/" in "$d"/*) ;; *) keep+=("$s") ;; esac   # drop shares inside the new one
	done
	rw_shares=("${keep[@]+"${keep[@]}"}" "$d")
}
WORKDIR=$(pwd -P)
add_rw "$REPO"
add_rw "$WORKDIR"
if [[ "$1" == */* ]]; then
	if [ -f "$1" ]; then
		bdir=$(cd "$(dirname "$1")" && pwd -P)
		case "${bdir##*/}" in deps|examples) bdir=${bdir%/*} ;; esac   # cargo: target/<profile>
		add_rw "$bdir"
	elif [ $# -gt 1 ] || [[ "$1" != *[[:space:]]* ]]; then
		warn "warning: $1 does not exist on the host"
	fi
fi
[ -n "${CARGO_TARGET_DIR:-}" ] && [ -d "$CARGO_TARGET_DIR" ] && add_rw "$CARGO_TARGET_DIR"
IFS=: read -r -a extra <<< "${DCO_VM_SHARE:-}"
for d in "${extra[@]+"${extra[@]}"}"; do [ -n "$d" ] && add_rw "$d"; done

esc() { printf '%s' "${1//,/,,}"; }   # qemu option values: a comma is written twice
virtfs=() n=0
share() { # tag-kind host-path readonly
	virtfs+=(-fsdev "local,id=fs$n,path=$(esc "$2"),security_model=none,multidevs=remap${3:+,readonly=on}"
		-device "virtio-9p-pci,fsdev=fs$n,mount_tag=dcovm.$n")
	echo "dcovm.$n $1 $2" >> "$CTL/shares"
	n=$((n + 1))
}
: > "$CTL/shares"
virtfs+=(-fsdev "local,id=ctl,path=$(esc "$CTL"),security_model=none"
	-device "virtio-9p-pci,fsdev=ctl,mount_tag=dcovm.ctl")
share usr /usr ro
share etc /etc ro
share kmod "$(cat "$KDIR/moddir" 2>/dev/null || echo "$KDIR/root/lib/modules")" ro
for s in "${rw_shares[@]}"; do share rw "$s"; done
cp "$HERE/guest-init.sh" "$CTL/guest-init.sh"

# ---- command and environment ---------------------------------------------------------------
{
	echo "cd $(q "$WORKDIR") || exit 126"
	if [ $# -eq 1 ] && [ ! -e "$1" ] && [[ "$1" == *[[:space:]]* ]]; then
		echo "exec /bin/sh -c $(q "$1")"
	else
		printf 'exec'
		for a in "$@"; do printf ' %s' "$(q "$a")"; done
		echo
	fi
} > "$CTL/cmd"
pass="RUST_LOG RUST_BACKTRACE RUST_LIB_BACKTRACE RUST_TEST_THREADS RUST_MIN_STACK
      CARGO_MANIFEST_DIR CARGO_MANIFEST_PATH CARGO_PKG_NAME CARGO_PKG_VERSION CARGO_CRATE_NAME
      CARGO_BIN_NAME CARGO_TARGET_TMPDIR DCO_VM_FAMILY ${DCO_VM_ENV:-}"
: > "$CTL/env"
for v in ${pass//[,:]/ }; do
	[[ "$v" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || { warn "warning: DCO_VM_ENV: bad name '$v'"; continue; }
	[ -n "${!v+set}" ] && echo "export $v=$(q "${!v}")" >> "$CTL/env"
done

# ---- qemu ------------------------------------------------------------------------------------
accel_mode=${DCO_VM_ACCEL:-$(cat "$CACHE/accel" 2>/dev/null || echo tcg)}
if [ "$accel_mode" = kvm ]; then accel=(-accel kvm -cpu host); else accel=(-accel tcg -cpu max); fi
# boot trimming: no crypto self-tests, no mitigations (costly under TCG), no i8042 or extra UART
# probing, trust the TSC; loglevel 4 keeps warnings/oopses/panics in console.log
append="console=ttyS0 panic=-1 rdinit=/init cryptomgr.notests mitigations=off nokaslr tsc=reliable
 no_timer_check i8042.noaux i8042.nokbd i8042.nomux 8250.nr_uarts=1"
if [ $verbose = 1 ]; then append="$append loglevel=7 dcovm.verbose=1"; else append="$append loglevel=4"; fi
append="${append//$'\n'/} ${DCO_VM_APPEND:-}"
# an uncompressed ELF vmlinux boots through PVH, ~1.5-2 s faster under TCG than the bzImage
kernel=${DCO_VM_KERNEL:-$KDIR/vmlinux}
[ -s "$kernel" ] || kernel=$KDIR/vmlinuz
# shellcheck disable=SC2054  # the commas are qemu option syntax
qemu_args=(-nodefaults -no-user-config -machine pc "${accel[@]}"
	-m "${DCO_VM_MEM:-512}" -smp "${DCO_VM_SMP:-1}"
	-kernel "$kernel" -initrd "$KDIR/initramfs.cpio" -append "$append"
	-display none -no-reboot -monitor none -serial "file:$CTL/console.log"
	-device virtio-serial-pci
	-chardev "file,id=out,path=$CTL/out" -device virtserialport,chardev=out,name=dcovm.out
	-chardev "file,id=err,path=$CTL/err" -device virtserialport,chardev=err,name=dcovm.err
	"${virtfs[@]}")

# the watchdog: kill qemu when the command has not started after BOOT_TIMEOUT s (boot hang)
# or is still running after TIMEOUT s; it records which in $CTL/why
watchdog() {
	local s
	trap '[ -n "${s:-}" ] && kill $s 2>/dev/null; exit 0' TERM
	sleep "$BOOT_TIMEOUT" & s=$!; wait $s
	if [ -e "$CTL/started" ]; then
		sleep $((TIMEOUT - BOOT_TIMEOUT)) & s=$!; wait $s
		echo run > "$CTL/why"
	else
		echo boot > "$CTL/why"
	fi
	kill -TERM "$qpid" 2>/dev/null
	sleep 3 & s=$!; wait $s
	kill -KILL "$qpid" 2>/dev/null
}

console_tail() {
	warn "---- guest console (last 30 lines of $CTL/console.log) ----"
	tail -n 30 "$CTL/console.log" >&2 2>/dev/null
	[ -s "$CTL/qemu.log" ] && { warn "---- qemu ----"; cat "$CTL/qemu.log" >&2; }
	warn "----"
}

t_start=$(date +%s.%N)
attempt=0
while :; do
	rm -f "$CTL"/{started,rc,why,dmesg,console.log,qemu.log,out,err}
	mkfifo "$CTL/out" "$CTL/err"
	# the guest's output: qemu writes into FIFOs, we copy them to our own stdout/stderr
	cat "$CTL/out" & cat_out=$!
	cat "$CTL/err" >&2 & cat_err=$!
	"$QEMU" "${qemu_args[@]}" < /dev/null > "$CTL/qemu.log" 2>&1 &
	qpid=$!
	watchdog & wpid=$!
	# wait for qemu; if a copier dies first (our stdout/stderr was closed: SIGPIPE), stop qemu
	pending=("$qpid" "$cat_out" "$cat_err")
	while :; do
		done_pid=
		wait -n -p done_pid "${pending[@]}"; st=$?
		if [ -z "$done_pid" ]; then   # nothing left to wait for (should not happen)
			[ "$st" = 127 ] && { qrc=$st; break; }
			continue
		fi
		if [ "$done_pid" = "$qpid" ]; then qrc=$st; break; fi
		left=(); for p in "${pending[@]}"; do [ "$p" = "$done_pid" ] || left+=("$p"); done
		pending=("${left[@]}")
		if [ "$st" -gt 128 ] && [ ! -e "$CTL/why" ]; then
			echo pipe > "$CTL/why"; kill -TERM "$qpid" 2>/dev/null
		fi
	done
	kill "$wpid" 2>/dev/null; wait "$wpid" 2>/dev/null; wpid=
	# if qemu died before opening a FIFO, its reader is still blocked in open(): release it
	exec 7<>"$CTL/out" 8<>"$CTL/err"; exec 7>&- 8>&-
	wait $cat_out $cat_err 2>/dev/null; cat_out='' cat_err=''
	qpid=
	why=$(cat "$CTL/why" 2>/dev/null)

	if [ "$why" = pipe ]; then rc=141; break; fi   # like a writer killed by SIGPIPE: quietly
	if [ -f "$CTL/rc" ]; then rc=$(cat "$CTL/rc"); break; fi
	if [ -e "$CTL/started" ]; then
		console_tail
		if [ "$why" = run ]; then
			warn "TIMEOUT: the command was still running after ${TIMEOUT}s (DCO_VM_TIMEOUT); qemu killed"
			rc=124
		else
			warn "ERROR: the guest died while the command ran (qemu exit status $qrc)"
			rc=125
		fi
		break
	fi
	# the command never started: a boot hang or an early guest death
	if [ "$why" = boot ]; then
		rc=124; what="boot hang: the command had not started after ${BOOT_TIMEOUT}s (DCO_VM_BOOT_TIMEOUT); qemu killed"
	elif [ "$why" = run ]; then
		rc=124; what="TIMEOUT after ${TIMEOUT}s; qemu killed"
	else
		rc=125; what="the guest stopped before the command started (qemu exit status $qrc)"
	fi
	console_tail
	if [ $attempt -lt "$RETRIES" ]; then
		attempt=$((attempt + 1))
		warn "$what - retrying ($attempt/$RETRIES)"
		continue
	fi
	warn "ERROR: $what"
	break
done
t_end=$(date +%s.%N)

if [ $verbose = 1 ]; then
	warn "---- guest console ----"; cat "$CTL/console.log" >&2
	[ -s "$CTL/qemu.log" ] && { warn "---- qemu ----"; cat "$CTL/qemu.log" >&2; }
fi
[ -n "${DCO_VM_TIME:-}" ] && awk -v a="$t_start" -v b="$t_end" -v r="$attempt" \
	'BEGIN { printf "run-in-vm: wall time %.2f s%s\n", b - a, (r ? " (with " r " retry)" : "") }' >&2
cleanup
exit "$rc"
