#!/usr/bin/env bash
# Run a command inside the root built by setup.sh, in a private mount
# namespace: /proc and /sys bound from the host, a small private /dev with a
# fresh /dev/net/tun (mode 0666, as distributions ship it), /run a fresh
# tmpfs (so /run/dbus and /run/netns are private), /tmp the root's own.
# The network namespace is the caller's: whatever changes the network must
# make and use namespaces of its own.
#
#   enter.sh [CMD [ARGS...]]          (default: bash -l)
#
# Environment:
#   O3_ROOT     the root (default /var/tmp/ovpn-netcfgd-o3root)
#   O3_BIND     colon-separated host directories bound read-write at the same
#               path inside (e.g. the checkout)
#   O3_BIND_RO  the same, read-only
#   O3_ENV      space-separated names of variables passed through; the rest
#               of the environment is cleared (PATH, HOME, LANG, TERM are set)
#   O3_OVERLAY  1: CMD sees a throwaway copy of the root (an overlay whose
#               changes live in memory and vanish with CMD), so it may
#               install packages, add users or run `make install` freely
# The mounts vanish with the command; the host's mount table and device
# nodes are never changed. Exit status: CMD's.
set -euo pipefail

ROOT=${O3_ROOT:-/var/tmp/ovpn-netcfgd-o3root}
[ "$(id -u)" = 0 ] || { echo "enter.sh: must run as root" >&2; exit 1; }
[ -x "$ROOT/usr/bin/env" ] || { echo "enter.sh: no root at $ROOT (run setup.sh)" >&2; exit 1; }

if [ "${1:-}" != "--o3-inside" ]; then
    exec unshare -m --propagation private "$0" --o3-inside "$@"
fi
shift
[ $# = 0 ] && set -- bash -l

# The root must be a mount point: `ip netns exec` and `ip -n` make "/" a
# recursive slave mount, which fails (EINVAL) on a plain directory. An
# overlay mounted over the root is one; its upper layer is a tmpfs on the
# root's /mnt, which the overlay then hides.
if [ "${O3_OVERLAY:-}" = 1 ]; then
    mount -t tmpfs -o mode=755 o3-overlay "$ROOT/mnt"
    mkdir "$ROOT/mnt/upper" "$ROOT/mnt/work"
    mount -t overlay o3-root -o "lowerdir=$ROOT,upperdir=$ROOT/mnt/upper,workdir=$ROOT/mnt/work" "$ROOT"
else
    mount --bind "$ROOT" "$ROOT"
fi
mount --rbind /proc "$ROOT/proc"
mount --rbind /sys "$ROOT/sys"
mount -t tmpfs -o mode=755,nosuid o3-dev "$ROOT/dev"
for n in null zero full random urandom tty; do
    [ -e "/dev/$n" ] || continue
    touch "$ROOT/dev/$n"
    mount --bind "/dev/$n" "$ROOT/dev/$n"
done
mkdir -p "$ROOT/dev/pts" "$ROOT/dev/shm" "$ROOT/dev/net"
mount --rbind /dev/pts "$ROOT/dev/pts"
mount -t tmpfs -o mode=1777,nosuid,nodev o3-shm "$ROOT/dev/shm"
ln -s pts/ptmx "$ROOT/dev/ptmx"
ln -s /proc/self/fd "$ROOT/dev/fd"
ln -s /proc/self/fd/0 "$ROOT/dev/stdin"
ln -s /proc/self/fd/1 "$ROOT/dev/stdout"
ln -s /proc/self/fd/2 "$ROOT/dev/stderr"
# Services open the tun device after dropping to their account; the host's
# node may be 0600 (containers), so make our own rather than chmod the host's.
if ! mknod -m 666 "$ROOT/dev/net/tun" c 10 200 2>/dev/null; then
    echo "enter.sh: mknod /dev/net/tun failed; binding the host's node (mode $(stat -c %a /dev/net/tun))" >&2
    touch "$ROOT/dev/net/tun"
    mount --bind /dev/net/tun "$ROOT/dev/net/tun"
fi
mount -t tmpfs -o mode=755 o3-run "$ROOT/run"
mkdir -p "$ROOT/run/dbus" "$ROOT/run/lock" "$ROOT/run/netns" "$ROOT/run/user"
# setup.sh keeps downloaded .debs outside the root
if [ -n "${O3_APT_CACHE:-}" ]; then
    mount --bind "$O3_APT_CACHE" "$ROOT/var/cache/apt/archives"
fi

bind_list() { # bind_list LIST [ro]
    local IFS=: d
    for d in $1; do
        [ -n "$d" ] || continue
        [ -d "$d" ] || { echo "enter.sh: not a directory: $d" >&2; exit 1; }
        mkdir -p "$ROOT$d"
        mount --rbind "$d" "$ROOT$d"
        if [ "${2:-}" = ro ]; then mount -o remount,bind,ro "$ROOT$d"; fi
    done
}
# read-only first, so a writable directory inside a read-only one (a log
# directory in the checkout) stays writable
bind_list "${O3_BIND_RO:-}" ro
bind_list "${O3_BIND:-}"

envs=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}")
for v in ${O3_ENV:-}; do if [ -n "${!v+x}" ]; then envs+=("$v=${!v}"); fi; done
exec chroot "$ROOT" /usr/bin/env -i "${envs[@]}" "$@"
