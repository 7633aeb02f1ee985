# dist/install.mk: install and uninstall ovpn-netcfgd and its system files.
#
# Included by the top-level Makefile, or used on its own from the top of the
# source tree:
#
#     make -f dist/install.mk install DESTDIR=/tmp/stage BIN=target/release/ovpn-netcfgd
#
# Nothing here builds: "install" copies an existing $(BIN).  Every directory
# below can be overridden on the command line, or by a Makefile that sets it
# before including this fragment (PREFIX is examined at include time).  An empty directory variable
# skips that group of files (e.g. SYSTEMD_UNIT_DIR= on a system without
# systemd, POLKIT_RULES_DIR= without polkit).

# Where this fragment lives, captured before any other include changes
# MAKEFILE_LIST.
OVPN_DIST_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
OVPN_TOP_DIR  := $(patsubst %/,%,$(dir $(OVPN_DIST_DIR)))

PACKAGE ?= ovpn-netcfgd
BIN     ?= target/release/ovpn-netcfgd

DESTDIR ?=
PREFIX  ?= /usr
EXEC_PREFIX ?= $(PREFIX)
SBINDIR ?= $(EXEC_PREFIX)/sbin
DATADIR ?= $(PREFIX)/share
MANDIR  ?= $(DATADIR)/man
DOCDIR  ?= $(DATADIR)/doc/$(PACKAGE)
LICENSEDIR ?= $(DOCDIR)

# Configuration and state always live in /etc and /var: the daemon, the bus
# and the tools reading them do not look below /usr/local.
SYSCONFDIR    ?= /etc
LOCALSTATEDIR ?= /var
STATEDIR ?= $(LOCALSTATEDIR)/lib/$(PACKAGE)

# dbus-daemon reads policies only from /usr/share/dbus-1/system.d and
# /etc/dbus-1/system.d, polkit rules only from /usr/share/polkit-1/rules.d
# and /etc/polkit-1/rules.d.  With another prefix they go below /etc.
# Activation files, units, sysusers.d and tmpfiles.d are also searched in
# /usr/local, so they follow the prefix.
ifeq ($(PREFIX),/usr)
DBUS_SYSTEM_POLICY_DIR ?= $(DATADIR)/dbus-1/system.d
POLKIT_RULES_DIR       ?= $(DATADIR)/polkit-1/rules.d
else
DBUS_SYSTEM_POLICY_DIR ?= $(SYSCONFDIR)/dbus-1/system.d
POLKIT_RULES_DIR       ?= $(SYSCONFDIR)/polkit-1/rules.d
endif
DBUS_SYSTEM_SERVICE_DIR ?= $(DATADIR)/dbus-1/system-services
SYSTEMD_UNIT_DIR ?= $(PREFIX)/lib/systemd/system
SYSUSERS_DIR     ?= $(PREFIX)/lib/sysusers.d
TMPFILES_DIR     ?= $(PREFIX)/lib/tmpfiles.d
# Older iproute2 (e.g. 6.1 in Debian 12) reads only /etc/iproute2; newer
# releases read /usr/share/iproute2 as well, so /etc works everywhere.
IPROUTE2_RT_PROTOS_DIR ?= $(SYSCONFDIR)/iproute2/rt_protos.d

INSTALL      ?= install
INSTALL_PROG ?= $(INSTALL) -m 0755
INSTALL_DATA ?= $(INSTALL) -m 0644
INSTALL_DIR  ?= $(INSTALL) -d -m 0755
SED ?= sed

# The activation file names the systemd unit only when one is installed;
# otherwise dbus-daemon starts the binary itself.
ifneq ($(strip $(SYSTEMD_UNIT_DIR)),)
OVPN_SYSTEMD_LINE := SystemdService=$(PACKAGE).service
else
OVPN_SYSTEMD_LINE :=
endif

# Placeholders (@NAME@) in the *.in templates.
OVPN_SUBST = $(SED) \
	-e 's|@SBINDIR@|$(SBINDIR)|g' \
	-e 's|@STATEDIR@|$(STATEDIR)|g' \
	-e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
	-e 's|@DATADIR@|$(DATADIR)|g' \
	-e 's|@SYSTEMD_SERVICE_LINE@|$(OVPN_SYSTEMD_LINE)|g'

# The project's own licence files, whichever of them exist.
OVPN_PROJECT_LICENSES := $(wildcard $(OVPN_TOP_DIR)/LICENSE $(OVPN_TOP_DIR)/LICENSE-* $(OVPN_TOP_DIR)/COPYING)

# $(call ovpn_dir,DIR): create DIR (mode 0755) unless it exists.  An
# existing directory keeps its mode: install -d would reset it, and some
# (polkit's rules.d) are deliberately 0700.
ovpn_dir = test -d '$(1)' || $(INSTALL_DIR) '$(1)'

# $(call ovpn_subst,TEMPLATE,DEST): substitute TEMPLATE into DEST, mode 0644,
# written under a temporary name and renamed so a failed sed leaves nothing.
define ovpn_subst
	$(OVPN_SUBST) '$(1)' > '$(2).tmp'
	@if grep -n '@[A-Z_][A-Z_]*@' '$(2).tmp'; then \
		echo "install.mk: unsubstituted placeholder in $(2)" >&2; \
		rm -f '$(2).tmp'; exit 1; fi
	chmod 0644 '$(2).tmp'
	mv -f '$(2).tmp' '$(2)'
endef

# Installed over a distribution's OpenVPN 3 Linux package (Debian and
# Ubuntu: openvpn3-client), whose activation file and bus policy for the
# same name live at these paths: on the live system (empty DESTDIR, dpkg
# present) "install" moves the package's two files aside with dpkg-divert,
# so the bus starts ovpn-netcfgd.  They are kept as *.distrib, and package
# upgrades write there too.  "uninstall" moves them back.  The package's
# own netcfg program stays installed, unused.
OVPN_DIVERTED = /usr/share/dbus-1/system-services/net.openvpn.v3.netcfg.service \
		/usr/share/dbus-1/system.d/net.openvpn.v3.netcfg.conf
OVPN_CAN_DIVERT = [ -z '$(DESTDIR)' ] && command -v dpkg-divert >/dev/null

.PHONY: install uninstall install-license-texts

install:
	@if [ ! -f '$(BIN)' ] || [ ! -x '$(BIN)' ]; then \
		echo "install.mk: no executable at BIN=$(BIN); build first (cargo build --release)" >&2; \
		exit 1; fi
	$(call ovpn_dir,$(DESTDIR)$(SBINDIR))
	$(INSTALL_PROG) '$(BIN)' '$(DESTDIR)$(SBINDIR)/$(PACKAGE)'
	$(call ovpn_dir,$(DESTDIR)$(MANDIR)/man8)
	$(INSTALL_DATA) '$(OVPN_DIST_DIR)/$(PACKAGE).8' '$(DESTDIR)$(MANDIR)/man8/$(PACKAGE).8'
	@if $(OVPN_CAN_DIVERT); then for f in $(OVPN_DIVERTED); do \
		dpkg-divert --listpackage "$$f" | grep -qx '$(PACKAGE)' && continue; \
		dpkg-query -S "$$f" >/dev/null 2>&1 || continue; \
		echo "install.mk: diverting $$(dpkg-query -S "$$f" | cut -d: -f1)'s $$f"; \
		dpkg-divert --quiet --package '$(PACKAGE)' --divert "$$f.distrib" --rename --add "$$f" || exit 1; \
	done; fi
	$(call ovpn_dir,$(DESTDIR)$(DBUS_SYSTEM_POLICY_DIR))
	$(INSTALL_DATA) '$(OVPN_DIST_DIR)/dbus/net.openvpn.v3.netcfg.conf' \
		'$(DESTDIR)$(DBUS_SYSTEM_POLICY_DIR)/net.openvpn.v3.netcfg.conf'
	$(call ovpn_dir,$(DESTDIR)$(DBUS_SYSTEM_SERVICE_DIR))
	$(call ovpn_subst,$(OVPN_DIST_DIR)/dbus/net.openvpn.v3.netcfg.service.in,$(DESTDIR)$(DBUS_SYSTEM_SERVICE_DIR)/net.openvpn.v3.netcfg.service)
ifneq ($(strip $(SYSTEMD_UNIT_DIR)),)
	$(call ovpn_dir,$(DESTDIR)$(SYSTEMD_UNIT_DIR))
	$(call ovpn_subst,$(OVPN_DIST_DIR)/systemd/$(PACKAGE).service.in,$(DESTDIR)$(SYSTEMD_UNIT_DIR)/$(PACKAGE).service)
endif
ifneq ($(strip $(SYSUSERS_DIR)),)
	$(call ovpn_dir,$(DESTDIR)$(SYSUSERS_DIR))
	$(INSTALL_DATA) '$(OVPN_DIST_DIR)/sysusers.d/$(PACKAGE).conf' '$(DESTDIR)$(SYSUSERS_DIR)/$(PACKAGE).conf'
endif
ifneq ($(strip $(TMPFILES_DIR)),)
	$(call ovpn_dir,$(DESTDIR)$(TMPFILES_DIR))
	$(call ovpn_subst,$(OVPN_DIST_DIR)/tmpfiles.d/$(PACKAGE).conf.in,$(DESTDIR)$(TMPFILES_DIR)/$(PACKAGE).conf)
endif
ifneq ($(strip $(POLKIT_RULES_DIR)),)
	$(call ovpn_dir,$(DESTDIR)$(POLKIT_RULES_DIR))
	$(INSTALL_DATA) '$(OVPN_DIST_DIR)/polkit/$(PACKAGE).rules' '$(DESTDIR)$(POLKIT_RULES_DIR)/$(PACKAGE).rules'
endif
ifneq ($(strip $(IPROUTE2_RT_PROTOS_DIR)),)
	$(call ovpn_dir,$(DESTDIR)$(IPROUTE2_RT_PROTOS_DIR))
	$(INSTALL_DATA) '$(OVPN_DIST_DIR)/rt_protos.d/$(PACKAGE).conf' '$(DESTDIR)$(IPROUTE2_RT_PROTOS_DIR)/$(PACKAGE).conf'
endif
	$(call ovpn_dir,$(DESTDIR)$(DOCDIR))
	$(INSTALL_DATA) '$(OVPN_DIST_DIR)/netcfg.json.example' '$(DESTDIR)$(DOCDIR)/netcfg.json.example'
	$(call ovpn_dir,$(DESTDIR)$(LICENSEDIR))
	$(INSTALL_DATA) '$(OVPN_DIST_DIR)/licenses/THIRD-PARTY.md' '$(DESTDIR)$(LICENSEDIR)/THIRD-PARTY.md'
ifneq ($(strip $(OVPN_PROJECT_LICENSES)),)
	$(INSTALL_DATA) $(foreach f,$(OVPN_PROJECT_LICENSES),'$(f)') '$(DESTDIR)$(LICENSEDIR)/'
else
	@echo "install.mk: warning: no LICENSE files in $(OVPN_TOP_DIR); only THIRD-PARTY.md installed" >&2
endif
	@echo "install.mk: installed into '$(DESTDIR)'. On a live system run, as root:"
	@echo "    systemd-sysusers $(PACKAGE).conf; systemd-tmpfiles --create $(PACKAGE).conf"
	@echo "    (or create the openvpn user and $(STATEDIR), mode 0750, owned by openvpn),"
	@echo "    then reload dbus-daemon so it sees the new policy."

# Full licence texts of the statically linked crates and of the vendored
# libdbus, copied from the crate sources cargo has on disk.  Separate from
# "install" because it needs cargo and the crate sources (registry or
# vendor directory); packagers that ship the texts run it as well.
install-license-texts:
	$(call ovpn_dir,$(DESTDIR)$(LICENSEDIR)/third-party)
	sh '$(OVPN_DIST_DIR)/licenses/collect-texts.sh' '$(OVPN_TOP_DIR)' '$(DESTDIR)$(LICENSEDIR)/third-party'

uninstall:
	rm -f '$(DESTDIR)$(SBINDIR)/$(PACKAGE)'
	rm -f '$(DESTDIR)$(MANDIR)/man8/$(PACKAGE).8'
	rm -f '$(DESTDIR)$(DBUS_SYSTEM_POLICY_DIR)/net.openvpn.v3.netcfg.conf'
	rm -f '$(DESTDIR)$(DBUS_SYSTEM_SERVICE_DIR)/net.openvpn.v3.netcfg.service'
ifneq ($(strip $(SYSTEMD_UNIT_DIR)),)
	rm -f '$(DESTDIR)$(SYSTEMD_UNIT_DIR)/$(PACKAGE).service'
endif
ifneq ($(strip $(SYSUSERS_DIR)),)
	rm -f '$(DESTDIR)$(SYSUSERS_DIR)/$(PACKAGE).conf'
endif
ifneq ($(strip $(TMPFILES_DIR)),)
	rm -f '$(DESTDIR)$(TMPFILES_DIR)/$(PACKAGE).conf'
endif
ifneq ($(strip $(POLKIT_RULES_DIR)),)
	rm -f '$(DESTDIR)$(POLKIT_RULES_DIR)/$(PACKAGE).rules'
endif
ifneq ($(strip $(IPROUTE2_RT_PROTOS_DIR)),)
	rm -f '$(DESTDIR)$(IPROUTE2_RT_PROTOS_DIR)/$(PACKAGE).conf'
endif
	rm -f '$(DESTDIR)$(DOCDIR)/netcfg.json.example'
	rm -f '$(DESTDIR)$(LICENSEDIR)/THIRD-PARTY.md'
	rm -f $(foreach f,$(notdir $(OVPN_PROJECT_LICENSES)),'$(DESTDIR)$(LICENSEDIR)/$(f)')
	rm -rf '$(DESTDIR)$(LICENSEDIR)/third-party'
	-rmdir '$(DESTDIR)$(LICENSEDIR)' '$(DESTDIR)$(DOCDIR)' 2>/dev/null
	@if $(OVPN_CAN_DIVERT); then for f in $(OVPN_DIVERTED); do \
		dpkg-divert --listpackage "$$f" | grep -qx '$(PACKAGE)' || continue; \
		echo "install.mk: restoring $$f"; \
		rm -f "$$f"; \
		dpkg-divert --quiet --package '$(PACKAGE)' --rename --remove "$$f" || exit 1; \
	done; fi
	@echo "install.mk: the openvpn user and $(STATEDIR) are left in place."
