#!/usr/bin/python3
# Owns org.freedesktop.hostname1 on the test's bus: the real client asks it
# for the operating system's name, and there is no systemd-hostnamed here.
import os
import sys

from gi.repository import Gio, GLib

PROPS = {
    "Hostname": "e2e-client",
    "StaticHostname": "e2e-client",
    "KernelName": os.uname().sysname,
    "KernelRelease": os.uname().release,
    "KernelVersion": os.uname().version,
    "OperatingSystemPrettyName": "Debian GNU/Linux (test root)",
    "OperatingSystemCPEName": "cpe:/o:debian:debian_linux",
}
XML = "<node><interface name='org.freedesktop.hostname1'>%s</interface></node>" % "".join(
    "<property name='%s' type='s' access='read'/>" % k for k in PROPS
)


def get_property(conn, sender, path, iface, name):
    return GLib.Variant("s", PROPS[name])


def on_bus(conn, name):
    info = Gio.DBusNodeInfo.new_for_xml(XML).interfaces[0]
    conn.register_object("/org/freedesktop/hostname1", info, None, get_property, None)


def on_name(conn, name):
    print("OWNED", flush=True)


def on_lost(conn, name):
    sys.exit("lost or could not own " + name)


Gio.bus_own_name(Gio.BusType.SYSTEM, "org.freedesktop.hostname1", Gio.BusNameOwnerFlags.NONE,
                 on_bus, on_name, on_lost)
GLib.MainLoop().run()
