"""Which PCI function holds the firmware's console framebuffer: `/proc/iomem` against each
function's BARs (sysfs `resource`), read below the root."""

from __future__ import annotations

from vfiokit import rootfs
from vfiokit.formats import iomem


def framebuffer_holders(root: str, addresses: list[str]) -> dict[str, str]:
    """Address -> framebuffer name (`BOOTFB`, `efifb`, ...) for those of `addresses` whose BAR
    holds it; {} when /proc/iomem cannot be read with addresses (not root)."""
    fbs = iomem.framebuffers(rootfs.text_under(root, "/proc/iomem") or "")
    out = {}
    for a in addresses if fbs else ():
        resource = rootfs.text_under(root, f"/sys/bus/pci/devices/{a}/resource") or ""
        name = iomem.framebuffer_in(fbs, iomem.bars(resource))
        if name:
            out[a] = name
    return out
