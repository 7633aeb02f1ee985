# ovpn-netcfgd — see README.md. Every target installs what it needs itself.
#
#   make demo    the daemon on a private bus in a throwaway netns, driven
#                through a real client session (needs root)
#   make test    unit, integration (netns + private bus), fuzz smoke,
#                install-tree and DCO VM tests (needs root)
#   make bench   speed, memory and size figures
#   make static  fully static binary (glibc +crt-static; musl if installed)

CARGO   ?= cargo
TARGET  ?= $(shell rustc -vV | sed -n 's/^host: //p')
BIN     ?= target/release/ovpn-netcfgd
STATIC_BIN = target/$(TARGET)/release/ovpn-netcfgd
# Debian packages the tests and the demo use (all in the base image of this
# kind of machine except where noted; installed only when missing).
APT_PKGS = dbus-daemon iproute2 util-linux systemd python3-gi procps rsync file binutils
# Size (figures in docs/dependencies.md): no unwind tables at all, since
# panic=abort never unwinds (dist/link/no-eh-frame.ld also drops std's);
# packed relative relocations (DT_RELR) where the linker and the C library
# support them (binutils >= 2.38, glibc >= 2.36, musl >= 1.2.4); -Os for
# the vendored libdbus.
RELR := $(shell printf 'int main(void){return 0;}' | \
	cc -x c - -Wl,-z,pack-relative-relocs -o /tmp/.ovpn-netcfgd-relr.$$$$ 2>/dev/null && \
	/tmp/.ovpn-netcfgd-relr.$$$$ && echo -C link-arg=-Wl,-z,pack-relative-relocs; \
	rm -f /tmp/.ovpn-netcfgd-relr.$$$$)
SIZE_RUSTFLAGS = -C force-unwind-tables=no $(RELR) \
	-C link-arg=-Wl,$(CURDIR)/dist/link/no-eh-frame.ld
export CFLAGS ?= -Os -fno-asynchronous-unwind-tables

.PHONY: all build static test test-unit test-integration test-dco demo bench fuzz clean deps lint print-rustflags

all: build

deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing) >/dev/null; \
	fi

build:
	RUSTFLAGS="$(SIZE_RUSTFLAGS)" $(CARGO) build --release --locked

# glibc static: needs only the target we already have. musl: only when the
# target is installed already (nothing is ever downloaded).
static:
	RUSTFLAGS="$(SIZE_RUSTFLAGS) -C target-feature=+crt-static" $(CARGO) build --release --locked --target $(TARGET)
	@ls -l target/$(TARGET)/release/ovpn-netcfgd
	@if rustup target list --installed 2>/dev/null | grep -q x86_64-unknown-linux-musl; then \
	    $(CARGO) build --release --locked --target x86_64-unknown-linux-musl && ls -l target/x86_64-unknown-linux-musl/release/ovpn-netcfgd; \
	else echo "musl target not installed: skipping the musl build"; fi

# deps installs everything the tests need, so a test that would skip fails
# here (OVPN_NETCFGD_NO_SKIP); tests/dco.rs only reports its host skips, as
# test-dco runs it in the guest.
test: deps
	OVPN_NETCFGD_NO_SKIP=1 $(CARGO) test --locked --lib --bins --tests -- --test-threads=4
	bash tests/install-tree.sh
	$(MAKE) --no-print-directory test-dco

# DCO tests boot a qemu guest with the ovpn-dco-v2 module (set up once, cached).
test-dco:
	@if [ -x tests/dco-vm/run-tests.sh ]; then bash tests/dco-vm/run-tests.sh; \
	else echo "SKIP: DCO VM tests not present"; fi

demo: deps build
	bash tests/demo/run-demo.sh $(BIN)

# The bench harness builds in its own target dir so it cannot overwrite the
# release artifact it measures.
bench: deps build static
	bash benches/sizes.sh $(BIN) $(STATIC_BIN) target/x86_64-unknown-linux-musl/release/ovpn-netcfgd
	NETCFGD_BIN=$(CURDIR)/$(BIN) CARGO_TARGET_DIR=$(CURDIR)/target/bench $(CARGO) bench --locked --bench netcfg
	@echo "== the same daemon, statically linked"
	NETCFGD_BIN=$(CURDIR)/$(STATIC_BIN) CARGO_TARGET_DIR=$(CURDIR)/target/bench BENCH_ONLY=1000 \
	    $(CARGO) bench --locked --bench netcfg

print-rustflags:
	@echo '$(SIZE_RUSTFLAGS)'

# Deep fuzzing with cargo-fuzz (stable toolchain, see fuzz/README.md); the
# bounded smoke runs of the same targets are part of `make test`.
fuzz:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && for t in keyconfig b64_sockaddr netlink ctrl rtnl dbus_args; do \
	    RUSTC_BOOTSTRAP=1 cargo fuzz run $$t -- -max_total_time=$${FUZZ_SECONDS:-60} || exit 1; done

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

clean:
	$(CARGO) clean

-include dist/install.mk
