#!/bin/sh
# collect-texts.sh TOPDIR OUTDIR
#
# Copy the licence and notice files of every crate linked into the
# ovpn-netcfgd binary, plus the COPYING file of the libdbus sources that
# libdbus-sys vendors, into OUTDIR/<crate>-<version>/.  Build-time-only
# crates (proc macros, build scripts' dependencies) are left out because
# no code of theirs ends up in the binary.
#
# Needs cargo and python3, and the crate sources on disk (registry cache or
# a "cargo vendor" directory); runs offline.  TARGET (default: the host
# triple) selects the platform whose dependencies count.
set -eu
top=${1:?usage: collect-texts.sh TOPDIR OUTDIR}
out=${2:?usage: collect-texts.sh TOPDIR OUTDIR}
command -v cargo >/dev/null || { echo "collect-texts.sh: cargo not found" >&2; exit 1; }
command -v python3 >/dev/null || { echo "collect-texts.sh: python3 not found" >&2; exit 1; }
mkdir -p "$out"
tree=$(mktemp)
meta=$(mktemp)
trap 'rm -f "$tree" "$meta"' EXIT
cd "$top"
target=${TARGET:-$(rustc -vV | sed -n 's/^host: //p')}
cargo tree --offline --locked --target "$target" -e normal,no-proc-macro \
    --prefix none -f '{p}' >"$tree"
cargo metadata --offline --locked --filter-platform "$target" \
    --format-version 1 >"$meta"
python3 - "$tree" "$meta" "$out" <<'PY'
import json, os, re, shutil, sys
tree, meta, out = sys.argv[1:4]
wanted = set()
for line in open(tree):
    m = re.match(r'^(\S+) v(\S+)', line.strip())
    if m:
        wanted.add((m.group(1), m.group(2)))
root = json.load(open(meta))
local = {p['id'] for p in root['packages'] if p.get('source') is None}
names = re.compile(r'^(licen[cs]e|copying|notice|unlicense|authors)', re.I)
count = 0
for p in root['packages']:
    if p['id'] in local or (p['name'], p['version']) not in wanted:
        continue
    src = os.path.dirname(p['manifest_path'])
    dst = os.path.join(out, '%s-%s' % (p['name'], p['version']))
    os.makedirs(dst, exist_ok=True)
    for f in sorted(os.listdir(src)):
        if names.match(f) and os.path.isfile(os.path.join(src, f)):
            shutil.copyfile(os.path.join(src, f), os.path.join(dst, f))
            os.chmod(os.path.join(dst, f), 0o644)
    if p['name'] == 'libdbus-sys':
        copying = os.path.join(src, 'vendor', 'dbus', 'COPYING')
        if not os.path.isfile(copying):
            sys.exit('collect-texts.sh: %s missing (vendored libdbus licence)' % copying)
        shutil.copyfile(copying, os.path.join(dst, 'libdbus-COPYING'))
        os.chmod(os.path.join(dst, 'libdbus-COPYING'), 0o644)
    count += 1
print('collect-texts.sh: %d crates copied to %s' % (count, out))
PY
