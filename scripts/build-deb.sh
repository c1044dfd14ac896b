#!/usr/bin/env bash
# Build dist/vfiokit_<version>_all.deb from this tree with dpkg-deb: the package for Proxmox VE /
# Debian hosts. It depends on Debian's own python3, python3-click, python3-rich, pciutils and
# pci.ids, and python3-proxmoxer with python3-requests (for --host and cluster), installs the modules under
# /usr/lib/python3/dist-packages like every Debian python3-* package, the command in /usr/bin,
# man pages and bash/zsh completion generated from the CLI itself (scripts/gen_docs.py).
# Then lintian judges the result when it is installed (errors fail the build).
#
# Usage: bash scripts/build-deb.sh     (PYTHON=... picks the interpreter that runs the generator)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-debian.sh build
if [ -z "${PYTHON:-}" ]; then
  PYTHON=python3
  /usr/bin/python3 -c 'import click' 2>/dev/null && PYTHON=/usr/bin/python3
fi
version=$(PYTHONPATH=src "$PYTHON" -c 'import vfiokit; print(vfiokit.__version__)')
# Reproducible: every date in the package is the last commit's (or now, outside git).
# (git archive sets every file's time to the commit's, so pyproject.toml's serves outside git.)
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || stat -c %Y pyproject.toml)}"
pkg=vfiokit
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/${pkg}_${version}_all"
lib="$root/usr/lib/python3/dist-packages"
doc="$root/usr/share/doc/$pkg"
mkdir -p "$lib" "$root/usr/bin" "$root/usr/share/man/man1" "$doc" "$root/DEBIAN" \
  "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions"

# The modules and the bundled samples, without bytecode (postinst compiles, as dh_python3 does).
tar -C src --exclude=__pycache__ --exclude='*.pyc' -cf - vfiokit | tar -C "$lib" -xf -
cat > "$root/usr/bin/$pkg" <<'PY'
#!/usr/bin/python3
"""vfiokit: see, judge, predict and safely change IOMMU groups for PCI passthrough."""
from vfiokit.cli import run

run()
PY
chmod 0755 "$root/usr/bin/$pkg"

gen="$stage/gen"
PYTHONPATH=src "$PYTHON" scripts/gen_docs.py "$gen" >/dev/null
for page in "$gen"/man/*.1; do gzip -9n < "$page" > "$root/usr/share/man/man1/$(basename "$page").gz"; done
install -m 0644 "$gen/completion/vfiokit" "$root/usr/share/bash-completion/completions/vfiokit"
install -m 0644 "$gen/completion/_vfiokit" "$root/usr/share/zsh/vendor-completions/_vfiokit"

when=$(date -u -R -d "@$SOURCE_DATE_EPOCH")
gzip -9n > "$doc/changelog.gz" <<CHANGELOG
$pkg ($version) unstable; urgency=medium

  * Built from the vfiokit source tree (see its git history).

 -- vfiokit developers <vfiokit@users.noreply.github.com>  $when
CHANGELOG
cat > "$doc/copyright" <<'COPYRIGHT'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: vfiokit

Files: *
Copyright: 2026 vfiokit developers
License: Expat
 Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
 associated documentation files (the "Software"), to deal in the Software without restriction,
 including without limitation the rights to use, copy, modify, merge, publish, distribute,
 sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
 furnished to do so, subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included in all copies or
 substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT
 NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
 NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
 DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT
 OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
COPYRIGHT

# dh_python3's snippets: compile on install, remove the bytecode before the files go.
cat > "$root/DEBIAN/postinst" <<'SH'
#!/bin/sh
set -e
if command -v py3compile >/dev/null 2>&1; then
	py3compile -p vfiokit
fi
SH
cat > "$root/DEBIAN/prerm" <<'SH'
#!/bin/sh
set -e
if command -v py3clean >/dev/null 2>&1; then
	py3clean -p vfiokit
else
	dpkg -L vfiokit | sed -n 's/\.py$/.pyc/p' | xargs rm -f
fi
SH
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm"

size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<CONTROL
Package: $pkg
Version: $version
Architecture: all
Maintainer: vfiokit developers <vfiokit@users.noreply.github.com>
Installed-Size: $size
Depends: python3:any (>= 3.11), python3-click (>= 8.1.3), python3-rich (>= 13.3.1), pciutils, pci.ids, python3-proxmoxer, python3-requests
Section: admin
Priority: optional
Description: IOMMU groups and PCI passthrough for Proxmox VE and KVM hosts
 vfiokit sees every IOMMU group and device (live host, snapshot, pasted
 listing or a Proxmox node's API), judges what passing a device to a VM takes
 from the host, predicts the groups under an ACS override before you reboot,
 and changes the kernel command line and Proxmox VM configs safely: every edit
 shown as a diff first, atomic, backed up and undoable.
CONTROL
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) \
  > "$root/DEBIAN/md5sums"
find "$root" -type d -exec chmod 0755 {} +
find "$root/usr" -type f ! -path '*/usr/bin/*' -exec chmod 0644 {} +

mkdir -p dist
deb="dist/${pkg}_${version}_all.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
if command -v lintian >/dev/null; then
  # lintian warns when run as root (CI is root): that line is not about the package.
  lintian --fail-on error "$deb" 2> >(grep -v "running with root privileges" >&2) >&2
fi
echo "$deb"
