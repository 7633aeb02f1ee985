# ovpn-netcfgd — see README.md. Every target installs what it needs itself.
#
#   make demo    the daemon on a private bus in a throwaway netns, driven
#                through a real client session (needs root)
#   make test    unit, integration (netns + private bus), fuzz smoke,
#                install-tree, real-client end-to-end and DCO VM tests
#                (needs root)
#   make bench   speed, memory and size figures
#   make tiny    glibc binary, std rebuilt with panic=immediate-abort
#   make static  musl static binary for this machine
#   make cross   musl static binaries for aarch64, mipsel and mips
#   make test-cross  unit tests and a daemon start under qemu-user for each

CARGO   ?= cargo
TARGET  ?= $(shell rustc -vV | sed -n 's/^host: //p')
ARCH    := $(shell uname -m)
BIN     ?= target/release/ovpn-netcfgd
# The size settings live in Cargo.toml's release profile and build.rs, so a
# plain `cargo build --release` gives this same binary. tiny, static and the
# cross builds rebuild std (dist/cross/cargo.sh, which installs Debian's
# rustc-web and rust-web-src, and PyPI's ziglang for musl).
TINY_BIN   = target/tiny/$(TARGET)/release/ovpn-netcfgd
STATIC_BIN = target/cross/$(ARCH)-unknown-linux-musl/release/ovpn-netcfgd
CROSS_ARCHS ?= aarch64 mipsel mips
# Debian packages the tests and the demo use (all in the base image of this
# kind of machine except where noted; installed only when missing).
# dnsmasq-base (dnsmasq without its system service) and bind9-dnsutils (dig):
# tests/dnsmasq.rs. polkitd: tests/dns.rs, where polkit's grant (dist/polkit)
# lets the unprivileged daemon change systemd-resolved's links.
APT_PKGS = dbus-daemon iproute2 util-linux systemd python3-gi procps rsync file binutils \
	dnsmasq-base bind9-dnsutils polkitd

.PHONY: all build tiny static cross test-cross test-cross-unit test test-unit test-integration test-e2e test-dco demo bench fuzz clean deps lint

all: build

deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing) >/dev/null; \
	fi

build:
	$(CARGO) build --release --locked

tiny:
	bash dist/cross/cargo.sh $(TARGET) build
	@ls -l $(TINY_BIN)

static:
	bash dist/cross/cargo.sh $(ARCH)-unknown-linux-musl build
	@ls -l $(STATIC_BIN)

cross:
	@for a in $(CROSS_ARCHS); do \
	    bash dist/cross/cargo.sh $$a-unknown-linux-musl build || exit 1; \
	    ls -l target/cross/$$a-unknown-linux-musl/release/ovpn-netcfgd; done

# Under qemu-user: the library's and the binary's unit tests (golden bytes
# and the fuzz smoke runs among them), then the release daemon answering on
# a private bus. CROSS_ARCHS=mips make test-cross-unit is what CI runs.
test-cross: deps cross test-cross-unit
	@for a in $(CROSS_ARCHS); do \
	    bash tests/cross/daemon-answers.sh target/cross/$$a-unknown-linux-musl/release/ovpn-netcfgd qemu-$$a-static || exit 1; done

test-cross-unit:
	@for a in $(CROSS_ARCHS); do \
	    echo "== unit tests for $$a-unknown-linux-musl under qemu-$$a-static"; \
	    bash dist/cross/cargo.sh $$a-unknown-linux-musl test --lib --bins || exit 1; done

# deps installs everything the tests need, so a test that would skip fails
# here (OVPN_NETCFGD_NO_SKIP); tests/dco.rs only reports its host skips, as
# test-dco runs it in the guest.
test: deps
	OVPN_NETCFGD_NO_SKIP=1 $(CARGO) test --locked --lib --bins --tests -- --test-threads=4
	bash tests/install-tree.sh
	$(MAKE) --no-print-directory test-e2e
	$(MAKE) --no-print-directory test-dco

# Debian's real OpenVPN 3 Linux client through the daemon to a real OpenVPN
# server, in namespaces, plus make install/uninstall over Debian's package:
# in a Debian root built once from Debian packages and cached
# (tests/rigs/o3root; about 2 minutes the first time, then under a second).
test-e2e:
	$(CARGO) build --locked
	bash tests/e2e/real-client.sh target/debug/ovpn-netcfgd

# DCO tests boot qemu guests (set up once, cached): tests/dco.rs on Debian's
# 6.12 with ovpn-dco-v2 and on trixie-backports' 7.x with the upstream ovpn
# module, then the real client with DCO on through the daemon (e2e.sh).
test-dco:
	@if [ -x tests/dco-vm/run-tests.sh ]; then bash tests/dco-vm/run-tests.sh; \
	else echo "SKIP: DCO VM tests not present"; fi

demo: deps build
	bash tests/demo/run-demo.sh $(BIN)

# The bench harness builds in its own target dir so it cannot overwrite the
# release artifact it measures.
bench: deps build tiny static
	@.ci/count-lines | tail -1
	bash benches/sizes.sh $(BIN) $(TINY_BIN) $(STATIC_BIN)
	NETCFGD_BIN=$(CURDIR)/$(BIN) CARGO_TARGET_DIR=$(CURDIR)/target/bench $(CARGO) bench --locked --bench netcfg
	@echo "== the same daemon, statically linked"
	NETCFGD_BIN=$(CURDIR)/$(STATIC_BIN) CARGO_TARGET_DIR=$(CURDIR)/target/bench BENCH_ONLY=1000 \
	    $(CARGO) bench --locked --bench netcfg

# Deep fuzzing with cargo-fuzz (stable toolchain, see fuzz/README.md); the
# bounded smoke runs of the same targets are part of `make test`.
fuzz:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && for t in keyconfig b64_sockaddr netlink ctrl rtnl dbus_args journal dns_state netcfg_json; do \
	    RUSTC_BOOTSTRAP=1 cargo fuzz run $$t -- -max_total_time=$${FUZZ_SECONDS:-60} || exit 1; done

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

clean:
	$(CARGO) clean

-include dist/install.mk
