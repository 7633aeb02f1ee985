#!/bin/bash
# tests/dco-vm/run-tests.sh - the DCO integration tests (tests/dco.rs) against the real kernel
# modules, in the qemu guests of this directory: ovpn-dco-v2 (Debian 6.12), then the upstream
# ovpn module (trixie-backports 7.x). The single entry `make test-dco` calls.
#
#   1. setup.sh (cached: a no-op after the first run);
#   2. builds the test binary (and the daemon) on the host;
#   3. runs it in each guest (one boot per family) with a hard timeout. DCO_TEST_REQUIRE=1
#      turns a skip into a failure, so the run cannot pass without exercising the module.
#
# Exit status: the tests' own; 124 when the guest hung or the tests ran past DCO_TEST_TIMEOUT.
#   4. runs the real client end to end with DCO on (e2e.sh; one more boot).
# Knobs: DCO_TEST_TIMEOUT (s per boot, default 600), DCO_TEST_FAMILIES (default
# "ovpn-dco-v2 ovpn"), DCO_TEST_E2E=0 (no e2e), CARGO, and run-in-vm.sh's DCO_VM_* variables.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/../.."
CARGO=${CARGO:-cargo}
t0=$(date +%s)
say() { printf 'run-tests: %s\n' "$*" >&2; }

bash tests/dco-vm/setup.sh

log=$(mktemp "${TMPDIR:-/tmp}/dco-tests.XXXXXX")
trap 'rm -f "$log"' EXIT
if ! "$CARGO" test --locked --test dco --no-run >"$log" 2>&1; then
	cat "$log" >&2
	say "FAILED: building the test binary"
	exit 1
fi
bin=$(sed -n 's/.*Executable tests\/dco\.rs (\(.*\))$/\1/p' "$log" | tail -n 1)
[ -n "$bin" ] && [ -x "$bin" ] || { cat "$log" >&2; say "FAILED: no test binary found"; exit 1; }

# One boot per kernel family: the whole test binary runs in each guest.
rc=0
for fam in ${DCO_TEST_FAMILIES:-ovpn-dco-v2 ovpn}; do
	say "$fam: running $bin in the guest (timeout ${DCO_TEST_TIMEOUT:-600} s)"
	t1=$(date +%s)
	set +e
	DCO_VM_FAMILY=$fam DCO_TEST_REQUIRE=1 DCO_VM_ENV="DCO_TEST_REQUIRE ${DCO_VM_ENV:-}" \
		DCO_VM_TIMEOUT=${DCO_TEST_TIMEOUT:-600} RUST_BACKTRACE=1 \
		tests/dco-vm/run-in-vm.sh "$bin" --test-threads=1 --nocapture 2>&1 | tee "$log"
	frc=${PIPESTATUS[0]}
	set -e
	summary=$(grep -E '^test result: ' "$log" | tail -n 1 || true)
	case $frc in
		0) ;;
		124) say "$fam: FAILED: TIMEOUT - the guest hung or the tests ran past ${DCO_TEST_TIMEOUT:-600} s" ;;
		*) say "$fam: FAILED: exit status $frc" ;;
	esac
	[ -n "$summary" ] || { summary="no test summary (the test binary did not finish)"; [ "$frc" != 0 ] || frc=1; }
	say "$fam: $summary ($(( $(date +%s) - t1 )) s)"
	[ "$frc" = 0 ] || rc=$frc
done
# The real client (openvpn3 27.1, DCO on) end to end in the ovpn-dco-v2 guest (e2e.sh):
# one more boot. DCO_TEST_E2E=0 leaves it out.
if [ "${DCO_TEST_E2E:-1}" != 0 ]; then
	t1=$(date +%s)
	say "e2e: the real client with DCO on, in the ovpn-dco-v2 guest"
	set +e
	bash tests/dco-vm/e2e.sh "$(dirname "$bin")/../ovpn-netcfgd" 2>&1 | tee "$log"
	frc=${PIPESTATUS[0]}
	set -e
	say "e2e: $(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1 || echo "no summary") ($(( $(date +%s) - t1 )) s)"
	[ "$frc" = 0 ] || { say "e2e: FAILED: exit status $frc"; rc=$frc; }
fi
say "wall time $(( $(date +%s) - t0 )) s"
exit "$rc"
