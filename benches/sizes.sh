#!/usr/bin/env bash
# Size figures for `make bench`: the binaries `make build` and `make static`
# made, their shared libraries, crate counts, a cold build's time, and where
# the code bytes go (symbol sizes of an unstripped build of the same profile).
#
#   benches/sizes.sh DYNAMIC_BIN STATIC_BIN [MUSL_BIN]
set -euo pipefail
cd "$(dirname "$0")/.."
dyn=$1 static=$2 musl=${3:-}
kib() { echo "$(( ($(stat -c %s "$1") + 512) / 1024 )) KiB ($(stat -c %s "$1") bytes)"; }

echo "== sizes (targets: default <= 700 KiB needing only libc/libgcc_s; static glibc <= 1.8 MiB, musl <= 1.0 MiB)"
echo "default build:  $(kib "$dyn"); shared libraries: $(ldd "$dyn" | grep -c '=>')"
ldd "$dyn" | sed 's/ (0x.*//; s/^/    /'
echo "static glibc:   $(kib "$static"); $(file -b "$static" | cut -d, -f1-2); ldd: $(ldd "$static" 2>&1 | tr -d '\t')"
if [ -n "$musl" ] && [ -f "$musl" ]; then
    echo "static musl:    $(kib "$musl"); $(file -b "$musl" | cut -d, -f1-2); ldd: $(ldd "$musl" 2>&1 | tr -d '\t')"
else
    echo "static musl:    not built (the x86_64-unknown-linux-musl target is not installed, and nothing is downloaded)"
fi

linked=$(cargo tree --locked -e normal,no-proc-macro --prefix none --format '{p}' | sed 's/ (.*//' | sort -u | wc -l)
compiled=$(cargo tree --locked -e normal,build --prefix none --format '{p}' | sed 's/ (.*//' | sort -u | wc -l)
echo "crates: $linked linked into the binary (cargo tree -e normal,no-proc-macro; the crate itself included), $compiled compiled for it (-e normal,build)"

# Cold build: an empty target dir, same flags as `make build`, unstripped so
# the symbol table below comes from the very same build.
cold=target/cold
rm -rf "$cold"
flags=$(make -s --no-print-directory print-rustflags)
t0=$(date +%s%N)
CARGO_TARGET_DIR=$cold CARGO_PROFILE_RELEASE_STRIP=false RUSTFLAGS="$flags" cargo build --release --locked -q
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
