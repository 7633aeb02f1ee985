#!/usr/bin/env bash
# Cargo with std rebuilt for one target (-Z build-std), from registry
# packages only (dist/cross/toolchain.sh installs them): Debian's Rust 1.96
# with std's sources, and for musl zig as C compiler, linker and libc.
#
#   dist/cross/cargo.sh TRIPLE build [cargo rustc arguments...]
#       the release daemon, std built with panic=immediate-abort (no panic
#       messages and no backtrace code), in target/cross/TRIPLE/release/
#   dist/cross/cargo.sh TRIPLE test [cargo test arguments...]
#       the tests, with unwinding std (a failed assertion is reported), in
#       target/cross-test/; foreign binaries run under qemu-user
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
triple=$1 mode=$2
shift 2
bash "$top/dist/cross/toolchain.sh" "$triple"
export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1
arch=${triple%%-*}
T=$(echo "$triple" | tr 'a-z-' 'A-Z_')
t=${triple//-/_}
flags=() late=()
OVPN_ZIG=$(echo "$top"/target/toolchain/zig/lib/python3*/site-packages/ziglang/zig)
export OVPN_ZIG
case $triple in
    *-musl)
        case $arch in
            mips*) OVPN_ZIG_TARGET=$arch-linux-musleabi ;; # soft float, as Rust's target
            *) OVPN_ZIG_TARGET=$arch-linux-musl ;;
        esac
        export OVPN_ZIG_TARGET
        export "CARGO_TARGET_${T}_LINKER=$top/dist/cross/zig-cc" \
            "CC_$t=$top/dist/cross/zig-cc" "AR_$t=$top/dist/cross/zig-ar"
        # rustup's target would bring its own crt objects; zig brings musl's.
        flags+=(-Clink-self-contained=no)
        # Rust's specs declare static-pie for x86_64 alone: the other musl
        # targets link non-PIE static (mips and mipsel not even static by
        # default), so their code is built position-dependent to match.
        [ "$arch" = x86_64 ] || flags+=(-Ctarget-feature=+crt-static -Crelocation-model=static)
        ;;
esac
[ "$arch" = "$(uname -m)" ] || export "CARGO_TARGET_${T}_RUNNER=qemu-$arch-static"
case $mode in
    build)
        # glibc builds apart, so `make tiny` and `make static` can run at once.
        case $triple in
            *-gnu) export CARGO_TARGET_DIR=$top/target/tiny ;;
            *) export CARGO_TARGET_DIR=$top/target/cross ;;
        esac
        # Nothing is printed at a panic, so its file, line and column are
        # dead weight too (4 KB on x86_64).
        flags+=(-Zunstable-options -Cpanic=immediate-abort -Zlocation-detail=none)
        # LLVM's machine outliner folds repeated instruction runs into shared
        # calls: 12 KB less x86_64 code (aarch64 does it at -Oz already).
        [ "$arch" = x86_64 ] && flags+=(-Cllvm-args=-enable-machine-outliner=always)
        std=std,panic_abort
        # std's features: no backtrace support (nothing could print one),
        # and its size-optimised algorithms.
        cmd=(rustc --release --bin ovpn-netcfgd -Z build-std-features=optimize_for_size)
        # glibc: std names -lgcc_s for every gnu target, and its panic
        # personality routine still refers to the unwinder, so GNU ld would
        # record libgcc_s as needed although the routine is dropped later.
        # libgcc_eh.a (the same unwinder, static) answers those references
        # first, and then goes with the routine: the binary needs libc alone.
        case $triple in *-gnu) late=(-lstatic=gcc_eh) ;; esac
        # Linked by lld (zig's), which packs relative relocations as RELR
        # for static-pie too, and folds functions with identical code
        # (--icf=all: nothing tells functions apart by address; libdbus's
        # one comparison, removing a filter, matches its user data too).
        # zig's driver takes neither option: zig-cc repeats its link.
        case $triple in
            *-gnu) flags+=(-Clink-arg=-B"$top/dist/cross/lld" -Clink-arg=-fuse-ld=lld -Clink-arg=-Wl,--icf=all) ;;
            *) export OVPN_ZIG_RELINK="-z pack-relative-relocs --icf=all" ;;
        esac
        # libdbus's C for size first: the cc crate asks clang (zig) for -Oz
        # but GCC for -Os only, though GCC 12 has -Oz (1.7 KB less code).
        case $triple in
            *-gnu) ! echo 'int x;' | "${CC:-cc}" -Oz -x c -c -o /dev/null - 2>/dev/null || export "CFLAGS_$t=-Oz" ;;
        esac
        ;;
    test)
        export CARGO_TARGET_DIR=$top/target/cross-test
        std=std,panic_unwind,panic_abort,test
        cmd=(test)
        ;;
    *) echo "usage: $0 TRIPLE build|test [cargo arguments]" >&2; exit 2 ;;
esac
export RUSTFLAGS="${flags[*]}"
cd "$top"
exec nice -n 10 /usr/bin/cargo "${cmd[@]}" --locked -Z build-std="$std" --target "$triple" "$@" \
    ${late[@]+-- "${late[@]}"}
