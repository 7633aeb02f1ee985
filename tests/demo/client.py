#!/usr/bin/python3
"""A GLib (Gio) client that drives ovpn-netcfgd the way the openvpn3 client
does: same call order, file descriptors passed beside the message body (not
as 'h' arguments), proxies without interface info.

Usage: client.py BUS_ADDRESS [--keep]   (prints what it does; exits non-zero on failure)
With --keep it stops after Establish and waits for a line on stdin before
Destroy, so a caller can inspect the kernel state in between."""

import socket
import sys

from gi.repository import Gio, GLib

DEST = "net.openvpn.v3.netcfg"
IFACE = "net.openvpn.v3.netcfg"
MGR = "/net/openvpn/v3/netcfg"
NAMES = {1: "DEVICE_ADDED", 2: "DEVICE_REMOVED", 4: "IPADDR_ADDED", 8: "IPADDR_REMOVED",
         16: "ROUTE_ADDED", 32: "ROUTE_REMOVED", 64: "ROUTE_EXCLUDED",
         128: "DNS_SERVER_ADDED", 256: "DNS_SERVER_REMOVED", 512: "DNS_SEARCH_ADDED",
         1024: "DNS_SEARCH_REMOVED"}


def connect(address):
    flags = (Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT
             | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION)
    return Gio.DBusConnection.new_for_address_sync(address, flags, None, None)


def call(conn, path, method, args=None, iface=IFACE, fd=None, want_fd=False):
    shown = "" if args is None else str(args.unpack())
    print(f"  call {method}{shown} on {path}")
    fdlist = None
    if fd is not None:
        fdlist = Gio.UnixFDList.new()
        fdlist.append(fd)
    res, out_fds = conn.call_with_unix_fd_list_sync(
        DEST, path, iface, method, args, None, Gio.DBusCallFlags.NONE, 5000, fdlist, None)
    if want_fd:
        if out_fds is None or out_fds.get_length() < 1:
            raise RuntimeError(f"{method} returned no file descriptor")
        return res, out_fds.get(0)
    return res


def prop_set(conn, path, name, value):
    call(conn, path, "Set", GLib.Variant("(ssv)", (IFACE, name, value)),
         iface="org.freedesktop.DBus.Properties")


def prop_get(conn, path, name):
    r = call(conn, path, "Get", GLib.Variant("(ss)", (IFACE, name)),
             iface="org.freedesktop.DBus.Properties")
    return r.unpack()[0]


def main():
    address = sys.argv[1]
    keep = "--keep" in sys.argv
    conn = connect(address)
    watcher = connect(address)
    seen = []

    def on_signal(_c, _sender, path, _iface, _sig, params):
        kind, dev, details = params.unpack()
        seen.append((kind, dev, details))
        print(f"  signal NetworkChange {NAMES.get(kind, kind)} {dev} {details}")

    watcher.signal_subscribe(None, IFACE, "NetworkChange", None, None,
                             Gio.DBusSignalFlags.NONE, on_signal)
    call(watcher, MGR, "NotificationSubscribe", GLib.Variant("(u)", (2047,)))

    print("== the openvpn3 client's connect sequence")
    call(conn, MGR, "GetAll", GLib.Variant("(s)", (IFACE,)), iface="org.freedesktop.DBus.Properties")
    version = prop_get(conn, MGR, "version")
    print(f"  version = {version}")
    xml = call(conn, "/net/openvpn/v3", "Introspect", None,
               iface="org.freedesktop.DBus.Introspectable").unpack()[0]
    assert '<node name="netcfg"/>' in xml, "parent node does not list netcfg"
    call(conn, "/", "Ping", None, iface="org.freedesktop.DBus.Peer")
    call(conn, MGR, "Cleanup")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ok = call(conn, MGR, "ProtectSocket", GLib.Variant("(sbo)", ("192.0.2.1", False, "/")),
              fd=sock.fileno()).unpack()[0]
    assert ok, "ProtectSocket returned false"
    path = call(conn, MGR, "CreateVirtualInterface",
                GLib.Variant("(s)", ("d444c2d1ta28bt46cft8844t093b240a9bc0",))).unpack()[0]
    print(f"  device object: {path}")
    prop_set(conn, path, "dns_scope", GLib.Variant("s", "global"))
    call(conn, path, "AddIPAddress", GLib.Variant("(susb)", ("10.98.0.2", 24, "10.98.0.1", False)))
    call(conn, path, "AddIPAddress", GLib.Variant("(susb)", ("fd00:98::1000", 64, "fd00:98::1", True)))
    call(conn, path, "SetRemoteAddress", GLib.Variant("(sb)", ("192.0.2.1", False)))
    prop_set(conn, path, "layer", GLib.Variant("u", 3))
    prop_set(conn, path, "mtu", GLib.Variant("q", 1500))
    prop_set(conn, path, "reroute_ipv4", GLib.Variant("b", True))
    call(conn, path, "AddDNSSearch", GLib.Variant("(as)", (["vpn.example"],)))
    call(conn, path, "AddDNS", GLib.Variant("(as)", (["10.98.0.1"],)))
    call(conn, path, "AddNetworks", GLib.Variant("(a(suibb))", ([
        ("10.97.0.0", 24, -1, False, False),
        ("198.51.100.0", 24, -1, False, True),
    ],)))
    _, tun_fd = call(conn, path, "Establish", None, want_fd=True)
    name = prop_get(conn, path, "device_name")
    print(f"  Establish returned tun fd {tun_fd} for device {name}")
    paths = call(conn, MGR, "FetchInterfaceList").unpack()[0]
    assert path in paths, f"{path} not in {paths}"
    ctx = GLib.MainContext.default()
    while ctx.iteration(False):
        pass
    if keep:
        print("READY", name, flush=True)
        sys.stdin.readline()
    print("== disconnect")
    call(conn, path, "Destroy")
    call(conn, MGR, "Cleanup")
    import os
    os.close(tun_fd)
    sock.close()
    deadline = GLib.get_monotonic_time() + 300000
    while GLib.get_monotonic_time() < deadline:
        ctx.iteration(False)
    kinds = [k for k, _, _ in seen]
    assert 1 in kinds and 2 in kinds, f"missing DEVICE_ADDED/REMOVED in {kinds}"
    print(f"== done: {len(seen)} NetworkChange signal(s) received")


if __name__ == "__main__":
    main()
