"""`/etc/kernel/cmdline`, the command line proxmox-boot-tool gives systemd-boot: one line of kernel
parameters (proxmox-boot-tool `refresh` reads the first line; it refuses a file without `root=`).
Pure: no I/O."""

from __future__ import annotations

from vfiokit.formats import cmdline


def split(text: str) -> tuple[str, str, str | None]:
    """(first line, the rest of the file from its newline on, why vfiokit will not edit it): it
    refuses what proxmox-boot-tool would refuse."""
    first, nl, rest = text.partition("\n")
    refusal = None
    if rest.strip():
        refusal = "has more than one line; proxmox-boot-tool uses one line"
    elif not any(cmdline.key_of(t) == "root" for t in cmdline.tokens(first)):
        refusal = ("has no root= parameter; proxmox-boot-tool refuses such a file and the host would "
                   "not find its root file system")
    return first, nl + rest, refusal
