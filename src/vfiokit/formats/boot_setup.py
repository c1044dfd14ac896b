"""The boot setup as a value: which file decides the next boot's kernel command line, with the
texts of the files involved. `sources.boot` reads it from a root; `edits.bootline` plans with it;
neither imports the other. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from vfiokit.model import HostInfo


@dataclass(frozen=True)
class BootSetup:
    """What decides the next boot's kernel command line, with the texts of the files involved."""

    root: str
    #: "grub", "proxmox-boot-tool/grub", "proxmox-boot-tool/systemd-boot".
    path: str
    #: "uefi" or "bios".
    firmware: str
    #: How vfiokit knows (one line each).
    evidence: tuple[str, ...]
    #: `/etc/default/grub` then the drop-ins in the order update-grub sources them: (path, text).
    grub_files: tuple[tuple[str, str], ...]
    #: `/etc/kernel/cmdline` (path, text), when it exists.
    kernel_cmdline: tuple[str, str] | None
    #: The command that turns the configuration into what the boot loader reads.
    refresh: tuple[str, ...]
    #: `/proc/cmdline`: what the running kernel got.
    running: str | None
    #: The first `linux` line's parameters in `/boot/grub/grub.cfg` (plain GRUB only).
    generated: str | None
    #: `/etc/os-release` PRETTY_NAME.
    distro: str | None
    host: HostInfo

    @property
    def uses_kernel_cmdline(self) -> bool:
        return self.path == "proxmox-boot-tool/systemd-boot"

    @property
    def label(self) -> str:
        """The boot path in words, e.g. "GRUB via proxmox-boot-tool (legacy BIOS)"."""
        if self.uses_kernel_cmdline:
            return "systemd-boot via proxmox-boot-tool (UEFI)"
        firmware = "UEFI" if self.firmware == "uefi" else "legacy BIOS"
        via = " via proxmox-boot-tool" if self.path == "proxmox-boot-tool/grub" else ""
        return f"GRUB{via} ({firmware})"


@dataclass(frozen=True)
class Configured:
    """The configured command line: the file and line that decide it and its value."""

    #: File on disk (below the root).
    path: str
    #: 1-based line of the deciding assignment (None: the variable is never set).
    line: int | None
    value: str
    #: GRUB only: earlier files whose own value is overridden by `path`.
    overridden: tuple[str, ...] = ()
    #: GRUB only: `GRUB_CMDLINE_LINUX` (also given to the kernel), or why it cannot be read.
    linux: str | None = None
    linux_note: str | None = None
    #: Why vfiokit cannot edit the deciding assignment (None: it can).
    refusal: str | None = None
    #: False when the value depends on shell code vfiokit does not run.
    known: bool = True
