"""`/proc/iomem` and a PCI function's sysfs `resource` file: where the boot framebuffer sits and
which BARs a device has. Pure: no I/O.

The firmware's console framebuffer is claimed as `BOOTFB` (sysfb's simple-framebuffer device,
kernels >= 5.15), `efifb` or `simplefb`, or `vesafb`; inside a GPU's BAR it keeps vfio-pci from
reserving that BAR (the kernel logs "BAR 0: can't reserve").
"""

from __future__ import annotations

#: Names the kernel gives the firmware framebuffer's memory in /proc/iomem.
FRAMEBUFFERS = ("BOOTFB", "efifb", "simplefb", "vesafb")


def framebuffers(text: str) -> list[tuple[int, int, str]]:
    """(start, end, name) of each framebuffer range in /proc/iomem (all zero when read without
    root: then nothing can be placed, and nothing is returned)."""
    out = []
    for line in text.split("\n"):
        span, sep, name = line.strip().partition(" : ")
        if not sep or name.strip() not in FRAMEBUFFERS:
            continue
        lo, dash, hi = span.partition("-")
        try:
            start, end = int(lo, 16), int(hi, 16)
        except ValueError:
            continue
        if dash and end > 0:
            out.append((start, end, name.strip()))
    return out


def bars(text: str) -> list[tuple[int, int]]:
    """(start, end) of each used region of a sysfs `resource` file (drivers/pci/pci-sysfs.c
    `resource_show`: one "start end flags" line per resource, zeros when unused)."""
    out = []
    for line in text.split("\n"):
        parts = line.split()
        if len(parts) != 3:
            continue
        try:
            start, end = int(parts[0], 16), int(parts[1], 16)
        except ValueError:
            continue
        if end > 0:
            out.append((start, end))
    return out


def framebuffer_in(fbs: list[tuple[int, int, str]], regions: list[tuple[int, int]]) -> str | None:
    """The name of a framebuffer lying inside one of `regions`, None for none."""
    for start, end, name in fbs:
        if any(lo <= start and end <= hi for lo, hi in regions):
            return name
    return None
