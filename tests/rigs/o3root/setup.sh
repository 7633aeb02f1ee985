#!/usr/bin/env bash
# Build (once) a Debian root holding the real OpenVPN 3 Linux client stack,
# from Debian packages only: trixie base, openvpn3-client and openvpn from sid,
# polkitd, iproute2, dbus-daemon, python3-gi, and a systemd-resolved unpacked
# (not installed) under /opt/resolved-root to match the root's systemd.
# Nothing is installed on the host except debootstrap (if missing); the
# host's apt sources are never changed. Use the root with enter.sh.
#
#   setup.sh            build the root, or check it is current (about 0.1 s);
#                       prints the root's path and package versions
#
# Environment (see README.md):
#   O3_ROOT          the root (default /var/tmp/ovpn-netcfgd-o3root)
#   O3_CACHE         .deb cache, kept across rebuilds
#                    (default /var/tmp/ovpn-netcfgd-o3cache)
#   O3_SUITE         base suite (default trixie)
#   O3_CLIENT_SUITE  suite openvpn3-client and openvpn come from (default sid)
#   O3_MIRROR        Debian mirror (default http://deb.debian.org/debian)
#   O3_EXTRA_PKGS    more Debian packages to install in the root
#   O3_QUIET=1       print nothing when the root is already current
# Idempotent and safe to run concurrently (one builder at a time, the others
# wait). Needs root.
set -euo pipefail

ROOT=${O3_ROOT:-/var/tmp/ovpn-netcfgd-o3root}
CACHE=${O3_CACHE:-/var/tmp/ovpn-netcfgd-o3cache}
SUITE=${O3_SUITE:-trixie}
CLIENT_SUITE=${O3_CLIENT_SUITE:-sid}
MIRROR=${O3_MIRROR:-http://deb.debian.org/debian}
HERE=$(cd "$(dirname "$0")" && pwd)

# busctl comes with systemd, setpriv/unshare/nsenter with util-linux, ping
# with iputils-ping; make for `make install` tests.
PKGS="openvpn iproute2 dbus-daemon python3 python3-gi procps util-linux
      iputils-ping systemd polkitd openssl ca-certificates kmod make ${O3_EXTRA_PKGS:-}"
# Bump when the way the root is built changes: a root with another stamp is
# brought up to date.
STAMP="v2 $SUITE $CLIENT_SUITE $(echo $PKGS)"

[ "$(id -u)" = 0 ] || { echo "setup.sh: must run as root" >&2; exit 1; }

versions() {
    echo "root: $ROOT"
    chroot "$ROOT" dpkg-query -W -f '  ${Package} ${Version}\n' \
        openvpn3-client openvpn polkitd systemd iproute2 dbus-daemon python3-gi libc6
    echo "  systemd-resolved (unpacked) $(cat "$ROOT/opt/resolved-root/.version")"
    chroot "$ROOT" sh -c 'echo "  service user: $(getent passwd _openvpn openvpn | cut -d: -f1 | tr "\n" " ")"'
}

current() { [ -f "$ROOT/.o3root-stamp" ] && [ "$(cat "$ROOT/.o3root-stamp")" = "$STAMP" ]; }

if current; then
    [ "${O3_QUIET:-}" = 1 ] || versions
    exit 0
fi

mkdir -p "$CACHE/apt/partial" "$(dirname "$ROOT")"
exec 9>"$ROOT.lock"
flock 9
if current; then [ "${O3_QUIET:-}" = 1 ] || versions; exit 0; fi

if ! command -v debootstrap >/dev/null; then
    echo "installing debootstrap on the host"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null; }
fi

t0=$(date +%s)
if [ ! -x "$ROOT/usr/bin/apt-get" ]; then
    echo "debootstrap --variant=minbase $SUITE -> $ROOT (about 2 minutes with an empty cache)"
    rm -rf "$ROOT.partial"
    debootstrap --variant=minbase --cache-dir="$CACHE" --include=ca-certificates \
        "$SUITE" "$ROOT.partial" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 ||
        { tail -20 "$CACHE/debootstrap.log"; echo "debootstrap failed (log: $CACHE/debootstrap.log)" >&2; exit 1; }
    mv "$ROOT.partial" "$ROOT"
fi

# apt inside the root: the base suite by default, the client suite for the
# client and whatever of its dependencies the base cannot satisfy (libnl).
rm -f "$ROOT/etc/apt/sources.list"
{
    echo "Types: deb"; echo "URIs: $MIRROR"; echo "Suites: $SUITE"; echo "Components: main"
    echo "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
    if [ "$CLIENT_SUITE" != "$SUITE" ]; then
        echo; echo "Types: deb"; echo "URIs: $MIRROR"; echo "Suites: $CLIENT_SUITE"; echo "Components: main"
        echo "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
        # sid's Release carries a Valid-Until that a lagging mirror can pass
        echo "Check-Valid-Until: no"
    fi
} >"$ROOT/etc/apt/sources.list.d/debian.sources"
echo "APT::Default-Release \"$SUITE\";" >"$ROOT/etc/apt/apt.conf.d/90o3-default-release"
echo 'APT::Install-Recommends "false";' >"$ROOT/etc/apt/apt.conf.d/90o3-no-recommends"
# package scripts never start a service inside the root
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 755 "$ROOT/usr/sbin/policy-rc.d"

suffix=""; [ "$CLIENT_SUITE" != "$SUITE" ] && suffix="/$CLIENT_SUITE"
# The .debs land in $CACHE/apt (bound over the root's archive directory), so
# a rebuilt root downloads nothing it had before. systemd-resolved is only
# unpacked: installing it would make the root's /etc/resolv.conf a symlink.
O3_ROOT=$ROOT O3_BIND="" O3_BIND_RO="" O3_ENV="" O3_APT_CACHE=$CACHE/apt "$HERE/enter.sh" sh -c "
    set -e
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq $(echo $PKGS) >/dev/null
    apt-get install -y -qq openvpn3-client$suffix openvpn$suffix >/dev/null
    v=\$(dpkg-query -W -f '\${Version}' systemd)
    deb=systemd-resolved_\$(echo \$v | sed 's/:/%3a/')_\$(dpkg --print-architecture).deb
    cd /var/cache/apt/archives
    [ -f \$deb ] || apt-get download -qq -o APT::Sandbox::User=root systemd-resolved=\$v
    rm -rf /opt/resolved-root
    dpkg-deb -x \$deb /opt/resolved-root
    echo \$v >/opt/resolved-root/.version
" || { echo "package installation inside $ROOT failed" >&2; exit 1; }

echo "$STAMP" >"$ROOT/.o3root-stamp"
echo "built in $(($(date +%s) - t0)) s"
versions
