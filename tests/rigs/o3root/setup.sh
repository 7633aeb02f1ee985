#!/usr/bin/env bash
# Build (once) a Debian root holding the real OpenVPN 3 Linux client stack,
# from Debian packages only: trixie base, openvpn3-client and openvpn from sid,
# polkitd, iproute2, dbus-daemon, python3-gi, and a systemd-resolved unpacked
# (not installed) under /opt/resolved-root to match the root's systemd.
# Nothing is installed on the host except mmdebstrap (if missing); the
# host's apt sources are never changed. Use the root with enter.sh.
#
#   setup.sh            build the root, or check it is current (about 0.1 s);
#                       prints the root's path and package versions
#
# Environment (see README.md):
#   O3_ROOT          the root (default /var/tmp/ovpn-netcfgd-o3root)
#   O3_CACHE         .deb cache (in apt/) and the build log, kept across rebuilds
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
STAMP="v3 $SUITE $CLIENT_SUITE $(echo $PKGS)"

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

if ! command -v mmdebstrap >/dev/null; then
    echo "installing mmdebstrap on the host"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null; }
fi

suffix=""; [ "$CLIENT_SUITE" != "$SUITE" ] && suffix="/$CLIENT_SUITE"
# systemd-resolved is only unpacked (once per version; a root in use is
# not disturbed), in the version of the root's systemd
# (it links against its private library): installing it would make the
# root's /etc/resolv.conf a symlink. Run inside the root, apt lists present.
unpack_resolved='set -e
    v=$(dpkg-query -W -f "\${Version}" systemd)
    [ "$(cat /opt/resolved-root/.version 2>/dev/null)" = "$v" ] && exit 0
    deb=systemd-resolved_$(echo $v | sed "s/:/%3a/")_$(dpkg --print-architecture).deb
    cd /var/cache/apt/archives
    [ -f $deb ] || apt-get download -qq -o APT::Sandbox::User=root systemd-resolved=$v
    rm -rf /opt/resolved-root
    dpkg-deb -x $deb /opt/resolved-root
    echo $v >/opt/resolved-root/.version'

t0=$(date +%s)
fresh=no
if [ ! -x "$ROOT/usr/bin/apt-get" ]; then
    # One apt run for the base and every package (mmdebstrap is about twice
    # as fast as debootstrap followed by apt); the .debs go through $CACHE/apt.
    echo "mmdebstrap $SUITE (+ $CLIENT_SUITE's openvpn3-client, openvpn) -> $ROOT (about 2 minutes)"
    rm -rf "$ROOT.partial"
    mmdebstrap --quiet --variant=minbase --skip=output/mknod \
        --aptopt="APT::Default-Release \"$SUITE\"" --aptopt='APT::Install-Recommends "false"' \
        --aptopt='Acquire::Check-Valid-Until "false"' \
        --include="$(echo $PKGS | tr ' ' ','),openvpn3-client$suffix,openvpn$suffix" \
        --setup-hook='mkdir -p "$1"/var/cache/apt/archives/' \
        --setup-hook="sync-in $CACHE/apt /var/cache/apt/archives/" \
        --customize-hook="chroot \"\$1\" sh -c '$unpack_resolved'" \
        --customize-hook="sync-out /var/cache/apt/archives $CACHE/apt" \
        "$SUITE" "$ROOT.partial" "deb $MIRROR $SUITE main" "deb $MIRROR $CLIENT_SUITE main" \
        >"$CACHE/mmdebstrap.log" 2>&1 ||
        { tail -20 "$CACHE/mmdebstrap.log"; echo "mmdebstrap failed (log: $CACHE/mmdebstrap.log)" >&2; exit 1; }
    # mv would put the new root inside an existing directory: an empty
    # one goes, anything else is left for a person to look at.
    rmdir "$ROOT" 2>/dev/null || true
    [ ! -e "$ROOT" ] || { echo "$ROOT exists but holds no usable root; remove it" >&2; exit 1; }
    mv "$ROOT.partial" "$ROOT"
    fresh=yes
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

# A root from an earlier version of this script is brought up to date in
# place. The .debs land in $CACHE/apt (bound over the root's archive
# directory), so nothing is downloaded twice.
if [ $fresh = no ]; then
    O3_ROOT=$ROOT O3_BIND="" O3_BIND_RO="" O3_ENV="" O3_OVERLAY="" O3_APT_CACHE=$CACHE/apt "$HERE/enter.sh" sh -c "
        set -e
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq $(echo $PKGS) >/dev/null
        apt-get install -y -qq openvpn3-client$suffix openvpn$suffix >/dev/null
        $unpack_resolved
    " || { echo "package installation inside $ROOT failed" >&2; exit 1; }
fi

echo "$STAMP" >"$ROOT/.o3root-stamp"
echo "built in $(($(date +%s) - t0)) s"
versions
