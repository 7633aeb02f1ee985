#!/usr/bin/env bash
# The real OpenVPN 3 Linux client, end to end, through ovpn-netcfgd: builds
# (or reuses) the Debian root of tests/rigs/o3root and runs tests/e2e/inside.sh
# in a throwaway overlay of it, in network namespaces of its own.
#
#   real-client.sh [BIN]        (default target/release/ovpn-netcfgd)
#
# Environment: E2E_CYCLES (default 3), E2E_LOGS (where the logs are left,
# default target/e2e-logs), and the rig's O3_ROOT, O3_CACHE.
# Needs root. The binary must run against the root's glibc (2.41).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
bin=$(realpath "${1:-$top/target/release/ovpn-netcfgd}")
[ -x "$bin" ] || { echo "real-client.sh: no executable at $bin (build first)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "real-client.sh: must run as root" >&2; exit 1; }

t0=$(date +%s)
O3_QUIET=1 "$here/../rigs/o3root/setup.sh"
t1=$(date +%s)
binds=$top
case $bin in "$top"/*) ;; *) binds="$top:$(dirname "$bin")" ;; esac
export E2E_CYCLES=${E2E_CYCLES:-3}
# the bus's, services' and server's logs are copied here at the end
export E2E_LOGS=${E2E_LOGS:-$top/target/e2e-logs}
rm -rf "$E2E_LOGS"
mkdir -p "$E2E_LOGS"
O3_OVERLAY=1 O3_BIND=$E2E_LOGS O3_BIND_RO=$binds O3_ENV="$(compgen -v E2E_ | tr "\n" " ")" \
    "$here/../rigs/o3root/enter.sh" "$here/inside.sh" "$top" "$bin"
echo "real-client e2e: root ready in $((t1 - t0)) s, test $(($(date +%s) - t1)) s"
