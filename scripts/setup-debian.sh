#!/usr/bin/env bash
# Install the Debian packages vfiokit's tests use: pciutils (lspci, the oracle for our names),
# pci.ids (the names themselves), the QEMU lab's parts (qemu-system-x86, busybox-static, cpio),
# openssl (the fake Proxmox API's self-signed certificate) and kmod (modprobe --showconfig judges
# the modprobe.d files vfiokit writes).
set -euo pipefail
pkgs=(pciutils pci.ids qemu-system-x86 busybox-static cpio openssl kmod)
missing=()
for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
