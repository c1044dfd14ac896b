"""How this host boots, read below a root folder: which file decides the kernel command line.

The boot paths vfiokit knows (Proxmox `system-booting.adoc`, `proxmox-boot-tool`, Debian grub2):

- GRUB, legacy BIOS or UEFI (plain Debian/Ubuntu, Proxmox on ext4/xfs/LVM): the command line is
  `GRUB_CMDLINE_LINUX_DEFAULT` in `/etc/default/grub` or the `/etc/default/grub.d/*.cfg` that sets
  it last; refreshed by `update-grub`.
- ESPs managed by `proxmox-boot-tool` (`/etc/kernel/proxmox-boot-uuids` exists; ZFS root): booted
  with UEFI through systemd-boot, the command line is the one line of `/etc/kernel/cmdline`; an ESP
  holding GRUB (legacy BIOS boot, or `EFI/proxmox/grubx64.efi` such as with Secure Boot) ignores
  that file and uses the GRUB variables. Either way `proxmox-boot-tool refresh` (older name
  `pve-efiboot-tool`) copies kernels to the ESPs and regenerates their configuration.

Which loader an ESP holds is read from what this root shows: an ESP mounted where
proxmox-boot-tool mounts them (`/var/tmp/espmounts/<UUID>`), else the `LoaderInfo` EFI variable
systemd-boot sets at every boot (GRUB does not set it). When neither tells, vfiokit refuses
rather than edit a file the boot loader ignores.
"""

from __future__ import annotations

import glob
import os
import re

from vfiokit import rootfs
from vfiokit.errors import BadInput, Refused
from vfiokit.formats.boot_setup import BootSetup

#: systemd's loader interface GUID (systemd `docs/BOOT_LOADER_INTERFACE.md`).
LOADER_GUID = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"

GRUB_MAIN = "etc/default/grub"
GRUB_DROPINS = "etc/default/grub.d"
KERNEL_CMDLINE = "etc/kernel/cmdline"
PBT_UUIDS = "etc/kernel/proxmox-boot-uuids"


def _text(path: str, root: str) -> str | None:
    """A file's text exactly, every link on its way resolved below `root` (`rootfs`): a FIFO,
    a device or a link that leads outside `root` is bad input, never a hang."""
    try:
        return rootfs.read_text(rootfs.resolve_under(root, rootfs.host_path(root, path)))
    except IsADirectoryError:
        raise BadInput(f"{path}: is a folder, expected a file", file=path) from None
    except OSError as e:
        raise BadInput(f"{path}: cannot read ({e.strerror})", file=path) from None


def _loader_info(root: str) -> str | None:
    """systemd-boot's `LoaderInfo` EFI variable ("systemd-boot 252.30-1~deb12u2"), if set."""
    try:
        path = rootfs.resolve_under(root, f"/sys/firmware/efi/efivars/LoaderInfo-{LOADER_GUID}")
        data = rootfs.read_file(path, rootfs.ATTR_CAP)
    except (OSError, BadInput):
        return None
    # efivarfs: 4 bytes of attributes, then the UTF-16LE string with its NUL.
    return data[4:].decode("utf-16-le", errors="replace").rstrip("\0") or None


def _esp_loader(root: str, uuids: list[str]) -> tuple[str | None, str]:
    """What the proxmox-boot-tool ESPs hold: ("grub" | "systemd-boot" | None, why)."""
    for uuid in uuids:
        mount = os.path.join(root, "var/tmp/espmounts", uuid)
        if os.path.exists(os.path.join(mount, "EFI/proxmox/grubx64.efi")):
            return "grub", f"ESP {uuid} holds EFI/proxmox/grubx64.efi"
        if os.path.exists(os.path.join(mount, "EFI/systemd/systemd-bootx64.efi")):
            return "systemd-boot", f"ESP {uuid} holds EFI/systemd/systemd-bootx64.efi"
    info = _loader_info(root)
    if info is not None:
        if info.startswith("systemd-boot"):
            return "systemd-boot", f"booted by {info} (EFI variable LoaderInfo)"
        return "grub", f"booted by {info} (EFI variable LoaderInfo), not systemd-boot"
    if os.path.isdir(os.path.join(root, "sys/firmware/efi/efivars")):
        return "grub", "no LoaderInfo EFI variable: the boot loader is not systemd-boot"
    return None, "the ESPs are not mounted and EFI variables are not readable"


def _generated(root: str) -> str | None:
    text = _text(os.path.join(root, "boot/grub/grub.cfg"), root)
    if text is None:
        return None
    m = re.search(r"^\s*linux\s+\S+\s*(.*)$", text, re.MULTILINE)
    return m.group(1).strip() if m else None


def _distro(root: str) -> str | None:
    text = _text(os.path.join(root, "etc/os-release"), root) or ""
    m = re.search(r'^PRETTY_NAME=["\']?(.*?)["\']?$', text, re.MULTILINE)
    return m.group(1) if m else None


def _pbt_command() -> tuple[str, ...]:
    import shutil  # here: only a proxmox-boot-tool host asks, and groups reads this module

    if shutil.which("proxmox-boot-tool") is None and shutil.which("pve-efiboot-tool"):
        return ("pve-efiboot-tool", "refresh")
    return ("proxmox-boot-tool", "refresh")


def read_boot(root: str = "/") -> BootSetup:
    """Read the boot configuration below `root`. Raises VfiokitError (REFUSED) for a boot
    loader vfiokit does not know, BadInput for unreadable files."""
    from vfiokit.sources.sysfs import read_host

    root = os.path.abspath(root)
    uefi = os.path.isdir(os.path.join(root, "sys/firmware/efi"))
    firmware = "uefi" if uefi else "bios"
    main_path = os.path.join(root, GRUB_MAIN)
    main = _text(main_path, root)
    grub_files: list[tuple[str, str]] = []
    if main is not None:
        grub_files.append((main_path, main))
        for p in sorted(glob.glob(os.path.join(glob.escape(os.path.join(root, GRUB_DROPINS)), "*.cfg"))):
            if os.path.isfile(p):
                grub_files.append((p, _text(p, root) or ""))
    kc_path = os.path.join(root, KERNEL_CMDLINE)
    kc = _text(kc_path, root)
    uuids_text = _text(os.path.join(root, PBT_UUIDS), root)
    evidence = ["UEFI boot (/sys/firmware/efi exists)" if uefi else "legacy BIOS boot (no /sys/firmware/efi)"]
    if uuids_text is not None:
        uuids = [ln.split()[0] for ln in uuids_text.splitlines() if ln.strip() and not ln.startswith("#")]
        evidence.append(f"/{PBT_UUIDS} lists {len(uuids)} ESP(s): managed by proxmox-boot-tool")
        refresh = _pbt_command()
        if not uefi:
            loader, why = "grub", "legacy BIOS boot: the ESPs hold GRUB"
        else:
            loader, why = _esp_loader(root, uuids)
        evidence.append(why)
        if loader is None:
            raise Refused("cannot tell whether the proxmox-boot-tool ESPs hold systemd-boot or GRUB "
                          f"({why})",
                          hint="'proxmox-boot-tool status' says which; run vfiokit on the host itself")
        if loader == "systemd-boot":
            if kc is None:
                raise Refused(f"{kc_path}: missing, but systemd-boot via proxmox-boot-tool reads the "
                              "kernel command line from it", file=kc_path)
            path = "proxmox-boot-tool/systemd-boot"
        else:
            if main is None:
                raise Refused(f"{main_path}: missing, but the ESPs hold GRUB", file=main_path)
            path = "proxmox-boot-tool/grub"
            if kc is not None:
                evidence.append(f"/{KERNEL_CMDLINE} exists but is ignored: the ESPs hold GRUB")
    elif main is not None:
        path, refresh = "grub", ("update-grub",)
        evidence.append(f"/{GRUB_MAIN} exists and no /{PBT_UUIDS}: update-grub writes /boot/grub/grub.cfg")
    else:
        extra = f" (/{KERNEL_CMDLINE} exists, but no /{PBT_UUIDS})" if kc is not None else ""
        raise Refused(f"unknown boot loader below {root}: neither /{GRUB_MAIN} nor "
                      f"/{PBT_UUIDS}{extra}; vfiokit edits GRUB and proxmox-boot-tool setups only")
    host = read_host(root)
    return BootSetup(
        root=root, path=path, firmware=firmware, evidence=tuple(evidence),
        grub_files=tuple(grub_files), kernel_cmdline=(kc_path, kc) if kc is not None else None,
        refresh=refresh, running=host.cmdline,
        generated=_generated(root) if path == "grub" else None,
        distro=_distro(root), host=host,
    )
