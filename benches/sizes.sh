#!/usr/bin/env bash
# Size figures for `make bench`: the binaries `make build`, `make tiny` and
# `make static` made, their shared libraries and idle memory, crate counts, a
# cold build's time, and where the code bytes go (symbol sizes of an
# unstripped build of the same profile).
#
#   benches/sizes.sh DYNAMIC_BIN TINY_BIN MUSL_BIN
set -euo pipefail
cd "$(dirname "$0")/.."
kib() { echo "$(( ($(stat -c %s "$1") + 512) / 1024 )) KiB ($(stat -c %s "$1") bytes)"; }
libs() {
    local out
    out=$(ldd "$1" 2>&1 || true)
    case $out in
        *"statically linked"* | *"not a dynamic"*) echo "no shared library" ;;
        *) echo "$out" | awk '$1 !~ /vdso|^\/lib/ {printf "%s ", $1}' ;;
    esac
}

echo "== sizes (targets: tiny <= 600 KiB needing only libc; musl static <= 700 KiB, idle VmRSS <= 800 KiB)"
for b in "default (cargo build --release):$1" "tiny (std with immediate-abort):$2" "musl static:$3"; do
    name=${b%%:*} bin=${b#*:}
    echo "$name: $(kib "$bin"); $(file -b "$bin" | cut -d, -f1-2)"
    echo "    needs: $(libs "$bin")"
    echo "    $(bash tests/cross/daemon-answers.sh --rss "$bin")"
done

linked=$(cargo tree --locked -e normal,no-proc-macro --prefix none --format '{p}' | sed 's/ (.*//' | sort -u | wc -l)
compiled=$(cargo tree --locked -e normal,build --prefix none --format '{p}' | sed 's/ (.*//' | sort -u | wc -l)
echo "crates: $linked linked into the binary (cargo tree -e normal,no-proc-macro; the crate itself included), $compiled compiled for it (-e normal,build)"

# Cold build: an empty target dir, the same build as `make build`, unstripped
# so the symbol table below comes from the very same build.
cold=target/cold
rm -rf "$cold"
t0=$(date +%s%N)
CARGO_TARGET_DIR=$cold CARGO_PROFILE_RELEASE_STRIP=false cargo build --release --locked -q
t1=$(date +%s%N)
ms=$(( (t1 - t0) / 1000000 ))
echo "cold release build: $((ms / 1000)).$(( ms % 1000 / 100 )) s ($(nproc) cores)"

echo "code by origin (symbol sizes, KiB; the part std's panic handler brings is shown apart):"
nm -S --size-sort -C "$cold/release/ovpn-netcfgd" | python3 -c '
import re, sys, collections
tot = collections.Counter()
for line in sys.stdin:
    p = line.rstrip("\n").split(" ", 3)
    if len(p) < 4 or p[2] not in "tTwW":
        continue
    size, name = int(p[1], 16), p[3]
    if re.search(r"backtrace|gimli|addr2line|rustc_demangle|miniz_oxide|symbolize", name):
        key = "std backtrace symbolizer (linked by std even with panic=abort)"
    elif "::" not in name:
        key = "C (vendored libdbus)"
    else:
        m = re.match(r"^<?(?:impl )?([a-zA-Z_][a-zA-Z0-9_]*)::(?:([a-z_0-9]+)(?:::|$))?", name)
        key = m.group(1) if m else "other"
        if key == "ovpn_netcfgd" and m.group(2):
            key += "::" + m.group(2)
        elif key in ("core", "alloc", "std", "hashbrown"):
            key = "std (core, alloc, std, hashbrown)"
    tot[key] += size
for k, v in tot.most_common(14):
    print(f"    {v / 1024:6.1f}  {k}")
print(f"    {sum(tot.values()) / 1024:6.1f}  in all")
'
rm -rf "$cold"
