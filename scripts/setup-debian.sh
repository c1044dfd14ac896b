#!/usr/bin/env bash
# Install the Debian packages one use of vfiokit needs, and nothing else:
#   build    what scripts/build-deb.sh runs on: Debian's python3 with python3-click (the man
#            pages and completion are generated from the CLI)
#   runtime  what the .deb depends on (apt-get install ./dist/vfiokit_*.deb pulls these itself):
#            python3, python3-click, python3-rich, pciutils (lspci), pci.ids (device names),
#            python3-proxmoxer and python3-requests (the Proxmox API)
#   test     the test suite's parts: pciutils (lspci, the oracle for our names), pci.ids, a venv
#            for the test tools (Debian's python3 refuses pip outside one, PEP 668), the QEMU lab
#            (qemu-system-x86, busybox-static, cpio), openssl (the fake Proxmox API's certificate),
#            man-db (the man pages are formatted by man in a test), chromium with a font
#            (the browser that opens `vfiokit report` pages in tests/test_report_browser.py)
# Usage: bash scripts/setup-debian.sh [build|runtime|test]...   (default: test)
set -euo pipefail
pkgs=()
for set in "${@:-test}"; do
  case "$set" in
    build) pkgs+=(python3 python3-click) ;;
    runtime) pkgs+=(python3 python3-click python3-rich pciutils pci.ids python3-proxmoxer python3-requests) ;;
    test) pkgs+=(python3 python3-venv pciutils pci.ids qemu-system-x86 busybox-static cpio openssl man-db chromium fonts-dejavu-core) ;;
    *) echo "setup-debian.sh: unknown set '$set' (build, runtime or test)" >&2; exit 2 ;;
  esac
done
missing=()
for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
