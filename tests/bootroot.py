"""Build host root folders for `vfiokit boot` tests, and stand-ins for the refresh commands.

The stand-ins replace `update-grub` and `proxmox-boot-tool` on PATH because the real ones would
rewrite the real /boot; they record their arguments and fail on demand (`STANDIN_FAIL=<code>`).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "grub"
REFRESH_COMMANDS = ("update-grub", "proxmox-boot-tool", "pve-efiboot-tool")


def write(root: Path, rel: str, text: str | bytes) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_bytes(text.encode())
    return p


def grub_host(root: Path, corpus: str, *, uefi: bool = False, running: str | None = None) -> Path:
    """A host booting with plain GRUB whose /etc/default/grub(.d) come from the corpus entry."""
    src = FIXTURES / corpus
    write(root, "etc/default/grub", (src / "grub").read_bytes())
    if (src / "grub.d").is_dir():
        for f in sorted((src / "grub.d").iterdir()):
            write(root, f"etc/default/grub.d/{f.name}", f.read_bytes())
    if uefi:
        (root / "sys/firmware/efi/efivars").mkdir(parents=True)
    if running is not None:
        write(root, "proc/cmdline", running + "\n")
    return root


def pbt_host(root: Path, cmdline: str, *, loader: str = "systemd-boot") -> Path:
    """A Proxmox ZFS host with ESPs managed by proxmox-boot-tool, booted by `loader` on UEFI."""
    initrd = "initrd=\\EFI\\proxmox\\6.8.12-4-pve\\initrd.img-6.8.12-4-pve"
    grub_host(root, "proxmox8-zfs", uefi=True, running=f"{initrd} {cmdline.strip()}")
    write(root, "etc/kernel/cmdline", cmdline)
    write(root, "etc/kernel/proxmox-boot-uuids", "7B51-1A2C\n")
    if loader == "systemd-boot":
        info = "systemd-boot 252.30-1~deb12u2".encode("utf-16-le") + b"\0\0"
        write(root, "sys/firmware/efi/efivars/LoaderInfo-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f",
              b"\x06\x00\x00\x00" + info)
    return root


def cpu(root: Path, vendor: str, kernel: str, iommu_units: tuple[str, ...] = ()) -> None:
    write(root, "proc/cpuinfo", f"processor\t: 0\nvendor_id\t: {vendor}\nflags\t\t: fpu vmx svm\n")
    write(root, "proc/sys/kernel/osrelease", kernel + "\n")
    (root / "sys/class/iommu").mkdir(parents=True, exist_ok=True)
    for u in iommu_units:
        (root / "sys/class/iommu" / u).mkdir()


class Standins:
    """Refresh commands on PATH that log `name args...` to a file."""

    def __init__(self, folder: Path) -> None:
        self.bin = folder
        self.log = folder / "calls.log"
        folder.mkdir(parents=True, exist_ok=True)
        for name in REFRESH_COMMANDS:
            p = folder / name
            p.write_text(f'#!/bin/sh\necho "{name} $*" >> "{self.log}"\n'
                         'if [ -n "$STANDIN_FAIL" ]; then\n'
                         '  echo "E: $STANDIN_MSG" >&2; exit "$STANDIN_FAIL"\nfi\n')
            p.chmod(p.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


def sh_value(etc_default: Path, var: str = "GRUB_CMDLINE_LINUX_DEFAULT") -> str:
    """What update-grub would see: source the main file, then grub.d/*.cfg in glob order."""
    script = (f'. ./grub; for f in grub.d/*.cfg; do [ -e "$f" ] && . "./$f"; done; '
              f'printf "%s" "${var}"')
    out = subprocess.run([shutil.which("sh") or "/bin/sh", "-c", script], cwd=etc_default,
                         capture_output=True, text=True, check=True, env={**os.environ, "LC_ALL": "C"})
    return out.stdout
