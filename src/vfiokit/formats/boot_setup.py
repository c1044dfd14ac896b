"""The boot setup as a value: which file decides the next boot's kernel command line, with the
texts of the files involved, and what that file configures (`configured`). `sources.boot` reads it
from a root; `edits.bootline` plans changes with it; neither imports the other, and a command that
only reads (`boot status`, `bind --status`, the `groups` next-boot column) needs neither the plans
nor the writer. Pure: no I/O."""

from __future__ import annotations

from typing import NamedTuple

from vfiokit.formats import grub_default as grub
from vfiokit.formats import kernel_cmdline_file
from vfiokit.formats.host_paths import shown_path
from vfiokit.model import HostInfo


class BootSetup(NamedTuple):
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


class Configured(NamedTuple):
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


def kernel_cmdline_parts(setup: BootSetup) -> tuple[str, str, str, str | None]:
    """(path, first line, rest of the file, why vfiokit will not edit it) of /etc/kernel/cmdline."""
    assert setup.kernel_cmdline is not None
    path, text = setup.kernel_cmdline
    first, rest, refusal = kernel_cmdline_file.split(text)
    return path, first, rest, refusal


def configured(setup: BootSetup) -> Configured:
    """Where the next boot's command line comes from, and what it says."""
    if setup.uses_kernel_cmdline:
        path, first, _, refusal = kernel_cmdline_parts(setup)
        return Configured(path, 1, first, refusal=refusal)
    value, last = grub.effective(setup.grub_files)
    linux, lin = grub.effective(setup.grub_files, "GRUB_CMDLINE_LINUX")
    linux_note = (f"{shown_path(lin.path, setup.root)} line {lin.line}: {lin.reason}"
                  if linux is None and isinstance(lin, grub.Unfollowable) else None)
    if last is None:
        return Configured(setup.grub_files[0][0], None, "", (), linux, linux_note)
    before = setup.grub_files[: [p for p, _ in setup.grub_files].index(last.path)]
    overridden = tuple(shown_path(p, setup.root) for p, text in before if grub.scan(p, text))
    if isinstance(last, grub.Unfollowable) and last.appends is not None:
        overridden = ()  # it adds to them
    refusal = last.reason if isinstance(last, grub.Unfollowable) else None
    return Configured(last.path, last.line, value if value is not None else "(unknown)", overridden, linux,
                      linux_note, refusal, value is not None)
