#!/usr/bin/python3
"""A D-Bus client that keeps one connection open, so a test can act as
another user (started under setpriv) for as long as it needs.

Usage: bus-agent.py BUS_ADDRESS
Reads one command per line on stdin, answers one line on stdout:
  call PATH IFACE METHOD SIGNATURE JSON-ARGS  -> "ok JSON" or "err NAME MESSAGE"
                                                 (SIGNATURE "-": no arguments)
  set PATH PROPERTY - SIGNATURE JSON-VALUE     -> the same, for Properties.Set
  signals                                     -> "signals JSON" ([kind, device, path]
                                                  of each NetworkChange received so far)
  changed                                     -> "changed JSON" ([path, [property...]]
                                                  of each PropertiesChanged so far)
File descriptors in replies are kept open until the end.
Any other line, or end of input, ends it."""

import json
import sys

from gi.repository import Gio, GLib

DEST = "net.openvpn.v3.netcfg"


def main():
    flags = (Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT
             | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION)
    conn = Gio.DBusConnection.new_for_address_sync(sys.argv[1], flags, None, None)
    got = []

    def on_signal(_c, _sender, path, _iface, _member, params):
        kind, device, _details = params.unpack()
        got.append([kind, device, path])

    conn.signal_subscribe(None, DEST, "NetworkChange", None, None,
                          Gio.DBusSignalFlags.NONE, on_signal)
    changed = []

    def on_changed(_c, _sender, path, _iface, _member, params):
        changed.append([path, sorted(params.unpack()[1].keys())])

    conn.signal_subscribe(None, "org.freedesktop.DBus.Properties", "PropertiesChanged", None, None,
                          Gio.DBusSignalFlags.NONE, on_changed)
    ctx = GLib.MainContext.default()
    held = []  # fds received (a tun device lives as long as its fd)
    for line in sys.stdin:
        while ctx.iteration(False):
            pass
        words = line.rstrip("\n").split(" ", 5)
        if words[0] == "signals":
            out = "signals " + json.dumps(got)
        elif words[0] == "changed":
            out = "changed " + json.dumps(changed)
        elif words[0] in ("call", "set") and len(words) == 6:
            _, path, iface, method, sig, args = words
            if words[0] == "set":  # set PATH NAME - SIG JSON-VALUE: Properties.Set
                name, vsig = iface, sig
                iface, method, sig = "org.freedesktop.DBus.Properties", "Set", "ssv"
                args = [DEST, name, GLib.Variant(vsig, json.loads(args))]
            elif sig != "-":
                args = json.loads(args)
            body = GLib.Variant("(" + sig + ")", tuple(args)) if sig != "-" else None
            try:
                r, fds = conn.call_with_unix_fd_list_sync(DEST, path, iface, method, body, None,
                                                          Gio.DBusCallFlags.NONE, 10000, None, None)
                held.append(fds)
                out = "ok " + json.dumps(r.unpack() if r is not None else [])
            except GLib.Error as e:
                name = Gio.DBusError.get_remote_error(e) or "?"
                out = "err " + name + " " + e.message.replace("\n", " ")
        else:
            break
        print(out, flush=True)


main()
