#!/usr/bin/env bash
# DNS test rig for tests/dns.rs. Real systemd-resolved and openresolv from
# Debian's packages, unpacked (never installed) into a cache outside the
# repository, run in the test's network namespace inside private mount
# namespaces: the host's /etc/resolv.conf and /run are never touched.
#
#   dns-rig.sh fetch resolved|openresolv
#       unpack the package into the cache (apt-get download); exit 77 with
#       the reason on stderr when that is impossible
#   dns-rig.sh daemon DIR NETNS CMD...
#       exec CMD (the daemon) in NETNS with DIR/resolv.conf as
#       /etc/resolv.conf, "hosts: files dns" in /etc/nsswitch.conf, an
#       empty /run, and DIR/sbin as /usr/local/sbin
#   dns-rig.sh resolved DIR NETNS BUS
#       exec systemd-resolved in NETNS, on the D-Bus address BUS
#   dns-rig.sh polkit DIR BUS
#       exec polkitd on the D-Bus address BUS with resolved's actions and
#       the project's own rules (dist/polkit) only: what lets a daemon that
#       is not root change resolved's links
#   dns-rig.sh resolvectl NETNS BUS ARGS...
#   dns-rig.sh openresolv DIR
#       put an openresolv resolvconf(8) into DIR/sbin that manages
#       DIR/resolv.conf and keeps its state in DIR/openresolv
#
# Every mode that runs a program execs it (no fork), so the caller's child
# pid is that program's pid. Cache: $OVPN_NETCFGD_DNS_CACHE, default
# /var/tmp/ovpn-netcfgd-dns. Needs root.
set -euo pipefail

cache=${OVPN_NETCFGD_DNS_CACHE:-/var/tmp/ovpn-netcfgd-dns}
self=$(readlink -f "$0")

fetch() {
    local what=$1 pkg
    case $what in
    resolved) pkg=systemd-resolved ;;
    openresolv) pkg=openresolv ;;
    *) echo "unknown package $what" >&2; exit 2 ;;
    esac
    # An unprivileged daemon reaches resolved only through polkit.
    if [ "$what" = resolved ] && [ ! -x /usr/lib/polkit-1/polkitd ]; then
        echo "polkitd is not installed (make deps installs it)" >&2
        exit 77
    fi
    [ -e "$cache/$what/.ok" ] && return 0
    if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
        echo "apt-get/dpkg-deb not available" >&2
        exit 77
    fi
    mkdir -p "$cache"
    exec 9>"$cache/.lock"
    flock 9 # tests run in parallel; one download
    [ -e "$cache/$what/.ok" ] && return 0
    cd "$cache"
    rm -f "$pkg"_*.deb
    # resolved must match the installed systemd (it links its private
    # libsystemd-shared); take that exact version when the archive has it.
    local want=""
    if [ "$pkg" = systemd-resolved ]; then
        want=$(dpkg-query -W -f '${Version}' systemd 2>/dev/null || true)
    fi
    local got=no
    for attempt in 1 2; do
        if [ -n "$want" ] && apt-get download "$pkg=$want" >/dev/null 2>&1; then got=yes; break; fi
        if apt-get download "$pkg" >/dev/null 2>&1; then got=yes; break; fi
        [ $attempt = 1 ] && apt-get update >/dev/null 2>&1 || true
    done
    [ $got = yes ] || { echo "cannot download Debian package $pkg (apt-get download failed)" >&2; exit 77; }
    rm -rf "$what.tmp"
    local deb
    for deb in "$pkg"_*.deb; do :; done # the one just downloaded (old ones were removed)
    dpkg-deb -x "$deb" "$what.tmp"
    if [ "$what" = resolved ] && ! "$what.tmp/lib/systemd/systemd-resolved" --version >/dev/null 2>&1; then
        echo "the unpacked systemd-resolved does not run with this system's libraries" >&2
        exit 77
    fi
    touch "$what.tmp/.ok"
    rm -rf "$what"
    mv "$what.tmp" "$what"
}

mode=${1:?mode}
shift
case $mode in
fetch)
    fetch "${1:?package}"
    ;;
daemon)
    dir=$1 ns=$2
    shift 2
    exec ip netns exec "$ns" unshare -m "$self" daemon-inside "$dir" "$@"
    ;;
daemon-inside)
    dir=$1
    shift
    mount --make-rprivate /
    mount --bind "$dir/resolv.conf" /etc/resolv.conf
    # Whether the host's glibc asks resolved directly (nss-resolve) must not
    # change which backend "auto" picks here.
    if [ -e /etc/nsswitch.conf ]; then
        { grep -v '^hosts:' /etc/nsswitch.conf || true; echo 'hosts: files dns'; } >"$dir/nsswitch.conf"
        mount --bind "$dir/nsswitch.conf" /etc/nsswitch.conf
    fi
    # /dev/net/tun as distributions ship it (0666), for a daemon run as
    # nobody; some test machines have it 0600.
    if [ "$(stat -c %a /dev/net/tun)" != 666 ]; then
        rm -f "$dir/tun" && mknod -m 666 "$dir/tun" c 10 200 && mount --bind "$dir/tun" /dev/net/tun
    fi
    # A resolvconf(8) of the host, if any, keeps its state under /run.
    mount -t tmpfs -o mode=755 tmpfs /run
    # The daemon looks for resolvconf(8) in a fixed PATH only: the test's
    # program goes where that PATH looks first.
    [ -d "$dir/sbin" ] && mount --bind "$dir/sbin" /usr/local/sbin
    exec "$@"
    ;;
resolved)
    dir=$1 ns=$2 bus=$3
    exec ip netns exec "$ns" unshare -m "$self" resolved-inside "$dir" "$bus"
    ;;
resolved-inside)
    dir=$1 bus=$2
    mount --make-rprivate /
    mount -t tmpfs -o mode=755 tmpfs /run
    mkdir /run/systemd # resolved creates only the last level of its runtime dir
    mount --bind "$dir/resolv.conf" /etc/resolv.conf
    # resolved drops to the user systemd-resolve; uid 0 here so that the
    # test bus's policy (root may own org.freedesktop.resolve1) applies.
    # It still drops every capability it does not need.
    grep -v '^systemd-resolve:' /etc/passwd >"$dir/passwd"
    grep -v '^systemd-resolve:' /etc/group >"$dir/group"
    echo 'systemd-resolve:x:0:0:resolve:/:/usr/sbin/nologin' >>"$dir/passwd"
    echo 'systemd-resolve:x:0:' >>"$dir/group"
    mount --bind "$dir/passwd" /etc/passwd
    mount --bind "$dir/group" /etc/group
    export DBUS_SYSTEM_BUS_ADDRESS=$bus SYSTEMD_LOG_LEVEL=debug
    exec "$cache/resolved/lib/systemd/systemd-resolved"
    ;;
polkit)
    dir=$1 bus=$2
    exec unshare -m "$self" polkit-inside "$dir" "$bus"
    ;;
polkit-inside)
    dir=$1 bus=$2
    mount --make-rprivate /
    mkdir -p "$dir/polkit/rules" "$dir/polkit/actions" "$dir/polkit/none"
    cp "$(dirname "$self")/../../dist/polkit/ovpn-netcfgd.rules" "$dir/polkit/rules/"
    cp "$cache"/resolved/usr/share/polkit-1/actions/*.policy "$dir/polkit/actions/"
    mount --bind "$dir/polkit/rules" /usr/share/polkit-1/rules.d
    [ -d /etc/polkit-1/rules.d ] && mount --bind "$dir/polkit/none" /etc/polkit-1/rules.d
    mount --bind "$dir/polkit/actions" /usr/share/polkit-1/actions
    export DBUS_SYSTEM_BUS_ADDRESS=$bus
    exec /usr/lib/polkit-1/polkitd --no-debug
    ;;
resolvectl)
    ns=$1 bus=$2
    shift 2
    exec ip netns exec "$ns" env DBUS_SYSTEM_BUS_ADDRESS="$bus" "$cache/resolved/usr/bin/resolvectl" "$@"
    ;;
openresolv)
    dir=$1
    mkdir -p "$dir/sbin" "$dir/openresolv/etc" "$dir/openresolv/run"
    # Debian's script with its three directories pointed into the test dir.
    sed -e "s#^SYSCONFDIR=.*#SYSCONFDIR=$dir/openresolv/etc#" \
        -e "s#^LIBEXECDIR=.*#LIBEXECDIR=$cache/openresolv/lib/resolvconf#" \
        -e "s#^VARDIR=.*#VARDIR=$dir/openresolv/run#" \
        "$cache/openresolv/sbin/resolvconf" >"$dir/sbin/resolvconf"
    chmod 755 "$dir/sbin/resolvconf"
    cat >"$dir/openresolv/etc/resolvconf.conf" <<EOF
resolv_conf=$dir/resolv.conf
libc_restart=:
EOF
    ;;
*)
    echo "unknown mode $mode" >&2
    exit 2
    ;;
esac
