//! Link settings of the daemon binary, kept with the crate so that a plain
//! `cargo build --release` or `cargo install --path .` gives the same
//! size-tuned binary as `make build` (docs/dependencies.md has the figures).
//!
//! - `dist/link/no-eh-frame.ld` drops the unwind tables. The release profile
//!   uses panic=abort, so nothing ever unwinds. Passed with `-T`: its `INSERT`
//!   adds it to the linker's default script, which GNU ld, lld and zig's
//!   linker all accept (a bare input file works with lld alone).
//! - Packed relative relocations (DT_RELR), when the C compiler that links
//!   accepts `-z pack-relative-relocs` and its output runs here (binutils
//!   2.38 or later, glibc 2.36 or later). Tried only for native builds: a
//!   cross build's output cannot be run to prove its C library handles it.
//!
//! Release binaries only: debug builds unwind, and their backtraces need the
//! tables.

use std::env;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn main() {
    let dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let script = dir.join("dist/link/no-eh-frame.ld");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    if env::var("PROFILE").as_deref() != Ok("release") {
        return;
    }
    println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", script.display());
    if env::var("HOST") == env::var("TARGET") && relr_runs() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Links and runs a C program with DT_RELR: the linker must know the flag
/// and the C library's loader must process the packed relocations.
fn relr_runs() -> bool {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let (src, exe) = (out.join("relr.c"), out.join("relr"));
    if std::fs::write(&src, "int main(void) { return 0; }\n").is_err() {
        return false;
    }
    let cc = env::var("RUSTC_LINKER").unwrap_or_else(|_| "cc".into());
    let linked = Command::new(&cc)
        .arg(&src)
        .args(["-Wl,-z,pack-relative-relocs", "-o"])
        .arg(&exe)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    linked && Command::new(&exe).status().is_ok_and(|s| s.success())
}
