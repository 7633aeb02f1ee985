#!/bin/sh
# tests/dco-vm/check.sh - self-test of the rig; runs inside the guest:
#     tests/dco-vm/run-in-vm.sh tests/dco-vm/check.sh
# Checks the kernel, ovpn-dco-v2 (RTNL link kind and genl family, with the host's iproute2),
# tun, the AEAD crypto algorithms, modprobe against the guest kernel's module tree, the
# writable /etc overlay and the isolation of the network. Ends with "N passed, M failed".
[ "${DCO_VM_GUEST:-}" = 1 ] || { echo "check.sh: run me through tests/dco-vm/run-in-vm.sh" >&2; exit 2; }
pass=0 fail=0
check() { # description command...
	d=$1; shift
	if out=$("$@" 2>&1); then
		pass=$((pass + 1)); echo "PASS $d"
	else
		fail=$((fail + 1)); echo "FAIL $d"; printf '%s\n' "$out" | sed 's/^/    /'
	fi
}

echo "kernel $(uname -r), $(nproc) cpu(s), modules: $(cut -d' ' -f1 /proc/modules | sort | tr '\n' ' ')"
check "kernel is 6.12" sh -c 'uname -r | grep -q "^6\.12\."'
check "ovpn-dco-v2 module loaded" test -d /sys/module/ovpn_dco_v2
check "ip link add type ovpn-dco" ip link add t0 type ovpn-dco
check "ip -d link show: kind ovpn-dco" sh -c 'ip -d link show t0 | grep -q "ovpn-dco"'
check "ip link set up" ip link set t0 up
check "ip link del" ip link del t0
check "genl family ovpn-dco-v2 resolves" sh -c 'genl ctrl get name ovpn-dco-v2 | grep -q "Name: ovpn-dco-v2"'
check "genl multicast group peers" sh -c 'genl ctrl get name ovpn-dco-v2 | grep -q "name: peers"'
check "tun device" sh -c 'ip tuntap add dev tun9 mode tun && ip link set tun9 up && ip tuntap del dev tun9 mode tun'
check "only lo at boot, no routes out" sh -c '[ "$(ls /sys/class/net)" = lo ] && ! ip route show default | grep -q .'
check "modprobe from the guest kernel's tree (dummy)" sh -c 'modprobe dummy && ip link add d0 type dummy && ip link del d0'
check "kernel module autoload (veth)" sh -c 'ip link add v0 type veth peer name v1 && ip link del v0'
# AEAD algorithms as ovpn-dco-v2 asks for them, instantiated through AF_ALG (host's python3)
for alg in 'gcm(aes)' 'rfc7539(chacha20,poly1305)'; do
	if command -v python3 >/dev/null; then
		check "crypto $alg" python3 -c "import socket; socket.socket(socket.AF_ALG, socket.SOCK_SEQPACKET, 0).bind(('aead', '$alg'))"
	else
		echo "SKIP crypto $alg (no python3)"
	fi
done
check "/etc is writable (overlay)" sh -c 'echo "nameserver 192.0.2.53" > /etc/resolv.conf && grep -q 192.0.2.53 /etc/resolv.conf'
check "working directory is shared" test -w "$PWD"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
