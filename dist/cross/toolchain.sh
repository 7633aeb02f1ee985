#!/usr/bin/env bash
# Installs, when missing, what dist/cross/cargo.sh needs to build for TRIPLE:
# Debian's Rust with std's sources (rustc-web, cargo-web, rust-web-src),
# PyPI's ziglang in a venv under target/toolchain/, and for a
# foreign architecture qemu-user. Nothing comes from outside the Debian
# archive, PyPI and crates.io.
#
#   dist/cross/toolchain.sh TRIPLE
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
triple=$1
pkgs=(rustc-web cargo-web rust-web-src)
[ "${triple%%-*}" = "$(uname -m)" ] || pkgs+=(qemu-user-static)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        --no-install-recommends "${missing[@]}" >/dev/null
fi
# zig: for musl its C compiler, libc and linker; for every release build
# its lld (dist/cross/cargo.sh).
venv=$top/target/toolchain/zig
if ! compgen -G "$venv/lib/python3*/site-packages/ziglang/zig" >/dev/null; then
    echo "installing: ziglang (PyPI) into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check ziglang==0.15.2
fi
